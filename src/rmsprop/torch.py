"""``rmsprop.torch.RMSProp``: the RMSProp family as a ``torch.optim.Optimizer``.

Importing this module imports PyTorch; ``import rmsprop`` alone does not.
"""

import functools
import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, TypeVar, Unpack, cast

import numpy as np
import torch
from torch.optim import Optimizer

from rmsprop import _accel, _dispatch
from rmsprop._options import OPTION_NAMES, FamilyOptions, Hyperparameters
from rmsprop._rule import State, family_update
from rmsprop._slices import slices

__all__ = ["RMSProp", "RMSprop"]

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
    "bias_correction": False,
}


Function = TypeVar("Function", bound=Callable[..., Any])


def _opaque_to_dynamo(function: Function) -> Function:
    """``torch.compiler.disable``, typed: torch.compile runs ``function`` as eager code.

    Dynamo cannot trace Numba's dispatcher nor Triton launches made from Python, and
    the kernels are the step's fast path: a compiled step runs them as eager code
    does (see the README).
    """
    return cast(Function, torch.compiler.disable(function))  # type: ignore[no-untyped-call]


class RMSProp(Optimizer):
    """The RMSProp family for PyTorch: a drop-in ``torch.optim.Optimizer``.

    The update is :func:`rmsprop.step`'s rule extended by the options of
    :class:`rmsprop.Hyperparameters`; ``preset`` starts from the options that
    reproduce a framework (see :data:`rmsprop.PRESETS`), explicit options
    override it, and param groups may set any option of their own. Values
    are computed in float64 (float32 on devices without float64) and
    rounded once into the parameters and the state: by a fused kernel for dense
    float32, float64, bfloat16 and float16 tensors (Numba on the CPU, Triton on
    CUDA; one launch per group of options, device and dtypes), and by
    ``torch._foreach_*`` operations on bounded slices elsewhere (other devices,
    views with gaps, CUDA without Triton). DTensors laid out alike are updated
    shard by shard.

    ``RMSProp(params, preset="pytorch", lr=lr, beta=a, ...)`` is
    ``torch.optim.RMSprop(params, lr, alpha=a, ...)``'s rule, rounded once in
    float64 (within an ulp a step of PyTorch's float32 numbers); with
    ``rounding="pytorch"``, or as :class:`RMSprop`, PyTorch's numbers bit for
    bit. With the options PyTorch has, ``state_dict()`` uses its names
    (``step``, ``square_avg``, ``momentum_buffer``, ``grad_avg``, ``alpha``)
    and checkpoints load into either optimizer.

    Differences from ``torch.optim.RMSprop`` with ``rounding="once"``: the
    centered variance is clamped at 0 (PyTorch can take the root of a slightly
    negative number and produce NaN). Sparse gradients are rejected with a
    ``RuntimeError`` as in PyTorch. PyTorch's ``foreach``, ``capturable`` and
    ``differentiable`` are arguments of :class:`RMSprop`, not options here.

    Args:
        params: tensors or param-group dicts, as for any optimizer.
        lr: learning rate (required unless the preset has one).
        preset: ``"pytorch"``, ``"tensorflow"``, ``"keras"``, ``"optax"``,
            ``"timm"``, or None for the seed's rule.
        state_dtype: dtype of the state (default: each parameter's dtype),
            e.g. ``torch.float32`` for float16/bfloat16 parameters.
        float32_arithmetic: compute float32, bfloat16 and float16 data in
            float32 rather than float64: faster where the step is compute-bound,
            but no longer the float64 evaluation rounded once (a few float32 ulp
            apart).
        rounding: ``"once"`` (default): the float64 evaluation rounded once;
            ``"pytorch"``: what ``torch.optim.RMSprop`` computes, bit for bit
            (its centered variance unclamped): dense float32 and float64 CPU
            tensors by :mod:`rmsprop._torch_kernel` where its first-use check
            confirms that it reproduces this torch, everything else by PyTorch's
            own functional RMSProp. Needs PyTorch's rule (the ``"pytorch"``
            preset's options) and the state in the parameters' dtype.
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
        float32_arithmetic: bool = False,
        rounding: str = "once",
        **options: Unpack[FamilyOptions],
    ) -> None:
        given: dict[str, Any] = dict(options)
        if preset == "pytorch" and "alpha" in given:  # torch.optim.RMSprop's name for beta
            if "beta" in given:
                raise TypeError("give beta or alpha (PyTorch's name for it), not both")
            given["beta"] = given.pop("alpha")
        if lr is not None:
            given["lr"] = _scalar(lr)
        hp = Hyperparameters.from_preset(preset, **given)
        defaults = {
            **hp.as_dict(),
            "state_dtype": state_dtype,
            "float32_arithmetic": float32_arithmetic,
            "rounding": rounding,
        }
        self._setup(params, defaults)

    def _setup(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        defaults: dict[str, Any],
    ) -> None:
        self._plans: dict[int, _Plan] = {}  # by group index: see _Plan
        Optimizer.__init__(self, params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its options are checked now (and again at each step)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check_rounding(group, _group_hyperparameters(group))
            _check_state_dtype(group["state_dtype"])
            if not isinstance(group["float32_arithmetic"], bool):
                raise TypeError(
                    f"float32_arithmetic must be True or False, got {group['float32_arithmetic']!r}"
                )
            for p in group["params"]:
                if not (p.is_floating_point() or p.is_complex()):
                    raise TypeError(f"parameters must be floating point or complex, got {p.dtype}")
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    @_opaque_to_dynamo
    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step over every parameter that has a gradient; returns ``closure()``'s loss.

        Everything that can be checked is checked for every parameter before the
        first write: options, sparse gradients, the shapes of the state. The
        parameters are then written group by group (a kernel launch, or a
        ``torch._foreach_*`` series over one device and dtype), and each
        parameter's ``step`` counter advances right after its group is written.
        An error after that point (in practice, running out of memory in the
        foreach path, which works slice by slice) leaves the groups written before
        it updated and counted, the group being written partly updated and not
        counted, and the others untouched.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        gathered = []
        plans: list[tuple[_Plan, list[torch.Tensor]] | None] = []
        for index, group in enumerate(self.param_groups):
            hp = _group_hyperparameters(group)
            _check_rounding(group, hp)
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("rmsprop.torch.RMSProp does not support sparse gradients")
            plan = self._plans.get(index) if _plannable(group, hp) else None
            grads = None if plan is None else plan.gradients(group, params, hp, self.state)
            plans.append(None if plan is None or grads is None else (plan, grads))
            gathered.append((hp, group, params))
        work = []
        exact_work = []
        for (hp, group, params), planned in zip(gathered, plans, strict=True):
            if planned is not None:
                continue
            if group["rounding"] == "pytorch":
                states = [self._state_for(p, hp, None) for p in params]
                for p, state in zip(params, states, strict=True):
                    _check_state_shapes(p, state)
                if group.get("capturable", False):
                    _check_capturable(params, states)
                exact_work.append((hp, group, params, states))
            else:
                state_dtype, float32_arithmetic = group["state_dtype"], group["float32_arithmetic"]
                for p in params:
                    state = self._state_for(p, hp, state_dtype)
                    _check_state_shapes(p, state)
                    # Each parameter's own count (as torch's Adam): read on the host.
                    correction = (
                        hp.correction(int(state["step"]) + 1) if hp.bias_correction else 1.0
                    )
                    work.append((p, hp, state, float32_arithmetic, correction))
        for hp, group, params, states in exact_work:
            _torch_rounding_update(hp, group, params, states)
        for (hp, _, _), planned in zip(gathered, plans, strict=True):
            if planned is not None:
                planned[0].run(planned[1], hp)
        _update(work)
        for index, ((hp, group, params), planned) in enumerate(zip(gathered, plans, strict=True)):
            if planned is None and params and _plannable(group, hp):
                plan = _Plan.build(group, params, hp, self.state)
                if plan is None:
                    self._plans.pop(index, None)
                else:
                    self._plans[index] = plan
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state; groups with PyTorch's rule also carry its key ``alpha``."""
        state_dict = super().state_dict()
        for group in state_dict["param_groups"]:
            if "beta" in group and all(group[k] == v for k, v in TORCH_RULE.items()):
                flags = {"foreach": None, "capturable": False, "differentiable": False}
                group |= {"alpha": group["beta"], **flags, **group}
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint of this optimizer or of ``torch.optim.RMSprop``.

        Everything is checked before anything changes: the options of every group,
        and the shape of every state buffer against its parameter. Options that a
        checkpoint lacks (written before they existed, e.g. ``maximize`` by torch
        before 1.13) take their defaults, and a ``step`` saved as a number (older
        torch) becomes a tensor, as ``torch.optim.RMSprop`` loads them.
        """
        groups = []
        for saved, current in zip(state_dict["param_groups"], self.param_groups, strict=False):
            group = {k: v for k, v in saved.items() if k not in TORCH_ONLY_KEYS}
            if "beta" not in saved and "alpha" in saved:  # torch.optim.RMSprop's checkpoint
                group |= TORCH_RULE | {"beta": saved["alpha"]}
            for name, default in _OPTION_DEFAULTS.items():
                group.setdefault(name, default)
            group.setdefault("state_dtype", current["state_dtype"])
            group.setdefault("float32_arithmetic", current["float32_arithmetic"])
            group.setdefault("rounding", current["rounding"])
            groups.append(group)
        for group in groups:
            _check_rounding(group, _group_hyperparameters(group))
        state = {  # entries that are not a parameter's dict pass through, as in PyTorch
            index: dict(values) if isinstance(values, dict) else values
            for index, values in state_dict["state"].items()
        }
        self._check_saved_state(groups, state)
        self._plans.clear()
        super().load_state_dict({**state_dict, "param_groups": groups, "state": state})
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

    def _check_saved_state(
        self, groups: list[dict[str, Any]], state: dict[Any, dict[str, Any]]
    ) -> None:
        """Raise if a saved buffer does not fit its parameter; steps saved as numbers become
        tensors. Mismatched group counts and sizes are left to the base class's error."""
        if len(groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(current["params"])
            for saved, current in zip(groups, self.param_groups, strict=True)
        ):
            return
        for saved, current in zip(groups, self.param_groups, strict=True):
            for index, p in zip(saved["params"], current["params"], strict=True):
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
                    if not (value.is_floating_point() or value.is_complex()):
                        raise TypeError(
                            f"state of parameter {index}: {key} has dtype {value.dtype}, "
                            "expected a floating-point dtype"
                        )

    def _state_for(
        self, p: torch.Tensor, hp: Hyperparameters, state_dtype: torch.dtype | None
    ) -> dict[str, Any]:
        """The state of ``p``, with every buffer that the options in force use."""
        state = self.state[p]
        if (
            state
            and (not hp.momentum or "momentum_buffer" in state)
            and (not hp.centered or "grad_avg" in state)
        ):
            return cast(dict[str, Any], state)  # every step but the first
        dtype = _state_dtype(p, state_dtype)
        if not state:
            # On the GPU the counters stay there (as with torch's fused and capturable
            # optimizers): one launch steps them all, where CPU counters cost a
            # dispatch each.
            where = p.device if p.is_cuda else None
            state["step"] = torch.tensor(0.0, dtype=torch.float32, device=where)
            state["square_avg"] = _filled(p, dtype, hp.initial_cache)
        if hp.momentum and "momentum_buffer" not in state:
            state["momentum_buffer"] = _filled(p, dtype, 0.0)
        if hp.centered and "grad_avg" not in state:
            state["grad_avg"] = _filled(p, dtype, 0.0)
        return cast(dict[str, Any], state)


