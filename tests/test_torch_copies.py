"""Copies of the torch optimizers (deepcopy, pickle, torch.save) step like the originals.

torch.optim.Optimizer.__getstate__ keeps only defaults, state and param_groups: what
else an optimizer sets up in __init__ (its kept launches) must be rebuilt after a copy.
"""

import copy
import io
import pickle

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402

SHAPES = ((70_000,), (3, 4))  # one tensor large enough to load the fused kernels


def make(kind):
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in SHAPES]
    if kind == "RMSprop":
        return rmsprop.torch.RMSprop(params, lr=1e-2, momentum=0.5, centered=True)
    return rmsprop.torch.RMSProp(params, preset="pytorch", lr=1e-2, momentum=0.5)


def copied(opt, how):
    if how == "deepcopy":
        return copy.deepcopy(opt)
    if how == "pickle":
        return pickle.loads(pickle.dumps(opt))
    buffer = io.BytesIO()
    torch.save(opt, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def params_of(opt):
    return [p for group in opt.param_groups for p in group["params"]]


def step(opt, seed):
    generator = torch.Generator().manual_seed(seed)
    for p in params_of(opt):
        p.grad = torch.randn(p.shape, generator=generator)
    opt.step()


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize("steps_before", [0, 1, 2])
@pytest.mark.parametrize("kind", ["RMSProp", "RMSprop"])
def test_a_copy_steps_exactly_like_the_original(kind, steps_before, how):
    original = make(kind)
    for seed in range(steps_before):
        step(original, seed)
    twin = copied(original, how)
    assert type(twin) is type(original)
    assert all(p is not q for p, q in zip(params_of(twin), params_of(original), strict=True))
    for seed in range(10, 13):
        step(original, seed)
        step(twin, seed)
    for p, q in zip(params_of(original), params_of(twin), strict=True):
        assert torch.equal(p, q)
        assert original.state[p].keys() == twin.state[q].keys()
        for key, value in original.state[p].items():
            assert torch.equal(value, twin.state[q][key]), key
