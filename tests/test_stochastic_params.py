"""bfloat16 parameters written with stochastic rounding (``stochastic_rounding=True``).

The new parameter, evaluated as without it (in float64, or float32 with
``float32_arithmetic``), is rounded to float32, then to bfloat16 with 16 random bits
of the parameters' own Weyl sequence (rmsprop._random.parameter_bits), which starts
from (seed, step, stream). Checked against that reference for every
launch (the Numba kernel, its step in torch operations, the Triton kernel under its
interpreter) and every kind of state, whose bytes must be those of the same launch
without it; then through the optimizer: unbiased, reproducible, resumed from a
checkpoint, refused where it cannot apply.
"""

import copy
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import Hyperparameters, _accel, _blockwise, _random, _rule  # noqa: E402
from rmsprop.torch import _lowbit_ops  # noqa: E402

OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "eps_in_sqrt": False, "maximize": True},
]
#: The state kinds: float32 (rounded to nearest), bfloat16 rounded stochastically, 8-bit.
STATES = ["float32", "bfloat16", "8-bit"]
KEYS = ("square_avg", "momentum_buffer", "grad_avg")


def _bits(t):
    return t.view(torch.int16).numpy().astype(np.int64) & 0xFFFF


def _members(hp, state, sizes, seed=0):
    """Members with bfloat16 parameters (gradients over 10 decades), their state of
    kind ``state``, counters, streams and, for 8-bit state, scales."""
    generator = torch.Generator().manual_seed(seed)
    members, counters, streams, scales = [], [], [], []
    for k, n in enumerate(sizes):
        p = torch.randn(n, generator=generator).bfloat16()
        magnitude = 10.0 ** torch.randint(-8, 2, (n,), generator=generator)
        g = (torch.randn(n, generator=generator) * magnitude).bfloat16()
        buffers, row = [], []
        for key, used in zip(KEYS, (True, hp.momentum, hp.centered), strict=True):
            draw = torch.rand if key == "square_avg" else torch.randn
            x = draw(n, generator=generator) * magnitude**2 if used else None
            if x is None:
                buffers.append(None)
                row.append(None)
            elif state == "8-bit":
                codes, s = _blockwise.encode(x.double().numpy(), _blockwise.CODES[key])
                buffers.append(torch.from_numpy(codes))
                row.append(torch.from_numpy(s))
            else:
                buffers.append(x.to(getattr(torch, state)))
        members.append((p, g, buffers))
        scales.append(row)
        counters.append(torch.tensor(float(5 + k)))
        streams.append(3 * k + 1)
    return members, counters, streams, scales if state == "8-bit" else None


def _expected(members, counters, streams, seed, hp):
    """The reference: each new parameter rounded to float32, then stochastically."""
    out = []
    for (p, g, buffers), counter, stream in zip(members, counters, streams, strict=True):
        if buffers[0].dtype == torch.uint8:
            return None  # 8-bit state: compared with the same launch without it
        values = [None if b is None else b.double().numpy() for b in buffers]
        new_p, _ = _rule.family_update(
            p.double().numpy(), g.double().numpy(), _rule.State(*values), hp, np.sqrt,
            lambda x: np.maximum(x, 0.0), 1.0,
        )  # fmt: skip
        offset = _random.parameter_offset(_random.start(seed, int(counter) + 1, stream))
        j = np.arange(p.numel(), dtype=np.uint64)
        random = _random.parameter_bits(offset, j).astype(np.int64)
        single = np.asarray(new_p).astype(np.float32).view(np.uint32).astype(np.int64)
        out.append(_random.round_bfloat16(single, random, np.where))
    return out


def _launch(make, members, counters, streams, scales, seed, hp, state, round_params):
    options = {"stochastic": (counters, streams, seed), "round_params": round_params}
    if state == "8-bit":
        options["scales"] = scales
    elif state == "float32":
        options["round_state"] = False
    if not round_params and state == "float32":
        options = {}
    make(members, hp, **options)([g for _, g, _ in members], hp)


