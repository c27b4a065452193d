"""The family rule for Triton, GENERATED from rmsprop/_rule.py: do not edit.

Written by rmsprop._rule_to_triton: run ``python -m rmsprop._rule_to_triton`` after changing
the rule (a test checks that this file is what it writes). Importing it imports Triton.
"""

import triton
import triton.language as tl


@triton.jit
def sqrt_rn(x):
    """Correctly rounded square root (float64's is; float32's default is approximate)."""
    if x.dtype == tl.float64:
        y = tl.sqrt(x)
    else:
        y = tl.sqrt_rn(x)
    return y


@triton.jit
def div_rn(x, y):
    """Correctly rounded division (float64's is; float32's default is approximate)."""
    if x.dtype == tl.float64:
        z = x / y
    else:
        z = tl.div_rn(x, y)
    return z


@triton.jit
def clamp_at_zero(x):
    """Negative values to 0; NaN stays NaN."""
    return tl.where(x < 0, 0.0, x).to(x.dtype)


@triton.jit
def family_update(p, g, v, b, a, lr, beta, eps, momentum, weight_decay, correction, WORK: tl.constexpr, MAXIMIZE: tl.constexpr, CENTERED: tl.constexpr, EPS_IN_SQRT: tl.constexpr, NESTEROV: tl.constexpr, LR_IN_MOMENTUM: tl.constexpr, DECOUPLED_WEIGHT_DECAY: tl.constexpr, MOMENTUM: tl.constexpr, WEIGHT_DECAY: tl.constexpr, BIAS_CORRECTION: tl.constexpr):
    """rmsprop._rule.family_update on blocks: p, g and the state v, b, a (unused ones any
    block), the values as float64 scalars, the switches as constants. Returns the new
    p, v, b, a (unused ones as given)."""
    if MAXIMIZE:
        g = -g
    if WEIGHT_DECAY:
        if DECOUPLED_WEIGHT_DECAY:
            p = p * (1.0 - lr.to(WORK) * weight_decay.to(WORK))
        else:
            g = g + weight_decay.to(WORK) * p
    cache = beta.to(WORK) * v + (1.0 - beta.to(WORK)) * g * g
    grad_avg = a
    variance = div_rn(cache, correction.to(WORK)) if BIAS_CORRECTION else cache
    if CENTERED:
        grad_avg = beta.to(WORK) * grad_avg + (1.0 - beta.to(WORK)) * g
        mean = div_rn(grad_avg, correction.to(WORK)) if BIAS_CORRECTION else grad_avg
        variance = clamp_at_zero(variance - mean * mean)
    den = sqrt_rn(variance + eps.to(WORK)) if EPS_IN_SQRT else sqrt_rn(variance) + eps.to(WORK)
    if not MOMENTUM:
        return (p - div_rn(lr.to(WORK) * g, den), cache, b, grad_avg)
    else:
        scaled = div_rn(lr.to(WORK) * g, den) if LR_IN_MOMENTUM else div_rn(g, den)
        buf = momentum.to(WORK) * b + scaled
        step = momentum.to(WORK) * buf + scaled if NESTEROV else buf
        if not LR_IN_MOMENTUM:
            step = lr.to(WORK) * step
        return (p - step, cache, buf, grad_avg)
