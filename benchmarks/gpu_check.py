"""rmsprop on a GPU: bit-identity of the Triton kernel, then speed and memory against peers.

Runs from the source tree with the machine's own packages (PyTorch, Triton; NumPy)::

    PYTHONPATH=src python benchmarks/gpu_check.py --out DIR      # on a CUDA machine
    PYTHONPATH=src python benchmarks/gpu_check.py --device cpu --quick --out DIR

``--device cpu`` runs the same script on CPU tensors under Triton's interpreter
(tiny sizes, no torch.compile): the test suite uses it to keep this script working.

1. **Exactness**: the Triton kernel against the ``torch._foreach_*`` path of
   ``rmsprop.torch`` on the device, for option combinations and storage dtypes,
   bit for bit in float64 arithmetic; float32 arithmetic reports its largest
   difference in float32 ulps.
2. **Speed**: one optimizer step, timed with CUDA events in interleaved rounds
   (each round times every implementation once), medians with min and max, for
   flat tensors (float32, and bfloat16 parameters with float32 state) and the
   ResNet-50 and BERT-base parameter sets (allocated one by one, and flattened by
   ``rmsprop.torch.flatten_``; and with ``state_bits=16``: bfloat16 state rounded
   stochastically, 16 bytes per element where the roofline moves 20); the roofline is
   a Triton kernel that moves the same bytes and computes nothing (read p, g, v;
   write p, v).
3. **Memory**: the peak of memory allocated during one step beyond what was
   allocated before it, against the parameters' bytes.
4. **Costs**: the cold compile of each kernel, and the host time of one step
   over 10, 161 (ResNet-50's count), 199 (BERT-base's) and 1,000 small tensors,
   flattened by ``rmsprop.torch.flatten_`` and not.
5. **CUDA graphs**: whether a flattened group's kept step can be captured with
   ``torch.cuda.graph`` as it is and replayed bit for bit like eager steps, the
   learning rate changed between replays (a probe: rmsprop does not capture yet).

Writes ``gpu_check.json``, ``gpu_check.png`` and prints the tables.
"""

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--device", default="cuda")
parser.add_argument("--quick", action="store_true", help="small sizes, few rounds")
parser.add_argument("--rounds", type=int, default=None)
parser.add_argument("--out", type=Path, default=Path("rmsprop-gpu-check"))
parser.add_argument("--no-compile", action="store_true", help="skip torch.compile peers")
parser.add_argument("--plot", type=Path, help="only redraw the figure of this gpu_check.json")
ARGS = parser.parse_args()
ON_CPU = ARGS.device == "cpu"
if ON_CPU:  # before Triton is imported: kernels run on CPU tensors, interpreted
    os.environ["TRITON_INTERPRET"] = "1"
# A cold Triton cache, so that compile times are first-use times.
os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="rmsprop-triton-"))

