"""The fused Numba kernel: the family rule compiled by Numba, one pass over memory.

The element rule is :func:`rmsprop._rule.family_update` itself, compiled for
Python floats (float64), inside a loop that reads each input element once and
writes each output once. One kernel serves every CPU front end: a table of
addresses describes the arrays of a group (one row per array: parameter,
gradient, square average, momentum buffer, gradient average, and where ``step``
writes new arrays, the new parameter and average), cut into chunks that a
parallel loop shares out in balanced parts. A single array is a one-row table
(:func:`update`); a model's parameters, one :class:`Launch`.

Options that change the shape of the work (momentum, centered, ...), the storage
kinds and the precision are compile-time constants of a kernel: one kernel per
combination, compiled on first use and cached on disk. Arithmetic is float64, so
float32 and 16-bit data come out as the float64 evaluation rounded once, and
float64 data bit-identical to :func:`rmsprop._rule.family_update` on NumPy
arrays; ``float32_arithmetic`` builds compute data of at most float32 in float32
(opt-in, faster where the step is compute-bound, a few float32 ulp less exact).

Which arrays reach the kernel is decided in :mod:`rmsprop._dispatch`. This module
imports Numba: :mod:`rmsprop` imports it only through :mod:`rmsprop._accel`.
"""

import ctypes
import math
import sys
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from rmsprop import _blockwise, _options, _random, _rule
from rmsprop._kinds import (
    BLOCKWISE,
    NUMPY_KINDS,
    STOCHASTIC,
    Member,
    float32_work,
    launch_kinds,
)
from rmsprop._numba_codes import (
    BFLOAT16,
    BITS20,
    BITS40,
    FLOAT16,
    FLOAT16_ONCE,
    NATIVE,
    QBLOCK,
    WEYL0,
    WEYL1,
    WEYL2,
    WEYL_MASK,
    WEYL_MASK32,
    WEYL_MASK64,
    WEYL_STEPS,
    decode8,
    encode8,
    exponent32,
    exponent64,
    float16_value,
    largest32,
    largest64,
    narrow,
    parameter_offset,
    power,
    stochastic_parameter,
    store_stochastic,
    stream,
)
from rmsprop._numba_support import (
    GROUP_CHUNK,
    PARALLEL_MIN,
    PARTS,
    cached_kernel,
    carray,
    float32_of_bits,
    jit,
    launch,
    pointer,
    source_version,
    work_table,
)
from rmsprop._options import Hyperparameters, OptionValues, Scalars, Switches

NDArray = npt.NDArray[Any]
__all__ = ["GROUP_CHUNK", "PARALLEL_MIN", "PARTS", "Launch", "update", "work_table"]


#: The version of what a kernel compiles: the rule, its options and the helpers here.
_SOURCE_VERSION: Final = source_version(_rule, _options, _random, _blockwise, sys.modules[__name__])


def _cache_key(
    switches: Switches, parallel: bool, float32: bool, kinds: tuple[str, str, str], into: bool
) -> tuple[Any, ...]:
    """What a kernel closes over to key its disk cache: the sources' version and the
    build, as plain values, which pickle alike in every process (a function would not:
    its pickle holds a per-process id, and the cache would never be hit)."""
    return (_SOURCE_VERSION, tuple(switches), parallel, float32, kinds, into)


#: family_update compiled (its values, and those it derives, come in its options: each
#: in the kernel's work dtype, so that float32 arithmetic widens nothing to float64).
_family = jit(_rule.family_update)


@jit
def _sqrt(x: float) -> float:
    return math.sqrt(x)


@jit
def _sqrt32(x: Any) -> Any:
    return np.sqrt(x)


@jit
def _clamp_at_zero(x: float) -> float:
    return 0.0 if x < 0.0 else x  # NaN compares false and stays NaN


@jit
def _clamp_at_zero32(x: Any) -> Any:
    return np.float32(0.0) if x < 0.0 else x


def _check_sizes(size: int, *arrays: NDArray | None) -> None:
    """Raise unless every array given has ``size`` elements: compiled loops do not check
    bounds, so this is what keeps them inside their arrays."""
    for array in arrays:
        if array is not None and array.size != size:
            raise ValueError(f"kernel arrays must all have {size} elements, one has {array.size}")


