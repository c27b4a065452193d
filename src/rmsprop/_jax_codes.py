"""Low-bit state in JAX (``rmsprop.optax.rmsprop(state_bits=...)``): the random bits,
stochastic rounding to bfloat16 and the 8-bit blockwise codes, as JAX functions.

The same definitions as the kernels': the bits of :mod:`rmsprop._random` (SplitMix64
sequences started from (seed, step, stream), element ``j`` of a bfloat16 buffer
taking the words of draw ``j``, element ``j`` of 8-bit codes its Weyl bits) and the
codes of :mod:`rmsprop._blockwise`. Tests check each against those NumPy functions.

JAX computes without 64-bit integers unless ``jax_enable_x64`` is set, so the 64-bit
arithmetic of SplitMix64 is done here on pairs of uint32 words ``(high, low)``:
additions with a carry, shifts across the words, and products by a constant from
16-bit partial products (each fits 32 bits).
"""

import functools
from typing import Any, Final, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rmsprop import _blockwise, _random

#: A 64-bit value as its high and low uint32 words (arrays of one shape).
Pair = tuple[jax.Array, jax.Array]

_LOW16: Final = 0xFFFF


def _u32(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.uint32)


def constant(value: int, like: jax.Array | None = None) -> Pair:
    """A 64-bit integer as a pair (broadcast to ``like``'s shape when given)."""
    high, low = _u32((value >> 32) & 0xFFFFFFFF), _u32(value & 0xFFFFFFFF)
    if like is not None:
        high, low = jnp.broadcast_to(high, like.shape), jnp.broadcast_to(low, like.shape)
    return high, low


def add(a: Pair, b: Pair) -> Pair:
    """``a + b`` modulo 2**64."""
    low = a[1] + b[1]
    carry = (low < a[1]).astype(jnp.uint32)
    return a[0] + b[0] + carry, low


def _product32(a: jax.Array, b: int) -> Pair:
    """The full 64-bit product of uint32 ``a`` and the 32-bit constant ``b``."""
    a0, a1 = a & _LOW16, a >> 16
    b0, b1 = _u32(b & _LOW16), _u32(b >> 16)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    middle = (p00 >> 16) + (p01 & _LOW16) + (p10 & _LOW16)  # under 3 * 2**16
    low = (p00 & _LOW16) | (middle << 16)
    high = p11 + (p01 >> 16) + (p10 >> 16) + (middle >> 16)
    return high, low


def times(a: Pair, c: int) -> Pair:
    """``a * c`` modulo 2**64, for a 64-bit constant ``c``."""
    high, low = _product32(a[1], c & 0xFFFFFFFF)
    return high + a[1] * _u32(c >> 32) + a[0] * _u32(c & 0xFFFFFFFF), low


def _xorshift(a: Pair, s: int) -> Pair:
    """``a ^ (a >> s)`` for ``0 < s < 32``."""
    return a[0] ^ (a[0] >> s), a[1] ^ ((a[1] >> s) | (a[0] << (32 - s)))


def mix(z: Pair) -> Pair:
    """:func:`rmsprop._random.mix` on pairs."""
    z = times(_xorshift(z, 30), _random.MIX1)
    z = times(_xorshift(z, 27), _random.MIX2)
    return _xorshift(z, 31)


def start(seed: int, step: jax.Array, stream: int) -> Pair:
    """:func:`rmsprop._random.start` of a Python-int seed and stream and a traced step
    (an integer scalar from 0 to 2**32 - 1)."""
    z = mix(constant((seed + _random.GAMMA) & _random.MASK))
    z = mix(add(z, times((jnp.zeros((), jnp.uint32), _u32(step)), _random.GAMMA)))
    return mix(add(z, constant(stream * _random.GAMMA & _random.MASK)))