class RMSprop(RMSProp):
    """``torch.optim.RMSprop``'s signature, defaults, group keys and checkpoints.

    ``rmsprop.torch.RMSprop(params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
    momentum=0, centered=False, capturable=False, foreach=None, maximize=False,
    differentiable=False)`` takes PyTorch's arguments, positionally too, and
    computes :class:`RMSProp`'s ``preset="pytorch"`` with ``rounding="pytorch"``:
    ``torch.optim.RMSprop``'s numbers bit for bit, in every dtype and on every
    device (``foreach`` chooses PyTorch's implementation, as there).
    Configuration files and factories written for ``torch.optim.RMSprop`` work
    unchanged. Its param groups hold PyTorch's keys
    (``alpha``, not ``beta``; ``foreach``, ``capturable``, ``differentiable``), and
    its checkpoints load into ``torch.optim.RMSprop`` and back.

    ``capturable=True`` and ``differentiable=True`` groups are stepped by PyTorch's
    own functional RMSprop with those flags (CUDA graphs capture it; autograd
    records it), so they behave exactly as in ``torch.optim.RMSprop``; a capturable
    group's parameters must be on a device that CUDA graphs capture.

    Example:
        >>> import torch, rmsprop.torch
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
        >>> opt = rmsprop.torch.RMSprop([w], 0.01, 0.9, momentum=0.9)
        >>> sorted(k for k in opt.param_groups[0] if k in ("alpha", "beta", "foreach"))
        ['alpha', 'foreach']
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | torch.Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        flags = {"capturable": capturable, "foreach": foreach, "differentiable": differentiable}
        _check_torch_flags(flags)
        _check_torch_arguments(
            lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha
        )
        hp = Hyperparameters.from_preset(
            "pytorch", lr=_scalar(lr), beta=alpha, eps=eps, weight_decay=weight_decay,
            momentum=momentum, centered=centered, maximize=maximize,
        )  # fmt: skip
        defaults = {name: value for name, value in hp.as_dict().items() if name != "beta"}
        defaults |= {"alpha": hp.beta, **flags, "state_dtype": None, "float32_arithmetic": False}
        defaults["rounding"] = "pytorch"
        self._setup(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group with PyTorch's keys (``alpha``); checked as in :class:`RMSProp`."""
        if "beta" in param_group:
            raise TypeError("rmsprop.torch.RMSprop's groups name beta alpha, as PyTorch does")
        _check_torch_flags(param_group)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint of this optimizer, of :class:`RMSProp` with PyTorch's rule, or
        of ``torch.optim.RMSprop``; the groups keep PyTorch's keys."""
        flags = [
            {k: group.get(k, self.defaults[k]) for k in ("capturable", "foreach", "differentiable")}
            for group in state_dict["param_groups"]
        ]
        for saved in flags:
            _check_torch_flags(saved)
        super().load_state_dict(state_dict)
        for group, saved in zip(self.param_groups, flags, strict=True):
            group["alpha"] = group.pop("beta")
            group.update(saved)


