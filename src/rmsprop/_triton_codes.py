"""Values in memory for the Triton kernel (:mod:`rmsprop._triton`): loads that widen
exactly, stores that round once (bfloat16 by integer arithmetic: Triton's interpreter
truncates where the compiled conversion rounds), random bits, stochastic rounding to
bfloat16, and 8-bit blockwise codes.

The low-bit functions are each the Triton twin of a definition in :mod:`rmsprop._random` (the
random bits) or :mod:`rmsprop._blockwise` (the codes); the tests compare the kernel
with the Numba kernel bit for bit under Triton's interpreter, and compile it for
sm_80 and sm_90a. Importing this module imports Triton.
"""

import triton
import triton.language as tl


@triton.jit
def read(pointer, offsets, mask, MASKED: tl.constexpr, WORK: tl.constexpr):  # type: ignore[no-untyped-def]
    """Load a block and widen it exactly to the work dtype (bfloat16 stored as uint16)."""
    if MASKED:
        x = tl.load(pointer + offsets, mask=mask, other=0)
    else:
        x = tl.load(pointer + offsets)
    if x.dtype == tl.uint16:
        x = (x.to(tl.uint32) << 16).to(tl.float32, bitcast=True)
    return x.to(WORK)


@triton.jit
def load(pointer, offsets, mask, MASKED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Load a block as it is stored."""
    if MASKED:
        x = tl.load(pointer + offsets, mask=mask, other=0)
    else:
        x = tl.load(pointer + offsets)
    return x


@triton.jit
def write(pointer, offsets, mask, x, MASKED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Round ``x`` once to the pointer's dtype (through float32, as torch does) and store it."""
    STORE: tl.constexpr = pointer.dtype.element_ty
    if STORE == tl.float64:
        y = x.to(tl.float64)
    elif STORE == tl.uint16:  # bfloat16: round the float32 to nearest even, keep NaN a NaN
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        y = tl.where(x != x, 0x7FC0, rounded).to(tl.uint16)
    else:
        y = x.to(tl.float32).to(STORE)
    if MASKED:
        tl.store(pointer + offsets, y, mask=mask)
    else:
        tl.store(pointer + offsets, y)


@triton.jit
def mix(z):  # type: ignore[no-untyped-def]
    """:func:`rmsprop._random.mix` on uint64 blocks."""
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)


@triton.jit
def random_start(seed, step, stream):  # type: ignore[no-untyped-def]
    """:func:`rmsprop._random.start` on uint64 scalars."""
    z = mix(seed + 0x9E3779B97F4A7C15)
    z = mix(z + step * 0x9E3779B97F4A7C15)
    return mix(z + stream * 0x9E3779B97F4A7C15)


