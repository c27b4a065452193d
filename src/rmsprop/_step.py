"""``step`` and ``step_``: the seed's RMSProp update for every kind of input.

Inputs come in three kinds, decided by ``params``:

* plain Python: a number or a rectangular nested list/tuple of numbers;
* NumPy: ``numpy.ndarray`` or a NumPy scalar (grads and cache may then also be
  plain Python of the same shape);
* any other array-API array (PyTorch, JAX, CuPy, Dask, ...), through
  ``array-api-compat``; grads and cache must come from the same library.

All three compute through :func:`rmsprop._rule.update`, in float64 (or wider)
where the input is narrower, and round once to the output dtype.
"""

import math
import sys
from types import ModuleType
from typing import Any, Final, Literal, TypeVar, overload

import numpy as np
import numpy.typing as npt

from rmsprop import _validation as _v
from rmsprop._dispatch import PYTHON_LOOP_MAX, Rule, update_arrays
from rmsprop._rule import update
from rmsprop._slices import slices
from rmsprop._validation import describe, to_numpy

Kind = Literal["python", "numpy"] | ModuleType
P = TypeVar("P")
C = TypeVar("C")
NDArray = npt.NDArray[Any]


@overload
def step(
    params: float, grads: float, cache: float, lr: float, beta: float, eps: float = 1e-8
) -> tuple[float, float]: ...
@overload
def step(
    params: P, grads: object, cache: C, lr: float, beta: float, eps: float = 1e-8
) -> tuple[P, C]: ...
def step(
    params: object, grads: object, cache: object, lr: float, beta: float, eps: float = 1e-8
) -> tuple[object, object]:
    """One RMSProp step; returns ``(new_params, new_cache)`` and modifies nothing.

    For every element, with ε = ``eps`` inside the square root::

        cache  = beta * cache + (1 - beta) * grads**2
        params = params - lr * grads / sqrt(cache + eps)

    Args:
        params: current parameters: a number, a (nested, rectangular) list or
            tuple of numbers, a NumPy array or scalar, or an array of any
            array-API library (PyTorch, JAX, CuPy, Dask, ...).
        grads: gradients, the same shape as ``params`` (no broadcasting).
        cache: running average of squared gradients, the same shape.
        lr: learning rate, finite and >= 0.
        beta: decay of the running average, in [0, 1].
        eps: added to the average inside the square root, finite and >= 0.
            Default 1e-8.

    Returns:
        ``(new_params, new_cache)``, each of the kind of its input: Python
        floats in the same list/tuple nesting; NumPy arrays (scalars for
        NumPy scalars) keeping a floating dtype (integer or bool give
        float64); other arrays from the same library on the same device.
        Narrow floats (float16, float32) are computed in float64 and
        rounded once. NaN and infinity propagate as IEEE 754 says, without
        warnings. PyTorch tensors keep autograd history: the step is
        differentiable.

    Raises:
        TypeError: an input or hyperparameter of the wrong type (complex,
            bool, non-numeric, mixed array libraries).
        ValueError: mismatched shapes, ragged lists, or a hyperparameter
            out of range.

    References:
        T. Tieleman and G. Hinton, Lecture 6e of "Neural Networks for Machine
        Learning", 2012.

    Example:
        >>> import rmsprop
        >>> params, cache = rmsprop.step([1.0], [0.1], [0.0], lr=0.1, beta=0.9)
        >>> params, cache
        ([0.6837738151101336], [0.0009999999999999998])
    """
    lr, beta, eps = _v.hyperparameters(lr, beta, eps)
    if type(params) is list and type(grads) is list and type(cache) is list:
        fast = _flat_float_lists(params, grads, cache, lr, beta, eps)
        if fast is not None:
            return fast
    elif type(params) is float and type(grads) is float and type(cache) is float:
        fast = _python_loop([params], [grads], [cache], lr, beta, eps)
        if fast is not None:
            return fast[0][0], fast[1][0]
    kind = _kind(params, grads, cache)
    if kind == "python":
        p, g, v = _python_values(params, grads, cache)
        new_p, new_v = _float_lists_update(p, g, v, lr, beta, eps)
        return _v.rebuild(params, iter(new_p)), _v.rebuild(cache, iter(new_v))
    if kind == "numpy":
        new_arrays = _numpy_update(*_numpy_arrays(params, grads, cache), lr, beta, eps)
        return _unwrap(new_arrays[0], params), _unwrap(new_arrays[1], cache)
    assert isinstance(kind, ModuleType)
    return _array_api_update(kind, params, grads, cache, lr, beta, eps)


