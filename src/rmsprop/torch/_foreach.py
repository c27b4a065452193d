"""The bounded fallback: the rule on lists of tensors with ``torch._foreach_*`` operations.

Tensors that no fused kernel takes (views with gaps, other devices, DTensors that
cannot be updated shard by shard, no Numba or Triton) are widened slice by slice to
the work dtype, stepped by :func:`rmsprop._rule.family_update` itself on whole lists
of tensors (:class:`TensorList`), and rounded once back into place. What is widened
at a time stays bounded (:data:`FOREACH_BATCH`).
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final, cast

import numpy as np
import torch

from rmsprop._kinds import Member
from rmsprop._options import Hyperparameters, work_values
from rmsprop._rule import State, family_update
from rmsprop._slices import slices

#: The tensor types updated as plain tensors (DTensors and other subclasses are not).
PLAIN: Final = (torch.Tensor, torch.nn.Parameter)


def count(steps: list[torch.Tensor]) -> None:
    """Advance step counters: one call for them all (per device, as foreach wants)."""
    if not steps:
        return
    first = steps[0].device
    if all(step.device == first for step in steps):
        torch._foreach_add_(steps, 1.0)
        return
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for step in steps:
        by_device.setdefault(step.device, []).append(step)
    for same in by_device.values():
        torch._foreach_add_(same, 1.0)


#: Elements per batch of the foreach path, by device type (others: FOREACH_BATCH_OTHER).
#: Its float64 temporaries peak at 104 bytes per batch element (measured, momentum and
#: centered): 6.5 MiB on the CPU, 26 MiB elsewhere.
FOREACH_BATCH: Final = {"cpu": 1 << 16}
FOREACH_BATCH_OTHER: Final = 1 << 18


def foreach_update(
    members: list[Member], hp: Hyperparameters, work: torch.dtype, correction: float
) -> None:
    """The rule on lists of tensors of one device and dtype, with ``torch._foreach_*``.

    The tensors are cut into aligned slices and the slices gathered into batches
    of at most :data:`FOREACH_BATCH` elements, so that the temporaries of the
    wide arithmetic never exceed a batch (plain tensors; others go whole).
    """
    limit = FOREACH_BATCH.get(members[0][0].device.type, FOREACH_BATCH_OTHER)
    batch: list[list[torch.Tensor | None]] = []
    size = 0
    for p, g, buffers in members:
        tensors = [p, g, *buffers]
        if all(t is None or type(t) in PLAIN for t in tensors):
            # Detached: views of the parameters, outside autograd (torch.compile traces this).
            plain = [None if t is None else t.detach() for t in tensors]
            pieces: Iterable[Sequence[torch.Tensor | None]] = slices(plain, limit)
        else:  # DTensors that cannot be cut: whole
            pieces = [tensors]
        for piece in pieces:
            n = cast(torch.Tensor, piece[0]).numel()
            if batch and size + n > limit:
                _batch(batch, hp, work, correction)
                batch, size = [], 0
            batch.append(list(piece))
            size += n
    if batch:
        _batch(batch, hp, work, correction)


def _batch(
    batch: list[list[torch.Tensor | None]],
    hp: Hyperparameters,
    work: torch.dtype,
    correction: float,
) -> None:
    params: list[torch.Tensor] = [piece[0] for piece in batch]  # type: ignore[misc]
    columns = list(zip(*(piece[2:] for piece in batch), strict=True))
    values = work_values(hp, work == torch.float32)  # float32: the derived values too
    new_p, new_state = family_update(
        TensorList([p.to(work) for p in params]),
        TensorList([piece[1].to(work) for piece in batch]),  # type: ignore[union-attr]
        State(*(None if c[0] is None else TensorList([b.to(work) for b in c]) for c in columns)),
        values,
        TensorList.sqrt,
        TensorList.clamp_at_zero,
        correction,
    )
    _copy(params, new_p.tensors)
    for column, value in zip(columns, new_state, strict=True):
        if column[0] is not None:
            _copy(list(column), value.tensors)


def _copy(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """``targets[i].copy_(values[i])``: one foreach call where the tensors allow it.

    DTensor has no sharding rule for ``_foreach_copy_``; its tensors copy one by one.
    """
    if all(type(t) in PLAIN for t in targets):
        torch._foreach_copy_(targets, values)
    else:
        for target, value in zip(targets, values, strict=True):
            target.copy_(value)


def exact_sqrt(t: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square roots of a tensor.

    PyTorch's CPU ``sqrt`` (vectorized, Sleef) is up to 1 ulp off on about 0.7% of
    values, in float64 and float32 alike (measured here with AVX-512); plain CPU
    tensors take NumPy's, which is IEEE 754's. CUDA's is correctly rounded.
    """
    if type(t) not in PLAIN or t.device.type != "cpu":
        return torch.sqrt(t)
    with np.errstate(invalid="ignore"):  # sqrt(negative) is NaN, as in torch
        # asarray: NumPy gives 0-d arrays' roots as scalars
        return torch.from_numpy(np.asarray(np.sqrt(t.detach().numpy())))


class TensorList:
    """Tensors that do arithmetic together through ``torch._foreach_*``.

    Just the operations :func:`rmsprop._rule.family_update` uses, so that the rule
    runs unchanged on whole lists of tensors.
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.tensors = list(tensors)

    @staticmethod
    def _operand(other: "TensorList | float") -> Any:
        return other.tensors if isinstance(other, TensorList) else other

    def __add__(self, other: "TensorList | float") -> "TensorList":
        return TensorList(torch._foreach_add(self.tensors, self._operand(other)))

    __radd__ = __add__

    def __sub__(self, other: "TensorList | float") -> "TensorList":
        return TensorList(torch._foreach_sub(self.tensors, self._operand(other)))

    def __rsub__(self, other: float) -> "TensorList":
        return TensorList(torch._foreach_add(torch._foreach_neg(self.tensors), other))

    def __mul__(self, other: "TensorList | float") -> "TensorList":
        return TensorList(torch._foreach_mul(self.tensors, self._operand(other)))

    __rmul__ = __mul__

    def __truediv__(self, other: "TensorList | float") -> "TensorList":
        return TensorList(torch._foreach_div(self.tensors, self._operand(other)))

    def __rtruediv__(self, other: float) -> "TensorList":
        return TensorList(torch._foreach_mul(torch._foreach_reciprocal(self.tensors), other))

    def __neg__(self) -> "TensorList":
        return TensorList(torch._foreach_neg(self.tensors))

    def sqrt(self) -> "TensorList":
        """Correctly rounded square roots (see :func:`exact_sqrt`)."""
        if all(type(t) in PLAIN and t.device.type == "cpu" for t in self.tensors):
            return TensorList([exact_sqrt(t) for t in self.tensors])
        return TensorList(torch._foreach_sqrt(self.tensors))

    def clamp_at_zero(self) -> "TensorList":
        return TensorList(torch._foreach_clamp_min(self.tensors, 0.0))
