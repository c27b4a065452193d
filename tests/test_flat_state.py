"""Flat state in the torch optimizers, and the checks that keep a step's launches.

The state buffers created together are views of one buffer per (device, dtype), the
step counters consecutive elements of one float32 buffer; a group's launches are kept
from step to step while checks over every parameter (in C) find nothing changed.
Whatever a user changes between steps (a gradient, a parameter's memory, a state
buffer, the group's list) must be seen before anything is written: each case is
compared bit for bit with ``torch.optim.RMSprop`` doing the same.
"""

import copy
import io
import itertools
import weakref

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402
from rmsprop._flat import ALIGNMENT  # noqa: E402

needs_kernels = pytest.mark.skipif(_accel.load() is None, reason="Numba is not installed")


def _model(generator, layout=torch.contiguous_format):
    shapes = [(8, 3, 3, 3), (8,), (5, 7), (7,), (), (1, 1)]
    params = []
    for shape in shapes:
        p = torch.randn(shape, generator=generator)
        if len(shape) == 4:
            p = p.contiguous(memory_format=layout)
        params.append(torch.nn.Parameter(p))
    return params


def _grads(params, generator):
    for p in params:
        g = torch.randn(p.shape, generator=generator)
        p.grad = (
            g.contiguous(memory_format=torch.channels_last)
            if p.dim() == 4
            and (p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous())
            else g
        )


def _storage(t):
    return t.untyped_storage().data_ptr()


def _assert_same(ours, theirs, opts):
    """Parameters equal bit for bit, and every state buffer of ``opts[1]``'s in ``opts[0]``'s."""
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        for key, value in opts[1].state[b].items():
            assert torch.equal(opts[0].state[a][key], value), key


def _assert_refused_untouched(opt, params, match):
    """The next step raises RuntimeError matching ``match`` and writes nothing."""
    before = [p.detach().clone() for p in params]
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(RuntimeError, match=match):
        opt.step()
    for p, q in zip(params, before, strict=True):
        assert torch.equal(p, q)
    for index, values in opt.state_dict()["state"].items():
        for key, value in values.items():
            assert torch.equal(value, state["state"][index][key])


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_state_is_views_of_one_buffer_per_dtype_laid_out_as_each_parameter(layout):
    generator = torch.Generator().manual_seed(0)
    params = _model(generator, layout)
    opt = rmsprop.torch.RMSProp(params, preset="pytorch", momentum=0.9, centered=True)
    _grads(params, generator)
    opt.step()
    buffers = [
        opt.state[p][key] for key in ("square_avg", "momentum_buffer", "grad_avg") for p in params
    ]
    assert len({_storage(b) for b in buffers}) == 1
    for p in params:
        for key in ("square_avg", "momentum_buffer", "grad_avg"):
            b = opt.state[p][key]
            assert b.shape == p.shape and b.stride() == p.stride()
            assert (b.data_ptr() - _storage(b)) % ALIGNMENT == 0
    counters = [opt.state[p]["step"] for p in params]
    assert len({_storage(c) for c in counters}) == 1
    assert [c.storage_offset() for c in counters] == list(range(len(params)))
    assert all(c.dim() == 0 and c.dtype == torch.float32 for c in counters)
    spans = sorted((b.data_ptr(), b.data_ptr() + 4 * b.numel()) for b in buffers)
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(spans))  # no overlap


def test_a_step_equals_torch_optim_rmsprop_and_counts_each_parameter_once():
    generator = torch.Generator().manual_seed(1)
    ours = _model(generator)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opts = [
        rmsprop.torch.RMSprop(ours, lr=1e-2, momentum=0.5),
        torch.optim.RMSprop(theirs, lr=1e-2, momentum=0.5),
    ]
    for step in range(5):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params, opt in zip((ours, theirs), opts, strict=True):
            for i, (p, g) in enumerate(zip(params, grads, strict=True)):
                p.grad = None if step == 2 and i == 1 else g.clone()
            opt.step()
    _assert_same(ours, theirs, opts)
    assert float(opts[0].state[ours[1]]["step"]) == 4.0


def test_a_loaded_checkpoint_is_copied_into_flat_buffers():
    generator = torch.Generator().manual_seed(2)
    params = _model(generator)
    source = torch.optim.RMSprop([torch.nn.Parameter(p.detach().clone()) for p in params])
    for p in source.param_groups[0]["params"]:
        p.grad = torch.randn(p.shape, generator=generator)
    source.step()
    saved = source.state_dict()
    opt = rmsprop.torch.RMSprop(params)
    opt.load_state_dict(saved)
    loaded = [opt.state[p]["square_avg"] for p in params]
    assert len({_storage(b) for b in loaded}) == 1
    assert all(b is not saved["state"][i]["square_avg"] for i, b in enumerate(loaded))
    for i, b in enumerate(loaded):
        assert torch.equal(b, saved["state"][i]["square_avg"])
    assert len({_storage(opt.state[p]["step"]) for p in params}) == 1


