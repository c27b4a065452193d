"""rmsprop.optax.rmsprop with low-bit state (``state_bits`` 16 and 8).

rmsprop._jax_codes computes in JAX what rmsprop._random and rmsprop._blockwise define
with NumPy (the kernels are tested against those): the random bits on pairs of
uint32 words, stochastic rounding to bfloat16, the 8-bit codes. Each is checked
here against its NumPy definition, then the transformation against rmsprop.RMSProp,
whose state bits equal the torch optimizer's (tests/test_numpy_state_bits.py).
"""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
jnp = jax.numpy
pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop  # noqa: E402
import rmsprop.optax  # noqa: E402
from rmsprop import _blockwise, _jax_codes, _random  # noqa: E402

from frameworks import max_relative_difference  # noqa: E402

#: float64 agreement of the parameters with rmsprop.RMSProp (as tests/test_optax.py's
#: CONTRACTED: XLA contracts a * b + c into fused multiply-adds, NumPy does not).
CONTRACTED = 4e-15
OPTION_SETS = [
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "maximize": True, "eps_in_sqrt": False},
]
SHAPES = [(100, 80), (10,), (70, 90), (5000,), ()]


def _pair(values):
    high = jnp.asarray([(v >> 32) & 0xFFFFFFFF for v in values], jnp.uint32)
    return high, jnp.asarray([v & 0xFFFFFFFF for v in values], jnp.uint32)


def _joined(pair):
    high, low = (np.asarray(x).astype(np.uint64) for x in pair)
    return (high << np.uint64(32)) | low


def test_the_random_bits_are_rmsprop_random_s():
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(0, 2**64, 200, dtype=np.uint64)]
    values += [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
    assert _joined(_jax_codes.mix(_pair(values))).tolist() == [_random.mix(v) for v in values]
    for seed, step, stream in [(0, 1, 0), (2**40 + 5, 12_345, 7), (2**63 - 1, 2**32 - 1, 2**20)]:
        begin = _jax_codes.start(seed, jnp.uint32(step), stream)
        expected = _random.start(seed, step, stream)
        assert int(_joined(begin)) == expected
        j = np.arange(3000, dtype=np.uint64)
        drawn = _jax_codes.draw(begin, 3000)
        assert np.array_equal(_joined(drawn), _random.draw(np.uint64(expected), j))
        for k in range(3):
            bits = _random.word(_random.draw(np.uint64(expected), j), k)
            assert np.array_equal(np.asarray(_jax_codes.word(drawn, k)), bits)
            weyl = _random.weyl(np.uint64(expected), j, k)
            assert np.array_equal(np.asarray(_jax_codes.weyl(begin, 3000, k)), weyl)


def test_stochastic_rounding_is_rmsprop_random_s():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(4000) * 10.0 ** rng.integers(-30, 30, 4000)).astype(np.float32)
    x[:6] = [np.nan, -np.nan, np.inf, -np.inf, np.finfo(np.float32).max, 0.0]
    random = rng.integers(0, 2**16, 4000)
    bits = x.view(np.uint32).astype(np.int64)
    expected = _random.round_bfloat16(bits, random, np.where)
    got = _jax_codes.stochastic_bfloat16(jnp.asarray(x), jnp.asarray(random, jnp.uint32))
    assert np.array_equal(np.asarray(got).view(np.uint16), expected.astype(np.uint16))


