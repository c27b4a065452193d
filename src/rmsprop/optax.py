"""``rmsprop.optax``: the RMSProp family as an optax ``GradientTransformation``.

Importing this module imports JAX and optax; ``import rmsprop`` alone does not.

Examples:
    >>> import jax.numpy as jnp, optax, rmsprop.optax
    >>> params = {"w": jnp.array([1.0, 2.0, 3.0])}
    >>> transform = rmsprop.optax.rmsprop(0.01, preset="pytorch", momentum=0.9)
    >>> state = transform.init(params)
    >>> updates, state = transform.update({"w": jnp.array([0.1, 0.2, 0.3])}, state)
    >>> [round(w, 4) for w in optax.apply_updates(params, updates)["w"].tolist()]
    [0.9, 1.9, 2.9]
"""

import collections
from typing import Any, Final, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop import _blockwise, _jax_codes, _state_bits
from rmsprop._jax_codes import Codes
from rmsprop._options import DERIVED_NAMES, OPTION_NAMES, Hyperparameters, derived
from rmsprop._rule import State, family_update
from rmsprop._validation import describe

__all__ = ["Codes", "RMSPropState", "rmsprop"]

# The options as the rule reads them: Hyperparameters' attributes, values possibly traced.
_Values: Any = cast(Any, collections.namedtuple)("_Values", OPTION_NAMES + DERIVED_NAMES)
#: Options whose value is a number (the others are switches: True or False).
_NUMBERS: Final = ("lr", "beta", "eps", "initial_cache", "momentum", "weight_decay")


