"""8-bit blockwise optimizer state (``state_bits=8``): the codes, defined once.

A state buffer of ``n`` values is stored as ``n`` one-byte codes and one float32
*scale* per block of :data:`BLOCK` consecutive elements (in memory order): 1.016
bytes per value, where float32 takes 4. The Numba and Triton kernels decode,
update and encode a block in one pass; both are tested bit for bit against the
NumPy functions here, which also convert checkpoints.

**The code** is a small floating-point number relative to its block, as in the
OCP microscaling formats (a shared power-of-two scale, 8-bit floats inside): a
block's scale is ``2**T``, the smallest power of two with every finite value of
the block at most ``1.75 * 2**T`` (:func:`block_exponent`), and each code is the
float32 bits of the value over the scale, rebiased so that the block's largest
binade is the code's largest, keeping 3 bits of mantissa (:class:`Code`):

- the square average (never negative) has 5 exponent bits and 3 of mantissa
  (:data:`UNSIGNED`): values from ``2**(T - 30)`` to ``1.75 * 2**T``, 9.3 decades,
  7 to 12.5 % apart, and below them 7 evenly spaced steps down to 0 (fixed point,
  as float32 subnormals are);
- the momentum buffer and the gradient average have a sign, 4 exponent bits and 3
  of mantissa (:data:`SIGNED`, OCP's E4M3): 4.5 decades below ``1.75 * 2**T``.

A power-of-two scale makes encoding and decoding exact multiplications (no
division whose rounding a GPU and a CPU might do differently), so every backend
writes the same bytes. The top code of each kind is NaN: a value that is NaN,
infinite or beyond :data:`LIMIT` is stored as NaN in its own element, and the
block's scale is set by the other values (nothing spreads to the neighbours; the
NaN reads back as NaN, as a float32 state would hold NaN or infinity there).

**Rounding** is stochastic and unbiased: the value over the scale is rounded to
float32 (to nearest; exact where the step computes in float32), then to the code
by adding 20 random bits below the kept ones (the code is then the upper neighbour
with probability equal to the value's distance from the lower one, in units of
their spacing, to 2**-20). Every step is 32-bit integer and float32 arithmetic
without subnormals (a CPU takes a hundred cycles over one of those), so that it
runs in wide vector lanes. Rounding to nearest would freeze the square average: a
decay of ``beta = 0.99`` moves it by 1 % a step, under the codes' spacing. The
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
#: Larger magnitudes (and NaN, infinities) are stored as the NaN code: 1.75 * 2**126.
LIMIT: Final = 1.75 * 2.0**126
#: The block exponents: scales and their inverses are normal float32 numbers.
T_MIN: Final = -126
T_MAX: Final = 126
#: Random bits per code.
RANDOM_BITS: Final = 20
#: Half of the random range: rounding to nearest (ties away from the lower code).
NEAREST: Final = 1 << (RANDOM_BITS - 1)


class Code(NamedTuple):
    """One kind of code, for a value ``u`` relative to its block's scale (at most 1.75):
    from ``2**-(smallest)`` on, ``u``'s float32 bits less ``bias << 23``, shifted right
    by 20 (exponent field and 3 bits of mantissa); below, ``u * 2**(smallest + 3)``
    (fixed point, as float32 subnormals are). ``nan``: the magnitude code that means
    NaN; ``signed``: bit 7 is the sign."""

    bias: int
    smallest: int
    nan: int
    signed: bool


#: The square average's code: 5 exponent bits, 3 of mantissa (``2**-30`` to 1.75).
UNSIGNED: Final = Code(bias=96, smallest=30, nan=0xFF, signed=False)
#: The momentum buffer's and gradient average's code: sign, 4 exponent bits, 3 of
#: mantissa (``2**-14`` to 1.75).
SIGNED: Final = Code(bias=112, smallest=14, nan=0x7F, signed=True)
#: The code of each state buffer, by state key.
CODES: Final = {"square_avg": UNSIGNED, "momentum_buffer": SIGNED, "grad_avg": SIGNED}


def blocks(size: int) -> int:
    """The number of blocks (scales) of a buffer of ``size`` elements."""
    return -(-size // BLOCK)


def block_exponent(largest: NDArray) -> NDArray:
    """Each block's exponent T from its largest finite magnitude (at most
    :data:`LIMIT`): the exponent of its binade, one more where it exceeds 1.75 times
    the binade's start (so that rounding up never leaves the codes), within
    :data:`T_MIN` and :data:`T_MAX`. Read from the float64 bits, as the kernels do
    (from float32 bits where they compute in float32: the same exponents)."""
    bits = np.asarray(largest, dtype=np.float64).view(np.int64)
    field = (bits >> 52) & 0x7FF
    over = (bits & ((1 << 52) - 1)) > (3 << 50)  # mantissa above 1.75
    exponent: NDArray = np.clip(field - 1023 + over.astype(np.int64), T_MIN, T_MAX)
    return exponent


def encode(values: NDArray, code: Code, random: NDArray | None = None) -> tuple[NDArray, NDArray]:
    """The codes (uint8) and block scales (float32) of 1-D float64 ``values``, rounded
    stochastically with ``random`` (20 bits per element), or to nearest where None.

    Each value relative to its block's scale is rounded to float32 first; in 32-bit
    lanes, and with no float32 subnormal on the way (a CPU takes a hundred cycles
    over one) unless a value is under ``2**-126`` of its block's scale.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    magnitude = np.abs(x)
    finite = magnitude <= LIMIT  # False for NaN
    padded = np.zeros(blocks(n) * BLOCK)
    padded[:n] = np.where(finite, magnitude, 0.0)
    exponent = block_exponent(padded.reshape(-1, BLOCK).max(axis=1) if n else padded)
    per_element = np.repeat(exponent, BLOCK)[:n]
    u = (np.where(finite, magnitude, 0.0) * np.ldexp(1.0, -per_element)).astype(np.float32)
    if random is None:
        random = np.full(n, NEAREST, dtype=np.uint64)
    r = np.asarray(random, np.uint64).astype(np.int64)
    normal = (u.view(np.int32).astype(np.int64) - (code.bias << 23) + r) >> RANDOM_BITS
    below = np.minimum(u, np.float32(2.0**-code.smallest))
    up = np.float32(2.0 ** (code.smallest + 3 + RANDOM_BITS))
    fixed = ((below * up).astype(np.int64) + r) >> RANDOM_BITS
    codes = np.where(u >= np.float32(2.0**-code.smallest), normal, fixed)
    codes = np.where(finite, codes, code.nan).astype(np.uint8)
    if code.signed:
        codes |= np.where(x < 0, 0x80, 0).astype(np.uint8)
    scales = np.ldexp(np.float32(1.0), exponent.astype(np.int32)).astype(np.float32)
    return codes, scales


def table(code: Code) -> NDArray:
    """The value of each of the 256 codes in a block of scale 1, as float32 (exactly):
    a value is ``table[c] * scale``; NaN codes are NaN."""
    c = np.arange(256, dtype=np.int64)
    magnitude = c & 0x7F if code.signed else c
    field, mantissa = magnitude >> 3, magnitude & 7
    values = np.where(
        field > 0,
        np.ldexp(1.0 + mantissa / 8.0, field - (127 - code.bias)),
        np.ldexp(mantissa.astype(np.float64), -(code.smallest + 3)),
    )
    if code.signed:
        values = np.where(c & 0x80, -values, values)
    return np.where(magnitude == code.nan, np.nan, values).astype(np.float32)


def decode(codes: NDArray, scales: NDArray, code: Code) -> NDArray:
    """The float64 values of 1-D ``codes`` with their block ``scales`` (exactly)."""
    c = np.asarray(codes, dtype=np.uint8).ravel()
    factor = np.repeat(np.asarray(scales, dtype=np.float32).astype(np.float64), BLOCK)[: c.size]
    return table(code)[c].astype(np.float64) * factor


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