@triton.jit
def write_stochastic(pointer, offsets, mask, x, random, MASKED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Round ``x`` to float32, then to bfloat16 (stored as uint16) stochastically with 16
    ``random`` bits (:func:`rmsprop._random.round_bfloat16`)."""
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    y = tl.where(nan, (bits >> 16) | 0x0040, (bits + random.to(tl.uint32)) >> 16).to(tl.uint16)
    if MASKED:
        tl.store(pointer + offsets, y, mask=mask)
    else:
        tl.store(pointer + offsets, y)


@triton.jit
def decode8(c, BIAS: tl.constexpr, NAN: tl.constexpr, FIXED: tl.constexpr, SIGNED: tl.constexpr):  # type: ignore[no-untyped-def]
    """The float32 values of 8-bit codes ``c`` in a block of scale 1
    (:func:`rmsprop._blockwise.table`): ``BIAS`` and ``NAN`` of the code, ``FIXED`` the
    value of its smallest fixed-point step."""
    c = c.to(tl.int32)
    if SIGNED:
        magnitude = c & 0x7F
    else:
        magnitude = c
    normal = ((magnitude << 20) + (BIAS << 23)).to(tl.float32, bitcast=True)
    u = tl.where(magnitude >= 8, normal, magnitude.to(tl.float32) * FIXED)
    if SIGNED:
        u = tl.where((c & 0x80) != 0, -u, u)
    return tl.where(magnitude == NAN, float("nan"), u)


@triton.jit
def power(exponent):  # type: ignore[no-untyped-def]
    """2**exponent as float32, for exponents of float32's normal range."""
    return ((exponent + 127).to(tl.int32) << 23).to(tl.float32, bitcast=True)


@triton.jit
def write8(  # type: ignore[no-untyped-def]
    pointer, scales, block, offsets, mask, x, random,
    BIAS: tl.constexpr, NAN: tl.constexpr, SMALLEST: tl.constexpr, UP: tl.constexpr,
    SIGNED: tl.constexpr, MASKED: tl.constexpr,
):  # fmt: skip
    """Encode one block of ``x`` (:func:`rmsprop._blockwise.encode`, rounded with 20
    ``random`` bits each): its scale to ``scales[block]``, its codes. ``SMALLEST``: the
    smallest normal code's value at scale 1; ``UP``: the fixed-point codes' scaling."""
    magnitude = tl.abs(x)
    finite = magnitude <= 1.75 * 2.0**126  # rmsprop._blockwise.LIMIT, a float32
    if MASKED:
        finite = finite & mask
    largest = tl.max(tl.where(finite, magnitude, 0.0), axis=0).to(tl.float64)
    bits = largest.to(tl.int64, bitcast=True)
    exponent = ((bits >> 52) & 0x7FF) - 1023 + tl.where((bits & 0xFFFFFFFFFFFFF) > (3 << 50), 1, 0)
    exponent = tl.minimum(tl.maximum(exponent, -126), 126)
    tl.store(scales + block, power(exponent))
    inverse = power(-exponent).to(x.dtype)
    u = tl.where(finite, magnitude * inverse, 0.0).to(tl.float32)
    random = random.to(tl.int32)
    normal = (u.to(tl.int32, bitcast=True) - (BIAS << 23) + random) >> 20
    fixed = ((tl.minimum(u, SMALLEST) * UP).to(tl.int32) + random) >> 20
    code = tl.where(u >= SMALLEST, normal, fixed)
    code = tl.where(finite, code, NAN)
    if SIGNED:
        code = code | tl.where(x < 0, 0x80, 0)
    if MASKED:
        tl.store(pointer + offsets, code.to(tl.uint8), mask=mask)
    else:
        tl.store(pointer + offsets, code.to(tl.uint8))


@triton.jit
def write_state(  # type: ignore[no-untyped-def]
    vp, bp, ap, svp, sbp, sap, quant, offsets, mask, v, b, a, step, MASKED: tl.constexpr,
    MOMENTUM: tl.constexpr, CENTERED: tl.constexpr, STOCHASTIC: tl.constexpr,
    BLOCKWISE: tl.constexpr, ROUND_STATE: tl.constexpr,
):  # fmt: skip
    """Write a block's new state: 8-bit codes, bfloat16 rounded stochastically, or the
    state's dtype rounded to nearest (see ``rmsprop._triton._block``)."""
    if BLOCKWISE:  # rmsprop._random.weyl's bits from ``step``, the sequence's start
        j = offsets.to(tl.uint32)
        random = ((step & 0xFFFFF).to(tl.uint32) + j * 0x9E377) & 0xFFFFF
        write8(vp, svp, quant, offsets, mask, v, random, 96, 0xFF, 2.0**-30, 2.0**53, False, MASKED)
        if MOMENTUM:
            random = (((step >> 20) & 0xFFFFF).to(tl.uint32) + j * 0x6A09F) & 0xFFFFF
            write8(
                bp, sbp, quant, offsets, mask, b, random, 112, 0x7F, 2.0**-14, 2.0**37, True, MASKED
            )
        if CENTERED:
            random = (((step >> 40) & 0xFFFFF).to(tl.uint32) + j * 0xBB67B) & 0xFFFFF
            write8(
                ap, sap, quant, offsets, mask, a, random, 112, 0x7F, 2.0**-14, 2.0**37, True, MASKED
            )
    elif STOCHASTIC and ROUND_STATE:  # ``step``: where the tensor's random sequence starts
        bits = mix(step + (offsets.to(tl.uint64) + 1) * 0x9E3779B97F4A7C15)
        write_stochastic(vp, offsets, mask, v, bits & 0xFFFF, MASKED)
        if MOMENTUM:
            write_stochastic(bp, offsets, mask, b, (bits >> 16) & 0xFFFF, MASKED)
        if CENTERED:
            write_stochastic(ap, offsets, mask, a, (bits >> 32) & 0xFFFF, MASKED)
    else:
        write(vp, offsets, mask, v, MASKED)
        if MOMENTUM:
            write(bp, offsets, mask, b, MASKED)
        if CENTERED:
            write(ap, offsets, mask, a, MASKED)
