"""8-bit blockwise state (``state_bits=8``): the codes, the kernels, the torch optimizer.

The codes are defined once, by rmsprop._blockwise's NumPy functions; the kernels are
checked against a reference step written here from them and from the rule itself:
the state decoded, the step evaluated in float64 by rmsprop._rule.family_update,
the parameter rounded once, each state buffer encoded with 20 bits of the element's
draw (rmsprop._random) from the sequence of (seed, step, stream).
"""

import copy

import numpy as np
import pytest

from rmsprop import Hyperparameters, _blockwise, _lowbit_numpy, _random, _rule
from rmsprop._blockwise import BLOCK, SIGNED, UNSIGNED

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402
from rmsprop._numba_support import GROUP_CHUNK, MIN_CHUNK, work_table  # noqa: E402
from rmsprop.torch import _lowbit_ops  # noqa: E402

KEYS = ("square_avg", "momentum_buffer", "grad_avg")
OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "eps_in_sqrt": False, "maximize": True},
    {
        "momentum": 0.9,
        "decoupled_weight_decay": True,
        "weight_decay": 0.01,
        "lr_in_momentum": False,
    },
]


# --- the codes ------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [UNSIGNED, SIGNED], ids=["unsigned", "signed"])
def test_every_code_decodes_and_encodes_back_to_itself(code):
    every = np.arange(256, dtype=np.uint8)
    every = every[np.argsort(-np.abs(_blockwise.decode(every, np.ones(1, np.float32), code)))]
    values = _blockwise.decode(every, np.array([2.0**-3], np.float32), code)
    again, scales = _blockwise.encode(values, code)  # the largest finite code sets the scale
    nan = np.isnan(values)
    assert nan.sum() == (2 if code.signed else 1)
    assert scales[0] == np.float32(2.0**-3)
    same = ~nan & (every != 0x80)  # -0 is encoded as +0
    assert np.array_equal(again[same], every[same])
    assert np.isnan(_blockwise.decode(again, scales, code)[nan]).all()


@pytest.mark.parametrize("code", [UNSIGNED, SIGNED], ids=["unsigned", "signed"])
def test_rounding_to_nearest_is_within_half_a_code_over_the_range(code):
    rng = np.random.default_rng(0)
    decades = 9 if not code.signed else 4
    x = np.exp(rng.uniform(-decades * np.log(10), 0, 100_000)) * 1e5
    if code.signed:
        x *= rng.choice([-1.0, 1.0], x.size)
    x[::BLOCK] = 1e5  # every block's largest, so the range below it is the code's
    codes, scales = _blockwise.encode(x, code)
    y = _blockwise.decode(codes, scales, code)
    # 3 bits of mantissa: half a spacing is at most 2**-4 of the value in the normal range.
    smallest_normal = np.repeat(scales.astype(np.float64), BLOCK)[: x.size] * 2.0 ** (
        -30 if not code.signed else -14
    )
    normal = np.abs(x) >= smallest_normal
    assert normal.mean() > 0.9
    assert np.all(np.abs(y - x)[normal] <= np.abs(x)[normal] * 2.0**-4)
    assert np.all(np.abs(y - x)[~normal] <= smallest_normal[~normal] * 2.0**-4)


@pytest.mark.parametrize("size", [0, 1, 255, 256, 257, 4097])
def test_block_edges(size):
    x = np.linspace(0.5, 3.0, size)
    codes, scales = _blockwise.encode(x, UNSIGNED)
    assert codes.shape == (size,) and scales.shape == (_blockwise.blocks(size),)
    assert _blockwise.check_scales(scales)
    y = _blockwise.decode(codes, scales, UNSIGNED)
    assert np.all(np.abs(y - x) <= x * 2.0**-4)


