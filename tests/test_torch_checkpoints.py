"""rmsprop.torch.RMSProp against bad state and old checkpoints: refused whole, or loaded as torch
loads them."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop._options import Scalars  # noqa: E402
from rmsprop.torch import _foreach  # noqa: E402


def stepped(shapes=((100_000,), (3, 4)), steps=2, **options):
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=1e-2, momentum=0.5, **options)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        opt.step()
    return params, opt


def snapshot(params, opt):
    return [p.detach().clone() for p in params], {
        id(p): {k: v.clone() for k, v in opt.state[p].items()} for p in params
    }


def assert_unchanged(before, params, opt):
    values, states = before
    for p, v in zip(params, values, strict=True):
        assert torch.equal(p, v)
    for p in params:
        for key, value in states[id(p)].items():
            assert torch.equal(opt.state[p][key], value), key


def test_a_state_buffer_of_another_shape_is_refused_before_anything_changes(backend):
    """It used to reach the fused kernel, which trusted the sizes: a write past the end."""
    params, opt = stepped()
    opt.state[params[0]]["momentum_buffer"] = torch.zeros(10)
    before = snapshot(params, opt)
    with pytest.raises(RuntimeError, match=r"momentum_buffer .* shape \(10,\)"):
        opt.step()
    assert_unchanged(before, params, opt)


def test_the_kernels_check_the_sizes_they_are_given():
    kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")
    hp = rmsprop.Hyperparameters(lr=0.1, momentum=0.9)
    scalars = Scalars.of(hp)
    p, g = np.zeros(100_000), np.zeros(100_000)
    with pytest.raises(ValueError, match="100000 elements, one has 10"):
        kernels.update(hp.switches, scalars, p, g, np.zeros(10))
    with pytest.raises(ValueError, match="one has 10"):
        kernels.update(hp.switches, scalars, p, np.zeros(10), np.zeros(100_000))
    with pytest.raises(ValueError, match="one has 10"):
        kernels.update(hp.switches, scalars, p, g, np.zeros(100_000), np.zeros(10))
    with pytest.raises(ValueError, match="one has 10"):
        kernels.update(hp.switches, scalars, p, g, g.copy(), new_param=np.zeros(10),
                       new_square_avg=np.zeros(100_000))  # fmt: skip


def test_load_state_dict_refuses_a_buffer_of_another_shape_and_keeps_its_state():
    _, opt = stepped()
    saved = opt.state_dict()
    saved["state"][0]["square_avg"] = torch.zeros(10)
    other_params, other = stepped(steps=1)
    before = snapshot(other_params, other)
    with pytest.raises(
        ValueError,
        match=r"parameter 0: square_avg has shape \(10,\), the parameter has shape \(100000,\)",
    ):
        other.load_state_dict(saved)
    assert_unchanged(before, other_params, other)


def torch_checkpoint(drop=(), step_as_number=False):
    """A torch.optim.RMSprop checkpoint as an older torch wrote it, and its parameter."""
    generator = torch.Generator().manual_seed(1)
    param = torch.nn.Parameter(torch.randn(5, 3, generator=generator))
    opt = torch.optim.RMSprop([param], lr=1e-2, alpha=0.9, momentum=0.5, centered=True)
    for _ in range(3):
        param.grad = torch.randn(5, 3, generator=generator)
        opt.step()
    saved = copy.deepcopy(opt.state_dict())
    for group in saved["param_groups"]:
        for key in drop:
            group.pop(key)
    if step_as_number:
        for state in saved["state"].values():
            state["step"] = int(state["step"].item())
    return param.detach(), saved


@pytest.mark.parametrize(
    ("drop", "step_as_number"),
    [
        (("maximize", "foreach", "capturable", "differentiable"), False),  # torch 1.12
        (("differentiable",), False),  # torch 1.13 to 1.x
        ((), True),  # step saved as a Python number
    ],
)
def test_checkpoints_of_older_torch_load_and_continue_as_torch_would(drop, step_as_number):
    value, saved = torch_checkpoint(drop, step_as_number)
    theirs_param, ours_param = (torch.nn.Parameter(value.clone()) for _ in range(2))
    theirs = torch.optim.RMSprop([theirs_param], lr=1.0)
    theirs.load_state_dict(copy.deepcopy(saved))
    ours = rmsprop.torch.RMSProp([ours_param], preset="pytorch", lr=1.0)
    ours.load_state_dict(copy.deepcopy(saved))
    assert isinstance(ours.state[ours_param]["step"], torch.Tensor)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        grad = torch.randn(5, 3, generator=generator)
        theirs_param.grad, ours_param.grad = grad.clone(), grad.clone()
        if not step_as_number:  # torch itself fails on its own old checkpoints there
            theirs.step()
        ours.step()
    if not step_as_number:
        assert torch.allclose(ours_param, theirs_param, rtol=1e-6, atol=1e-7)
    assert float(ours.state[ours_param]["step"]) == 6.0


def test_each_counter_advances_with_its_parameters_update(monkeypatch):
    """An error while writing one group leaves the groups before it counted, the rest not."""
    monkeypatch.setattr(rmsprop._accel, "_enabled", False)  # the foreach path, group by group
    generator = torch.Generator().manual_seed(0)
    first, second = (
        torch.nn.Parameter(torch.randn(6, generator=generator).to(torch.float16)) for _ in range(2)
    )
    opt = rmsprop.torch.RMSProp(
        [{"params": [first]}, {"params": [second], "momentum": 0.5}], preset="pytorch", lr=0.1
    )
    for p in (first, second):
        p.grad = torch.ones(6, dtype=torch.float16)
    opt.step()
    update = _foreach.foreach_update
    calls = []

    def out_of_memory_in_the_second_group(members, hp, work, correction):
        calls.append(hp)
        if len(calls) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        update(members, hp, work, correction)

    monkeypatch.setattr(_foreach, "foreach_update", out_of_memory_in_the_second_group)
    before = [first.detach().clone(), second.detach().clone()]
    with pytest.raises(torch.OutOfMemoryError):
        opt.step()
    assert not torch.equal(first, before[0]) and float(opt.state[first]["step"]) == 2
    assert torch.equal(second, before[1]) and float(opt.state[second]["step"]) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"lr": torch.tensor([0.1, 0.2])},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"lr": "0.1"},
        {"lr": 0.1, "eps": -1.0},
        {"lr": 0.1, "momentum": -1.0},
        {"lr": 0.1, "weight_decay": -1.0},
        {"lr": 0.1, "alpha": -1.0},
    ],
    ids=repr,
)
def test_bad_arguments_raise_what_torch_raises(options):
    """Code that catches torch.optim.RMSprop's exceptions catches ours (messages differ)."""
    params = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(Exception) as theirs:  # noqa: PT011 - the type is what is compared
        torch.optim.RMSprop(params, **options)
    ours_options = {("beta" if k == "alpha" else k): v for k, v in options.items()}
    with pytest.raises(theirs.type):
        rmsprop.torch.RMSProp(params, preset="pytorch", **ours_options)
