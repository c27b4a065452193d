"""Keras 3: :class:`RMSprop`, the RMSProp family as a ``keras.optimizers.Optimizer``.

It runs on every Keras backend. ``preset="keras"`` with Keras's own options
(``beta``, ``eps``, ``momentum``, ``centered``, decoupled ``weight_decay``) is
``keras.optimizers.RMSprop``'s computation itself, bit for bit; every other preset
or option evaluates :func:`rmsprop._rule.family_update` with ``keras.ops`` in the
variables' dtype, as the other front ends do (in float64, equal to
:class:`rmsprop.RMSProp`). Set ``KERAS_BACKEND`` before importing Keras.
"""

import types
from typing import Any, cast

import keras
from keras import ops

from rmsprop import _rule
from rmsprop._options import OPTION_NAMES, PRESETS, Hyperparameters, derived

#: What ``keras.optimizers.RMSprop`` computes: the "keras" preset, with these options
#: free (any value) and the others at the preset's values.
_KERAS_FREE = frozenset({"lr", "beta", "eps", "momentum", "centered", "weight_decay"})


def _keras_rule(hp: Hyperparameters) -> bool:
    """Whether ``hp`` is a rule ``keras.optimizers.RMSprop`` computes."""
    keras_hp = Hyperparameters.from_preset("keras")
    fixed = set(OPTION_NAMES) - _KERAS_FREE
    return all(getattr(hp, name) == getattr(keras_hp, name) for name in fixed)


def _torch_parallel_step() -> Any:
    """On the torch backend, the step ``keras.optimizers.RMSprop`` takes there: Keras
    swaps in a class of its own, whose ``torch._foreach_*`` series round otherwise
    than its ``update_step``. None on other backends (or a Keras without it)."""
    if keras.backend.backend() != "torch":
        return None
    try:
        from keras.src.backend.torch.optimizers import torch_rmsprop  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(torch_rmsprop.RMSprop, "_parallel_update_step", None)


def _clamp_at_zero(x: Any) -> Any:
    return ops.where(x < 0, ops.zeros_like(x), x)  # NaN compares false and stays NaN


@keras.saving.register_keras_serializable(package="rmsprop")
class RMSprop(keras.optimizers.RMSprop):  # type: ignore[misc]
    """The RMSProp family for Keras 3.

    Args:
        learning_rate: a float or a ``keras.optimizers.schedules.LearningRateSchedule``
            (default: the preset's, 1e-3 for ``"keras"``).
        preset: ``"keras"`` (default), ``"pytorch"``, ``"tensorflow"``, ``"optax"``,
            ``"timm"``, or None for the seed's rule (see :data:`rmsprop.PRESETS`).
        name: the optimizer's name.
        **kwargs: the family's options (``beta``, ``eps``, ``momentum``,
            ``centered``, ``nesterov``, ``weight_decay``, ... as in
            :class:`rmsprop.Hyperparameters`), and Keras's own optimizer arguments
            (``clipnorm``, ``global_clipnorm``, ``use_ema``, ...).

    With ``preset="keras"`` and only Keras's options (``beta`` is its ``rho``,
    ``eps`` its ``epsilon``), the step is ``keras.optimizers.RMSprop``'s own.
    """

    def __init__(
        self,
        learning_rate: Any = None,
        preset: str | None = "keras",
        name: str = "rmsprop",
        **kwargs: Any,
    ) -> None:
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in OPTION_NAMES}
        if "lr" in options:
            raise TypeError("give the learning rate as learning_rate, as Keras does")
        if learning_rate is None and "lr" not in PRESETS.get(preset or "", {}):
            raise TypeError("learning_rate is required: the preset has no default")
        schedule = learning_rate is not None and not isinstance(learning_rate, int | float)
        if learning_rate is not None:  # a schedule gives the rate at each step
            options["lr"] = 0.0 if schedule else float(learning_rate)
        hp = Hyperparameters.from_preset(preset, **options)
        keras_rule = preset == "keras" and _keras_rule(hp)
        super().__init__(
            learning_rate=learning_rate if schedule else hp.lr,
            rho=hp.beta,
            momentum=hp.momentum,
            epsilon=hp.eps,
            centered=hp.centered,
            # Keras's decoupled decay where its rule is computed; else the family's own.
            weight_decay=hp.weight_decay if keras_rule and hp.weight_decay else None,
            name=name,
            **kwargs,
        )
        self._preset = preset
        self._options = {k: v for k, v in hp.as_dict().items() if k != "lr"}
        self._hp = hp
        self._keras = keras_rule

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        if self._hp.initial_cache:
            for velocity in self._velocities:
                velocity.assign(ops.full(velocity.shape, self._hp.initial_cache, velocity.dtype))

    def _backend_update_step(self, grads: Any, variables: Any, learning_rate: Any) -> None:
        parallel = _torch_parallel_step() if self._keras else None
        if parallel is None:
            super()._backend_update_step(grads, variables, learning_rate)
            return
        import torch  # noqa: PLC0415 (the torch backend is running)

        with torch.no_grad():
            parallel(self, grads, variables, learning_rate)

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self._keras:
            super().update_step(gradient, variable, learning_rate)
            return
        hp = self._hp
        index = self._get_variable_index(variable)
        state = _rule.State(
            self._velocities[index],
            self._momentums[index] if hp.momentum else None,
            self._average_gradients[index] if hp.centered else None,
        )
        values = {**self._options, "lr": ops.cast(learning_rate, variable.dtype)}
        # the derived values in the variable's dtype, as every front end derives them
        options = types.SimpleNamespace(**derived(values, ops.cast(1.0, variable.dtype)))
        correction: Any = 1.0
        if hp.bias_correction:
            step = ops.cast(self.iterations + 1, variable.dtype)
            correction = 1.0 - ops.power(ops.cast(hp.beta, variable.dtype), step)
        new_p, new = _rule.family_update(
            ops.convert_to_tensor(variable),
            ops.cast(gradient, variable.dtype),
            _rule.State(*(None if s is None else ops.convert_to_tensor(s) for s in state)),
            cast(Hyperparameters, options),  # the options, with lr a tensor
            ops.sqrt,
            _clamp_at_zero,
            correction,
        )
        self.assign(state.cache, new.cache)
        if hp.momentum:
            self.assign(state.momentum_buffer, new.momentum_buffer)
        if hp.centered:
            self.assign(state.grad_avg, new.grad_avg)
        self.assign(variable, new_p)

    def get_config(self) -> dict[str, Any]:
        config = dict(super().get_config())
        for key in ("rho", "momentum", "epsilon", "centered", "weight_decay"):
            config.pop(key, None)  # the family's options below say them
        return {**config, "preset": self._preset, **self._options}
