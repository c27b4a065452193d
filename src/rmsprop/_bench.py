"""``rmsprop bench``: rmsprop against its peers, side by side in one process.

Every implementation takes RMSProp steps (lr 1e-3, beta 0.9, eps 1e-8 inside the root
where it has the option) on arrays of N elements, for N from 10^3 to 5·10^7 in float32
and float64, and whole optimizer steps on model-shaped parameter sets: ResNet-50 (161
tensors, 25.6M values; contiguous, channels_last, and bfloat16 with float32 state) and
BERT-base (199 tensors, 109M values). Rounds are interleaved: each round times one
sample of every implementation, so machine noise hits all alike; a sample is as many
calls as fill about 20 ms. The table gives the median per call with min and max over
rounds, the throughput counting the five memory streams an RMSProp step must move
(read params, grads, cache; write params, cache: 20 bytes per float32 element, 14 for
bfloat16 parameters and gradients with float32 state), and the share of a trivial
five-stream loop that moves the same bytes (the roofline). Peers that are not installed
are skipped with a note.
"""

import functools
import gc
import json
import math
import platform
import statistics
import sys
import time
import timeit
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

import rmsprop
from rmsprop import _accel
from rmsprop._progress import Progress

LR, BETA, EPS = 1e-3, 0.9, 1e-8
SIZES = (10**3, 10**4, 10**5, 10**6, 10**7, 5 * 10**7)
QUICK_SIZES = (10**3, 10**5, 10**6)
DTYPES = ("float32", "float64")
SAMPLE_SECONDS = 0.02
#: Idle time before each sample, untimed: OpenMP threads of the sample before (Numba's,
#: torch's) spin on the cores a while after their loop, and slowed the next sample by up
#: to 25% (measured on XLA's threads) without it; rounds also rotate the order.
PAUSE = 0.01
ROOFLINE = "roofline: 5-stream loop"
FAST_NUMPY = "rmsprop.RMSProp, float32 arithmetic"
FAST_TORCH = "rmsprop.torch.RMSProp, float32 arithmetic"
OURS_OPTAX = "rmsprop.optax.rmsprop (jit, donated)"
#: rmsprop.torch.RMSprop: torch.optim.RMSprop's numbers bit for bit.
EXACT_TORCH = "rmsprop.torch.RMSprop (torch's rounding)"
OURS = (
    "rmsprop.step_", "rmsprop.RMSProp", "rmsprop.torch.RMSProp", FAST_NUMPY, FAST_TORCH,
    OURS_OPTAX, EXACT_TORCH,
)  # fmt: skip

Step = Callable[[], object]
Factory = Callable[[int, str], Step]


def _arrays(n: int, dtype: str, random_seed: int = 0) -> list[npt.NDArray[Any]]:
    rng = np.random.default_rng(random_seed)
    p = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    g = rng.standard_normal(n, dtype=np.float32).astype(dtype)
    return [p, g, np.zeros(n, dtype=dtype)]


def _roofline(n: int, dtype: str) -> Step:
    kernels = _accel.load()
    if kernels is None:
        raise UnavailableError("Numba is not installed")
    p, g, v = _arrays(n, dtype)
    loop = _roofline_kernel()
    return lambda: loop(p, g, v)


_ROOFLINE_KERNEL: Any = None


def _roofline_kernel() -> Any:
    """p += g; v += g: reads three arrays, writes two, computes nothing."""
    global _ROOFLINE_KERNEL  # noqa: PLW0603
    if _ROOFLINE_KERNEL is None:
        from numba import njit, prange  # noqa: PLC0415

        @njit(parallel=True, cache=True)
        def loop(p, g, v):  # type: ignore[no-untyped-def]
            for i in prange(p.size):
                p[i] += g[i]
                v[i] += g[i]

        _ROOFLINE_KERNEL = loop
    return _ROOFLINE_KERNEL


def _step_(n: int, dtype: str) -> Step:
    p, g, v = _arrays(n, dtype)
    return lambda: rmsprop.step_(p, g, v, LR, BETA, EPS)


def _numpy_optimizer(n: int, dtype: str, float32_arithmetic: bool = False) -> Step:
    if float32_arithmetic and dtype != "float32":
        raise UnavailableError("float32 arithmetic applies to float32 data")
    p, g, _ = _arrays(n, dtype)
    optimizer = rmsprop.RMSProp(
        [p], lr=LR, beta=BETA, eps=EPS, float32_arithmetic=float32_arithmetic
    )
    grads = [g]
    return lambda: optimizer.step(grads)


