"""``float32_arithmetic=True``: one definition, the same bits on every path.

A step in float32 computes as a float32 program does: the options rounded to float32,
every operation in float32, those between options too (``1 - beta``, ``1 - lr *
weight_decay``: rmsprop._options.work_values). The Numba kernels, the NumPy arrays
without them, torch's foreach path and the Triton kernel (tests/test_triton.py) all
follow it, so each pair below agrees bit for bit; options where ``beta`` or
``lr * weight_decay`` are not float32 numbers are where a path that derived them in
float64 would differ (in most elements, with decoupled weight decay).
"""

import numpy as np
import pytest

import rmsprop
from rmsprop import _accel
from rmsprop._options import Hyperparameters, work_values

pytestmark = pytest.mark.skipif(_accel.load() is None, reason="Numba is not installed")

# Few option sets, each with many options (every one compiles kernels of its own).
OPTIONS = [
    {"beta": 0.99, "weight_decay": 0.1, "decoupled_weight_decay": True, "lr": 3e-2},
    {"beta": 0.3, "centered": True, "momentum": 0.9, "nesterov": True, "maximize": True,
     "weight_decay": 0.01, "eps_in_sqrt": False, "lr_in_momentum": False},
    {"beta": 0.999, "bias_correction": True, "centered": True},
]  # fmt: skip
#: The narrow dtypes, computed in float32 too: with the first option set only.
NARROW = [(OPTIONS[0], "float16")]


def _steps(rng, shapes, dtype, count=3):
    return [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(count)]


@pytest.mark.parametrize(("options", "dtype"), [(o, "float32") for o in OPTIONS] + NARROW, ids=repr)
def test_the_numpy_optimizer_with_and_without_its_kernels(options, dtype):
    rng = np.random.default_rng(0)
    shapes = [(1000,), (7, 3), ()]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = _steps(rng, shapes, dtype)
    results = []
    for kernels in (True, False):
        previous = _accel.set_enabled(kernels)
        try:
            params = [p.copy() for p in start]
            opt = rmsprop.RMSProp(params, **({"lr": 1e-2} | options), float32_arithmetic=True)
            with np.errstate(all="ignore"):
                for step in grads:
                    opt.step(step)
            results.append((params, opt.state_dict()["state"]))
        finally:
            _accel.set_enabled(previous)
    (ours, our_state), (theirs, their_state) = results
    for a, b in zip(ours, theirs, strict=True):
        assert a.tobytes() == b.tobytes()
    assert repr(our_state) == repr(their_state)


@pytest.mark.parametrize(
    ("options", "dtype"),
    [(o, "float32") for o in OPTIONS] + [(OPTIONS[0], "bfloat16")],
    ids=repr,
)
def test_the_torch_optimizer_on_its_kernel_and_its_foreach_path(options, dtype):
    torch = pytest.importorskip("torch")
    import rmsprop.torch  # noqa: PLC0415

    generator = torch.Generator().manual_seed(1)
    shapes = [(1000,), (7, 3), ()]
    start = [torch.randn(s, generator=generator).to(getattr(torch, dtype)) for s in shapes]
    grads = [[torch.randn(s, generator=generator).to(start[0].dtype) for s in shapes]
             for _ in range(3)]  # fmt: skip
    results = []
    for kernels in (True, False):
        previous = _accel.set_enabled(kernels)
        try:
            params = [torch.nn.Parameter(p.clone()) for p in start]
            opt = rmsprop.torch.RMSProp(params, **({"lr": 1e-2} | options), float32_arithmetic=True)
            for step in grads:
                for p, g in zip(params, step, strict=True):
                    p.grad = g.clone()
                opt.step()
            results.append((params, opt))
        finally:
            _accel.set_enabled(previous)
    (ours, our_opt), (theirs, their_opt) = results
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.view(torch.int16 if dtype == "bfloat16" else torch.int32),
                           b.view(torch.int16 if dtype == "bfloat16" else torch.int32))  # fmt: skip
        for key, value in their_opt.state[b].items():
            assert torch.equal(our_opt.state[a][key], value), key


def test_the_derived_values_are_computed_as_a_float32_program_computes_them():
    hp = Hyperparameters(lr=0.3, beta=0.99, weight_decay=0.7, decoupled_weight_decay=True)
    values = work_values(hp, float32=True)
    f32 = np.float32
    assert values.beta == f32(0.99) and values.lr == f32(0.3)
    assert values.one_minus_beta == f32(1) - f32(0.99)
    assert values.one_minus_beta != f32(1 - 0.99)  # the case has teeth: float64 differs
    assert values.one_minus_lr_weight_decay == f32(1) - f32(0.3) * f32(0.7)
    assert values.one_minus_lr_weight_decay != f32(1 - 0.3 * 0.7)
    assert values.decoupled_weight_decay is True and values.maximize is False
    assert work_values(hp, float32=False) is hp  # float64: the options themselves