@overload
def step_(
    params: list[Any], grads: object, cache: list[Any], lr: float, beta: float, eps: float = 1e-8
) -> tuple[list[Any], list[Any]]: ...
@overload
def step_(
    params: P, grads: object, cache: P, lr: float, beta: float, eps: float = 1e-8
) -> tuple[P, P]: ...
def step_(
    params: object, grads: object, cache: object, lr: float, beta: float, eps: float = 1e-8
) -> tuple[object, object]:
    """One RMSProp step in place: writes into ``params`` and ``cache`` and returns them.

    The same update as :func:`step`, for mutable containers: NumPy arrays,
    PyTorch tensors, (nested) lists, and arrays of other libraries that
    support item assignment. Everything is checked before anything is
    written: on an error, nothing is modified.

    Besides the checks of :func:`step`, it requires that ``params`` and
    ``cache`` are writable, have the same floating dtype, and share no memory
    with each other or with ``grads``. PyTorch tensors that require grad are
    updated as an optimizer does, without autograd history.

    Raises:
        TypeError: as :func:`step`; also for tuples, numbers and immutable
            arrays (JAX), integer arrays, and params/cache of different dtypes.
        ValueError: as :func:`step`; also for read-only arrays and inputs that
            share memory.

    Example:
        >>> import numpy as np, rmsprop
        >>> params, cache = np.array([1.0, 2.0]), np.zeros(2)
        >>> _ = rmsprop.step_(params, np.array([0.1, 0.2]), cache, lr=0.01, beta=0.9)
        >>> params.round(6), cache
        (array([0.968377, 1.968377]), array([0.001, 0.004]))
    """
    lr, beta, eps = _v.hyperparameters(lr, beta, eps)
    if type(params) is np.ndarray and type(grads) is np.ndarray and type(cache) is np.ndarray:
        _numpy_inplace(params, grads, cache, lr, beta, eps)  # the common case, classified at once
        return params, cache
    kind = _kind(params, grads, cache)
    if kind == "python":
        _python_inplace(params, grads, cache, lr, beta, eps)
    elif kind == "numpy":
        _numpy_inplace(params, grads, cache, lr, beta, eps)
    else:
        assert isinstance(kind, ModuleType)
        _array_api_inplace(kind, params, grads, cache, lr, beta, eps)
    return params, cache


# --- classification -----------------------------------------------------------------------------


def _kind_of(x: object, name: str) -> Kind:
    if isinstance(x, np.ndarray | np.generic):
        return "numpy"
    if _v.is_python(x):
        return "python"
    import array_api_compat  # noqa: PLC0415 - kept out of `import rmsprop`

    if array_api_compat.is_array_api_obj(x):
        namespace: ModuleType = array_api_compat.array_namespace(x)
        return namespace
    raise TypeError(
        f"{name} is {describe(x)}; expected a number, a (nested) list or tuple of numbers, "
        "or an array (NumPy, PyTorch, JAX, ...)"
    )


def _kind(params: object, grads: object, cache: object) -> Kind:
    """The kind of ``params``, after checking that grads and cache fit with it."""
    kind = _kind_of(params, "params")
    for name, x in (("grads", grads), ("cache", cache)):
        other = _kind_of(x, name)
        if other is kind or (kind == "numpy" and other == "python"):
            continue
        raise TypeError(
            f"{name} is {_kind_name(other, x)} but params is {_kind_name(kind, params)}: "
            "params, grads and cache must be the same kind of input (Python numbers and "
            "lists, NumPy arrays, or arrays of one library)"
        )
    return kind


def _kind_name(kind: Kind, x: object) -> str:
    if kind == "python":
        return f"a Python {type(x).__name__}"
    return _array_name(x)


