"""rmsprop.torch.flatten_: parameters and gradients as views of flat buffers.

A flattened model computes and trains as before, bit for bit; its gradients stay in
their buffer through backward passes and the optimizers' zero_grad; what a user
changes afterwards (a gradient, a parameter's memory, the module's parameter) is
seen by the next step before it writes anything.
"""

import copy

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop._flat import ALIGNMENT  # noqa: E402
from rmsprop.torch import flatten_, unflatten_  # noqa: E402
from rmsprop.torch._flatten import is_flat_gradient  # noqa: E402


def _net(seed=0, layout=torch.contiguous_format, flat=False):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5),
    ).to(memory_format=layout)  # fmt: skip
    if flat:
        flatten_(net)
    return net


def _batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 6, 6, generator=generator), torch.randn(8, 5, generator=generator)


def _storage(t):
    return t.untyped_storage().data_ptr()


def _train(net, make_optimizer, steps=4, zero=lambda opt, net: opt.zero_grad()):
    x, y = _batch()
    opt = make_optimizer(net.parameters())
    for _ in range(steps):
        zero(opt, net)
        torch.nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return opt


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_flatten_keeps_each_parameter_and_puts_it_in_one_buffer(layout):
    net = _net(layout=layout)
    before = {name: (p, p.detach().clone(), p.stride()) for name, p in net.named_parameters()}
    x, _ = _batch()
    out = net(x)
    (buffer,) = flatten_(net)
    for name, p in net.named_parameters():
        same, values, stride = before[name]
        assert p is same and torch.equal(p, values) and p.stride() == stride
        assert _storage(p) == _storage(buffer)
        assert (p.data_ptr() - _storage(buffer)) % ALIGNMENT == 0
        assert p.grad is not None and not p.grad.any() and is_flat_gradient(p.grad)
        assert p.grad.stride() == p.stride()
    assert len({_storage(p.grad) for p in net.parameters()}) == 1
    assert torch.equal(net(x), out)


