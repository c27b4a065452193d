"""What makes the torch optimizers interchangeable with ``torch.optim.RMSprop``.

Its arguments and their checks in its own words, its group keys, the rule it computes
(:data:`TORCH_RULE`), its functional form, and checkpoints in both directions: the
options a group holds, the state a checkpoint carries, read back as PyTorch reads them.
"""

import functools
import importlib
from typing import Any, Final, cast

import torch

from rmsprop import _blockwise
from rmsprop._dispatch import dense
from rmsprop._options import OPTION_NAMES, Hyperparameters

#: Per-parameter state, named as torch.optim.RMSprop names it (rmsprop.RMSProp's BUFFERS).
STATE_KEYS: Final = ("square_avg", "momentum_buffer", "grad_avg")
#: torch.optim.RMSprop's group keys that are not options here.
TORCH_ONLY_KEYS: Final = ("alpha", "foreach", "capturable", "differentiable", "fused")
#: torch.optim.RMSprop's flags that choose how, not what, it computes.
TORCH_FLAGS: Final = ("capturable", "foreach", "differentiable")
#: The options that make this optimizer compute what torch.optim.RMSprop computes.
TORCH_RULE: Final = {
    "eps_in_sqrt": False,
    "initial_cache": 0.0,
    "lr_in_momentum": False,
    "nesterov": False,
    "decoupled_weight_decay": False,
    "bias_correction": False,
}
#: The values of the ``rounding`` option.
ROUNDINGS: Final = ("once", "pytorch")
#: How torch.optim.RMSprop names its arguments in its errors, in the order it checks them.
TORCH_WORDS: Final = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "momentum": "momentum value",
    "weight_decay": "weight_decay value",
    "alpha": "alpha value",
}
#: Options a checkpoint may lack (written before they existed): their defaults.
OPTION_DEFAULTS: Final = {
    name: field.default
    for name, field in Hyperparameters.__dataclass_fields__.items()
    if name != "lr"
}
#: torch.optim.RMSprop's functional form (torch.optim hides its module's name).
TORCH_FUNCTIONAL: Final = importlib.import_module("torch.optim.rmsprop").rmsprop


def check_torch_flags(flags: dict[str, Any]) -> None:
    """Check the ``torch.optim.RMSprop`` flags of a group, as PyTorch types them."""
    for name in ("capturable", "differentiable"):
        if not isinstance(flags.get(name, False), bool):
            raise TypeError(f"{name} must be True or False, got {flags[name]!r}")
    if flags.get("foreach") not in (None, True, False):
        raise TypeError(f"foreach must be True, False or None, got {flags['foreach']!r}")


def check_torch_arguments(**values: Any) -> None:
    """``torch.optim.RMSprop``'s own checks, in its words, before the family's checks."""
    lr = values["lr"]
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    for name, text in TORCH_WORDS.items():
        if not values[name] >= 0.0:  # NaN fails, as in PyTorch
            raise ValueError(f"Invalid {text}: {values[name]}")


def scalar(value: object) -> object:
    """A one-element tensor (PyTorch allows a tensor ``lr``) as a Python number.

    A tensor of another size is a ``ValueError``, as in ``torch.optim``.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"a tensor option must have one element, got shape {tuple(value.shape)}"
            )
        return value.item()
    return value


def group_hyperparameters(group: dict[str, Any]) -> Hyperparameters:
    """A group's options; a group of rmsprop.torch.RMSprop names ``beta`` ``alpha``."""
    beta = "beta" if "beta" in group else "alpha"
    values = tuple(scalar(group[name if name != "beta" else beta]) for name in OPTION_NAMES)
    key = (tuple(map(type, values)), values)  # True and 1 are equal keys, not equal options
    try:
        hash(key)
    except TypeError:  # a value no option takes: the check below says which
        return _hyperparameters.__wrapped__(key)
    return _hyperparameters(key)


