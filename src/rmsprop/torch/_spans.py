"""Spans: one launch over a stretch of each flat buffer instead of member by member.

The buffers this package lays out (:func:`rmsprop.torch.flatten_`'s parameter and
gradient buffers, the state's arenas in :mod:`rmsprop.torch._state`) are registered
here with their slots: where each view starts, and its size. Where a launch's
members fill consecutive slots of one registered buffer in every role (parameters,
gradients, each state buffer), at the same element offsets from one another in each,
the launch can run over one stretch of each buffer, the padding between slots (less
than a cache line each) included: a few long chunks where each member made its own,
and one gradient address to pass instead of one per member. On the CPU here it
measured no faster than the launch member by member (ResNet-50's 161 tensors, 106 of
them normalization vectors: 0.89 and 0.90 of the roofline, ``bench_flat.py``); on a
GPU each short tensor costs a program block of its own (``gpu_check.py`` times both).

Why the padding may be stepped: no tensor is a view of it (the slots are all the
buffer's views that this package made, and none of them covers it), it is zero in
every buffer when created, and the rule maps a zero parameter, gradient and state to
zero (weight decay, momentum and centering of zeros are zeros) as long as ``eps`` is
positive: with ``eps=0`` the padding would compute 0/0, so spans need ``eps > 0``.
Only the step of kernels without random bits runs over spans: stochastic rounding
draws each element's bits from its place in its own tensor.

A buffer is known by its storage, held weakly: the entry goes when the storage is
freed, so a new buffer at the same address is never taken for an old one.
"""

import weakref
from collections.abc import Sequence
from typing import Any

import torch

from rmsprop._kinds import Member

#: id(storage) -> (a weak reference to it, its dtype, its slots: element offset -> (index
#: among the non-empty slots, size)).
_ARENAS: dict[int, tuple["weakref.ref[Any]", torch.dtype, dict[int, tuple[int, int]]]] = {}


def register(buffer: torch.Tensor, offsets: Sequence[int], sizes: Sequence[int]) -> None:
    """Record the views of ``buffer`` (a flat buffer this package made, every view of
    which starts at one of ``offsets`` with as many elements as ``sizes`` says)."""
    storage = buffer.untyped_storage()
    key = id(storage)
    start = int(buffer.storage_offset())
    slots: dict[int, tuple[int, int]] = {}
    for offset, size in zip(offsets, sizes, strict=True):
        if size:
            slots[start + offset] = (len(slots), size)

    def forget(ref: "weakref.ref[Any]", key: int = key) -> None:
        if _ARENAS.get(key, (None,))[0] is ref:
            del _ARENAS[key]

    _ARENAS[key] = (weakref.ref(storage, forget), buffer.dtype, slots)


def _slot(t: torch.Tensor) -> tuple[int, int, int] | None:
    """(the buffer's id, slot index, element offset) of ``t`` if it is exactly a slot of a
    registered buffer (its dtype, its start, its size), else None."""
    storage = t.untyped_storage()
    entry = _ARENAS.get(id(storage))
    if entry is None or entry[0]() is not storage or entry[1] != t.dtype:
        return None
    offset = int(t.storage_offset())
    found = entry[2].get(offset)
    if found is None or found[1] != t.numel():
        return None
    return id(storage), found[0], offset


def _role(member: Member, role: int) -> Any:
    """A member's parameter (0), gradient (1) or state buffer (2 to 4: cache, momentum
    buffer, gradient average)."""
    return member[role] if role < 2 else member[2][role - 2]


def span(members: Sequence[Member], eps: float) -> Member | None:
    """One member covering ``members`` (dense, each laid out alike in every role, as a
    kernel takes them), padding included, where they fill consecutive slots of one
    registered buffer in every role at the same relative offsets; else None."""
    kept = [m for m in members if m[0].numel()]
    if not kept or not eps > 0.0:
        return None
    order: list[int] = []  # the members by their parameters' offsets
    reference: list[int] = []  # the parameters' offsets from the first, in that order
    views: list[torch.Tensor | None] = []
    for role in range(5):
        tensors = [_role(m, role) for m in kept]
        if all(t is None for t in tensors):
            views.append(None)
            continue
        if any(t is None for t in tensors):
            return None
        slots = [_slot(t) for t in tensors]
        found = [s for s in slots if s is not None]
        if len(found) != len(kept) or len({s[0] for s in found}) != 1:
            return None
        if not order:
            order = sorted(range(len(kept)), key=lambda i: found[i][2])
        index, offset = found[order[0]][1], found[order[0]][2]
        if [found[i][1] - index for i in order] != list(range(len(kept))):
            return None  # a slot between members belongs to another tensor
        relative = [found[i][2] - offset for i in order]
        if not reference:  # the parameters: every other role must match them
            reference = relative
            length = relative[-1] + kept[order[-1]][0].numel()
        elif relative != reference:
            return None
        views.append(tensors[0].as_strided((length,), (1,), offset))
    p, g, v, b, a = views
    if p is None or g is None:
        return None
    return p, g, [v, b, a]
