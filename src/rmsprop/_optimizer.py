"""``rmsprop.RMSProp``: the RMSProp family as a stateful optimizer over NumPy arrays."""

import operator
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Unpack, cast

import numpy as np
import numpy.typing as npt

from rmsprop import _accel, _flat, _lowbit_numpy, _state_bits
from rmsprop._dispatch import Rule, kernel_kinds, update_arrays
from rmsprop._kinds import NUMPY_KINDS
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
        state_bits: 32 (default): the state in ``state_dtype``; 16: in bfloat16
            (``ml_dtypes.bfloat16``), each new value rounded stochastically; 8:
            each buffer of a parameter of at least 4,096 elements as one-byte
            codes with a float32 scale per block of 256, rounded stochastically
            (smaller parameters keep float32 state). As ``rmsprop.torch.RMSProp``'s
            ``state_bits``, on the same Numba kernel, or with the kernels off in
            NumPy, writing the same bytes (see :mod:`rmsprop._state_bits`):
            float16, float32 and float64 parameters.
        seed: the random bits of ``state_bits`` 16 and 8 (default 0): they depend
            only on it, the step, the parameter's index and the element.
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
        state_bits: int = 32,
        seed: int = 0,
        **options: Unpack[Options],
    ) -> None:
        self._hp = Hyperparameters.from_preset(preset, **options)
        params = list(params)
        for i, p in enumerate(params):
            _check_param(p, f"params[{i}]")
            for j in range(i):
                if np.may_share_memory(p, params[j]) and np.shares_memory(p, params[j]):
                    raise ValueError(f"params[{i}] and params[{j}] share memory")
        dtype = None if state_dtype is None else np.dtype(state_dtype)
        dtype = _state_bits.check(state_bits, seed, dtype)
        if dtype is not None and dtype.kind != "f" and state_bits == 32:
            hint = " (bfloat16 state: state_bits=16)" if dtype.name == "bfloat16" else ""
            raise TypeError(f"state_dtype must be a floating dtype, got {dtype}{hint}")
        if state_bits != 32:
            for i, p in enumerate(params):
                if p.dtype not in NUMPY_KINDS:
                    raise TypeError(
                        f"state_bits={state_bits} takes float16, float32 and float64 "
                        f"parameters; params[{i}] is {p.dtype}"
                    )
        self._params: tuple[NDArray, ...] = tuple(params)
        self._state_dtype = dtype
        self._bits, self._seed = state_bits, int(seed)
        # The step the kernels draw random bits for (read at each launch; see _state_bits).
        self._counter = np.zeros((), dtype=np.float32)
        if not isinstance(float32_arithmetic, bool):
            raise TypeError(
                f"float32_arithmetic must be True or False, got {describe(float32_arithmetic)}"
            )
        self._float32_arithmetic = float32_arithmetic
        self._state: list[dict[str, NDArray]] = []
        self._launches: dict[tuple[Any, ...], tuple[Any, list[tuple[Any, ...]]]] = {}
        self._kept: _Kept | None = None
        self._where: Any = None  # the parameters' addresses (see _forget_moved_launches)
        self.zero_state()

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles leave out the kept launches: they hold this optimizer's
        memory addresses, and a copy's steps would write through them into its original."""
        return {**self.__dict__, "_launches": {}, "_kept": None}

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
        if _MOVABLE_DATA and (self._launches or self._kept is not None):
            self._forget_moved_launches()
        if self._bits != 32:  # the step the random bits are drawn for
            self._counter[()] = self._steps % _state_bits.STEP_PERIOD
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
        if self._bits != 32:
            self._lowbit_step(checked, grads)
            return
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
        self._end_step(checked, grads, launches, others)

    def _forget_moved_launches(self) -> None:
        """Drop the launches kept from earlier steps if a parameter's memory moved: they
        hold the parameters' addresses, and ``a.data = ...`` (NumPy 1.x) frees an array's
        memory and gives it other."""
        kernels = _accel.load()
        if kernels is None:  # NumPy's launches hold the arrays themselves
            return
        where = kernels.addresses(self._params)
        if self._where is not None and not np.array_equal(where, self._where):
            self._launches.clear()
            self._kept = None
        self._where = where

    def _end_step(
        self,
        checked: list[NDArray | None],
        grads: Sequence[Any],
        launches: list[tuple[Any, list[int]]],
        others: bool,
    ) -> None:
        """Count the step; keep its launches for the next one where they can serve it."""
        self._steps += 1
        unconverted = all(g is given for g, given in zip(checked, grads, strict=True))
        kept = launches and unconverted and not others
        self._kept = _Kept(self, checked, launches) if kept else None

    def _lowbit_step(self, checked: list[NDArray | None], grads: Sequence[Any]) -> None:
        """The step with ``state_bits`` 16 or 8: every parameter on the fused kernel, in
        groups of one parameter dtype, gradient dtype and state kind (where the kernels
        are off, the same step in NumPy: :mod:`rmsprop._lowbit_numpy`). The state is in
        C order; a parameter laid out otherwise is updated through a C-ordered copy, a
        gradient that is not a C-ordered float16/32/64 array through one in float64."""
        hp = self._hp
        correction = hp.correction(self._steps + 1)
        self._add_missing_buffers()
        groups: dict[tuple[str, str, str], list[int]] = {}
        targets: dict[int, NDArray] = {}
        for i, (p, given) in enumerate(zip(self._params, checked, strict=True)):
            if given is None or not p.size:
                continue
            g = given
            if not (g.flags.c_contiguous and g.dtype in NUMPY_KINDS):
                kind = g.dtype if g.dtype in NUMPY_KINDS else np.dtype(np.float64)
                checked[i] = g = np.ascontiguousarray(g, dtype=kind)
            if not p.flags.c_contiguous:
                targets[i] = np.ascontiguousarray(p)
            state = str(self._state[i]["cache"].dtype)  # uint8 for codes
            groups.setdefault((NUMPY_KINDS[p.dtype], NUMPY_KINDS[g.dtype], state), []).append(i)
        launches = []
        fused = _accel.load() is not None
        try:
            for kinds, members in groups.items():
                arrays = [checked[i] for i in members]
                if not fused and kinds[2] == "float32":  # 8-bit state's small parameters:
                    # float32 state, by the 32-bit step's path
                    rule = Rule.family(hp, correction, self._float32_arithmetic)
                    for i, grad in zip(members, arrays, strict=True):
                        buffers = tuple(self._state[i].get(name) for name in BUFFERS)
                        update_arrays(
                            rule, targets.get(i, self._params[i]), cast(NDArray, grad), buffers
                        )
                    continue
                launch = self._launch(kinds, members, arrays, hp, targets)
                launch(arrays, hp, correction)
                launches.append((launch, members))
        finally:  # what was computed is written back, even when interrupted
            for i, target in targets.items():
                self._params[i][...] = target
        self._end_step(checked, grads, launches, bool(targets) or not fused)

    def _launch(
        self,
        kinds: tuple[str, str, str],
        members: list[int],
        grads: list[Any],
        hp: Hyperparameters,
        targets: Mapping[int, NDArray] | None = None,
    ) -> Any:
        """The group launch over ``members``, kept while the parameters and state are the
        same arrays (the state changes identity only on zero_state and load_state_dict).
        ``targets``: C-ordered copies that stand in for some parameters (never kept)."""
        kernels = _accel.load()
        launch_type = _lowbit_numpy.Launch if kernels is None else kernels.Launch
        key = (kinds, tuple(members), hp.switches, self._float32_arithmetic, launch_type)
        state = [self._state[i] for i in members]
        found = self._launches.get(key)
        if found is not None and all(
            len(held) == len(buffers) and all(map(operator.is_, held, buffers.values()))
            for held, buffers in zip(found[1], state, strict=True)
        ):
            return found[0]
        targets = targets or {}
        launch = launch_type(
            [
                (targets.get(i, self._params[i]), g, [buffers.get(name) for name in BUFFERS])
                for i, g, buffers in zip(members, grads, state, strict=True)
            ],
            hp,
            float32_arithmetic=self._float32_arithmetic,
            **self._lowbit_options(members),
        )
        if any(i in targets for i in members):
            return launch
        held = [tuple(buffers.values()) for buffers in state]
        if len(self._launches) >= 8:  # subsets of parameters come and go: keep a few
            self._launches.pop(next(iter(self._launches)))
        self._launches[key] = (launch, held)
        return launch

    def _lowbit_options(self, members: list[int]) -> dict[str, Any]:
        """What a launch over ``members`` needs for low-bit state (the keywords of the
        kernels' ``Launch``): the step counter, streams and seed where the state is
        rounded stochastically, and the scales of 8-bit codes."""
        state = self._state[members[0]]
        if self._bits == 32 or state["cache"].dtype == np.float32:  # float32: nearest
            return {}
        options: dict[str, Any] = {
            "stochastic": ([self._counter] * len(members), members, self._seed)
        }
        if self._bits == 8:
            options["scales"] = [
                [self._state[i].get(name + _state_bits.SCALE) for name in BUFFERS] for i in members
            ]
        return options

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of the optimizer: plain NumPy arrays and numbers, resumable bit-exactly.

        ``{"steps": int, "hyperparameters": {name: value}, "state": [{buffer: array}]}``
        with one dict per parameter, holding ``cache`` and, when used,
        ``momentum_buffer`` and ``grad_avg``. With ``state_bits`` 16 or 8, also
        ``"seed"``; 8-bit buffers are uint8 codes with their scales beside them
        (``cache_scale``, ...), see :mod:`rmsprop._state_bits`.
        """
        snapshot = {
            "steps": self._steps,
            "hyperparameters": self._hp.as_dict(),
            "state": [{k: a.copy() for k, a in buffers.items()} for buffers in self._state],
        }
        if self._bits != 32:
            snapshot["seed"] = self._seed
        return snapshot

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot; checked whole before anything changes.

        Buffers of another kind convert to this optimizer's ``state_bits``: float
        buffers (of any dtype) load rounded to nearest into its state dtype or its
        8-bit codes, codes decode exactly. A snapshot's ``seed`` is restored.
        """
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
        seed = state_dict.get("seed", self._seed)
        _state_bits.check(self._bits, seed, None)
        restored: list[tuple[int, str, NDArray | _state_bits.Coded]] = []
        for i, (p, buffers) in enumerate(zip(self._params, saved, strict=True)):
            names = set(BUFFERS) & set(buffers)
            unknown = set(buffers) - names - {name + _state_bits.SCALE for name in names}
            if unknown or "cache" not in buffers:
                raise ValueError(
                    f"state_dict['state'][{i}] must hold 'cache' and optionally "
                    f"'momentum_buffer', 'grad_avg' (8-bit codes with their '_scale'); "
                    f"got {sorted(buffers)}"
                )
            for key in sorted(names, key=BUFFERS.index):
                where = f"state_dict['state'][{i}]"
                restored.append((i, key, _state_bits.saved(buffers, key, p.shape, where)))
        self._hp, self._steps, self._seed = hp, int(steps), int(seed)
        self._state = [{} for _ in self._params]
        self._kept = None
        self._place(restored)  # copies, into flat buffers
        self._launches.clear()

    def _dtype(self, p: NDArray) -> np.dtype[Any]:
        """The dtype of ``p``'s state buffers: uint8 where they are 8-bit codes."""
        if _state_bits.coded(self._bits, p.size):
            return np.dtype(np.uint8)
        return self._state_dtype or p.dtype

    def _add_missing_buffers(self) -> None:
        """Buffers that the options in force use but that do not exist yet start at 0."""
        wanted = [key for key, on in (("momentum_buffer", self._hp.momentum),
                                      ("grad_avg", self._hp.centered)) if on]  # fmt: skip
        self._place(
            [(i, key, 0.0) for i, buffers in enumerate(self._state) for key in wanted
             if key not in buffers]
        )  # fmt: skip

    def _place(
        self, requests: Sequence[tuple[int, str, float | NDArray | _state_bits.Coded]]
    ) -> None:
        """Create the buffers ``(parameter index, name, value, array or codes to copy)`` as
        views of one flat array per dtype (see :mod:`rmsprop._flat`), each in C order;
        8-bit codes with their scales, in a float32 array of their own."""
        if not requests:
            return
        self._kept = None  # its launches do not write the new buffers
        by_dtype: dict[np.dtype[Any], list[tuple[int, str, Any]]] = {}
        for request in sorted(requests, key=lambda r: BUFFERS.index(r[1])):
            by_dtype.setdefault(self._dtype(self._params[request[0]]), []).append(request)
        for dtype, members in by_dtype.items():
            shapes = [self._params[i].shape for i, _, _ in members]
            views = _views(dtype, shapes)
            if dtype != np.uint8:
                for (i, key, source), view in zip(members, views, strict=True):
                    view[...] = _state_bits.values(source, key)  # codes decoded
                    self._state[i][key] = view
                continue
            coded = [  # 8-bit codes: given, or encoded from values
                source if isinstance(source, _state_bits.Coded)
                else _state_bits.fill(source, shape, key)
                for (_, key, source), shape in zip(members, shapes, strict=True)
            ]  # fmt: skip
            scales = _views(np.dtype(np.float32), [c.scales.shape for c in coded])
            for (i, key, _), c, view, scale in zip(members, coded, views, scales, strict=True):
                view[...], scale[...] = c.codes, c.scales
                self._state[i][key], self._state[i][key + _state_bits.SCALE] = view, scale


def _views(dtype: np.dtype[Any], shapes: Sequence[tuple[int, ...]]) -> list[NDArray]:
    """Zeroed C-ordered arrays of ``shapes``, views of one flat buffer (:mod:`rmsprop._flat`)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    offsets, total = _flat.layout(sizes, dtype.itemsize)
    arena = _flat.numpy_buffer(total, dtype)
    return [
        arena[offset : offset + size].reshape(shape)
        for offset, size, shape in zip(offsets, sizes, shapes, strict=True)
    ]


_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")
_STRIDES = operator.attrgetter("strides")


def _data_is_settable() -> bool:
    """Whether this NumPy lets ``a.data = ...`` give an array other memory (1.x, where it
    is deprecated; 2.x refuses it)."""
    probe = np.zeros(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe.data = np.zeros(1).data  # type: ignore[misc]
    except AttributeError:
        return False
    return True


#: Whether a parameter's memory can move under the same array (see _data_is_settable):
#: then each step checks its addresses before it reuses a launch.
_MOVABLE_DATA: Final = _data_is_settable()


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
        self.addresses = kernels.addresses

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
        addresses = self.addresses(arrays)
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
