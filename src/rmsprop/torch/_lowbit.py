"""8-bit blockwise state (``state_bits=8``) in the torch optimizers.

A parameter of at least :data:`rmsprop._blockwise.MIN_SIZE` elements keeps each
state buffer as uint8 codes of its shape and strides (element i of the codes'
memory is element i of the parameter's) and, under the buffer's key with
``_scale`` appended, a float32 tensor of one scale per block of 256 codes
(:mod:`rmsprop._blockwise`); smaller parameters keep float32 state. The codes are
written by the fused kernels only; here they are created, checked, and converted
when a checkpoint or an option asks for another kind of state: 32-bit state
loaded into an 8-bit group is encoded (to nearest), 8-bit state loaded into a
group of other ``state_bits`` is decoded, exactly, into that group's state dtype.
"""

from typing import Any, Final

import numpy as np
import torch

from rmsprop import _blockwise
from rmsprop.torch._compat import STATE_KEYS, group_state_dtype, state_dtype, strides

#: The scale tensor of each state buffer's codes, by the buffer's key.
SCALE_KEYS: Final = {key: f"{key}_scale" for key in STATE_KEYS}


def blockwise(p: torch.Tensor, bits: int) -> bool:
    """Whether ``p``'s state is 8-bit blockwise in a group of ``state_bits=bits``."""
    return bits == 8 and p.numel() >= _blockwise.MIN_SIZE


def group_bits(group: dict[str, Any]) -> int:
    bits: int = group.get("state_bits", 32)
    return bits


def is_coded(state: dict[str, Any]) -> bool:
    """Whether a parameter's state holds 8-bit codes."""
    v = state.get("square_avg")
    return isinstance(v, torch.Tensor) and v.dtype == torch.uint8


