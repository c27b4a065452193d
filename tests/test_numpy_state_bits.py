"""rmsprop.RMSProp with low-bit state: ``state_bits=16`` (bfloat16 rounded stochastically)
and ``state_bits=8`` (8-bit blockwise codes).

Both are written by the Numba kernel that rmsprop.torch.RMSProp uses, whose bytes
tests/test_stochastic_state.py and tests/test_blockwise_state.py check against
references written from the rule; here, the NumPy optimizer is checked against the
torch optimizer bit for bit (the same parameters, gradients and seed draw the same
bits), and on its own: layouts, checkpoints and their conversions, refusals; and with the
kernels off (rmsprop._lowbit_numpy), against itself with them on.
"""

import copy
import sys

import numpy as np
import pytest

import rmsprop
from rmsprop import _accel, _blockwise, _lowbit_numpy, _state_bits

pytest.importorskip("ml_dtypes")
pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "maximize": True, "eps_in_sqrt": False},
    {
        "momentum": 0.9,
        "decoupled_weight_decay": True,
        "weight_decay": 0.01,
        "bias_correction": True,
    },
]
#: Parameters of both sides of MIN_SIZE and of partial blocks, and a 0-d one.
SHAPES = [(100, 80), (10,), (70, 90), (5000,), (), (0, 3)]
#: The torch optimizer's names of the buffers.
TORCH_KEYS = {"cache": "square_avg", "momentum_buffer": "momentum_buffer", "grad_avg": "grad_avg"}