@pytest.mark.parametrize("code", [_blockwise.UNSIGNED, _blockwise.SIGNED], ids=["cache", "signed"])
@pytest.mark.parametrize("size", [0, 3000])  # 3000: 11 blocks and a partial one
def test_the_codes_are_rmsprop_blockwise_s(code, size):
    """float64 values (x64) over the whole exponent range, NaN, infinities, values past
    the codes' limit and an all-zero block; float32 values as XLA sees them (its CPU
    flushes subnormals to zero)."""
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size) * 10.0 ** rng.integers(-300, 300, size)
    if not code.signed:
        x = np.abs(x)
    x[5:9] = [np.nan, np.inf, -np.inf, 1e300] if size > 9 else x[5:9]
    x[1024:1280] = 0.0
    random = rng.integers(0, 2**20, size)
    with np.errstate(over="ignore"):  # values past float32's range: infinities
        x32 = x.astype(np.float32)
    x32 = np.where(np.abs(x32) < np.finfo(np.float32).tiny, np.float32(0), x32)
    with jax.enable_x64(True):
        for values in (x, x32):
            codes, scales = _blockwise.encode(values.astype(np.float64), code, random)
            got = _jax_codes.encode(jnp.asarray(values), code, jnp.asarray(random, jnp.uint32))
            assert np.array_equal(np.asarray(got.codes), codes)
            assert np.array_equal(np.asarray(got.scales), scales)
            nearest = _jax_codes.encode(jnp.asarray(values), code, None)
            assert np.array_equal(np.asarray(nearest.codes), _blockwise.encode(values, code)[0])
            decoded = _jax_codes.decode(got, code, jnp.float64)
            expected = _blockwise.decode(codes, scales, code)
            assert np.array_equal(np.asarray(decoded), expected, equal_nan=True)


def _numpy_run(params, steps, **options):
    opt = rmsprop.RMSProp([p.copy() for p in params], preset="pytorch", lr=1e-2, **options)
    for g in steps:
        opt.step(g)
    return opt


def _optax_run(params, steps, state=None, update=None, **options):
    """The parameters and state after ``steps`` from ``state`` (None: a new one) with
    ``update`` (None: the jitted update of a new transformation with ``options``)."""
    transform = rmsprop.optax.rmsprop(1e-2, preset="pytorch", **options)
    params = [jnp.asarray(p) for p in params]
    state = transform.init(params) if state is None else state
    update = jax.jit(transform.update) if update is None else update
    for g in steps:
        updates, state = update([jnp.asarray(x) for x in g], state, params)
        params = optax.apply_updates(params, updates)
    return params, state


def _draw(seed=0, dtype=np.float64, steps=5):
    rng = np.random.default_rng(seed)
    params = [np.asarray(rng.standard_normal(s), dtype) for s in SHAPES]
    grads = [
        [np.asarray(rng.standard_normal(s) * 10.0 ** rng.integers(-6, 2), dtype) for s in SHAPES]
        for _ in range(steps)
    ]
    return params, grads


@pytest.mark.parametrize(("bits", "options"), [(16, OPTION_SETS[1]), (8, OPTION_SETS[0])], ids=str)
def test_its_state_is_rmsprop_rmsprop_s_bit_for_bit(bits, options):
    params, steps = _draw()
    with jax.enable_x64(True):
        got, state = _optax_run(params, steps, state_bits=bits, seed=7, **options)
    expected = _numpy_run(params, steps, state_bits=bits, seed=7, **options)
    saved = expected.state_dict()["state"]
    for i, (p, q) in enumerate(zip(got, expected.params, strict=True)):
        assert max_relative_difference(p, q) <= CONTRACTED
        leaves = {"cache": state.cache, "momentum_buffer": state.momentum_buffer}
        leaves["grad_avg"] = state.grad_avg
        for key, tree in leaves.items():
            if key not in saved[i]:
                assert tree is None
                continue
            leaf = tree[i]
            if isinstance(leaf, rmsprop.optax.Codes):
                assert np.array_equal(np.asarray(leaf.codes), saved[i][key])
                assert np.array_equal(np.asarray(leaf.scales), saved[i][key + "_scale"])
            else:
                assert leaf.dtype == saved[i][key].dtype
                mine, theirs = np.asarray(leaf).reshape(-1), saved[i][key].reshape(-1)
                assert np.array_equal(mine.view(np.uint8), theirs.view(np.uint8))