# A kernel or launch path that turns itself off must fail this check, not hide in it.
warnings.filterwarnings("error", message="rmsprop", category=RuntimeWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

import rmsprop.torch  # noqa: E402
from rmsprop import _accel, _triton  # noqa: E402
from rmsprop._options import Hyperparameters  # noqa: E402
from rmsprop.bench import bert_base_shapes, resnet50_shapes  # noqa: E402
from rmsprop.torch import _spans  # noqa: E402

DEVICE = torch.device(ARGS.device)
if ON_CPU:
    rmsprop._dispatch.GPU_DEVICE_TYPES = ("cpu",)
    _accel.set_enabled(False)  # CPU tensors to the Triton kernel, not to Numba
ROUNDS = ARGS.rounds or (3 if ARGS.quick else 15)
LR, BETA, EPS = 1e-3, 0.99, 1e-8
REPORT: dict[str, Any] = {"exactness": [], "speed": [], "memory": [], "costs": {}}


def log(*args: Any) -> None:
    print(*args, flush=True)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def save() -> None:
    ARGS.out.mkdir(parents=True, exist_ok=True)
    (ARGS.out / "gpu_check.json").write_text(json.dumps(REPORT, indent=1))


# --- 1. exactness ---------------------------------------------------------------------------


def members(sizes: list[int], p_dtype: torch.dtype, s_dtype: torch.dtype, seed: int) -> list[Any]:
    """Parameters, gradients and full state; with special values and odd layouts."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i, n in enumerate(sizes):

        def make(
            scale: float,
            positive: bool = False,
            dtype: torch.dtype = s_dtype,
            i: int = i,
            n: int = n,
        ) -> Any:
            x = torch.randn(n + 1, generator=generator, dtype=torch.float64) * scale
            x = x.abs() if positive else x
            return x.to(DEVICE, dtype)[1:] if i % 3 == 2 else x[:n].to(DEVICE, dtype)  # unaligned

        p, g = make(1.0, dtype=p_dtype), make(1.0, dtype=p_dtype)
        if n > 8:
            g[:4] = torch.tensor([0.0, float("inf"), float("nan"), 1e30], dtype=torch.float64)
        out.append((p, g, [make(0.1, positive=True), make(0.1), make(0.1)]))
    if len(sizes) > 1:  # transposed but dense, as from a .t() of a weight
        shape = (37, 19)
        t = [torch.randn(shape, generator=generator).to(DEVICE, d).t() for d in (p_dtype,) * 2]
        state = [torch.rand(shape, generator=generator).to(DEVICE, s_dtype).t() for _ in range(3)]
        out.append((t[0], t[1], state))
    return out


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-identical values, NaN equal to NaN."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    x, y = (t.float().view(torch.int32).long() for t in (a, b))
    finite = a.float().isfinite() & b.float().isfinite()
    return int((x - y).abs()[finite].max()) if bool(finite.any()) else 0


OPTION_SETS: list[dict[str, Any]] = [
    {},
    {"momentum": 0.9},
    {"centered": True},
    {"momentum": 0.9, "centered": True},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "momentum": 0.9, "centered": True, "maximize": True},
    {"momentum": 0.9, "nesterov": True, "lr_in_momentum": True},
    {"eps_in_sqrt": True, "decoupled_weight_decay": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "centered": True, "eps_in_sqrt": True},
]
DTYPE_PAIRS = [
    (torch.float32, torch.float32),
    (torch.float64, torch.float64),
    (torch.bfloat16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float32),
    (torch.float16, torch.float16),
]


def check_exactness() -> None:
    sizes = [0, 1, 17, 1000] if ARGS.quick else [0, 1, 17, 1000, 16384 + 3, 100_000, 1 << 20]
    kwargs = {"chunk": 1 << 14, "block": 1 << 14} if ON_CPU else {}
    cases = [(o, d) for o in OPTION_SETS for d in DTYPE_PAIRS[:1]]
    cases += [(OPTION_SETS[5], d) for d in DTYPE_PAIRS[1:]]
    for seed, (options, (p_dtype, s_dtype)) in enumerate(cases):
        hp = Hyperparameters.from_preset("pytorch", **options)
        for float32 in (False, True) if p_dtype == s_dtype == torch.float32 else (False,):
            ours = members(sizes, p_dtype, s_dtype, seed)
            theirs = [(p.clone(), g.clone(), [b.clone() for b in bs]) for p, g, bs in ours]
            with np.errstate(all="ignore"):
                _triton.update(ours, hp, float32_arithmetic=float32, **kwargs)
            work = torch.float32 if float32 else torch.float64
            rmsprop.torch._foreach.foreach_update(theirs, hp, work, 1.0)
            pairs = [
                (x, y)
                for (p, _, bs), (q, _, cs) in zip(ours, theirs, strict=True)
                for x, y in zip([p, *bs], [q, *cs], strict=True)
            ]
            identical = all(same(x, y) for x, y in pairs)
            worst = max(ulps(x, y) for x, y in pairs if x.numel())
            row = {
                "options": options,
                "params": str(p_dtype).removeprefix("torch."),
                "state": str(s_dtype).removeprefix("torch."),
                "arithmetic": "float32" if float32 else "float64",
                "bit_identical": identical,
                "max_ulps_float32": worst,
            }
            REPORT["exactness"].append(row)
            log(f"exact {'yes' if identical else 'NO '} {row}")
    save()


FLAGS = ("maximize", "centered", "eps_in_sqrt", "nesterov", "lr_in_momentum",
         "decoupled_weight_decay", "momentum", "weight_decay", "bias_correction")  # fmt: skip


def check_stochastic_state() -> None:
    """bfloat16 state rounded stochastically (``state_bits=16``): the Triton kernel on the
    device against the Numba kernel on CPU copies of the same tensors, bit for bit (the
    draws of rmsprop._random, the same rounding), in float64 and float32 arithmetic."""
    from rmsprop import _kernels  # noqa: PLC0415 - Numba: the CPU reference

    sizes = [1, 17, 1000] if ARGS.quick else [1, 17, 1000, 16384 + 3, 1 << 20]
    sizing = {"chunk": 1 << 14, "block": 1 << 14} if ON_CPU else {}
    cases = ({}, {"momentum": 0.9, "centered": True, "weight_decay": 0.1})
    for options, f32 in itertools.product(cases, (False, True)):
        hp = Hyperparameters.from_preset("pytorch", lr=LR, **options)
        on_device = members(sizes, torch.float32, torch.bfloat16, seed=11)
        on_cpu = [(p.cpu(), g.cpu(), [b.cpu() for b in s]) for p, g, s in on_device]
        counters = [torch.tensor(float(k), device=DEVICE) for k in range(len(on_device))]
        streams = list(range(len(on_device)))
        with np.errstate(all="ignore"):
            _triton.Launch(
                on_device,
                hp,
                float32_arithmetic=f32,
                stochastic=(counters, streams, 1234),
                **sizing,
            )([g for _, g, _ in on_device], hp)
            cpu_counters = [c.cpu() for c in counters]
            _kernels.Launch(
                on_cpu, hp, float32_arithmetic=f32, stochastic=(cpu_counters, streams, 1234)
            )([g for _, g, _ in on_cpu], hp)
        sync()
        identical = all(
            same(a.cpu(), b) if a.dtype != torch.bfloat16
            else torch.equal(a.cpu().view(torch.int16), b.view(torch.int16))
            for (p, _, s), (q, _, t) in zip(on_device, on_cpu, strict=True)
            for a, b in zip((p, *s), (q, *t), strict=True)
        )  # fmt: skip
        arithmetic = "float32" if f32 else "float64"
        row = (
            f"state_bits=16 (stochastic bfloat16 state), {arithmetic} arithmetic, "
            f"{options or 'the seed rule'}"
        )
        REPORT["exactness"].append({"options": row, "bit_identical": identical})
        log(f"exact {'yes' if identical else 'NO '} {row}, Triton against the CPU kernel")
    save()


def check_blockwise_state() -> None:
    """8-bit blockwise state (``state_bits=8``): the Triton kernel on the device against
    the Numba kernel on CPU copies of the same tensors, bit for bit (parameters, codes,
    scales), in float64 and float32 arithmetic (float32: one definition on both,
    rmsprop._options.work_values)."""
    from rmsprop import _blockwise, _kernels  # noqa: PLC0415 - Numba: the CPU reference

    sizes = [1, 300, 5000] if ARGS.quick else [1, 300, 5000, 16384 + 3, 1 << 20]
    for options in ({}, {"momentum": 0.9, "centered": True, "weight_decay": 0.1}):
        hp = Hyperparameters.from_preset("pytorch", lr=LR, **options)
        used = ("square_avg", "momentum_buffer" if hp.momentum else None,
                "grad_avg" if hp.centered else None)  # fmt: skip
        generator = torch.Generator().manual_seed(13)
        on_cpu, scales_cpu = [], []
        for n in sizes:
            p, g = torch.randn(n, generator=generator), torch.randn(n, generator=generator)
            codes, scales = [], []
            for key in used:
                if key is None:
                    codes.append(None)
                    scales.append(None)
                    continue
                x = torch.randn(n, generator=generator).double() ** 2
                c, s = _blockwise.encode(x.numpy(), _blockwise.CODES[key])
                codes.append(torch.from_numpy(c))
                scales.append(torch.from_numpy(s))
            on_cpu.append((p, g, codes))
            scales_cpu.append(scales)
        to = lambda t: None if t is None else t.to(DEVICE)  # noqa: E731
        on_device = [(to(p), to(g), [to(c) for c in cs]) for p, g, cs in on_cpu]
        scales_device = [[to(s) for s in ss] for ss in scales_cpu]
        streams = list(range(len(sizes)))
        counters = [torch.tensor(float(k)) for k in streams]
        for f32 in (False, True):
            device_copy = [(p.clone(), g, [to(c) for c in cs]) for p, g, cs in on_device]
            device_scales = [[None if s is None else s.clone() for s in ss] for ss in scales_device]
            cpu_copy = [(p.clone(), g, [None if c is None else c.clone() for c in cs])
                        for p, g, cs in on_cpu]  # fmt: skip
            cpu_scales = [[None if s is None else s.clone() for s in ss] for ss in scales_cpu]
            with np.errstate(all="ignore"):
                _triton.Launch(
                    device_copy, hp, float32_arithmetic=f32,
                    stochastic=([c.to(DEVICE) for c in counters], streams, 77),
                    scales=device_scales,
                )([g for _, g, _ in device_copy], hp)  # fmt: skip
                _kernels.Launch(
                    cpu_copy, hp, float32_arithmetic=f32, stochastic=(counters, streams, 77),
                    scales=cpu_scales,
                )([g for _, g, _ in cpu_copy], hp)  # fmt: skip
            sync()
            pairs = [
                (a, b)
                for (p, _, cs), (q, _, ds), ss, ts in zip(
                    device_copy, cpu_copy, device_scales, cpu_scales, strict=True
                )
                for a, b in zip((p, *cs, *ss), (q, *ds, *ts), strict=True)
                if a is not None
            ]
            identical = all(same(a.cpu(), b) for a, b in pairs)
            arithmetic = "float32" if f32 else "float64"
            row = (
                f"state_bits=8 (8-bit codes), {arithmetic} arithmetic, {options or 'the seed rule'}"
            )
            REPORT["exactness"].append({"options": row, "bit_identical": identical})
            log(f"exact {'yes' if identical else 'NO '} {row}, Triton against the CPU kernel")
    save()


def check_every_option_combination() -> None:
    """Every option combination (the tests run a covering set under the interpreter), in
    float64 and float32 arithmetic, against the foreach path: bit for bit."""
    sizes = [1, 17, 1000] if ARGS.quick else [0, 1, 17, 1000, 16384 + 3, 100_000]
    kwargs = {"chunk": 1 << 14, "block": 1 << 14} if ON_CPU else {}
    combinations = list(itertools.product((False, True), repeat=len(FLAGS)))
    if ARGS.quick:  # the interpreter: one in sixteen, still every option on and off
        combinations = combinations[::16] + combinations[-1:]
    total, failures = 0, []
    for seed, values in enumerate(combinations):
        options = dict(zip(FLAGS, values, strict=True))
        if options["nesterov"] and not options["momentum"]:
            continue
        options["momentum"] = 0.9 if options["momentum"] else 0.0
        options["weight_decay"] = 0.1 if options["weight_decay"] else 0.0
        hp = Hyperparameters.from_preset("pytorch", **options)
        correction = hp.correction(3)
        for float32 in (False, True):
            ours = members(sizes, torch.float32, torch.float32, seed)
            theirs = [(p.clone(), g.clone(), [b.clone() for b in bs]) for p, g, bs in ours]
            with np.errstate(all="ignore"):
                _triton.update(
                    ours, hp, float32_arithmetic=float32, correction=correction, **kwargs
                )
            work = torch.float32 if float32 else torch.float64
            rmsprop.torch._foreach.foreach_update(theirs, hp, work, correction)
            total += 1
            if not all(
                same(x, y)
                for (p, _, bs), (q, _, cs) in zip(ours, theirs, strict=True)
                for x, y in zip([p, *bs], [q, *cs], strict=True)
            ):
                failures.append({"options": options, "float32_arithmetic": float32})
    REPORT["every_option_combination"] = {
        "runs": total, "bit_identical": total - len(failures), "failures": failures,
    }  # fmt: skip
    log(f"every option combination: {total - len(failures)}/{total} bit-identical")
    save()
    if failures:
        raise AssertionError(f"{len(failures)} option combinations differ: {failures[:3]}")


def check_optimizer_on_a_model() -> None:
    """rmsprop.torch.RMSProp with and without the kernel, 20 steps of a small network."""
    results = []
    for enabled, flat in ((True, False), (False, False), (True, True)):
        previous = _accel.set_triton_enabled(enabled)
        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(392, 4)
        ).to(DEVICE, memory_format=torch.channels_last)
        if flat:
            rmsprop.torch.flatten_(net)
        opt = rmsprop.torch.RMSProp(net.parameters(), preset="pytorch", momentum=0.9, lr=1e-2)
        x, y = torch.randn(16, 3, 9, 9, device=DEVICE), torch.randn(16, 4, device=DEVICE)
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x.to(memory_format=torch.channels_last)), y).backward()
            opt.step()
        results.append([p.detach().clone() for p in net.parameters()])
        _accel.set_triton_enabled(previous)
    for name, other in (("foreach path", results[1]), ("flatten_", results[2])):
        identical = all(same(a, b) for a, b in zip(results[0], other, strict=True))
        row = f"20 steps of a channels_last CNN, kernel against {name}"
        REPORT["exactness"].append({"options": row, "bit_identical": identical})
        log(f"exact {'yes' if identical else 'NO '} optimizer, {row}")
    save()


def probe_cuda_graph() -> None:
    """Whether a flattened group's kept step, as it is, can be captured in a CUDA graph
    (``torch.cuda.graph``) and replayed: six steps eagerly against two eager steps, a
    capture and four replays, with the learning rate halved before the fifth step in
    both. Records what happened (the error, where capture fails) rather than failing:
    the answer is what the check is for (rmsprop does not capture its steps yet)."""
    if DEVICE.type != "cuda":
        log("CUDA graph probe: needs a CUDA device, skipped")
        return
    shapes = [(64, 3, 7, 7), (64,), (64,), (256, 64), (256,), (10, 256), (10,)]
    outcome: dict[str, Any] = {}
    results = []
    for graphed in (False, True):
        params = tensors(shapes, torch.float32, seed=3)
        rmsprop.torch.flatten_(params)
        opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=LR, momentum=0.9)
        generator = torch.Generator(device=DEVICE).manual_seed(4)
        grads = [[torch.randn(p.shape, device=DEVICE, generator=generator) for p in params]
                 for _ in range(6)]  # fmt: skip

        def load(k: int, params: list[Any] = params, grads: list[Any] = grads) -> None:
            for p, g in zip(params, grads[k], strict=True):
                p.grad.copy_(g)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # the warm-up steps (plans kept), off the default stream
            for k in range(2):
                load(k)
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = None
        if graphed:
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    opt.step()
                outcome["captured"] = True
            except Exception as error:  # what fails is the finding
                outcome.update(captured=False, error=f"{type(error).__name__}: {error}")
                log(f"CUDA graph probe: capture failed: {outcome['error']}")
                break
        for k in range(2, 6):
            if k == 4:
                opt.param_groups[0]["lr"] = LR / 2
            load(k)
            if graph is None:
                opt.step()
            else:
                graph.replay()
        sync()
        results.append([p.detach().clone() for p in params])
    if len(results) == 2:
        outcome["bit_identical_with_lr_change"] = all(
            same(a, b) for a, b in zip(*results, strict=True)
        )
        log(f"CUDA graph probe: {outcome}")
    REPORT["cuda_graph"] = outcome
    save()


# --- 2. speed ---------------------------------------------------------------------------------


@triton.jit
def _copy_kernel(p, g, v, n, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]  # noqa: N803
    """p += g; v += g: the five streams of an RMSProp step and no arithmetic to speak of."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    gradient = tl.load(g + offsets, mask=mask)
    tl.store(
        p + offsets, tl.load(p + offsets, mask=mask) + gradient.to(p.dtype.element_ty), mask=mask
    )
    tl.store(
        v + offsets, tl.load(v + offsets, mask=mask) + gradient.to(v.dtype.element_ty), mask=mask
    )


def tensors(shapes: list[tuple[int, ...]], dtype: torch.dtype, seed: int = 0) -> list[Any]:
    generator = torch.Generator(device=DEVICE).manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, device=DEVICE, generator=generator).to(dtype))
        p.grad = torch.randn(shape, device=DEVICE, generator=generator).to(dtype)
        params.append(p)
    return params