class RMSPropState(NamedTuple):
    """The state of :func:`rmsprop`: a pytree (save it as any optax state).

    Attributes:
        count: steps taken, an int32 scalar (saturates at its maximum, as optax's counts).
        cache: the average of squared gradients, a tree like the parameters (with
            ``state_bits=8``, a leaf of 4,096 elements or more is :class:`Codes`).
        momentum_buffer: the momentum buffer when momentum is on, else None.
        grad_avg: the average of gradients when ``centered``, else None.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name, though tuples have count()
    cache: Any
    momentum_buffer: Any
    grad_avg: Any


class _Coefficient:
    """A momentum or weight-decay value that may be traced (``optax.inject_hyperparams``)
    whose use is decided when the transformation is made: the rule tests its truth
    (on or off) and multiplies by its value."""

    __slots__ = ("on", "value")

    def __init__(self, value: Any, on: bool) -> None:
        self.value, self.on = value, on

    def __bool__(self) -> bool:
        return self.on

    def __mul__(self, other: Any) -> Any:
        return self.value * other

    def __rmul__(self, other: Any) -> Any:
        return other * self.value


def rmsprop(
    learning_rate: float | optax.ScalarOrSchedule,
    *,
    preset: str | None = None,
    state_dtype: Any = None,
    beta: float | None = None,
    eps: float | None = None,
    eps_in_sqrt: bool | None = None,
    initial_cache: float | None = None,
    momentum: float | None = None,
    nesterov: bool | None = None,
    lr_in_momentum: bool | None = None,
    centered: bool | None = None,
    weight_decay: float | None = None,
    decoupled_weight_decay: bool | None = None,
    maximize: bool | None = None,
    bias_correction: bool | None = None,
    state_bits: int | None = None,
    seed: int | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The RMSProp family as an optax transformation: ``preset`` reproduces a framework.

    The update is :func:`rmsprop._rule.family_update`, the rule every front end
    of this library computes, with the options of :class:`rmsprop.Hyperparameters`:
    ``preset`` (``"pytorch"``, ``"tensorflow"``, ``"keras"``, ``"optax"``,
    ``"timm"``, or None for the seed's rule) gives their defaults, and an option
    given here (not None) overrides it. The transformation returns the change to
    the parameters, to be applied with ``optax.apply_updates``.

    Arithmetic is done in the widest dtype of each leaf's gradient, parameter
    and state, and at least float32 (bfloat16 and float16 data are widened, so
    ``eps`` never underflows); the updates keep the gradients' dtype and the
    state its own. With float64 data (``jax_enable_x64``) the results equal
    ``rmsprop.RMSProp``'s with the same preset; float32 data are computed in
    float32 (within a few float32 ulp of the float64 run).

    Args:
        learning_rate: a number >= 0, or an optax schedule of the step count.
        preset: a framework's options to start from, or None for the seed's rule.
        state_dtype: dtype of the state (default: each parameter's), e.g.
            ``jnp.float32`` for bfloat16 parameters.
        beta: as in :class:`rmsprop.Hyperparameters`, as are the options below;
            None takes the preset's value. Numbers may be JAX arrays, as
            ``optax.inject_hyperparams`` passes them.
        eps: see ``beta``.
        eps_in_sqrt: see ``beta``.
        initial_cache: see ``beta``.
        momentum: see ``beta``.
        nesterov: see ``beta``.
        lr_in_momentum: see ``beta``.
        centered: see ``beta``.
        weight_decay: see ``beta``; with it, ``update`` needs the parameters.
        decoupled_weight_decay: see ``beta``.
        maximize: see ``beta``.
        bias_correction: see ``beta``.
        state_bits: 32 (default, or None): the state in ``state_dtype``; 16: in bfloat16,
            each new value rounded stochastically; 8: each leaf of at least 4,096
            elements as one-byte codes with a float32 scale per block of 256
            (:class:`Codes`), rounded stochastically (smaller leaves keep float32
            state). The state, codes and random bits of ``rmsprop.RMSProp`` and
            ``rmsprop.torch.RMSProp`` with the same ``state_bits``: element ``j``
            of leaf ``i`` (in ``jax.tree`` order) at step ``t`` draws the bits of
            ``(seed, t, i, j)`` (see ``rmsprop._random``).
        seed: the random bits of ``state_bits`` 16 and 8 (default, or None: 0). Both
            shape the state, so they cannot change between steps: with
            ``optax.inject_hyperparams``, name them in its ``static_args``.

    With ``bias_correction``, step ``t`` is the state's ``count`` + 1, as in
    ``optax.rmsprop``. Differences from ``optax.rmsprop`` (with
    ``preset="optax"``): its ``decay`` and ``initial_scale`` are ``beta`` and
    ``initial_cache`` here; the centered variance is clamped at 0 (optax can
    take the root of a slightly negative number); weight decay and ``maximize``
    are built in.
    """
    given = {
        "beta": beta, "eps": eps, "eps_in_sqrt": eps_in_sqrt, "initial_cache": initial_cache,
        "momentum": momentum, "nesterov": nesterov, "lr_in_momentum": lr_in_momentum,
        "centered": centered, "weight_decay": weight_decay,
        "decoupled_weight_decay": decoupled_weight_decay, "maximize": maximize,
        "bias_correction": bias_correction,
    }  # fmt: skip
    options = {name: value for name, value in given.items() if value is not None}
    schedule = learning_rate if callable(learning_rate) else None
    if schedule is None:
        options["lr"] = learning_rate
    # Checked as Hyperparameters: values that are traced (inject_hyperparams under jit)
    # stand in as 0.5 for the check, and are used as they are.
    concrete = {name: _concrete(value, name) for name, value in options.items()}
    if schedule is not None:
        concrete["lr"] = 0.0
    hp = Hyperparameters.from_preset(
        preset, **{k: 0.5 if v is None else v for k, v in concrete.items()}
    )
    if state_dtype is not None and not jnp.issubdtype(state_dtype, jnp.floating):
        raise TypeError(f"state_dtype must be a floating dtype or None, got {state_dtype!r}")
    requested = None if state_dtype is None else np.dtype(state_dtype)
    bits = 32 if state_bits is None else _static(state_bits, "state_bits")
    seed = 0 if seed is None else _static(seed, "seed")
    state_dtype = _state_bits.check(bits, seed, requested)
    store = _Store(bits, int(seed), state_dtype)
    numbers = {name: options.get(name, getattr(hp, name)) for name in _NUMBERS}
    momentum_on = concrete.get("momentum", hp.momentum) != 0.0
    decay_on = concrete.get("weight_decay", hp.weight_decay) != 0.0

    def values(count: jax.Array) -> Any:
        """The options for the step after ``count`` steps, as the rule reads them."""
        lr = schedule(count) if schedule is not None else numbers["lr"]
        return _Values(**{
            **hp.as_dict(),
            **numbers,
            "lr": lr,
            "momentum": _Coefficient(numbers["momentum"], momentum_on),
            "weight_decay": _Coefficient(numbers["weight_decay"], decay_on),
            **dict.fromkeys(DERIVED_NAMES),  # derived in each leaf's work dtype
        })  # fmt: skip

    def init(params: Any) -> RMSPropState:
        def filled(value: Any, key: str) -> Any:
            return jax.tree.map(lambda p: store.fill(jnp.asarray(p), value, key), params)

        return RMSPropState(
            count=jnp.zeros([], jnp.int32),
            cache=filled(numbers["initial_cache"], "cache"),
            momentum_buffer=filled(0, "momentum_buffer") if momentum_on else None,
            grad_avg=filled(0, "grad_avg") if hp.centered else None,
        )

    def update(
        updates: Any, state: RMSPropState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, RMSPropState]:
        del extra_args
        if decay_on and params is None:
            raise ValueError(
                "weight_decay needs the parameters: call update(updates, state, params)"
            )
        grads, structure = jax.tree.flatten(updates)
        tree = cast(Any, structure)  # flatten_up_to checks each tree has the updates' shape
        cache = tree.flatten_up_to(state.cache)
        buffers = tree.flatten_up_to(state.momentum_buffer) if momentum_on else [None] * len(grads)
        averages = tree.flatten_up_to(state.grad_avg) if hp.centered else [None] * len(grads)
        weights = tree.flatten_up_to(params) if decay_on else [None] * len(grads)
        hp_t = values(state.count)
        t = optax.safe_increment(state.count)
        correction = 1 - hp_t.beta**t if hp.bias_correction else 1.0
        for i, leaf in enumerate(zip(grads, cache, buffers, averages, strict=True)):
            store.check(i, *leaf)  # static under jit: checked before any work
        out = [
            _leaf(*leaf, hp_t, correction, store.writer(t, i, jnp.size(leaf[0])))
            for i, leaf in enumerate(zip(grads, weights, cache, buffers, averages, strict=True))
        ]
        columns = [list(column) for column in zip(*out, strict=True)] if out else [[]] * 4
        new_updates, new_cache, new_buffers, new_averages = columns
        return tree.unflatten(new_updates), RMSPropState(
            count=t,
            cache=tree.unflatten(new_cache),
            momentum_buffer=tree.unflatten(new_buffers) if momentum_on else None,
            grad_avg=tree.unflatten(new_averages) if hp.centered else None,
        )

    return optax.GradientTransformationExtraArgs(init, update)


