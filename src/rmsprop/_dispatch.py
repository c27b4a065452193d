"""Which path computes a step, in which precision: the policy of every front end.

The front ends (``rmsprop.step`` and ``step_``, ``rmsprop.RMSProp``, ``rmsprop.torch``)
validate their inputs, then ask this module how to compute. The paths, fastest first:

* **plain-Python loop**: flat lists (or single numbers) of at most
  :data:`PYTHON_LOOP_MAX` Python floats (``rmsprop.step``);
* **fused kernel over memory**: arrays laid out alike in dense memory, in any order
  of dimensions (C, Fortran, transposes, channels_last), stored as float16,
  bfloat16 (torch), float32 or float64: the Numba kernel on the CPU
  (:mod:`rmsprop._kernels`, one launch per group of arrays), the Triton kernel on
  CUDA (:mod:`rmsprop._triton`); loaded on first use (see :mod:`rmsprop._accel`);
* **the kernel over slices**: C-contiguous arrays whose gradients it cannot read as
  they are (integers, booleans), converted slice by slice;
* **slices** (NumPy, or ``torch._foreach_*`` for tensors): everything else (views
  with gaps, other devices, no Numba), widened slice by slice so that what is widened
  or copied stays bounded (:mod:`rmsprop._slices`).

Precision (:func:`rmsprop._kinds.float32_work`): every path computes in float64 (or wider, where an
input is) and rounds once into the outputs; with ``float32_arithmetic``, in float32
where no value is wider than float32.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from rmsprop import _accel
from rmsprop._kinds import NUMPY_KINDS, float32_work
from rmsprop._options import SEED_RULE, Hyperparameters, Scalars, Switches, work_values
from rmsprop._rule import State, family_update, update
from rmsprop._slices import slices

NDArray = npt.NDArray[Any]

#: Up to this many values, a plain-Python loop beats a NumPy round trip.
PYTHON_LOOP_MAX: Final = 64
#: Device types whose plain dense tensors go to the Triton kernel when it loads
#: (tests add "cpu", with Triton's interpreter).
GPU_DEVICE_TYPES: tuple[str, ...] = ("cuda",)


class Rule(NamedTuple):
    """One step's rule, as every path computes it: ``switches`` and ``scalars`` for the
    kernels; ``hp`` for the NumPy path (None: the seed's rule, with the scalars' lr,
    beta and eps)."""

    switches: Switches
    scalars: Scalars
    hp: Hyperparameters | None = None
    float32_arithmetic: bool = False

    @classmethod
    def seed(cls, lr: float, beta: float, eps: float) -> "Rule":
        """The seed's rule: ``rmsprop.step``."""
        return cls(SEED_RULE, Scalars(lr, beta, eps))

    @classmethod
    def family(
        cls, hp: Hyperparameters, correction: float = 1.0, float32_arithmetic: bool = False
    ) -> "Rule":
        """The family's rule with the options ``hp`` and the bias correction of the step."""
        return cls(hp.switches, Scalars.of(hp, correction), hp, float32_arithmetic)

    def numpy(self, p: NDArray, g: NDArray, state: State) -> tuple[NDArray, State]:
        """The rule on NumPy arrays already in the work precision (warnings are the
        caller's: IEEE 754 results are intended)."""
        if self.hp is None:
            lr, beta, eps = self.scalars[:3]
            new_p, new_v = update(p, g, state.cache, lr, beta, eps, np.sqrt)
            return new_p, State(new_v)
        hp = work_values(self.hp, p.dtype == np.float32)  # float32: the derived values too
        return family_update(p, g, state, hp, np.sqrt, _clamp_at_zero, self.scalars.correction)


def work_dtype(dtypes: Sequence[np.dtype[Any]], float32_arithmetic: bool = False) -> np.dtype[Any]:
    """The NumPy dtype a step over arrays of ``dtypes`` computes in."""
    if float32_work((d.name for d in dtypes), float32_arithmetic):
        return np.dtype(np.float32)
    return np.result_type(np.float64, *dtypes)


