"""PyTorch's generic optimizer checks, run on rmsprop.torch.RMSprop as on torch.optim.RMSprop.

PyTorch tests every optimizer with the same checks (``TestOptimRenewed`` in its
``test/test_optim.py``) over the configurations of its optimizer database,
``torch.testing._internal.common_optimizers.optim_db``. The test file is not in
the wheel; the database is. Each check below is written here, after the property
PyTorch checks, and takes the database's RMSprop configurations (with the
``foreach``/``differentiable`` variants it derives) and error cases. Every check
runs twice: on ``torch.optim.RMSprop``, the control that shows the check holds for
PyTorch in this process, and on ``rmsprop.torch.RMSprop``.

Not here: the checks PyTorch runs only on CUDA or several GPUs. Of those,
``benchmarks/gpu_torch_exact.py`` runs a CPU checkpoint loaded into CUDA
parameters (``test_state_dict_with_cuda_params``, without its check that step
counters stay on the CPU: this optimizer keeps CUDA parameters' counters on the
GPU) and ``capturable=True`` in a CUDA graph, on both optimizers;
``test_defaults_changed_to_foreach`` does not apply (it checks that torch's
foreach function is called, and this optimizer runs its own kernel in that
function's order); the multi-GPU ones were not run. Nor the ``fused`` checks
(RMSprop has no fused implementation), sparse gradients (RMSprop refuses them)
and second order optimizers' checks.
"""

import copy
import functools
import importlib
import io
import warnings

import pytest

torch = pytest.importorskip("torch")
common_optimizers = pytest.importorskip(
    "torch.testing._internal.common_optimizers", exc_type=ImportError
)

import rmsprop.torch  # noqa: E402

Parameter = torch.nn.Parameter
#: torch.optim.optimizer (torch.optim hides its submodules' names), for the global hooks.
OPTIMIZER_MODULE = importlib.import_module("torch.optim.optimizer")
INFO = next(info for info in common_optimizers.optim_db if info.optim_cls is torch.optim.RMSprop)
CLASSES = {"torch": torch.optim.RMSprop, "ours": rmsprop.torch.RMSprop}


@pytest.fixture(params=list(CLASSES), name="cls")
def optimizer_class(request):
    return CLASSES[request.param]


def configs(*, skip=(), with_flags=True):
    """The database's RMSprop keyword sets on the CPU (each one a fresh dict)."""
    if not with_flags:
        return [dict(i.kwargs) for i in INFO.optim_inputs_func(device="cpu")]
    inputs = common_optimizers._get_optim_inputs_including_global_cliquey_kwargs(
        "cpu", torch.float32, INFO, skip=skip
    )
    return [dict(i.kwargs) for i in inputs]


def linear_problem(contiguous=True, dtype=torch.float32):
    """PyTorch's weight/bias least-squares problem, on contiguous parameters or on views
    with gaps."""
    if contiguous:
        weight, bias = Parameter(torch.randn(10, 5, dtype=dtype)), Parameter(torch.randn(10))
    else:
        weight = Parameter(torch.randn(10, 5, 2, dtype=dtype)[..., 0])
        bias = Parameter(torch.randn(10, 2, dtype=dtype)[..., 0])
    x = torch.randn(5, dtype=dtype)
    return weight, bias, x


def loss_of(weight, bias, x):
    return (weight.mv(x) + bias).pow(2).sum()


def step_with(optimizer, weight, bias, x):
    optimizer.zero_grad()
    loss = loss_of(weight, bias, x)
    loss.backward()
    optimizer.step()
    return loss


def moved_the_right_way(kwargs, before, after):
    return after > before if kwargs.get("maximize", False) else after < before


def test_the_database_has_rmsprops_configurations():
    assert len(configs(with_flags=False)) >= 8
    assert {"foreach", "differentiable"} >= set(INFO.supported_impls)