def memory_order(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's elements in memory order, as a 1-D view."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def fill(value: float, key: str) -> tuple[int, float]:
    """The code and the scale of a buffer filled with ``value``."""
    codes, scales = _blockwise.encode(np.array([value]), _blockwise.CODES[key])
    return int(codes[0]), float(scales[0])


def encode(p: torch.Tensor, values: torch.Tensor, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` (of ``p``'s shape) as codes laid out as ``p`` and their scales, on
    ``p``'s device, rounded to nearest."""
    wide = torch.empty_strided(p.shape, strides(p), dtype=torch.float64)
    wide.copy_(values.detach().to("cpu"))
    codes, scales = _blockwise.encode(memory_order(wide).numpy(), _blockwise.CODES[key])
    out = torch.empty_strided(p.shape, strides(p), dtype=torch.uint8)
    memory_order(out).copy_(torch.from_numpy(codes))
    return out.to(p.device), torch.from_numpy(scales).to(p.device)


def decode(codes: torch.Tensor, scales: torch.Tensor, key: str, dtype: torch.dtype) -> torch.Tensor:
    """The values of ``codes`` (laid out as their parameter) in ``dtype``, same layout."""
    host = codes.detach().to("cpu")
    values = _blockwise.decode(
        memory_order(host).numpy(), scales.detach().to("cpu").numpy(), _blockwise.CODES[key]
    )
    wide = torch.from_numpy(values).as_strided(codes.shape, codes.stride())
    return wide.to(device=codes.device, dtype=dtype)


def check_state(p: torch.Tensor, state: dict[str, Any]) -> None:
    """Raise ``RuntimeError`` if 8-bit codes in ``p``'s state or their scales do not fit
    ``p`` (the other buffers: rmsprop.torch._compat.check_state_shapes)."""
    for key in STATE_KEYS:
        codes = state.get(key)
        if (
            isinstance(codes, torch.Tensor)
            and codes.dtype == torch.uint8
            and SCALE_KEYS[key] in state
        ):
            wrong = check(p, state, key)
            if wrong is not None:
                raise RuntimeError(f"the state of a parameter: {wrong}; nothing was updated")


def check(p: torch.Tensor, state: dict[str, Any], key: str) -> str | None:
    """What is wrong with the codes of ``key`` in ``p``'s state and their scales, if
    anything (their shape, layout and device are those the kernels trust)."""
    codes, scales = state.get(key), state.get(SCALE_KEYS[key])
    if not isinstance(scales, torch.Tensor):
        return f"its {key} holds 8-bit codes without {SCALE_KEYS[key]}"
    blocks = _blockwise.blocks(p.numel())
    if scales.dtype != torch.float32 or scales.shape != (blocks,) or not scales.is_contiguous():
        return (
            f"its {SCALE_KEYS[key]} must be {blocks} contiguous float32 values, got "
            f"{scales.dtype} of shape {tuple(scales.shape)}"
        )
    if scales.device != p.device:
        return f"its {SCALE_KEYS[key]} is on {scales.device}, the parameter on {p.device}"
    if codes is not None and codes.stride() != strides(p):
        return f"its {key} codes are not laid out as the parameter"
    return None


def conform(
    params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """Convert state of the wrong kind for the group: float buffers of a blockwise
    parameter to codes, codes of any other parameter to its group's state dtype."""
    bits = group_bits(group)
    dtype = group_state_dtype(group)
    for p, state in zip(params, states, strict=True):
        wanted = blockwise(p, bits)
        for key in STATE_KEYS:
            t = state.get(key)
            if not isinstance(t, torch.Tensor) or t.shape != p.shape:
                continue  # missing, or left to the shape checks
            coded = t.dtype == torch.uint8
            if wanted and not coded and (t.is_floating_point()):
                state[key], state[SCALE_KEYS[key]] = encode(p, t, key)
            elif coded and not wanted and isinstance(state.get(SCALE_KEYS[key]), torch.Tensor):
                kind = torch.float32 if bits == 8 else state_dtype(p, dtype)
                state[key] = decode(t, state.pop(SCALE_KEYS[key]), key, kind)
            if not wanted:
                state.pop(SCALE_KEYS[key], None)


def drawn(group: dict[str, Any]) -> bool:
    """Whether a group rounds anything stochastically: its state (``state_bits`` 16, 8)
    or its bfloat16 parameters (``stochastic_rounding``)."""
    return group_bits(group) != 32 or bool(group.get("stochastic_rounding", False))


def rounds_parameter(group: dict[str, Any], p: torch.Tensor) -> bool:
    """Whether ``p`` is written with stochastic rounding: bfloat16 in a group with
    ``stochastic_rounding``."""
    return bool(group.get("stochastic_rounding", False)) and p.dtype == torch.bfloat16


def needs_kernel(group: dict[str, Any], state: dict[str, Any], p: torch.Tensor) -> bool:
    """Whether only the fused kernels (or their step in torch operations) can write this
    parameter or its state: bfloat16 rounded stochastically, or 8-bit codes."""
    bits = group_bits(group)
    return bits == 16 or (bits == 8 and is_coded(state)) or rounds_parameter(group, p)


def launch_options(
    group: dict[str, Any],
    params: list[torch.Tensor],
    states: list[dict[str, Any]],
    steps: list[Any],
    streams: list[int],
) -> dict[str, Any]:
    """What a launch over parameters of one dtype with these states needs beyond their
    tensors (the keys of the kernels' ``Launch``): where the state or the parameters
    are rounded stochastically, each one's step counter, stream and the group's seed,
    whether the parameters are (``round_params``) and the state is not
    (``round_state``); for 8-bit codes their scales; nothing otherwise."""
    bits = group_bits(group)
    low = not (bits == 32 or (bits == 8 and not (states and is_coded(states[0]))))
    rounded = bool(params) and rounds_parameter(group, params[0])
    if not (low or rounded):
        return {}
    options: dict[str, Any] = {"stochastic": (steps, streams, group["seed"])}
    if rounded:
        options["round_params"] = True
    if not low:
        options["round_state"] = False
    elif bits == 8:
        options["scales"] = [[s.get(SCALE_KEYS[key]) for key in STATE_KEYS] for s in states]
    return options
