"""``step_in_backward=True``: each parameter stepped inside ``backward()``, its gradient freed.

A post-accumulate-grad hook on every parameter runs that parameter's step (the
general route of :mod:`rmsprop.torch._group`, the same numbers as a group step)
as soon as autograd has accumulated its gradient, then drops the gradient, so
that a backward pass never holds more than a few gradients at once. The hooks
reach the optimizer through a weak reference: an optimizer that is dropped stops
stepping, and a parameter never keeps one alive.
"""

import weakref
from collections.abc import Iterable
from typing import Any

import torch

#: Why a second gradient of a parameter before ``step()`` is refused.
SECOND_BACKWARD = (
    "rmsprop.torch: step_in_backward=True already stepped this parameter in this "
    "iteration and freed its gradient; a second backward before step() would step it "
    "again with a partial gradient (gradient accumulation over micro-batches is not "
    "possible in this mode: step normally, without step_in_backward)"
)
DISTRIBUTED = (
    "rmsprop.torch: step_in_backward=True steps a parameter with its local gradient, "
    "before DistributedDataParallel or FSDP average it across processes: with more "
    "than one process, step normally"
)


def check_parameters(params: Iterable[torch.Tensor]) -> None:
    """Refuse what the hooks cannot step correctly (before anything is registered)."""
    if any(type(p).__name__ == "DTensor" for p in params):
        raise ValueError(DISTRIBUTED)
    _check_world()


def _check_world() -> None:
    distributed = torch.distributed
    initialized = distributed.is_available() and distributed.is_initialized()
    if initialized and distributed.get_world_size() > 1:
        raise RuntimeError(DISTRIBUTED)


class Hooks:
    """The hooks of one optimizer, and the parameters stepped since its last ``step()``."""

    def __init__(self, optimizer: Any) -> None:
        self._optimizer = weakref.ref(optimizer)
        self._handles: list[Any] = []
        self.stepped: set[int] = set()

    def register(self, params: Iterable[torch.Tensor]) -> None:
        params = list(params)
        check_parameters(params)
        for p in params:
            if p.requires_grad:  # the others never get a gradient
                hook = p.register_post_accumulate_grad_hook(self._step)  # type: ignore[no-untyped-call]
                self._handles.append(hook)

    def remove(self) -> None:
        """Unregister every hook (a copy or a replaced optimizer registers its own)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _step(self, p: torch.Tensor) -> None:
        optimizer = self._optimizer()
        if optimizer is None or p.grad is None:
            return
        if id(p) in self.stepped:
            p.grad = None  # refused whole: step() must not write this partial gradient
            raise RuntimeError(SECOND_BACKWARD)
        _check_world()
        optimizer.step_parameter(p)
        p.grad = None
        self.stepped.add(id(p))
