"""Kept launches: a param group's step on fused kernels, reused while nothing changed.

A group whose every parameter with a gradient goes to one fused kernel (and whose
step needs no per-parameter host values: no bias correction, not PyTorch's
differentiable or capturable functional) gets a :class:`Plan`: its launches,
built once, one per (device, dtypes), and where the launch's step counters are
consecutive elements of one buffer (:mod:`rmsprop.torch._state`), one view that
advances them all; where its members fill consecutive slots of flat buffers in
every role (:mod:`rmsprop.torch._spans`), also a launch over one stretch of each,
taken while the gradients are where they were. A later step reuses the plan,
skipping the per-parameter classification, when the group is the same dict with the
same options and the same parameters, every parameter still at its address, each
state dict and buffer the one it was and where it was, and the gradients the
tensors of the last step at the addresses they had (or others of the same
parameters, each dense, of the dtype built for, of its parameter's shape and laid
out as it); anything else takes the general path, which builds a new plan. The
last step's gradients are remembered weakly, so that ``zero_grad()`` frees them. A
gradient that is the same tensor at the same address is taken as it was:
``g.data = g.data[:k]`` is not seen (its memory is still the parameter's size,
which the kernels read).

These checks read every parameter, in C (``map`` over the group), about 0.75 µs a
parameter here where the gradients are the last step's: reading a tensor's
attribute costs 0.1 µs, and none can be skipped without missing a change that
PyTorch allows between steps (``p.data = ...`` frees the memory a launch would
write; ``p.grad = ...``, and autograd under ``backward(create_graph=True)``,
replace a gradient instead of accumulating into it; ``p.grad.data = ...`` moves
it, in another dtype too; ``optimizer.state[p][key] = ...`` replaces a buffer, and
``optimizer.state[p][key].data = ...`` moves one).
"""

import itertools
import operator
import weakref
from typing import Any, cast

import torch

from rmsprop._options import Hyperparameters
from rmsprop.torch import _lowbit, _spans
from rmsprop.torch._backends import Backend, KernelUnavailableError, Launched, device_kind
from rmsprop.torch._compat import STATE_KEYS
from rmsprop.torch._foreach import PLAIN, count
from rmsprop.torch._state import counter_advance


def plannable(group: dict[str, Any], hp: Hyperparameters) -> bool:
    """Whether a group's step may be kept as a plan: not with per-parameter step
    counts read on the host (bias correction), nor when PyTorch's functional steps
    it for autograd or CUDA graphs."""
    return not (
        hp.bias_correction or group.get("differentiable", False) or group.get("capturable", False)
    )


#: A tensor's gradient, address and layout, read in C by ``map`` (the checks of a
#: kept plan run over every parameter at every step: a Python loop would cost more).
_GRAD = operator.attrgetter("grad")
_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")
_CALL = operator.call
_DATA_PTR = torch.Tensor.data_ptr
_CONTIGUOUS = torch.Tensor.is_contiguous
#: The buffers that options add to the state, and the option that adds each.
_BUFFERS = (("momentum_buffer", "momentum"), ("grad_avg", "centered"))


