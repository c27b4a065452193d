"""The RMSProp rule, written once.

:func:`update` is the seed's rule; :func:`family_update` is the whole family
(momentum, Nesterov, centered, weight decay, ...), whose default path is the
seed's rule. Both work on any arithmetic values: Python floats, NumPy arrays,
tensors. Every front end computes through them; the tests compare them all
with an independent oracle.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from rmsprop._options import Hyperparameters

Unary = Callable[[Any], Any]


def one_minus(x: Any) -> Any:
    """``1 - x``, in the arithmetic of ``x`` (for the seed's rule; the family's rule reads
    the values it derives from its options, see :func:`family_update`)."""
    return 1.0 - x


def square_average(v: Any, g: Any, beta: float) -> Any:
    """``beta * v + (1 - beta) * g**2``, as ``((1 - beta) * g) * g``.

    Multiplying by ``1 - beta`` first keeps ``beta = 1`` exact where ``g * g``
    would overflow.
    """
    return beta * v + one_minus(beta) * g * g


def update(
    p: Any, g: Any, v: Any, lr: float, beta: float, eps: float, sqrt: Unary
) -> tuple[Any, Any]:
    """The seed's step: returns ``(p_new, v_new)``.

    ``v_new = beta * v + (1 - beta) * g**2`` and
    ``p_new = p - lr * g / sqrt(v_new + eps)``, products and quotients left to
    right, in the precision of the operands: callers widen narrow arrays first.
    """
    v_new = square_average(v, g, beta)
    return p - lr * g / sqrt(v_new + eps), v_new


class State(NamedTuple):
    """The buffers of one parameter; None for those its options do not use."""

    cache: Any
    momentum_buffer: Any = None
    grad_avg: Any = None


def family_update(
    p: Any,
    g: Any,
    state: State,
    hp: "Hyperparameters",
    sqrt: Unary,
    clamp_at_zero: Unary,
    correction: Any,
) -> tuple[Any, State]:
    """One step of the RMSProp family: returns ``(p_new, state_new)``.

    In order, for the options of ``hp``:

    1. ``maximize``: ``g = -g``.
    2. weight decay: ``g = g + weight_decay * p`` (coupled), or
       ``p = p * (1 - lr * weight_decay)`` (decoupled).
    3. ``cache = beta * cache + (1 - beta) * g**2``.
    4. ``bias_correction``: the mean square is ``cache / correction`` (and the
       mean ``grad_avg / correction``), where the caller passes
       ``correction = 1 - beta**t`` for step ``t = 1, 2, ...`` (as optax).
       ``centered``: ``grad_avg = beta * grad_avg + (1 - beta) * g`` and the
       variance ``max(mean_square - mean**2, 0)`` replaces the mean square below.
    5. ``den = sqrt(cache + eps)`` (``eps_in_sqrt``) or ``sqrt(cache) + eps``.
    6. without momentum: ``p = p - lr * g / den`` (with the defaults, the
       seed's rule exactly); with it, ``buf = momentum * buf + s`` where
       ``s = lr * g / den`` (``lr_in_momentum``) or ``g / den``; the step is
       ``buf`` (or ``momentum * buf + s`` with ``nesterov``), times ``lr``
       when it is not in the buffer.

    ``state.momentum_buffer`` must be given when ``momentum > 0`` and
    ``state.grad_avg`` when ``centered``. ``clamp_at_zero`` maps negative
    values to 0 and keeps NaN. ``1 - beta`` and ``1 - lr * weight_decay`` are
    read from ``hp`` (``one_minus_beta``, ``one_minus_lr_weight_decay``): each
    front end derives them in its arithmetic (:func:`rmsprop._options.work_values`).
    """
    lr, beta = hp.lr, hp.beta
    if hp.maximize:
        g = -g
    if hp.weight_decay:
        if hp.decoupled_weight_decay:
            p = p * hp.one_minus_lr_weight_decay
        else:
            g = g + hp.weight_decay * p
    # as square_average, with 1 - beta as hp derives it
    cache = beta * state.cache + hp.one_minus_beta * g * g
    grad_avg = state.grad_avg
    variance = cache / correction if hp.bias_correction else cache
    if hp.centered:
        grad_avg = beta * grad_avg + hp.one_minus_beta * g
        mean = grad_avg / correction if hp.bias_correction else grad_avg
        variance = clamp_at_zero(variance - mean * mean)
    den = sqrt(variance + hp.eps) if hp.eps_in_sqrt else sqrt(variance) + hp.eps
    if not hp.momentum:
        return p - lr * g / den, State(cache, state.momentum_buffer, grad_avg)
    scaled = lr * g / den if hp.lr_in_momentum else g / den
    buf = hp.momentum * state.momentum_buffer + scaled
    step = hp.momentum * buf + scaled if hp.nesterov else buf
    if not hp.lr_in_momentum:
        step = lr * step
    return p - step, State(cache, buf, grad_avg)