@pytest.mark.parametrize("bits", [16, 8])
def test_float32_state_bytes_and_a_checkpoint(bits):
    """float32 parameters (no x64): the state's kinds and bytes per parameter, and a
    checkpoint (the state as NumPy arrays and back) resuming bit for bit."""
    params, steps = _draw(dtype=np.float32, steps=6)
    options = {"state_bits": bits, "momentum": 0.9}
    _, state = _optax_run(params, steps[:3], **options)
    stored = jax.tree.map(np.asarray, state)
    restored = jax.tree.map(jnp.asarray, stored)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    leaves = jax.tree.leaves((state.cache, state.momentum_buffer))
    count = sum(p.size for p in params)
    per_parameter = sum(leaf.nbytes for leaf in leaves) / count
    assert per_parameter <= (2.1 if bits == 8 else 4.0)
    if bits == 8:
        assert isinstance(state.cache[0], rmsprop.optax.Codes)
        assert state.cache[1].dtype == jnp.float32  # too small for codes
    else:
        assert all(leaf.dtype == jnp.bfloat16 for leaf in leaves)
    update = jax.jit(rmsprop.optax.rmsprop(1e-2, preset="pytorch", **options).update)
    results = [
        jax.tree.map(np.asarray, _optax_run(params, steps[3:], start, update))
        for start in (state, restored)
    ]
    for a, b in zip(*(jax.tree.leaves(r) for r in results), strict=True):
        assert np.array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8))


def test_a_nan_gradient_stays_in_its_element():
    params = [np.zeros(5000, np.float32)]
    grads = np.full(5000, 1e-3, np.float32)
    grads[300] = np.nan
    _, state = _optax_run(params, [[grads]], state_bits=8, momentum=0.9)
    for leaf, code in (
        (state.cache[0], _blockwise.UNSIGNED),
        (state.momentum_buffer[0], _blockwise.SIGNED),
    ):
        decoded = _jax_codes.decode(leaf, code, jnp.float32)
        assert np.isnan(np.asarray(decoded)).tolist() == (np.arange(5000) == 300).tolist()
        assert np.all(np.isfinite(np.asarray(leaf.scales)))


def test_what_it_cannot_take_is_refused():
    with pytest.raises(ValueError, match="state_bits must be 8, 16 or 32"):
        rmsprop.optax.rmsprop(1e-2, state_bits=4)
    with pytest.raises(ValueError, match="seed"):
        rmsprop.optax.rmsprop(1e-2, state_bits=8, seed=-1)
    with pytest.raises(ValueError, match="no other state_dtype"):
        rmsprop.optax.rmsprop(1e-2, state_bits=16, state_dtype=jnp.float32)
    params = [jnp.zeros(5000)]
    wide = rmsprop.optax.rmsprop(1e-2).init(params)
    narrow = rmsprop.optax.rmsprop(1e-2, state_bits=8)
    with pytest.raises(ValueError, match="8-bit codes"):  # another state_bits' state
        narrow.update([jnp.ones(5000)], wide)
    with pytest.raises(ValueError, match="must be an array"):  # and the other way
        rmsprop.optax.rmsprop(1e-2).update([jnp.ones(5000)], narrow.init(params))


def test_inject_hyperparams_takes_them_as_static_arguments():
    """optax.inject_hyperparams makes every number an argument that may change between
    steps, unless named static: the defaults (None) are not numbers; given values must
    be static, and a traced one is refused."""
    params = [jnp.zeros(5000)]
    injected = optax.inject_hyperparams(rmsprop.optax.rmsprop)(learning_rate=0.1)
    assert isinstance(injected.init(params).inner_state.cache[0], jax.Array)
    static = optax.inject_hyperparams(rmsprop.optax.rmsprop, static_args=("state_bits", "seed"))
    transform = static(learning_rate=0.1, state_bits=8, seed=3)
    state = transform.init(params)
    assert isinstance(state.inner_state.cache[0], rmsprop.optax.Codes)
    _, state = jax.jit(transform.update)([jnp.ones(5000)], state)
    assert int(state.inner_state.count) == 1
    traced = optax.inject_hyperparams(rmsprop.optax.rmsprop)(learning_rate=0.1, state_bits=8)
    state = traced.init(params)  # concrete numbers at init
    with pytest.raises(TypeError, match="static_args"):
        jax.jit(traced.update)([jnp.ones(5000)], state)
    with pytest.raises(ValueError, match="state_bits must be 8, 16 or 32"):
        rmsprop.optax.rmsprop(1e-2, state_bits=8.0)