def dense(shape: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether elements of ``shape`` at ``strides`` (in elements) fill one run of memory,
    in some order of the dimensions: contiguous arrays and their permutations
    (channels_last, transposes), not views with gaps or overlaps."""
    expected = 1
    for size, stride in sorted(zip(shape, strides, strict=True), key=lambda d: d[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _element_strides(a: NDArray) -> tuple[int, ...] | None:
    itemsize = a.itemsize
    if any(s % itemsize for s in a.strides):
        return None
    return tuple(s // itemsize for s in a.strides)


def laid_out_alike(arrays: Sequence[NDArray]) -> bool:
    """Whether NumPy arrays of one shape are dense and laid out alike: element i of each
    one's memory is the same element (so a kernel can run over their memory)."""
    first = arrays[0]
    if all(a.flags.c_contiguous for a in arrays) or all(a.flags.f_contiguous for a in arrays):
        return True
    strides = _element_strides(first)
    return (
        strides is not None
        and dense(first.shape, strides)
        and all(_element_strides(a) == strides for a in arrays[1:])
    )


def kernel_kinds(
    p: NDArray, g: NDArray, state: Sequence[NDArray], new_p: NDArray | None = None
) -> tuple[str, str, str] | None:
    """The storage kinds of the Numba kernel for these NumPy arrays of one shape, or None
    where it does not apply: float16/32/64 (one dtype for the state buffers, and for the
    new parameter and the parameter), dense and laid out alike."""
    kinds = (NUMPY_KINDS.get(p.dtype), NUMPY_KINDS.get(g.dtype), NUMPY_KINDS.get(state[0].dtype))
    if None in kinds or any(b.dtype != state[0].dtype for b in state[1:]):
        return None
    if new_p is not None and new_p.dtype != p.dtype:
        return None
    arrays = [p, g, *state] if new_p is None else [p, g, *state, new_p]
    return kinds if laid_out_alike(arrays) else None  # type: ignore[return-value]


def update_arrays(
    rule: Rule,
    p: NDArray,
    g: NDArray,
    state: Sequence[NDArray | None],
    new: tuple[NDArray, NDArray] | None = None,
) -> None:
    """One step over NumPy arrays of one shape, by the fastest path that applies.

    ``state`` is (square average, momentum buffer or None, gradient average or None).
    In place, or into ``new`` (new parameter, new square average; only the other
    buffers are then updated in place). The caller has checked dtypes and overlaps.
    """
    v, b, a = state
    assert v is not None
    kernels = _accel.kernels(p.size)
    if kernels is not None:
        buffers = [x for x in (v, b, a) if x is not None]
        new_p, new_v = (None, None) if new is None else new
        outputs = [] if new_v is None else [new_v]
        pieces: Iterable[Sequence[Any]] | None = None
        if kernel_kinds(p, g, buffers + outputs, new_p) is not None:
            pieces = [(p, g, v, b, a, new_p, new_v)]
        elif (  # gradients it cannot read (integers, booleans): converted, in flat runs
            g.dtype.kind in "iub"
            and kernel_kinds(p, p, buffers + outputs, new_p) is not None
            and all(x.flags.c_contiguous for x in (p, *buffers, *outputs))
        ):
            pieces = (
                (pp, np.ascontiguousarray(gg, dtype=np.float64), vv, bb, aa, np_, nv)
                for pp, gg, vv, bb, aa, np_, nv in slices((p, g, v, b, a, new_p, new_v))
            )
        if pieces is not None:
            for pp, gg, vv, bb, aa, np_, nv in pieces:
                kernels.update(
                    rule.switches, rule.scalars, pp, gg, vv, bb, aa,
                    float32_arithmetic=rule.float32_arithmetic,
                    new_param=np_, new_square_avg=nv,
                )  # fmt: skip
            return
    _numpy_update(rule, p, g, (v, b, a), [] if new is None else list(new))


def _numpy_update(
    rule: Rule, p: NDArray, g: NDArray, state: Sequence[NDArray | None], outputs: list[NDArray]
) -> None:
    """The NumPy path: slice by slice, widened to the work dtype, rounded once into place."""
    arrays = [p, g, *(x for x in state if x is not None), *outputs]
    work = work_dtype([x.dtype for x in arrays], rule.float32_arithmetic)
    for pp, gg, vv, bb, aa, *out in slices((p, g, *state, *outputs)):

        def wide(x: NDArray | None) -> NDArray | None:
            return None if x is None else x.astype(work)

        with np.errstate(all="ignore"):  # IEEE 754 results (inf, NaN), never warnings
            new_p, new_state = rule.numpy(
                pp.astype(work), gg.astype(work, copy=False), State(wide(vv), wide(bb), wide(aa))
            )
            targets = (out[0], out[1], bb, aa) if out else (pp, vv, bb, aa)
            for target, value in zip(targets, (new_p, *new_state), strict=True):
                if target is not None:
                    np.copyto(target, value, casting="unsafe")


def _clamp_at_zero(x: NDArray) -> NDArray:
    return np.maximum(x, 0.0)