def _check_torch_flags(flags: dict[str, Any]) -> None:
    """Check the ``torch.optim.RMSprop`` flags of a group, as PyTorch types them."""
    for name in ("capturable", "differentiable"):
        if not isinstance(flags.get(name, False), bool):
            raise TypeError(f"{name} must be True or False, got {flags[name]!r}")
    if flags.get("foreach") not in (None, True, False):
        raise TypeError(f"foreach must be True, False or None, got {flags['foreach']!r}")


#: How torch.optim.RMSprop names its arguments in its errors, in the order it checks them.
_TORCH_WORDS: Final = {
    "lr": "learning rate",
    "eps": "epsilon value",
    "momentum": "momentum value",
    "weight_decay": "weight_decay value",
    "alpha": "alpha value",
}


def _check_torch_arguments(**values: Any) -> None:
    """``torch.optim.RMSprop``'s own checks, in its words, before the family's checks."""
    lr = values["lr"]
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    for name, text in _TORCH_WORDS.items():
        if not values[name] >= 0.0:  # NaN fails, as in PyTorch
            raise ValueError(f"Invalid {text}: {values[name]}")


#: torch.optim.RMSprop's functional form (torch.optim hides its module's name).
_TORCH_FUNCTIONAL: Final = importlib.import_module("torch.optim.rmsprop").rmsprop


