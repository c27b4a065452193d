"""rmsprop.torch.RMSProp as a torch.optim.Optimizer."""

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402

from frameworks import max_relative_difference  # noqa: E402


def model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).to(
        dtype
    )


def train(net, optimizer, steps, seed=1, scheduler=None):
    generator = torch.Generator().manual_seed(seed)
    dtype = next(net.parameters()).dtype
    for _ in range(steps):
        x = torch.randn(16, 4, generator=generator, dtype=dtype)
        y = torch.randn(16, 1, generator=generator, dtype=dtype)

        def closure(x=x, y=y):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            return loss

        optimizer.step(closure)
        if scheduler is not None:
            scheduler.step()
    return [p.detach().clone() for p in net.parameters()]


def assert_close(a, b, tolerance=1e-12):
    for x, y in zip(a, b, strict=True):
        assert max_relative_difference(x.double().numpy(), y.double().numpy()) <= tolerance


def test_drop_in_replacement_with_param_groups_and_a_scheduler():
    """torch.optim.RMSprop(params, lr, alpha=a, ...) -> RMSProp(..., preset="pytorch", beta=a)."""
    results = []
    for make in (
        lambda groups: torch.optim.RMSprop(groups, lr=0.01, alpha=0.95, momentum=0.5),
        lambda groups: rmsprop.torch.RMSProp(
            groups, preset="pytorch", lr=0.01, beta=0.95, momentum=0.5
        ),
    ):
        net = model()
        groups = [
            {"params": net[0].parameters(), "weight_decay": 0.01, "centered": True},
            {"params": net[2].parameters(), "lr": 0.05},
        ]
        optimizer = make(groups)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
        results.append(train(net, optimizer, 50, scheduler=scheduler))
    assert_close(*results)


def test_closure_loss_is_returned():
    net = model()
    optimizer = rmsprop.torch.RMSProp(net.parameters(), lr=0.01)
    loss = optimizer.step(lambda: torch.tensor(3.5))
    assert float(loss) == 3.5


@pytest.mark.parametrize("enabled", [True, False])
def test_a_step_leaves_the_grad_mode_as_it_found_it(enabled):
    """The step runs without grad (the closure with it), and restores the mode on the
    way out, when the closure raises too."""
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    optimizer = rmsprop.torch.RMSProp([p], lr=0.01)
    seen = []

    def closure():
        seen.append(torch.is_grad_enabled())
        raise KeyError("from the closure")

    with torch.set_grad_enabled(enabled):
        optimizer.step()
        assert torch.is_grad_enabled() is enabled and p.grad_fn is None
        with pytest.raises(KeyError, match="from the closure"):
            optimizer.step(closure)
        assert torch.is_grad_enabled() is enabled and seen == [True]
        optimizer.register_step_pre_hook(lambda *_: seen.append(torch.is_grad_enabled()))
        optimizer.step()
        assert torch.is_grad_enabled() is enabled and seen == [True, enabled]


@pytest.mark.parametrize("direction", ["torch into ours", "ours into torch"])
def test_checkpoints_are_interchangeable_with_torch_optim_rmsprop(direction):
    options = {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 1e-3}
    torch_make = lambda params: torch.optim.RMSprop(params, alpha=0.9, **options)  # noqa: E731
    ours_make = lambda params: rmsprop.torch.RMSProp(params, preset="pytorch", beta=0.9, **options)  # noqa: E731
    first, second = (
        (torch_make, ours_make) if direction == "torch into ours" else (ours_make, torch_make)
    )

    net = model()
    optimizer = first(net.parameters())
    train(net, optimizer, 10)
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    expected = train(net, optimizer, 20, seed=2)

    checkpoint = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    resumed_net = model(seed=99)
    resumed_net.load_state_dict(checkpoint["model"])
    resumed = second(resumed_net.parameters())
    resumed.load_state_dict(checkpoint["optimizer"])
    state = resumed.state[next(resumed_net.parameters())]
    assert set(state) == {"step", "square_avg", "momentum_buffer", "grad_avg"}
    assert_close(train(resumed_net, resumed, 20, seed=2), expected)