@jit
def _read(x: Any, code: int) -> Any:
    """A stored value as float64, exactly; 16-bit kinds are read as their bits."""
    if code == BFLOAT16:  # the upper half of a float32
        return np.float64(float32_of_bits(np.uint32(x) << np.uint32(16)))
    if code >= FLOAT16:  # either float16 kind
        return np.float64(float16_value(x))
    return np.float64(x)


@jit
def _read32(x: Any, code: int) -> Any:
    """A stored float32, bfloat16 or float16 value as float32, exactly."""
    if code == BFLOAT16:
        return float32_of_bits(np.uint32(x) << np.uint32(16))
    if code >= FLOAT16:  # either float16 kind
        return float16_value(x)
    return x


@jit
def _widen(x: Any, code: int) -> Any:
    """A stored float32 or float64 value as float64 (:func:`_read` for NATIVE kinds)."""
    return np.float64(x)


@jit
def _same(x: Any, code: int) -> Any:
    """A stored float32 value as float32 (:func:`_read32` for NATIVE kinds)."""
    return x


@jit
def _put(array: Any, i: int, x: Any, code: int) -> None:
    """``array[i] = x`` (:func:`_store` for NATIVE kinds)."""
    array[i] = x


@jit
def _store(array: Any, i: int, x: Any, code: int) -> None:
    """``array[i] = x``, rounded once to the array's kind (16-bit kinds through float32)."""
    if code:
        array[i] = narrow(np.float64(x), code)
    else:
        array[i] = x