def _copy(members, scales):
    return copy.deepcopy(members), copy.deepcopy(scales)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("launch_type", ["numba", "ops"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_the_parameters_bits_are_the_references_and_the_state_is_unchanged(
    options, launch_type, state
):
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    make = kernels.Launch if launch_type == "numba" else _lowbit_ops.Launch
    seed = 2**50 + 3
    members, counters, streams, scales = _members(hp, state, [1, 7, 5000, 70_001])
    plain, plain_scales = _copy(members, scales)
    expected = _expected(members, counters, streams, seed, hp)
    _launch(make, members, counters, streams, scales, seed, hp, state, True)
    _launch(kernels.Launch, plain, counters, streams, plain_scales, seed, hp, state, False)
    for k, ((p, _, buffers), (q, _, plain_buffers)) in enumerate(zip(members, plain, strict=True)):
        if expected is not None:
            assert np.array_equal(_bits(p), expected[k])
        # Nearest and stochastic differ only by one bfloat16 unit, in either direction.
        gap = np.abs(p.float().numpy() - q.float().numpy())
        assert np.all(gap <= np.abs(q.float().numpy()) * 2.0**-7 + 1e-38)
        for b, c in zip(buffers, plain_buffers, strict=True):
            if b is not None:
                assert torch.equal(b.view(torch.uint8), c.view(torch.uint8))
        if scales is not None:
            for s, t in zip(scales[k], plain_scales[k], strict=True):
                assert s is None or torch.equal(s, t)


@pytest.mark.parametrize("state", STATES)
def test_the_triton_kernel_writes_the_same_bits(state):
    """Under Triton's interpreter (CPU tensors), the GPU kernel rounds parameters with
    the CPU kernel's bits, whatever the state."""
    pytest.importorskip("triton")
    from rmsprop import _triton  # noqa: PLC0415

    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, momentum=0.9, centered=True)
    results = []
    for make in (kernels.Launch, _triton.Launch):
        members, counters, streams, scales = _members(hp, state, [3, 5000])
        sizing = {"chunk": 1 << 13, "block": 1 << 13} if make is _triton.Launch else {}
        _launch(functools.partial(make, **sizing), members, counters, streams, scales, 99, hp,
                state, True)  # fmt: skip
        tensors = [t for p, _, s in members for t in (p, *s) if t is not None]
        tensors += [t for row in scales or [] for t in row if t is not None]
        results.append([t.view(torch.uint8).clone() for t in tensors])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


# --- through the optimizer --------------------------------------------------------------


def _model(seed=0):
    """bfloat16 parameters of both sides of the 8-bit size threshold, and a float32 one."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(64, 80), (300,), (5,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=generator).bfloat16()) for s in shapes]
    params.append(torch.nn.Parameter(torch.randn(70, generator=generator)))
    return params


def _train(params, steps=3, seed=1, **options):
    opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=1e-3, seed=11, **options)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)
        opt.step()
    return opt


def _snapshot(params, opt):
    tensors = [p.detach() for p in params]
    tensors += [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    return [t.reshape(-1).clone().view(torch.uint8) for t in tensors]


@pytest.mark.parametrize("bits", [32, 16, 8])
def test_kernels_operations_and_the_triton_kernel_agree(bits, monkeypatch):
    """The optimizer on the Numba kernel, on its step in torch operations (kernels
    off) and on the Triton kernel (CPU tensors under its interpreter): the same bytes."""
    pytest.importorskip("triton")
    import rmsprop._dispatch  # noqa: PLC0415

    options = {"momentum": 0.9, "centered": True, "state_bits": bits}
    results = []
    for route in ("numba", "ops", "triton"):
        if route == "triton":
            monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
        previous = _accel.set_enabled(route == "numba")
        try:
            params = _model()
            with np.errstate(all="ignore"):
                opt = _train(params, stochastic_rounding=True, **options)
            results.append(_snapshot(params, opt))
        finally:
            _accel.set_enabled(previous)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other, strict=True))


def test_only_bfloat16_parameters_are_rounded_stochastically():
    """One step: float32 parameters as without it; bfloat16 ones, some the other way
    than to nearest, by one unit at most."""
    rounded, nearest = _model(), _model()
    _train(rounded, steps=1, stochastic_rounding=True)
    _train(nearest, steps=1)
    assert torch.equal(rounded[3], nearest[3])
    for p, q in zip(rounded[:3], nearest[:3], strict=True):
        assert not torch.equal(p, q)
        gap = (p.detach().float() - q.detach().float()).abs()
        assert torch.all(gap <= q.detach().float().abs() * 2.0**-7)


def test_updates_below_bfloat16s_resolution_move_the_parameters_on_average():
    """100,000 parameters at 1.5 (bfloat16 spacing 2**-7 there) and a step of 0.3 of it:
    rounded to nearest nothing ever moves; rounded stochastically 30 % of them move a
    unit, and over 20 steps the mean follows the float32 parameters (5 standard
    deviations of the binomial counts)."""
    n, steps = 100_000, 20
    unit = 2.0**-7
    results = {}
    for rounded in (False, True, None):  # None: float32 parameters, the reference
        dtype = torch.float32 if rounded is None else torch.bfloat16
        p = torch.nn.Parameter(torch.full((n,), 1.5, dtype=dtype))
        # The first step of the seed's rule moves by lr / sqrt(1 - beta) for any gradient.
        lr = 0.3 * unit * (1 - 0.9) ** 0.5
        opt = rmsprop.torch.RMSProp([p], lr=lr, beta=0.9, stochastic_rounding=bool(rounded))
        moved = []
        for _ in range(steps):
            p.grad = torch.ones(n, dtype=dtype)
            opt.step()
            moved.append(float((1.5 - p.detach().double()).mean()))
        results[rounded] = moved
    assert results[False] == [0.0] * steps
    for k, (ours, exact) in enumerate(zip(results[True], results[None], strict=True)):
        # each step's movement is a sum of n independent unit draws
        bound = 5 * unit * ((k + 1) * 0.25 / n) ** 0.5
        assert abs(ours - exact) <= bound, (k, ours, exact)
    assert abs(results[True][0] / unit - 0.3) < 0.01


def test_the_same_seed_gives_the_same_bits_and_another_seed_others():
    a, b, c = _model(), _model(), _model()
    _train(a, stochastic_rounding=True)
    _train(b, stochastic_rounding=True)
    opt = rmsprop.torch.RMSProp(c, preset="pytorch", lr=1e-3, seed=12, stochastic_rounding=True)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        for p in c:
            p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("bits", [32, 16])
def test_a_checkpoint_resumes_bit_for_bit(bits):
    params = _model()
    opt = _train(params, steps=2, stochastic_rounding=True, state_bits=bits, momentum=0.9)
    saved = copy.deepcopy(opt.state_dict())
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    generator = torch.Generator().manual_seed(4)
    grads = [[torch.randn(p.shape, generator=generator).to(p.dtype) for p in params]
             for _ in range(2)]  # fmt: skip
    resumed = rmsprop.torch.RMSProp(copies, preset="pytorch", lr=1e-3)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["stochastic_rounding"] and resumed.param_groups[0]["seed"] == 11
    for step in grads:
        for p, q, g in zip(params, copies, step, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        resumed.step()
    assert all(torch.equal(p, q) for p, q in zip(params, copies, strict=True))


def test_what_it_cannot_take_is_refused_before_any_write():
    params = _model()
    with pytest.raises(ValueError, match="rounding='once'"):
        rmsprop.torch.RMSProp(params, preset="pytorch", lr=0.1, rounding="pytorch",
                              stochastic_rounding=True)  # fmt: skip
    with pytest.raises(TypeError, match="stochastic_rounding must be True or False"):
        rmsprop.torch.RMSProp(params, lr=0.1, stochastic_rounding=1)
    complex_param = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(RuntimeError, match="kernels"):
        rmsprop.torch.RMSProp([complex_param], lr=0.1, stochastic_rounding=True)
    p = torch.nn.Parameter(torch.ones(5000, dtype=torch.bfloat16))
    opt = rmsprop.torch.RMSProp([p], lr=0.1, stochastic_rounding=True)
    p.grad = torch.ones(5000, dtype=torch.bfloat16).to_sparse()
    with pytest.raises(RuntimeError):
        opt.step()
    assert (p == 1).all()