class _Store:
    """How the state is kept (``state_bits``): created, checked, read and written."""

    def __init__(self, bits: int, seed: int, dtype: np.dtype[Any] | None) -> None:
        self.bits, self.seed, self.dtype = bits, seed, dtype

    def fill(self, p: jax.Array, value: Any, key: str) -> Any:
        """A buffer of ``p``'s shape filled with ``value``."""
        if _state_bits.coded(self.bits, p.size):
            full = jnp.full(p.shape, value, dtype=jnp.result_type(float))
            return _jax_codes.encode(full, _state_bits.CODES[key], None)
        return jnp.full_like(p, value, dtype=self.dtype or p.dtype)

    def check(self, i: int, g: Any, *state: Any) -> None:
        """Raise ``ValueError`` unless leaf ``i``'s state fits its update ``g`` as this
        ``state_bits`` keeps it."""
        shape = jnp.shape(g)
        coded = _state_bits.coded(self.bits, int(np.prod(shape)))
        for key, x in zip(("cache", "momentum_buffer", "grad_avg"), state, strict=True):
            if x is None and key != "cache":
                continue
            found = isinstance(x, Codes)
            stored = jnp.shape(x.codes if found else x)
            if stored != shape:
                raise ValueError(
                    f"updates leaf {i} has shape {shape}, its state {stored}: the updates "
                    "must have the parameters' shapes"
                )
            blocks = (_blockwise.blocks(int(np.prod(shape))),)
            if found != coded or (found and jnp.shape(x.scales) != blocks):
                kind = "8-bit codes" if coded else "an array"
                raise ValueError(
                    f"updates leaf {i}'s {key} must be {kind} (state_bits={self.bits}), got "
                    f"{_described(x)}: the state must come from this transformation's init"
                )

    def writer(self, t: jax.Array, stream: int, n: int) -> "_Writer":
        """How leaf ``stream``'s new state is written at step ``t`` (of ``n`` elements)."""
        return _Writer(self.bits, self.seed, t, stream, n)


