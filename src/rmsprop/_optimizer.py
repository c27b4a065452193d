"""``rmsprop.RMSProp``: the RMSProp family as a stateful optimizer over NumPy arrays."""

import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Unpack, cast

import numpy as np
import numpy.typing as npt

from rmsprop import _accel, _flat
from rmsprop._dispatch import Rule, kernel_kinds, update_arrays
from rmsprop._options import Hyperparameters, Options
from rmsprop._validation import describe, to_numpy

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
        self._kept: _Kept | None = None
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
        self._kept = None
        self._state = [{} for _ in self._params]
        self._place([(i, "cache", self._hp.initial_cache) for i in range(len(self._params))])
        self._add_missing_buffers()

    def step(self, grads: Sequence[Any]) -> None:
        """Update every parameter in place with its gradient (None skips a parameter).

        All gradients are checked before anything is written: real numbers of
        the parameter's shape (NumPy arrays, or nested lists), not sharing
        memory with the parameter. (The state buffers are the optimizer's own
        arrays, never handed out: ``state_dict()`` copies them.)
        """
        if len(grads) != len(self._params):
            raise ValueError(f"expected {len(self._params)} gradients, got {len(grads)}")
        if self._kept is not None and self._kept.step(self, grads):
            self._steps += 1
            return
        checked: list[NDArray | None] = []
        work = 0
        for i, (p, given) in enumerate(zip(self._params, grads, strict=True)):
            if given is None:
                checked.append(None)
                continue
            g = given
            if type(g) is not np.ndarray or g.dtype.kind not in "fiub":
                g = to_numpy(g, f"grads[{i}]")
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape} but params[{i}] has {p.shape}")
            if np.may_share_memory(g, p) and np.shares_memory(g, p):
                raise ValueError(f"grads[{i}] shares memory with params[{i}]")
            checked.append(g)
            work += p.size
        hp = self._hp
        correction = hp.correction(self._steps + 1)
        kernels = _accel.kernels(work)
        rule = Rule.family(hp, correction, self._float32_arithmetic)
        self._add_missing_buffers()
        groups: dict[tuple[Any, ...], list[int]] = {}
        others = False
        for i, (p, g, buffers) in enumerate(zip(self._params, checked, self._state, strict=True)):
            if g is None:
                continue
            kinds = None if kernels is None else kernel_kinds(p, g, list(buffers.values()))
            if kinds is None:  # the other paths, one array at a time
                state = tuple(buffers.get(name) for name in BUFFERS)
                update_arrays(rule, p, g, state)
                others = True
            elif p.size:
                groups.setdefault(kinds, []).append(i)
        launches = []
        for kinds, members in groups.items():  # one launch per group of dtypes
            arrays = [checked[i] for i in members]
            launch = self._launch(kinds, members, arrays, hp)
            launch(arrays, hp, correction)
            launches.append((launch, members))
        self._steps += 1
        unconverted = all(g is given for g, given in zip(checked, grads, strict=True))
        kept = launches and unconverted and not others
        self._kept = _Kept(self, checked, launches) if kept else None

    def _launch(
        self, kinds: tuple[str, str, str], members: list[int], grads: list[Any], hp: Hyperparameters
    ) -> Any:
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
        launch = kernels.Launch(
            [
                (self._params[i], g, [buffers.get(name) for name in BUFFERS])
                for i, g, buffers in zip(members, grads, state, strict=True)
            ],
            hp,
            float32_arithmetic=self._float32_arithmetic,
        )
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
        restored: list[tuple[int, str, NDArray]] = []
        for i, (p, buffers) in enumerate(zip(self._params, saved, strict=True)):
            unknown = set(buffers) - set(BUFFERS)
            if unknown or "cache" not in buffers:
                raise ValueError(
                    f"state_dict['state'][{i}] must hold 'cache' and optionally "
                    f"'momentum_buffer', 'grad_avg'; got {sorted(buffers)}"
                )
            for key, value in buffers.items():
                array = to_numpy(value, f"state_dict['state'][{i}][{key!r}]")
                if array.shape != p.shape:
                    raise ValueError(
                        f"state_dict['state'][{i}][{key!r}] has shape {array.shape}, "
                        f"params[{i}] has {p.shape}"
                    )
                restored.append((i, key, array))
        self._hp, self._steps = hp, int(steps)
        self._state = [{} for _ in self._params]
        self._kept = None
        self._place(restored)  # copies, into flat buffers
        self._launches.clear()

    def _dtype(self, p: NDArray) -> np.dtype[Any]:
        return self._state_dtype or p.dtype

    def _add_missing_buffers(self) -> None:
        """Buffers that the options in force use but that do not exist yet start at 0."""
        wanted = [key for key, on in (("momentum_buffer", self._hp.momentum),
                                      ("grad_avg", self._hp.centered)) if on]  # fmt: skip
        self._place(
            [(i, key, 0.0) for i, buffers in enumerate(self._state) for key in wanted
             if key not in buffers]
        )  # fmt: skip

    def _place(self, requests: Sequence[tuple[int, str, float | NDArray]]) -> None:
        """Create the buffers ``(parameter index, name, value or array to copy)`` as views
        of one flat array per dtype (see :mod:`rmsprop._flat`), each in C order."""
        if not requests:
            return
        self._kept = None  # its launches do not write the new buffers
        by_dtype: dict[np.dtype[Any], list[tuple[int, str, float | NDArray]]] = {}
        for request in sorted(requests, key=lambda r: BUFFERS.index(r[1])):
            by_dtype.setdefault(self._dtype(self._params[request[0]]), []).append(request)
        for dtype, members in by_dtype.items():
            sizes = [self._params[i].size for i, _, _ in members]
            offsets, total = _flat.layout(sizes, dtype.itemsize)
            arena = _flat.numpy_buffer(total, dtype)
            for (i, key, source), offset, size in zip(members, offsets, sizes, strict=True):
                view = arena[offset : offset + size].reshape(self._params[i].shape)
                view[...] = source
                self._state[i][key] = view


