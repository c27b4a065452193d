"""One param group's step, by the route its options choose.

Routes, one per group (:func:`run`): a kept :class:`~rmsprop.torch._plan.Plan`
where one holds; else every parameter the kernel of its device takes
(:mod:`rmsprop.torch._backends`) goes to it, one launch per (bias correction,
device, dtypes), and the rest to the fallback: the ``torch._foreach_*`` path for
the family rule (:mod:`rmsprop.torch._foreach`), PyTorch's own functional RMSprop
for ``rounding="pytorch"``; low-bit state that no kernel takes, to the kernels' step
in torch operations (:mod:`rmsprop.torch._lowbit_ops`). Each parameter's ``step``
counter advances right after it is written.
"""

import sys
from typing import Any, cast

import torch

from rmsprop._kinds import Member, dtype_name, float32_work
from rmsprop._options import Hyperparameters
from rmsprop.torch import _foreach, _lowbit
from rmsprop.torch._backends import (
    LOWBIT_OPERATIONS,
    Backend,
    KernelUnavailableError,
    backend,
    device_kind,
)
from rmsprop.torch._compat import STATE_KEYS, strides, torch_functional
from rmsprop.torch._dtensor import local
from rmsprop.torch._foreach import PLAIN, count
from rmsprop.torch._plan import Plan, plannable


def plan(
    group: dict[str, Any],
    params: list[torch.Tensor],
    hp: Hyperparameters,
    states: list[Any],
    streams: list[int],
) -> Plan | None:
    """A plan for the group, where its whole step can be one kept set of launches."""
    if not plannable(group, hp):
        return None
    chosen = backend(device_kind(params[0]), group["rounding"], _worth(group, params))
    if chosen is None:
        return None
    try:
        return Plan.build(chosen, group, params, hp, states, streams)
    except KernelUnavailableError:
        return None


def run_plan(
    kept: Plan,
    grads: list[torch.Tensor],
    hp: Hyperparameters,
    group: dict[str, Any],
    params: list[torch.Tensor],
    state: Any,
) -> None:
    """A kept plan's step; parameters whose kernel turned itself off take the fallback."""
    left = kept.run(grads, hp)
    if left:
        _fallback(hp, group, [params[i] for i in left], [state[params[i]] for i in left])


def run(
    hp: Hyperparameters,
    group: dict[str, Any],
    params: list[torch.Tensor],
    states: list[Any],
    streams: list[int],
) -> None:
    """The general route: each parameter to its device's kernel where it takes it, the
    rest to the fallback."""
    torch_rounding = group["rounding"] == "pytorch"
    kernels = not (group.get("differentiable", False) or group.get("capturable", False))
    elements = _worth(group, params)
    backends: dict[str, Backend | None] = {}
    fused: dict[tuple[Any, ...], tuple[Backend, list[Member], list[torch.Tensor], list[int]]] = {}
    rest: list[int] = []
    copies: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its dense copy)
    for i, (p, state) in enumerate(zip(params, states, strict=True)):
        member = _member(p, state, torch_rounding)
        kind = device_kind(member[0])
        if kind not in backends:
            backends[kind] = backend(kind, group["rounding"], elements) if kernels else None
        chosen = backends[kind]
        if chosen is None or type(member[0]) not in PLAIN or not chosen.takes(*member, hp):
            needs = _lowbit.needs_kernel(group, state, member[0])
            dense = _dense(chosen, member, hp) if needs else None
            if dense is None and needs and kernels:  # no kernel: the operations write it
                chosen = LOWBIT_OPERATIONS
                dense = member if chosen.takes(*member, hp) else _dense(chosen, member, hp)
            if chosen is None or dense is None:
                rest.append(i)
                continue
            if dense[0] is not member[0]:
                copies.append((member[0], dense[0]))
            member = dense
        q, g, buffers = member
        key = (_correction(hp, state), chosen.name, q.device, q.dtype, g.dtype, buffers[0].dtype)
        _, members, steps, indices = fused.setdefault(key, (chosen, [], [], []))
        members.append(member)
        steps.append(state["step"])
        indices.append(i)
    if any(_lowbit.needs_kernel(group, states[i], params[i]) for i in rest):
        what = f"state_bits={group['state_bits']}"
        if group["state_bits"] == 32:
            what = "stochastic_rounding"
        raise RuntimeError(
            f"{what} is written by the family's kernels or their step in torch "
            "operations, and neither takes some of these tensors (their kind or layout); "
            "nothing was updated"
        )
    try:
        for (correction, *_), (chosen, members, steps, indices) in fused.items():
            try:
                low = _lowbit.launch_options(
                    group, [m[0] for m in members], [states[i] for i in indices], steps,
                    [streams[i] for i in indices],
                )  # fmt: skip
                launch = chosen.launch(members, hp, group["float32_arithmetic"], **low)
                launch([g for _, g, _ in members], hp, correction)
            except KernelUnavailableError:
                rest += indices
                continue
            count(steps)
    finally:  # what was computed in dense copies is written back, even when interrupted
        for p, copy in copies:
            p.detach().copy_(copy)
    if rest:
        _fallback(hp, group, [params[i] for i in rest], [states[i] for i in rest])