def _params(seed=0, dtype=np.float32, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _grads(params, steps, seed=1):
    """Gradients over 8 decades, NaN-free."""
    rng = np.random.default_rng(seed)
    return [
        [
            np.asarray(rng.standard_normal(p.shape) * 10.0 ** rng.integers(-6, 2), p.dtype)
            for p in params
        ]
        for _ in range(steps)
    ]


def _bits(a):
    """An array's bytes, for comparisons bit for bit (NaN included)."""
    return np.ascontiguousarray(a).view(np.uint8)


def _run(params, grads, **options):
    opt = rmsprop.RMSProp(params, preset="pytorch", lr=1e-2, seed=7, **options)
    for g in grads:
        opt.step(g)
    return opt


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_it_writes_the_torch_optimizers_bits(bits, options):
    torch = pytest.importorskip("torch")
    import rmsprop.torch  # noqa: PLC0415

    params = _params()
    tensors = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    steps = _grads(params, 5)
    mine = _run(params, steps, state_bits=bits, **options)
    theirs = rmsprop.torch.RMSProp(
        tensors, preset="pytorch", lr=1e-2, seed=7, state_bits=bits, **options
    )
    for grads in steps:
        for t, g in zip(tensors, grads, strict=True):
            t.grad = torch.from_numpy(g.copy())
        theirs.step()
    saved = theirs.state_dict()["state"]
    for i, (p, t) in enumerate(zip(params, tensors, strict=True)):
        assert np.array_equal(_bits(p), _bits(t.detach().numpy()))
        if not p.size:
            continue
        for key, value in mine.state_dict()["state"][i].items():
            name = key.replace(key.removesuffix("_scale"), TORCH_KEYS[key.removesuffix("_scale")])
            other = saved[i][name]
            if other.dtype == torch.bfloat16:
                other = other.view(torch.int16)
            assert np.array_equal(_bits(value), _bits(other.numpy()))


@pytest.mark.parametrize("bits", [16, 8])
def test_any_layout_steps_as_c_order_does(bits):
    """Fortran-ordered parameters, views with gaps, and gradients of other layouts and
    dtypes (integers included) step as their C-ordered float copies do."""
    base = _params(shapes=[(70, 90), (64, 130), (9,)])
    steps = _grads(base, 3)
    expected = [p.copy() for p in base]
    _run(expected, steps, state_bits=bits, momentum=0.9)
    holder = np.zeros((64, 260), dtype=np.float32)
    odd = [np.asfortranarray(base[0]), holder[:, ::2], base[2].copy()]
    odd[1][...] = base[1]
    odd_steps = [[np.asfortranarray(g[0]), g[1][::-1][::-1].T.copy().T, g[2]] for g in steps]
    _run(odd, odd_steps, state_bits=bits, momentum=0.9)
    for p, e in zip(odd, expected, strict=True):
        assert np.array_equal(_bits(p), _bits(e))
    assert not holder[:, 1::2].any()  # the gaps are untouched
    ints = _params(dtype=np.float64, shapes=[(5000,)])
    floats = [ints[0].copy()]
    int_steps = [[np.arange(5000) % 7 - 3] for _ in range(3)]
    _run(ints, int_steps, state_bits=bits)
    _run(floats, [[g[0].astype(np.float64)] for g in int_steps], state_bits=bits)
    assert np.array_equal(ints[0], floats[0])


@pytest.mark.parametrize("bits", [16, 8])
def test_a_checkpoint_resumes_bit_for_bit_with_its_seed(bits):
    params = _params()
    steps = _grads(params, 8)
    opt = _run(params, steps[:4], state_bits=bits, momentum=0.9, centered=True)
    snapshot = copy.deepcopy(opt.state_dict())
    saved_params = [p.copy() for p in params]
    for g in steps[4:]:
        opt.step(g)
    resumed = rmsprop.RMSProp(saved_params, lr=1.0, state_bits=bits, seed=123)
    resumed.load_state_dict(snapshot)
    assert snapshot["seed"] == 7
    for g in steps[4:]:
        resumed.step(g)
    for p, q in zip(params, saved_params, strict=True):
        assert np.array_equal(_bits(p), _bits(q))
    for mine, theirs in zip(opt.state_dict()["state"], resumed.state_dict()["state"], strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert np.array_equal(_bits(mine[key]), _bits(theirs[key]))


def test_state_converts_between_kinds_on_load():
    """32-bit state loads into 8-bit codes rounded to nearest; codes into 32-bit and
    bfloat16 state decoded exactly (then rounded once into bfloat16)."""
    params = _params(shapes=[(5000,), (10,)])
    wide = _run([p.copy() for p in params], _grads(params, 3), momentum=0.9)
    snapshot = wide.state_dict()
    narrow = rmsprop.RMSProp([p.copy() for p in params], lr=1.0, state_bits=8)
    narrow.load_state_dict(snapshot)
    state = narrow.state_dict()["state"]
    for key, code in (("cache", _blockwise.UNSIGNED), ("momentum_buffer", _blockwise.SIGNED)):
        codes, scales = _blockwise.encode(snapshot["state"][0][key].astype(np.float64), code)
        assert np.array_equal(state[0][key], codes)
        assert np.array_equal(state[0][key + "_scale"], scales)
        assert np.array_equal(state[1][key], snapshot["state"][1][key])  # small: float32
        assert state[1][key].dtype == np.float32
    back = rmsprop.RMSProp([p.copy() for p in params], lr=1.0)
    back.load_state_dict(narrow.state_dict())
    decoded = _blockwise.decode(state[0]["cache"], state[0]["cache_scale"], _blockwise.UNSIGNED)
    assert np.array_equal(back.state_dict()["state"][0]["cache"], decoded.astype(np.float32))
    assert "cache_scale" not in back.state_dict()["state"][0]
    half = rmsprop.RMSProp([p.copy() for p in params], lr=1.0, state_bits=16)
    half.load_state_dict(narrow.state_dict())
    cache = half.state_dict()["state"][0]["cache"]
    assert cache.dtype.name == "bfloat16"
    assert np.array_equal(cache, decoded.astype(cache.dtype))
    back.load_state_dict(half.state_dict())  # bfloat16 into float32: exactly
    assert np.array_equal(back.state_dict()["state"][0]["cache"], cache.astype(np.float32))


def test_bad_checkpoints_are_refused_and_change_nothing():
    params = _params(shapes=[(5000,)])
    opt = _run(params, _grads(params, 2), state_bits=8)
    before = copy.deepcopy(opt.state_dict())
    blocks = _blockwise.blocks(5000)

    def altered(**entries):
        snapshot = copy.deepcopy(before)
        snapshot["steps"] = 99
        state = snapshot["state"][0]
        for key, value in entries.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        return snapshot

    bad = [
        altered(cache_scale=np.ones(blocks - 1, np.float32)),  # too few
        altered(cache_scale=np.full(blocks, 3.0, np.float32)),  # not powers of two
        altered(cache_scale=np.full(blocks, np.inf, np.float32)),
        altered(cache=np.zeros(5000, np.float32)),  # scales of what is not codes
        altered(cache=np.zeros(4999, np.uint8), cache_scale=np.ones(blocks, np.float32)),
        altered(momentum_buffer_scale=np.ones(blocks, np.float32)),  # no such codes
        altered(cache_scale=["1.0"] * blocks),
        {**before, "seed": -1},
    ]
    for snapshot in bad:
        with pytest.raises((ValueError, TypeError)):
            opt.load_state_dict(snapshot)
        after = opt.state_dict()
        assert after["steps"] == before["steps"]
        for key, value in before["state"][0].items():
            assert np.array_equal(after["state"][0][key], value)


def test_state_bytes_per_parameter():
    """Exactly from the buffers: 8-bit cache and momentum buffer with their scales at
    most 2.1 bytes a parameter (done-when of the issue), bfloat16's 4."""
    params = _params(shapes=[(512, 512), (1000, 257)])
    count = sum(p.size for p in params)
    for bits, most in ((8, 2.1), (16, 4.0)):
        opt = rmsprop.RMSProp(params, lr=1e-3, momentum=0.9, state_bits=bits)
        used = sum(a.nbytes for s in opt.state_dict()["state"] for a in s.values())
        assert used / count <= most
    assert used / count == 4.0


def test_a_buffer_added_later_starts_as_codes():
    params = _params(shapes=[(5000,)])
    opt = _run(params, _grads(params, 2), state_bits=8)
    opt.hyperparameters = opt.hyperparameters.replace(momentum=0.9)
    opt.step(_grads(params, 1)[0])
    state = opt.state_dict()["state"][0]
    assert state["momentum_buffer"].dtype == np.uint8
    assert state["momentum_buffer_scale"].shape == (_blockwise.blocks(5000),)


def test_what_it_cannot_take_is_refused_before_any_write(monkeypatch):
    params = _params(shapes=[(5000,)])
    with pytest.raises(ValueError, match="state_bits must be 8, 16 or 32"):
        rmsprop.RMSProp(params, lr=1.0, state_bits=4)
    with pytest.raises(ValueError, match="seed"):
        rmsprop.RMSProp(params, lr=1.0, state_bits=8, seed=2**63)
    with pytest.raises(ValueError, match="no other state_dtype"):
        rmsprop.RMSProp(params, lr=1.0, state_bits=16, state_dtype=np.float32)
    with pytest.raises(TypeError, match=r"bfloat16 state: state_bits=16"):
        rmsprop.RMSProp(params, lr=1.0, state_dtype=_state_bits.bfloat16())
    with pytest.raises(ValueError, match="state_bits must be 8, 16 or 32"):
        rmsprop.RMSProp(params, lr=1.0, state_bits=8.0)
    if np.dtype(np.longdouble) != np.float64:
        with pytest.raises(TypeError, match="float16, float32 and float64"):
            rmsprop.RMSProp([np.ones(3, np.longdouble)], lr=1.0, state_bits=16)
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(ImportError, match="pip install ml_dtypes"):
        rmsprop.RMSProp(params, lr=1.0, state_bits=16)


@pytest.mark.parametrize("bits", [16, 8])
def test_a_copy_steps_as_its_original_in_its_own_memory(bits):
    params = _params(shapes=[(5000,), (10,)])
    steps = _grads(params, 3)
    opt = _run(params, steps[:2], state_bits=bits, momentum=0.9)
    twin = copy.deepcopy(opt)
    for optimizer in (twin, opt):
        optimizer.step(steps[2])
    for a, b in zip(twin.params, opt.params, strict=True):
        assert not np.shares_memory(a, b)
        assert np.array_equal(_bits(a), _bits(b))
    for mine, theirs in zip(twin.state_dict()["state"], opt.state_dict()["state"], strict=True):
        assert all(np.array_equal(_bits(mine[k]), _bits(theirs[k])) for k in mine)


@pytest.fixture
def kernels_off():
    """Run the test's steps without the fused kernels (as RMSPROP_KERNELS=0 does)."""
    previous = _accel.set_enabled(False)
    yield
    _accel.set_enabled(previous)


def _both_ways(params, grads, **options):
    """The optimizers (kernels on, kernels off) after the same steps from copies of
    ``params``, and the parameters each stepped."""
    on = [p.copy() for p in params]
    opt_on = _run(on, grads, **options)
    previous = _accel.set_enabled(False)
    try:
        off = [p.copy() for p in params]
        opt_off = _run(off, grads, **options)
    finally:
        _accel.set_enabled(previous)
    return (opt_on, on), (opt_off, off)


def _assert_same_bytes(a, b, nan_sign=True):
    """Two optimizers' parameters and state, bit for bit (``nan_sign=False``: a NaN's
    sign aside: LLVM may fold ``-g * -g`` into ``g * g`` in the kernel)."""
    (opt_a, params_a), (opt_b, params_b) = a, b
    saved_a, saved_b = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    pairs = list(zip(params_a, params_b, strict=True))
    for buffers_a, buffers_b in zip(saved_a, saved_b, strict=True):
        assert buffers_a.keys() == buffers_b.keys()
        pairs += [(value, buffers_b[key]) for key, value in buffers_a.items()]
    for x, y in pairs:
        kept = ...
        if not nan_sign and (x.dtype.kind == "f" or x.dtype.name == "bfloat16"):
            nan = np.isnan(x.astype(np.float64))
            assert np.array_equal(nan, np.isnan(y.astype(np.float64)))
            kept = ~nan
        assert np.array_equal(_bits(x[kept]), _bits(y[kept]))


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_without_kernels_it_writes_the_kernels_bytes(bits, options, monkeypatch):
    """The step in NumPy, over slices of 512 elements (partial blocks, members of every
    size, a 0-d and an empty one), with NaN and infinite gradients in some elements."""
    monkeypatch.setattr(_lowbit_numpy, "SLICE", 512)
    params = _params()
    grads = _grads(params, 4)
    grads[1][0][3, 7], grads[2][2][5, 5], grads[2][3][4999] = np.nan, np.inf, -np.inf
    on, off = _both_ways(params, grads, state_bits=bits, **options)
    _assert_same_bytes(on, off, nan_sign=not options.get("maximize"))


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("dtype", [np.float16, np.float64], ids=str)
def test_without_kernels_other_parameter_dtypes(bits, dtype):
    params = _params(dtype=dtype, shapes=[(70, 90), (10,)])
    grads = _grads(params, 3)
    on, off = _both_ways(params, grads, state_bits=bits, momentum=0.9, centered=True)
    _assert_same_bytes(on, off)


@pytest.mark.parametrize("bits", [16, 8])
def test_without_kernels_float32_arithmetic_and_other_layouts(bits):
    """float32 arithmetic (the kernel's float32 scalars), a Fortran-ordered parameter
    and integer gradients. (Parameters under 4,096 elements keep float32 state under
    ``state_bits=8``; their float32-arithmetic step rounds ``1 - beta`` as the 32-bit
    path without kernels does, not as the kernel does: left out here.)"""
    params = [np.asfortranarray(p) for p in _params(shapes=[(70, 90), (5000,)])]
    grads = _grads(params, 3)
    grads[1][1] = np.arange(5000) % 7 - 3
    options = {"momentum": 0.9, "weight_decay": 0.1, "decoupled_weight_decay": True}
    on, off = _both_ways(params, grads, state_bits=bits, float32_arithmetic=True, **options)
    _assert_same_bytes(on, off)


def test_without_kernels_checkpoints_go_both_ways(kernels_off):
    """A checkpoint written without the kernels resumes with them, bit for bit."""
    params = _params(shapes=[(70, 90), (10,)])
    grads = _grads(params, 4)
    opt = _run(params, grads[:2], state_bits=8, momentum=0.9)
    saved = copy.deepcopy(opt.state_dict())
    snapshot = [p.copy() for p in params]
    for g in grads[2:]:
        opt.step(g)
    _accel.set_enabled(True)
    resumed = rmsprop.RMSProp(snapshot, preset="pytorch", lr=1e-2, state_bits=8, momentum=0.9)
    resumed.load_state_dict(saved)
    for g in grads[2:]:
        resumed.step(g)
    _assert_same_bytes((opt, params), (resumed, snapshot))