def _array_name(x: object) -> str:
    """``'a torch Tensor'``, ``'a jax ArrayImpl'``: the library and the type."""
    library = type(x).__module__.split(".")[0]
    return f"a {'jax' if library == 'jaxlib' else library} {type(x).__name__}"


def _check_shapes(p: tuple[Any, ...], g: tuple[Any, ...], v: tuple[Any, ...]) -> None:
    if g != p:
        raise ValueError(f"grads has shape {g} but params has shape {p}; they must be equal")
    if v != p:
        raise ValueError(f"cache has shape {v} but params has shape {p}; they must be equal")


# --- plain Python -------------------------------------------------------------------------------


def _flat_float_lists(
    params: list[Any], grads: list[Any], cache: list[Any], lr: float, beta: float, eps: float
) -> tuple[list[float], list[float]] | None:
    """The seed's case, short flat lists of floats, without conversions; None if it is not that."""
    n = len(params)
    if n > PYTHON_LOOP_MAX or len(grads) != n or len(cache) != n:
        return None
    return _python_loop(params, grads, cache, lr, beta, eps)


def _python_loop(
    p: list[Any], g: list[Any], v: list[Any], lr: float, beta: float, eps: float
) -> tuple[list[float], list[float]] | None:
    """The rule over flat lists, element by element in Python floats.

    None where an element is not a ``float``, or where Python raises instead of
    giving an IEEE 754 result (``x / 0``, ``sqrt`` of a negative number).
    """
    new_p: list[float] = []
    new_v: list[float] = []
    sqrt = math.sqrt
    try:
        for pi, gi, vi in zip(p, g, v):  # noqa: B905 - equal lengths checked by callers
            if type(pi) is not float or type(gi) is not float or type(vi) is not float:
                return None
            pn, vn = update(pi, gi, vi, lr, beta, eps, sqrt)
            new_p.append(pn)
            new_v.append(vn)
    except (ZeroDivisionError, ValueError):
        return None
    return new_p, new_v


def _float_lists_update(
    p: list[float], g: list[float], v: list[float], lr: float, beta: float, eps: float
) -> tuple[list[float], list[float]]:
    """The rule over flat lists of Python floats, with IEEE 754 results."""
    if len(p) <= PYTHON_LOOP_MAX:
        done = _python_loop(p, g, v, lr, beta, eps)
        if done is not None:
            return done
    with np.errstate(all="ignore"):
        new_p, new_v = update(np.array(p), np.array(g), np.array(v), lr, beta, eps, np.sqrt)
    return new_p.tolist(), new_v.tolist()


def _python_values(
    params: object, grads: object, cache: object
) -> tuple[list[float], list[float], list[float]]:
    """The values of plain-Python inputs as flat lists of floats, after every check."""
    shape, p = _v.flatten(params, "params")
    g_shape, g = _v.flatten(grads, "grads")
    v_shape, v = _v.flatten(cache, "cache")
    _check_shapes(shape, g_shape, v_shape)
    return p, g, v


def _python_inplace(
    params: object, grads: object, cache: object, lr: float, beta: float, eps: float
) -> None:
    for name, x in (("params", params), ("cache", cache)):
        if not isinstance(x, list):
            raise TypeError(
                f"{name} is {describe(x)}, which cannot be updated in place; pass a list, "
                "or use rmsprop.step(), which returns the new values"
            )
    seen: dict[int, str] = {}
    _v.check_no_shared_lists(params, "params", seen, mutable=True)
    _v.check_no_shared_lists(cache, "cache", seen, mutable=True)
    _v.check_no_shared_lists(grads, "grads", seen, mutable=False)
    p, g, v = _python_values(params, grads, cache)
    new_p, new_v = _float_lists_update(p, g, v, lr, beta, eps)
    assert isinstance(params, list)
    assert isinstance(cache, list)
    _v.write_back(params, iter(new_p))
    _v.write_back(cache, iter(new_v))


# --- NumPy --------------------------------------------------------------------------------------


def _numpy_arrays(params: object, grads: object, cache: object) -> tuple[NDArray, NDArray, NDArray]:
    p, g, v = to_numpy(params, "params"), to_numpy(grads, "grads"), to_numpy(cache, "cache")
    _check_shapes(p.shape, g.shape, v.shape)
    return p, g, v


