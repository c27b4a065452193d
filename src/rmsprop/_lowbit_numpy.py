"""Low-bit state (``state_bits`` 16 and 8) of ``rmsprop.RMSProp`` where the fused
kernels do not run (``RMSPROP_KERNELS=0``, or a Numba that fails to load), in NumPy.

:class:`Launch` takes the launch of :class:`rmsprop._kernels.Launch` and computes the
same step with array operations: the rule is :func:`rmsprop._rule.family_update`
itself, with the kernel's work dtype and scalars (float32 scalars, held in one-element
arrays so that NumPy 1.x does not widen ``1 - beta`` to float64); the random bits are
:mod:`rmsprop._random`'s and the codes :func:`rmsprop._blockwise.encode`'s, the
definitions the kernels are tested against. It writes the kernel's bytes, bit for bit
(``tests/test_numpy_state_bits.py``), in 25 to 30 times its time, and bounds what it
holds at a time by stepping each array :data:`SLICE` elements at a time (at most about
150 bytes each: ``benchmarks/bench_lowbit_operations.py``).

The arrays are the optimizer's: C-ordered, float16, float32 or float64 parameters and
gradients, bfloat16 (``ml_dtypes``) or 8-bit state with float32 scales.
"""

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from rmsprop import _blockwise, _random
from rmsprop._interrupt import write_all
from rmsprop._kinds import Member, float32_work, launch_kinds
from rmsprop._options import Hyperparameters, converted
from rmsprop._rule import State, family_update

NDArray = npt.NDArray[Any]

#: Elements of an array stepped at a time: a multiple of the 8-bit block.
SLICE: Final = 1 << 18

_CODES: Final = (_blockwise.UNSIGNED, _blockwise.SIGNED, _blockwise.SIGNED)


class Launch:
    """:class:`rmsprop._kernels.Launch` for low-bit state, in NumPy: members ``(param,
    grad, [cache, momentum_buffer, grad_avg])`` of C-ordered arrays, with
    ``stochastic=(counters, streams, seed)`` and, for 8-bit codes, ``scales``."""

    def __init__(
        self,
        members: Sequence[Member],
        hp: Hyperparameters,
        *,
        float32_arithmetic: bool = False,
        stochastic: tuple[Sequence[Any], Sequence[int], int] | None = None,
        scales: Sequence[Sequence[Any]] | None = None,
    ) -> None:
        if stochastic is None:
            raise TypeError("the NumPy launch writes low-bit state only")
        self._members = list(members)
        self._counters, self._streams, self._seed = stochastic
        self._scales = scales
        p, g, buffers = self._members[0]
        kinds = launch_kinds(p.dtype, g.dtype, buffers[0].dtype, drawn=True, scales=scales)
        narrow = float32_work(kinds, float32_arithmetic)
        self._work = np.dtype(np.float32 if narrow else np.float64)

    def __call__(self, grads: Sequence[Any], hp: Hyperparameters, correction: float = 1.0) -> None:
        options: Any = hp
        factor: Any = correction
        if self._work == np.float32:  # float32 scalars, as the kernel's
            options, factor = converted(hp, correction, _float32)
        # The options a step uses: a kernel leaves any other buffer untouched.
        used = (True, bool(hp.momentum), hp.centered)
        for i, ((p, _, buffers), g) in enumerate(zip(self._members, grads, strict=True)):
            if not p.size:
                continue
            step = int(self._counters[i]) + 1
            begin = _random.start(self._seed, step, self._streams[i])
            views = [p.reshape(-1), g.reshape(-1)]
            views += [b.reshape(-1) if b is not None and on else None
                      for b, on in zip(buffers, used, strict=True)]  # fmt: skip
            scales = None if self._scales is None else self._scales[i]
            for first in range(0, p.size, SLICE):
                self._slice(views, scales, first, begin, options, factor)

    def _slice(
        self,
        views: list[NDArray | None],
        scales: Sequence[Any] | None,
        first: int,
        begin: int,
        options: Any,
        correction: Any,
    ) -> None:
        """Elements ``first`` to ``first + SLICE`` of a member (whole blocks, but for the
        array's last)."""
        work, block = self._work, _blockwise.BLOCK
        p, g, *buffers = (None if a is None else a[first : first + SLICE] for a in views)
        assert p is not None and g is not None
        blocks = slice(first // block, -(-(first + p.size) // block))
        values: list[NDArray | None] = []
        for k, b in enumerate(buffers):
            if b is None:
                values.append(None)
            elif scales is not None:  # decoded in the work dtype, as the kernel decodes
                factor = np.repeat(scales[k][blocks].astype(work), block)[: b.size]
                values.append(_blockwise.table(_CODES[k])[b].astype(work) * factor)
            else:
                values.append(b.astype(work))
        with np.errstate(all="ignore"):  # IEEE 754 results (inf, NaN), never warnings
            new_p, new = family_update(
                p.astype(work), g.astype(work), State(*values), options, np.sqrt,
                _clamp_at_zero, correction,
            )  # fmt: skip
        j = np.arange(first, first + p.size, dtype=np.uint64)
        bits = _random.draw(begin, j) if scales is None else None
        written: list[tuple[NDArray, NDArray]] = []  # (where, what), all computed first
        for k, (b, value) in enumerate(zip(buffers, new, strict=True)):
            if b is None:
                continue
            if scales is not None:
                codes, block_scales = _blockwise.encode(value, _CODES[k], _random.weyl(begin, j, k))
                written += [(b, codes), (scales[k][blocks], block_scales)]
            else:
                float32_bits = np.asarray(value).astype(np.float32).view(np.uint32)
                random = _random.word(bits, k).astype(np.int64)
                half = _random.round_bfloat16(float32_bits.astype(np.int64), random, np.where)
                written.append((b.view(np.uint16), half.astype(np.uint16)))
        written.append((p, new_p))
        write_all(written, _copy)


def _float32(value: float) -> NDArray:
    """A float32 scalar that NumPy 1.x keeps float32 beside Python numbers (a 0-d array
    or NumPy scalar would widen ``1 - beta`` to float64 there): one element."""
    return np.full(1, value, dtype=np.float32)


def _copy(target: NDArray, value: NDArray) -> None:
    np.copyto(target, value, casting="unsafe")  # rounded to the target's dtype


def _clamp_at_zero(x: NDArray) -> NDArray:
    return np.maximum(x, 0.0)  # NaN stays NaN
