"""``flatten_``: a model's parameters and gradients as views of flat buffers.

Large-scale trainers keep parameters, gradients and optimizer state as views of one
buffer per (device, dtype) (FSDP's flat parameters, DeepSpeed's and Megatron's
contiguous gradient buffers): one allocation, addresses that never change, memory
that neighbours share. :func:`flatten_` does this to any module or list of
parameters, in place: each parameter keeps its identity, values, shape, strides
(dense ones; others become contiguous) and ``requires_grad``, and its memory
becomes a view of a flat buffer; each parameter that requires a gradient gets one,
a view of a matching flat gradient buffer (its gradient's values, or zeros), into
which autograd accumulates in place. :func:`unflatten_` gives each parameter and
gradient memory of its own again.

What moves a gradient out of its buffer: setting it to None (``model.zero_grad()``,
``zero_grad(set_to_none=True)`` of other optimizers): the next backward then
allocates a gradient elsewhere, as without flatten_. The rmsprop.torch optimizers'
``zero_grad`` zeroes such gradients in place instead (see :func:`zero_kept`).
"""

import weakref
from collections.abc import Iterable
from typing import Any

import torch

from rmsprop._flat import layout
from rmsprop.torch import _spans
from rmsprop.torch._compat import strides
from rmsprop.torch._foreach import PLAIN

#: The flat gradient buffers made by flatten_, by id (a gradient is flat if its base is
#: one of these, which its views keep alive; a WeakSet would compare tensors with ==).
_GRADIENT_BUFFERS: "weakref.WeakValueDictionary[int, torch.Tensor]" = weakref.WeakValueDictionary()


def flatten_(
    params: torch.nn.Module | torch.optim.Optimizer | Iterable[torch.Tensor],
) -> list[torch.Tensor]:
    """Re-home parameters as views of one flat buffer per (device, dtype), and their
    gradients as views of a matching flat gradient buffer; returns the parameter
    buffers. Given an optimizer, each of its param groups gets buffers of its own.

    Every parameter that requires a gradient has one afterwards (zeros where it had
    none), as after ``zero_grad(set_to_none=False)``. Parameters are checked before
    any changes: plain tensors (not DTensors: FSDP2 shards are flat already) of a
    floating or complex dtype, with dense gradients, no two sharing memory.

    Costs a copy of the parameters and gradients now, and none later; the old memory
    is freed where nothing else holds it. Call it before creating the optimizer, or
    before its first step (state created before keeps its own layout). With
    ``DistributedDataParallel``, flatten first and wrap after, and leave
    ``gradient_as_bucket_view`` off (it would re-home the gradients into DDP's
    buckets); FSDP flattens parameters itself. A param group whose parameters are
    neighbours in one buffer is stepped as one launch over a stretch of it
    (:mod:`rmsprop.torch._spans`): where groups alternate in the model, flatten each
    group's parameters with a call of its own, or pass the optimizer (before its first
    step). The buffers' padding is the optimizer's to write: make no tensors of the
    buffers returned.

    Example:
        >>> import torch, rmsprop.torch
        >>> net = torch.nn.Linear(3, 2)
        >>> (weights,) = rmsprop.torch.flatten_(net)
        >>> net.weight.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr()
        True
        >>> net.bias.grad
        tensor([0., 0.])
    """
    if isinstance(params, torch.optim.Optimizer):
        groups = [_unique(group["params"]) for group in params.param_groups]
        _check([p for group in groups for p in group])  # all of them before any moves
        return [buffer for group in groups for buffer in _rehome(group)]
    tensors = _unique(params.parameters() if isinstance(params, torch.nn.Module) else params)
    _check(tensors)
    return _rehome(tensors)