def test_an_all_zero_block_and_its_neighbours():
    x = np.concatenate([np.zeros(BLOCK), np.full(BLOCK, 1e-30), np.full(10, 5.0)])
    codes, scales = _blockwise.encode(x, SIGNED)
    assert np.all(codes[:BLOCK] == 0) and scales[0] == np.float32(2.0**-126)
    assert np.array_equal(_blockwise.decode(codes, scales, SIGNED)[:BLOCK], np.zeros(BLOCK))
    assert np.allclose(_blockwise.decode(codes, scales, SIGNED)[BLOCK:], x[BLOCK:], rtol=2.0**-4)


@pytest.mark.parametrize("code", [UNSIGNED, SIGNED], ids=["unsigned", "signed"])
def test_nan_and_infinity_stay_in_their_element(code):
    x = np.linspace(0.1, 1.0, 2 * BLOCK)
    x[[3, 4, 5, 300]] = [np.nan, np.inf, 1e39, -np.inf]
    codes, scales = _blockwise.encode(x, code)
    y = _blockwise.decode(codes, scales, code)
    bad = np.zeros(x.size, bool)
    bad[[3, 4, 5, 300]] = True
    assert np.all(np.isnan(y[bad]))
    assert np.all(np.abs(y[~bad] - x[~bad]) <= np.abs(x[~bad]) * 2.0**-4)
    assert np.array_equal(scales, [0.5, 1.0])  # set by the largest finite values, 0.55 and 1


def test_stochastic_rounding_is_unbiased():
    """Over 4,000 independent draws the mean of a value's codes is the value, within
    the sampling error (a 5-sigma bound), where rounding to nearest is off by 2.6 %."""
    rng = np.random.default_rng(1)
    x = np.full(BLOCK, 0.3)
    x[0] = 1.0
    draws = 4000
    total = np.zeros(BLOCK)
    for _ in range(draws):
        random = rng.integers(0, 1 << 20, BLOCK, dtype=np.uint64)
        total += _blockwise.decode(*_blockwise.encode(x, UNSIGNED, random), UNSIGNED)
    mean = total[1:] / draws
    spacing = 2.0**-5  # of the codes around 0.3 in a block of scale 1
    assert np.all(np.abs(mean - 0.3) < 5 * spacing / 2 / np.sqrt(draws))
    assert abs(np.mean(mean) - 0.3) < 1e-4
    nearest = _blockwise.decode(*_blockwise.encode(x, UNSIGNED), UNSIGNED)[1]
    assert abs(nearest - 0.3) > 0.005


def test_scales_of_a_checkpoint_are_checked():
    assert _blockwise.check_scales(np.array([2.0**-126, 1.0, 2.0**126], np.float32))
    assert not _blockwise.check_scales(np.array([2.0**-127], np.float32))
    for bad in (3.0, 0.0, -1.0, np.inf, np.nan):
        assert not _blockwise.check_scales(np.array([1.0, bad], np.float32))


def test_chunks_start_on_blocks():
    for sizes in ([1, 5000, 70_001], [GROUP_CHUNK * 3 + 7], [300] * 50):
        chunks, _ = work_table(np.array(sizes, dtype=np.int64))
        assert np.all(chunks[:, 1] % BLOCK == 0)
    assert MIN_CHUNK % BLOCK == 0 and GROUP_CHUNK % BLOCK == 0


# --- the Numba kernel against the reference -------------------------------------------------


def _reference(p, g, codes, scales, hp, step, stream, seed):
    """The new parameter (float32) and (codes, scales) of each buffer, for one member."""
    n = p.numel()
    wide = [
        None if c is None else _blockwise.decode(c.numpy().ravel(), s.numpy(), _blockwise.CODES[k])
        for c, s, k in zip(codes, scales, KEYS, strict=True)
    ]
    new_p, new = _rule.family_update(
        p.double().numpy().ravel(), g.double().numpy().ravel(),
        _rule.State(wide[0], wide[1] if hp.momentum else 0.0, wide[2] if hp.centered else 0.0),
        hp, np.sqrt, lambda x: np.maximum(x, 0.0), 1.0,
    )  # fmt: skip
    begin = _random.start(seed, step, stream)
    j = np.arange(n, dtype=np.uint64)
    out = []
    for k, value in enumerate((new.cache, new.momentum_buffer, new.grad_avg)):
        if codes[k] is None:
            out.append(None)
            continue
        values = np.broadcast_to(np.asarray(value, np.float64), (n,))
        out.append(_blockwise.encode(values, _blockwise.CODES[KEYS[k]], _random.weyl(begin, j, k)))
    return np.asarray(new_p, np.float64).astype(np.float32), out