def test_checkpoint_with_other_rules_round_trips():
    def make(net):
        return rmsprop.torch.RMSProp(net.parameters(), preset="tensorflow", lr=0.01, momentum=0.9)

    net = model()
    optimizer = make(net)
    train(net, optimizer, 5)
    saved_model, saved_optimizer = copy.deepcopy((net.state_dict(), optimizer.state_dict()))
    assert "alpha" not in saved_optimizer["param_groups"][0]  # not PyTorch's rule: no alias
    expected = train(net, optimizer, 5, seed=3)

    resumed_net = model(seed=7)
    resumed_net.load_state_dict(saved_model)
    resumed = make(resumed_net)
    resumed.load_state_dict(saved_optimizer)
    assert_close(train(resumed_net, resumed, 5, seed=3), expected)


def test_zero_dimensional_and_non_contiguous_params():
    base = torch.randn(6, 4, dtype=torch.float64)
    scalar = torch.nn.Parameter(torch.tensor(1.5, dtype=torch.float64))
    view = base.t()[:, ::2]  # non-contiguous, shares base's memory
    view.requires_grad_(True)
    ours = rmsprop.torch.RMSProp([scalar, view], lr=0.1, momentum=0.9)
    theirs_params = [scalar.detach().clone(), view.detach().clone()]
    expected = rmsprop.RMSProp([t.numpy() for t in theirs_params], lr=0.1, momentum=0.9)
    for step in range(5):
        grads = [torch.full((), 0.5 + step, dtype=torch.float64), torch.ones_like(view) * step]
        scalar.grad, view.grad = grads
        ours.step()
        expected.step([g.numpy() for g in grads])
    assert_close([scalar.detach(), view.detach()], theirs_params)
    assert not view.is_contiguous()
    assert torch.equal(base.t()[:, ::2], view.detach())  # written through the view


def test_complex_params_match_torch_optim_rmsprop():
    results = []
    for make in (
        lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, centered=True),
        lambda p: rmsprop.torch.RMSProp(p, preset="pytorch", lr=0.01, momentum=0.9, centered=True),
    ):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(5, dtype=torch.complex128))
        optimizer = make([w])
        generator = torch.Generator().manual_seed(1)
        for _ in range(50):
            w.grad = torch.randn(5, dtype=torch.complex128, generator=generator)
            optimizer.step()
        results.append([torch.view_as_real(w.detach())])
        assert optimizer.state[w]["square_avg"].is_complex()
    assert_close(*results)


def test_sparse_gradients_are_rejected_before_anything_changes():
    dense = torch.nn.Parameter(torch.ones(3))
    sparse = torch.nn.Parameter(torch.ones(3))
    optimizer = rmsprop.torch.RMSProp([dense, sparse], lr=0.1)
    dense.grad = torch.ones(3)
    sparse.grad = torch.ones(3).to_sparse()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        optimizer.step()
    assert torch.equal(dense.detach(), torch.ones(3))
    assert not optimizer.state


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_params_with_float32_state(dtype):
    net = model(dtype=dtype)
    optimizer = rmsprop.torch.RMSProp(
        net.parameters(), lr=0.01, momentum=0.9, centered=True, state_dtype=torch.float32
    )
    train(net, optimizer, 3)
    for p in net.parameters():
        assert p.dtype == dtype
        assert all(
            optimizer.state[p][k].dtype == torch.float32
            for k in ("square_avg", "momentum_buffer", "grad_avg")
        )
    # A checkpoint keeps the float32 state (the base class would cast it to the params' dtype).
    state_dict = copy.deepcopy(optimizer.state_dict())
    fresh = rmsprop.torch.RMSProp(net.parameters(), lr=1.0, state_dtype=torch.float32)
    fresh.load_state_dict(state_dict)
    for p in net.parameters():
        assert torch.equal(fresh.state[p]["square_avg"], optimizer.state[p]["square_avg"])
        assert fresh.state[p]["square_avg"].dtype == torch.float32