@functools.cache
def _capturable_devices() -> list[str]:
    """The device types whose parameters PyTorch's capturable optimizers accept."""
    optimizer = importlib.import_module("torch.optim.optimizer")
    supported = getattr(optimizer, "_get_capturable_supported_devices", None)
    return ["cuda"] if supported is None else list(supported())


#: The values of the ``rounding`` option.
ROUNDINGS: Final = ("once", "pytorch")


def _check_rounding(group: dict[str, Any], hp: Hyperparameters) -> bool:
    """Check a group's ``rounding``; whether it asks for PyTorch's own rounding."""
    rounding = group["rounding"]
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if rounding == "once":
        return False
    torch_rule = all(getattr(hp, name) == value for name, value in TORCH_RULE.items())
    if not torch_rule:
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


def _torch_rounding_update(
    hp: Hyperparameters,
    group: dict[str, Any],
    params: list[torch.Tensor],
    states: list[dict[str, Any]],
) -> None:
    """One step with torch.optim.RMSprop's numbers, bit for bit.

    Dense float32 and float64 tensors (parameter, gradient and state of one dtype
    and layout) go to a fused kernel performing PyTorch's sequence of operations
    in one pass (:mod:`rmsprop._torch_kernel` on the CPU, :mod:`rmsprop._triton` on
    CUDA), where its first-use check found that it reproduces this process's torch
    for these options and dtype. The others go to ``torch.optim.rmsprop.rmsprop``,
    PyTorch's own functional RMSProp (``foreach`` chooses its implementation, as
    there). The centered variance is not clamped.
    """
    if not params:
        return
    fused: dict[tuple[torch.device, torch.dtype], tuple[list[Member], list[torch.Tensor]]] = {}
    rest: list[tuple[torch.Tensor, dict[str, Any]]] = []
    differentiable = group.get("differentiable", False)
    capturable = group.get("capturable", False)
    backend = (
        None
        if differentiable or capturable
        else _torch_rounding_backend(params[0], sum(p.numel() for p in params), hp)
    )
    for p, state in zip(params, states, strict=True):
        g = cast(torch.Tensor, p.grad)
        buffers = [state.get(key) for key in STATE_KEYS]
        if backend is not None and type(p) in _PLAIN and backend.takes(p, g, buffers):
            members, steps = fused.setdefault((p.device, p.dtype), ([], []))
            members.append((p, g, buffers))
            steps.append(state["step"])
        else:
            rest.append((p, state))
    for members, steps in fused.values():
        cast(_Backend, backend).run(members, hp, False)
        _count(steps)
    if not rest:
        return
    with torch.set_grad_enabled(differentiable):
        _torch_functional(hp, group, rest)