def test_errors(cls):
    for case in INFO.optim_error_inputs_func(device="cpu", dtype=torch.float32):
        given = case.optimizer_error_input
        params = given.params if given.params is not None else [Parameter(torch.randn(2))]
        on_step = case.error_on == common_optimizers.OptimizerErrorEnum.STEP_ERROR

        def attempt(params=params, kwargs=given.kwargs, on_step=on_step):
            optimizer = cls(params, **kwargs)
            if on_step:
                optimizer.step()

        if issubclass(case.error_type, Warning):
            with pytest.warns(case.error_type, match=case.error_regex):
                attempt()
        else:
            with pytest.raises(case.error_type, match=case.error_regex):
                attempt()


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("with_schedulers", [True, False])
def test_forloop_goes_right_direction(cls, contiguous, with_schedulers):
    for schedulers in INFO.scheduler_inputs if with_schedulers else [[]]:
        for kwargs in configs(with_flags=False):
            torch.manual_seed(0)
            weight, bias, x = linear_problem(contiguous)
            optimizer = cls([weight, bias], foreach=False, **kwargs)
            running = [make(optimizer) for make in schedulers]
            before = loss_of(weight, bias, x).item()
            for _ in range(20):
                loss = step_with(optimizer, weight, bias, x)
                for scheduler in running:
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(loss.item())
                    else:
                        scheduler.step()
            assert moved_the_right_way(kwargs, before, loss_of(weight, bias, x).item()), kwargs


def test_param_group_with_lrscheduler_goes_right_direction(cls):
    for schedulers in INFO.scheduler_inputs:
        torch.manual_seed(0)
        weight, bias, x = linear_problem()
        optimizer = cls([{"params": [weight]}, {"params": [bias], "lr": 0.01}])
        running = [make(optimizer) for make in schedulers]
        before = loss_of(weight, bias, x).item()
        for _ in range(20):
            loss = optimizer.step(functools.partial(closure, optimizer, weight, bias, x))
            for scheduler in running:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(loss.item())
                else:
                    scheduler.step()
        assert loss_of(weight, bias, x).item() < before


def closure(optimizer, weight, bias, x):
    optimizer.zero_grad()
    loss = loss_of(weight, bias, x)
    loss.backward()
    return loss


def test_tensor_lr_computes_what_the_number_computes(cls):
    for kwargs in configs(skip=("differentiable",)):
        torch.manual_seed(0)
        weight, bias, x = linear_problem()
        twins = [t.detach().clone().requires_grad_(True) for t in (weight, bias)]
        kwargs["lr"] = 1e-3
        by_number = cls([weight, bias], **kwargs)
        by_tensor = cls(twins, **{**kwargs, "lr": torch.tensor(1e-3)})
        for _ in range(5):
            step_with(by_number, weight, bias, x)
            step_with(by_tensor, *twins, x)
            assert torch.equal(weight, twins[0]) and torch.equal(bias, twins[1]), kwargs


def test_complex_parameters_step_as_their_real_views(cls):
    for kwargs in configs(skip=("differentiable",)):
        torch.manual_seed(0)
        complex_params = [
            torch.randn(10, 5, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, dtype=torch.complex64, requires_grad=True),
            torch.randn(10, 5, dtype=torch.float32, requires_grad=True),  # mixed on purpose
        ]
        real_params = [
            (torch.view_as_real(p) if p.is_complex() else p).detach().clone().requires_grad_()
            for p in complex_params
        ]
        complex_opt, real_opt = cls(complex_params, **kwargs), cls(real_params, **kwargs)
        for _ in range(3):
            for p, twin in zip(complex_params, real_params, strict=True):
                twin.grad = torch.randn_like(twin)
                p.grad = torch.view_as_complex(twin.grad) if p.is_complex() else twin.grad.clone()
            real_opt.step()
            complex_opt.step()
            for p, twin in zip(complex_params, real_params, strict=True):
                # PyTorch's criterion: close, not equal (with weight decay torch's own
                # complex and real steps differ in the last bit).
                as_real = torch.view_as_real(p) if p.is_complex() else p
                torch.testing.assert_close(as_real, twin, msg=str(kwargs))


