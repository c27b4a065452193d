"""``rmsprop.torch.RMSProp``: the RMSProp family as a ``torch.optim.Optimizer``.

Importing this module imports PyTorch; ``import rmsprop`` alone does not.
"""

from collections.abc import Callable, Iterable
from typing import Any, Final, Unpack, cast

import torch
from torch.optim import Optimizer

from rmsprop._optimizer import BUFFERS, fused_update
from rmsprop._options import OPTION_NAMES, FamilyOptions, Hyperparameters
from rmsprop._rule import State, family_update

__all__ = ["RMSProp"]

#: Per-parameter state, named as torch.optim.RMSprop names it (rmsprop.RMSProp's BUFFERS).
STATE_KEYS: Final = ("square_avg", "momentum_buffer", "grad_avg")
#: torch.optim.RMSprop's group keys that are not options here.
TORCH_ONLY_KEYS: Final = ("alpha", "foreach", "capturable", "differentiable", "fused")
#: The options that make this optimizer compute what torch.optim.RMSprop computes.
TORCH_RULE: Final = {
    "eps_in_sqrt": False,
    "initial_cache": 0.0,
    "lr_in_momentum": False,
    "nesterov": False,
    "decoupled_weight_decay": False,
}


class RMSProp(Optimizer):
    """The RMSProp family for PyTorch: a drop-in ``torch.optim.Optimizer``.

    The update is :func:`rmsprop.step`'s rule extended by the options of
    :class:`rmsprop.Hyperparameters`; ``preset`` starts from the options that
    reproduce a framework (see :data:`rmsprop.PRESETS`), explicit options
    override it, and param groups may set any option of their own. Values
    are computed in float64 (float32 on devices without float64) and
    rounded once into the parameters and the state.

    Switching from ``torch.optim.RMSprop(params, lr, alpha=a, ...)`` to
    ``RMSProp(params, preset="pytorch", lr=lr, beta=a, ...)`` changes no
    number; with the options PyTorch has, ``state_dict()`` uses its names
    (``step``, ``square_avg``, ``momentum_buffer``, ``grad_avg``, ``alpha``)
    and checkpoints load into either optimizer.

    Differences from ``torch.optim.RMSprop``: the centered variance is
    clamped at 0 (PyTorch can take the root of a slightly negative number and
    produce NaN); sparse gradients are rejected with a ``RuntimeError`` as in
    PyTorch; ``foreach``, ``capturable`` and ``differentiable`` are not
    options.

    Args:
        params: tensors or param-group dicts, as for any optimizer.
        lr: learning rate (required unless the preset has one).
        preset: ``"pytorch"``, ``"tensorflow"``, ``"keras"``, ``"optax"``,
            ``"timm"``, or None for the seed's rule.
        state_dtype: dtype of the state (default: each parameter's dtype),
            e.g. ``torch.float32`` for float16/bfloat16 parameters.
        **options: ``beta``, ``eps``, ``momentum``, ``centered``, ... as in
            :class:`rmsprop.Hyperparameters`.

    Example:
        >>> import torch, rmsprop.torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        >>> opt = rmsprop.torch.RMSProp([w], lr=0.01, beta=0.9)
        >>> w.grad = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
        >>> opt.step()
        >>> w.detach().numpy().round(6)
        array([0.968377, 1.968377, 2.968377])
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | None = None,
        *,
        preset: str | None = None,
        state_dtype: torch.dtype | None = None,
        **options: Unpack[FamilyOptions],
    ) -> None:
        given: dict[str, Any] = dict(options)
        if lr is not None:
            given["lr"] = _scalar(lr)
        hp = Hyperparameters.from_preset(preset, **given)
        super().__init__(params, {**hp.as_dict(), "state_dtype": state_dtype})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its options are checked now (and again at each step)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _group_hyperparameters(group)
            _check_state_dtype(group["state_dtype"])
            for p in group["params"]:
                if not (p.is_floating_point() or p.is_complex()):
                    raise TypeError(f"parameters must be floating point or complex, got {p.dtype}")
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step over every parameter that has a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for group in self.param_groups:
            hp = _group_hyperparameters(group)
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("rmsprop.torch.RMSProp does not support sparse gradients")
                work.append((p, hp, group["state_dtype"]))
        states = [self._state_for(p, hp, state_dtype) for p, hp, state_dtype in work]
        if states:  # one call for every step counter, not one per parameter
            torch._foreach_add_([state["step"] for state in states], 1.0)
        for (p, hp, _), state in zip(work, states, strict=True):
            _update(p, p.grad, state, hp)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state; groups with PyTorch's rule also carry its key ``alpha``."""
        state_dict = super().state_dict()
        for group in state_dict["param_groups"]:
            if all(group[k] == v for k, v in TORCH_RULE.items()):
                group |= {
                    "alpha": group["beta"],
                    "foreach": None,
                    "capturable": False,
                    "differentiable": False,
                }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint of this optimizer or of ``torch.optim.RMSprop``."""
        groups = []
        for saved, current in zip(state_dict["param_groups"], self.param_groups, strict=False):
            group = {k: v for k, v in saved.items() if k not in TORCH_ONLY_KEYS}
            if "beta" not in saved and "alpha" in saved:  # torch.optim.RMSprop's checkpoint
                group |= TORCH_RULE | {"beta": saved["alpha"]}
            group.setdefault("state_dtype", current["state_dtype"])
            groups.append(group)
        for group in groups:
            _group_hyperparameters(group)
        super().load_state_dict({**state_dict, "param_groups": groups})
        # The base class casts floating state to each parameter's dtype: keep the
        # state_dtype of groups that have one, from the checkpoint's own values.
        saved_state = state_dict["state"]
        for group, saved_group in zip(self.param_groups, groups, strict=True):
            if group["state_dtype"] is None:
                continue
            for p, index in zip(group["params"], saved_group["params"], strict=True):
                for key, value in saved_state.get(index, {}).items():
                    if key in STATE_KEYS:
                        self.state[p][key] = value.to(
                            p.device, _state_dtype(p, group["state_dtype"])
                        )

    def _state_for(
        self, p: torch.Tensor, hp: Hyperparameters, state_dtype: torch.dtype | None
    ) -> dict[str, Any]:
        """The state of ``p``, with every buffer that the options in force use."""
        state = self.state[p]
        dtype = _state_dtype(p, state_dtype)
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            state["square_avg"] = _filled(p, dtype, hp.initial_cache)
        if hp.momentum and "momentum_buffer" not in state:
            state["momentum_buffer"] = _filled(p, dtype, 0.0)
        if hp.centered and "grad_avg" not in state:
            state["grad_avg"] = _filled(p, dtype, 0.0)
        return cast(dict[str, Any], state)


def _scalar(value: object) -> object:
    """A one-element tensor (PyTorch allows a tensor ``lr``) as a Python number."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value