def _torch_functional(
    hp: Hyperparameters, group: dict[str, Any], rest: list[tuple[torch.Tensor, dict[str, Any]]]
) -> None:
    _TORCH_FUNCTIONAL(
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


class _Plan:
    """A param group's step on a fused kernel, kept while nothing it rests on changed.

    Built after a step that sent every parameter of the group with a gradient to
    one fused kernel (Numba on the CPU, Triton on CUDA). A later step reuses it,
    skipping the per-parameter classification, when the group is the same dict with
    the same parameters having gradients and options of the same kind, and every
    parameter is still the tensor it was (address, shape, dtype), its state
    buffers the same tensors, and its gradient of its dtype and layout; anything
    else takes the general path, which builds a new plan. Only the gradients'
    addresses may change.
    """

    __slots__ = ("backend", "entries", "group", "launches", "options", "params", "steps")

    def __init__(
        self,
        backend: "_Backend",
        group: dict[str, Any],
        params: list[torch.Tensor],
        options: tuple[Any, ...],
        entries: list[tuple[Any, ...]],
        launches: list[tuple[Any, list[int] | None]],
        steps: list[list[torch.Tensor]],
    ) -> None:
        self.backend, self.group, self.params, self.options = backend, group, params, options
        self.entries, self.launches, self.steps = entries, launches, steps

    @classmethod
    def build(
        cls,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hp: Hyperparameters,
        states: Any,
    ) -> "_Plan | None":
        """The plan of a group whose every parameter a fused kernel takes, or None."""
        first = params[0]
        kind = "cuda" if first.is_cuda else first.device.type
        elements = sum(p.numel() for p in params)
        backend = (
            _torch_rounding_backend(first, elements, hp)
            if group["rounding"] == "pytorch"
            else _backend(first, elements)
        )
        if backend is None:
            return None
        float32_arithmetic = group["float32_arithmetic"]
        entries = []
        members: dict[tuple[Any, ...], list[int]] = {}
        steps: dict[torch.device, list[torch.Tensor]] = {}
        for i, p in enumerate(params):
            state, g = states[p], cast(torch.Tensor, p.grad)
            buffers = [state.get(key) for key in STATE_KEYS]
            if (
                type(p) not in _PLAIN
                or p.is_complex()
                or ("cuda" if p.is_cuda else p.device.type) != kind
                or not backend.takes(p, g, buffers)
            ):
                return None
            stride = None if p.is_contiguous() else p.stride()
            entries.append((p.data_ptr(), p.shape, p.dtype, g.dtype, stride, *buffers))
            if p.numel():
                key = (p.device, p.dtype, g.dtype, buffers[0].dtype)
                members.setdefault(key, []).append(i)
            steps.setdefault(state["step"].device, []).append(state["step"])
        launches = []
        for indices in members.values():
            launch = backend.launch(
                [
                    (params[i], cast(torch.Tensor, params[i].grad), [*entries[i][5:]])
                    for i in indices
                ],
                hp,
                float32_arithmetic,
            )
            launches.append((launch, None if len(indices) == len(params) else indices))
        options = (hp.switches, float32_arithmetic, group["rounding"])
        return cls(backend, group, params, options, entries, launches, list(steps.values()))

    def gradients(
        self, group: dict[str, Any], params: list[torch.Tensor], hp: Hyperparameters, states: Any
    ) -> list[torch.Tensor] | None:
        """The gradients of ``params`` if this plan still holds for them, else None."""
        if group is not self.group or len(params) != len(self.params):
            return None
        if self.options != (hp.switches, group["float32_arithmetic"], group["rounding"]):
            return None
        if isinstance(self.backend, _Triton) and _accel.triton() is None:
            return None  # the Triton kernel was turned off meanwhile
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
                or type(g) not in _PLAIN
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

    def run(self, grads: list[torch.Tensor], hp: Hyperparameters) -> None:
        """The step: one launch per (device, dtypes), then the counters."""
        for launch, indices in self.launches:
            launch(grads if indices is None else [grads[i] for i in indices], hp)
        for steps in self.steps:
            torch._foreach_add_(steps, 1.0)


def _plannable(group: dict[str, Any], hp: Hyperparameters) -> bool:
    """Whether a group's step may be kept as a plan: not with per-parameter step
    counts read on the host (bias correction), nor when PyTorch's functional steps
    it for autograd or CUDA graphs."""
    return not (
        hp.bias_correction or group.get("differentiable", False) or group.get("capturable", False)
    )


def _check_capturable(params: list[torch.Tensor], states: list[dict[str, Any]]) -> None:
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


def _check_state_shapes(p: torch.Tensor, state: dict[str, Any]) -> None:
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
        if not (buffer.is_floating_point() or buffer.is_complex()):
            raise RuntimeError(
                f"the {key} of a parameter has dtype {buffer.dtype}; nothing was updated"
            )


#: Options a checkpoint may lack (written before they existed): their defaults.
_OPTION_DEFAULTS: Final = {
    name: field.default
    for name, field in Hyperparameters.__dataclass_fields__.items()
    if name != "lr"
}


def _scalar(value: object) -> object:
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


def _group_hyperparameters(group: dict[str, Any]) -> Hyperparameters:
    """A group's options; a group of rmsprop.torch.RMSprop names ``beta`` ``alpha``."""
    options: dict[str, Any] = {
        name: _scalar(group[name] if name != "beta" or "beta" in group else group["alpha"])
        for name in OPTION_NAMES
    }
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


Member = tuple[torch.Tensor, torch.Tensor, list[Any]]


class Launched(Protocol):
    """A kept launch: called with the gradients, the options and the bias correction."""

    def __call__(
        self, grads: list[torch.Tensor], hp: Hyperparameters, correction: float = 1.0, /
    ) -> None: ...


class _Backend:
    """A fused kernel as the torch paths use it: which dtypes it stores, how to launch it
    over a group of members once (``run``) or to keep a launch for later steps."""

    dtypes: tuple[torch.dtype, ...] = ()

    def launch(
        self, members: list[Member], hp: Hyperparameters, float32_arithmetic: bool
    ) -> "Launched":
        """A launch over ``members``, called with their gradients, the options and the
        bias correction of the step."""
        raise NotImplementedError

    def run(
        self,
        members: list[Member],
        hp: Hyperparameters,
        float32_arithmetic: bool,
        correction: float = 1.0,
    ) -> None:
        self.launch(members, hp, float32_arithmetic)([g for _, g, _ in members], hp, correction)

    def takes(self, p: torch.Tensor, g: torch.Tensor, buffers: list[torch.Tensor | None]) -> bool:
        """Whether this kernel can update ``p`` (see :func:`_kernel_can_update`)."""
        return _kernel_can_update(self.dtypes, p, g, buffers)


class _Triton(_Backend):
    """The Triton kernel (CUDA): float32, float64, bfloat16 and float16 storage."""

    dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)

    def __init__(self, module: Any) -> None:
        self.module = module

    def launch(
        self, members: list[Member], hp: Hyperparameters, float32_arithmetic: bool
    ) -> "Launched":
        return cast(
            Launched, self.module.Launch(members, hp, float32_arithmetic=float32_arithmetic)
        )

    def run(
        self,
        members: list[Member],
        hp: Hyperparameters,
        float32_arithmetic: bool,
        correction: float = 1.0,
    ) -> None:
        self.module.update(
            members, hp, float32_arithmetic=float32_arithmetic, correction=correction
        )


class _Numba(_Backend):
    """The Numba group kernel (CPU): float32, float64, bfloat16 and float16 storage."""

    dtypes = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
    kinds: Final = {
        torch.float32: "float32",
        torch.float64: "float64",
        torch.bfloat16: "bfloat16",
        torch.float16: "float16 via float32",
    }

    def __init__(self, module: Any) -> None:
        self.module = module

    def launch(
        self, members: list[Member], hp: Hyperparameters, float32_arithmetic: bool
    ) -> "Launched":
        rows = [
            (
                p.data_ptr(),
                v.data_ptr(),
                0 if b is None else b.data_ptr(),
                0 if a is None else a.data_ptr(),
                p.numel(),
            )
            for p, _, (v, b, a) in members
        ]
        p, g, (v, _, _) = members[0]
        kinds = (self.kinds[p.dtype], self.kinds[g.dtype], self.kinds[v.dtype])
        launch = self.module.Launch(rows, kinds, hp, float32_arithmetic=float32_arithmetic)

        def run(grads: list[torch.Tensor], hp: Hyperparameters, correction: float = 1.0) -> None:
            launch([g.data_ptr() for g in grads], hp, correction)

        return run


