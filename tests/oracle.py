"""The reference the whole suite checks against: the seed's rule, written plainly.

``reference`` evaluates the rule element by element in Python floats (IEEE 754
binary64, every operation correctly rounded, in the seed's order), with
division by zero and square roots of negative numbers giving what IEEE 754
says instead of raising. ``exact`` evaluates it with 200-bit mpmath numbers,
for bounding the rounding error of the float64 result.
"""

import math

import mpmath
import numpy as np


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0.0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _sqrt(x: float) -> float:
    return math.nan if x < 0.0 else math.sqrt(x)


def reference_scalar(p, g, v, lr, beta, eps):
    """(new_param, new_cache) for one element, in float64."""
    p, g, v, lr, beta, eps = map(float, (p, g, v, lr, beta, eps))
    v_new = beta * v + (1.0 - beta) * g * g
    return p - _div(lr * g, _sqrt(v_new + eps)), v_new


def reference(params, grads, cache, lr, beta, eps=1e-8):
    """The rule over arrays (anything ``np.asarray`` takes), as float64 arrays."""
    p, g, v = (np.asarray(x, dtype=np.float64) for x in (params, grads, cache))
    new_p, new_v = np.empty_like(p), np.empty_like(v)
    for i in np.ndindex(p.shape):
        new_p[i], new_v[i] = reference_scalar(p[i], g[i], v[i], lr, beta, eps)
    return new_p, new_v


def exact_scalar(p, g, v, lr, beta, eps):
    """(new_param, new_cache, step) for one element, in 200-bit arithmetic."""
    with mpmath.workprec(200):
        p, g, v, lr, beta, eps = (mpmath.mpf(float(x)) for x in (p, g, v, lr, beta, eps))
        v_new = beta * v + (1 - beta) * g * g
        step = lr * g / mpmath.sqrt(v_new + eps)
        return p - step, v_new, step


def ulp_distance(a, b):
    """Elementwise distance in units in the last place between same-dtype float arrays.

    NaN is at distance 0 from NaN; +0.0 and -0.0 are at distance 0.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (a.dtype, b.dtype)
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.dtype.itemsize]

    def ordered(x):
        i = x.view(ints).astype(np.int64)
        return np.where(i < 0, np.iinfo(ints).min - i, i)

    both_nan = np.isnan(a) & np.isnan(b)
    distance = np.abs(ordered(a) - ordered(b))
    return np.where(
        both_nan, 0, np.where(np.isnan(a) | np.isnan(b), np.iinfo(np.int64).max, distance)
    )


def assert_identical(actual, expected):
    """Same dtype, same shape, same values bit for bit (any NaN matches any NaN)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    same = (actual == expected) & (np.signbit(actual) == np.signbit(expected))
    same |= np.isnan(actual) & np.isnan(expected)
    assert same.all(), (
        f"differ at {np.argwhere(~same)[:5].tolist()}: {actual[~same][:5]} vs {expected[~same][:5]}"
    )


# --- the whole family, independently -------------------------------------------------------


class Exact:
    """A value in 200-bit arithmetic, with the size its float64 evaluation's errors scale
    with (a running error bound, to first order: a float64 evaluation of the same
    expression is within a few units of 2**-53 times ``size`` of ``value``)."""

    __slots__ = ("size", "value")

    def __init__(self, value, size=None):
        self.value = value if isinstance(value, mpmath.mpf) else mpmath.mpf(float(value))
        self.size = abs(self.value) if size is None else size

    @staticmethod
    def of(x):
        return x if isinstance(x, Exact) else Exact(float(x))

    def __add__(self, other):
        other = Exact.of(other)
        return Exact(self.value + other.value, self.size + other.size)

    __radd__ = __add__

    def __sub__(self, other):
        other = Exact.of(other)
        return Exact(self.value - other.value, self.size + other.size)

    def __rsub__(self, other):
        return Exact.of(other) - self

    def __mul__(self, other):
        other = Exact.of(other)
        return Exact(self.value * other.value, self.size * other.size)

    __rmul__ = __mul__

    def __truediv__(self, other):
        other = Exact.of(other)
        size = self.size / abs(other.value) + abs(self.value) * other.size / other.value**2
        return Exact(self.value / other.value, size)

    def __neg__(self):
        return Exact(-self.value, self.size)

    def sqrt(self):
        root = mpmath.sqrt(self.value)
        return Exact(root, self.size / (2 * root) if root else mpmath.sqrt(self.size))

    def at_least_zero(self):
        return Exact(max(self.value, 0), self.size)


def family_exact(p, g, v, b, a, options, correction=1.0):
    """One step of the RMSProp family for one element, written from the options'
    definitions (rmsprop.Hyperparameters' docstring), not from rmsprop._rule: returns
    (param, cache, momentum_buffer, grad_avg) as Exact values (None where unused)."""
    o = dict(options)
    with mpmath.workprec(200):
        lr, beta, eps = Exact(o["lr"]), Exact(o["beta"]), Exact(o["eps"])
        p, g, v = Exact(p), Exact(g), Exact(v)
        if o.get("maximize"):
            g = -g
        decay = o.get("weight_decay", 0.0)
        if decay and o.get("decoupled_weight_decay"):
            p = p * (1 - lr * Exact(decay))
        elif decay:
            g = g + Exact(decay) * p
        v = beta * v + (1 - beta) * g * g
        mean_square = v / Exact(correction) if o.get("bias_correction") else v
        if o.get("centered"):
            a = beta * Exact(a) + (1 - beta) * g
            mean = a / Exact(correction) if o.get("bias_correction") else a
            mean_square = (mean_square - mean * mean).at_least_zero()
        else:
            a = None
        in_root = o.get("eps_in_sqrt", True)
        den = (mean_square + eps).sqrt() if in_root else mean_square.sqrt() + eps
        momentum = o.get("momentum", 0.0)
        if not momentum:
            return p - lr * g / den, v, None, a
        in_buffer = o.get("lr_in_momentum", True)
        scaled = lr * g / den if in_buffer else g / den
        b = Exact(momentum) * Exact(b) + scaled
        step = Exact(momentum) * b + scaled if o.get("nesterov") else b
        return (p - step if in_buffer else p - lr * step), v, b, a