class Plan:
    """The launches of one group's step (see the module's docstring)."""

    __slots__ = (
        "addresses", "backend", "buffers", "contiguous", "dtypes", "grad_addresses", "grads",
        "group", "launches", "members", "options", "params", "shapes", "states", "strides",
        "without",
    )  # fmt: skip

    def __init__(
        self,
        backend: Backend,
        group: dict[str, Any],
        hp: Hyperparameters,
        members: list[int],
        states: list[dict[str, Any]],
        launches: list[tuple[Launched, list[int] | None, list[torch.Tensor], Any, Any]],
    ) -> None:
        self.backend, self.group, self.launches = backend, group, launches
        self.options = _options(group, hp)
        self.params = list(group["params"])
        #: Which of the group's parameters have a gradient (the plan's members), and not.
        self.members = members
        self.without = [p.grad is None for p in self.params]
        memb = [self.params[i] for i in members]
        #: The members' gradients of the last step, weakly (``zero_grad()`` frees them
        #: as it would without a plan): a reference that still finds the tensor proves it
        #: is that tensor, where an ``id`` could be a new one's at the same place.
        self.grads = list(map(weakref.ref, map(_GRAD, memb)))
        self.addresses = [p.data_ptr() for p in memb]
        #: The members' gradients' addresses at the last step.
        self.grad_addresses = [cast(torch.Tensor, p.grad).data_ptr() for p in memb]
        self.states = states
        used = ["step", "square_avg", *(k for k, on in _BUFFERS if getattr(hp, on))]
        if any(map(_lowbit.is_coded, states)):  # and the scales of 8-bit codes
            used += [_lowbit.SCALE_KEYS[key] for key in used[1:]]
        #: The state the launches read and write, by key: (key, the buffer of each
        #: member, where each one's memory is: ``buffer.data = ...`` keeps the tensor
        #: and can free the memory a launch would write).
        self.buffers = [
            (key, kept, _addresses(kept))
            for key, kept in ((key, [state.get(key) for state in states]) for key in used)
        ]
        self.contiguous = [p.is_contiguous() for p in memb]
        #: The gradients' dtypes, which a new gradient must share (``p.grad_dtype`` lets
        #: a parameter's gradient change dtype between steps).
        self.dtypes = [cast(torch.Tensor, p.grad).dtype for p in memb]
        self.shapes = [p.shape for p in memb]
        #: Members laid out otherwise (dense): their index and strides, which their
        #: gradients must share.
        self.strides = [(i, p.stride()) for i, p in enumerate(memb) if not self.contiguous[i]]

    @classmethod
    def build(
        cls,
        backend: Backend,
        group: dict[str, Any],
        params: list[torch.Tensor],
        hp: Hyperparameters,
        states: list[dict[str, Any]],
        streams: list[int],
    ) -> "Plan | None":
        """The plan of a group whose every parameter ``backend`` takes, or None."""
        kind = device_kind(params[0])
        members: dict[tuple[Any, ...], list[int]] = {}
        for i, (p, state) in enumerate(zip(params, states, strict=True)):
            g = cast(torch.Tensor, p.grad)
            buffers = _buffers(state)
            if (
                type(p) not in PLAIN
                or p.is_complex()
                or device_kind(p) != kind
                or not backend.takes(p, g, buffers, hp)
            ):
                return None
            key = (p.device, p.dtype, g.dtype, cast(torch.Tensor, buffers[0]).dtype)
            members.setdefault(key, []).append(i)
        launches = []
        for indices in members.values():
            chosen = [(params[i], params[i].grad, _buffers(states[i])) for i in indices]
            steps = [states[i]["step"] for i in indices]
            low = _lowbit.launch_options(
                group, [params[i] for i in indices], [states[i] for i in indices], steps,
                [streams[i] for i in indices],
            )  # fmt: skip
            launch = backend.launch(chosen, hp, group["float32_arithmetic"], **low)
            every = None if len(indices) == len(params) else indices
            whole = None if low else _spans.span(chosen, hp.eps)
            spanned = None
            if whole is not None:  # and the gradients' addresses it holds for
                spanned = (
                    backend.launch([whole], hp, group["float32_arithmetic"]), whole[1],
                    [cast(torch.Tensor, g).data_ptr() for _, g, _ in chosen],
                )  # fmt: skip
            launches.append((launch, every, steps, counter_advance(steps), spanned))
        with_grad = {id(p) for p in params}
        positions = [i for i, p in enumerate(group["params"]) if id(p) in with_grad]
        return cls(backend, group, hp, positions, states, launches)

    def gradients(
        self, group: dict[str, Any], hp: Hyperparameters, state: Any, same_state: bool
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        """The parameters with a gradient and their gradients, if this plan still holds
        for the group, else None.

        Checked, over every parameter (in C, by ``map``): the group's parameters are the
        same tensors at the same addresses, the same of them have a gradient, and each
        state buffer is still the one the kernels write; gradients that are not the
        tensors of the last step (after ``zero_grad(set_to_none=True)``, anywhere in
        memory) must each be dense, of the dtype the plan was built for and laid out as
        its parameter. ``same_state``: the optimizer's ``state`` maps every parameter to
        the dict it mapped it to at the end of the last step (then its dicts are not
        looked up again).
        """
        params = group["params"]
        if group is not self.group or len(params) != len(self.params):
            return None
        if self.options != _options(group, hp) or not self.backend.available():
            return None
        if not all(map(operator.is_, params, self.params)):
            return None
        grads = list(map(_GRAD, params))
        if list(map(operator.is_, grads, itertools.repeat(None))) != self.without:
            return None
        if len(grads) != len(self.members):
            grads = [grads[i] for i in self.members]
            params = [params[i] for i in self.members]
        same = all(map(operator.is_, grads, map(_CALL, self.grads)))
        # The last step's gradients where they were, or each checked again (``g.data =
        # ...`` keeps the tensor and can change its memory, dtype, shape and layout).
        addresses = list(map(_DATA_PTR, grads)) if same else []
        if addresses != self.grad_addresses:
            if not (
                all(map(operator.is_, map(type, grads), itertools.repeat(torch.Tensor)))
                and list(map(_DTYPE, grads)) == self.dtypes
                and list(map(_SHAPE, grads)) == self.shapes
                and list(map(_CONTIGUOUS, grads)) == self.contiguous  # a sparse one is not
                and all(grads[i].stride() == stride for i, stride in self.strides)
            ):
                return None
            addresses = list(map(_DATA_PTR, grads))
        if list(map(_DATA_PTR, params)) != self.addresses:
            return None
        states = self.states
        if not same_state and not all(map(operator.is_, map(state.__getitem__, params), states)):
            return None
        for key, kept, where in self.buffers:
            if not all(map(operator.is_, map(dict.get, states, itertools.repeat(key)), kept)):
                return None
            if _addresses(kept) != where:
                return None
        if not same:
            self.grads = list(map(weakref.ref, grads))
        self.grad_addresses = addresses
        return params, grads

    def run(self, grads: list[torch.Tensor], hp: Hyperparameters) -> list[int]:
        """The step with the gradients :meth:`gradients` returned (or those the plan was
        built with): each launch, then its parameters' counters. Returns the indices of
        the parameters left to the fallback (a kernel that turned itself off)."""
        left: list[int] = []
        for launch, indices, steps, advance, spanned in self.launches:
            chosen = grads if indices is None else [grads[i] for i in indices]
            where = self.grad_addresses
            if spanned is not None and indices is not None:
                where = [where[i] for i in indices]
            try:
                if spanned is not None and where == spanned[2]:
                    spanned[0]([spanned[1]], hp)  # the gradients are where the span has them
                else:
                    launch(chosen, hp)
            except KernelUnavailableError:
                left += range(len(grads)) if indices is None else indices
                continue
            if advance is None:
                count(steps)
            else:
                advance()  # the counters of the launch, one buffer
        return left


def _addresses(buffers: list[Any]) -> list[int | None]:
    """Where each of ``buffers`` is (None for None: the scales of a member whose state
    is not 8-bit codes)."""
    try:
        return list(map(_DATA_PTR, buffers))
    except TypeError:  # a None among them
        return [None if t is None else t.data_ptr() for t in buffers]


def _buffers(state: dict[str, Any]) -> list[Any]:
    return [state.get(key) for key in STATE_KEYS]


def _options(group: dict[str, Any], hp: Hyperparameters) -> tuple[Any, ...]:
    """What a plan's kernels were chosen and compiled for, beyond its tensors (torch's
    order also compiles in which of lerp_'s formulas ``beta`` selects; spans are built
    only while ``eps > 0``)."""
    return (
        hp.switches, abs(1.0 - hp.beta) < 0.5, hp.eps > 0.0, group["float32_arithmetic"],
        group["rounding"],
        group.get("state_bits", 32), group.get("seed", 0), group.get("stochastic_rounding"),
    )  # fmt: skip
