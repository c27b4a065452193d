"""The two public classes: ``RMSProp`` (the family) and ``RMSprop`` (``torch.optim.RMSprop``'s
signature). Their ``step`` checks every group, then runs each group's route
(:mod:`rmsprop.torch._group`); checkpoints and arguments follow
:mod:`rmsprop.torch._compat`.
"""

import functools
import operator
from collections.abc import Callable, Iterable
from typing import Any, Unpack, cast

import torch
from torch.optim import Optimizer

from rmsprop._options import FamilyOptions, Hyperparameters
from rmsprop.torch import _compat, _flatten, _group, _lowbit, _state, _stepping
from rmsprop.torch._compat import STATE_KEYS, TORCH_FLAGS
from rmsprop.torch._in_backward import Hooks
from rmsprop.torch._plan import Plan


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
        state_bits: 32 (default): the state in ``state_dtype``; 16: the state in
            bfloat16, each value rounded stochastically (up or down with the
            probabilities that make its expected value the float32 value), from
            random bits that depend only on ``seed``, the step, the parameter's place
            in the optimizer and the element: the same on the CPU and on CUDA, and
            after a checkpoint. Half the memory of float32 state, without the bias
            that rounding to nearest adds once updates fall below bfloat16's
            resolution. 8: each buffer of a parameter of at least 4,096 elements as
            one-byte codes with a float32 scale per block of 256 (see
            ``rmsprop._blockwise``), rounded stochastically; smaller parameters keep
            float32 state. Both run on the fused kernels (Numba, Triton), views with
            gaps through dense copies; where no kernel runs (MPS, CUDA without
            Triton), the same step in torch operations, many times slower.
        seed: the random streams of ``state_bits`` 16 and 8 and of
            ``stochastic_rounding`` (default 0).
        stochastic_rounding: write bfloat16 parameters with stochastic rounding
            (default False): each new value, rounded to float32, goes to one of its
            two bfloat16 neighbours with the probabilities that make its expected
            value the float32 value, from the same random streams as the state
            (``seed``, the step, the parameter's place, the element), so that updates
            below bfloat16's resolution still move a parameter on average, as with
            float32 master weights, without them. Other parameters' dtypes are
            rounded to nearest as usual. The fused kernels (or, where none runs, their
            step in torch operations) write it; not with ``rounding="pytorch"``.
        step_in_backward: step each parameter inside ``backward()`` as soon as
            its gradient is complete, and free the gradient (peak memory without
            the gradients of the whole model); ``step()`` then only ends the
            iteration. The same numbers and checkpoints as ordinary stepping; no
            gradient accumulation, no global-norm clipping, one process only
            (see the docs' PyTorch page).
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

    @staticmethod
    def profile_hook_step(func: Callable[..., Any]) -> Callable[..., Any]:
        """What ``torch.optim.Optimizer`` wraps every ``step`` in (a profiler range and
        the step hooks), leaner where no hook is registered: see
        :func:`rmsprop.torch._stepping.profiled`."""
        return _stepping.profiled(func, Optimizer.profile_hook_step(func))

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float | None = None,
        *,
        preset: str | None = None,
        state_dtype: torch.dtype | None = None,
        float32_arithmetic: bool = False,
        rounding: str = "once",
        step_in_backward: bool = False,
        state_bits: int = 32,
        seed: int = 0,
        stochastic_rounding: bool = False,
        **options: Unpack[FamilyOptions],
    ) -> None:
        given: dict[str, Any] = dict(options)
        if preset == "pytorch" and "alpha" in given:  # torch.optim.RMSprop's name for beta
            if "beta" in given:
                raise TypeError("give beta or alpha (PyTorch's name for it), not both")
            given["beta"] = given.pop("alpha")
        if lr is not None:
            given["lr"] = _compat.scalar(lr)
        hp = Hyperparameters.from_preset(preset, **given)
        defaults = {
            **hp.as_dict(),
            "state_dtype": state_dtype,
            "float32_arithmetic": float32_arithmetic,
            "rounding": rounding,
            "state_bits": state_bits,
            "seed": seed,
            "stochastic_rounding": stochastic_rounding,
        }
        self._plans: dict[int, Plan] = {}  # by group index: see rmsprop.torch._plan
        self._seen = _Seen(None)
        self._kept_steps = 0  # group steps that ran a kept plan (then no state was created)
        self._start_hooks(step_in_backward)
        Optimizer.__init__(self, params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        """What torch keeps (defaults, state, param groups), and whether the optimizer
        steps inside ``backward()``."""
        return {**super().__getstate__(), "step_in_backward": self._hooks is not None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Copies (``copy.deepcopy``, ``pickle``, ``torch.save``) keep what torch keeps
        (defaults, state, param groups); the kept launches are rebuilt at the next step,
        and a copy of an optimizer that steps inside ``backward()`` hooks its own
        parameters."""
        state = dict(state)
        in_backward = state.pop("step_in_backward", None)
        super().__setstate__(state)
        self._plans = {}
        self._seen = _Seen(None)
        self._kept_steps = 0  # group steps that ran a kept plan (then no state was created)
        if in_backward is None and hasattr(self, "_hooks"):
            return  # torch's load_state_dict, into this optimizer: its hooks stay
        self._start_hooks(bool(in_backward))
        for index, group in enumerate(self.param_groups):
            self._group_of.update((id(p), index) for p in group["params"])
            if self._hooks is not None:
                self._hooks.register(group["params"])

    def _start_hooks(self, step_in_backward: bool) -> None:
        self._hooks = Hooks(self) if step_in_backward else None
        self._group_of: dict[int, int] = {}  # id(param) -> group index
        self._places: tuple[list[Any], dict[int, int]] | None = None  # see _streams

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its options are checked now (and again at each step)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _compat.check_group(group)
            if self._hooks is not None:
                self._hooks.register(group["params"])
        except (TypeError, ValueError, RuntimeError):
            self.param_groups.pop()
            raise
        self._group_of.update((id(p), len(self.param_groups) - 1) for p in group["params"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients, as ``torch.optim.Optimizer.zero_grad`` does, except that
        gradients in a flat buffer of :func:`rmsprop.torch.flatten_` are zeroed in place
        and stay there (setting them to None would free nothing, and the next backward
        would allocate them elsewhere): a parameter that a backward then does not reach
        is stepped with a zero gradient, as with ``set_to_none=False``."""
        _flatten.zero_kept(self, set_to_none)

    @_stepping.opaque_to_dynamo
    @_stepping.without_grad
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step over every parameter that has a gradient; returns ``closure()``'s loss.

        Everything that can be checked is checked for every group before the first
        write: options, sparse gradients, the shapes of the state. The groups are
        then written one by one (kernel launches, or ``torch._foreach_*`` series),
        and each parameter's ``step`` counter advances right after it is written.
        An error after that point (in practice, running out of memory in the
        foreach path, which works slice by slice) leaves the groups written before
        it updated and counted, the group being written partly updated and not
        counted, and the others untouched.

        With ``step_in_backward=True`` the parameters were stepped inside
        ``backward()`` (``closure``'s included); this steps those whose gradient
        was set otherwise, and ends the iteration.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        same_state = self._seen.same(self.state)
        kept = self._kept_steps
        steps = [
            self._prepare(index, group, same_state) for index, group in enumerate(self.param_groups)
        ]
        for run in steps:
            run()
        if not same_state or self._kept_steps - kept != len(steps):  # state may have grown
            self._seen = _Seen(self.state)
        if self._hooks is not None:
            self._hooks.stepped.clear()
        return loss

    @torch.no_grad()
    def step_parameter(self, p: torch.Tensor) -> None:
        """Step one parameter with its gradient, as a step of its group would (the
        hooks of ``step_in_backward=True`` call this)."""
        group = self.param_groups[self._group_of[id(p)]]
        hp, torch_rounding = _checked_options(group)
        _with_gradients([p])
        states = self._checked_states(group, hp, torch_rounding, [p])
        _group.run(hp, group, [p], states, self._streams(group, [p]))

    def _prepare(self, index: int, group: dict[str, Any], same_state: bool) -> Callable[[], None]:
        """Check a group and create its missing state; its step, ready to run."""
        hp, torch_rounding = _checked_options(group)
        kept = self._plans.get(index)
        found = None if kept is None else kept.gradients(group, hp, self.state, same_state)
        if kept is not None and found is not None:  # the step before's launches still hold
            self._kept_steps += 1
            params, grads = found
            return functools.partial(_group.run_plan, kept, grads, hp, group, params, self.state)
        params = _with_gradients(group["params"])
        if not params:
            return _nothing
        states = self._checked_states(group, hp, torch_rounding, params)
        streams = self._streams(group, params)
        kept = _group.plan(group, params, hp, states, streams)
        if kept is None:
            self._plans.pop(index, None)
            return functools.partial(_group.run, hp, group, params, states, streams)
        self._plans[index] = kept
        grads = [cast(torch.Tensor, p.grad) for p in params]
        return functools.partial(_group.run_plan, kept, grads, hp, group, params, self.state)

    def _streams(self, group: dict[str, Any], params: list[torch.Tensor]) -> list[int]:
        """The random stream of each of ``params`` where the group rounds anything
        stochastically (``state_bits`` 16 or 8, ``stochastic_rounding``): its place among
        all the optimizer's parameters, as ``state_dict()`` numbers them; else zeros. The
        places are kept while every parameter asked for is still found at its place (one
        parameter a call with ``step_in_backward``: no walk over them all each time)."""
        if not _lowbit.drawn(group):
            return [0] * len(params)
        places = self._places
        if places is None or not all(
            places[1].get(id(p), -1) >= 0 and places[0][places[1][id(p)]] is p for p in params
        ):
            every = [q for g in self.param_groups for q in g["params"]]
            places = self._places = (every, {id(q): k for k, q in enumerate(every)})
        return [places[1][id(p)] for p in params]

    def _checked_states(
        self, group: dict[str, Any], hp: Hyperparameters, torch_rounding: bool, params: list[Any]
    ) -> list[dict[str, Any]]:
        """The state of each of ``params`` (created where missing), checked."""
        _compat.check_state_bits(group, params)
        states = [self.state[p] for p in params]
        dtype = None if torch_rounding else _compat.group_state_dtype(group)
        flat = not group.get("differentiable", False)
        _lowbit.conform(params, states, group)
        _state.add_missing(params, states, hp, dtype, flat=flat, bits=_lowbit.group_bits(group))
        for p, state in zip(params, states, strict=True):
            _compat.check_state_shapes(p, state)
            _lowbit.check_state(p, state)
        if torch_rounding and group.get("capturable", False):
            _compat.check_capturable(params, states)
        return states

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state; groups with PyTorch's rule also carry its key ``alpha``."""
        state_dict = super().state_dict()
        state_dict["param_groups"] = [
            _compat.with_torch_keys(g) for g in state_dict["param_groups"]
        ]
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint of this optimizer or of ``torch.optim.RMSprop``.

        Everything is checked before anything changes: the options of every group,
        and the shape of every state buffer against its parameter. Options that a
        checkpoint lacks (written before they existed, e.g. ``maximize`` by torch
        before 1.13) take their defaults, and a ``step`` saved as a number (older
        torch) becomes a tensor, as ``torch.optim.RMSprop`` loads them.
        """
        groups = _compat.saved_groups(state_dict, self.param_groups)
        state = {  # entries that are not a parameter's dict pass through, as in PyTorch
            index: dict(values) if isinstance(values, dict) else values
            for index, values in state_dict["state"].items()
        }
        _compat.check_saved_state(groups, self.param_groups, state)
        self._plans.clear()
        self._seen = _Seen(None)  # nor keep the replaced state alive
        super().load_state_dict({**state_dict, "param_groups": groups, "state": state})
        # The base class casts all state but the step to each parameter's dtype: keep
        # the state_dtype of groups that have one, 8-bit codes and their float32
        # scales, from the checkpoint's own values.
        saved_state = state_dict["state"]
        scale_keys = set(_lowbit.SCALE_KEYS.values())
        for group, saved_group in zip(self.param_groups, groups, strict=True):
            wanted = _compat.group_state_dtype(group)
            for p, index in zip(group["params"], saved_group["params"], strict=True):
                for key, value in saved_state.get(index, {}).items():
                    if not isinstance(value, torch.Tensor):
                        continue
                    if key in scale_keys:
                        self.state[p][key] = value.to(p.device, torch.float32)
                    elif key in STATE_KEYS and value.dtype == torch.uint8:
                        self.state[p][key] = value.to(p.device)
                    elif key in STATE_KEYS and wanted is not None:
                        self.state[p][key] = value.to(p.device, _compat.state_dtype(p, wanted))
            params = [p for p in group["params"] if p in self.state]
            _lowbit.conform(params, [self.state[p] for p in params], group)
            # Flat, as state created by a step (and no longer the checkpoint's tensors).
            if not group.get("differentiable", False):
                _state.rehome(params, [self.state[p] for p in params])


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
    its checkpoints load into ``torch.optim.RMSprop`` and back. One argument of its
    own, keyword-only: ``step_in_backward`` (see :class:`RMSProp`).

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
        *,
        step_in_backward: bool = False,
    ) -> None:
        flags = {"capturable": capturable, "foreach": foreach, "differentiable": differentiable}
        _compat.check_torch_flags(flags)
        _compat.check_torch_arguments(
            lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha
        )
        hp = Hyperparameters.from_preset(
            "pytorch", lr=_compat.scalar(lr), beta=alpha, eps=eps, weight_decay=weight_decay,
            momentum=momentum, centered=centered, maximize=maximize,
        )  # fmt: skip
        defaults = {name: value for name, value in hp.as_dict().items() if name != "beta"}
        defaults |= {"alpha": hp.beta, **flags, "state_dtype": None, "float32_arithmetic": False}
        defaults |= {"state_bits": 32, "seed": 0, "stochastic_rounding": False}
        defaults["rounding"] = "pytorch"
        self._plans = {}
        self._seen = _Seen(None)
        self._kept_steps = 0  # group steps that ran a kept plan (then no state was created)
        self._start_hooks(step_in_backward)
        Optimizer.__init__(self, params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group with PyTorch's keys (``alpha``); checked as in :class:`RMSProp`."""
        if "beta" in param_group:
            raise TypeError("rmsprop.torch.RMSprop's groups name beta alpha, as PyTorch does")
        _compat.check_torch_flags(param_group)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a checkpoint of this optimizer, of :class:`RMSProp` with PyTorch's rule, or
        of ``torch.optim.RMSprop``; the groups keep PyTorch's keys."""
        flags = [
            {k: group.get(k, self.defaults[k]) for k in TORCH_FLAGS}
            for group in state_dict["param_groups"]
        ]
        for saved in flags:
            _compat.check_torch_flags(saved)
        super().load_state_dict(state_dict)
        for group, saved in zip(self.param_groups, flags, strict=True):
            group["alpha"] = group.pop("beta")
            group.update(saved)


def _checked_options(group: dict[str, Any]) -> tuple[Hyperparameters, bool]:
    """A group's options, checked, and whether it takes PyTorch's rounding."""
    hp = _compat.group_hyperparameters(group)
    torch_rounding = _compat.check_rounding(group, hp)
    _compat.check_state_bits(group)
    return hp, torch_rounding


def _with_gradients(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters that have a gradient, which must be dense and of their shape
    (``p.grad.data = ...`` can give it another, which the kernels would read past)."""
    found = [p for p in params if p.grad is not None]
    if any(cast(torch.Tensor, p.grad).is_sparse for p in found):
        raise RuntimeError("rmsprop.torch.RMSProp does not support sparse gradients")
    for p in found:
        if cast(torch.Tensor, p.grad).shape != p.shape:
            raise RuntimeError(
                f"a parameter of shape {tuple(p.shape)} has a gradient of shape "
                f"{tuple(cast(torch.Tensor, p.grad).shape)}; nothing was updated"
            )
    return found


class _Seen:
    """The optimizer's ``state`` as a step left it: which dict each parameter maps to,
    compared by identity in C (looking each parameter up costs a Python ``__hash__``)."""

    __slots__ = ("keys", "state", "values")

    def __init__(self, state: Any) -> None:
        self.state = state
        self.keys = [] if state is None else list(state.keys())
        self.values = [] if state is None else list(state.values())

    def same(self, state: Any) -> bool:
        """Whether ``state`` is this object and maps the same keys to the same dicts."""
        return (
            state is self.state
            and len(state) == len(self.keys)
            and all(map(operator.is_, state.keys(), self.keys))
            and all(map(operator.is_, state.values(), self.values))
        )


def _nothing() -> None:
    """The step of a group without gradients."""