def test_float32_is_rounded_once_from_float64():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(100))
    w.grad = torch.randn(100)
    p64, g64 = w.detach().double().numpy().copy(), w.grad.double().numpy()
    rmsprop.torch.RMSProp([w], lr=0.01).step()
    expected, _ = rmsprop.step(p64, g64, np.zeros(100), 0.01, 0.9)
    assert torch.equal(w.detach(), torch.from_numpy(expected).float())


BAD = [
    (lambda p: rmsprop.torch.RMSProp(p, lr=-1.0), ValueError, r"lr must be a finite number >= 0"),
    (lambda p: rmsprop.torch.RMSProp(p, preset=None), TypeError, r"lr is required"),
    (
        lambda p: rmsprop.torch.RMSProp(p, preset="tensorflow", lr=0.1, alpha=0.9),
        TypeError,
        "unknown option 'alpha'",
    ),
    (lambda p: rmsprop.torch.RMSProp(p, lr=0.1, nesterov=True), ValueError, "needs momentum"),
    (
        lambda p: rmsprop.torch.RMSProp([{"params": p, "beta": 2.0}], lr=0.1),
        ValueError,
        r"beta must be in",
    ),
    (lambda p: rmsprop.torch.RMSProp(p, lr=0.1, state_dtype=torch.int32), TypeError, "state_dtype"),
    (
        lambda p: rmsprop.torch.RMSProp([torch.ones(2, dtype=torch.int64)], lr=0.1),
        TypeError,
        "floating point or complex",
    ),
]


@pytest.mark.parametrize(("make", "error", "match"), BAD)
def test_bad_options(make, error, match):
    with pytest.raises(error, match=match):
        make([torch.nn.Parameter(torch.ones(2))])


def test_bad_group_added_later_is_not_kept():
    optimizer = rmsprop.torch.RMSProp([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="momentum must be"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "momentum": -1.0})
    assert len(optimizer.param_groups) == 1


def test_options_changed_in_a_group_are_checked_at_step():
    w = torch.nn.Parameter(torch.ones(2))
    optimizer = rmsprop.torch.RMSProp([w], lr=0.1)
    optimizer.param_groups[0]["lr"] = float("nan")
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        optimizer.step()
    assert torch.equal(w.detach(), torch.ones(2))


def test_tensor_learning_rate_is_accepted():
    w = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer = rmsprop.torch.RMSProp([w], lr=torch.tensor(0.1, dtype=torch.float64))
    w.grad = torch.ones(2, dtype=torch.float64)
    optimizer.step()
    expected, _ = rmsprop.step(np.ones(2), np.ones(2), np.zeros(2), 0.1, 0.9)
    np.testing.assert_array_equal(w.detach().numpy(), expected)


