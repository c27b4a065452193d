"""The fused kernels as the torch optimizers see them: one interface, one table.

Every kernel has the same ``Launch(members, hp, *, float32_arithmetic)``, called with
the gradients, the options and the bias correction of a step
(:class:`rmsprop._kinds.Member` for what a member is). :func:`backend` picks one from
the table below by the device of the tensors and the ``rounding`` of the group:

=================  =====================================  ====================================
device             ``rounding="once"`` (family rule)      ``rounding="pytorch"`` (torch's order)
=================  =====================================  ====================================
CPU                :mod:`rmsprop._kernels` (Numba)        :mod:`rmsprop._torch_kernel` (Numba)
CUDA               :mod:`rmsprop._triton`                 :mod:`rmsprop._triton`, torch's order
=================  =====================================  ====================================

Low-bit state (``state_bits`` 16 and 8), which only the family's kernels write, is
written by :data:`LOWBIT_OPERATIONS` where they do not run (other devices, no Numba
or Triton, a Triton kernel turned off): the same step in torch operations.

The family kernels store float32, float64, bfloat16 and float16; torch's order stores
float32 and float64, one dtype for parameter, gradient and state, and serves an
option combination only where its first-use check found it reproduces this
process's torch (:mod:`rmsprop._torch_probe`). The Triton kernel can fail to compile
or launch on a machine: then it is turned off for the process with one warning
(:exc:`KernelUnavailableError`), and the fallback takes over.
"""

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import torch

from rmsprop import _accel, _dispatch
from rmsprop._kinds import Member
from rmsprop._options import Hyperparameters
from rmsprop.torch import _lowbit_ops
from rmsprop.torch._foreach import PLAIN

#: The storage dtypes of the family kernels.
FAMILY_DTYPES: Final = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
#: The storage dtypes of torch's order (parameters, gradients and state alike).
TORCH_ORDER_DTYPES: Final = (torch.float32, torch.float64)


class Launched(Protocol):
    """A kept launch: called with the gradients, the options and the bias correction."""

    def __call__(
        self, grads: Sequence[torch.Tensor], hp: Hyperparameters, correction: float = 1.0, /
    ) -> None: ...


class KernelUnavailableError(Exception):
    """A kernel failed before writing anything and is off for the process: fall back."""


def device_kind(p: torch.Tensor) -> str:
    """``p``'s device type, as the table reads it."""
    return "cuda" if p.is_cuda else p.device.type


@dataclass(frozen=True)
class Backend:
    """A row of the table: a kernel's ``Launch``, what it stores, where it applies."""

    name: str
    make: Callable[..., Launched]
    #: The device types it runs on; () for every one.
    device_types: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    #: torch's order: parameter, gradient and state of one dtype.
    one_dtype: bool = False
    #: The first-use check of torch's order: (options, dtype, device) -> bool.
    reproduces: Callable[[Hyperparameters, torch.dtype, torch.device], bool] | None = None
    #: Triton: a failure turns the kernel off (KernelUnavailableError) instead of raising.
    fallible: bool = False
    #: The family's kernels: low-bit state (8-bit codes, stochastic rounding) too.
    codes: bool = False

    def takes(
        self, p: torch.Tensor, g: torch.Tensor, buffers: Sequence[Any], hp: Hyperparameters
    ) -> bool:
        """Whether this kernel updates ``p`` (see :func:`kernel_can_update`)."""
        return (
            (not self.device_types or device_kind(p) in self.device_types)
            and kernel_can_update(
                (p.dtype,) if self.one_dtype else self.dtypes, p, g, buffers, self.codes
            )
            and (self.reproduces is None or self.reproduces(hp, p.dtype, p.device))
        )

    def available(self) -> bool:
        """False once a fallible kernel has been turned off."""
        return not self.fallible or _accel.triton() is not None

    def launch(
        self,
        members: Sequence[Member],
        hp: Hyperparameters,
        float32_arithmetic: bool,
        **low: Any,
    ) -> Launched:
        """A launch over ``members``; a fallible kernel's failures (now or when called)
        turn it off and raise :exc:`KernelUnavailableError` before any write.
        ``low``: ``stochastic`` (the random streams), ``scales`` (8-bit blockwise codes),
        ``round_params`` and ``round_state``, for the family's kernels only (see
        :class:`rmsprop._kernels.Launch`)."""
        options: dict[str, Any] = {"float32_arithmetic": float32_arithmetic}
        if low:
            if not self.codes:
                raise RuntimeError(f"low-bit state runs on the family's kernels, not {self.name}")
            options |= low
        if not self.fallible:
            return self.make(members, hp, **options)
        try:
            launched = self.make(members, hp, **options)
        except Exception as error:
            off = _turned_off(error)
            if low:  # low-bit state, which only a kernel or the operations write
                return LOWBIT_OPERATIONS.launch(members, hp, float32_arithmetic, **low)
            raise off from error

        def run(
            grads: Sequence[torch.Tensor], hp: Hyperparameters, correction: float = 1.0
        ) -> None:
            try:
                launched(grads, hp, correction)
            except Exception as error:
                off = _turned_off(error)
                if not low:
                    raise off from error
                again = LOWBIT_OPERATIONS.launch(members, hp, float32_arithmetic, **low)
                again(grads, hp, correction)

        return run