def _float_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def _numpy_update(
    p: NDArray, g: NDArray, v: NDArray, lr: float, beta: float, eps: float
) -> tuple[NDArray, NDArray]:
    """New params and cache, computed in float64 (or wider) and rounded once, laid out as
    the inputs are (see rmsprop._dispatch for the path)."""
    new_p = np.empty_like(p, dtype=_float_dtype(p.dtype))
    new_v = np.empty_like(v, dtype=_float_dtype(v.dtype))
    update_arrays(Rule.seed(lr, beta, eps), p, g, (v, None, None), (new_p, new_v))
    return new_p, new_v


def _unwrap(result: NDArray, template: object) -> object:
    """A NumPy scalar for a NumPy scalar input, the array otherwise."""
    return result[()] if isinstance(template, np.generic) else result


def _numpy_inplace(
    params: object, grads: object, cache: object, lr: float, beta: float, eps: float
) -> None:
    for name, x in (("params", params), ("cache", cache)):
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"{name} is {describe(x)}, which cannot be updated in place; pass a NumPy "
                "array (0-d for a single value), or use rmsprop.step()"
            )
        if not x.flags.writeable:
            raise ValueError(f"{name} is a read-only array; it cannot be updated in place")
    assert isinstance(params, np.ndarray)
    assert isinstance(cache, np.ndarray)
    p, g, v = _numpy_arrays(params, grads, cache)
    _check_inplace_dtypes(p.dtype, v.dtype, p.dtype.kind == "f")
    for (a_name, a), (b_name, b) in (
        (("params", p), ("cache", v)),
        (("grads", g), ("params", p)),
        (("grads", g), ("cache", v)),
    ):
        if np.may_share_memory(a, b) and np.shares_memory(a, b):
            raise _overlap_error(a_name, b_name)
    update_arrays(Rule.seed(lr, beta, eps), params, g, (cache, None, None))


def _check_inplace_dtypes(p_dtype: Any, v_dtype: Any, p_is_float: bool) -> None:
    """params of a floating dtype; the cache of the same dtype, or of a wider float
    (float32 statistics for float16 parameters: float16 overflows at 65,504)."""
    if not p_is_float:
        raise TypeError(
            f"params has dtype {p_dtype}; updating in place needs a floating-point array "
            "(use rmsprop.step() to get float64 results)"
        )
    if v_dtype != p_dtype and not _wider_float(v_dtype, p_dtype):
        raise TypeError(
            f"cache has dtype {v_dtype} but params has dtype {p_dtype}; "
            "in place, the cache must have the params' dtype or a wider floating one"
        )


def _wider_float(wide: Any, narrow: Any) -> bool:
    """Whether ``wide`` is a floating dtype that holds every value of ``narrow``."""
    try:
        a, b = np.dtype(wide), np.dtype(narrow)
    except TypeError:  # torch, JAX, ... dtypes: the same question, in their terms
        return str(wide).rsplit(".", 1)[-1] in _WIDER.get(str(narrow).rsplit(".", 1)[-1], ())
    return a.kind == b.kind == "f" and np.can_cast(b, a, casting="safe")


_WIDER: Final = {
    "float16": ("float32", "float64"),
    "bfloat16": ("float32", "float64"),
    "float32": ("float64",),
}


def _overlap_error(a: str, b: str) -> ValueError:
    return ValueError(f"{a} and {b} share memory; in-place updates need separate arrays")


# --- other array libraries ----------------------------------------------------------------------