def rosenbrock(t):
    x, y = t
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def test_complex_2d_steps_as_its_real_and_imaginary_parts(cls):
    for kwargs in configs(skip=("differentiable",)):
        torch.manual_seed(0)
        a = torch.randn(2, dtype=torch.complex64, requires_grad=True)
        real = a.real.detach().clone().requires_grad_()
        imag = a.imag.detach().clone().requires_grad_()
        whole, parts = cls([a], **kwargs), cls([real, imag], **kwargs)
        for _ in range(3):
            whole.zero_grad()
            parts.zero_grad()
            rosenbrock(a).abs().backward()
            rosenbrock(torch.complex(real, imag)).abs().backward()
            assert torch.equal(a.grad.real, real.grad) and torch.equal(a.grad.imag, imag.grad)
            whole.step()
            parts.step()
            assert torch.equal(a.real, real) and torch.equal(a.imag, imag), kwargs


def small_net(dtype):
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(2, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1), torch.nn.Sigmoid()
    )
    return net.to(dtype)


def test_foreach_matches_forloop(cls):
    """float64, 7 steps: no gradients at step 2, a frozen layer at steps 3 and 4, and a
    0-dimensional parameter last; parameters and state agree exactly."""
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64).reshape(3, 2)
    for kwargs in configs(with_flags=False):
        runs = []
        for foreach in (False, True):
            net = small_net(torch.float64)
            scalar = torch.empty((), dtype=torch.float64, requires_grad=True)
            scalar.grad = torch.rand_like(scalar)
            optimizer = cls([*net.parameters(), scalar], foreach=foreach, **kwargs)
            for i in range(7):
                optimizer.zero_grad()
                net[2].requires_grad_(i not in (3, 4))
                if i != 2:
                    net(x).sum().backward()
                optimizer.step()
            runs.append((list(net.parameters()), optimizer.state))
        (params, state), (params_foreach, state_foreach) = runs
        for p, q in zip(params, params_foreach, strict=True):
            assert torch.equal(p, q), kwargs
            assert state[p].keys() == state_foreach[q].keys()
            for key in state[p]:
                assert torch.equal(state[p][key], state_foreach[q][key]), (kwargs, key)


def test_param_groups_weight_decay(cls):
    for kwargs in configs(skip=("differentiable",)):
        torch.manual_seed(0)
        weight, bias, x = linear_problem()
        optimizer = cls(
            [{"params": [weight], **kwargs}, {"params": [bias], **kwargs, "weight_decay": 0.0}]
        )
        before = loss_of(weight, bias, x).item()
        for _ in range(20):
            loss = step_with(optimizer, weight, bias, x)
        assert moved_the_right_way(kwargs, before, loss.item()), kwargs


def test_param_groups_lr(cls):
    for kwargs in configs(skip=("differentiable",)):
        torch.manual_seed(0)
        kwargs.setdefault("lr", 1e-3)
        weight, bias, x = linear_problem()
        irrelevant = Parameter(torch.randn(2))
        untouched = irrelevant.detach().clone()
        optimizer = cls([{"params": [weight, bias], **kwargs}, {"params": [irrelevant]}], lr=1e-28)
        before = loss_of(weight, bias, x).item()
        for _ in range(20):
            optimizer.zero_grad()
            loss = loss_of(weight, bias, x)
            loss.backward()
            irrelevant.grad = torch.rand_like(irrelevant)
            optimizer.step()
        assert moved_the_right_way(kwargs, before, loss.item()), kwargs
        assert torch.equal(irrelevant, untouched)


