"""The state of the torch optimizers' parameters, allocated flat.

The buffers created together (a group's first step, an option that adds a buffer, a
loaded checkpoint) are views of one buffer per (device, dtype), each view starting
on a cache line (:mod:`rmsprop._flat`) and laid out as its parameter (strides
included, as ``torch.zeros_like`` would); the step counters created together are
consecutive elements of one float32 buffer per device, so that a launch advances
them with one operation (:func:`counter_advance`). ``state_dict()`` holds these views
as it held separate tensors: per-parameter tensors that ``torch.optim.RMSprop``
loads (``torch.save`` writes a storage once, however many views it has).
DTensors and other tensor subclasses keep buffers of their own type, one each.
8-bit codes (``state_bits=8``, :mod:`rmsprop.torch._lowbit`) are uint8 buffers laid
out as their parameter, and their scales float32 buffers of one value per block.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import torch

from rmsprop import _blockwise
from rmsprop._flat import layout
from rmsprop._options import Hyperparameters
from rmsprop.torch import _lowbit, _spans
from rmsprop.torch._compat import STATE_KEYS, state_dtype, strides
from rmsprop.torch._foreach import PLAIN

#: The buffers, in the order they are placed (the keys of a kind neighbours).
_ORDER: Final = (*STATE_KEYS, *_lowbit.SCALE_KEYS.values())

#: A buffer to create: (parameter, its state, key, dtype, a value to fill or a tensor to
#: copy).
Request = tuple[torch.Tensor, dict[str, Any], str, torch.dtype, float | torch.Tensor]


def add_missing(
    params: Sequence[torch.Tensor],
    states: Sequence[dict[str, Any]],
    hp: Hyperparameters,
    dtype: torch.dtype | None,
    *,
    flat: bool = True,
    bits: int = 32,
) -> None:
    """Create what the state of each of ``params`` lacks for the options in force: a
    new parameter's step counter and square average, and the momentum buffer and
    gradient average where the options use them (in the group's ``state_dtype``,
    or each parameter's dtype). ``flat=False``: one tensor each, as torch creates them
    (autograd forbids writing with gradients on a view created without them, which is
    what PyTorch's differentiable step does). ``bits=8``: parameters that take 8-bit
    blockwise state get codes and scales (:mod:`rmsprop.torch._lowbit`), the others
    float32 buffers."""
    options = (("momentum_buffer", hp.momentum), ("grad_avg", hp.centered))
    wanted = [key for key, used in options if used]
    counters: list[dict[str, Any]] = []
    devices: list[torch.device] = []
    requests: list[Request] = []
    for p, state in zip(params, states, strict=True):
        kind = torch.float32 if bits == 8 else state_dtype(p, dtype)
        coded = _lowbit.blockwise(p, bits)
        missing = [key for key in wanted if key not in state]
        if not state:
            counters.append(state)
            # On the GPU the counters stay there (as with torch's fused and capturable
            # optimizers): one launch steps them all, where CPU counters cost a
            # dispatch each.
            devices.append(p.device if p.is_cuda else torch.device("cpu"))
            missing.insert(0, "square_avg")
        for key in missing:
            value: float = hp.initial_cache if key == "square_avg" else 0.0
            if not coded:
                requests.append((p, state, key, kind, value))
                continue
            code, scale = _lowbit.fill(value, key)
            requests.append((p, state, key, torch.uint8, float(code)))
            requests.append((p, state, _lowbit.SCALE_KEYS[key], torch.float32, scale))
    if not flat:
        for p, state, key, kind, source in requests:
            state[key] = _like(p, kind, source, key)
        for state, device in zip(counters, devices, strict=True):
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=device)
        return
    _place(requests)
    _place_counters(counters, [torch.zeros((), device=device) for device in devices])


def rehome(params: Sequence[torch.Tensor], states: Sequence[dict[str, Any]]) -> None:
    """Copy the buffers and counters of ``params`` (a loaded checkpoint's) into flat
    buffers; what does not fit its parameter is left as it is (the step checks it)."""
    requests: list[Request] = []
    counters: list[dict[str, Any]] = []
    for p, state in zip(params, states, strict=True):
        if type(p) not in PLAIN:
            continue
        for key in _ORDER:
            t = state.get(key)
            if type(t) is torch.Tensor and t.shape == _shape(p, key)[0] and t.device == p.device:
                requests.append((p, state, key, t.dtype, t))
        step = state.get("step")
        if type(step) is torch.Tensor and step.dim() == 0 and step.dtype == torch.float32:
            counters.append(state)
    _place(requests)
    _place_counters(counters, [state["step"] for state in counters])


def _place(requests: list[Request]) -> None:
    """Create the requested buffers, as views of one buffer per (device, dtype); the
    buffers of one key are neighbours (square averages first)."""
    arenas: dict[tuple[torch.device, torch.dtype], list[Request]] = {}
    for request in sorted(requests, key=lambda r: _ORDER.index(r[2])):
        p, state, key, dtype, source = request
        if type(p) not in PLAIN:  # DTensors and other subclasses: their own buffers
            state[key] = _like(p, dtype, source, key)
            continue
        arenas.setdefault((p.device, dtype), []).append(request)
    for (device, dtype), members in arenas.items():
        shapes = [_shape(p, key) for p, _, key, _, _ in members]
        sizes = [shape.numel() for shape, _ in shapes]
        offsets, total = layout(sizes, dtype.itemsize)
        arena = torch.zeros(total, dtype=dtype, device=device)
        _spans.register(arena, offsets, sizes)
        for (_, state, key, _, source), (shape, stride), offset in zip(
            members, shapes, offsets, strict=True
        ):
            view = arena.as_strided(shape, stride, offset)
            if isinstance(source, torch.Tensor):
                view.copy_(source)
            elif source:
                (torch.view_as_real(view) if view.is_complex() else view).fill_(source)
            state[key] = view


def _place_counters(states: list[dict[str, Any]], values: list[torch.Tensor]) -> None:
    """Step counters with ``values``, as consecutive elements of one float32 buffer per
    device (CUDA parameters keep theirs on their device, the others on the CPU)."""
    by_device: dict[torch.device, list[int]] = {}
    for i, value in enumerate(values):
        by_device.setdefault(value.device, []).append(i)
    for indices in by_device.values():
        counters = torch.stack([values[i] for i in indices]).to(torch.float32)
        for i, counter in zip(indices, counters.unbind(), strict=True):
            states[i]["step"] = counter


def counter_advance(steps: list[torch.Tensor]) -> Callable[[], Any] | None:
    """Where ``steps`` are consecutive float32 elements of one buffer, in order: a call
    that advances them all by one, on the CPU as a NumPy ``add`` over their view (a tenth
    of the cost of a torch ``add_``, and a third of it after a big step, when the caches
    are cold); else None."""
    if not steps:
        return None
    first = steps[0]
    start = first.storage_offset()
    storage = first.untyped_storage().data_ptr()
    for i, step in enumerate(steps):
        if (
            type(step) is not torch.Tensor
            or step.dim() != 0
            or step.dtype != torch.float32
            or step.device != first.device
            or step.untyped_storage().data_ptr() != storage
            or step.storage_offset() != start + i
        ):
            return None
    run = first.as_strided((len(steps),), (1,), start)
    if run.device.type != "cpu":
        return functools.partial(run.add_, 1.0)
    view = run.detach().numpy()
    return functools.partial(np.add, view, np.float32(1.0), out=view)


def _shape(p: torch.Tensor, key: str) -> tuple[torch.Size, tuple[int, ...]]:
    """The shape and strides of the buffer ``key`` of ``p``'s state: ``p``'s, or for
    the scales of 8-bit codes, one per block."""
    if key in STATE_KEYS:
        return p.shape, strides(p)
    return torch.Size([_blockwise.blocks(p.numel())]), (1,)


def _like(
    p: torch.Tensor, dtype: torch.dtype, source: float | torch.Tensor, key: str
) -> torch.Tensor:
    """One buffer of ``p``'s type and layout, filled with ``source``."""
    if isinstance(source, torch.Tensor):
        return source.to(dtype=dtype, copy=True)
    if key not in STATE_KEYS:  # scales
        return torch.full(_shape(p, key)[0], source, dtype=dtype, device=p.device)
    buffer = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
    if source:
        (torch.view_as_real(buffer) if buffer.is_complex() else buffer).fill_(source)
    return buffer
