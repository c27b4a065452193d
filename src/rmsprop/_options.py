"""The options of the RMSProp family, validated once, and the framework presets."""

import dataclasses
import functools
import math
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Self, TypedDict, cast

import numpy as np

from rmsprop._validation import describe, real


class FamilyOptions(TypedDict, total=False):
    """Keyword options of the optimizers but ``lr``; see :class:`Hyperparameters`."""

    beta: float
    eps: float
    eps_in_sqrt: bool
    initial_cache: float
    momentum: float
    nesterov: bool
    lr_in_momentum: bool
    centered: bool
    weight_decay: float
    decoupled_weight_decay: bool
    maximize: bool
    bias_correction: bool


class Options(FamilyOptions, total=False):
    """Keyword options of the optimizers; see :class:`Hyperparameters`."""

    lr: float


#: The options that make each framework's RMSProp; explicit options override them.
PRESETS: Final[Mapping[str, Options]] = {
    # torch.optim.RMSprop: eps after the root, lr applied after the momentum buffer.
    "pytorch": {
        "lr": 1e-2,
        "beta": 0.99,
        "eps": 1e-8,
        "eps_in_sqrt": False,
        "lr_in_momentum": False,
    },
    # TF1 tf.compat.v1.train.RMSPropOptimizer / raw ApplyRMSProp: the average starts at 1.
    "tensorflow": {"beta": 0.9, "eps": 1e-10, "initial_cache": 1.0},
    # Keras 3 keras.optimizers.RMSprop: weight decay is decoupled.
    "keras": {"lr": 1e-3, "beta": 0.9, "eps": 1e-7, "decoupled_weight_decay": True},
    # optax.rmsprop with its defaults (eps_in_sqrt=True, initial_scale=0).
    "optax": {"beta": 0.9, "eps": 1e-8},
    # timm RMSpropTF: TensorFlow's rule for PyTorch; coupled weight decay by default.
    "timm": {"lr": 1e-2, "beta": 0.9, "eps": 1e-10, "initial_cache": 1.0},
}