def _members(hp, sizes, seed=0):
    """Members with float32 parameters, gradients over 11 decades, 8-bit state (a NaN in
    each buffer of more than 3 elements), their scales, counters and streams."""
    generator = torch.Generator().manual_seed(seed)
    members, scales, counters, streams = [], [], [], []
    for k, n in enumerate(sizes):
        p = torch.randn(n, generator=generator)
        magnitude = 10.0 ** torch.randint(-8, 3, (n,), generator=generator)
        g = torch.randn(n, generator=generator) * magnitude
        codes, scale = [], []
        for key, used in zip(KEYS, (True, hp.momentum, hp.centered), strict=True):
            if not used:
                codes.append(None)
                scale.append(None)
                continue
            draw = torch.rand if key == "square_avg" else torch.randn
            x = draw(n, generator=generator)
            x = x.double() * magnitude.double() ** 2
            if n > 3:
                x[2] = float("nan")
            c, s = _blockwise.encode(x.numpy(), _blockwise.CODES[key])
            codes.append(torch.from_numpy(c))
            scale.append(torch.from_numpy(s))
        members.append((p, g, codes))
        scales.append(scale)
        counters.append(torch.tensor(float(3 + k)))
        streams.append(11 * k)
    return members, scales, counters, streams


def _numpy_launch(members, hp, *, stochastic, scales):
    """rmsprop._lowbit_numpy's launch on the memory of CPU tensors."""
    counters, streams, seed = stochastic
    arrays = [(p.numpy(), g.numpy(), [None if c is None else c.numpy() for c in codes])
              for p, g, codes in members]  # fmt: skip
    launch = _lowbit_numpy.Launch(
        arrays, hp, stochastic=([c.numpy() for c in counters], streams, seed),
        scales=[[None if s is None else s.numpy() for s in row] for row in scales],
    )  # fmt: skip
    return lambda grads, hp: launch([g.numpy() for g in grads], hp)


@pytest.mark.parametrize(
    "launch_type",
    [kernels.Launch, _lowbit_ops.Launch, _numpy_launch],
    ids=["numba", "ops", "numpy"],
)
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_the_kernel_writes_the_references_bytes(options, launch_type):
    """The Numba kernel, and its step in torch operations (for devices without it) and
    in NumPy (rmsprop.RMSProp without it), on the same memory."""
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    members, scales, counters, streams = _members(hp, [1, 7, 300, 40_000, 70_001])
    seed = 2**40 + 5
    expected = [
        _reference(p, g, codes, scales[k], hp, int(counters[k]) + 1, streams[k], seed)
        for k, (p, g, codes) in enumerate(members)
    ]
    launch = launch_type(members, hp, stochastic=(counters, streams, seed), scales=scales)
    launch([g for _, g, _ in members], hp)
    for k, ((p, _, codes), (new_p, out)) in enumerate(zip(members, expected, strict=True)):
        assert np.array_equal(p.numpy(), new_p, equal_nan=True)
        for c, s, e in zip(codes, scales[k], out, strict=True):
            if c is not None:
                assert np.array_equal(s.numpy(), e[1])
                assert np.array_equal(c.numpy(), e[0])