def _dense(chosen: Backend | None, member: Member, hp: Hyperparameters) -> Member | None:
    """A parameter whose state only the kernels write (state_bits 16, 8) and that no
    kernel takes as it is laid out, as the kernel would take it: a view with gaps as a
    contiguous copy (its state's order: rmsprop.torch._compat.strides), a gradient
    laid out otherwise as a copy laid out as the parameter; None where that changes
    nothing or the kernel still refuses. The caller writes a parameter's copy back."""
    p, g, buffers = member
    if chosen is None or type(p) not in PLAIN:
        return None
    q = p if strides(p) == tuple(p.stride()) else p.contiguous()
    h = g if g.stride() == q.stride() else torch.empty_like(q, dtype=g.dtype).copy_(g)
    if q is p and h is g:
        return None  # not the layout that it refused
    dense = (q, h, buffers)
    return dense if chosen.takes(*dense, hp) else None


def _worth(group: dict[str, Any], params: list[torch.Tensor]) -> int:
    """The size that decides whether to load Numba for this group (rmsprop._accel): its
    elements, or any size where only the kernels can write its state (state_bits 8, 16)
    or its parameters (stochastic_rounding)."""
    return sys.maxsize if _lowbit.drawn(group) else sum(p.numel() for p in params)


def _member(p: torch.Tensor, state: dict[str, Any], torch_rounding: bool) -> Member:
    """A parameter as the kernels take it: for the family rule, complex tensors as real
    views and DTensors laid out alike as their local shards; for torch's order, as is
    (its fallback, PyTorch's functional, takes what the kernels do not)."""
    g = cast(torch.Tensor, p.grad)
    buffers = [state.get(key) for key in STATE_KEYS]
    if torch_rounding:
        return p, g, buffers
    if p.is_complex():
        p, g = torch.view_as_real(p), torch.view_as_real(g)
        buffers = [None if b is None else torch.view_as_real(b) for b in buffers]
    return local(p, g, buffers) if type(p) not in PLAIN else (p, g, buffers)


def _correction(hp: Hyperparameters, state: dict[str, Any]) -> float:
    """The bias correction of this parameter's next step (each its own count, as torch's
    Adam): read on the host."""
    return hp.correction(int(state["step"]) + 1) if hp.bias_correction else 1.0


def _fallback(
    hp: Hyperparameters, group: dict[str, Any], params: list[torch.Tensor], states: list[Any]
) -> None:
    """What no kernel takes: PyTorch's functional for torch's rounding, else the foreach
    path, one series per (bias correction, device, tensor type, precision, dtypes)."""
    if group["rounding"] == "pytorch":
        torch_functional(hp, group, list(zip(params, states, strict=True)))
        return
    series: dict[tuple[Any, ...], tuple[list[Member], list[torch.Tensor]]] = {}
    for p, state in zip(params, states, strict=True):
        member = _member(p, state, False)
        q, g, buffers = member
        dtypes = (q.dtype, g.dtype, *(b.dtype for b in buffers if b is not None))
        narrow = q.device.type == "mps" or float32_work(
            map(dtype_name, dtypes), group["float32_arithmetic"]
        )
        key = (_correction(hp, state), q.device, type(q), narrow, dtypes)
        members, steps = series.setdefault(key, ([], []))
        members.append(member)
        steps.append(state["step"])
    for (correction, _, _, narrow, _), (members, steps) in series.items():
        work = torch.float32 if narrow else torch.float64
        _foreach.foreach_update(members, hp, work, correction)
        count(steps)