def draw(begin: Pair, n: int) -> Pair:
    """:func:`rmsprop._random.draw` for elements 0 to ``n - 1`` (below 2**32)."""
    j = jnp.arange(1, n + 1, dtype=jnp.uint32) if n else jnp.zeros(0, jnp.uint32)
    high = jnp.zeros_like(j)  # j + 1 < 2**32 for every n a buffer can have
    step = times((high, j), _random.GAMMA)
    return mix(
        add((jnp.broadcast_to(begin[0], j.shape), jnp.broadcast_to(begin[1], j.shape)), step)
    )


def word(bits: Pair, k: int) -> jax.Array:
    """:func:`rmsprop._random.word` ``k`` (0, 1, 2, 3) of 64 random bits."""
    return (bits[1] if k < 2 else bits[0]) >> (16 * (k % 2)) & _LOW16


def weyl(begin: Pair, n: int, k: int) -> jax.Array:
    """:func:`rmsprop._random.weyl` for elements 0 to ``n - 1`` of buffer ``k``."""
    high, low = begin
    shift = 20 * k
    if shift + 20 <= 32:
        offset = low >> shift
    elif shift < 32:
        offset = (low >> shift) | (high << (32 - shift))
    else:
        offset = high >> (shift - 32)
    j = jnp.arange(n, dtype=jnp.uint32)
    return (offset + j * _u32(_random.WEYL[k])) & _random.WEYL_MASK


def stochastic_bfloat16(x: jax.Array, random: jax.Array) -> jax.Array:
    """``x`` rounded to float32 (to nearest), then to bfloat16 with 16 ``random`` bits
    (:func:`rmsprop._random.round_bfloat16`)."""
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    rounded = _random.round_bfloat16(bits, random, jnp.where).astype(jnp.uint16)
    return jax.lax.bitcast_convert_type(rounded, jnp.bfloat16)


class Codes(NamedTuple):
    """A state buffer in 8-bit blockwise codes: ``codes`` (uint8, the parameter's shape)
    and ``scales`` (float32, one per block of 256 elements in C order)."""

    codes: jax.Array
    scales: jax.Array


def _per_block(reduce: Any, x: jax.Array) -> jax.Array:
    """``reduce`` (``jax.lax.max`` or ``jax.lax.min``) over each block of 1-D ``x``, the
    last block possibly partial: a reduction over rows where the blocks fill ``x``, a
    reduction window otherwise (slicing or padding would write ``x`` out again)."""
    identity = -jnp.inf if reduce is jax.lax.max else jnp.inf
    if x.size % _blockwise.BLOCK == 0:
        rows = x.reshape(-1, _blockwise.BLOCK)
        return rows.max(axis=1) if reduce is jax.lax.max else rows.min(axis=1)
    padding = [(0, -x.size % _blockwise.BLOCK)]
    block = (_blockwise.BLOCK,)
    reduced: jax.Array = jax.lax.reduce_window(
        x, jnp.asarray(identity, x.dtype), reduce, block, block, padding
    )
    return reduced


def _per_element(blocks: jax.Array, n: int) -> jax.Array:
    """Each block's value repeated for each of its elements, ``n`` in all (a broadcast,
    which XLA fuses into its consumers; ``jnp.repeat`` would scatter into a new array)."""
    grid = jnp.broadcast_to(blocks[:, None], (blocks.size, _blockwise.BLOCK))
    return grid.reshape(-1)[:n]


def _power_of_two(exponent: jax.Array) -> jax.Array:
    """``2**exponent`` in float32 for integer exponents from -126 to 127 (exactly)."""
    return jax.lax.bitcast_convert_type((exponent + 127) << 23, jnp.float32)