@pytest.mark.parametrize("options", OPTION_SETS[:2], ids=str)
def test_the_triton_kernel_writes_the_same_bytes(options):
    """Under Triton's interpreter (CPU tensors) the GPU kernel writes the CPU kernel's
    parameters, codes and scales (float64 arithmetic, as each rounds once)."""
    pytest.importorskip("triton")
    from rmsprop import _triton  # noqa: PLC0415

    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    results = []
    for launch_type in (kernels.Launch, _triton.Launch):
        members, scales, counters, streams = _members(hp, [3, 300, 9000], seed=4)
        launch = launch_type(members, hp, stochastic=(counters, streams, 9), scales=scales)
        launch([g for _, g, _ in members], hp)
        results.append(
            [t for (p, _, c), s in zip(members, scales, strict=True) for t in (p, *c, *s)]
        )
    for a, b in zip(*results, strict=True):
        if a is not None:  # bit for bit (the parameter has a NaN where its state had one)
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def test_a_constant_gradient_keeps_the_cache_unbiased():
    """The square average of 100,000 elements under a constant gradient, averaged over
    the elements, follows the float64 recursion within its sampling error; rounded to
    nearest, it would stop moving once an update is under half a code (about 3 %)."""
    hp = Hyperparameters.from_preset("pytorch", lr=0.0, beta=0.99)
    n = 100_000
    p, g = torch.zeros(n), torch.full((n,), 0.3)
    v = torch.zeros(n, dtype=torch.uint8)
    scale = torch.full((_blockwise.blocks(n),), 2.0**-126)
    counter = torch.tensor(0.0)
    launch = kernels.Launch(
        [(p, g, [v, None, None])], hp, stochastic=([counter], [0], 7), scales=[[scale, None, None]]
    )
    exact = 0.0
    for _ in range(300):
        launch([g], hp)
        counter += 1
        exact = 0.99 * exact + 0.01 * 0.09
    mean = float(np.mean(_blockwise.decode(v.numpy(), scale.numpy(), UNSIGNED)))
    assert abs(mean - exact) < 2e-3 * exact


# --- rmsprop.torch.RMSProp(state_bits=8) ----------------------------------------------------


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 10))


def _train(net, opt, steps, seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 64, generator=generator)
    y = torch.randint(0, 10, (128,), generator=generator)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    return float(loss.detach())


def _state_bytes(opt):
    return sum(t.numel() * t.element_size() for s in opt.state.values() for k, t in s.items()
               if k != "step")  # fmt: skip


def test_the_state_takes_a_quarter_of_float32s_bytes():
    net = _net()
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-3, momentum=0.9, state_bits=8)
    _train(net, opt, 1)
    big, small = net[0].weight, net[0].bias
    state = opt.state[big]
    assert state["square_avg"].dtype == torch.uint8 and state["square_avg"].shape == big.shape
    assert state["momentum_buffer_scale"].shape == (_blockwise.blocks(big.numel()),)
    assert opt.state[small]["square_avg"].dtype == torch.float32  # under MIN_SIZE
    coded = sum(t.numel() * t.element_size() for k, t in state.items() if k != "step")
    assert coded / big.numel() <= 2.1  # square average and momentum buffer, scales included
    assert coded / big.numel() == 2 * (1 + 4 / BLOCK)


@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_it_trains_as_float32_state_does(options):
    """60 steps: the loss with 8-bit state within 5 % of float32 state's (one set
    maximizes, one decays the weights: the losses differ between sets, not within)."""
    losses = {}
    for bits in (32, 8):
        net = _net()
        opt = rmsprop.torch.RMSProp(net.parameters(), lr=3e-3, preset="pytorch", state_bits=bits,
                                    **options)  # fmt: skip
        losses[bits] = _train(net, opt, 60)
    assert abs(losses[8] - losses[32]) <= 0.05 * abs(losses[32]) + 1e-3