def _torch_optimizer(make: Callable[[Any], Any]) -> Factory:
    def factory(n: int, dtype: str) -> Step:
        torch = _require("torch")
        p, g, _ = _arrays(n, dtype)
        w = torch.nn.Parameter(torch.from_numpy(p))
        w.grad = torch.from_numpy(g)
        optimizer = make([w])
        return optimizer.step  # type: ignore[no-any-return]

    return factory


def _seed_numpy(n: int, dtype: str) -> Step:
    """The seed's formula in NumPy, as written: temporaries for every operation."""
    state = _arrays(n, dtype)

    def step() -> None:
        p, g, v = state
        v = BETA * v + (1 - BETA) * g**2
        state[0], state[2] = p - LR * g / np.sqrt(v + EPS), v

    return step


def _optax_transform(ours: bool) -> Any:
    """The seed's rule as an optax transformation: rmsprop.optax's, or optax.rmsprop."""
    optax = _require("optax")
    if ours:
        import rmsprop.optax  # noqa: PLC0415

        return rmsprop.optax.rmsprop(LR, beta=BETA, eps=EPS)
    return optax.rmsprop(LR, decay=BETA, eps=EPS, eps_in_sqrt=True)


def _jax_step(transform: Any, params: Any, grads: Any) -> Step:
    """One jitted update and apply, parameters and state donated (updated in place)."""
    jax = _require("jax")
    optax = _require("optax")

    def update(params: Any, grads: Any, state: Any) -> Any:
        updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    jitted = jax.jit(update, donate_argnums=(0, 2))
    box = [params, transform.init(params)]

    def step() -> None:
        box[0], box[1] = jitted(box[0], grads, box[1])
        jax.block_until_ready(box[0])

    return step


def _optax(n: int, dtype: str, ours: bool = False) -> Step:
    jax = _require("jax")
    if dtype == "float64" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    p, g, _ = (jax.numpy.asarray(x) for x in _arrays(n, dtype))
    return _jax_step(_optax_transform(ours), p, g)


class UnavailableError(Exception):
    """A peer that cannot run here, with the reason."""


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UnavailableError(f"{module} is not installed") from None


def _implementations() -> dict[str, Factory]:
    def ours_torch(params: Any) -> Any:
        import rmsprop.torch  # noqa: PLC0415

        return rmsprop.torch.RMSProp(params, lr=LR, beta=BETA, eps=EPS)

    def exact_torch(params: Any) -> Any:
        import rmsprop.torch  # noqa: PLC0415

        return rmsprop.torch.RMSprop(params, lr=LR, alpha=BETA, eps=EPS)

    def torch_foreach(params: Any) -> Any:
        return _require("torch").optim.RMSprop(params, lr=LR, alpha=BETA, eps=EPS, foreach=True)

    def torch_loop(params: Any) -> Any:
        return _require("torch").optim.RMSprop(params, lr=LR, alpha=BETA, eps=EPS, foreach=False)

    return {
        ROOFLINE: _roofline,
        "rmsprop.step_": _step_,
        "rmsprop.RMSProp": _numpy_optimizer,
        FAST_NUMPY: functools.partial(_numpy_optimizer, float32_arithmetic=True),
        "rmsprop.torch.RMSProp": _torch_optimizer(ours_torch),
        EXACT_TORCH: _torch_optimizer(exact_torch),
        "NumPy as the seed writes it": _seed_numpy,
        "torch.optim.RMSprop (foreach)": _torch_optimizer(torch_foreach),
        "torch.optim.RMSprop (for-loop)": _torch_optimizer(torch_loop),
        OURS_OPTAX: functools.partial(_optax, ours=True),
        OPTAX: _optax,
    }


# --- models ------------------------------------------------------------------------------------