class _Writer:
    """Reads and writes one leaf's state at one step: to nearest in its dtype
    (``state_bits=32`` and the float32 state of small leaves), or stochastically with the
    random bits of (seed, step, leaf, element)."""

    def __init__(self, bits: int, seed: int, t: jax.Array, stream: int, n: int) -> None:
        self.bits, self.n = bits, n
        self.begin = None if bits == 32 else _jax_codes.start(seed, t, stream)
        self.words: _jax_codes.Pair | None = None

    def read(self, x: Any, key: str, dtype: Any) -> Any:
        if isinstance(x, Codes):
            return _jax_codes.decode(x, _state_bits.CODES[key], dtype)
        return jnp.asarray(x).astype(dtype)

    def write(self, value: Any, old: Any, key: str, k: int) -> Any:
        """Buffer ``key`` (number ``k`` of the three) with its new ``value``."""
        value = jnp.broadcast_to(value, jnp.shape(old.codes if isinstance(old, Codes) else old))
        if isinstance(old, Codes):
            assert self.begin is not None
            random = _jax_codes.weyl(self.begin, self.n, k)
            return _jax_codes.encode(value, _state_bits.CODES[key], random)
        if self.bits == 16:
            assert self.begin is not None
            if self.words is None:  # one 64-bit draw per element, for all three buffers
                self.words = _jax_codes.draw(self.begin, self.n)
            random = _jax_codes.word(self.words, k).reshape(value.shape)
            return _jax_codes.stochastic_bfloat16(value, random)
        return value.astype(old.dtype)


def _described(x: Any) -> str:
    if isinstance(x, Codes):
        return f"codes of shape {jnp.shape(x.codes)} with {jnp.shape(x.scales)} scales"
    return f"shape {jnp.shape(x)}"


def _leaf(
    g: Any, p: Any, v: Any, b: Any, a: Any, hp_t: Any, correction: Any, writer: _Writer
) -> tuple[Any, Any, Any, Any]:
    """One leaf's update and new state, computed through the rule in a wide enough dtype.

    Without weight decay the update does not depend on the parameter: the rule
    runs with -0.0 in its place and returns ``-0.0 - step``, which is ``-step``
    for every step, zeros included (LLVM folds it to a negation; ``0.0 - step``
    it cannot fold).
    """
    g = jnp.asarray(g)
    stored = jnp.float32 if isinstance(v, Codes) else v.dtype
    dtypes = [g.dtype, stored, *([] if p is None else [jnp.asarray(p).dtype]), jnp.float32]
    work = jnp.result_type(*dtypes)

    def wide(x: Any, key: str = "") -> Any:
        return None if x is None else writer.read(x, key, work)

    wide_hp = hp_t._replace(
        lr=wide(hp_t.lr), beta=wide(hp_t.beta), eps=wide(hp_t.eps),
        momentum=_Coefficient(wide(hp_t.momentum.value), hp_t.momentum.on),
        weight_decay=_Coefficient(wide(hp_t.weight_decay.value), hp_t.weight_decay.on),
    )  # fmt: skip
    wide_hp = wide_hp._replace(**derived(wide_hp._asdict()))
    p_work = -0.0 if p is None else wide(p)
    new_p, new = family_update(
        p_work, wide(g), State(wide(v, "cache"), wide(b, "momentum_buffer"),
        wide(a, "grad_avg")), wide_hp, jnp.sqrt, _clamp_at_zero, wide(correction),
    )  # fmt: skip
    step = new_p - p_work if p is not None else new_p
    return (
        step.astype(g.dtype),
        writer.write(new.cache, v, "cache", 0),
        None if b is None else writer.write(new.momentum_buffer, b, "momentum_buffer", 1),
        None if a is None else writer.write(new.grad_avg, a, "grad_avg", 2),
    )


def _clamp_at_zero(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, 0.0)  # NaN stays NaN


def _static(value: Any, name: str) -> Any:
    """``state_bits`` or ``seed`` as a Python value: a concrete JAX scalar (as
    ``optax.inject_hyperparams`` passes numbers to ``init``) is read; a traced one is
    refused (it would change the state's kind between steps)."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{name} decides the kind of state and cannot change between steps; with "
            f"optax.inject_hyperparams, pass static_args=('state_bits', 'seed')"
        )
    return _concrete(value, name)


def _concrete(value: Any, name: str) -> Any:
    """``value`` as a Python number or bool to check; None if it is traced (its value is
    unknown until the step runs)."""
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, jax.Array | np.ndarray):
        if value.shape != ():
            raise ValueError(f"{name} must be a scalar, got an array of shape {value.shape}")
        return value.item()
    if callable(value):
        raise TypeError(f"{name} is {describe(value)}; only learning_rate may be a schedule")
    return value