def test_step_is_noop_when_params_have_no_grad(cls):
    params = [torch.randn(2, 3) for _ in range(2)]
    before = [p.clone() for p in params]
    for kwargs in configs():
        cls(params, **kwargs).step(lambda: torch.tensor([1.0]))
        assert all(torch.equal(p, q) for p, q in zip(params, before, strict=True)), kwargs


def test_step_is_noop_for_zero_grads(cls):
    param = torch.randn(5, 1, requires_grad=True)
    before = param.detach().clone()
    for kwargs in configs():
        if kwargs.get("weight_decay", 0):
            continue  # weight decay moves parameters without gradients
        params = [param.clone()] if kwargs.get("differentiable") else [param]
        optimizer = cls(params, **kwargs)
        params[0].grad = torch.zeros_like(params[0])
        optimizer.step(lambda: torch.tensor([1.0]))
        assert torch.equal(params[0].detach(), before), kwargs


def test_optimizer_can_be_printed(cls):
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for kwargs in configs():
        text = repr(cls(params, **kwargs))
        assert text.startswith(cls.__name__) and "Parameter Group 0" in text


def named(params, names):
    return [(f"name{i}", p) for i, p in enumerate(params)] if names else params


def without_names(state_dict):
    state_dict = copy.deepcopy(state_dict)
    for group in state_dict["param_groups"]:
        group.pop("param_names", None)
    return state_dict


@pytest.mark.parametrize("names", [(False, False), (True, False), (False, True), (True, True)])
def test_state_dict_deterministic(cls, names):
    weight = Parameter(torch.randn(2, 3))
    bias = Parameter(torch.randn(2))
    x = torch.randn(3, requires_grad=True)
    for kwargs in configs(skip=("differentiable",)):
        optimizer = cls(named([weight, bias], names[0]), **kwargs)
        for _ in range(10):
            step_with(optimizer, weight, bias, x)
        with torch.no_grad():
            weight_c, bias_c = Parameter(weight.clone()), Parameter(bias.clone())
        twin = cls(named([weight_c, bias_c], names[1]), **kwargs)
        twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        for _ in range(10):
            step_with(optimizer, weight, bias, x)
            step_with(twin, weight_c, bias_c, x)
            assert torch.equal(weight, weight_c) and torch.equal(bias, bias_c), kwargs
        mine, theirs = without_names(optimizer.state_dict()), without_names(twin.state_dict())
        assert_equal_state_dicts(mine, theirs)
        twin.param_groups.extend(twin.param_groups)  # a repeated group looks the same
        assert without_names(twin.state_dict())["param_groups"][-1] == mine["param_groups"][-1]


def assert_equal_state_dicts(first, second):
    assert first["param_groups"] == second["param_groups"]
    assert first["state"].keys() == second["state"].keys()
    for index, values in first["state"].items():
        assert values.keys() == second["state"][index].keys()
        for key, value in values.items():
            assert torch.equal(value, second["state"][index][key]), (index, key)


def conv_bn(dtype=torch.float32):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 2, 1, stride=2), torch.nn.BatchNorm2d(2, eps=1e-05, momentum=0.1)
    ).to(dtype)


def forward_backward(optimizer, net, x):
    optimizer.zero_grad()
    loss = net(x).sum()
    loss.backward()
    return loss


def test_can_load_older_state_dict(cls):
    x = torch.rand(1, 4, 16, 16)
    for kwargs in configs(skip=("differentiable",)):
        net = conv_bn()
        optimizer = cls(net.parameters(), **kwargs)
        for _ in range(3):
            forward_backward(optimizer, net, x)
            optimizer.step()
        older = copy.deepcopy(optimizer.state_dict())
        for group in older["param_groups"]:
            for flag in INFO.not_og_supported_flags:
                group.pop(flag, None)
        optimizer.load_state_dict(older)
        forward_backward(optimizer, net, x)
        optimizer.step()
        assert all(group["foreach"] in (None, True, False) for group in optimizer.param_groups)