def peers(shapes: list[tuple[int, ...]], mixed: bool) -> dict[str, Callable[[], Callable[[], Any]]]:
    """Factories of one-step callables; ``mixed``: bfloat16 params (our state float32)."""
    dtype = torch.bfloat16 if mixed else torch.float32
    n = sum(math.prod(s) for s in shapes)

    def roofline() -> Callable[[], Any]:
        p = torch.randn(n, device=DEVICE).to(dtype)
        g = torch.randn(n, device=DEVICE).to(dtype)
        v = torch.zeros(n, device=DEVICE)
        block = 1 << 14 if ON_CPU else 4096
        grid = (triton.cdiv(n, block),)
        return lambda: _copy_kernel[grid](p, g, v, n, BLOCK=block)

    def ours(flat: bool = False, spans: bool = True, **kw: Any) -> Callable[[], Any]:
        state = torch.float32 if mixed else None
        params = tensors(shapes, dtype)
        if flat:  # gradients keep their values, copied into the flat buffer
            rmsprop.torch.flatten_(params)
        opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=LR, state_dtype=state, **kw)
        if not spans:  # the first step builds the plan the later ones keep: without spans
            with mock.patch.object(_spans, "span", return_value=None):
                opt.step()
        return opt.step

    def ours_foreach() -> Callable[[], Any]:
        step = ours()

        def run() -> None:
            previous = _accel.set_triton_enabled(False)
            step()
            _accel.set_triton_enabled(previous)

        return run

    def torch_rmsprop(**kw: Any) -> Callable[[], Any]:
        return torch.optim.RMSprop(tensors(shapes, dtype), lr=LR, alpha=BETA, eps=EPS, **kw).step

    def compiled() -> Callable[[], Any]:
        opt = torch.optim.RMSprop(tensors(shapes, dtype), lr=LR, alpha=BETA, eps=EPS)

        @torch.compile(fullgraph=False)
        def step() -> None:
            opt.step()

        started = time.perf_counter()
        step()
        step()
        sync()
        key = f"torch.compile, first two steps, {n:,} elements in {len(shapes)} tensors, s"
        REPORT["costs"][key] = time.perf_counter() - started
        return step

    def adam() -> Callable[[], Any]:
        return torch.optim.Adam(tensors(shapes, dtype), lr=LR, fused=True).step

    bytes_note = "14 B" if mixed else "20 B"
    factories: dict[str, Callable[[], Callable[[], Any]]] = {
        f"roofline: 5-stream copy ({bytes_note}/element)": roofline,
        "rmsprop.torch.RMSProp (Triton, float64 arithmetic)": ours,
        "rmsprop.torch.RMSProp (Triton, float32 arithmetic)": lambda: ours(float32_arithmetic=True),
        "torch.optim.RMSprop (foreach)": lambda: torch_rmsprop(foreach=True),
        "torch.optim.RMSprop (for-loop)": lambda: torch_rmsprop(foreach=False),
        "torch.optim.Adam (fused), for reference": adam,
    }
    if not mixed:  # float32 parameters, their state in bfloat16 rounded stochastically
        factories["rmsprop.torch.RMSProp (Triton, float32 arithmetic), state_bits=16"] = lambda: (
            ours(float32_arithmetic=True, state_bits=16)
        )
        # and in 8-bit codes: 14 bytes an element (the 20-byte roofline above is not its own)
        factories["rmsprop.torch.RMSProp (Triton, float32 arithmetic), state_bits=8"] = lambda: (
            ours(float32_arithmetic=True, state_bits=8)
        )
    if len(shapes) > 1:  # model sets: parameters and gradients in one buffer each
        factories["rmsprop.torch.RMSProp (Triton, float64 arithmetic), flatten_"] = lambda: ours(
            flat=True
        )
        factories["rmsprop.torch.RMSProp (Triton, float32 arithmetic), flatten_"] = lambda: ours(
            flat=True, float32_arithmetic=True
        )
        # the same launch member by member, not over one stretch of each flat buffer
        factories["rmsprop.torch.RMSProp (Triton, float32 arithmetic), flatten_, no span"] = (
            lambda: ours(flat=True, spans=False, float32_arithmetic=True)
        )
    if len(shapes) == 1 and n <= (1 << 24):
        factories["rmsprop.torch.RMSProp (foreach path, no Triton)"] = ours_foreach
    if not (ON_CPU or ARGS.no_compile or mixed or len(shapes) > 170):  # BERT: minutes
        factories["torch.optim.RMSprop (torch.compile)"] = compiled
    return factories