def test_training_a_flattened_model_equals_training_it_as_it_was():
    results = []
    for flat in (False, True):
        net = _net(flat=flat)
        _train(net, lambda ps: rmsprop.torch.RMSProp(ps, preset="pytorch", momentum=0.9))
        results.append([p.detach().clone() for p in net.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_the_drop_in_on_a_flattened_model_equals_torch_optim_rmsprop():
    ours, theirs = _net(), _net()
    flatten_(ours)
    _train(ours, lambda ps: rmsprop.torch.RMSprop(ps, lr=1e-2, centered=True))
    _train(theirs, lambda ps: torch.optim.RMSprop(ps, lr=1e-2, centered=True))
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_keeps_flat_gradients_in_their_buffer(set_to_none):
    net = _net()
    flatten_(net)
    grads = [p.grad for p in net.parameters()]
    opt = _train(
        net,
        lambda ps: rmsprop.torch.RMSProp(ps, lr=1e-2),
        zero=lambda o, n: o.zero_grad(set_to_none),
    )
    assert all(p.grad is g for p, g in zip(net.parameters(), grads, strict=True))
    assert any(g.any() for g in grads)  # the backward accumulated into them
    opt.zero_grad(set_to_none)
    assert all(p.grad is g and not g.any() for p, g in zip(net.parameters(), grads, strict=True))


def test_model_zero_grad_drops_flat_gradients_and_training_stays_right():
    """``model.zero_grad()`` sets gradients to None: the next backward puts them
    elsewhere, and the optimizer steps those (as it would without flatten_)."""
    results = []
    for flat in (False, True):
        net = _net(flat=flat)
        opt = _train(
            net, lambda ps: rmsprop.torch.RMSProp(ps, lr=1e-2), zero=lambda o, n: n.zero_grad()
        )
        results.append([p.detach().clone() for p in net.parameters()])
        assert not any(is_flat_gradient(p.grad) for p in net.parameters())
        assert opt._plans  # its launches were kept, for the new gradients' addresses
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_unflatten_gives_each_parameter_and_gradient_its_own_memory():
    net = _net(layout=torch.channels_last)
    x, y = _batch()
    flatten_(net)
    torch.nn.functional.mse_loss(net(x), y).backward()
    values = [(p.detach().clone(), p.grad.clone(), p.stride()) for p in net.parameters()]
    unflatten_(net)
    storages = {_storage(p) for p in net.parameters()}
    assert len(storages) == len(values)
    for p, (value, grad, stride) in zip(net.parameters(), values, strict=True):
        assert torch.equal(p, value) and torch.equal(p.grad, grad) and p.stride() == stride
        assert not is_flat_gradient(p.grad)
    flatten_(net)  # and back again
    assert len({_storage(p) for p in net.parameters()}) == 1


def test_a_group_added_after_flatten_trains_like_one_that_was_never_flattened():
    results = []
    for flat in (False, True):
        net = _net(flat=flat)
        params = list(net.parameters())
        opt = rmsprop.torch.RMSProp(params[:2], preset="pytorch", lr=1e-2)
        x, y = _batch()
        for step in range(4):
            if step == 2:
                opt.add_param_group({"params": params[2:], "momentum": 0.5})
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def _replace_a_gradient(net):
    net[0].weight.grad = net[0].weight.grad.clone() * 2.0


def _re_home_a_parameter(net):
    net[4].weight.data = net[4].weight.data.clone()


def _assign_a_new_parameter_to_the_module(net):
    net[4].bias = torch.nn.Parameter(net[4].bias.detach().clone())


@pytest.mark.parametrize(
    "change", [_replace_a_gradient, _re_home_a_parameter, _assign_a_new_parameter_to_the_module],
    ids=lambda f: f.__name__.strip("_"),
)  # fmt: skip
def test_a_change_after_flatten_is_seen_by_the_next_step(change):
    """The same change to a flattened model under rmsprop.torch.RMSprop and to a plain
    one under torch.optim.RMSprop: the same numbers (a new module parameter is not the
    optimizer's: both keep stepping the one they were given)."""
    nets = [_net(), _net()]
    flatten_(nets[0])
    x, y = _batch()
    opts = [
        rmsprop.torch.RMSprop(nets[0].parameters(), lr=1e-2),
        torch.optim.RMSprop(nets[1].parameters(), lr=1e-2),
    ]
    kept = [list(net.parameters()) for net in nets]
    for step in range(4):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            if step == 2:
                change(net)
            opt.step()
    for a, b in zip(*kept, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_flatten_refuses_what_it_cannot_re_home_before_changing_anything():
    shared = torch.zeros(10)
    a, b = torch.nn.Parameter(shared[:6]), torch.nn.Parameter(shared[4:])
    c = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="share memory"):
        flatten_([c, a, b])
    assert _storage(c) != _storage(a)  # nothing moved
    with pytest.raises(TypeError, match="floating"):
        flatten_([c, torch.zeros(3, dtype=torch.int64)])
    c.grad = torch.ones(3).to_sparse()
    with pytest.raises(ValueError, match="sparse"):
        flatten_([c])
    c.grad = None
    with pytest.raises(TypeError, match="plain tensors"):
        flatten_([c, [1.0]])


def test_a_copied_flattened_model_and_optimizer_train_as_the_originals():
    net = _net()
    flatten_(net)
    opt = _train(net, lambda ps: rmsprop.torch.RMSProp(ps, lr=1e-2, momentum=0.9), steps=2)
    twin = copy.deepcopy(net)
    twin_opt = rmsprop.torch.RMSProp(twin.parameters(), lr=1e-2, momentum=0.9)
    twin_opt.load_state_dict(opt.state_dict())
    x, y = _batch(seed=7)
    for model, optimizer in ((net, opt), (twin, twin_opt)):
        for _ in range(2):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()
    for a, b in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_gradient_that_autograd_replaces_is_the_one_stepped():
    """``backward(create_graph=True)`` makes autograd replace each gradient instead of
    accumulating into the flat buffer; the next step reads the new gradients."""
    import warnings  # noqa: PLC0415

    nets = [_net(), _net()]
    flatten_(nets[0])
    opts = [
        rmsprop.torch.RMSprop(nets[0].parameters(), lr=1e-2),
        torch.optim.RMSprop(nets[1].parameters(), lr=1e-2),
    ]
    x, y = _batch()
    for step in range(4):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            with warnings.catch_warnings():  # the reference cycle create_graph warns of
                warnings.simplefilter("ignore", UserWarning)
                loss.backward(create_graph=step == 2)
            if step == 2:
                assert not any(is_flat_gradient(p.grad) for p in net.parameters())
            opt.step()
            if step == 2:
                for p in net.parameters():  # break the cycle
                    p.grad = p.grad.detach()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