class Switches(NamedTuple):
    """The options that change the work of an update, not only its values: each
    combination is its own compiled kernel (values such as ``lr`` are arguments)."""

    maximize: bool
    centered: bool
    eps_in_sqrt: bool
    nesterov: bool
    lr_in_momentum: bool
    decoupled_weight_decay: bool
    momentum: bool
    weight_decay: bool
    bias_correction: bool


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """The options of one RMSProp update, checked when created.

    With every option at its default, the update is the seed's rule::

        cache  = beta * cache + (1 - beta) * grad**2
        param -= lr * grad / sqrt(cache + eps)

    Attributes:
        lr: learning rate, finite and >= 0. Required unless a preset sets it.
        beta: decay of the squared-gradient average, in [0, 1]. Default 0.9.
        eps: added to the average, finite and >= 0. Default 1e-8.
        eps_in_sqrt: ``sqrt(cache + eps)`` (True, the seed, TensorFlow, Keras,
            optax) or ``sqrt(cache) + eps`` (False, PyTorch).
        initial_cache: the value the average starts from: 0 (default), or
            1 as in TensorFlow 1 and timm.
        momentum: momentum coefficient, finite and >= 0; 0 (default) keeps no
            momentum buffer.
        nesterov: look ahead with the momentum buffer (needs momentum > 0).
        lr_in_momentum: True (default; TensorFlow, Keras, optax, timm) puts
            ``lr * grad / denominator`` into the momentum buffer; False
            (PyTorch) puts ``grad / denominator`` there and multiplies the
            buffer by ``lr``. The two differ when ``lr`` changes over time.
        centered: divide by an estimate of the variance, ``cache - grad_avg**2``
            clamped at 0, instead of the mean square (Graves 2013).
        weight_decay: weight-decay coefficient, finite and >= 0.
        decoupled_weight_decay: False (default) adds ``weight_decay * param``
            to the gradient (L2, as PyTorch); True multiplies the parameter
            by ``1 - lr * weight_decay`` before the step (as Keras, AdamW).
        maximize: ascend the objective instead of descending it.
        bias_correction: divide the average by ``1 - beta**t`` at step ``t``
            (counted from 1) before taking its root, and the centered mean
            too, as optax's ``bias_correction=True`` (needs beta < 1).

    References:
        T. Tieleman and G. Hinton, Lecture 6e of "Neural Networks for Machine
        Learning", 2012. A. Graves, "Generating Sequences With Recurrent Neural
        Networks", arXiv:1308.0850, 2013 (the centered form).

    Example:
        >>> Hyperparameters.from_preset("pytorch", momentum=0.9)
        Hyperparameters(lr=0.01, beta=0.99, eps=1e-08, eps_in_sqrt=False, \
initial_cache=0.0, momentum=0.9, nesterov=False, lr_in_momentum=False, centered=False, \
weight_decay=0.0, decoupled_weight_decay=False, maximize=False, bias_correction=False)
    """

    lr: float
    beta: float = 0.9
    eps: float = 1e-8
    eps_in_sqrt: bool = True
    initial_cache: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    lr_in_momentum: bool = True
    centered: bool = False
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    maximize: bool = False
    bias_correction: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type is bool:
                if not isinstance(value, bool):
                    raise TypeError(f"{field.name} must be True or False, got {describe(value)}")
                continue
            number = real(value, field.name)
            if field.name == "beta":
                if not 0.0 <= number <= 1.0:
                    raise ValueError(f"beta must be in [0, 1], got {number!r}")
            elif not 0.0 <= number < math.inf:
                raise ValueError(f"{field.name} must be a finite number >= 0, got {number!r}")
            object.__setattr__(self, field.name, number)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        if self.bias_correction and self.beta == 1.0:
            raise ValueError("bias_correction=True needs beta < 1 (it divides by 1 - beta**t)")

    @classmethod
    def from_preset(cls, preset: str | None = None, /, **options: Any) -> Self:
        """The hyperparameters of ``preset`` (see :data:`PRESETS`), overridden by ``options``.

        ``preset=None`` starts from the seed's rule. Raises ``TypeError`` for an
        unknown option or a missing ``lr``, ``ValueError`` for an unknown preset.
        """
        if preset is None:
            base: Options = {}
        elif isinstance(preset, str) and preset in PRESETS:
            base = PRESETS[preset]
        else:
            raise ValueError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(
                f"unknown option {unknown[0]!r}; the options are {', '.join(OPTION_NAMES)}"
            )
        merged = {**base, **options}
        if "lr" not in merged:
            source = f"the {preset!r} preset" if preset else "the seed's rule"
            raise TypeError(f"lr is required: {source} has no default learning rate")
        return cls(**merged)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated."""
        unknown = sorted(set(changes) - set(OPTION_NAMES))
        if unknown:
            raise TypeError(f"unknown option {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    @property
    def one_minus_beta(self) -> float:
        """``1 - beta``, the weight of each new value in the averages (a value of the
        rule's own: see :func:`work_values` for float32 arithmetic)."""
        return 1.0 - self.beta

    @property
    def one_minus_lr_weight_decay(self) -> float:
        """``1 - lr * weight_decay``, the factor of decoupled weight decay."""
        return 1.0 - self.lr * self.weight_decay

    @property
    def switches(self) -> Switches:
        """The options that select a compiled kernel (see :class:`Switches`)."""
        return Switches(
            self.maximize,
            self.centered,
            self.eps_in_sqrt,
            self.nesterov,
            self.lr_in_momentum,
            self.decoupled_weight_decay,
            self.momentum != 0.0,
            self.weight_decay != 0.0,
            self.bias_correction,
        )

    def correction(self, step: int) -> float:
        """The bias correction of step ``step`` (from 1): ``1 - beta**step`` with
        ``bias_correction``, else 1 (dividing by it changes nothing)."""
        return 1.0 - self.beta**step if self.bias_correction else 1.0

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (keyword arguments of :meth:`from_preset`)."""
        return dataclasses.asdict(self)


OPTION_NAMES: Final = tuple(field.name for field in dataclasses.fields(Hyperparameters))
#: The values the rule derives from the options alone (properties of Hyperparameters):
#: in float32 arithmetic each is computed in float32 from the float32 options, as a
#: float32 program computes it, by every front end (:func:`work_values`).
DERIVED_NAMES: Final = ("one_minus_beta", "one_minus_lr_weight_decay")
#: The options as plain values of a kernel's own types (float32 scalars, say): what the
#: compiled rule and the low-bit torch operations pass rmsprop._rule.family_update.
OptionValues: Any = cast(Any, namedtuple)("OptionValues", OPTION_NAMES + DERIVED_NAMES)
#: The options that are numbers, which a kernel computes with in its own type.
_SCALAR_OPTIONS: Final = ("lr", "beta", "eps", "initial_cache", "momentum", "weight_decay")


def derived(values: dict[str, Any], one: Any = 1.0) -> dict[str, Any]:
    """``values`` (the options, in the arithmetic they are to be used in) with the values
    derived from them (:data:`DERIVED_NAMES`), computed in that arithmetic; ``one``: a
    one of that arithmetic's type where a Python 1.0 would widen it."""
    decay = values["lr"] * values["weight_decay"] if values["weight_decay"] else 0.0
    return {
        **values,
        "one_minus_beta": one - values["beta"],
        "one_minus_lr_weight_decay": one - decay,
    }


def converted(hp: Hyperparameters, correction: float, convert: Callable[[float], Any]) -> Any:
    """``(options, correction)``: ``hp`` as :data:`OptionValues` whose non-zero numbers,
    and the bias ``correction``, are ``convert``-ed (to a float32 scalar of some array
    library, say: the Numba kernel's float32 scalars, for the steps that reproduce it
    in array operations), the derived values computed from them. Zeros stay Python
    zeros: options that are off."""
    values = {name: getattr(hp, name) for name in OPTION_NAMES}
    for name in _SCALAR_OPTIONS:
        if values[name]:
            values[name] = convert(values[name])
    return OptionValues(**derived(values, convert(1.0))), convert(correction)


@functools.lru_cache(maxsize=64)
def work_values(hp: Hyperparameters, float32: bool) -> Any:
    """The options as the rule is to read them in a step computed in float32 (``float32``)
    or float64: in float64 ``hp`` itself; in float32 Python floats that are float32
    values, the derived ones computed in float32 (as the Numba kernel computes them),
    for array libraries that round a Python float to the dtype of the array it meets."""
    if not float32:
        return hp
    values = {name: getattr(hp, name) for name in OPTION_NAMES}
    for name in _SCALAR_OPTIONS:
        values[name] = np.float32(values[name])
    values = derived(values, np.float32(1.0))
    for name in (*_SCALAR_OPTIONS, *DERIVED_NAMES):
        values[name] = float(values[name])
    return OptionValues(**values)


#: The switches of the seed's rule: every option at its default.
SEED_RULE: Final = Hyperparameters(lr=0.0).switches


class Scalars(NamedTuple):
    """The values of one step that a compiled kernel takes as arguments."""

    lr: float
    beta: float
    eps: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    correction: float = 1.0

    @classmethod
    def of(cls, hp: Hyperparameters, correction: float = 1.0) -> "Scalars":
        """``hp``'s values, with the bias correction of the step."""
        return cls(hp.lr, hp.beta, hp.eps, hp.momentum, hp.weight_decay, correction)