def time_calls(step: Callable[[], Any], calls: int) -> float:
    if DEVICE.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            step()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3 / calls
    started = time.perf_counter()
    for _ in range(calls):
        step()
    return (time.perf_counter() - started) / calls


def bench(case: str, shapes: list[tuple[int, ...]], mixed: bool) -> None:
    n = sum(math.prod(s) for s in shapes)
    log(f"\n== {case}: {len(shapes)} tensors, {n:,} elements")
    steps: dict[str, Callable[[], Any]] = {}
    calls: dict[str, int] = {}
    for name, factory in peers(shapes, mixed).items():
        try:
            steps[name] = factory()
            steps[name]()
            sync()
        except Exception as error:  # a peer this torch lacks: note it, go on
            log(f"   skipped {name}: {type(error).__name__}: {str(error)[:200]}")
            steps.pop(name, None)
            continue
        once = max(time_calls(steps[name], 1), 1e-6)
        calls[name] = max(1, min(200, int(0.02 / once)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(ROUNDS):
        for name, step in steps.items():
            times[name].append(time_calls(step, calls[name]))
    roofline = statistics.median(next(iter(times.values())))
    stream_bytes = n * (14 if mixed else 20)
    for name, samples in times.items():
        median = statistics.median(samples)
        row = {
            "case": case,
            "implementation": name,
            "tensors": len(shapes),
            "elements": n,
            "median_s": median,
            "min_s": min(samples),
            "max_s": max(samples),
            "share_of_roofline": roofline / median,
            "gb_per_s": stream_bytes / median / 1e9,
        }
        REPORT["speed"].append(row)
        log(
            f"   {name:55s} {median * 1e3:9.3f} ms  [{min(samples) * 1e3:.3f}, "
            f"{max(samples) * 1e3:.3f}]  {row['gb_per_s']:7.0f} GB/s  "
            f"{roofline / median:5.0%} of roofline"
        )
    del steps
    save()


# --- 3. memory and 4. costs ------------------------------------------------------------------


def memory(case: str, shapes: list[tuple[int, ...]], triton_on: bool, mixed: bool) -> None:
    if DEVICE.type != "cuda":
        return
    dtype = torch.bfloat16 if mixed else torch.float32
    params = tensors(shapes, dtype)
    opt = rmsprop.torch.RMSProp(
        params, preset="pytorch", lr=LR, momentum=0.9, centered=True,
        state_dtype=torch.float32 if mixed else None,
    )  # fmt: skip
    previous = _accel.set_triton_enabled(triton_on)
    opt.step()  # creates the state
    sync()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    opt.step()
    sync()
    extra = torch.cuda.max_memory_allocated() - before
    _accel.set_triton_enabled(previous)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    row = {
        "case": case,
        "path": "Triton kernel" if triton_on else "foreach path (no Triton)",
        "param_bytes": param_bytes,
        "extra_bytes": extra,
        "share_of_params": extra / param_bytes,
    }
    REPORT["memory"].append(row)
    log(f"   memory {row}")
    save()


def costs() -> None:
    # Cold compile: a kernel (options, dtypes) not used before, in a cold cache.
    hp = Hyperparameters.from_preset("pytorch", momentum=0.3, centered=True, weight_decay=0.2)
    group = members([1000], torch.float32, torch.float32, 99)
    started = time.perf_counter()
    with np.errstate(all="ignore"):
        _triton.update(group, hp, **({"chunk": 1 << 14, "block": 1 << 14} if ON_CPU else {}))
    sync()
    REPORT["costs"]["triton kernel cold compile, s"] = time.perf_counter() - started

    # Host time of one step over N small tensors (what the Python side costs): the time
    # step() takes to return, the device not waited for.
    def flattened(params: list[Any]) -> Any:
        rmsprop.torch.flatten_(params)
        return rmsprop.torch.RMSProp(params, preset="pytorch", lr=LR)

    makers = (
        ("rmsprop.torch.RMSProp", lambda p: rmsprop.torch.RMSProp(p, preset="pytorch", lr=LR)),
        ("rmsprop.torch.RMSProp, flatten_", flattened),
        ("torch.optim.RMSprop (foreach)", lambda p: torch.optim.RMSprop(p, lr=LR, foreach=True)),
        ("torch.optim.Adam (fused)", lambda p: torch.optim.Adam(p, lr=LR, fused=True)),
    )
    counts = (10, 50) if ARGS.quick else (10, 161, 199, 1000)
    for count, (name, make) in itertools.product(counts, makers):
        try:
            opt = make(tensors([(100,)] * count, torch.float32))
        except Exception as error:
            log(f"   skipped {name}: {error}")
            continue
        for _ in range(3):
            opt.step()
        sync()
        samples = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            opt.step()
            samples.append(time.perf_counter() - started)
            sync()
        REPORT["costs"][f"host time per step, {count} tensors: {name}, us"] = (
            statistics.median(samples) * 1e6
        )
    # Host time of one launch, through Triton's JIT and straight to the compiled kernel.
    tiny = members([100], torch.float32, torch.float32, 7)
    for fast in (False, True):
        _triton.FAST_LAUNCH = fast
        samples = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            with np.errstate(all="ignore"):
                _triton.update(tiny, hp)
            samples.append(time.perf_counter() - started)
            sync()
        REPORT["costs"][f"host time per launch, {'direct' if fast else 'through the JIT'}, us"] = (
            statistics.median(samples) * 1e6
        )
    _triton.FAST_LAUNCH = True
    log(f"   costs {json.dumps(REPORT['costs'], indent=1)}")
    save()


def sweep() -> None:
    """The kernel's time at 10^8 elements for other chunk, block and warp counts."""
    if ON_CPU:
        return
    hp = Hyperparameters.from_preset("pytorch")
    rows = REPORT.setdefault("sweep", [])
    for p_dtype, s_dtype in ((torch.float32, torch.float32), (torch.bfloat16, torch.float32)):
        n = 10**8
        group = [
            (
                torch.randn(n, device=DEVICE).to(p_dtype),
                torch.randn(n, device=DEVICE).to(p_dtype),
                [torch.rand(n, device=DEVICE).to(s_dtype), None, None],
            )
        ]
        for chunk, block, warps in [
            (1 << 14, 1 << 9, 4), (1 << 14, 1 << 10, 4), (1 << 14, 1 << 10, 8),
            (1 << 14, 1 << 9, 2), (1 << 13, 1 << 9, 4), (1 << 12, 1 << 9, 4),
            (1 << 15, 1 << 9, 4), (1 << 14, 1 << 8, 2), (1 << 14, 1 << 9, 8),
        ]:  # fmt: skip
            for float32 in (False, True):

                def step(chunk: int = chunk, block: int = block, warps: int = warps,
                         float32: bool = float32, group: Any = group) -> None:  # fmt: skip
                    _triton.update(group, hp, float32_arithmetic=float32, chunk=chunk,
                                   block=block, warps=warps)  # fmt: skip

                step()
                sync()
                median = statistics.median(time_calls(step, 20) for _ in range(5))
                row = {
                    "dtypes": f"{p_dtype}/{s_dtype}", "chunk": chunk, "block": block,
                    "warps": warps, "float32_arithmetic": float32, "median_s": median,
                    "gb_per_s": n * (20 if p_dtype == torch.float32 else 14) / median / 1e9,
                }  # fmt: skip
                rows.append(row)
                log(f"   sweep {row}")
    save()


def plot() -> None:
    """Share of the roofline per case and implementation, one bar each; the roofline at 100%."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return
    rows = [r for r in REPORT["speed"] if not r["implementation"].startswith("roofline")]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    names = list(dict.fromkeys(r["implementation"] for r in rows))
    colors = dict(zip(names, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2, strict=False))
    fig, axis = plt.subplots(figsize=(13, 6.5))
    width = 0.84 / len(names)
    for i, name in enumerate(names):
        share = {
            r["case"]: 100 * r["share_of_roofline"] for r in rows if r["implementation"] == name
        }
        positions = [
            k + (i - len(names) / 2 + 0.5) * width for k, c in enumerate(cases) if c in share
        ]
        values = [share[c] for c in cases if c in share]
        bars = axis.bar(positions, values, width, label=name, color=colors[name])
        axis.bar_label(bars, fmt="%.0f", fontsize=6, padding=1)
    axis.axhline(
        100, color="k", ls="--", lw=1, label="roofline: a copy kernel moving the same bytes"
    )
    axis.set_xticks(range(len(cases)), cases, fontsize=9)
    axis.set_ylim(0, 112)
    axis.set_ylabel("% of the roofline (higher is faster)")
    device = REPORT["machine"]["device"]
    axis.set_title(
        f"One optimizer step on {device}: medians of interleaved rounds, as a share of the time "
        "of a kernel that only moves the step's bytes"
        if len(device) < 20
        else f"One optimizer step on {device}",
        fontsize=10,
    )
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(ARGS.out / "gpu_check.png", dpi=110)
    plt.close(fig)


def main() -> None:
    REPORT["machine"] = {
        "device": torch.cuda.get_device_name(DEVICE)
        if DEVICE.type == "cuda"
        else "CPU (Triton interpreter)",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "python": sys.version.split()[0],
    }
    log(REPORT["machine"])
    flat = [10**4] if ARGS.quick else [10**7, 10**8]
    models = {"ResNet-50": resnet50_shapes(), "BERT-base": bert_base_shapes()}
    if ARGS.quick:
        models = {"three tensors": [(3, 5), (7,), (2, 3, 4)]}
    sections: list[Callable[[], None]] = [
        check_exactness, check_every_option_combination, check_optimizer_on_a_model,
        check_stochastic_state, check_blockwise_state, costs,
    ]  # fmt: skip
    for n in flat:
        sections.append(lambda n=n: bench(f"flat {n:.0e} float32", [(n,)], mixed=False))
        sections.append(lambda n=n: bench(f"flat {n:.0e} bf16, f32 state", [(n,)], mixed=True))
    for case, shapes in models.items():
        sections.append(lambda c=case, s=shapes: bench(f"{c} float32", s, mixed=False))
    bert = bert_base_shapes()
    sections += [
        lambda: memory("flat 1e8 float32, momentum + centered", [(10**8,)], True, False),
        lambda: memory("flat 1e8 float32, momentum + centered", [(10**8,)], False, False),
        lambda: memory("BERT-base bf16, f32 state, momentum + centered", bert, True, True),
        lambda: memory("BERT-base bf16, f32 state, momentum + centered", bert, False, True),
        sweep,
        probe_cuda_graph,  # last of the device's sections: a failed capture may leave it unwell
        plot,
    ]
    failed = 0
    for section in sections:  # one failing section must not cost the others' numbers
        try:
            section()
        except Exception:
            failed += 1
            log(traceback.format_exc())
        if DEVICE.type == "cuda":
            torch.cuda.empty_cache()
    save()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if ARGS.plot:
        REPORT = json.loads(ARGS.plot.read_text())
        ARGS.out.mkdir(parents=True, exist_ok=True)
        plot()
    else:
        main()
