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
from typing import Any, Final, cast

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
#: The kind of bfloat16 values written with stochastic rounding: state buffers, and
#: parameters (``stochastic_rounding``).
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


def launch_kinds(
    p_dtype: Any,
    g_dtype: Any,
    s_dtype: Any,
    *,
    drawn: bool,
    scales: object = None,
    round_params: bool = False,
    round_state: bool = True,
) -> tuple[str, str, str]:
    """The storage kinds of a kernel launch (or its step in array operations) over
    parameters, gradients and state of these NumPy or torch dtypes: 8-bit codes where
    it has ``scales`` (uint8 state, random streams ``drawn``), then stochastic rounding
    as :func:`stochastic_kinds` applies it; ``TypeError`` where the kernels have none."""
    s_kind = storage_kind(s_dtype)
    if scales is not None:
        if dtype_name(s_dtype) != "uint8":
            raise TypeError(f"8-bit blockwise state is stored as uint8 codes, not {s_dtype}")
        if not drawn:
            raise TypeError("8-bit blockwise state is written with stochastic rounding")
        s_kind = BLOCKWISE
    kinds = (storage_kind(p_dtype), storage_kind(g_dtype), s_kind)
    if None in kinds:
        raise TypeError(f"no storage kind for {p_dtype}, {g_dtype} or {s_dtype}")
    return stochastic_kinds(
        cast(tuple[str, str, str], kinds), drawn, scales, round_params, round_state
    )


def stochastic_kinds(
    kinds: tuple[str, str, str],
    drawn: bool,
    scales: object,
    round_params: bool = False,
    round_state: bool = True,
) -> tuple[str, str, str]:
    """A kernel launch's storage kinds once stochastic rounding is applied (``TypeError``
    where it cannot be): the state, given random streams (``drawn``) and no 8-bit
    ``scales``, is bfloat16 rounded stochastically unless ``round_state`` is False;
    the parameters are, with ``round_params``, bfloat16 rounded stochastically."""
    p_kind, g_kind, s_kind = kinds
    if drawn and scales is None and round_state:
        if s_kind != "bfloat16":
            raise TypeError(f"stochastic rounding writes bfloat16 state, not {s_kind}")
        s_kind = STOCHASTIC
    if round_params:
        if not drawn:
            raise TypeError("parameters rounded stochastically need the random streams")
        if p_kind != "bfloat16":
            raise TypeError(f"stochastic rounding writes bfloat16 parameters, not {p_kind}")
        p_kind = STOCHASTIC
    return p_kind, g_kind, s_kind


def float32_work(names: Iterable[str], float32_arithmetic: bool) -> bool:
    """Whether a step over values of these kinds or dtype names computes in float32.

    Every path computes in float64 (or wider) and rounds once into the outputs; with
    ``float32_arithmetic``, in float32 where every value is float32 or narrower.
    """
    return float32_arithmetic and all(name in _FLOAT32_EXACT for name in names)
