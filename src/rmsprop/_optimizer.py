"""``rmsprop.RMSProp``: the RMSProp family as a stateful optimizer over NumPy arrays."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Unpack

import numpy as np
import numpy.typing as npt

from rmsprop import _accel
from rmsprop._options import Hyperparameters, Options
from rmsprop._rule import State, family_update
from rmsprop._slices import slices
from rmsprop._step import _to_numpy
from rmsprop._validation import describe

NDArray = npt.NDArray[Any]

#: The buffers of a parameter, by their names in ``state_dict()``.
BUFFERS: Final = ("cache", "momentum_buffer", "grad_avg")


class RMSProp:
    """RMSProp over a list of NumPy arrays, which ``step`` updates in place.

    The update is :func:`rmsprop.step`'s rule, extended by the options of
    :class:`rmsprop.Hyperparameters` (momentum, Nesterov, centered, weight
    decay, ...). ``preset`` starts from the options that reproduce a framework
    (``"pytorch"``, ``"tensorflow"``, ``"keras"``, ``"optax"``, ``"timm"``, see
    :data:`rmsprop.PRESETS`); keyword options override it.

    Every value is computed in float64 (or wider) and rounded once into the
    arrays, whatever their dtype (unless ``float32_arithmetic``). With
    ``bias_correction``, step ``t`` is the optimizer's count (:attr:`steps` + 1),
    as optax counts: a parameter skipped with a None gradient still counts it.

    Args:
        params: the arrays to optimize: writable, floating dtype, none sharing
            memory with another.
        preset: a framework's options to start from, or None for the seed's rule.
        state_dtype: dtype of the buffers (default: each parameter's dtype),
            e.g. ``np.float32`` to keep float16 parameters' statistics exact.
        float32_arithmetic: compute float32 and float16 parameters in float32
            rather than float64: up to twice as fast where the step is
            compute-bound, but no longer the float64 evaluation rounded once (a
            few float32 ulp apart, more where the step nearly cancels the
            parameter).
        **options: ``lr`` (required unless the preset has one), ``beta``,
            ``eps``, ... as in :class:`rmsprop.Hyperparameters`.

    Example:
        >>> import numpy as np, rmsprop
        >>> w = np.array([1.0, 2.0, 3.0])
        >>> opt = rmsprop.RMSProp([w], lr=0.01, beta=0.9)
        >>> opt.step([np.array([0.1, 0.2, 0.3])])
        >>> w.round(6)
        array([0.968377, 1.968377, 2.968377])
    """

    def __init__(
        self,
        params: Iterable[NDArray],
        *,
        preset: str | None = None,
        state_dtype: npt.DTypeLike | None = None,
        float32_arithmetic: bool = False,
        **options: Unpack[Options],
    ) -> None:
        self._hp = Hyperparameters.from_preset(preset, **options)
        params = list(params)
        for i, p in enumerate(params):
            _check_param(p, f"params[{i}]")
            for j in range(i):
                if np.may_share_memory(p, params[j]) and np.shares_memory(p, params[j]):
                    raise ValueError(f"params[{i}] and params[{j}] share memory")
        if state_dtype is not None:
            dtype = np.dtype(state_dtype)
            if dtype.kind != "f":
                raise TypeError(f"state_dtype must be a floating dtype, got {dtype}")
        self._params: tuple[NDArray, ...] = tuple(params)
        self._state_dtype = None if state_dtype is None else np.dtype(state_dtype)
        if not isinstance(float32_arithmetic, bool):
            raise TypeError(
                f"float32_arithmetic must be True or False, got {describe(float32_arithmetic)}"
            )
        self._float32_arithmetic = float32_arithmetic
        self._state: list[dict[str, NDArray]] = []
        self._launches: dict[tuple[Any, ...], tuple[Any, list[tuple[Any, ...]]]] = {}
        self.zero_state()

    @property
    def params(self) -> tuple[NDArray, ...]:
        """The arrays being optimized."""
        return self._params

    @property
    def hyperparameters(self) -> Hyperparameters:
        """The options in force; assign a new :class:`Hyperparameters` to change them."""
        return self._hp

    @hyperparameters.setter
    def hyperparameters(self, value: Hyperparameters) -> None:
        if not isinstance(value, Hyperparameters):
            raise TypeError(
                f"hyperparameters must be rmsprop.Hyperparameters, got {describe(value)}"
            )
        self._hp = value

    @property
    def steps(self) -> int:
        """How many steps were taken since construction or ``zero_state()``."""
        return self._steps

    def zero_state(self) -> None:
        """Start over: the average at ``initial_cache``, other buffers at 0, step count 0."""
        self._steps = 0
        self._launches.clear()
        self._state = [{"cache": self._buffer(p, self._hp.initial_cache)} for p in self._params]
        for p, buffers in zip(self._params, self._state, strict=True):
            self._add_missing_buffers(p, buffers)

    def step(self, grads: Sequence[Any]) -> None:
        """Update every parameter in place with its gradient (None skips a parameter).

        All gradients are checked before anything is written: real numbers of
        the parameter's shape (NumPy arrays, or nested lists), not sharing
        memory with the parameter or its buffers.
        """
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients, got {len(grads)}")
        checked: list[NDArray | None] = []
        for i, (p, g) in enumerate(zip(self._params, grads, strict=True)):
            if g is None:
                checked.append(None)
                continue
            name = f"grads[{i}]"
            array = _to_numpy(g, name)
            if array.shape != p.shape:
                raise ValueError(f"{name} has shape {array.shape} but params[{i}] has {p.shape}")
            for other in (p, *self._state[i].values()):
                if np.may_share_memory(array, other) and np.shares_memory(array, other):
                    raise ValueError(f"{name} shares memory with params[{i}] or its state")
            checked.append(array)
        hp = self._hp
        correction = hp.correction(self._steps + 1)
        work = sum(p.size for p, g in zip(self._params, checked, strict=True) if g is not None)
        kernels = _accel.kernels(work)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, (p, g, buffers) in enumerate(zip(self._params, checked, self._state, strict=True)):
            if g is None:
                continue
            self._add_missing_buffers(p, buffers)
            kinds = _kinds(p, g, buffers) if kernels is not None else None
            if kinds is None:
                _update(p, g, buffers, hp, self._float32_arithmetic, correction)
            elif p.size:
                groups.setdefault(kinds, []).append(i)
        for kinds, members in groups.items():  # one launch per group of dtypes
            grads = [checked[i].ctypes.data for i in members]  # type: ignore[union-attr]
            self._launch(kinds, members, hp)(grads, hp, correction)
        self._steps += 1

    def _launch(self, kinds: tuple[str, str, str], members: list[int], hp: Hyperparameters) -> Any:
        """The group launch over ``members``, kept while the parameters and state are the
        same arrays (the state changes identity only on zero_state and load_state_dict)."""
        key = (kinds, tuple(members), hp.switches, self._float32_arithmetic)
        state = [self._state[i] for i in members]
        found = self._launches.get(key)
        if found is not None and all(
            all(kept is buffers.get(name) for name, kept in zip(BUFFERS, held, strict=True))
            for held, buffers in zip(found[1], state, strict=True)
        ):
            return found[0]
        kernels = _accel.load()
        assert kernels is not None  # step() found them
        rows = [
            (
                self._params[i].ctypes.data,
                *(0 if name not in buffers else buffers[name].ctypes.data for name in BUFFERS),
                self._params[i].size,
            )
            for i, buffers in zip(members, state, strict=True)
        ]
        launch = kernels.Launch(rows, kinds, hp, float32_arithmetic=self._float32_arithmetic)
        held = [tuple(buffers.get(name) for name in BUFFERS) for buffers in state]
        if len(self._launches) >= 8:  # subsets of parameters come and go: keep a few
            self._launches.pop(next(iter(self._launches)))
        self._launches[key] = (launch, held)
        return launch

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the optimizer: plain NumPy arrays and numbers, resumable bit-exactly.

        ``{"steps": int, "hyperparameters": {name: value}, "state": [{buffer: array}]}``
        with one dict per parameter, holding ``cache`` and, when used,
        ``momentum_buffer`` and ``grad_avg``.
        """
        return {
            "steps": self._steps,
            "hyperparameters": self._hp.as_dict(),
            "state": [{k: a.copy() for k, a in buffers.items()} for buffers in self._state],
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot; checked whole before anything changes."""
        missing = {"steps", "hyperparameters", "state"} - set(state_dict)
        if missing:
            raise ValueError(f"state_dict lacks {sorted(missing)}")
        hp = Hyperparameters(**state_dict["hyperparameters"])
        steps = state_dict["steps"]
        if not isinstance(steps, int | np.integer) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"state_dict['steps'] must be an integer >= 0, got {steps!r}")
        saved = state_dict["state"]
        if len(saved) != len(self._params):
            raise ValueError(
                f"state_dict holds state for {len(saved)} parameters, this optimizer has "
                f"{len(self._params)}"
            )
        state: list[dict[str, NDArray]] = []
        for i, (p, buffers) in enumerate(zip(self._params, saved, strict=True)):
            unknown = set(buffers) - set(BUFFERS)
            if unknown or "cache" not in buffers:
                raise ValueError(
                    f"state_dict['state'][{i}] must hold 'cache' and optionally "
                    f"'momentum_buffer', 'grad_avg'; got {sorted(buffers)}"
                )
            restored = {}
            for key, value in buffers.items():
                array = _to_numpy(value, f"state_dict['state'][{i}][{key!r}]")
                if array.shape != p.shape:
                    raise ValueError(
                        f"state_dict['state'][{i}][{key!r}] has shape {array.shape}, "
                        f"params[{i}] has {p.shape}"
                    )
                restored[key] = array.astype(self._dtype(p), copy=True)
            state.append(restored)
        self._hp, self._steps, self._state = hp, int(steps), state
        self._launches.clear()

    def _dtype(self, p: NDArray) -> np.dtype[Any]:
        return self._state_dtype or p.dtype

    def _buffer(self, p: NDArray, value: float) -> NDArray:
        return np.full(p.shape, value, dtype=self._dtype(p))

    def _add_missing_buffers(self, p: NDArray, buffers: dict[str, NDArray]) -> None:
        """Buffers that the options in force use but that do not exist yet start at 0."""
        if self._hp.momentum and "momentum_buffer" not in buffers:
            buffers["momentum_buffer"] = self._buffer(p, 0.0)
        if self._hp.centered and "grad_avg" not in buffers:
            buffers["grad_avg"] = self._buffer(p, 0.0)


#: The storage kinds of the group kernel, by NumPy dtype (a dict: dtype.name is slow).
_KIND_OF: Final = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float32",
                   np.dtype(np.float64): "float64"}  # fmt: skip


def _kinds(p: NDArray, g: NDArray, buffers: Mapping[str, NDArray]) -> tuple[str, str, str] | None:
    """The storage kinds of a group launch for ``p``, or None where it does not apply: the
    parameter, gradient and state float16/float32/float64 (state of one dtype), all
    C-contiguous or all Fortran-contiguous, so that element i of each one's memory is the
    same element."""
    states = list(buffers.values())
    kinds = (_KIND_OF.get(p.dtype), _KIND_OF.get(g.dtype), _KIND_OF.get(states[0].dtype))
    if None in kinds or any(b.dtype != states[0].dtype for b in states[1:]):
        return None
    arrays = (p, g, *states)
    if not (all(a.flags.c_contiguous for a in arrays) or all(a.flags.f_contiguous for a in arrays)):
        return None
    return kinds  # type: ignore[return-value]


def _check_param(p: object, name: str) -> None:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{name} is {describe(p)}; expected a NumPy array")
    if p.dtype.kind != "f":
        raise TypeError(f"{name} has dtype {p.dtype}; expected a floating-point array")
    if not p.flags.writeable:
        raise ValueError(f"{name} is a read-only array")


def _update(
    p: NDArray,
    g: NDArray,
    buffers: dict[str, NDArray],
    hp: Hyperparameters,
    float32_arithmetic: bool,
    correction: float,
) -> None:
    """One family step for one parameter, in float64 (or wider), rounded once into place.

    With the fused kernels when the parameter and its buffers are float32 or
    float64 arrays of one dtype that can be viewed flat; NumPy otherwise. With
    ``float32_arithmetic``, float32 data are computed in float32 instead.
    """
    if fused_update(p, g, buffers, hp, float32_arithmetic, correction):
        return
    dtypes = (p.dtype, g.dtype, *(b.dtype for b in buffers.values()))
    if float32_arithmetic and all(d in (np.float16, np.float32) for d in dtypes):
        work = np.dtype(np.float32)
    else:
        work = np.result_type(np.float64, *dtypes)
    keys = list(buffers)
    # Slice by slice: what is widened stays bounded (see rmsprop._slices.SLICE).
    for pp, gg, *pieces in slices((p, g, *buffers.values())):
        piece = dict(zip(keys, pieces, strict=True))

        def wide(key: str, piece: dict[str, NDArray] = piece) -> NDArray | None:
            return piece[key].astype(work) if key in piece else None

        with np.errstate(all="ignore"):
            new_p, new_state = family_update(
                pp.astype(work),
                gg.astype(work, copy=False),
                State(wide("cache"), wide("momentum_buffer"), wide("grad_avg")),
                hp,
                np.sqrt,
                _clamp_at_zero,
                correction,
            )
            np.copyto(pp, new_p, casting="unsafe")
            for key, value in zip(BUFFERS, new_state, strict=True):
                if key in piece:
                    np.copyto(piece[key], value, casting="unsafe")


def fused_update(
    p: NDArray,
    g: NDArray,
    buffers: Mapping[str, NDArray],
    hp: Hyperparameters,
    float32_arithmetic: bool = False,
    correction: float = 1.0,
) -> bool:
    """Run the fused kernel on ``p`` and its buffers if it applies; whether it ran."""
    kernels = _accel.kernels(p.size)
    if kernels is None or p.dtype not in kernels.DTYPES:
        return False
    if any(b.dtype != p.dtype for b in buffers.values()):
        return False
    flat = kernels.flat
    if flat(p) is None or any(flat(b) is None for b in buffers.values()):
        return False
    keys = list(buffers)
    g1 = flat(g) if g.dtype in kernels.DTYPES else None
    # Gradients the kernel cannot read as they are go in slices, converted.
    pieces = [(p, g, *buffers.values())] if g1 is not None else slices((p, g, *buffers.values()))
    for pp, gg, *state in pieces:
        piece = dict(zip(keys, state, strict=True))
        grads = flat(gg) if g1 is not None else None
        if grads is None:
            readable = g.dtype if g.dtype in kernels.DTYPES else np.float64
            grads = np.ascontiguousarray(gg, dtype=readable).reshape(-1)
        kernels.update(
            hp,
            flat(pp),
            grads,
            flat(piece["cache"]),
            None if "momentum_buffer" not in piece else flat(piece["momentum_buffer"]),
            None if "grad_avg" not in piece else flat(piece["grad_avg"]),
            float32_arithmetic=float32_arithmetic,
            correction=correction,
        )
    return True


def _clamp_at_zero(x: NDArray) -> NDArray:
    return np.maximum(x, 0.0)