_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")
_STRIDES = operator.attrgetter("strides")


class _Kept:
    """The launches of the last step, kept with what the gradients were like: a later
    step whose gradients are NumPy arrays of the same dtypes, shapes and strides (None
    at the same places), none overlapping its parameter, runs them again at the
    gradients' new addresses, without the per-array checks and dispatch (about 0.5 µs
    a gradient instead of 7). What else a step checks cannot have changed: the
    parameters are the optimizer's, and its state changes only through itself, which
    drops this record."""

    def __init__(
        self,
        optimizer: RMSProp,
        grads: list[NDArray | None],
        launches: list[tuple[Any, list[int]]],
    ) -> None:
        kernels = _accel.load()
        assert kernels is not None  # the launches ran
        self.options = (optimizer.hyperparameters.switches, optimizer._float32_arithmetic)
        self.state = optimizer._state
        self.types = list(map(type, grads))
        present = [i for i, g in enumerate(grads) if g is not None]
        arrays = [cast(NDArray, grads[i]) for i in present]
        self.every = len(present) == len(grads)
        self.dtypes = list(map(_DTYPE, arrays))
        self.shapes = list(map(_SHAPE, arrays))
        self.strides = list(map(_STRIDES, arrays))
        self.nbytes = np.array([g.nbytes for g in arrays], dtype=np.int64)
        params = [optimizer.params[i] for i in present]
        self.low = np.array([kernels.address(p) for p in params], dtype=np.int64)
        self.high = self.low + np.array([p.nbytes for p in params], dtype=np.int64)
        self.work = sum(p.size for p in params)
        position = {i: k for k, i in enumerate(present)}
        self.launches = [
            (launch, np.array([position[i] for i in members], dtype=np.intp))
            for launch, members in launches
        ]
        self.address = kernels.address

    def step(self, optimizer: RMSProp, grads: Sequence[Any]) -> bool:
        """Run the kept launches with ``grads`` if they apply; whether they did."""
        hp = optimizer.hyperparameters
        if (
            (hp.switches, optimizer._float32_arithmetic) != self.options
            or optimizer._state is not self.state
            or list(map(type, grads)) != self.types
        ):
            return False
        arrays = grads if self.every else [g for g in grads if g is not None]
        if (
            list(map(_DTYPE, arrays)) != self.dtypes
            or list(map(_SHAPE, arrays)) != self.shapes
            or list(map(_STRIDES, arrays)) != self.strides
            or _accel.kernels(self.work) is None
        ):
            return False
        addresses = np.fromiter(map(self.address, arrays), dtype=np.int64, count=len(arrays))
        if np.any((addresses < self.high) & (self.low < addresses + self.nbytes)):
            return False  # a gradient overlaps its parameter: the full checks say so
        correction = hp.correction(optimizer.steps + 1)
        for launch, positions in self.launches:
            launch.run(addresses[positions], hp, correction)
        return True


def _check_param(p: object, name: str) -> None:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{name} is {describe(p)}; expected a NumPy array")
    if p.dtype.kind != "f":
        raise TypeError(f"{name} has dtype {p.dtype}; expected a floating-point array")
    if not p.flags.writeable:
        raise ValueError(f"{name} is a read-only array")