@cache
def _group_kernel(  # noqa: PLR0915 - one loop nest, compiled as one kernel (see below)
    switches: Switches, parallel: bool, float32: bool, kinds: tuple[str, str, str], into: bool
) -> Any:
    """The group kernel for one option combination and (param, grad, state) storage kinds;
    ``into``: the new parameter and square average go to columns 5 and 6 of the address
    table instead of over the old ones."""
    (
        maximize, centered, eps_in_sqrt, nesterov, lr_in_momentum, decoupled, momentum_on,
        decay_on, bias_correction,
    ) = switches  # fmt: skip
    storage: dict[str, Any] = {"float32": np.float32, "float64": np.float64}
    codes = {"float32": NATIVE, "float64": NATIVE, "bfloat16": BFLOAT16,
             "float16": FLOAT16_ONCE, "float16 via float32": FLOAT16,
             STOCHASTIC: BFLOAT16}  # fmt: skip
    # bfloat16 state written with stochastic rounding: the random words of element j of
    # row t are its draw (rmsprop._random) from the sequence of (seed, step, stream),
    # which columns 7 (the address of the row's float32 step counter, whose next step
    # this is), 8 and 9 of the address table give.
    # 8-bit blockwise state (rmsprop._blockwise): one-byte codes, and the float32 scales
    # of the square average, momentum buffer and gradient average at columns 10 to 12;
    # stochastic too, and every chunk starts on a block.
    # bfloat16 parameters rounded stochastically (kinds[0] STOCHASTIC): with 16 bits of a
    # Weyl sequence of their own, from the same start (the same columns 7 to 9).
    blockwise = kinds[2] == BLOCKWISE
    stochastic = kinds[2] in (STOCHASTIC, BLOCKWISE)
    rounded_params = kinds[0] == STOCHASTIC
    drawn = stochastic or rounded_params
    storage[BLOCKWISE] = np.uint8
    codes[BLOCKWISE] = NATIVE  # decoded by the blockwise loop itself
    p_type, g_type, s_type = (storage.get(kind, np.uint16) for kind in kinds)
    p_code, g_code, s_code = (codes[kind] for kind in kinds)
    p_size, g_size, s_size = (np.dtype(storage.get(kind, np.uint16)).itemsize for kind in kinds)
    # The codes' constants (rmsprop._blockwise.Code) and the arithmetic of the block loop.
    ub, us, un = _blockwise.UNSIGNED.bias, _blockwise.UNSIGNED.smallest, _blockwise.UNSIGNED.nan
    sb_, ss, sn = _blockwise.SIGNED.bias, _blockwise.SIGNED.smallest, _blockwise.SIGNED.nan
    cache_key = _cache_key(switches, parallel, float32, kinds, into)
    # The arithmetic of this build: float32 registers (float32_arithmetic), or float64.
    work = np.float32 if float32 else np.float64
    limit = work(_blockwise.LIMIT)
    steps = WEYL_STEPS

    # One function: a helper it closed over would key the disk cache per process.
    def kernel(addresses, sizes, chunks, parts, lr, beta, eps, momentum, weight_decay, correction):  # type: ignore[no-untyped-def]  # noqa: PLR0915
        if cache_key[0] < 0:  # never: cache_key is here to key the disk cache
            return
        # Chosen here by the constant float32 (Numba compiles the branch taken): the
        # kernel closes over no function, whose pickle (a per-process id) would key the
        # disk cache differently in every process.
        read = _read32 if float32 else _read
        plain = _same if float32 else _widen
        # Where a kind is stored as it is, the helpers without the 16-bit conversions: the
        # same code after LLVM, but each conversion inlined costs compile time.
        read_p = read if p_code else plain
        read_g = read if g_code else plain
        read_s = read if s_code else plain
        store_p = _store if p_code else _put
        store_s = _store if s_code else _put
        family = _family
        sqrt = _sqrt32 if float32 else _sqrt
        clamp = _clamp_at_zero32 if float32 else _clamp_at_zero
        for part in prange(parts.shape[0] - 1):  # parts: one per thread, balanced
            for c in range(parts[part], parts[part + 1]):
                t = chunks[c, 0]
                first = chunks[c, 1]
                count = chunks[c, 2]
                # Arrays of the chunk alone, indexed from 0: loops over range(count) have
                # indices LLVM knows are not negative, and vectorizes.
                p = carray(pointer(addresses[t, 0] + first * p_size, p_type), count)
                g = carray(pointer(addresses[t, 1] + first * g_size, g_type), count)
                v = carray(pointer(addresses[t, 2] + first * s_size, s_type), count)
                b = carray(pointer(addresses[t, 3] + first * s_size, s_type), count)
                a = carray(pointer(addresses[t, 4] + first * s_size, s_type), count)
                p_new = carray(pointer(addresses[t, 5] + first * p_size, p_type), count)
                v_new = carray(pointer(addresses[t, 6] + first * s_size, s_type), count)
                if not into:
                    p_new, v_new = p, v
                zero, one = work(0.0), work(1.0)
                options = OptionValues(
                    work(lr), work(beta), work(eps), eps_in_sqrt, zero,
                    work(momentum) if momentum_on else zero,
                    nesterov, lr_in_momentum, centered,
                    work(weight_decay) if decay_on else zero,
                    decoupled, maximize, bias_correction,
                    # the derived values (rmsprop._options.derived), in the work dtype
                    one - work(beta), one - work(lr) * work(weight_decay) if decay_on else one,
                )  # fmt: skip
                step_correction = work(correction)
                # Stochastic rounding: where the row's random sequence starts.
                begin = stream(addresses, t) if drawn else np.uint64(0)
                # The parameters' Weyl sequence (rmsprop._random.parameter_bits) starts here.
                po = parameter_offset(begin) if rounded_params else np.uint32(0)
                if blockwise:  # each block: decode, the rule, the block's scales, encode
                    largest = largest32 if float32 else largest64
                    exponent_of = exponent32 if float32 else exponent64
                    ov = np.uint32(begin & WEYL_MASK64)
                    ob = np.uint32((begin >> BITS20) & WEYL_MASK64)
                    oa = np.uint32((begin >> BITS40) & WEYL_MASK64)
                    blocks = (count + QBLOCK - 1) // QBLOCK
                    at = first // QBLOCK * 4
                    sv = carray(pointer(addresses[t, 10] + at, np.float32), blocks)
                    sb = carray(pointer(addresses[t, 11] + at, np.float32), blocks)
                    sa = carray(pointer(addresses[t, 12] + at, np.float32), blocks)
                    nv = np.empty(QBLOCK, work)
                    nb = np.empty(QBLOCK, work)
                    na = np.empty(QBLOCK, work)
                    for q in range(blocks):
                        lo = q * QBLOCK
                        n = min(QBLOCK, count - lo)
                        fv = work(sv[q])
                        fb = work(sb[q]) if momentum_on else zero
                        fa = work(sa[q]) if centered else zero
                        mv = mb = ma = largest(0, zero)  # 0, as the bits compared
                        for k in range(n):
                            i = lo + k
                            state = _rule.State(
                                work(decode8(v[i], ub, us, un, False)) * fv,
                                work(decode8(b[i], sb_, ss, sn, True)) * fb
                                if momentum_on else zero,
                                work(decode8(a[i], sb_, ss, sn, True)) * fa if centered else zero,
                            )  # fmt: skip
                            new_p, new = family(
                                read_p(p[i], p_code), read_g(g[i], g_code), state, options,
                                sqrt, clamp, step_correction,
                            )  # fmt: skip
                            if rounded_params:
                                p[i] = stochastic_parameter(new_p, po, first + i)
                            else:
                                store_p(p, i, new_p, p_code)
                            nv[k] = new.cache
                            if momentum_on:
                                nb[k] = new.momentum_buffer
                            if centered:
                                na[k] = new.grad_avg
                        for k in range(n):  # a loop of its own: the rule's loop vectorizes
                            mv = largest(mv, nv[k])
                            if momentum_on:
                                mb = largest(mb, nb[k])
                            if centered:
                                ma = largest(ma, na[k])
                        tv, tb, ta = exponent_of(mv), exponent_of(mb), exponent_of(ma)
                        sv[q] = power(tv)
                        iv, ib, ia = work(power(-tv)), work(power(-tb)), work(power(-ta))
                        if momentum_on:
                            sb[q] = power(tb)
                        if centered:
                            sa[q] = power(ta)
                        # rmsprop._random.weyl's bits of the block's first element, then
                        # of element k after it (WEYL_STEPS: 32-bit lanes throughout)
                        j = np.uint32(first + lo)
                        wv = np.int32((ov + j * WEYL0) & WEYL_MASK)
                        wb = np.int32((ob + j * WEYL1) & WEYL_MASK)
                        wa = np.int32((oa + j * WEYL2) & WEYL_MASK)
                        for k in range(n):
                            rv = np.int32(np.int32(wv + steps[0, k]) & WEYL_MASK32)
                            v[lo + k] = encode8(nv[k], iv, rv, ub, us, un, False, limit)
                            if momentum_on:
                                rb = np.int32(np.int32(wb + steps[1, k]) & WEYL_MASK32)
                                b[lo + k] = encode8(nb[k], ib, rb, sb_, ss, sn, True, limit)
                            if centered:
                                ra = np.int32(np.int32(wa + steps[2, k]) & WEYL_MASK32)
                                a[lo + k] = encode8(na[k], ia, ra, sb_, ss, sn, True, limit)
                    continue
                for i in range(count):
                    state = _rule.State(
                        read_s(v[i], s_code),
                        read_s(b[i], s_code) if momentum_on else zero,
                        read_s(a[i], s_code) if centered else zero,
                    )
                    new_p, new = family(
                        read_p(p[i], p_code), read_g(g[i], g_code), state, options, sqrt, clamp,
                        step_correction,
                    )  # fmt: skip
                    if rounded_params:
                        p_new[i] = stochastic_parameter(new_p, po, first + i)
                    else:
                        store_p(p_new, i, new_p, p_code)
                    if stochastic:
                        used = (momentum_on, centered)
                        store_stochastic(v_new, b, a, i, first + i, new, begin, used)
                        continue
                    store_s(v_new, i, new.cache, s_code)
                    if momentum_on:
                        store_s(b, i, new.momentum_buffer, s_code)
                    if centered:
                        store_s(a, i, new.grad_avg, s_code)

    return cached_kernel(kernel, cache_key, parallel=parallel)