@pytest.mark.parametrize("names", [(False, False), (True, False), (False, True), (True, True)])
def test_can_load_from_to_named_state_dict(cls, names):
    x = torch.rand(1, 4, 16, 16)
    for kwargs in configs(skip=("differentiable",)):
        net = conv_bn()
        source = net.named_parameters() if names[0] else net.parameters()
        optimizer = cls(source, **kwargs)
        for _ in range(3):
            forward_backward(optimizer, net, x)
            optimizer.step()
        saved = copy.deepcopy(optimizer.state_dict())
        target = net.named_parameters() if names[1] else net.parameters()
        second = cls(target, **kwargs)
        second.load_state_dict(saved)
        forward_backward(second, net, x)
        second.step()
        if any(names):
            assert second.state_dict()["param_groups"][0]["param_names"] == [
                "0.weight", "0.bias", "1.weight", "1.bias"
            ]  # fmt: skip


@pytest.mark.parametrize("names", [False, True])
def test_save_load_equality_with_weights_only(cls, names):
    weight = Parameter(torch.randn(2, 3))
    bias = Parameter(torch.randn(2))
    x = torch.randn(3, requires_grad=True)
    for kwargs in configs(skip=("differentiable",)):
        optimizer = cls(named([weight, bias], names), **kwargs)
        for _ in range(3):
            optimizer.step(functools.partial(closure, optimizer, weight, bias, x))
        saved = optimizer.state_dict()
        for weights_only in (False, True):
            buffer = io.BytesIO()
            torch.save(saved, buffer)
            buffer.seek(0)
            assert_equal_state_dicts(torch.load(buffer, weights_only=weights_only), saved)


def stepped_optimizers(cls):
    """For each configuration (no ``differentiable``), an optimizer over two parameters
    with gradients, after three steps."""
    params = [Parameter(torch.randn(2, 3)) for _ in range(2)]
    for p in params:
        p.grad = torch.rand_like(p)
    for kwargs in configs(skip=("differentiable",)):
        optimizer = cls(params, **kwargs)
        for _ in range(3):
            optimizer.step()
        yield optimizer


def test_load_nontensor_step(cls):
    for optimizer in stepped_optimizers(cls):
        saved = copy.deepcopy(optimizer.state_dict())
        for values in saved["state"].values():
            values["step"] = values["step"].item()
        optimizer.load_state_dict(saved)
        optimizer.step()
        assert all(torch.is_tensor(s["step"]) for s in optimizer.state.values())
        assert all(s["step"].item() == 4 for s in optimizer.state.values())


def test_state_dict_hooks(cls):
    def pre(optimizer):
        optimizer.state["test"] = 1

    def post(optimizer, state_dict):
        state_dict["ran_pre_hook"] = state_dict["state"].pop("test", None) == 1
        return state_dict

    for kwargs in configs():
        for hooks, expected in (((pre,), "pre"), ((post,), False), ((pre, post), True)):
            optimizer = cls([torch.rand(2, 3, requires_grad=True)], **kwargs)
            if pre in hooks:
                optimizer.register_state_dict_pre_hook(pre)
            if post in hooks:
                optimizer.register_state_dict_post_hook(post)
            state_dict = optimizer.state_dict()
            if expected == "pre":
                assert state_dict["state"]["test"] == 1
            else:
                assert state_dict["ran_pre_hook"] is expected and "test" not in state_dict["state"]