def test_checkpoints_of_flat_state_round_trip_through_torch_save_and_torch_optim():
    generator = torch.Generator().manual_seed(3)
    params = _model(generator)
    opt = rmsprop.torch.RMSprop(params, momentum=0.9, centered=True)
    _grads(params, generator)
    opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    theirs = torch.optim.RMSprop(
        [torch.nn.Parameter(p.detach().clone()) for p in params], momentum=0.9, centered=True
    )
    theirs.load_state_dict(saved)
    for p, q in zip(params, theirs.param_groups[0]["params"], strict=True):
        for key, value in opt.state[p].items():
            assert torch.equal(theirs.state[q][key], value)
    duplicate = copy.deepcopy(opt)
    copied = [duplicate.state[p]["square_avg"] for p in duplicate.param_groups[0]["params"]]
    assert len({_storage(b) for b in copied}) == 1  # a copy's state is flat too
    assert _storage(copied[0]) != _storage(opt.state[params[0]]["square_avg"])


def test_buffers_added_later_and_parameters_stepped_later_get_state_of_their_own():
    generator = torch.Generator().manual_seed(4)
    params = _model(generator)
    opt = rmsprop.torch.RMSProp(params, preset="pytorch")
    for p in params[:3]:
        p.grad = torch.randn(p.shape, generator=generator)
    opt.step()
    assert all(p not in opt.state for p in params[3:])
    opt.param_groups[0]["momentum"] = 0.9
    _grads(params, generator)
    opt.step()
    late = [opt.state[p]["square_avg"] for p in params[3:]]
    assert len({_storage(b) for b in late}) == 1
    momentum = [opt.state[p]["momentum_buffer"] for p in params]
    assert len({_storage(b) for b in momentum}) == 1
    assert [float(opt.state[p]["step"]) for p in params] == [2.0] * 3 + [1.0] * 3


# --- what a kept plan must notice ------------------------------------------------------


def _replace_gradient_with_a_transposed_one(params, opt):
    g = params[2].grad
    params[2].grad = g.t().contiguous().t()  # same values, another layout


def _re_home_a_parameter(params, opt):
    params[0].data = params[0].data.clone()  # the old memory is no longer the parameter


def _drop_a_gradient(params, opt):
    params[1].grad = None


def _move_a_state_buffer(params, opt):
    buffer = opt.state[params[2]]["square_avg"]
    buffer.data = buffer.data.clone() + 1.0  # the same tensor, its old memory freed


def _move_a_step_counter(params, opt):
    step = opt.state[params[4]]["step"]
    step.data = step.data.clone() + 10.0


def _replace_a_state_buffer(params, opt):
    state = opt.state[params[2]]
    state["square_avg"] = state["square_avg"].clone() + 1.0


def _reset_a_parameters_state(params, opt):
    opt.state[params[3]] = {}


def _replace_a_parameter_in_the_group(params, opt):
    replacement = torch.nn.Parameter(params[5].detach().clone() + 1.0)
    replacement.grad = params[5].grad
    opt.param_groups[0]["params"][5] = replacement
    params[5] = replacement


def _a_sparse_gradient(params, opt):
    params[3].grad = params[3].grad.to_sparse()


CHANGES = [
    _replace_gradient_with_a_transposed_one,
    _re_home_a_parameter,
    _drop_a_gradient,
    _replace_a_state_buffer,
    _move_a_state_buffer,
    _move_a_step_counter,
    _reset_a_parameters_state,
    _replace_a_parameter_in_the_group,
]


@needs_kernels
@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_a_change_between_steps_is_seen_before_any_write(change):
    """Each optimizer steps twice (its launches are kept), sees the change, steps twice
    more: the same numbers as torch.optim.RMSprop given the same change."""
    generator = torch.Generator().manual_seed(5)
    ours = _model(generator)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opts = [rmsprop.torch.RMSprop(ours, lr=1e-2), torch.optim.RMSprop(theirs, lr=1e-2)]
    for step in range(4):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params, opt in zip((ours, theirs), opts, strict=True):
            for p, g in zip(params, grads, strict=True):
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)  # the same gradient tensors: the plan's fast case
            if step == 2:
                change(params, opt)
            opt.step()
        if step == 1:
            assert opts[0]._plans, "launches are kept"
    _assert_same(ours, theirs, opts)