def test_lazy_attribute_access_without_import():
    import rmsprop as package  # noqa: PLC0415

    assert package.torch.RMSProp is rmsprop.torch.RMSProp


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"momentum": 0.9, "centered": True},
        {"preset": "pytorch", "weight_decay": 0.01, "maximize": True},
    ],
    ids=["seed", "momentum-centered", "pytorch-wd-maximize"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_path_matches_the_kernel_path(options, dtype, monkeypatch):
    """Other devices and DTensors take the grouped torch._foreach_* path: the same numbers,
    to rounding (PyTorch's CPU kernels fuse some multiply-adds, the Numba kernels do not)."""
    from rmsprop import _accel  # noqa: PLC0415

    foreach_calls = []
    real = rmsprop.torch._foreach.foreach_update
    monkeypatch.setattr(
        rmsprop.torch._foreach, "foreach_update", lambda *a: foreach_calls.append(1) or real(*a)
    )
    results = []
    for kernels_on in (True, False):
        previous = _accel.set_enabled(kernels_on)
        try:
            net = model(dtype=dtype)
            results.append(
                train(net, rmsprop.torch.RMSProp(net.parameters(), lr=0.01, **options), 5)
            )
        finally:
            _accel.set_enabled(previous)
        assert bool(foreach_calls) == (not kernels_on or not rmsprop.load_kernels())
    assert_close(*results, tolerance=1e-13 if dtype == torch.float64 else 1e-6)


@pytest.mark.parametrize("kernels_on", [True, False], ids=["kernels", "foreach"])
def test_float32_arithmetic_option(kernels_on):
    from rmsprop import _accel  # noqa: PLC0415

    results = []
    previous = _accel.set_enabled(kernels_on)
    try:
        for fast in (False, True):
            net = model(dtype=torch.float32)
            optimizer = rmsprop.torch.RMSProp(
                net.parameters(), lr=0.01, momentum=0.9, float32_arithmetic=fast
            )
            results.append(train(net, optimizer, 10))
    finally:
        _accel.set_enabled(previous)
    assert_close(*results, tolerance=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(*results, strict=True))
    with pytest.raises(TypeError, match="float32_arithmetic must be True or False"):
        rmsprop.torch.RMSProp([torch.nn.Parameter(torch.ones(2))], lr=0.1, float32_arithmetic=1)


@pytest.mark.parametrize("kernels", [True, False], ids=["fused", "foreach"])
def test_bias_correction_uses_each_parameters_own_step_count(kernels):
    """As torch's Adam counts: a parameter without a gradient does not count the step."""
    previous = rmsprop._accel.set_enabled(kernels)
    try:
        w, late = (torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)) for _ in range(2))
        opt = rmsprop.torch.RMSProp([w, late], lr=0.1, beta=0.5, eps=0.0, bias_correction=True)
        w.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        late.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
    finally:
        rmsprop._accel.set_enabled(previous)
    assert float(opt.state[w]["step"]) == 2 and float(opt.state[late]["step"]) == 1
    assert torch.equal(w.detach(), torch.full((3,), -0.2, dtype=torch.float64))
    assert torch.equal(late.detach(), torch.full((3,), -0.1, dtype=torch.float64))


# --- rmsprop.torch.RMSprop: torch.optim.RMSprop's spelling -------------------------------------


def test_rmsprop_has_torch_optim_rmsprops_signature():
    import inspect  # noqa: PLC0415

    ours = dict(inspect.signature(rmsprop.torch.RMSprop.__init__).parameters)
    theirs = inspect.signature(torch.optim.RMSprop.__init__).parameters
    own = ours.pop("step_in_backward")  # one argument of its own, keyword-only, off
    assert own.kind == inspect.Parameter.KEYWORD_ONLY and own.default is False
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]
    assert [p.kind for p in ours.values()] == [p.kind for p in theirs.values()]


@pytest.mark.parametrize("foreach", [None, True, False])
def test_rmsprop_positional_arguments_compute_the_pytorch_preset(foreach):
    options = {"weight_decay": 0.01, "momentum": 0.9, "centered": True, "maximize": True}
    net = model()
    ours = train(
        net, rmsprop.torch.RMSprop(net.parameters(), 1e-3, 0.9, 1e-7, foreach=foreach, **options), 5
    )
    net = model()
    same = train(
        net,
        rmsprop.torch.RMSProp(
            net.parameters(),
            1e-3,
            preset="pytorch",
            beta=0.9,
            eps=1e-7,
            rounding="pytorch",
            **options,
        ),
        5,
    )
    net = model()
    theirs = train(
        net, torch.optim.RMSprop(net.parameters(), 1e-3, 0.9, 1e-7, foreach=foreach, **options), 5
    )
    for a, b, c in zip(ours, same, theirs, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_rmsprop_groups_and_checkpoints_use_torchs_keys():
    net = model()
    opt = rmsprop.torch.RMSprop(net.parameters(), lr=1e-2, alpha=0.9, momentum=0.5)
    group = opt.param_groups[0]
    assert "beta" not in group
    assert (group["alpha"], group["foreach"], group["capturable"], group["differentiable"]) == (
        0.9,
        None,
        False,
        False,
    )
    train(net, opt, 2)
    twin = model()
    theirs = torch.optim.RMSprop(twin.parameters(), lr=1e-2, alpha=0.9, momentum=0.5)
    theirs.load_state_dict(copy.deepcopy(opt.state_dict()))  # loading keeps the tensors
    opt.load_state_dict(copy.deepcopy(theirs.state_dict()))
    assert opt.param_groups[0]["alpha"] == 0.9 and "beta" not in opt.param_groups[0]
    twin.load_state_dict(net.state_dict())
    assert_close(train(net, opt, 3, seed=5), train(twin, theirs, 3, seed=5))


def test_rmsprop_honours_a_changed_alpha_and_groups_with_torchs_keys():
    net = model()
    first, second = list(net.parameters())[:2], list(net.parameters())[2:]
    opt = rmsprop.torch.RMSprop(first, lr=1e-2)
    opt.add_param_group({"params": second, "alpha": 0.5})
    opt.param_groups[0]["alpha"] = 0.8
    twin = model()
    theirs = torch.optim.RMSprop(list(twin.parameters())[:2], lr=1e-2, alpha=0.8)
    theirs.add_param_group({"params": list(twin.parameters())[2:], "alpha": 0.5})
    assert_close(train(net, opt, 4), train(twin, theirs, 4))
    with pytest.raises(TypeError, match=r"groups name beta alpha"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(1))], "beta": 0.5})