def test_a_checkpoint_resumes_bit_for_bit():
    whole, resumed = _net(), _net()
    options = {"lr": 1e-3, "momentum": 0.9, "centered": True, "state_bits": 8, "seed": 5}
    opt = rmsprop.torch.RMSProp(whole.parameters(), **options)
    _train(whole, opt, 3)
    saved = copy.deepcopy(opt.state_dict())
    resumed.load_state_dict(whole.state_dict())
    again = rmsprop.torch.RMSProp(resumed.parameters(), **{**options, "seed": 0})
    again.load_state_dict(saved)  # the checkpoint's seed and state_bits
    for a, b in zip(opt.state.values(), again.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    _train(whole, opt, 3, seed=2)
    _train(resumed, again, 3, seed=2)
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoints_of_other_state_convert_both_ways():
    net = _net()
    reference = torch.optim.RMSprop(net.parameters(), lr=1e-3, momentum=0.9)
    _train(net, reference, 3)
    copied = copy.deepcopy(net)
    opt = rmsprop.torch.RMSProp(copied.parameters(), lr=1e-3, preset="pytorch", momentum=0.9,
                                state_bits=8)  # fmt: skip
    opt.load_state_dict(reference.state_dict())  # encoded, to nearest
    big = copied[0].weight
    state = opt.state[big]
    for key, code in (("square_avg", UNSIGNED), ("momentum_buffer", SIGNED)):
        codes, scales = _blockwise.encode(
            reference.state[net[0].weight][key].double().numpy().ravel(), code
        )
        assert np.array_equal(state[key].numpy().ravel(), codes)
        assert np.array_equal(state[f"{key}_scale"].numpy(), scales)
    assert opt.state[copied[0].bias]["square_avg"].dtype == torch.float32
    decoded = _blockwise.decode(
        state["square_avg"].numpy().ravel(), state["square_avg_scale"].numpy(), UNSIGNED
    )
    # Another state_bits for the group: the next step decodes, exactly, into float32.
    opt.param_groups[0]["state_bits"] = 32
    opt.param_groups[0]["lr"] = 0.0
    _train(copied, opt, 1)
    v = opt.state[big]["square_avg"]
    assert v.dtype == torch.float32 and "square_avg_scale" not in opt.state[big]
    grad = big.grad.double().numpy().ravel()
    expected = (0.99 * decoded + 0.01 * grad * grad).astype(np.float32)
    assert np.array_equal(v.numpy().ravel(), expected)


def test_bad_checkpoints_are_refused_and_change_nothing():
    net = _net()
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-3, state_bits=8)
    _train(net, opt, 2)
    before = copy.deepcopy(opt.state_dict())
    for key, value, error in (
        ("square_avg_scale", torch.full((24,), 3.0), "powers of two"),
        ("square_avg_scale", torch.ones(5), "block scales"),
        ("square_avg", torch.zeros(3, dtype=torch.uint8), "shape"),
    ):
        bad = copy.deepcopy(before)
        bad["state"][0][key] = value
        with pytest.raises(ValueError, match=error):
            opt.load_state_dict(bad)
        after = opt.state_dict()
        for index, values in before["state"].items():
            assert all(torch.equal(values[k], after["state"][index][k]) for k in values)


def test_a_nan_gradient_stays_in_its_element():
    net = torch.nn.Linear(100, 100, bias=False)
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-2, momentum=0.9, state_bits=8)
    net.weight.grad = torch.ones(100, 100)
    opt.step()
    net.weight.grad = torch.ones(100, 100)
    net.weight.grad[0, 3] = float("nan")
    opt.step()
    state = opt.state[net.weight]
    for key, code in (("square_avg", UNSIGNED), ("momentum_buffer", SIGNED)):
        values = _blockwise.decode(state[key].numpy().ravel(), state[f"{key}_scale"].numpy(), code)
        assert np.isnan(values[3]) and np.isfinite(np.delete(values, 3)).all()
    assert torch.isnan(net.weight[0, 3]) and torch.isfinite(net.weight.view(-1)[4:]).all()