class Launch:
    """One group launch over fixed arrays, whose gradients may move between calls.

    ``members`` are (param, grad, [square_avg, momentum_buffer, grad_avg]), NumPy arrays
    or torch tensors (None for unused buffers), of the storage kinds of
    :mod:`rmsprop._kinds`: one kind for the parameters, one for the gradients, one for
    the state. The caller keeps them alive and checked: dense, each member's arrays
    laid out alike and of one size. Called with one gradient per member (empty
    members included), the hyperparameters (of the options it was built for) and the
    bias correction of the step (see :meth:`Hyperparameters.correction`).

    ``stochastic``: bfloat16 state written with stochastic rounding, given each
    member's float32 step counter (a 0-d tensor or array, kept alive by the caller;
    read at each call, whose step is the next), each member's random stream, and the
    seed (see :mod:`rmsprop._random`). ``round_params``: bfloat16 parameters written
    with stochastic rounding too, from the same streams; ``round_state=False``: only
    they (the state of its own kind, rounded to nearest).
    """

    def __init__(
        self,
        members: Sequence[Member],
        hp: Hyperparameters,
        *,
        float32_arithmetic: bool = False,
        stochastic: tuple[Sequence[Any], Sequence[int], int] | None = None,
        scales: Sequence[Sequence[Any]] | None = None,
        round_params: bool = False,
        round_state: bool = True,
    ) -> None:
        self.options = hp.switches
        self._keep = [i for i, (p, _, _) in enumerate(members) if _size(p)]
        rows = []
        for i in self._keep:
            p, _, (v, b, a) = members[i]
            base, square = address(p), address(v)
            rows.append(
                (base, 0, square, base if b is None else address(b),
                 base if a is None else address(a), base, square)
            )  # fmt: skip
        self._addresses = np.array(rows, dtype=np.int64).reshape(-1, 7)
        if stochastic is not None:  # each member's step counter, stream and the seed
            counters, streams, seed = stochastic
            extra = [(address(counters[i]), streams[i], seed) for i in self._keep]
            columns = np.array(extra, dtype=np.int64).reshape(-1, 3)
            self._addresses = np.ascontiguousarray(np.hstack([self._addresses, columns]))
        if scales is not None:  # 8-bit blockwise: each member's three buffers' scales
            if stochastic is None:
                raise TypeError("8-bit blockwise state is written with stochastic rounding")
            found = [next(s for s in scales[i] if s is not None) for i in self._keep]
            where = [
                [address(found[k] if s is None else s) for s in scales[i]]
                for k, i in enumerate(self._keep)
            ]
            columns = np.array(where, dtype=np.int64).reshape(-1, 3)
            self._addresses = np.ascontiguousarray(np.hstack([self._addresses, columns]))
        self._every = len(self._keep) == len(members)
        # The gradients' addresses at each call: torch's data_ptr by map where the
        # members are tensors (a Python call per gradient costs more than the step of
        # a small one).
        self._address: Any = address
        if members and not isinstance(members[0][0], np.ndarray):
            self._address = type(members[0][0]).data_ptr
        self._sizes = np.array([_size(members[i][0]) for i in self._keep], dtype=np.int64)
        self._chunks, self._parts = work_table(self._sizes)
        self.elements = int(self._sizes.sum())
        p, g, (v, _, _) = members[self._keep[0]] if self._keep else members[0]
        self._kinds = launch_kinds(
            p.dtype, g.dtype, v.dtype, drawn=stochastic is not None, scales=scales,
            round_params=round_params, round_state=round_state,
        )  # fmt: skip
        self._float32 = float32_work(self._kinds, float32_arithmetic)

    def __call__(self, grads: Sequence[Any], hp: Hyperparameters, correction: float = 1.0) -> None:
        if not self.elements:
            return
        kept = grads if self._every else [grads[i] for i in self._keep]
        self.run(list(map(self._address, kept)), hp, correction)

    def run(self, addresses: Any, hp: Hyperparameters, correction: float = 1.0) -> None:
        """The step with the gradients at ``addresses`` (of the non-empty members, in
        order; the caller vouches for their dtype, layout and size)."""
        if not self.elements:
            return
        self._addresses[:, 1] = addresses
        args = (
            self._addresses, self._sizes, self._chunks, self._parts,
            hp.lr, hp.beta, hp.eps, hp.momentum, hp.weight_decay, correction,
        )  # fmt: skip
        switches, float32, kinds = self.options, self._float32, self._kinds
        launch(lambda on: _group_kernel(switches, on, float32, kinds, False), self.elements, *args)