@pytest.mark.parametrize(
    ("flags", "error", "match"),
    [
        ({"capturable": 1}, TypeError, r"capturable must be True or False"),
        ({"differentiable": "yes"}, TypeError, r"differentiable must be True or False"),
        ({"foreach": "yes"}, TypeError, r"foreach must be True, False or None"),
        ({"alpha": 1.5}, ValueError, r"beta must be in \[0, 1\]"),
    ],
)
def test_rmsprop_refuses_flags_of_the_wrong_type(flags, error, match):
    with pytest.raises(error, match=match):
        rmsprop.torch.RMSprop(model().parameters(), **flags)
    opt = rmsprop.torch.RMSprop(list(model().parameters())[:1])
    with pytest.raises(error, match=match):
        opt.add_param_group({"params": list(model(1).parameters())[:1], **flags})
    assert len(opt.param_groups) == 1


def test_the_pytorch_preset_takes_alpha_as_torchs_name_for_beta():
    opt = rmsprop.torch.RMSProp(model().parameters(), preset="pytorch", alpha=0.9)
    assert opt.param_groups[0]["beta"] == 0.9
    with pytest.raises(TypeError, match=r"give beta or alpha"):
        rmsprop.torch.RMSProp(model().parameters(), preset="pytorch", alpha=0.9, beta=0.9)
    with pytest.raises(TypeError, match=r"unknown option 'alpha'"):
        rmsprop.torch.RMSProp(model().parameters(), preset="keras", alpha=0.9)


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9, "weight_decay": 0.1, "maximize": True}])
def test_differentiable_steps_are_recorded_by_autograd_as_torch_records_them(options):
    """differentiable=True: the new parameter is a function of the old one and of the
    gradient, with torch's own derivatives (as meta-learning uses them). Not centered:
    over several steps torch's own centered differentiable step fails in backward
    (its gradient average is modified in place after autograd saved it)."""
    torch.manual_seed(0)
    start = torch.randn(6, dtype=torch.float64, requires_grad=True)
    grads = [torch.randn(6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    derivatives = []
    for cls in (torch.optim.RMSprop, rmsprop.torch.RMSprop):
        p = start.clone()  # not a leaf: the optimizer steps a function of start
        opt = cls([p], lr=0.1, differentiable=True, **options)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        assert p.grad_fn is not None
        derivatives.append(torch.autograd.grad(p.sum(), [start, *grads]))
    for ours, theirs in zip(derivatives[1], derivatives[0], strict=True):
        assert torch.equal(ours, theirs)


def test_capturable_on_the_cpu_is_refused_at_the_step_before_any_write():
    p = torch.nn.Parameter(torch.ones(3))
    opt = rmsprop.torch.RMSprop([p], capturable=True)
    assert opt.param_groups[0]["capturable"] is True
    p.grad = torch.ones(3)
    with pytest.raises(RuntimeError, match=r"capturable=True needs parameters on one of"):
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3))
    assert opt.state_dict()["param_groups"][0]["capturable"] is True
