"""The torch._foreach_* path of rmsprop.torch: bounded batches, every layout, same numbers."""

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402

from memory import extra_bytes  # noqa: E402


@pytest.fixture(autouse=True)
def foreach_only():
    """The fused kernels off: every parameter takes the foreach path."""
    previous = _accel.set_enabled(False)
    yield
    _accel.set_enabled(previous)


def low_precision_params():
    """float16 and bfloat16 parameters (the foreach path's usual CPU work)."""
    generator = torch.Generator().manual_seed(0)
    out = [
        torch.nn.Parameter(torch.randn(1000, generator=generator).to(torch.bfloat16)),
        torch.nn.Parameter(torch.randn(3, generator=generator).to(torch.float16)),
        torch.nn.Parameter(torch.randn(0).to(torch.bfloat16)),
        torch.nn.Parameter(torch.randn(30, 20, generator=generator).to(torch.bfloat16).t()),
    ]
    for p in out:
        p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)
    return out


def three_steps(batch, monkeypatch):
    monkeypatch.setitem(rmsprop.torch._foreach.FOREACH_BATCH, "cpu", batch)
    params = low_precision_params()
    opt = rmsprop.torch.RMSProp(
        params, preset="pytorch", lr=1e-2, momentum=0.9, centered=True, state_dtype=torch.float32
    )
    for _ in range(3):
        opt.step()
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_small_batches_give_the_numbers_of_one_batch(batch, monkeypatch):
    ours, whole = three_steps(batch, monkeypatch), three_steps(1 << 30, monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(ours, whole, strict=True))


@pytest.mark.parametrize("batch", [1, 5, 1 << 30])
def test_views_with_gaps_are_cut_along_their_dimensions(batch, monkeypatch):
    """A parameter that is a strided view: every element updated once, as if contiguous."""
    monkeypatch.setitem(rmsprop.torch._foreach.FOREACH_BATCH, "cpu", batch)
    results = []
    for make in (lambda b: b[::3, 1::2], lambda b: b[::3, 1::2].contiguous()):
        base = torch.arange(40 * 50, dtype=torch.float64).reshape(40, 50) / 100
        w = torch.nn.Parameter(make(base))
        w.grad = torch.linspace(-1, 1, w.numel(), dtype=torch.float64).reshape(w.shape)
        opt = rmsprop.torch.RMSProp([w], preset="pytorch", lr=1e-2, momentum=0.5)
        opt.step()
        opt.step()
        results.append(w.detach().clone())
    assert torch.equal(*results)


MEMORY = """
import torch
torch.set_num_threads(1)
import rmsprop.torch
from rmsprop import _accel
_accel.set_enabled(False)  # the foreach path

n = 4_000_000
p = torch.nn.Parameter(torch.randn(n).to(torch.bfloat16))
p.grad = torch.randn(n).to(torch.bfloat16)
opt = rmsprop.torch.RMSProp([p], preset="pytorch", lr=1e-3, momentum=0.9, centered=True,
                            state_dtype=torch.float32)
measure(opt.step)
"""


def test_extra_memory_of_a_step_is_bounded_by_one_batch():
    """bfloat16 parameters, float32 state, momentum and centered: the widest foreach case.

    Measured in a child process as the rise of its peak resident memory during one
    step. Unbatched, the step took 104 bytes per element (416 MB here); batched,
    at most about 104 bytes per batch element (6.5 MiB).
    """
    extra = extra_bytes(MEMORY)
    assert extra < 16 * 2**20, f"one step took {extra / 2**20:.1f} MiB beyond its data"


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_of_a_step_cut_into_slices_equals_eager():
    """On the foreach path (no kernels), torch.compile(opt.step) runs the step eagerly
    (step is opaque to Dynamo): the same numbers, over slices of detached views."""
    results = []
    previous = _accel.set_enabled(False)
    try:
        for compiled in (False, True):
            torch.manual_seed(0)
            net = torch.nn.Linear(300, 300)  # 90,000 weights: more than one slice
            opt = rmsprop.torch.RMSProp(net.parameters(), preset="pytorch", lr=1e-2, momentum=0.9)
            step = torch.compile(opt.step) if compiled else opt.step
            x = torch.randn(4, 300)
            for _ in range(2):
                opt.zero_grad()
                net(x).square().sum().backward()
                step()
            results.append([p.detach().clone() for p in net.parameters()])
    finally:
        _accel.set_enabled(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
