"""The implementations ``rmsprop bench`` times: rmsprop's front ends, its peers (NumPy as
the seed writes it, ``torch.optim.RMSprop``, optax), the roofline loop, and the
model-shaped parameter sets. Peers are imported when they are timed, never before.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import rmsprop
from rmsprop import _accel
from rmsprop.bench._settings import (
    BETA,
    EPS,
    EXACT_TORCH,
    FAST_NUMPY,
    FAST_TORCH,
    LR,
    OPTAX,
    OURS_OPTAX,
    ROOFLINE,
    Factory,
    Step,
)  # fmt: skip


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
    loop = roofline_kernel()
    return lambda: loop(p, g, v)


_KERNEL: Any = None


def roofline_kernel() -> Any:
    """p += g; v += g: reads three arrays, writes two, computes nothing."""
    global _KERNEL  # noqa: PLW0603
    if _KERNEL is None:
        from numba import njit, prange  # noqa: PLC0415

        @njit(parallel=True, cache=True)
        def loop(p, g, v):  # type: ignore[no-untyped-def]
            for i in prange(p.size):
                p[i] += g[i]
                v[i] += g[i]

        _KERNEL = loop
    return _KERNEL


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


def optax_step(transform: Any, params: Any, grads: Any) -> Step:
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
    return optax_step(_optax_transform(ours), p, g)


class UnavailableError(Exception):
    """A peer that cannot run here, with the reason."""


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise UnavailableError(f"{module} is not installed") from None


def implementations() -> dict[str, Factory]:
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


# --- models -----------------------------------------------------------------------------


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


def model_implementations(model: Model) -> dict[str, Callable[[], Step]]:
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
        return optax_step(_optax_transform(ours), params, grads)

    def roofline() -> Step:
        if model.dtype == "float32":
            return _roofline(model.elements, "float32")
        kernels = _accel.load()
        if kernels is None:
            raise UnavailableError("Numba is not installed")
        rng = np.random.default_rng(0)  # bfloat16 as its 16 bits: 2 + 2 + 4 bytes read
        p, g = (rng.integers(0, 2**15, model.elements, dtype=np.uint16) for _ in range(2))
        v = np.zeros(model.elements, np.float32)
        loop = roofline_kernel()
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