def test_load_state_dict_hooks(cls):
    def pre_sets_lr(optimizer, state_dict):
        state_dict["param_groups"][0]["lr"] = 0.002

    def pre_returns_a_copy(optimizer, state_dict):
        changed = copy.deepcopy(state_dict)
        changed["param_groups"][0]["lr"] = 0.003
        return changed

    def post(optimizer):
        optimizer.state["saw_the_copy"] = optimizer.param_groups[0]["lr"] == 0.003
        optimizer.state["ran_post_hook"] = True

    for kwargs in configs():
        optimizer = cls([torch.rand(2, 3, requires_grad=True)], **kwargs)
        state_dict = optimizer.state_dict()
        optimizer.register_load_state_dict_pre_hook(pre_sets_lr)
        optimizer.load_state_dict(state_dict)
        assert optimizer.param_groups[0]["lr"] == 0.002
        optimizer.register_load_state_dict_pre_hook(pre_returns_a_copy, prepend=True)
        optimizer.load_state_dict(state_dict)
        assert optimizer.param_groups[0]["lr"] == 0.002  # the appended hook ran last

        optimizer = cls([torch.rand(2, 3, requires_grad=True)], **kwargs)
        optimizer.register_load_state_dict_post_hook(post)
        optimizer.load_state_dict(optimizer.state_dict())
        assert optimizer.state["ran_post_hook"] and not optimizer.state["saw_the_copy"]
        optimizer.register_load_state_dict_pre_hook(pre_returns_a_copy)
        optimizer.load_state_dict(optimizer.state_dict())
        assert optimizer.state["saw_the_copy"]


def recorder(calls, value):
    """A step hook that records ``value``."""
    return lambda optimizer, args, kwargs: calls.append(value)


def test_step_hooks_fire_in_order_and_are_removed(cls):
    params = [torch.tensor([1.0, 1.0])]
    for kwargs in configs():
        calls = []
        optimizer, other = cls(params, **kwargs), torch.optim.SGD(params)
        handles = [
            OPTIMIZER_MODULE.register_optimizer_step_pre_hook(recorder(calls, 0)),
            OPTIMIZER_MODULE.register_optimizer_step_post_hook(recorder(calls, 5)),
        ]
        for each in (optimizer, other):
            handles.append(each.register_step_pre_hook(recorder(calls, 1)))
            handles.append(each.register_step_post_hook(recorder(calls, 2)))
        try:
            optimizer.step()
            other.step()
            optimizer.step()
        finally:
            for handle in handles:
                handle.remove()
        optimizer.step()
        other.step()
        assert calls == [0, 1, 2, 5] * 3, kwargs


@pytest.mark.parametrize("hooked", [False, True])
def test_each_step_is_one_profiler_range_named_as_torch_names_it(cls, hooked):
    """With step hooks torch's own wrapper runs; without, the lean range (same name)."""
    params = [Parameter(torch.ones(3))]
    params[0].grad = torch.ones(3)
    optimizer = cls(params, lr=0.1)
    calls = []
    if hooked:
        optimizer.register_step_post_hook(recorder(calls, 1))
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as profile:
        for _ in range(3):
            optimizer.step()
    names = [event.name for event in profile.events()]
    assert names.count(f"Optimizer.step#{cls.__name__}.step") == 3
    assert calls == ([1] * 3 if hooked else [])


def test_deepcopy_copies_all_public_attrs(cls):
    def public(obj):
        return {k for k in obj.__dict__ if not k.startswith("_")}

    for optimizer in stepped_optimizers(cls):
        assert public(optimizer) == public(copy.deepcopy(optimizer))


def test_non_empty_state(cls):
    net = torch.nn.Linear(5, 5)
    for kwargs in configs(with_flags=False):
        optimizer = cls(net.parameters(), **kwargs)
        optimizer.zero_grad()
        net(torch.rand(2, 5)).sum().backward()
        optimizer.step()
        assert optimizer.state and all(len(state) > 0 for state in optimizer.state.values())


def test_the_flags_torch_would_derive_are_all_accepted():
    """Every keyword set above, flags included, constructs both optimizers alike."""
    params = [Parameter(torch.randn(3))]
    for kwargs in configs():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = rmsprop.torch.RMSprop(params, **kwargs).param_groups[0]
        theirs = torch.optim.RMSprop(params, **kwargs).param_groups[0]
        assert {k: ours[k] for k in theirs if k != "params"} == {
            k: v for k, v in theirs.items() if k != "params"
        }, kwargs