@functools.partial(jax.jit, static_argnames="code")  # one compilation, not one per operation
def encode(values: jax.Array, code: _blockwise.Code, random: jax.Array | None) -> Codes:
    """:func:`rmsprop._blockwise.encode` of ``values`` (any shape; float32 or float64),
    with 20 ``random`` bits per element in C order, or to nearest where None.

    XLA on the CPU flushes float32 subnormals to zero (in inputs and results), so here
    a float32 value under 2**-126 encodes as 0 would (its own arithmetic never makes
    one: the values it encodes are its results).
    """
    n = values.size
    x = values.reshape(-1)
    # The largest finite magnitude of each block: from its maximum and minimum (XLA's
    # CPU reductions vectorize those, not a maximum of magnitudes: 4 times slower),
    # and where a block holds NaN or infinity, from its finite values alone.
    largest = jnp.maximum(
        _per_block(jax.lax.max, x), -_per_block(jax.lax.min, x)
    )  # NaN where NaN is
    largest = jax.lax.cond(
        jnp.all(largest <= _blockwise.LIMIT),
        lambda y: largest,
        lambda y: _per_block(jax.lax.max, jnp.where(jnp.abs(y) <= _blockwise.LIMIT, jnp.abs(y), 0)),
        x,
    )
    fraction, binade = jnp.frexp(largest)  # largest = fraction * 2**binade, fraction in [0.5, 1)
    over = (fraction > 0.875).astype(binade.dtype)  # above 1.75 times its binade's start
    exponent = jnp.where(largest > 0, binade - 1 + over, _blockwise.T_MIN)
    exponent = jnp.clip(exponent, _blockwise.T_MIN, _blockwise.T_MAX).astype(jnp.int32)
    magnitude = jnp.abs(x)
    finite = magnitude <= _blockwise.LIMIT  # False for NaN
    inverse = _per_element(_power_of_two(-exponent).astype(x.dtype), n)
    u = (jnp.where(finite, magnitude, 0) * inverse).astype(jnp.float32)  # exact but below 2**-126
    r = jnp.full(n, _blockwise.NEAREST, jnp.int32) if random is None else random.astype(jnp.int32)
    rounding = _blockwise.RANDOM_BITS
    normal = (jax.lax.bitcast_convert_type(u, jnp.int32) - (code.bias << 23) + r) >> rounding
    below = jnp.minimum(u, np.float32(2.0**-code.smallest))
    up = np.float32(2.0 ** (code.smallest + 3 + rounding))
    fixed = ((below * up).astype(jnp.int32) + r) >> rounding
    codes = jnp.where(u >= np.float32(2.0**-code.smallest), normal, fixed)
    codes = jnp.where(finite, codes, code.nan)
    if code.signed:
        # (``codes | jnp.where(x < 0, 0x80, 0)`` crashes jaxlib 0.10.2's compiler under x64)
        codes = jnp.where(x < 0, codes | 0x80, codes)
    return Codes(codes.astype(jnp.uint8).reshape(values.shape), _power_of_two(exponent))


@functools.partial(jax.jit, static_argnames=("code", "dtype"))
def decode(codes: Codes, code: _blockwise.Code, dtype: Any) -> jax.Array:
    """The values of ``codes`` in ``dtype`` (float32: exact but below 2**-126, which XLA
    flushes to zero on the CPU; float64: exact), the parameter's shape: computed from
    each code's bits (:func:`rmsprop._blockwise.table`'s values, without a gather)."""
    c = codes.codes.reshape(-1).astype(jnp.int32)
    magnitude = c & 0x7F if code.signed else c
    normal = jax.lax.bitcast_convert_type((magnitude << 20) + (code.bias << 23), jnp.float32)
    fixed = (magnitude & 7).astype(jnp.float32) * np.float32(2.0 ** -(code.smallest + 3))
    value = jnp.where(magnitude >= 8, normal, fixed)  # exponent field 0: fixed point
    value = jnp.where(magnitude == code.nan, np.float32(np.nan), value)
    if code.signed:
        value = jnp.where(c >= 0x80, -value, value)
    scaled = value.astype(dtype) * _per_element(codes.scales.astype(dtype), c.size)
    return scaled.reshape(codes.codes.shape)