@functools.lru_cache(maxsize=64)
def _hyperparameters(key: tuple[tuple[type, ...], tuple[Any, ...]]) -> Hyperparameters:
    """The options of these values, checked once (every step asks; they seldom change)."""
    return Hyperparameters(**dict(zip(OPTION_NAMES, key[1], strict=True)))


def check_rounding(group: dict[str, Any], hp: Hyperparameters) -> bool:
    """Check a group's ``rounding``; whether it asks for PyTorch's own rounding."""
    rounding = group["rounding"]
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if rounding == "once":
        return False
    if not all(getattr(hp, name) == value for name, value in TORCH_RULE.items()):
        raise ValueError(
            "rounding='pytorch' computes torch.optim.RMSprop's rule: it needs "
            + ", ".join(f"{name}={value!r}" for name, value in TORCH_RULE.items())
        )
    if group["state_dtype"] is not None or group["float32_arithmetic"]:
        raise ValueError(
            "rounding='pytorch' keeps the state in the parameters' dtype and computes as "
            "torch does: state_dtype and float32_arithmetic do not apply"
        )
    return True


def check_state_bits(group: dict[str, Any], params: Any = ()) -> None:
    """Check a group's ``state_bits``, ``seed`` and ``stochastic_rounding``: 32 (the state
    in ``state_dtype``), or 16 (bfloat16 written with stochastic rounding from the
    ``seed``'s random streams, by the fused kernels: real plain tensors, the family's
    rounding), or 8; ``stochastic_rounding`` (bfloat16 parameters rounded so) asks for
    the same; and ``params``."""
    bits, seed = group.get("state_bits", 32), group.get("seed", 0)
    if bits not in (8, 16, 32) or isinstance(bits, bool):
        raise ValueError(f"state_bits must be 8, 16 or 32, got {bits!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}")
    rounded = group.get("stochastic_rounding", False)
    if not isinstance(rounded, bool):
        raise TypeError(f"stochastic_rounding must be True or False, got {rounded!r}")
    if rounded:
        if group["rounding"] != "once":
            raise ValueError(
                "stochastic_rounding rounds the family's result (rounding='once'); "
                "rounding='pytorch' writes torch's own rounding"
            )
        _check_plain(params, "stochastic_rounding")
    if bits == 32:
        return
    own = torch.bfloat16 if bits == 16 else torch.float32
    if group["rounding"] != "once" or group["state_dtype"] not in (None, own):
        kind = "bfloat16" if bits == 16 else "8-bit blockwise codes (float32 for small tensors)"
        raise ValueError(
            f"state_bits={bits} keeps the state in {kind}, rounded stochastically: it takes "
            "rounding='once' and no other state_dtype"
        )
    _check_plain(params, f"state_bits={bits}")


def _check_plain(params: Any, what: str) -> None:
    """Raise unless ``params`` are what the family's kernels take: real plain tensors."""
    for p in params:
        if p.is_complex() or type(p) not in (torch.Tensor, torch.nn.Parameter):
            raise RuntimeError(
                f"{what} runs on the family's kernels (Numba on the CPU, Triton on "
                f"CUDA), which take real plain tensors; got a {p.dtype} {type(p).__name__}"
            )


def group_state_dtype(group: dict[str, Any]) -> torch.dtype | None:
    """The dtype a group asks its state in: bfloat16 for ``state_bits=16``, float32 for
    ``state_bits=8`` (the tensors too small for codes), else its ``state_dtype`` (None:
    each parameter's own)."""
    bits = group.get("state_bits", 32)
    if bits == 32:
        return group["state_dtype"]  # type: ignore[no-any-return]
    return torch.bfloat16 if bits == 16 else torch.float32


def check_group(group: dict[str, Any]) -> None:
    """Check a new group's options and parameters (``TypeError``/``ValueError``)."""
    check_rounding(group, group_hyperparameters(group))
    check_state_bits(group, group["params"])
    dtype = group["state_dtype"]
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"state_dtype must be a floating torch.dtype or None, got {dtype!r}")
    if not isinstance(group["float32_arithmetic"], bool):
        raise TypeError(
            f"float32_arithmetic must be True or False, got {group['float32_arithmetic']!r}"
        )
    for p in group["params"]:
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(f"parameters must be floating point or complex, got {p.dtype}")


