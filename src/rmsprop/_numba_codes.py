"""Values in fewer bits in the Numba group kernel, compiled for :mod:`rmsprop._kernels`:
bfloat16 and float16 written by integer arithmetic, random bits, stochastic rounding
to bfloat16, and 8-bit blockwise codes.

The conversions round as NumPy and torch do; the others are each the compiled twin
of a definition in :mod:`rmsprop._random` (the random bits) or
:mod:`rmsprop._blockwise` (the codes), and are tested bit for bit against it.
Helpers marked inline are inlined by Numba, so that LLVM vectorizes the loops around
them. This module imports Numba.
"""

from typing import Any

import numpy as np
from numba import njit

from rmsprop import _blockwise, _random
from rmsprop._numba_support import (
    bits_of_float32,
    bits_of_float64,
    carray,
    float32_of_bits,
    jit,
    pointer,
)

#: How a group kernel stores values: as they are, or as 16 bits it converts itself.
NATIVE, BFLOAT16, FLOAT16, FLOAT16_ONCE = 0, 1, 2, 3


_U32 = np.uint32


@jit
def float16_value(h: Any) -> Any:
    """The float32 value of IEEE 754 half-precision bits ``h``, exactly (NaN as the
    quiet NaN of its sign). Selects rather than branches, in 32-bit integers (each
    result cast back: Numba widens them), so that the loops around it vectorize."""
    bits = _U32(_U32(h) & _U32(0xFFFF))
    sign = _U32(_U32(bits & _U32(0x8000)) << _U32(16))
    magnitude = _U32(bits & _U32(0x7FFF))
    normal = _U32(_U32(magnitude << _U32(13)) + _U32(112 << 23))  # exponent rebiased
    tiny = bits_of_float32(np.float32(np.int32(magnitude)) * np.float32(2.0**-24))
    special = _U32(0x7F800000) if magnitude == _U32(0x7C00) else _U32(0x7FC00000)
    chosen = special if magnitude >= _U32(0x7C00) else normal
    chosen = tiny if magnitude < _U32(0x400) else chosen  # subnormal halves and zeros
    return float32_of_bits(_U32(chosen | sign))


