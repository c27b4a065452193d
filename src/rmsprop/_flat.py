"""Flat buffers: many arrays as views of one, each starting on a cache line.

The optimizers keep the state of a param group (and the torch optimizers the step
counters) as views of one buffer per (device, dtype) rather than one allocation per
array: one allocation instead of hundreds, memory pages shared by neighbours, and the
counters of a launch advanced by one operation. Where each view starts is decided
here, once for NumPy and torch.
"""

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: Every view starts this many bytes into its buffer, or a multiple (a cache line, and
#: the widest vector load); buffers themselves start aligned (torch's CPU allocator
#: aligns to 64 bytes, CUDA's to 512; NumPy buffers are aligned by the caller).
ALIGNMENT: Final = 64


def layout(sizes: Sequence[int], itemsize: int) -> tuple[list[int], int]:
    """Element offsets of arrays of ``sizes`` elements packed in this order into one
    buffer of ``itemsize``-byte elements, each offset a multiple of :data:`ALIGNMENT`
    bytes, and the buffer's size in elements.

    >>> layout([3, 20, 0, 1], 4)
    ([0, 16, 48, 48], 64)
    """
    step = max(1, ALIGNMENT // itemsize)
    offsets = []
    total = 0
    for size in sizes:
        offsets.append(total)
        total += -(-size // step) * step
    return offsets, total


def numpy_buffer(size: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """A zeroed NumPy array of ``size`` elements whose first element is aligned to
    :data:`ALIGNMENT` bytes (NumPy itself promises 16)."""
    dtype = np.dtype(dtype)
    raw = np.zeros(size * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start : start + size * dtype.itemsize].view(dtype)