@needs_kernels
def test_a_sparse_gradient_after_kept_launches_is_refused_before_any_write():
    generator = torch.Generator().manual_seed(6)
    params = _model(generator)
    opt = rmsprop.torch.RMSProp(params, preset="pytorch")
    for _ in range(2):
        _grads(params, generator)
        opt.step()
    _a_sparse_gradient(params, opt)
    _assert_refused_untouched(opt, params, "sparse")


@needs_kernels
def test_a_gradient_of_another_dtype_after_kept_launches_is_read_as_its_own():
    """``p.grad_dtype`` lets a gradient change dtype between steps: bfloat16 here, half
    the bytes of the float32 that the kept launches read. The step must take it as
    bfloat16 (reading it as float32 would run past its end): the numbers of an optimizer
    that takes the general path at every step."""
    if not hasattr(torch.Tensor, "grad_dtype"):
        pytest.skip("this torch has no grad_dtype")
    generator = torch.Generator().manual_seed(7)
    ours = _model(generator)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opts = [rmsprop.torch.RMSProp(ours, lr=1e-2), rmsprop.torch.RMSProp(twin, lr=1e-2)]
    for step in range(4):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params, opt in zip((ours, twin), opts, strict=True):
            for p, g in zip(params, grads, strict=True):
                if step >= 2:
                    p.grad = None
                    p.grad_dtype = torch.bfloat16
                    g = g.bfloat16()  # noqa: PLW2901
                p.grad = g.clone()
            if opt is opts[1]:
                opt._plans.clear()  # no kept launches: the general path
            opt.step()
        if step == 1:
            assert opts[0]._plans, "launches are kept"
    _assert_same(ours, twin, opts)


@needs_kernels
@pytest.mark.parametrize("when", ["first step", "kept launches", "flattened"])
def test_a_gradient_given_another_shape_is_refused_before_any_write(when):
    """``p.grad.data = ...`` can give a gradient fewer elements than its parameter (torch
    checks the shape of ``p.grad = ...`` only): the kernels would read past its end."""
    generator = torch.Generator().manual_seed(8)
    params = _model(generator)
    if when == "flattened":
        rmsprop.torch.flatten_(params)
    opt = rmsprop.torch.RMSProp(params, lr=1e-2)
    for _ in range(0 if when == "first step" else 2):
        _grads(params, generator)
        opt.step()
    if when != "first step":
        assert opt._plans, "launches are kept"
    _grads(params, generator)
    params[2].grad.data = torch.ones(3)  # the parameter has 35 elements
    _assert_refused_untouched(opt, params, r"shape \(5, 7\) has a gradient of shape \(3,\)")


@needs_kernels
def test_zero_grad_frees_the_gradients_of_a_group_whose_launches_are_kept():
    """Kept launches remember the last step's gradients weakly: ``zero_grad()`` frees
    them before the next backward, as it does with torch.optim (no second set of
    gradients in memory at the peak of the next backward)."""
    generator = torch.Generator().manual_seed(9)
    params = _model(generator)
    opt = rmsprop.torch.RMSProp(params, lr=1e-2)
    for _ in range(3):
        _grads(params, generator)
        opt.step()
    assert opt._plans, "launches are kept"
    seen = [weakref.ref(p.grad) for p in params]
    opt.zero_grad()
    assert all(ref() is None for ref in seen)
    _grads(params, generator)
    opt.step()  # new gradients, anywhere in memory: checked and taken
    assert opt._plans


#: A change of each buffer that keeps the centered square average positive.
MOVES = {
    "square_avg": lambda t: t * 2.0,
    "momentum_buffer": lambda t: t + 1.0,
    "grad_avg": lambda t: t * 0.5,
    "step": lambda t: t + 10.0,
}


@needs_kernels
@pytest.mark.parametrize("key", list(MOVES))
def test_a_state_buffer_moved_through_data_is_written_where_it_now_is(key):
    """``state[p][key].data = ...`` keeps the tensor and frees the memory the kept
    launches would write: the step sees the move, as torch.optim.RMSprop does."""
    generator = torch.Generator().manual_seed(10)
    ours = _model(generator)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    options = {"lr": 1e-2, "momentum": 0.9, "centered": True}
    opts = [rmsprop.torch.RMSprop(ours, **options), torch.optim.RMSprop(theirs, **options)]
    for step in range(4):
        grads = [torch.randn(p.shape, generator=generator) for p in ours]
        for params, opt in zip((ours, theirs), opts, strict=True):
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            if step == 2:
                buffer = opt.state[params[0]][key]
                buffer.data = MOVES[key](buffer.data)  # new memory, the old freed
            opt.step()
        if step == 1:
            assert opts[0]._plans, "launches are kept"
    _assert_same(ours, theirs, opts)
