"""Kept launches against what users do between steps, in random order.

Two twin models train with rmsprop.torch.RMSProp: one keeps its launches from step to
step (rmsprop.torch._plan), the other forgets them before every step and takes the
general path, which classifies every tensor again. Between steps both get the same
drawn changes (new or moved gradients, dropped ones, moved or replaced state, moved
parameters, changed options, zero_grad both ways, flatten_ and unflatten_, a
checkpoint loaded, a group added); after every step they must be
equal bit for bit, parameters and state, and a step one of them refuses the other
refuses too, having changed nothing.
"""

import copy
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402

pytestmark = pytest.mark.skipif(_accel.load() is None, reason="Numba is not installed")

SHAPES = [(4, 3, 3, 3), (4,), (5, 7), (7,), (), (6, 2), (64, 65)]  # the last takes 8-bit codes
OPTIONS = [
    {"lr": 1e-2},
    {"lr": 1e-2, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"lr": 1e-2, "float32_arithmetic": True, "nesterov": True, "momentum": 0.5},
    {"lr": 1e-2, "state_bits": 16, "momentum": 0.9},  # bfloat16 state, rounded stochastically
    {"lr": 1e-2, "state_bits": 8, "centered": True},  # 8-bit codes and their scales
]


def _model(flat):
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in SHAPES]
    params[0].data = params[0].data.contiguous(memory_format=torch.channels_last)
    for p in params:
        p.grad = torch.zeros_like(p)
    if flat:
        rmsprop.torch.flatten_(params)
    return params


def _gradient(p, seed):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(p.shape, generator=generator)
    return g.contiguous(memory_format=torch.channels_last) if p.dim() == 4 else g


# The changes: each takes the parameters, the optimizer, the index of a parameter and
# a seed, and does the same to either twin.


def fill_gradients(params, opt, i, seed):
    """Gradients written into the tensors that are there (a new one where None)."""
    for k, p in enumerate(params):
        g = _gradient(p, seed + k)
        if p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)


def new_gradients(params, opt, i, seed):
    for k, p in enumerate(params):
        p.grad = _gradient(p, seed + k)


def gradient_in_another_layout(params, opt, i, seed):
    p = params[2]
    p.grad = _gradient(p, seed).t().contiguous().t()


def gradient_memory_moved(params, opt, i, seed):
    if params[i].grad is not None:
        params[i].grad.data = _gradient(params[i], seed)


def gradient_dropped(params, opt, i, seed):
    params[i].grad = None


def state_buffer_moved(params, opt, i, seed):
    for value in opt.state[params[i]].values():
        value.data = value.data.clone() * 1.5
        return


def state_buffer_replaced(params, opt, i, seed):
    state = opt.state[params[i]]
    if "square_avg" in state:
        state["square_avg"] = state["square_avg"].clone() * 0.5


def parameter_moved(params, opt, i, seed):
    params[i].data = params[i].data.clone()


def learning_rate_changed(params, opt, i, seed):
    opt.param_groups[0]["lr"] *= 0.5


def eps_toggled(params, opt, i, seed):
    group = opt.param_groups[0]
    group["eps"] = 1e-8 if group["eps"] == 0.0 else 0.0


def momentum_added(params, opt, i, seed):
    opt.param_groups[0]["momentum"] = 0.9


def zero_grad_to_none(params, opt, i, seed):
    opt.zero_grad(set_to_none=True)
    fill_gradients(params, opt, i, seed)


def zero_grad_to_zeros(params, opt, i, seed):
    opt.zero_grad(set_to_none=False)


def gradient_shrunk(params, opt, i, seed):
    """Refused by both (the kernels would read past it); the next change restores it."""
    if params[i].grad is not None and params[i].numel() > 1:
        params[i].grad.data = torch.ones(1)


def flattened(params, opt, i, seed):
    """Parameters and gradients re-homed into flat buffers (each group its own)."""
    rmsprop.torch.flatten_(opt)


def unflattened(params, opt, i, seed):
    rmsprop.torch.unflatten_(opt)


def state_reloaded(params, opt, i, seed):
    """A checkpoint of the optimizer through torch.save, loaded back into it."""
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    saved.seek(0)
    opt.load_state_dict(torch.load(saved))


def group_added(params, opt, i, seed):
    """A parameter of its own group, with a gradient (at most two groups more)."""
    if len(opt.param_groups) < 3:
        generator = torch.Generator().manual_seed(seed)
        p = torch.nn.Parameter(torch.randn(3, 4, generator=generator))
        p.grad = torch.randn(3, 4, generator=generator)
        opt.add_param_group({"params": [p], "lr": 0.02})
        params.append(p)


CHANGES = [
    fill_gradients, new_gradients, gradient_in_another_layout, gradient_memory_moved,
    gradient_dropped, state_buffer_moved, state_buffer_replaced, parameter_moved,
    learning_rate_changed, eps_toggled, momentum_added, zero_grad_to_none,
    zero_grad_to_zeros, gradient_shrunk, flattened, unflattened, state_reloaded, group_added,
]  # fmt: skip


def _snapshot(params, opt):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict()["state"])


def _same(a, b):
    """Equal bit for bit, NaN where the other has NaN (a replaced square average below
    the squared gradient average makes the centered rule's square root NaN, on every
    path alike)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _assert_equal(a, b):
    (params_a, state_a), (params_b, state_b) = a, b
    for p, q in zip(params_a, params_b, strict=True):
        _same(p, q)
    assert state_a.keys() == state_b.keys()
    for index, values in state_a.items():
        assert values.keys() == state_b[index].keys()
        for key, value in values.items():
            _same(value, state_b[index][key])


@settings(deadline=None)  # max_examples: the profile's (tests/conftest.py)
@given(
    flat=st.booleans(),
    options=st.sampled_from(OPTIONS),
    changes=st.lists(
        st.tuples(st.sampled_from(CHANGES), st.integers(0, len(SHAPES) - 1)),
        min_size=1,
        max_size=8,
    ),
)
def test_kept_launches_step_as_the_general_path_whatever_changes_between_steps(
    flat, options, changes
):
    twins = [_model(flat) for _ in range(2)]
    opts = [rmsprop.torch.RMSProp(params, **options) for params in twins]
    for params in twins:
        fill_gradients(params, None, 0, 100)
    for opt in opts:
        opt.step()
        opt.step()  # the second step keeps the launches of the first
    for number, (change, i) in enumerate(changes):
        refused = []
        for params, opt, general in zip(twins, opts, (False, True), strict=True):
            change(params, opt, i, 1000 * number)
            if general:
                opt._plans.clear()
            before = _snapshot(params, opt)
            try:
                opt.step()
            except RuntimeError as error:
                refused.append(str(error))
                _assert_equal(_snapshot(params, opt), before)  # nothing was written
        assert len(refused) in (0, 2), refused
        if refused:
            assert refused[0] == refused[1]
            for params in twins:  # back to gradients of their parameters' shapes
                new_gradients(params, None, 0, 7 + number)
        _assert_equal(_snapshot(twins[0], opts[0]), _snapshot(twins[1], opts[1]))