class _TorchOrder(_Backend):
    """A kernel in torch.optim.RMSprop's own order of roundings, for ``kind`` tensors
    of the dtypes and options that its first-use check found it reproduces."""

    dtypes = (torch.float32, torch.float64)
    kind = ""

    def __init__(self, module: Any, hp: Hyperparameters) -> None:
        self.module, self.hp = module, hp

    def reproduces_torch(self, p: torch.Tensor) -> bool:
        """The first-use check for ``p``'s dtype and device (see rmsprop._torch_probe)."""
        raise NotImplementedError

    def takes(self, p: torch.Tensor, g: torch.Tensor, buffers: list[torch.Tensor | None]) -> bool:
        return (
            ("cuda" if p.is_cuda else p.device.type) == self.kind
            and _kernel_can_update((p.dtype,), p, g, buffers)
            and self.reproduces_torch(p)
        )


class _TorchRounding(_TorchOrder):
    """rmsprop._torch_kernel: torch.optim.RMSprop's CPU arithmetic."""

    kind = "cpu"

    def launch(
        self, members: list[Member], hp: Hyperparameters, float32_arithmetic: bool
    ) -> "Launched":
        return cast(Launched, self.module.Launch(members, hp))

    def reproduces_torch(self, p: torch.Tensor) -> bool:
        return bool(self.module.matches(self.hp, p.dtype))


class _TritonTorchRounding(_TorchOrder):
    """rmsprop._triton in torch's CUDA order."""

    kind = "cuda"

    def launch(
        self, members: list[Member], hp: Hyperparameters, float32_arithmetic: bool
    ) -> "Launched":
        return cast(Launched, self.module.Launch(members, hp, order=self.module.TORCH))

    def reproduces_torch(self, p: torch.Tensor) -> bool:
        return bool(self.module.matches_torch(self.hp, p.dtype, p.device))


def _torch_rounding_backend(
    first: torch.Tensor, elements: int, hp: Hyperparameters
) -> _Backend | None:
    """The kernel in torch's order for ``first``'s device: on CUDA the Triton kernel,
    when it loads; on the CPU the Numba one, when the Numba kernels load (see
    rmsprop._accel) and this torch has MKL's square root."""
    if first.is_cuda:
        triton = _accel.triton()
        return None if triton is None else _TritonTorchRounding(triton, hp)
    if first.device.type != "cpu" or _accel.kernels(elements) is None:
        return None
    from rmsprop import _torch_kernel  # noqa: PLC0415 - imports Numba

    return _TorchRounding(_torch_kernel, hp) if _torch_kernel.VML_SQRT is not None else None


def _backend(p: torch.Tensor, elements: int) -> _Backend | None:
    """The fused kernel for ``p``'s device, if it loads (see rmsprop._dispatch)."""
    found = _dispatch.fused_kernel("cuda" if p.is_cuda else p.device.type, elements)
    if found is None:
        return None
    name, module = found
    return _Triton(module) if name == "triton" else _Numba(module)


def _update(work: list[tuple[torch.Tensor, Hyperparameters, dict[str, Any], bool, float]]) -> None:
    """One family step for every (param, options, state), computed wide, rounded once.

    Plain dense tensors (contiguous, or laid out alike in any order of dimensions)
    go to a fused kernel, one launch per group of options, device and dtypes: the
    Numba group kernel on the CPU, the Triton kernel on CUDA (float32, float64,
    bfloat16, float16). The others (views with gaps, other devices, DTensors that
    cannot be updated shard by shard) take ``torch._foreach_*``
    operations on bounded slices. This loop runs once per parameter and step:
    keep it lean.
    """
    fused: dict[tuple[Any, ...], tuple[Hyperparameters, list[Member], list[torch.Tensor]]] = {}
    groups: dict[tuple[Any, ...], tuple[list[Member], list[torch.Tensor]]] = {}
    gpu_types = _dispatch.GPU_DEVICE_TYPES
    fused_kinds = (*gpu_types, "cpu")
    for param, hp, state, float32_arithmetic, correction in work:
        p, g = param, param.grad
        assert g is not None  # step() gathers only parameters with a gradient
        buffers = [state.get(key) for key in STATE_KEYS]
        if p.is_complex():
            p, g = torch.view_as_real(p), torch.view_as_real(g)
            buffers = [None if b is None else torch.view_as_real(b) for b in buffers]
        if type(p) not in _PLAIN:
            p, g, buffers = _local(p, g, buffers)
        kind = "cuda" if p.is_cuda else p.device.type
        dtypes = _Triton.dtypes if kind in gpu_types else _Numba.dtypes
        if kind in fused_kinds and _kernel_can_update(dtypes, p, g, buffers):
            state_dtype = cast(torch.Tensor, buffers[0]).dtype
            fused_key = (
                id(hp),
                correction,
                p.device,
                float32_arithmetic,
                p.dtype,
                g.dtype,
                state_dtype,
            )
            _, members, steps = fused.setdefault(fused_key, (hp, [], []))
            members.append((p, g, buffers))
            steps.append(state["step"])
            continue
        device = p.device
        dtypes = (p.dtype, g.dtype, *(b.dtype for b in buffers if b is not None))
        narrow = device.type == "mps" or _float32_work(dtypes, float32_arithmetic)
        members, steps = groups.setdefault(
            (hp, correction, device, type(p), narrow, dtypes), ([], [])
        )
        members.append((p, g, buffers))
        steps.append(state["step"])
    for (_, correction, device, float32_arithmetic, *kinds), (hp, members, steps) in fused.items():
        if _fused_update(members, hp, float32_arithmetic, correction):
            _count(steps)  # each counter advances with its parameter's update
        else:
            narrow = _float32_work(kinds, float32_arithmetic)
            fallback = groups.setdefault(
                (hp, correction, device, torch.Tensor, narrow, tuple(kinds)), ([], [])
            )
            fallback[0].extend(members)
            fallback[1].extend(steps)
    for (hp, correction, _, _, narrow, _), (members, steps) in groups.items():
        _foreach_update(members, hp, torch.float32 if narrow else torch.float64, correction)
        _count(steps)