def _turned_off(error: Exception) -> KernelUnavailableError:
    _accel.disable_triton(f"{type(error).__name__}: {error}")  # refused before any write
    return KernelUnavailableError(str(error))


def _triton(order: str, elements: int) -> Backend | None:
    module = _accel.triton()
    if module is None:
        return None
    gpu = _dispatch.GPU_DEVICE_TYPES
    if order == "once":
        return Backend("triton", module.Launch, gpu, FAMILY_DTYPES, fallible=True, codes=True)
    launch = functools.partial(module.Launch, order=module.TORCH)
    return Backend(
        "triton, torch's order", launch, gpu, TORCH_ORDER_DTYPES, one_dtype=True,
        reproduces=module.matches_torch, fallible=True,
    )  # fmt: skip


def _numba(order: str, elements: int) -> Backend | None:
    kernels = _accel.kernels(elements)
    if kernels is None:
        return None
    if order == "once":
        return Backend("numba", kernels.Launch, ("cpu",), FAMILY_DTYPES, codes=True)
    from rmsprop import _torch_kernel  # noqa: PLC0415 - imports Numba

    if _torch_kernel.VML_SQRT is None:  # a torch without MKL's square root
        return None
    return Backend(
        "numba, torch's order", _torch_kernel.Launch, ("cpu",), TORCH_ORDER_DTYPES,
        one_dtype=True, reproduces=_torch_kernel.matches,
    )  # fmt: skip


#: Low-bit state where no kernel runs (every device): rmsprop.torch._lowbit_ops, the
#: kernels' step in tensor operations.
LOWBIT_OPERATIONS: Final = Backend(
    "torch operations", _lowbit_ops.Launch, (), FAMILY_DTYPES, codes=True
)

#: (device, rounding) -> the backend, where it loads; "gpu" is _dispatch.GPU_DEVICE_TYPES.
TABLE: Final[dict[tuple[str, str], Callable[[int], Backend | None]]] = {
    ("cpu", "once"): functools.partial(_numba, "once"),
    ("cpu", "pytorch"): functools.partial(_numba, "pytorch"),
    ("gpu", "once"): functools.partial(_triton, "once"),
    ("gpu", "pytorch"): functools.partial(_triton, "pytorch"),
}


def backend(kind: str, rounding: str, elements: int) -> Backend | None:
    """The fused kernel for tensors on a device of type ``kind`` with this ``rounding``,
    or None (the fallback); ``elements`` in the whole group decide whether loading
    Numba is worth it (see rmsprop._accel)."""
    row = "gpu" if kind in _dispatch.GPU_DEVICE_TYPES else kind
    load = TABLE.get((row, rounding))
    return None if load is None else load(elements)


def kernel_can_update(
    dtypes: tuple[torch.dtype, ...],
    p: torch.Tensor,
    g: torch.Tensor,
    buffers: Sequence[Any],
    codes: bool = False,
) -> bool:
    """Whether a fused kernel applies: plain dense tensors of one device and layout.

    The parameter and the gradient each have one of ``dtypes``, the state buffers
    share one (or are 8-bit codes, where the kernel takes ``codes``: their scales
    are checked with the state); all have the parameter's shape and are
    contiguous, or dense with the same strides (so that element i of each one's
    memory is the same element). The kernel trusts these sizes: this check keeps
    it in bounds.
    """
    v, b, a = buffers
    coded = codes and v is not None and v.dtype == torch.uint8
    if v is None or p.dtype not in dtypes or g.dtype not in dtypes:
        return False
    if v.dtype not in dtypes and not coded:
        return False
    # torch keeps a gradient of its parameter's shape and device; the state is checked.
    shape, device, state_dtype = p.shape, p.device, v.dtype
    contiguous = p.is_contiguous() and g.is_contiguous()
    for t in (v, b, a):
        if t is None:
            continue
        if type(t) not in PLAIN or t.shape != shape or t.device != device:
            return False
        if t.dtype != state_dtype:
            return False
        contiguous = contiguous and t.is_contiguous()
    if contiguous:
        return type(g) in PLAIN and g.shape == shape
    stride = p.stride()
    return (
        type(g) in PLAIN
        and g.shape == shape
        and _dispatch.dense(p.shape, stride)
        and all(t is None or t.stride() == stride for t in (g, *buffers))
    )
