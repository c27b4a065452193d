"""Spans: a flattened group's step as one launch over a stretch of each flat buffer.

Where a launch's members fill consecutive slots of the buffers this package laid out
(flatten_'s parameters and gradients, the state's arenas), the kernel runs over one
stretch of each, padding included (rmsprop.torch._spans). Each test compares, bit
for bit, with the same model stepped member by member; the padding must stay zero,
and no tensor outside the group may ever be inside a span.
"""

import gc
import math

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel, _kernels  # noqa: E402
from rmsprop.torch import _spans, flatten_  # noqa: E402

pytestmark = pytest.mark.skipif(_accel.load() is None, reason="Numba is not installed")


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(  # sizes that leave padding: 4*3*3*3 = 108, 4, 4, 5*36, 5
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5),
    )  # fmt: skip


def _batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(6, 3, 5, 5, generator=generator), torch.randn(6, 5, generator=generator)


@pytest.fixture
def launches(monkeypatch):
    """The number of gradients each Numba launch was called with (1: a span)."""
    sizes = []
    call = _kernels.Launch.__call__
    monkeypatch.setattr(
        _kernels.Launch,
        "__call__",
        lambda self, grads, *a: sizes.append(len(grads)) or call(self, grads, *a),
    )
    return sizes


def _train(net, groups, steps=4, zero=lambda opt, net: opt.zero_grad(), before=None, **options):
    x, y = _batch()
    opt = rmsprop.torch.RMSProp(groups(net), **({"lr": 1e-2} | options))
    for step in range(steps):
        zero(opt, net)
        torch.nn.functional.mse_loss(net(x), y).backward()
        if before is not None:
            before(step, net)
        opt.step()
    return opt


def _same(nets, opts):
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        assert torch.equal(a, b)
        if opts is not None:
            for key, value in opts[1].state[b].items():
                assert torch.equal(opts[0].state[a][key], value), key