def _count(steps: list[torch.Tensor]) -> None:
    """Advance step counters: one call for them all (per device, as foreach wants)."""
    if not steps:
        return
    first = steps[0].device
    if all(step.device == first for step in steps):
        torch._foreach_add_(steps, 1.0)
        return
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for step in steps:
        by_device.setdefault(step.device, []).append(step)
    for same in by_device.values():
        torch._foreach_add_(same, 1.0)


def _fused_update(
    members: list[Member], hp: Hyperparameters, float32_arithmetic: bool, correction: float
) -> bool:
    """A fused kernel over ``members`` in one launch; False where none can run (no Numba,
    no Triton, or a Triton kernel that failed to compile or launch: then off, warned)."""
    backend = _backend(members[0][0], sum(p.numel() for p, _, _ in members))
    if backend is None:
        return False
    try:
        backend.run(members, hp, float32_arithmetic, correction)
    except Exception as error:
        if not isinstance(backend, _Triton):
            raise
        _accel.disable_triton(f"{type(error).__name__}: {error}")  # refused before any write
        return False
    return True


def _local(p: torch.Tensor, g: torch.Tensor, buffers: list[Any]) -> Member:
    """For DTensors laid out alike (no pending reductions), their local shards.

    The update is elementwise, so each rank updates its own shard with the plain
    paths; other DTensors stay as they are and take the foreach path whole.
    """
    if type(p) in _PLAIN or not hasattr(p, "placements"):
        return p, g, buffers
    tensors: list[Any] = [p, g, *(b for b in buffers if b is not None)]
    if not all(
        hasattr(t, "placements")
        and t.placements == p.placements
        and t.device_mesh == tensors[0].device_mesh
        and t.shape == p.shape
        for t in tensors
    ) or any(placement.is_partial() for placement in p.placements):
        return p, g, buffers
    return (
        tensors[0].to_local(),
        tensors[1].to_local(),
        [None if b is None else cast(Any, b).to_local() for b in buffers],
    )


#: Elements per batch of the foreach path, by device type (others: FOREACH_BATCH_OTHER).
#: Its float64 temporaries peak at 104 bytes per batch element (measured, momentum and
#: centered): 6.5 MiB on the CPU, 26 MiB elsewhere.
FOREACH_BATCH: Final = {"cpu": 1 << 16}
FOREACH_BATCH_OTHER: Final = 1 << 18


def _foreach_update(
    members: list[Member], hp: Hyperparameters, work: torch.dtype, correction: float
) -> None:
    """The rule on lists of tensors of one device and dtype, with ``torch._foreach_*``.

    The tensors are cut into aligned slices and the slices gathered into batches
    of at most :data:`FOREACH_BATCH` elements, so that the temporaries of the
    wide arithmetic never exceed a batch (plain tensors; others go whole).
    """
    limit = FOREACH_BATCH.get(members[0][0].device.type, FOREACH_BATCH_OTHER)
    batch: list[list[torch.Tensor | None]] = []
    size = 0
    for p, g, buffers in members:
        tensors = [p, g, *buffers]
        if all(t is None or type(t) in _PLAIN for t in tensors):
            # Detached: views of the parameters, outside autograd (torch.compile traces this).
            plain = [None if t is None else t.detach() for t in tensors]
            pieces: Iterable[Sequence[torch.Tensor | None]] = slices(plain, limit)
        else:  # DTensors that cannot be cut: whole
            pieces = [tensors]
        for piece in pieces:
            n = cast(torch.Tensor, piece[0]).numel()
            if batch and size + n > limit:
                _foreach_batch(batch, hp, work, correction)
                batch, size = [], 0
            batch.append(list(piece))
            size += n
    if batch:
        _foreach_batch(batch, hp, work, correction)


def _float32_work(dtypes: Iterable[torch.dtype], float32_arithmetic: bool) -> bool:
    """Whether the foreach path computes these dtypes in float32 (see rmsprop._dispatch)."""
    return _dispatch.float32_work(
        (str(d).removeprefix("torch.") for d in dtypes), float32_arithmetic
    )


