"""8-bit blockwise optimizer state (``state_bits=8``): the codes, defined once.

A state buffer of ``n`` values is stored as ``n`` one-byte codes and one float32
*scale* per block of :data:`BLOCK` consecutive elements (in memory order): 1.016
bytes per value, where float32 takes 4. The Numba and Triton kernels decode,
update and encode a block in one pass; both are tested bit for bit against the
NumPy functions here, which also convert checkpoints.

**The code** is a small floating-point number relative to its block, as in the
OCP microscaling formats (a shared power-of-two scale, 8-bit floats inside): a
block's scale is ``2**T``, the smallest power of two with every finite value of
the block at most ``1.75 * 2**T`` (:func:`block_exponent`), and each code is a
value's float32 bits, shifted so that the block's largest binade is the code's
largest, keeping 3 bits of mantissa:

- the square average (never negative) has 5 exponent bits and 3 of mantissa
  (:data:`UNSIGNED`): values from ``2**(T - 30)`` to ``1.75 * 2**T`` at 3 to 6 %
  spacing, 9.3 decades, and below them evenly spaced down to 0 (subnormal codes);
- the momentum buffer and the gradient average have a sign, 4 exponent bits and 3
  of mantissa (:data:`SIGNED`, OCP's E4M3): 4.5 decades below ``1.75 * 2**T``.

A power-of-two scale makes encoding and decoding exact multiplications (no
division whose rounding a GPU and a CPU might do differently), so every backend
writes the same bytes. The top code of each kind is NaN: a value that is NaN,
infinite or beyond :data:`LIMIT` is stored as NaN in its own element, and the
block's scale is set by the other values (nothing spreads to the neighbours; the
NaN reads back as NaN, as a float32 state would hold NaN or infinity there).

**Rounding** is stochastic and unbiased: the value, scaled, is rounded once to
float32 (to nearest) and its float32 bits are rounded to the code by adding 20
random bits below the kept ones (the code is then the upper neighbour with
probability equal to the value's distance from the lower one, in units of their
spacing, to 2**-20). Rounding to nearest would freeze the square average: a decay
of ``beta = 0.99`` moves it by 1 % a step, under the code's 3 to 6 % spacing. The
random bits are :func:`rmsprop._random.weyl`'s, one sequence per buffer from the
start of the step's random sequence (a multiply-add per element: a 64-bit draw per
element, as bfloat16 state takes, made the 8-bit step 2.2 times slower here).
Conversions of checkpoints round to nearest instead (``random=None``).
"""

from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

NDArray = npt.NDArray[Any]

#: Elements per block (one float32 scale each); kernel chunks start at multiples of it.
BLOCK: Final = 256
#: Parameters with fewer elements keep float32 state under ``state_bits=8`` (their
#: state is small, and a partial block would cost more than it saves).
MIN_SIZE: Final = 4096
#: Larger magnitudes (and NaN, infinities) are stored as the NaN code: 1.75 * 2**127.
LIMIT: Final = 1.75 * 2.0**127
#: The smallest block exponent (the smallest float32 power of two, subnormal).
T_MIN: Final = -149
T_MAX: Final = 127
#: Random bits per code.
RANDOM_BITS: Final = 20
#: Half of the random range: rounding to nearest (ties away from the lower code).
NEAREST: Final = 1 << (RANDOM_BITS - 1)


class Code(NamedTuple):
    """One kind of code: ``shift``: a value ``x`` of a block with exponent T is coded
    from the float32 ``x * 2**-(shift + T)``, whose bits 20 to 27 (26 when signed) are
    the code; ``nan``: the magnitude code that means NaN; ``signed``: bit 7 is the sign."""

    shift: int
    nan: int
    signed: bool


#: The square average's code: 5 exponent bits, 3 of mantissa.
UNSIGNED: Final = Code(shift=96, nan=0xFF, signed=False)
#: The momentum buffer's and gradient average's code: sign, 4 exponent bits, 3 of mantissa.
SIGNED: Final = Code(shift=112, nan=0x7F, signed=True)
#: The code of each state buffer, by state key.
CODES: Final = {"square_avg": UNSIGNED, "momentum_buffer": SIGNED, "grad_avg": SIGNED}


def blocks(size: int) -> int:
    """The number of blocks (scales) of a buffer of ``size`` elements."""
    return -(-size // BLOCK)


def block_exponent(largest: NDArray) -> NDArray:
    """Each block's exponent T from its largest finite magnitude (float64, at most
    :data:`LIMIT`): the exponent of its binade, one more where it exceeds 1.75 times
    the binade's start (so that rounding up never leaves the codes), at least
    :data:`T_MIN`. Read from the float64 bits, as the kernels do."""
    bits = np.asarray(largest, dtype=np.float64).view(np.int64)
    field = (bits >> 52) & 0x7FF
    over = (bits & ((1 << 52) - 1)) > (3 << 50)  # mantissa above 1.75
    exponent = field - 1023 + over.astype(np.int64)
    return np.where(field == 0, T_MIN, np.maximum(exponent, T_MIN))


def encode(values: NDArray, code: Code, random: NDArray | None = None) -> tuple[NDArray, NDArray]:
    """The codes (uint8) and block scales (float32) of 1-D float64 ``values``, rounded
    stochastically with ``random`` (20 bits per element), or to nearest where None."""
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    magnitude = np.abs(x)
    finite = magnitude <= LIMIT  # False for NaN
    padded = np.zeros(blocks(n) * BLOCK)
    padded[:n] = np.where(finite, magnitude, 0.0)
    exponent = block_exponent(padded.reshape(-1, BLOCK).max(axis=1) if n else padded)
    per_element = np.repeat(exponent, BLOCK)[:n]
    scaled = (np.where(finite, magnitude, 0.0) * np.ldexp(1.0, -code.shift - per_element)).astype(
        np.float32
    )
    if random is None:
        random = np.full(n, NEAREST, dtype=np.uint64)
    raw = (scaled.view(np.uint32).astype(np.uint64) + np.asarray(random, np.uint64)) >> np.uint64(
        RANDOM_BITS
    )
    codes = np.where(finite, raw, code.nan).astype(np.uint8)
    if code.signed:
        codes |= np.where(x < 0, 0x80, 0).astype(np.uint8)
    scales = np.ldexp(np.float32(1.0), exponent.astype(np.int32)).astype(np.float32)
    return codes, scales


def decode(codes: NDArray, scales: NDArray, code: Code) -> NDArray:
    """The float64 values of 1-D ``codes`` with their block ``scales`` (exactly)."""
    c = np.asarray(codes, dtype=np.uint8).ravel().astype(np.uint32)
    magnitude = c & 0x7F if code.signed else c
    factor = np.repeat(np.asarray(scales, dtype=np.float32).astype(np.float64), BLOCK)[: c.size]
    values = (magnitude << 20).view(np.float32).astype(np.float64) * (factor * 2.0**code.shift)
    if code.signed:
        values = np.where(c & 0x80, -values, values)
    return np.where(magnitude == code.nan, np.nan, values)


def check_scales(scales: NDArray) -> bool:
    """Whether every scale is a power of two a block can have (a checkpoint's, say)."""
    s = np.asarray(scales, dtype=np.float32)
    exponent = np.frexp(s.astype(np.float64))[1] - 1
    return bool(
        np.all(np.isfinite(s))
        and np.all(s > 0)
        and np.all(np.ldexp(1.0, exponent) == s)
        and np.all((exponent >= T_MIN) & (exponent <= T_MAX))
    )
