"""The RMSProp rule, written once.

Every front end (plain Python floats, NumPy, array-API arrays) computes through
:func:`update`; the tests compare them all with an independent oracle.
"""

from collections.abc import Callable
from typing import Any


def update(
    p: Any, g: Any, v: Any, lr: float, beta: float, eps: float, sqrt: Callable[[Any], Any]
) -> tuple[Any, Any]:
    """One RMSProp step on values of any arithmetic type (floats or arrays).

    ``v_new = beta * v + (1 - beta) * g**2`` and
    ``p_new = p - lr * g / sqrt(v_new + eps)``, each product and quotient
    evaluated left to right (``((1 - beta) * g) * g``, ``(lr * g) / sqrt(...)``),
    in the precision of the operands: callers widen narrow arrays first.
    ``(1 - beta) * g`` first keeps ``beta = 1`` exact even where ``g * g``
    would overflow.

    Returns ``(p_new, v_new)``.
    """
    v_new = beta * v + (1.0 - beta) * g * g
    return p - lr * g / sqrt(v_new + eps), v_new
