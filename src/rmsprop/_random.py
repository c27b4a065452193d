"""Counter-based random bits and stochastic rounding, defined once for every backend.

For low-bit optimizer state (bfloat16 buffers written with stochastic rounding) the
same bits must come out on the CPU (NumPy, Numba) and in the Triton kernel, for the
same seed, step and element, so that a run is reproducible and a checkpoint resumes
bit for bit on any device. Nothing is stored between draws.

**The bits** are those of SplitMix64 (Steele, Lea, Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014; the seeding generator of
``java.util.SplittableRandom`` and of xoshiro): element ``j`` of a buffer draws the
``(j + 1)``-th output of a SplitMix64 sequence whose start depends on the seed, the
step and the parameter's stream (:func:`start`), that is :func:`mix` of
``start + (j + 1) * GAMMA``. SplitMix64's output passes BigCrush; one 64-bit draw
gives the three 16-bit words the state needs (:func:`word`): square average,
momentum buffer, gradient average. It costs two 64-bit multiplications per element,
where Philox4x32-10 costs twenty 32-bit ones: on this project's CPU the kernel with
Philox ran at 2.5x the time of float32 state.

Written for integers that wrap at 2^64 and shift logically: NumPy and Numba
``uint64``, Triton ``tl.uint64``, and Python ints (every operation is masked).

**Stochastic rounding** of float32 to bfloat16 (:func:`round_bfloat16`): add 16
random bits to the float32 bits and keep the upper half. The result is one of the
two bfloat16 neighbours of ``x``, the upper one with probability equal to ``x``'s
distance from the lower one in units of their spacing, so that its expected value
is ``x`` exactly (past the largest finite bfloat16, infinity takes the upper
neighbour's place); NaN stays a quiet NaN of its sign.
"""

from collections.abc import Callable
from typing import Any, Final

#: SplitMix64's increment (2^64 / golden ratio, odd) and mixing constants.
GAMMA: Final = 0x9E3779B97F4A7C15
MIX1: Final = 0xBF58476D1CE4E5B9
MIX2: Final = 0x94D049BB133111EB
MASK: Final = 0xFFFFFFFFFFFFFFFF


def mix(z: Any) -> Any:
    """SplitMix64's output function (a bijection of 64-bit values)."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK
    z = ((z ^ (z >> 27)) * MIX2) & MASK
    return z ^ (z >> 31)


def start(seed: Any, step: Any, stream: Any) -> Any:
    """Where the sequence of a (seed, step, stream) starts: each input mixed in turn."""
    z = mix((seed + GAMMA) & MASK)
    z = mix((z + step * GAMMA) & MASK)
    return mix((z + stream * GAMMA) & MASK)


def draw(begin: Any, j: Any) -> Any:
    """The 64 random bits of element ``j`` of the sequence starting at ``begin``."""
    return mix((begin + (j + 1) * GAMMA) & MASK)


def word(bits: Any, k: int) -> Any:
    """The ``k``-th 16-bit word (0, 1, 2, 3) of 64 random bits."""
    return (bits >> (16 * k)) & 0xFFFF


def round_bfloat16(bits: Any, random: Any, where: Callable[[Any, Any, Any], Any]) -> Any:
    """The bfloat16 bits of float32 ``bits`` (unsigned 32-bit values held in wider
    integers) rounded stochastically with 16 ``random`` bits (0 to 65535); ``where``
    is the backend's three-way select."""
    nan = (bits & 0x7FFFFFFF) > 0x7F800000
    return where(nan, (bits >> 16) | 0x0040, (bits + random) >> 16)


#: The increments of :func:`weyl`'s three sequences (odd: each visits all 2^20 values):
#: the fractional parts of the golden ratio, sqrt(2) and sqrt(3), times 2^20.
WEYL: Final = (0x9E377, 0x6A09F, 0xBB67B)
WEYL_MASK: Final = 0xFFFFF


def weyl(begin: Any, j: Any, k: int) -> Any:
    """20 random bits for element ``j`` of buffer ``k`` (0, 1, 2) of a sequence starting
    at ``begin``: the additive (Weyl) sequence ``o + j * WEYL[k]`` modulo 2^20 whose
    offset ``o`` is the ``k``-th 20 bits of ``begin``.

    Cheaper than a draw per element (one multiply-add, in 32-bit arithmetic where
    ``j`` wraps modulo 2^32, a multiple of 2^20). Each element's bits are uniform
    and independent from step to step (``begin`` is: :func:`start` of the step);
    within a step neighbours are not independent but evenly spread (a low-discrepancy
    sequence), which keeps stochastic rounding unbiased element by element and makes
    the rounding errors of a block cancel more evenly than independent bits would.
    """
    offset = (begin >> (20 * k)) & WEYL_MASK
    return (offset + (j & 0xFFFFFFFF) * WEYL[k]) & WEYL_MASK


#: The increment of the parameters' sequence (``stochastic_rounding``): the fractional
#: part of sqrt(5), times 2^20 (odd).
PARAMETER_WEYL: Final = 0x3C6EF


def parameter_offset(begin: Any) -> Any:
    """Where the parameters' sequence of a step starts: the low 20 bits of
    ``mix(begin)`` (``begin``'s own bits start the state's three sequences)."""
    return mix(begin) & WEYL_MASK


def parameter_bits(offset: Any, j: Any) -> Any:
    """16 random bits for parameter element ``j`` written with stochastic rounding: the
    upper 16 of the 20 bits of the Weyl sequence ``o + j * PARAMETER_WEYL`` modulo 2^20
    from ``offset`` (:func:`parameter_offset`), as :func:`weyl` draws the state's: a
    multiply-add per element, uniform and independent from step to step."""
    return ((offset + (j & 0xFFFFFFFF) * PARAMETER_WEYL) & WEYL_MASK) >> 4