def _array_api_update(
    xp: ModuleType, params: Any, grads: Any, cache: Any, lr: float, beta: float, eps: float
) -> tuple[Any, Any]:
    """New params and cache for arrays of the library ``xp``, on their device."""
    import array_api_compat  # noqa: PLC0415

    for name, x in (("params", params), ("grads", grads), ("cache", cache)):
        if xp.isdtype(x.dtype, "complex floating"):
            raise TypeError(f"{name} has complex dtype {x.dtype}; only real numbers are supported")
        if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
            raise TypeError(f"{name} has dtype {x.dtype}; expected real numbers")
    device = array_api_compat.device(params)
    for name, x in (("grads", grads), ("cache", cache)):
        if array_api_compat.device(x) != device:
            raise ValueError(
                f"{name} is on device {array_api_compat.device(x)} but params is on {device}; "
                "they must be on the same device"
            )
    _check_shapes(tuple(params.shape), tuple(grads.shape), tuple(cache.shape))

    info = xp.__array_namespace_info__()
    floats = info.dtypes(device=device, kind="real floating")
    # float64 where the device has it (JAX without x64, Apple MPS: the widest default).
    work = floats.get("float64") or info.default_dtypes(device=device)["real floating"]

    def out_dtype(x: Any) -> Any:
        return x.dtype if xp.isdtype(x.dtype, "real floating") else work

    new_p, new_v = update(
        xp.astype(params, work, copy=False),
        xp.astype(grads, work, copy=False),
        xp.astype(cache, work, copy=False),
        lr,
        beta,
        eps,
        xp.sqrt,
    )
    return (
        xp.astype(new_p, out_dtype(params), copy=False),
        xp.astype(new_v, out_dtype(cache), copy=False),
    )


def _array_api_inplace(
    xp: ModuleType, params: Any, grads: Any, cache: Any, lr: float, beta: float, eps: float
) -> None:
    import array_api_compat  # noqa: PLC0415

    for name, x in (("params", params), ("cache", cache)):
        if not array_api_compat.is_writeable_array(x):
            raise TypeError(
                f"{name} is {_array_name(x)}, which is immutable; "
                "use rmsprop.step(), which returns the updated arrays"
            )
    _check_inplace_dtypes(params.dtype, cache.dtype, xp.isdtype(params.dtype, "real floating"))
    if array_api_compat.is_torch_array(params):
        _torch_inplace(xp, params, grads, cache, lr, beta, eps)
        return
    for (a_name, a), (b_name, b) in (
        (("params", params), ("cache", cache)),
        (("grads", grads), ("params", params)),
        (("grads", grads), ("cache", cache)),
    ):
        if a is b:
            raise _overlap_error(a_name, b_name)
    new_p, new_v = _array_api_update(xp, params, grads, cache, lr, beta, eps)
    params[...] = new_p
    cache[...] = new_v


def _torch_inplace(
    xp: ModuleType, params: Any, grads: Any, cache: Any, lr: float, beta: float, eps: float
) -> None:
    torch = sys.modules["torch"]  # imported by whoever made the tensors
    for name, x in (("params", params), ("cache", cache)):
        if x.is_inference() and not torch.is_inference_mode_enabled():
            raise ValueError(
                f"{name} is an inference tensor; it can only be updated inside "
                "torch.inference_mode()"
            )
    for (a_name, a), (b_name, b) in (
        (("params", params), ("cache", cache)),
        (("grads", grads), ("params", params)),
        (("grads", grads), ("cache", cache)),
    ):
        if _torch_overlap(a, b):
            raise _overlap_error(a_name, b_name)
    with torch.no_grad():  # slice by slice: the widened copies stay bounded
        for pp, gg, vv in slices((params, grads, cache)):
            new_p, new_v = _array_api_update(xp, pp, gg, vv, lr, beta, eps)
            pp.copy_(new_p)
            vv.copy_(new_v)


def _torch_overlap(a: Any, b: Any) -> bool:
    """Whether two tensors touch common memory (exact on CPU, by byte range elsewhere)."""
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False

    def byte_range(t: Any) -> tuple[int, int]:
        last = sum((n - 1) * s for n, s in zip(t.shape, t.stride(), strict=True))
        return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()

    (a0, a1), (b0, b1) = byte_range(a), byte_range(b)
    if a1 <= b0 or b1 <= a0:
        return False
    if a.device.type == "cpu" and a.dtype == b.dtype and a.dtype.is_floating_point:
        try:
            return bool(np.shares_memory(a.detach().numpy(), b.detach().numpy()))
        except TypeError:  # no NumPy dtype (bfloat16): the byte ranges overlap
            return True
    return True