OPTIONS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"float32_arithmetic": True, "maximize": True, "momentum": 0.5, "nesterov": True},
    {"decoupled_weight_decay": True, "weight_decay": 0.1, "eps_in_sqrt": False},
    {"preset": "tensorflow"},  # starts the average at 1
    {"preset": "pytorch", "momentum": 0.9, "centered": True},  # torch's order
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "defaults")
def test_a_flattened_group_steps_as_one_span_bit_for_bit(options, launches):
    nets = [_net(), _net()]
    flatten_(nets[0])
    opts = [_train(net, lambda n: n.parameters(), **options) for net in nets]
    spans = launches[: len(launches) // 2]
    members = launches[len(launches) // 2 :]
    assert spans == [1] * 4 and members == [len(list(nets[1].parameters()))] * 4
    _same(nets, opts)


def _padding_is_zero(tensors):
    """Whether every element of the storage under ``tensors`` (views of one buffer) that
    none of them covers is zero."""
    first = tensors[0]
    whole = first.as_strided((first.untyped_storage().nbytes() // first.element_size(),), (1,), 0)
    covered = torch.zeros(whole.numel(), dtype=torch.bool)
    for t in tensors:
        covered[t.storage_offset() : t.storage_offset() + t.numel()] = True
    assert 0 < int(covered.sum()) < whole.numel(), "the case has padding"
    return bool((whole[~covered] == 0).all())


def test_the_padding_stays_zero_and_a_nan_stays_in_its_tensor(launches):
    """The padding between slots is stepped with the rest: zero parameter, gradient and
    state give zero; a NaN gradient of one parameter reaches no padding."""
    net = _net()
    flatten_(net)

    def poison(step, net):
        if step == 3:  # the last: the forward pass spreads no NaN
            net[4].bias.grad[0] = float("nan")

    opt = _train(
        net, lambda n: n.parameters(), before=poison, momentum=0.9, centered=True,
        weight_decay=0.1, maximize=True,
    )  # fmt: skip
    assert 1 in launches
    params = list(net.parameters())
    assert math.isnan(net[4].bias[0].item()) and not net[4].bias[1:].isnan().any()
    assert _padding_is_zero(params) and _padding_is_zero([p.grad for p in params])
    keys = ("square_avg", "momentum_buffer", "grad_avg")  # one buffer, of one dtype
    assert _padding_is_zero([opt.state[p][key] for key in keys for p in params])


def test_eps_set_to_zero_after_a_span_is_kept_ends_the_span(launches):
    """``eps`` changed to 0 in a group between steps: the kept plan is not reused (its
    span would compute 0/0 in the padding), and the padding stays zero."""
    net = _net()
    flatten_(net)
    x, y = _batch()
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-2, centered=True)
    for step in range(4):
        opt.zero_grad()
        torch.nn.functional.mse_loss(net(x), y).backward()
        if step == 2:
            opt.param_groups[0]["eps"] = 0.0
        opt.step()
    count = len(list(net.parameters()))
    assert launches == [1, 1, count, count]
    params = list(net.parameters())
    assert _padding_is_zero(params)
    keys = ("square_avg", "grad_avg")
    assert _padding_is_zero([opt.state[p][key] for key in keys for p in params])


def _decay_and_no_decay(net):
    """Two groups whose members alternate in the flat buffer (weights, then the rest)."""
    params = list(net.parameters())
    return [
        {"params": [p for p in params if p.dim() > 1], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() <= 1]},
    ]


def _frozen_between(net):
    net[1].weight.requires_grad_(False)  # between the convolution's and the linear's
    return [p for p in net.parameters() if p.requires_grad]


@pytest.mark.parametrize(
    ("groups", "options"),
    [(_decay_and_no_decay, {}), (_frozen_between, {"weight_decay": 0.1}),
     (lambda n: n.parameters(), {"eps": 0.0})],
    ids=["groups-alternate", "frozen-parameter-between", "eps-0"],
)  # fmt: skip
def test_no_span_covers_a_tensor_outside_the_launch_or_divides_by_zero(groups, options, launches):
    """Another group's parameters, or a frozen one, between a group's members: member by
    member (a span would step them with this group's options); eps=0: padding would
    compute 0/0."""
    nets = [_net(), _net()]
    flatten_(nets[0])
    frozen = [p.detach().clone() for p in nets[0].parameters() if p.dim() == 1]
    opts = [_train(net, groups, **options) for net in nets]
    assert 1 not in launches
    _same(nets, opts)
    if groups is _frozen_between:
        assert torch.equal(nets[0][1].weight, frozen[1])


def test_gradients_out_of_their_buffer_are_stepped_member_by_member(launches):
    """``model.zero_grad()`` drops the flat gradients: the next backward allocates new
    ones, which the span does not read."""
    nets = [_net(), _net()]
    flatten_(nets[0])

    calls = []

    def drop(opt, net):  # from the third step on (the plan holds a span by then)
        step = len(calls) % 4
        calls.append(step)
        (net.zero_grad if step >= 2 else opt.zero_grad)()

    opts = [_train(net, lambda n: n.parameters(), zero=drop) for net in nets]
    assert launches[:4] == [1, 1, 6, 6]
    _same(nets, opts)


def test_a_gradient_whose_memory_is_swapped_in_place_is_read_where_it_now_is(launches):
    """``p.grad.data = ...`` keeps the gradient tensor and moves its memory: the span,
    which reads the old memory, is not taken."""
    nets = [_net(), _net()]
    flatten_(nets[0])

    def swap(step, net):
        if step == 2:
            weight = net[4].weight
            weight.grad.data = weight.grad.data.clone() * 3.0

    opts = [_train(net, lambda n: n.parameters(), before=swap) for net in nets]
    assert launches[:4] == [1, 1, 6, 6]
    _same(nets, opts)


def test_parameters_carved_from_a_buffer_of_their_own_are_not_spanned(launches):
    """Views of a buffer that flatten_ did not make: nothing says what else is in it."""
    buffer = torch.zeros(64)
    params = [torch.nn.Parameter(buffer[i * 16 : i * 16 + 10]) for i in range(3)]
    grads = torch.ones(64)
    for i, p in enumerate(params):
        p.grad = grads[i * 16 : i * 16 + 10]
    opt = rmsprop.torch.RMSProp(params, lr=1e-2)
    opt.step()
    opt.step()
    assert launches == [3, 3]
    assert not buffer[10:16].any()


def test_a_freed_buffer_is_forgotten():
    buffer = torch.zeros(32)
    _spans.register(buffer, [0, 16], [10, 16])
    key = id(buffer.untyped_storage())
    assert key in _spans._ARENAS
    view = buffer[:10]
    assert _spans._slot(view) is not None
    assert _spans._slot(buffer[:9]) is None  # not a slot's size
    assert _spans._slot(buffer[:10].view(torch.int32)) is None  # not its dtype
    del buffer, view
    gc.collect()
    assert key not in _spans._ARENAS


def test_a_span_needs_consecutive_slots_at_the_same_offsets_in_every_role():
    offsets, sizes = [0, 16, 32], [10, 16, 5]
    buffers = [torch.zeros(48) for _ in range(3)]  # parameters, gradients, square averages
    for buffer in buffers:
        _spans.register(buffer, offsets, sizes)
    p, g, v = (
        [b.as_strided((n,), (1,), o) for o, n in zip(offsets, sizes, strict=True)] for b in buffers
    )
    members = [(p[i], g[i], [v[i], None, None]) for i in range(3)]
    whole = _spans.span(members[:2], 1e-8)
    assert whole is not None
    assert [t.data_ptr() for t in (whole[0], whole[1], whole[2][0])] == [
        b.data_ptr() for b in buffers
    ]
    assert whole[0].numel() == 32 and whole[2][1:] == [None, None]
    assert _spans.span(members[::-1], 1e-8)[0].numel() == 37  # in any order
    assert _spans.span([members[0], members[2]], 1e-8) is None  # slot 1 lies between
    assert _spans.span(members[:2], 0.0) is None
    swapped = [(p[0], g[0], [v[1], None, None]), (p[1], g[1], [v[0], None, None])]
    assert _spans.span(swapped, 1e-8) is None  # not at the same offsets
    loose = [(p[0], g[0], [torch.zeros(10), None, None]), members[1]]
    assert _spans.span(loose, 1e-8) is None  # a buffer of its own


def test_flatten_given_an_optimizer_gives_each_group_buffers_of_its_own(launches):
    """Groups that alternate in the model: flatten_(optimizer) flattens each group by
    itself, so that each is one stretch; unflatten_(optimizer) undoes it."""
    nets = [_net(), _net()]
    opts = [rmsprop.torch.RMSProp(_decay_and_no_decay(net), lr=1e-2) for net in nets]
    assert len(flatten_(opts[0])) == 2
    x, y = _batch()
    for _ in range(3):
        for net, opt in zip(nets, opts, strict=True):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
    assert launches == [1, 1, 2, 4] * 3  # each flattened group one stretch; the twin's not
    _same(nets, opts)
    rmsprop.torch.unflatten_(opts[0])
    assert len({p.untyped_storage().data_ptr() for p in nets[0].parameters()}) == 6


def test_a_gradient_changed_in_place_to_another_dtype_is_never_read_as_the_old_one(launches):
    """``p.grad.data = p.grad.data.bfloat16()`` keeps the gradient tensor and halves its
    bytes: the kept launch, built for float32 gradients, must not read it."""
    nets = [_net(), _net()]
    flatten_(nets[0])

    def narrow(step, net):
        if step >= 2:
            for p in net.parameters():
                p.grad.data = p.grad.data.bfloat16()

    opts = [_train(net, lambda n: n.parameters(), before=narrow) for net in nets]
    assert launches[:2] == [1, 1] and 1 not in launches[2:4]
    _same(nets, opts)