@jit
def narrow(x: float, code: int) -> Any:
    """``x`` rounded to the 16-bit kind ``code`` to nearest even: once for FLOAT16_ONCE
    (as NumPy rounds), through float32 for the others (as torch rounds); NaN stays NaN."""
    if code == FLOAT16_ONCE:
        return half(odd_float32(x))
    single = np.float32(x)
    if code == BFLOAT16:
        bits = np.int64(bits_of_float32(single))
        if np.isnan(single):
            return np.uint16(0x7FC0)
        return np.uint16((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16)
    return half(single)


@jit
def odd_float32(x: float) -> Any:
    """float64 ``x`` rounded to float32 *to odd*: toward zero, then the last bit set if
    that was inexact. Rounded again to nearest even in fewer than 23 bits (float16),
    it is ``x`` rounded once (the extra bits keep every tie and its sides apart)."""
    single = np.float32(x)
    bits = bits_of_float32(single)
    bits = _U32(bits - _U32(1)) if abs(np.float64(single)) > abs(x) else bits  # toward 0
    inexact = np.float64(float32_of_bits(bits)) != x  # NaN too: it stays NaN
    return float32_of_bits(_U32(bits | _U32(1)) if inexact else bits)


@jit
def half(single: Any) -> Any:
    """The float16 bits of float32 ``single`` to nearest even (subnormals, overflow to
    infinity; NaN as the quiet NaN of its sign), by selects in 32-bit integers: halves
    below 2**-14 by one float32 addition that rounds at their spacing, normal ones by
    rebiasing the exponent and adding the rounding increment below the kept bits."""
    bits = bits_of_float32(single)
    sign = _U32(bits & _U32(0x80000000))
    magnitude = _U32(bits ^ sign)
    large = _U32(0x7E00) if magnitude > _U32(0x7F800000) else _U32(0x7C00)  # NaN, or inf
    spaced = float32_of_bits(magnitude) + np.float32(0.5)  # units of 2**-24 from 0.5
    small = _U32(bits_of_float32(spaced) - _U32(0x3F000000))
    odd = _U32(_U32(magnitude >> _U32(13)) & _U32(1))
    rebiased = _U32(magnitude + _U32((-112 << 23) & 0xFFFFFFFF))
    normal = _U32(_U32(_U32(rebiased + _U32(0xFFF)) + odd) >> _U32(13))
    chosen = large if magnitude >= _U32(0x47800000) else normal  # 65536 and beyond
    chosen = small if magnitude < _U32(0x38800000) else chosen  # below 2**-14
    return np.uint16(_U32(chosen | _U32(sign >> _U32(16))))


#: rmsprop._random's bits for the kernels, in uint64 arithmetic (Numba types Python ints
#: as int64, and int64 mixed with uint64 as float64): inlined by Numba, so that LLVM
#: vectorizes the loop around them. Tested bit for bit against the definition.
_MASK16 = np.uint64(0xFFFF)
GAMMA = np.uint64(_random.GAMMA)
_MIX1, _MIX2 = np.uint64(_random.MIX1), np.uint64(_random.MIX2)
_30, _27, _31, _16 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(16)


def _inline(function: Any) -> Any:
    return njit(function, error_model="numpy", inline="always")


@_inline
def mix(z: Any) -> Any:
    """:func:`rmsprop._random.mix` on a uint64."""
    z = (z ^ (z >> _30)) * _MIX1
    z = (z ^ (z >> _27)) * _MIX2
    return z ^ (z >> _31)


@jit
def start(seed: Any, step: Any, stream: Any) -> Any:
    """:func:`rmsprop._random.start` on uint64s."""
    z = mix(np.uint64(seed) + GAMMA)
    z = mix(z + np.uint64(step) * GAMMA)
    return mix(z + np.uint64(stream) * GAMMA)


@jit
def stream(addresses: Any, t: int) -> Any:
    """Where row ``t``'s random sequence starts: from its step (its counter's next), its
    stream and the seed, columns 7 to 9."""
    step = np.int64(carray(pointer(addresses[t, 7], np.float32), 1)[0]) + 1
    return start(addresses[t, 9], step, addresses[t, 8])


@_inline
def store_stochastic(
    v: Any, b: Any, a: Any, i: int, j: int, new: Any, begin: Any, used: Any
) -> None:
    """Element ``i`` (``j`` of its buffer) of the new state, rounded stochastically to
    bfloat16 with the 16-bit words of the element's draw from the sequence starting at
    ``begin``; ``used``: whether the momentum buffer and the gradient average are
    (constants of the kernel, once inlined)."""
    bits = mix(begin + (np.uint64(j) + np.uint64(1)) * GAMMA)
    v[i] = stochastic_bfloat16(new.cache, bits & _MASK16)
    if used[0]:
        b[i] = stochastic_bfloat16(new.momentum_buffer, (bits >> _16) & _MASK16)
    if used[1]:
        a[i] = stochastic_bfloat16(new.grad_avg, (bits >> np.uint64(32)) & _MASK16)


@jit
def parameter_offset(begin: Any) -> Any:
    """:func:`rmsprop._random.parameter_offset` as a uint32."""
    return np.uint32(mix(begin) & np.uint64(_random.WEYL_MASK))


_PARAMETER_WEYL = np.uint32(_random.PARAMETER_WEYL)


@_inline
def stochastic_parameter(x: Any, offset: Any, j: int) -> Any:
    """Parameter element ``j``'s new value ``x`` rounded to float32, then to bfloat16
    stochastically with :func:`rmsprop._random.parameter_bits` (its sequence starting at
    ``offset``): :func:`stochastic_bfloat16`'s bits, in 32-bit arithmetic only, so that
    the loop keeps its 32-bit vector lanes (no float32 value's bits overflow adding 16
    random bits, but a negative NaN's, which the select replaces)."""
    weyl = np.uint32(np.uint32(offset + np.uint32(j) * _PARAMETER_WEYL) & WEYL_MASK)
    random = np.uint32(weyl >> np.uint32(4))
    bits = np.uint32(bits_of_float32(np.float32(x)))
    nan = np.uint32(bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    quiet = np.uint32(np.uint32(bits >> np.uint32(16)) | np.uint32(0x0040))
    rounded = np.uint32(np.uint32(bits + random) >> np.uint32(16))
    return np.uint16(quiet if nan else rounded)


@_inline
def stochastic_bfloat16(x: Any, random: Any) -> Any:
    """``x`` rounded to float32 (to nearest), then to bfloat16 stochastically with 16
    ``random`` bits (a uint64 below 2^16), as :func:`rmsprop._random.round_bfloat16`
    rounds: its bits (a NaN stays a quiet NaN of its sign)."""
    bits = np.uint64(bits_of_float32(np.float32(x)))
    nan = (bits & np.uint64(0x7FFFFFFF)) > np.uint64(0x7F800000)
    quiet = (bits >> _16) | np.uint64(0x0040)
    rounded = (bits + random) >> _16
    return np.uint16(quiet if nan else rounded)


BITS20, BITS40 = np.uint64(20), np.uint64(40)
#: rmsprop._random.weyl's increments and mask, in uint32 arithmetic.
WEYL0, WEYL1, WEYL2 = (np.uint32(w) for w in _random.WEYL)
WEYL_MASK, WEYL_MASK64 = np.uint32(_random.WEYL_MASK), np.uint64(_random.WEYL_MASK)
QBLOCK = _blockwise.BLOCK
#: ``k * WEYL[i] mod 2**20`` for the k-th element of a block, as int32 (``WEYL_STEPS[i]``):
#: element ``j0 + k`` of a block starting at ``j0`` draws ``(start + WEYL_STEPS[i][k]) mod
#: 2**20``, where ``start`` is the Weyl value of ``j0``. A multiplication per element
#: widened the loop to 64-bit lanes; this keeps it in 32 (the encoding twice as fast).
WEYL_STEPS = np.array(
    [[(k * w) & _random.WEYL_MASK for k in range(QBLOCK)] for w in _random.WEYL], dtype=np.int32
)
WEYL_MASK32 = np.int32(_random.WEYL_MASK)
_T_MIN, _T_MAX = _blockwise.T_MIN, _blockwise.T_MAX
#: rmsprop._blockwise.LIMIT's bits as float64 and float32, and the bits of magnitudes.
_LIMIT64, _LIMIT32 = np.int64(0x47DC000000000000), np.int32(0x7EE00000)
_ABS64, _ABS32 = np.int64(0x7FFFFFFFFFFFFFFF), np.int32(0x7FFFFFFF)


@_inline
def decode8(c: Any, bias: int, smallest: int, nan: int, signed: bool) -> Any:
    """The float32 value of code ``c`` in a block of scale 1 (rmsprop._blockwise.table),
    from 32-bit arithmetic that meets no subnormal."""
    magnitude = np.int32(c & np.uint8(0x7F)) if signed else np.int32(c)
    normal = float32_of_bits(np.uint32((magnitude << np.int32(20)) + np.int32(bias << 23)))
    fixed = np.float32(magnitude) * np.float32(2.0 ** -(smallest + 3))
    u = normal if magnitude >= np.int32(8) else fixed
    if signed and c & np.uint8(0x80):
        u = -u
    return np.float32(np.nan) if magnitude == np.int32(nan) else u


@_inline
def encode8(
    x: Any, inverse: Any, random: Any, bias: int, smallest: int, nan: int, signed: bool, limit: Any
) -> Any:
    """The code of ``x`` in a block of scale ``1 / inverse``, rounded with 20 ``random``
    bits (an int32; :func:`rmsprop._blockwise.encode`). Each integer result is cast back
    to int32 (Numba widens int32 arithmetic to int64: half the vector lanes)."""
    magnitude = abs(x)
    finite = magnitude <= limit  # not NaN, infinite or too large
    u = np.float32(magnitude * inverse) if finite else np.float32(0.0)
    biased = np.int32(np.int32(bits_of_float32(u)) - np.int32(bias << 23))
    below = min(u, np.float32(2.0**-smallest))  # in int32's range
    scaled = np.int32(below * np.float32(2.0 ** (smallest + 23)))
    # the normal code's bits or the fixed-point ones, then rounded: both round alike
    kept = biased if u >= np.float32(2.0**-smallest) else scaled
    code = np.int32(np.int32(kept + random) >> np.int32(20))
    code = code if finite else np.int32(nan)
    if signed:
        code = np.int32(code | np.int32(0x80)) if x < 0 else code
    return np.uint8(code)


@_inline
def largest64(m: Any, x: Any) -> Any:
    """The running largest finite magnitude of a block (at most rmsprop._blockwise.LIMIT),
    with ``x``: as the bits of a float64, which order non-negative values as their
    values do (an integer maximum vectorizes, a float one does not without fast-math)."""
    bits = bits_of_float64(np.float64(x)) & _ABS64
    return max(m, bits if bits <= _LIMIT64 else np.int64(0))


@_inline
def largest32(m: Any, x: Any) -> Any:
    """:func:`largest64` for float32 values, as float32 bits. Every result is cast back
    to int32: Numba widens int32 arithmetic to int64, and 64-bit lanes made the block's
    maximum 3.5 times slower (4 lanes where 8 fit)."""
    bits = np.int32(np.int32(bits_of_float32(x)) & _ABS32)
    return np.int32(max(m, bits if bits <= _LIMIT32 else np.int32(0)))


@jit
def exponent64(bits: Any) -> int:
    """:func:`rmsprop._blockwise.block_exponent` from the float64 bits of a block's largest
    finite magnitude (see :func:`largest64`)."""
    exponent = ((bits >> 52) & 0x7FF) - 1023 + (1 if (bits & ((1 << 52) - 1)) > (3 << 50) else 0)
    return int(min(max(exponent, _T_MIN), _T_MAX))


@jit
def exponent32(bits: Any) -> int:
    """:func:`exponent64` from float32 bits (:func:`largest32`): the same exponents."""
    exponent: Any = (np.int64(bits) >> 23) - 127 + (1 if (bits & 0x7FFFFF) > (3 << 21) else 0)
    return int(min(max(exponent, _T_MIN), _T_MAX))


@jit
def power(exponent: int) -> Any:
    """2**exponent as float32, for exponents of float32's normal range."""
    return float32_of_bits(np.uint32((exponent + 127) << 23))