def _rehome(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """flatten_ of checked, distinct tensors: their buffers."""
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for p in tensors:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    flat = []
    with torch.no_grad():
        for (device, dtype), members in buckets.items():
            sizes = [p.numel() for p in members]
            offsets, total = layout(sizes, dtype.itemsize)
            values = torch.zeros(total, dtype=dtype, device=device)
            _spans.register(values, offsets, sizes)
            grads = None
            if any(p.requires_grad for p in members):
                grads = torch.zeros(total, dtype=dtype, device=device)
                _GRADIENT_BUFFERS[id(grads)] = grads
                _spans.register(grads, offsets, sizes)
            for p, offset in zip(members, offsets, strict=True):
                layout_of_p = strides(p)
                view = values.as_strided(p.shape, layout_of_p, offset)
                view.copy_(p)
                old_grad = p.grad
                p.data = view
                if grads is not None and p.requires_grad:
                    grad = grads.as_strided(p.shape, layout_of_p, offset)
                    if old_grad is not None:
                        grad.copy_(old_grad)
                    p.grad = grad
            flat.append(values)
    return flat


def unflatten_(params: torch.nn.Module | torch.optim.Optimizer | Iterable[torch.Tensor]) -> None:
    """Give each parameter that is a view of larger memory, and each gradient in a flat
    buffer, memory of its own again (a copy, laid out as before): undoes
    :func:`flatten_`."""
    if isinstance(params, torch.optim.Optimizer):
        params = [p for group in params.param_groups for p in group["params"]]
    tensors = _unique(params.parameters() if isinstance(params, torch.nn.Module) else params)
    with torch.no_grad():
        for p in tensors:
            grad = p.grad
            if p.untyped_storage().nbytes() > p.numel() * p.element_size():  # shared
                p.data = p.data.clone(memory_format=torch.preserve_format)
            if grad is not None and is_flat_gradient(grad):
                p.grad = grad.clone(memory_format=torch.preserve_format)


def is_flat_gradient(grad: torch.Tensor) -> bool:
    """Whether ``grad`` is a view of a gradient buffer of :func:`flatten_` (still: after
    ``grad.data = ...`` it keeps its base but not its memory)."""
    base = grad._base
    return (
        base is not None
        and _GRADIENT_BUFFERS.get(id(base)) is base
        and grad.dtype == base.dtype
        and grad.untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    )


def zero_kept(optimizer: torch.optim.Optimizer, set_to_none: bool) -> None:
    """``optimizer.zero_grad(set_to_none)``, except that gradients in a buffer of
    :func:`flatten_` are zeroed in place and stay there: setting them to None would
    free no memory (the buffer holds it), and the next backward would allocate them
    elsewhere. A parameter whose gradient is kept gets a zero gradient rather than
    None when a backward does not reach it, as with ``set_to_none=False``."""
    kept: list[tuple[Any, torch.Tensor]] = []
    if set_to_none and _GRADIENT_BUFFERS:  # nothing to look for where flatten_ made none
        for group in optimizer.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is not None and is_flat_gradient(grad):
                    kept.append((p, grad))
    torch.optim.Optimizer.zero_grad(optimizer, set_to_none)
    if not kept:
        return
    by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for _, grad in kept:
        by_kind.setdefault((grad.device, grad.dtype), []).append(grad)
    with torch.no_grad():
        for grads in by_kind.values():
            torch._foreach_zero_(grads)
    for p, grad in kept:
        p.grad = grad


def _unique(params: Iterable[Any]) -> list[Any]:
    seen: set[int] = set()
    unique = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


def _check(tensors: list[Any]) -> None:
    """Refuse what flatten_ cannot re-home, before anything changes."""
    for i, p in enumerate(tensors):
        if not isinstance(p, torch.Tensor) or type(p) not in PLAIN:
            raise TypeError(
                f"flatten_ takes plain tensors (parameters), got {type(p).__name__} at {i}"
            )
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(f"flatten_ takes floating or complex tensors, got {p.dtype} at {i}")
        if p.grad is not None and p.grad.layout != torch.strided:
            raise ValueError(f"the gradient of parameter {i} is sparse; flatten_ takes dense ones")
    spans = []
    for i, p in enumerate(tensors):
        if p.numel():
            start = p.data_ptr()
            end = start + p.element_size() * (
                1 + sum((n - 1) * s for n, s in zip(p.shape, p.stride(), strict=True))
            )
            spans.append((p.untyped_storage().data_ptr(), start, end, i))
    spans.sort()
    reach: tuple[int, int, int] = (0, 0, -1)  # storage, furthest end so far, its parameter
    for storage, start, end, j in spans:
        if storage == reach[0] and start < reach[1]:
            i = reach[2]
            raise ValueError(
                f"parameters {min(i, j)} and {max(i, j)} share memory: flatten_ would give "
                "each its own (tie them as one parameter instead)"
            )
        if storage != reach[0] or end > reach[1]:
            reach = (storage, end, j)
