"""What wraps the torch optimizers' ``step``: torch's profiler range and step hooks, no
grad, and opacity to torch.compile, each at the least host cost.

The cost matters most right after a big step: a launch that streams hundreds of MB
evicts the caches, and the next step's host work then runs from memory. Measured
here (2-core EPYC, torch 2.13), warm and right after a 500 MB step:
``torch.autograd.profiler.record_function`` 14 and 200 µs, torch's lean record
function 1 and 28; ``torch.no_grad()`` as a decorator 4 and 75 µs, two switches of
the grad mode 0.6 and 18.
"""

import functools
import sys
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import torch
from torch.optim import Optimizer

Function = TypeVar("Function", bound=Callable[..., Any])

#: The module of torch.optim.Optimizer, which keeps the hooks of every optimizer.
_TORCH_OPTIMIZER: Final = sys.modules[Optimizer.__module__]
#: torch's lean profiler range (the one compiled code opens), where this torch has it.
_FAST_RANGE: Any = getattr(getattr(torch._C, "_profiler", None), "_RecordFunctionFast", None)
_COMPILING: Any = getattr(torch.compiler, "is_compiling", None)


def opaque_to_dynamo(function: Function) -> Function:
    """``torch.compiler.disable``, typed: torch.compile runs ``function`` as eager code.

    Dynamo cannot trace Numba's dispatcher nor Triton launches made from Python, and
    the kernels are the step's fast path: a compiled step runs them as eager code
    does (see the docs).
    """
    return cast(Function, torch.compiler.disable(function))  # type: ignore[no-untyped-call]


def without_grad(function: Function) -> Function:
    """``torch.no_grad()`` as a decorator, as two switches of the grad mode (restored
    however ``function`` ends)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        enabled = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)
        try:
            return function(*args, **kwargs)
        finally:
            torch._C._set_grad_enabled(enabled)

    return cast(Function, call)


def profiled(step: Callable[..., Any], hooked: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` in a profiler range named ``Optimizer.step#<class>.step``, as torch names
    it, opened by torch's lean record function; ``hooked`` (torch's own wrapper of
    ``step``: its range and the step hooks) wherever a step hook is registered, under
    torch.compile, or in a torch without the lean range."""
    fast, compiling = _FAST_RANGE, _COMPILING
    if fast is None or compiling is None:
        return hooked

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        if _step_hooks(self) or compiling():
            return hooked(self, *args, **kwargs)
        with fast(f"Optimizer.step#{self.__class__.__name__}.step"):
            out = step(self, *args, **kwargs)
            self._optimizer_step_code()
            return out

    return wrapper


def _step_hooks(optimizer: Optimizer) -> bool:
    """Whether a step hook is registered, on ``optimizer`` or for every optimizer (or
    this torch keeps them where they are not looked for)."""
    module = _TORCH_OPTIMIZER
    return bool(
        getattr(optimizer, "_optimizer_step_pre_hooks", True)
        or getattr(optimizer, "_optimizer_step_post_hooks", True)
        or getattr(module, "_global_optimizer_pre_hooks", True)
        or getattr(module, "_global_optimizer_post_hooks", True)
    )
