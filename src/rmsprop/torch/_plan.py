"""Kept launches: a param group's step on fused kernels, reused while nothing changed.

A group whose every parameter with a gradient goes to one fused kernel (and whose
step needs no per-parameter host values: no bias correction, not PyTorch's
differentiable or capturable functional) gets a :class:`Plan`: its launches,
built once, one per (device, dtypes). A later step reuses it, skipping the
per-parameter classification, when the group is the same dict with the same
parameters having gradients and options of the same kind, and every parameter is
still the tensor it was (address, shape, dtype), its state buffers the same
tensors, and its gradient of its dtype and layout; anything else takes the general
path, which builds a new plan. Only the gradients' addresses may change.
"""

from typing import Any, cast

import torch

from rmsprop._options import Hyperparameters
from rmsprop.torch._backends import Backend, KernelUnavailableError, Launched, device_kind
from rmsprop.torch._compat import STATE_KEYS
from rmsprop.torch._foreach import PLAIN, count


def plannable(group: dict[str, Any], hp: Hyperparameters) -> bool:
    """Whether a group's step may be kept as a plan: not with per-parameter step
    counts read on the host (bias correction), nor when PyTorch's functional steps
    it for autograd or CUDA graphs."""
    return not (
        hp.bias_correction or group.get("differentiable", False) or group.get("capturable", False)
    )


class Plan:
    """The launches of one group's step (see the module's docstring)."""

    __slots__ = ("backend", "entries", "group", "launches", "options", "params")

    def __init__(
        self,
        backend: Backend,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hp: Hyperparameters,
        entries: list[tuple[Any, ...]],
        launches: list[tuple[Launched, list[int] | None, list[torch.Tensor]]],
    ) -> None:
        self.backend, self.group, self.params = backend, group, params
        self.entries, self.launches = entries, launches
        self.options = _options(group, hp)

    @classmethod
    def build(
        cls,
        backend: Backend,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hp: Hyperparameters,
        states: list[dict[str, Any]],
    ) -> "Plan | None":
        """The plan of a group whose every parameter ``backend`` takes, or None."""
        kind = device_kind(params[0])
        entries = []
        members: dict[tuple[Any, ...], list[int]] = {}
        for i, (p, state) in enumerate(zip(params, states, strict=True)):
            g = cast(torch.Tensor, p.grad)
            buffers = [state.get(key) for key in STATE_KEYS]
            if (
                type(p) not in PLAIN
                or p.is_complex()
                or device_kind(p) != kind
                or not backend.takes(p, g, buffers, hp)
            ):
                return None
            stride = None if p.is_contiguous() else p.stride()
            entries.append((p.data_ptr(), p.shape, p.dtype, g.dtype, stride, *buffers))
            key = (p.device, p.dtype, g.dtype, cast(torch.Tensor, buffers[0]).dtype)
            members.setdefault(key, []).append(i)
        launches = []
        for indices in members.values():
            launch = backend.launch(
                [(params[i], params[i].grad, [*entries[i][5:]]) for i in indices],
                hp,
                group["float32_arithmetic"],
            )
            steps = [states[i]["step"] for i in indices]
            launches.append((launch, None if len(indices) == len(params) else indices, steps))
        return cls(backend, group, params, hp, entries, launches)

    def gradients(
        self, group: dict[str, Any], params: list[torch.Tensor], hp: Hyperparameters, states: Any
    ) -> list[torch.Tensor] | None:
        """The gradients of ``params`` if this plan still holds for them, else None."""
        if group is not self.group or len(params) != len(self.params):
            return None
        if self.options != _options(group, hp) or not self.backend.available():
            return None
        grads = []
        for p, q, (address, shape, dtype, grad_dtype, stride, v, b, a) in zip(
            params, self.params, self.entries, strict=True
        ):
            g = cast(torch.Tensor, p.grad)
            state = states[p]
            if (
                p is not q
                or p.data_ptr() != address
                or p.dtype != dtype
                or p.shape != shape
                or type(g) not in PLAIN
                or g.dtype != grad_dtype
                or not (
                    p.is_contiguous() and g.is_contiguous()
                    if stride is None
                    else p.stride() == stride and g.stride() == stride
                )
                or state.get("square_avg") is not v
                or state.get("momentum_buffer") is not b
                or state.get("grad_avg") is not a
            ):
                return None
            grads.append(g)
        return grads

    def run(self, grads: list[torch.Tensor], hp: Hyperparameters) -> list[int]:
        """The step: each launch, then its parameters' counters. Returns the indices of
        the parameters left to the fallback (a kernel that turned itself off)."""
        left: list[int] = []
        for launch, indices, steps in self.launches:
            try:
                launch(grads if indices is None else [grads[i] for i in indices], hp)
            except KernelUnavailableError:
                left += range(len(grads)) if indices is None else indices
                continue
            count(steps)
        return left


def _options(group: dict[str, Any], hp: Hyperparameters) -> tuple[Any, ...]:
    """What a plan's kernels were chosen and compiled for, beyond its tensors (torch's
    order also compiles in which of lerp_'s formulas ``beta`` selects)."""
    return (hp.switches, abs(1.0 - hp.beta) < 0.5, group["float32_arithmetic"], group["rounding"])
