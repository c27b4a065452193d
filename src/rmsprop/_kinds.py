"""Storage kinds and work precision: the one table every kernel and front end reads.

A fused kernel reads and writes values of a few *storage kinds*; a front end names
its arrays' dtypes (NumPy's ``np.dtype`` or torch's ``torch.dtype``) and asks here
for their kinds and for the precision a step computes in. This module is a leaf:
it imports NumPy only, so that kernels and front ends alike can import it.

The kinds: ``"float32"`` and ``"float64"`` as they are; ``"bfloat16"`` (the upper half
of a float32) and the two float16 kinds, which the Numba kernel reads and writes as
16-bit integers. A float64 value is written to ``"float16"`` rounded once, as NumPy's
``astype`` rounds, and to ``"float16 via float32"`` and ``"bfloat16"`` through float32,
as torch's ``copy_`` rounds.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np

#: One parameter as every kernel's ``Launch`` takes it: (param, grad, [square_avg,
#: momentum_buffer, grad_avg]), NumPy arrays or torch tensors, None for unused buffers.
Member = tuple[Any, Any, Sequence[Any]]
#: Every storage kind of the Numba group kernel.
KINDS: Final = ("float32", "float64", "bfloat16", "float16", "float16 via float32")
#: The storage kind of each NumPy dtype the kernels take.
NUMPY_KINDS: Final = {
    np.dtype(np.float16): "float16",
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
}
#: The storage kind of each torch dtype the kernels take, by ``str(dtype)``.
TORCH_KINDS: Final = {
    "torch.float16": "float16 via float32",
    "torch.bfloat16": "bfloat16",
    "torch.float32": "float32",
    "torch.float64": "float64",
}
#: The state kind of bfloat16 buffers written with stochastic rounding.
STOCHASTIC: Final = "bfloat16 stochastic"
#: The state kind of 8-bit blockwise buffers (rmsprop._blockwise): one-byte codes and a
#: float32 scale per block, written with stochastic rounding.
BLOCKWISE: Final = "8-bit blockwise"
#: Kinds and dtype names whose values a float32 holds exactly (8-bit codes: all but
#: those under 2**-149, which float32 arithmetic rounds, as it rounds its results).
_FLOAT32_EXACT: Final = frozenset(
    {
        "float16",
        "float16 via float32",
        "bfloat16",
        STOCHASTIC,
        BLOCKWISE,
        "float32",
    }
)


def dtype_name(dtype: Any) -> str:
    """A NumPy or torch dtype's name without its module: ``"float32"``, ``"bfloat16"``."""
    return str(dtype).removeprefix("torch.")


def storage_kind(dtype: Any) -> str | None:
    """The kernels' storage kind of a NumPy or torch dtype, or None where they have none
    (NumPy's bfloat16, ``ml_dtypes.bfloat16``, is ``"bfloat16"``, as torch's is)."""
    if isinstance(dtype, np.dtype):
        if dtype.name == "bfloat16" and dtype.itemsize == 2:
            return "bfloat16"
        return NUMPY_KINDS.get(dtype)
    return TORCH_KINDS.get(str(dtype))


def lowbit_kinds(p_dtype: Any, g_dtype: Any, blockwise: bool) -> tuple[str, str, str]:
    """The storage kinds of a launch that writes low-bit state (8-bit codes where
    ``blockwise``, else bfloat16 rounded stochastically) over parameters and gradients
    of these NumPy or torch dtypes; ``TypeError`` where the kernels have none."""
    p_kind, g_kind = storage_kind(p_dtype), storage_kind(g_dtype)
    if p_kind is None or g_kind is None:
        raise TypeError(f"no storage kind for {p_dtype} or {g_dtype}")
    return p_kind, g_kind, BLOCKWISE if blockwise else STOCHASTIC


def float32_work(names: Iterable[str], float32_arithmetic: bool) -> bool:
    """Whether a step over values of these kinds or dtype names computes in float32.

    Every path computes in float64 (or wider) and rounds once into the outputs; with
    ``float32_arithmetic``, in float32 where every value is float32 or narrower.
    """
    return float32_arithmetic and all(name in _FLOAT32_EXACT for name in names)
