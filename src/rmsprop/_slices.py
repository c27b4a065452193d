"""Cutting same-shaped arrays into aligned pieces, for paths that must widen or copy.

Used by every front end (``step``/``step_``, ``rmsprop.RMSProp``, the foreach path of
``rmsprop.torch``) so that what they widen or copy stays bounded, whatever the size and
layout of the arrays.
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any, Final

import numpy as np

#: Elements per slice where the NumPy path widens or copies: its temporaries stay under
#: about 56 bytes times this (3.5 MiB), whatever the arrays' size.
SLICE: Final = 1 << 16


def slices(arrays: Sequence[Any], limit: int = SLICE) -> Iterator[tuple[Any, ...]]:
    """Views of ``arrays`` (one shape; NumPy arrays or torch tensors; None stays None) of
    at most ``limit`` elements, covering them once.

    Element i of every view is the same position in every array: C-contiguous
    arrays are cut into flat runs; others along their outermost dimension of
    more than one element, recursively.
    """
    present = [a for a in arrays if a is not None]
    first = present[0]
    size = math.prod(first.shape)
    if size <= limit:
        yield tuple(arrays)
        return
    if all(_c_contiguous(a) for a in present):
        flat = [None if a is None else a.reshape(-1) for a in arrays]
        for start in range(0, size, limit):
            yield tuple(None if a is None else a[start : start + limit] for a in flat)
        return
    axis = next(d for d, extent in enumerate(first.shape) if extent > 1)
    extent = first.shape[axis]
    rows = max(1, limit // (size // extent))
    for start in range(0, extent, rows):
        index = (slice(None),) * axis + (slice(start, start + rows),)
        yield from slices(tuple(None if a is None else a[index] for a in arrays), limit)


def _c_contiguous(a: Any) -> bool:
    return bool(a.flags.c_contiguous if isinstance(a, np.ndarray) else a.is_contiguous())