def address(x: Any) -> int:
    """The address of a NumPy array's or a torch tensor's first element."""
    if not isinstance(x, np.ndarray):
        return int(x.data_ptr())
    try:  # a writable C-contiguous array's buffer: 0.3 µs, where ctypes.data takes 2
        return ctypes.addressof(ctypes.c_char.from_buffer(x))  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):  # read-only, other layouts, empty
        return int(x.ctypes.data)


def addresses(arrays: Sequence[Any]) -> npt.NDArray[np.int64]:
    """:func:`address` of each of ``arrays`` (NumPy arrays), in C where all are writable
    and C-contiguous (0.4 µs an array, where a call of :func:`address` each takes 0.9)."""
    count = len(arrays)
    try:
        found = map(ctypes.addressof, map(ctypes.c_char.from_buffer, arrays))
        return np.fromiter(found, dtype=np.int64, count=count)
    except (TypeError, ValueError, BufferError):  # read-only, other layouts, empty
        return np.fromiter(map(address, arrays), dtype=np.int64, count=count)


def _size(x: Any) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else int(x.numel())


def update(
    switches: Switches,
    scalars: Scalars,
    param: NDArray,
    grad: NDArray,
    square_avg: NDArray,
    momentum_buffer: NDArray | None = None,
    grad_avg: NDArray | None = None,
    *,
    float32_arithmetic: bool = False,
    new_param: NDArray | None = None,
    new_square_avg: NDArray | None = None,
) -> None:
    """One step of the rule ``switches`` selects over arrays of equal size, in place, or
    into ``new_param`` and ``new_square_avg`` (both or neither; not with momentum or
    centered, whose buffers are updated in place).

    The arrays are dense and laid out alike (element i of each one's memory is the same
    element: C or Fortran order, any transpose), of the kinds in :data:`rmsprop._kinds.NUMPY_KINDS`;
    parameters and new parameters share a dtype, as do the state buffers. Sizes are
    checked here (``ValueError``); the caller checks dtypes, layouts and overlaps.
    """
    size = param.size
    _check_sizes(size, grad, square_avg, momentum_buffer, grad_avg, new_param, new_square_avg)
    if not size:
        return
    into = new_param is not None and new_square_avg is not None
    kinds = (NUMPY_KINDS[param.dtype], NUMPY_KINDS[grad.dtype], NUMPY_KINDS[square_avg.dtype])
    arrays: tuple[NDArray, ...] = (
        param, grad, square_avg,
        param if momentum_buffer is None else momentum_buffer,
        param if grad_avg is None else grad_avg,
        param if new_param is None or not into else new_param,
        square_avg if new_square_avg is None or not into else new_square_avg,
    )  # fmt: skip
    float32 = float32_work(kinds, float32_arithmetic)
    views: dict[int, NDArray] = {}  # most arrays are the parameter or the cache again
    for x in arrays:
        if id(x) not in views:
            views[id(x)] = _bytes(x)
    table = _addresses(*(views[id(x)] for x in arrays))
    args = (table, *_single_table(size), *scalars)
    launch(lambda on: _group_kernel(switches, on, float32, kinds, into), size, *args)