def state_dtype(p: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype of ``p``'s state buffers: the group's ``state_dtype``, or ``p``'s own."""
    if dtype is None:
        return p.dtype
    if p.is_complex():  # complex parameters keep complex state of that precision
        return torch.complex128 if dtype == torch.float64 else torch.complex64
    return dtype


def strides(p: torch.Tensor) -> tuple[int, ...]:
    """The strides of ``p``'s state: ``p``'s own where they are dense (channels_last,
    transposes), else contiguous, as ``torch.zeros_like`` chooses."""
    if dense(p.shape, p.stride()):
        return tuple(p.stride())
    strides = []
    size = 1
    for extent in reversed(p.shape):
        strides.append(size)
        size *= extent
    return tuple(reversed(strides))


def check_state_shapes(p: torch.Tensor, state: dict[str, Any]) -> None:
    """Raise ``RuntimeError`` (as torch.optim.RMSprop's operations would) if a buffer of
    ``p``'s state has another shape or device than ``p``, or no floating dtype: the
    kernels trust the sizes they get, and a late failure would leave a step half done."""
    for key in STATE_KEYS:
        buffer = state.get(key)
        if buffer is None:
            continue
        if buffer.shape != p.shape:
            raise RuntimeError(
                f"the {key} of a parameter of shape {tuple(p.shape)} has shape "
                f"{tuple(buffer.shape)}; nothing was updated"
            )
        if buffer.device != p.device:
            raise RuntimeError(
                f"the {key} of a parameter on {p.device} is on {buffer.device}; nothing was updated"
            )
        if buffer.dtype == torch.uint8 and f"{key}_scale" in state:
            continue  # 8-bit codes: rmsprop.torch._lowbit.check_state
        if not (buffer.is_floating_point() or buffer.is_complex()):
            raise RuntimeError(
                f"the {key} of a parameter has dtype {buffer.dtype}; nothing was updated"
            )


@functools.cache
def _capturable_devices() -> list[str]:
    """The device types whose parameters PyTorch's capturable optimizers accept."""
    optimizer = importlib.import_module("torch.optim.optimizer")
    supported = getattr(optimizer, "_get_capturable_supported_devices", None)
    return ["cuda"] if supported is None else list(supported())


def check_capturable(params: list[torch.Tensor], states: list[dict[str, Any]]) -> None:
    """A capturable group's parameters are on a device that CUDA graphs capture; its step
    counters join them there (a checkpoint loads them on the CPU), as in PyTorch."""
    devices = _capturable_devices()
    for p in params:
        if p.device.type not in devices:
            raise RuntimeError(
                f"capturable=True needs parameters on one of {devices}, got one on {p.device}"
            )
    for p, state in zip(params, states, strict=True):
        if state["step"].device != p.device:
            state["step"] = state["step"].to(p.device)


def torch_functional(
    hp: Hyperparameters, group: dict[str, Any], rest: list[tuple[torch.Tensor, dict[str, Any]]]
) -> None:
    """PyTorch's own functional RMSprop over ``rest`` (parameter, state), with the group's
    flags: torch.optim.RMSprop's numbers, by torch.optim.RMSprop's code."""
    with torch.set_grad_enabled(group.get("differentiable", False)):
        TORCH_FUNCTIONAL(
            [p for p, _ in rest],
            [cast(torch.Tensor, p.grad) for p, _ in rest],
            [state["square_avg"] for _, state in rest],
            [state["grad_avg"] for _, state in rest] if hp.centered else [],
            [state["momentum_buffer"] for _, state in rest] if hp.momentum else [],
            [state["step"] for _, state in rest],
            foreach=group.get("foreach"),
            capturable=group.get("capturable", False),
            differentiable=group.get("differentiable", False),
            maximize=hp.maximize,
            has_complex=any(p.is_complex() for p, _ in rest),
            lr=hp.lr,
            alpha=hp.beta,
            eps=hp.eps,
            weight_decay=hp.weight_decay,
            momentum=hp.momentum,
            centered=hp.centered,
        )


def saved_groups(state_dict: dict[str, Any], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A checkpoint's groups as this optimizer holds them, checked: the options of
    ``torch.optim.RMSprop`` checkpoints (``alpha``) translated, options a checkpoint
    lacks at their defaults, this optimizer's own settings where none was saved."""
    groups = []
    for saved, now in zip(state_dict["param_groups"], current, strict=False):
        group = {k: v for k, v in saved.items() if k not in TORCH_ONLY_KEYS}
        if "beta" not in saved and "alpha" in saved:  # torch.optim.RMSprop's checkpoint
            group |= TORCH_RULE | {"beta": saved["alpha"]}
        for name, default in OPTION_DEFAULTS.items():
            group.setdefault(name, default)
        for name in (
            "state_dtype", "float32_arithmetic", "rounding", "state_bits", "seed",
            "stochastic_rounding",
        ):  # fmt: skip
            group.setdefault(name, now[name])
        groups.append(group)
    for group in groups:
        check_rounding(group, group_hyperparameters(group))
    return groups


def check_saved_state(
    groups: list[dict[str, Any]], current: list[dict[str, Any]], state: dict[Any, Any]
) -> None:
    """Raise if a saved buffer does not fit its parameter; steps saved as numbers become
    tensors. Mismatched group counts and sizes are left to the base class's error."""
    if len(groups) != len(current) or any(
        len(saved["params"]) != len(now["params"])
        for saved, now in zip(groups, current, strict=True)
    ):
        return
    for saved, now in zip(groups, current, strict=True):
        for index, p in zip(saved["params"], now["params"], strict=True):
            values = state.get(index, {})
            for key, value in values.items():
                if key == "step":
                    if not isinstance(value, torch.Tensor):
                        values[key] = torch.tensor(float(value), dtype=torch.float32)
                    continue
                if key not in STATE_KEYS:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise TypeError(
                        f"state of parameter {index}: {key} is {type(value).__name__}, "
                        "expected a tensor"
                    )
                if value.shape != p.shape:
                    raise ValueError(
                        f"state of parameter {index}: {key} has shape {tuple(value.shape)}, "
                        f"the parameter has shape {tuple(p.shape)}"
                    )
                if value.dtype == torch.uint8 and f"{key}_scale" in values:
                    _check_saved_scales(index, key, p, values[f"{key}_scale"])
                    continue
                if not (value.is_floating_point() or value.is_complex()):
                    raise TypeError(
                        f"state of parameter {index}: {key} has dtype {value.dtype}, "
                        "expected a floating-point dtype"
                    )


def _check_saved_scales(index: Any, key: str, p: torch.Tensor, scales: Any) -> None:
    """Raise unless a checkpoint's scales of 8-bit codes fit their parameter: one float32
    power of two per block of 256 (rmsprop._blockwise)."""
    blocks = _blockwise.blocks(p.numel())
    if not isinstance(scales, torch.Tensor) or scales.shape != (blocks,):
        raise ValueError(
            f"state of parameter {index}: {key}_scale must be a tensor of {blocks} block "
            f"scales, got {getattr(scales, 'shape', type(scales).__name__)}"
        )
    if scales.dtype != torch.float32 or not _blockwise.check_scales(scales.cpu().numpy()):
        raise ValueError(
            f"state of parameter {index}: {key}_scale must hold float32 powers of two from "
            "2**-126 to 2**126"
        )


def with_torch_keys(group: dict[str, Any]) -> dict[str, Any]:
    """A saved group with PyTorch's rule, with the keys torch.optim.RMSprop loads too."""
    if "beta" in group and all(group[k] == v for k, v in TORCH_RULE.items()):
        flags = {"foreach": None, "capturable": False, "differentiable": False}
        group |= {"alpha": group["beta"], **flags, **group}
    return group