def _group_hyperparameters(group: dict[str, Any]) -> Hyperparameters:
    options: dict[str, Any] = {name: _scalar(group[name]) for name in OPTION_NAMES}
    return Hyperparameters(**options)


def _check_state_dtype(dtype: object) -> None:
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"state_dtype must be a floating torch.dtype or None, got {dtype!r}")


def _state_dtype(p: torch.Tensor, state_dtype: torch.dtype | None) -> torch.dtype:
    if state_dtype is None:
        return p.dtype
    if p.is_complex():  # complex parameters keep complex state of that precision
        return torch.complex128 if state_dtype == torch.float64 else torch.complex64
    return state_dtype


def _filled(p: torch.Tensor, dtype: torch.dtype, value: float) -> torch.Tensor:
    buffer = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
    if value:
        (torch.view_as_real(buffer) if buffer.is_complex() else buffer).fill_(value)
    return buffer


def _real_view(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def _update(p: torch.Tensor, g: torch.Tensor, state: dict[str, Any], hp: Hyperparameters) -> None:
    """One family step for one parameter, computed wide and rounded once into place.

    CPU float32/float64 tensors go through the fused kernels, on zero-copy NumPy
    views; other devices and dtypes through tensor operations.
    """
    p_real = _real_view(p)
    buffers = [_real_view(state[key]) if key in state else None for key in STATE_KEYS]
    if _fused(p_real, _real_view(g), buffers, hp):
        return
    work = torch.float32 if p.device.type == "mps" else torch.float64
    new_p, new_state = family_update(
        p_real.to(work),
        _real_view(g).to(work),
        State(*(None if b is None else b.to(work) for b in buffers)),
        hp,
        torch.sqrt,
        _clamp_at_zero,
    )
    p_real.copy_(new_p)
    for buffer, value in zip(buffers, new_state, strict=True):
        if buffer is not None:
            buffer.copy_(value)


def _fused(
    p: torch.Tensor, g: torch.Tensor, buffers: list[torch.Tensor | None], hp: Hyperparameters
) -> bool:
    """The fused kernel on NumPy views of plain CPU tensors, if it applies; whether it ran."""
    arrays = {}
    for name, t in zip(("p", "g", *BUFFERS), (p, g, *buffers), strict=True):
        if t is None:
            continue
        if type(t) not in _PLAIN or t.dtype not in _KERNEL_DTYPES or t.device.type != "cpu":
            return False  # DTensor and other subclasses, other devices and dtypes
        arrays[name] = t.detach().numpy()
    return fused_update(arrays.pop("p"), arrays.pop("g"), arrays, hp)


_PLAIN: Final = (torch.Tensor, torch.nn.Parameter)
_KERNEL_DTYPES: Final = (torch.float32, torch.float64)


def _clamp_at_zero(x: torch.Tensor) -> torch.Tensor:
    return x.clamp_min(0.0)