def _address_table(p, g, v, b, a, p_new, v_new):  # type: ignore[no-untyped-def]
    """The one-row address table of a kernel over one parameter's arrays (as bytes), made
    in compiled code: ``ndarray.ctypes.data`` costs about 1 µs per array in Python,
    most of a small step. A function of its own with one signature, not a wrapper
    calling the kernel: Numba 0.60 crashes loading from its disk cache a function that
    calls a parallel kernel, and processes that add two signatures to one cache index
    at once can pair one's key with the other's code."""
    addresses = np.empty((1, 7), dtype=np.int64)
    addresses[0, 0] = p.ctypes.data
    addresses[0, 1] = g.ctypes.data
    addresses[0, 2] = v.ctypes.data
    addresses[0, 3] = b.ctypes.data
    addresses[0, 4] = a.ctypes.data
    addresses[0, 5] = p_new.ctypes.data
    addresses[0, 6] = v_new.ctypes.data
    return addresses


_BYTES: Any = numba.types.Array(numba.types.uint8, 1, "C", readonly=True)  # takes writable too
_addresses: Any = njit(numba.types.int64[:, ::1](*[_BYTES] * 7), error_model="numpy", cache=True)(
    _address_table
)


def _bytes(x: NDArray) -> NDArray:
    """A dense array's memory as one-dimensional bytes: a view, from its first element."""
    flat = x.ravel(order="K")
    if flat is not x and flat.base is None:  # a copy: the array was not dense
        raise ValueError("kernel arrays must be dense, with positive strides")
    return flat.view(np.uint8)


@lru_cache(maxsize=256)
def _single_table(size: int) -> tuple[NDArray, NDArray, NDArray]:
    """Sizes, chunks and parts of one array of ``size`` elements: shared, never written
    (left writeable: a read-only array is another type to Numba, and would compile the
    kernel a second time for the one-array calls)."""
    sizes = np.array([size], dtype=np.int64)
    chunks, parts = work_table(sizes)
    return sizes, chunks, parts