def _kernel_can_update(
    dtypes: tuple[torch.dtype, ...],
    p: torch.Tensor,
    g: torch.Tensor,
    buffers: list[torch.Tensor | None],
) -> bool:
    """Whether a fused kernel applies: plain dense tensors of one device and layout.

    The parameter and the gradient each have one of ``dtypes``, the state buffers
    share one; all have the parameter's shape and are contiguous, or dense with
    the same strides (so that element i of each one's memory is the same
    element). The kernel trusts these sizes: this check keeps it in bounds.
    """
    v, b, a = buffers
    if v is None or p.dtype not in dtypes or g.dtype not in dtypes or v.dtype not in dtypes:
        return False
    # torch keeps a gradient of its parameter's shape and device; the state is checked.
    shape, device, state_dtype = p.shape, p.device, v.dtype
    contiguous = p.is_contiguous() and g.is_contiguous()
    for t in (v, b, a):
        if t is None:
            continue
        if type(t) not in _PLAIN or t.shape != shape or t.device != device:
            return False
        if t.dtype != state_dtype:
            return False
        contiguous = contiguous and t.is_contiguous()
    if contiguous:
        return type(g) in _PLAIN and g.shape == shape
    stride = p.stride()
    return (
        type(g) in _PLAIN
        and g.shape == shape
        and _dispatch.dense(p.shape, stride)
        and all(t is None or t.stride() == stride for t in (g, *buffers))
    )


def _foreach_batch(
    batch: list[list[torch.Tensor | None]],
    hp: Hyperparameters,
    work: torch.dtype,
    correction: float,
) -> None:
    params: list[torch.Tensor] = [piece[0] for piece in batch]  # type: ignore[misc]
    columns = list(zip(*(piece[2:] for piece in batch), strict=True))
    new_p, new_state = family_update(
        _TensorList([p.to(work) for p in params]),
        _TensorList([piece[1].to(work) for piece in batch]),  # type: ignore[union-attr]
        State(*(None if c[0] is None else _TensorList([b.to(work) for b in c]) for c in columns)),
        hp,
        _TensorList.sqrt,
        _TensorList.clamp_at_zero,
        correction,
    )
    _copy(params, new_p.tensors)
    for column, value in zip(columns, new_state, strict=True):
        if column[0] is not None:
            _copy(list(column), value.tensors)


def _copy(targets: list[torch.Tensor], values: list[torch.Tensor]) -> None:
    """``targets[i].copy_(values[i])``: one foreach call where the tensors allow it.

    DTensor has no sharding rule for ``_foreach_copy_``; its tensors copy one by one.
    """
    if all(type(t) in _PLAIN for t in targets):
        torch._foreach_copy_(targets, values)
    else:
        for target, value in zip(targets, values, strict=True):
            target.copy_(value)


class _TensorList:
    """Tensors that do arithmetic together through ``torch._foreach_*``.

    Just the operations :func:`rmsprop._rule.family_update` uses, so that the rule
    runs unchanged on whole lists of tensors.
    """

    __slots__ = ("tensors",)

    def __init__(self, tensors: Sequence[torch.Tensor]) -> None:
        self.tensors = list(tensors)

    @staticmethod
    def _operand(other: "_TensorList | float") -> Any:
        return other.tensors if isinstance(other, _TensorList) else other

    def __add__(self, other: "_TensorList | float") -> "_TensorList":
        return _TensorList(torch._foreach_add(self.tensors, self._operand(other)))

    __radd__ = __add__

    def __sub__(self, other: "_TensorList | float") -> "_TensorList":
        return _TensorList(torch._foreach_sub(self.tensors, self._operand(other)))

    def __rsub__(self, other: float) -> "_TensorList":
        return _TensorList(torch._foreach_add(torch._foreach_neg(self.tensors), other))

    def __mul__(self, other: "_TensorList | float") -> "_TensorList":
        return _TensorList(torch._foreach_mul(self.tensors, self._operand(other)))

    __rmul__ = __mul__

    def __truediv__(self, other: "_TensorList | float") -> "_TensorList":
        return _TensorList(torch._foreach_div(self.tensors, self._operand(other)))

    def __rtruediv__(self, other: float) -> "_TensorList":
        return _TensorList(torch._foreach_mul(torch._foreach_reciprocal(self.tensors), other))

    def __neg__(self) -> "_TensorList":
        return _TensorList(torch._foreach_neg(self.tensors))

    def sqrt(self) -> "_TensorList":
        """Correctly rounded square roots.

        PyTorch's CPU ``sqrt`` (vectorized, Sleef) is up to 1 ulp off on about 0.7% of
        values, in float64 and float32 alike (measured here with AVX-512); plain
        CPU tensors take NumPy's, which is IEEE 754's. CUDA's is correctly rounded.
        """
        if all(type(t) in _PLAIN and t.device.type == "cpu" for t in self.tensors):
            with np.errstate(invalid="ignore"):  # sqrt(negative) is NaN, as in torch
                return _TensorList(  # asarray: NumPy gives 0-d arrays' roots as scalars
                    [
                        torch.from_numpy(np.asarray(np.sqrt(t.detach().numpy())))
                        for t in self.tensors
                    ]
                )
        return _TensorList(torch._foreach_sqrt(self.tensors))

    def clamp_at_zero(self) -> "_TensorList":
        return _TensorList(torch._foreach_clamp_min(self.tensors, 0.0))


_PLAIN: Final = (torch.Tensor, torch.nn.Parameter)