def resnet50_shapes() -> list[tuple[int, ...]]:
    """The 161 parameter shapes of torchvision's ResNet-50 (25,557,032 values)."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    channels = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for block in range(blocks):
            shapes += [(width, channels, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if block == 0:
                shapes += [(4 * width, channels, 1, 1), (4 * width,), (4 * width,)]
            channels = 4 * width
    return [*shapes, (1000, 2048), (1000,)]


def bert_base_shapes() -> list[tuple[int, ...]]:
    """The 199 parameter shapes of BERT-base with its pooler (109,482,240 values)."""
    hidden, inner = 768, 3072
    norm = [(hidden,), (hidden,)]
    shapes: list[tuple[int, ...]] = [(30522, hidden), (512, hidden), (2, hidden), *norm]
    for _ in range(12):
        for _ in range(4):  # query, key, value, attention output
            shapes += [(hidden, hidden), (hidden,)]
        shapes += [*norm, (inner, hidden), (inner,), (hidden, inner), (hidden,), *norm]
    return [*shapes, (hidden, hidden), (hidden,)]


@dataclass(frozen=True)
class Model:
    """A model-shaped parameter set to time whole optimizer steps on."""

    name: str
    shapes: list[tuple[int, ...]]
    dtype: str = "float32"  # the parameters' (ours keep float32 state for bfloat16)
    channels_last: bool = False

    @property
    def elements(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def bytes_per_element(self) -> int:
        """What one step must move: read p, g, v and write p, v (v in float32)."""
        return 14 if self.dtype == "bfloat16" else 20


def models() -> list[Model]:
    resnet = resnet50_shapes()
    return [
        Model("ResNet-50", resnet),
        Model("ResNet-50, channels_last", resnet, channels_last=True),
        Model("ResNet-50, bfloat16 parameters", resnet, dtype="bfloat16"),
        Model("BERT-base", bert_base_shapes()),
    ]


def _model_implementations(model: Model) -> dict[str, Callable[[], Step]]:
    shapes = model.shapes

    def tensors() -> Any:
        torch = _require("torch")
        generator = torch.Generator().manual_seed(0)
        dtype = getattr(torch, model.dtype)
        layout = torch.channels_last if model.channels_last else torch.contiguous_format
        params = []
        for s in shapes:
            p = torch.randn(s, generator=generator).to(dtype)
            if len(s) == 4:
                p = p.contiguous(memory_format=layout)
            p = torch.nn.Parameter(p)
            p.grad = torch.randn(s, generator=generator).to(dtype)
            if len(s) == 4:
                p.grad = p.grad.contiguous(memory_format=layout)
            params.append(p)
        return params

    def ours_torch(float32_arithmetic: bool = False) -> Step:
        import rmsprop.torch  # noqa: PLC0415

        torch = _require("torch")
        optimizer = rmsprop.torch.RMSProp(
            tensors(), lr=LR, beta=BETA, eps=EPS, float32_arithmetic=float32_arithmetic,
            state_dtype=torch.float32 if model.dtype == "bfloat16" else None,
        )  # fmt: skip
        return optimizer.step

    def exact_torch() -> Step:
        import rmsprop.torch  # noqa: PLC0415

        return rmsprop.torch.RMSprop(tensors(), lr=LR, alpha=BETA, eps=EPS).step

    def ours_numpy() -> Step:
        if model.dtype != "float32" or model.channels_last:
            raise UnavailableError("NumPy has neither bfloat16 nor channels_last")
        rng = np.random.default_rng(0)
        params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        optimizer = rmsprop.RMSProp(params, lr=LR, beta=BETA, eps=EPS)
        return lambda: optimizer.step(grads)

    def torch_default() -> Step:
        return _require("torch").optim.RMSprop(tensors(), lr=LR, alpha=BETA, eps=EPS).step  # type: ignore[no-any-return]

    def torch_loop() -> Step:
        optimizer = _require("torch").optim.RMSprop(
            tensors(), lr=LR, alpha=BETA, eps=EPS, foreach=False
        )
        return optimizer.step  # type: ignore[no-any-return]

    def jax_step(ours: bool) -> Step:
        if model.dtype != "float32" or model.channels_last:
            raise UnavailableError("timed on the float32 model in its usual layout")
        jnp = _require("jax").numpy
        rng = np.random.default_rng(0)
        params = [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
        grads = [jnp.asarray(rng.standard_normal(s, dtype=np.float32)) for s in shapes]
        return _jax_step(_optax_transform(ours), params, grads)

    def roofline() -> Step:
        if model.dtype == "float32":
            return _roofline(model.elements, "float32")
        kernels = _accel.load()
        if kernels is None:
            raise UnavailableError("Numba is not installed")
        rng = np.random.default_rng(0)  # bfloat16 as its 16 bits: 2 + 2 + 4 bytes read
        p, g = (rng.integers(0, 2**15, model.elements, dtype=np.uint16) for _ in range(2))
        v = np.zeros(model.elements, np.float32)
        loop = _roofline_kernel()
        return lambda: loop(p, g, v)

    return {
        f"{ROOFLINE}, one flat pass": roofline,
        "rmsprop.torch.RMSProp": ours_torch,
        FAST_TORCH: functools.partial(ours_torch, float32_arithmetic=True),
        EXACT_TORCH: exact_torch,
        "rmsprop.RMSProp": ours_numpy,
        "torch.optim.RMSprop (defaults: foreach)": torch_default,
        "torch.optim.RMSprop (for-loop)": torch_loop,
        OURS_OPTAX: functools.partial(jax_step, True),
        OPTAX: functools.partial(jax_step, False),
    }


# --- timing ----------------------------------------------------------------------------------


@dataclass
class Result:
    """Per-call times (seconds) of one implementation on one configuration."""

    name: str
    elements: int
    dtype: str
    times: list[float] = field(default_factory=list)
    skipped: str | None = None
    bytes_per_element: int | None = None  # default: five streams of ``dtype``

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def gbps(self) -> float:
        per_element = self.bytes_per_element or 5 * _itemsize(self.dtype)
        return per_element * self.elements / self.median / 1e9

    def as_dict(self, roofline: "Result | None") -> dict[str, Any]:
        if self.skipped:
            return {"implementation": self.name, "skipped": self.skipped}
        share = roofline.median / self.median if roofline and roofline.times else None
        return {
            "implementation": self.name,
            "elements": self.elements,
            "dtype": self.dtype,
            "median_s": self.median,
            "min_s": min(self.times),
            "max_s": max(self.times),
            "gb_per_s_5_streams": self.gbps(),
            "share_of_roofline": share,
        }


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _calls_per_sample(step: Step) -> int:
    """As many calls as take about SAMPLE_SECONDS (at least one)."""
    started = time.perf_counter()
    step()
    once = max(time.perf_counter() - started, 1e-7)
    return max(1, int(SAMPLE_SECONDS / once))


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX on donation, torch on threads
        yield


def measure(
    factories: Mapping[str, Callable[[], Step]],
    elements: int,
    dtype: str,
    rounds: int,
    tick: Callable[[], None],
    bytes_per_element: int | None = None,
) -> list[Result]:
    """Time every implementation, interleaved over ``rounds`` rounds."""
    results = [
        Result(name, elements, dtype, bytes_per_element=bytes_per_element) for name in factories
    ]
    steps: list[tuple[Result, Step, int]] = []
    with _quiet():
        for result, factory in zip(results, factories.values(), strict=True):
            try:
                step = factory()
                step()  # compile, allocate state
                steps.append((result, step, _calls_per_sample(step)))
            except UnavailableError as reason:
                result.skipped = str(reason)
        for round_ in range(rounds):
            # Each round starts one implementation later: every one follows every other
            # equally often (what ran before can slow the next one, see PAUSE).
            first = round_ % len(steps) if steps else 0
            for result, step, calls in steps[first:] + steps[:first]:
                time.sleep(PAUSE)
                result.times.append(timeit.timeit(step, number=calls) / calls)
            tick()
    del steps
    gc.collect()
    return results


def rounds(elements: int, quick: bool) -> int:
    """Rounds for arrays of ``elements``: fewer for big ones, whose samples are long."""
    return 3 if quick or elements >= 10**7 else 9 if elements >= 10**6 else 15


def run(sizes: tuple[int, ...], rounds_for: Callable[[int], int], model: bool) -> dict[str, Any]:
    """All measurements, as the JSON document that ``rmsprop bench`` writes."""
    implementations = _implementations()
    configurations = [(n, d) for d in DTYPES for n in sizes]
    total = sum(rounds_for(n) for n, _ in configurations)
    total += len(models()) * rounds_for(10**7) if model else 0
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {"lr": LR, "beta": BETA, "eps": EPS},
    }
    report["arrays"] = []
    with Progress("benchmark rounds", total) as bar:
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            bar.update(done)

        for n, dtype in configurations:
            factories = {
                name: functools.partial(f, n, dtype) for name, f in implementations.items()
            }
            results = measure(factories, n, dtype, rounds_for(n), tick)
            roofline = results[0] if not results[0].skipped else None
            report["arrays"] += [r.as_dict(roofline) for r in results]
        if model:
            report["models"] = []
            for case in models():
                results = measure(
                    _model_implementations(case), case.elements, case.dtype, rounds_for(10**7),
                    tick, bytes_per_element=case.bytes_per_element,
                )  # fmt: skip
                roofline = results[0] if not results[0].skipped else None
                report["models"].append({
                    "model": case.name,
                    "tensors": len(case.shapes),
                    "elements": case.elements,
                    "dtype": case.dtype,
                    "bytes_per_element": case.bytes_per_element,
                    "results": [r.as_dict(roofline) for r in results],
                })  # fmt: skip
    return report


def machine() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("rmsprop", "numpy", "numba", "torch", "jax", "optax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    layer: str | None = None
    if "numba" in sys.modules:
        try:
            layer = sys.modules["numba"].threading_layer()
        except ValueError:
            layer = None
    import os  # noqa: PLC0415

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "numba_threading_layer": layer,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


# --- reporting -------------------------------------------------------------------------------


def table(report: dict[str, Any]) -> str:
    """The report as text: one block per dtype and size, then speed-ups and ResNet-50."""
    lines = []
    rows = [r for r in report["arrays"] if "skipped" not in r]
    for dtype in DTYPES:
        for n in sorted({r["elements"] for r in rows if r["dtype"] == dtype}):
            lines.append(f"\n{dtype}, N = {n:,}")
            lines.append(HEADER)
            for r in rows:
                if r["dtype"] == dtype and r["elements"] == n:
                    lines.append(_row(r))
    skipped = {r["implementation"]: r["skipped"] for r in report["arrays"] if "skipped" in r}
    for name, reason in skipped.items():
        lines.append(f"\n(skipped {name}: {reason})")
    lines += _speedups(rows)
    for model in report.get("models", []):
        lines.append(
            f"\n{model['model']}: {model['tensors']} {model['dtype']} tensors, "
            f"{model['elements']:,} values, {model['bytes_per_element']} bytes each a step"
            f"\n{HEADER}"
        )
        for r in model["results"]:
            lines.append(
                _row(r)
                if "skipped" not in r
                else f"  {r['implementation']}: skipped ({r['skipped']})"
            )
        timed = {r["implementation"]: r["median_s"] for r in model["results"] if "skipped" not in r}
        ours = timed.get("rmsprop.torch.RMSProp")
        if ours:
            for name, seconds in timed.items():
                if name not in OURS and not name.startswith(ROOFLINE) and name != OPTAX:
                    lines.append(
                        f"  rmsprop.torch.RMSProp is {seconds / ours:.1f}x faster than {name}"
                    )
        lines += _jax_ratio(timed)
    return "\n".join(lines)


OPTAX = "optax.rmsprop (jit, donated)"


def _jax_ratio(timed: Mapping[str, float]) -> list[str]:
    """rmsprop.optax against optax.rmsprop, where both were timed."""
    if OURS_OPTAX not in timed or OPTAX not in timed:
        return []
    return [f"  {OURS_OPTAX} takes {timed[OURS_OPTAX] / timed[OPTAX]:.2f}x the time of {OPTAX}"]


WIDTH = 40
HEADER = (
    f"  {'implementation':<{WIDTH}} {'median':>10} {'(min - max)':>21} {'GB/s':>7} {'roofline':>9}"
)


def _row(r: dict[str, Any]) -> str:
    share = f"{r['share_of_roofline']:.0%}" if r.get("share_of_roofline") else ""
    spread = f"({_ms(r['min_s'])} - {_ms(r['max_s'])})"
    name, gbps = r["implementation"], r["gb_per_s_5_streams"]
    return f"  {name:<{WIDTH}} {_ms(r['median_s']):>10} {spread:>21} {gbps:7.1f} {share:>9}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds >= 1e-4 else f"{seconds * 1e6:.2f} µs"


def _speedups(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for dtype in DTYPES:
        at = {
            r["implementation"]: r["median_s"]
            for r in rows
            if r["dtype"] == dtype and r["elements"] == 10**7
        }
        ours = at.get("rmsprop.step_")
        if not ours:
            continue
        lines.append(f"\nAt N = 10,000,000 ({dtype}), rmsprop.step_ is")
        for name, seconds in at.items():
            if name not in OURS and name != ROOFLINE:
                lines.append(f"  {seconds / ours:6.1f}x faster than {name}")
        if ROOFLINE in at:
            lines.append(f"  at {at[ROOFLINE] / ours:.0%} of the roofline loop's throughput")
        lines += _jax_ratio(at)
    return lines


def plot(report: dict[str, Any], out: Path | BinaryIO) -> None:
    """Throughput against N (log axis), one panel per dtype; below, where the report has
    them, each model's whole step as a share of its flat roofline."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in report["arrays"] if "skipped" not in r]
    models = report.get("models", [])
    in_models = (r["implementation"] for m in models for r in m["results"])
    names = list(dict.fromkeys([*(r["implementation"] for r in rows), *in_models]))
    # One color per implementation in every panel, whichever of them it appears in.
    dark = plt.get_cmap("Dark2")
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"] + [dark(i) for i in range(8)]
    colors = dict(zip(names, palette * 2, strict=False))
    fig = plt.figure(figsize=(14, 11 if models else 5.5))
    grid = fig.add_gridspec(2 if models else 1, len(DTYPES))
    axes = [fig.add_subplot(grid[0, i]) for i in range(len(DTYPES))]
    for axis, dtype in zip(axes, DTYPES, strict=True):
        for name in names:
            points = sorted(
                (r["elements"], r["gb_per_s_5_streams"])
                for r in rows
                if r["implementation"] == name and r["dtype"] == dtype
            )
            if points:
                style = {"ls": "--", "color": "k"} if name == ROOFLINE else {"color": colors[name]}
                width = 2.4 if name in OURS else 1.4
                axis.semilogx(
                    *zip(*points, strict=True), marker="o", lw=width, ms=4, label=name, **style
                )
        axis.set(xlabel="N, elements per array", title=f"{dtype}: one RMSProp step on N elements")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    top = max(axis.get_ylim()[1] for axis in axes)
    for axis in axes:
        axis.set_ylim(0, top)
    axes[0].set_ylabel("throughput, GB/s (5 streams: read p, g, v; write p, v)")
    if models:
        _plot_models(fig.add_subplot(grid[1, :]), models, colors)
    cpus = report["machine"]["cpus"]
    fig.suptitle(f"rmsprop and its peers, same process, interleaved rounds ({cpus} CPUs)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_models(axis: Any, models: list[dict[str, Any]], colors: dict[str, str]) -> None:
    """Grouped bars: each model's whole optimizer step as a share of its flat roofline."""
    names = list(
        dict.fromkeys(
            r["implementation"]
            for m in models
            for r in m["results"]
            if "skipped" not in r and not r["implementation"].startswith(ROOFLINE)
        )
    )
    width = 0.84 / len(names)
    for k, name in enumerate(names):
        for i, model in enumerate(models):
            found = [r for r in model["results"] if r["implementation"] == name]
            if not found or "skipped" in found[0]:
                continue
            share = 100 * found[0]["share_of_roofline"]
            x = i + (k - (len(names) - 1) / 2) * width
            axis.bar(x, share, width, color=colors[name], label=name if i == 0 else None)
            axis.text(x, share + 1, f"{share:.0f}", ha="center", va="bottom", fontsize=6)
    axis.axhline(100, ls="--", color="k", lw=1, label=f"{ROOFLINE}: one flat pass")
    labels = [
        f"{m['model']}\n({m['tensors']} tensors, {m['elements'] / 1e6:.1f}M values)" for m in models
    ]
    axis.set_xticks(range(len(models)), labels)
    axis.set(
        ylabel="share of the roofline over the same bytes, %",
        title="one optimizer step over a model's parameters (float32 unless named)",
        ylim=(0, 115),
    )
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", ncol=3)


def save(report: dict[str, Any], out: Path) -> list[Path]:
    """Write bench.json and (with matplotlib) bench.png into ``out``; the paths written."""
    from rmsprop.cli._common import save_figure, write_bytes_atomically  # noqa: PLC0415

    write_bytes_atomically(out / "bench.json", json.dumps(report, indent=1).encode())
    written = [out / "bench.json"]
    try:
        save_figure(out / "bench.png", lambda target: plot(report, target))
    except ImportError:
        return written  # no matplotlib: the JSON and the table only
    return [*written, out / "bench.png"]
