"""Checks of hyperparameters and of plain-Python inputs (numbers and nested lists/tuples).

Every check raises before anything is computed or written, with a message that
names the argument and the rule it broke.
"""

import math
import numbers
from collections.abc import Iterator
from typing import Any, Final

import numpy as np
import numpy.typing as npt

Shape = tuple[int, ...]
PyTree = float | list[Any] | tuple[Any, ...]


def describe(x: object) -> str:
    """``repr`` shortened for error messages, followed by the type name."""
    text = repr(x)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = type(x)
    kind_name = (
        kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    )
    return f"{text} ({kind_name})"


def real(x: object, name: str) -> float:
    """``x`` as a Python float if it is a real number (bool and complex excluded)."""
    if type(x) is float:
        return x
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        try:
            return float(x)
        except OverflowError:
            raise ValueError(f"{name} is {describe(x)}, too large for a float") from None
    if isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} is {describe(x)}; expected a real number, not a bool")
    if isinstance(x, numbers.Complex):
        raise TypeError(f"{name} is {describe(x)}; complex numbers are not supported")
    raise TypeError(f"{name} is {describe(x)}; expected a real number")


def hyperparameters(lr: object, beta: object, eps: object) -> tuple[float, float, float]:
    """Validate ``lr``, ``beta`` and ``eps`` and return them as Python floats."""
    if (  # the common case, checked without conversions
        type(lr) is float
        and type(beta) is float
        and type(eps) is float
        and 0.0 <= lr < math.inf
        and 0.0 <= beta <= 1.0
        and 0.0 <= eps < math.inf
    ):
        return lr, beta, eps
    lr_, beta_, eps_ = real(lr, "lr"), real(beta, "beta"), real(eps, "eps")
    if not 0.0 <= lr_ < math.inf:
        raise ValueError(f"lr must be a finite number >= 0, got {lr_!r}")
    if not 0.0 <= beta_ <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta_!r}")
    if not 0.0 <= eps_ < math.inf:
        raise ValueError(f"eps must be a finite number >= 0, got {eps_!r}")
    return lr_, beta_, eps_


def is_python(x: object) -> bool:
    """Whether ``x`` is a plain-Python input: a number or a list/tuple."""
    return isinstance(x, list | tuple | numbers.Number)


def flatten(x: object, name: str) -> tuple[Shape, list[float]]:
    """The shape of a number or a rectangular nested list/tuple, and its values in order.

    Raises ``ValueError`` for ragged nesting and ``TypeError`` for anything that
    is not a real number, naming the position (``grads[1][0]``).
    """
    flat: list[float] = []
    shape = _walk(x, name, flat)
    return shape, flat


#: The deepest nesting of lists taken: NumPy's limit on dimensions.
MAX_DEPTH: Final = 64


def _walk(x: object, where: str, flat: list[float], depth: int = 0) -> Shape:
    if not isinstance(x, list | tuple):
        flat.append(real(x, where))
        return ()
    if depth == MAX_DEPTH:
        name = where.split("[", maxsplit=1)[0]
        raise ValueError(f"{name} is nested deeper than {MAX_DEPTH} levels")
    if not x:
        return (0,)
    first = _walk(x[0], f"{where}[0]", flat, depth + 1)
    for i in range(1, len(x)):
        shape = _walk(x[i], f"{where}[{i}]", flat, depth + 1)
        if shape != first:
            raise ValueError(
                f"{where} is ragged: {where}[0] has shape {first} "
                f"but {where}[{i}] has shape {shape}"
            )
    return (len(x), *first)


def rebuild(template: object, values: Iterator[float]) -> PyTree:
    """Values laid out like ``template``: lists stay lists, tuples stay tuples."""
    if isinstance(template, list):
        return [rebuild(t, values) for t in template]
    if isinstance(template, tuple):
        return tuple(rebuild(t, values) for t in template)
    return next(values)


def write_back(target: list[Any], values: Iterator[float]) -> None:
    """Store ``values`` into the nested lists ``target``, in order, in place."""
    for i, item in enumerate(target):
        if isinstance(item, list):
            write_back(item, values)
        else:
            target[i] = next(values)


def check_no_shared_lists(x: object, name: str, seen: dict[int, str], *, mutable: bool) -> None:
    """Reject a list that appears twice among the inputs of an in-place update.

    ``seen`` maps the ``id`` of each list of the arrays updated so far to its
    position. With ``mutable`` (params, cache), tuples are rejected and the
    lists are recorded; otherwise (grads) they are only looked up, so that
    a list shared by params and cache, or by grads and either, is reported
    instead of being read after it was written.
    """
    if mutable and isinstance(x, tuple):
        raise TypeError(
            f"{name} is a tuple, which cannot be updated in place; "
            "use a list, or rmsprop.step(), which returns new values"
        )
    if not isinstance(x, list | tuple):
        return
    if name.count("[") >= MAX_DEPTH:
        array = name.split("[", maxsplit=1)[0]
        raise ValueError(f"{array} is nested deeper than {MAX_DEPTH} levels")
    if isinstance(x, list):
        other = seen.get(id(x))
        if other is not None:
            raise ValueError(
                f"{name} is the same list object as {other}; in-place updates need separate lists"
            )
        if mutable:
            seen[id(x)] = name
    for i, item in enumerate(x):
        check_no_shared_lists(item, f"{name}[{i}]", seen, mutable=mutable)


def to_numpy(x: object, name: str) -> npt.NDArray[Any]:
    """``x`` (a NumPy array or scalar, or plain-Python numbers) as a NumPy array of real
    numbers; a ``TypeError`` naming ``name`` for complex or non-numeric data."""
    if type(x) is np.ndarray:
        a = x
    elif isinstance(x, np.ndarray | np.generic):
        a = np.asarray(x)
    else:
        shape, values = flatten(x, name)
        a = np.array(values, dtype=np.float64).reshape(shape)
    if a.dtype.kind == "c":
        raise TypeError(f"{name} has complex dtype {a.dtype}; only real numbers are supported")
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} has dtype {a.dtype}; expected real numbers (float, int or bool)")
    return a