def test_channels_last_codes_follow_the_parameters_memory():
    weight = torch.nn.Parameter(torch.randn(32, 16, 3, 3).to(memory_format=torch.channels_last))
    opt = rmsprop.torch.RMSProp([weight], lr=1e-2, preset="pytorch", state_bits=8)
    grad = torch.randn(32, 16, 3, 3).to(memory_format=torch.channels_last)
    weight.grad = grad
    before = weight.detach().clone()
    opt.step()
    v = opt.state[weight]["square_avg"]
    assert v.stride() == weight.stride()
    memory = v.as_strided((v.numel(),), (1,))
    decoded = _blockwise.decode(memory.numpy(), opt.state[weight]["square_avg_scale"].numpy(),
                                UNSIGNED)  # fmt: skip
    g = grad.permute(0, 2, 3, 1).double().numpy().ravel()  # channels_last memory order
    assert np.allclose(decoded, 0.01 * g * g, rtol=2.0**-3, atol=0)
    expected = before - 1e-2 * grad / (torch.sqrt(0.01 * grad * grad) + 1e-8)
    assert torch.allclose(weight.detach(), expected)


@pytest.mark.parametrize("bits", [16, 8])
def test_a_view_with_gaps_steps_as_its_dense_copy_with_or_without_kernels(bits):
    """A parameter no kernel takes as it is laid out (a view with gaps) steps through a
    dense copy, written back: the bytes of a dense parameter; without the kernels, the
    kernels' step in torch operations writes the same bytes."""
    holder = torch.zeros(200, 100)
    gappy = torch.nn.Parameter(holder[:, ::2])
    twin = torch.nn.Parameter(torch.zeros(200, 50))
    generator = torch.Generator().manual_seed(0)
    steps = [torch.randn(200, 50, generator=generator) for _ in range(3)]
    for p in (gappy, twin):
        opt = rmsprop.torch.RMSProp([p], lr=0.1, momentum=0.9, state_bits=bits, seed=5)
        for g in steps:
            p.grad = g.t().contiguous().t()  # a gradient in another layout, too
            opt.step()
    assert torch.equal(gappy.detach(), twin.detach())
    assert not holder[:, 1::2].any()  # the gaps are untouched
    grads = [torch.randn(8, 16, 8, 8, generator=generator) for _ in range(2)]
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):  # C-ordered gradients too
        p = torch.nn.Parameter(torch.zeros(8, 16, 8, 8).to(memory_format=torch.channels_last))
        opt = rmsprop.torch.RMSProp([p], lr=0.1, state_bits=bits, seed=5)
        for g in grads:
            p.grad = g.contiguous(memory_format=layout)
            opt.step()
        results.append(p.detach())
    assert torch.equal(*results)
    previous = _accel.set_enabled(False)
    try:
        holder.zero_()
        opt = rmsprop.torch.RMSProp([gappy], lr=0.1, momentum=0.9, state_bits=bits, seed=5)
        for g in steps:
            gappy.grad = g.t().contiguous().t()
            opt.step()
        assert torch.equal(gappy.detach(), twin.detach())
        assert not holder[:, 1::2].any()
    finally:
        _accel.set_enabled(previous)


def test_8_bit_state_takes_no_other_state_dtype():
    with pytest.raises(ValueError, match="state_bits=8"):
        rmsprop.torch.RMSProp([torch.nn.Parameter(torch.ones(5000))], lr=0.1, state_bits=8,
                              state_dtype=torch.bfloat16)  # fmt: skip


def test_the_triton_block_is_a_block_of_codes():
    pytest.importorskip("triton")
    from rmsprop import _triton  # noqa: PLC0415

    assert _triton.BLOCKWISE_BLOCK == BLOCK and _triton.CHUNK % BLOCK == 0


def test_a_presets_initial_square_average_is_encoded():
    """TensorFlow's rule starts the square average at 1: the codes start there too."""
    weight = torch.nn.Parameter(torch.zeros(5000))
    opt = rmsprop.torch.RMSProp([weight], preset="tensorflow", lr=0.0, state_bits=8)
    weight.grad = torch.zeros(5000)
    opt.step()  # beta * 1 + 0: 0.9, stochastically between its two codes
    state = opt.state[weight]
    values = _blockwise.decode(state["square_avg"].numpy(), state["square_avg_scale"].numpy(),
                               UNSIGNED)  # fmt: skip
    beta = opt.param_groups[0]["beta"]
    assert set(np.unique(values)) <= {0.875, 0.9375} and abs(values.mean() - beta) < 0.005
