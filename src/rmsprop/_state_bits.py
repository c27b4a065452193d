"""Low-bit state (``state_bits`` 16 and 8) of the NumPy optimizer, ``rmsprop.RMSProp``.

The same state as ``rmsprop.torch.RMSProp``'s, written by the same Numba kernel (with
the kernels off, by the same step in NumPy, :mod:`rmsprop._lowbit_numpy`):

- ``state_bits=16``: every buffer in bfloat16 (NumPy's bfloat16 is ``ml_dtypes``'
  :data:`ml_dtypes.bfloat16`, the dtype JAX uses), each new value rounded
  stochastically (:mod:`rmsprop._random`);
- ``state_bits=8``: each buffer of a parameter of at least
  :data:`rmsprop._blockwise.MIN_SIZE` elements as one-byte codes with a float32
  scale per block of 256 (:mod:`rmsprop._blockwise`), kept in the state under the
  buffer's name with ``_scale`` appended; smaller parameters keep float32 state.

Both draw their random bits from (seed, step, stream), the stream being the
parameter's index in the optimizer, as in the torch optimizer: the same
parameters, gradients and seed give the same bits in both. Codes are laid out in
the C order of their parameter (blocks are runs of 256 elements in that order).

Here the state is chosen, created, and converted when a checkpoint holds another
kind: float state into codes (rounded to nearest), codes into float state
(exactly, then rounded once into the state's dtype).
"""

from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from rmsprop import _blockwise
from rmsprop._validation import describe, to_numpy

NDArray = npt.NDArray[Any]

#: The code of each buffer of the NumPy optimizer, by its name in ``state_dict()``.
CODES: Final = {
    "cache": _blockwise.UNSIGNED,
    "momentum_buffer": _blockwise.SIGNED,
    "grad_avg": _blockwise.SIGNED,
}
#: The key of a buffer's scales is its key with this appended.
SCALE: Final = "_scale"
#: The step the random bits are drawn for is the optimizer's step modulo this (the
#: kernels read it as a float32, exact below 2**24).
STEP_PERIOD: Final = 1 << 24


class Coded(NamedTuple):
    """A buffer as 8-bit codes (uint8, its parameter's shape) and its block scales."""

    codes: NDArray
    scales: NDArray


def check(bits: object, seed: object, state_dtype: np.dtype[Any] | None) -> np.dtype[Any] | None:
    """Check ``state_bits`` and ``seed`` (``ValueError``); the dtype of the state's float
    buffers: bfloat16 for 16, float32 for 8 (parameters too small for codes), else
    ``state_dtype`` (None: each parameter's)."""
    if not isinstance(bits, int | np.integer) or isinstance(bits, bool) or bits not in (8, 16, 32):
        raise ValueError(f"state_bits must be 8, 16 or 32, got {bits!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    if bits == 32:
        return state_dtype
    own = bfloat16() if bits == 16 else np.dtype(np.float32)
    if state_dtype is not None and state_dtype != own:
        kind = "bfloat16" if bits == 16 else "8-bit blockwise codes (float32 for small arrays)"
        raise ValueError(
            f"state_bits={bits} keeps the state in {kind}, rounded stochastically: it takes "
            f"no other state_dtype (got {state_dtype})"
        )
    return own


def bfloat16() -> np.dtype[Any]:
    """NumPy's bfloat16 dtype (``ml_dtypes``, installed with JAX)."""
    try:
        import ml_dtypes  # noqa: PLC0415 - optional: only state_bits=16 needs it
    except ImportError:
        raise ImportError(
            "state_bits=16 keeps NumPy state in bfloat16, the dtype of the ml_dtypes "
            "package: pip install ml_dtypes"
        ) from None
    dtype: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    return dtype


def coded(bits: int, size: int) -> bool:
    """Whether a parameter of ``size`` elements keeps its state as 8-bit codes."""
    return bits == 8 and size >= _blockwise.MIN_SIZE


def fill(value: float | NDArray, shape: tuple[int, ...], key: str) -> Coded:
    """``value`` (a number, or an array of ``shape``) as the codes of buffer ``key``,
    rounded to nearest."""
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), shape).ravel()
    codes, scales = _blockwise.encode(values, CODES[key])
    return Coded(codes.reshape(shape), scales)


def values(source: float | NDArray | Coded, key: str) -> float | NDArray:
    """A buffer's values: a number or array as it is, codes decoded (exactly, float64)."""
    if not isinstance(source, Coded):
        return source
    decoded = _blockwise.decode(source.codes.ravel(), source.scales, CODES[key])
    return decoded.reshape(source.codes.shape)


def saved(buffers: dict[str, Any], key: str, shape: tuple[int, ...], name: str) -> NDArray | Coded:
    """Buffer ``key`` of a checkpoint's parameter state, checked (``ValueError``,
    ``TypeError``): 8-bit codes with their scales (uint8 of the parameter's ``shape``,
    one power-of-two float32 scale per block), or an array of real numbers (any
    floating dtype, bfloat16 included) of that shape."""
    value, scales = buffers[key], buffers.get(key + SCALE)
    where = f"{name}[{key!r}]"
    if scales is not None:
        if not isinstance(value, np.ndarray) or value.dtype != np.uint8:
            raise ValueError(f"{name} holds {key + SCALE!r} but its {key!r} is not uint8 codes")
        if not isinstance(scales, np.ndarray) or scales.dtype.kind != "f":
            raise TypeError(f"{name}[{key + SCALE!r}] is {describe(scales)}; expected floats")
        blocks = _blockwise.blocks(value.size)
        if scales.shape != (blocks,) or not _blockwise.check_scales(scales):
            raise ValueError(
                f"{name}[{key + SCALE!r}] must be {blocks} float32 powers of two from 2**-126 "
                f"to 2**126 (one per block of {_blockwise.BLOCK} codes), got shape {scales.shape}"
            )
        if value.shape != shape:
            raise ValueError(f"{where} has shape {value.shape}, its parameter {shape}")
        return Coded(value.copy(), scales.astype(np.float32))
    if isinstance(value, np.ndarray) and value.dtype.name == "bfloat16":
        return value.astype(np.float32)
    array = to_numpy(value, where)
    if array.shape != shape:
        raise ValueError(f"{where} has shape {array.shape}, its parameter {shape}")
    return array
