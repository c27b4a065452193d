"""Runners shared by the framework-agreement tests and ``agreement_report.py``.

Each runner takes initial parameters ``p0`` and a sequence of gradients and
returns the final parameters and state as float64 NumPy arrays. ``reference_*``
are this project's own transcriptions of algorithms whose libraries cannot be
installed here (TensorFlow, timm), written from their published formulas.
"""

import os

import numpy as np

import rmsprop

STEPS = 50


def problem(shape=(4, 3), steps=STEPS, seed=0):
    """Initial parameters and ``steps`` random gradients (float64)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=(steps, *shape))


def well_posed(grads, centered, bias_correction):
    """``grads``, the first made 0 where it would be ill-posed: centered and bias-corrected
    from a zero cache, the first variance is g**2 - g**2 = 0 in exact arithmetic, and each
    library's step is its own rounding error divided by sqrt(eps) (measured: 6.5e-9 apart)."""
    return np.concatenate([0 * grads[:1], grads[1:]]) if centered and bias_correction else grads


def max_relative_difference(a, b):
    """max |a - b| / max |b|: the difference relative to the scale of the values."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(np.float64).tiny))


def run_numpy(p0, grads, preset=None, dtype=np.float64, **options):
    """rmsprop.RMSProp; its state returned under torch.optim.RMSprop's names, as the others'."""
    p = p0.astype(dtype)
    optimizer = rmsprop.RMSProp([p], preset=preset, **options)
    for g in grads:
        optimizer.step([g.astype(dtype)])
    state = optimizer.state_dict()["state"][0]
    state["square_avg"] = state.pop("cache")
    return p, state


def run_torch(p0, grads, optimizer_class, dtype="float64", **options):
    """Any torch optimizer class; state returned under torch.optim.RMSprop's names."""
    import torch  # noqa: PLC0415

    dtype = getattr(torch, dtype)
    w = torch.nn.Parameter(torch.tensor(p0, dtype=dtype))
    optimizer = optimizer_class([w], **options)
    for g in grads:
        w.grad = torch.from_numpy(g).to(dtype)
        optimizer.step()
    state = {k: v.double().numpy() for k, v in optimizer.state[w].items() if k != "step"}
    return w.detach().double().numpy(), state


def run_optax(p0, grads, **options):
    import jax  # noqa: PLC0415
    import optax  # noqa: PLC0415

    with jax.enable_x64(True):
        transform = optax.rmsprop(**options)
        params = jax.numpy.asarray(p0)
        state = transform.init(params)
        for g in grads:
            updates, state = transform.update(jax.numpy.asarray(g), state, params)
            params = optax.apply_updates(params, updates)
        return np.asarray(params)


def run_keras(p0, grads, **options):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on PyTorch: no TensorFlow here
    import keras  # noqa: PLC0415

    keras.config.set_floatx("float64")  # else the learning rate is held in float32
    optimizer = keras.optimizers.RMSprop(**options)
    variable = keras.Variable(p0.copy(), dtype="float64")
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    # keras.ops.convert_to_numpy warns under NumPy 2; the torch backend holds a tensor.
    return variable.value.detach().cpu().numpy().copy()


def reference_tensorflow(p0, grads, lr, decay, momentum, epsilon, centered):
    """TF1 ApplyRMSProp / ApplyCenteredRMSProp, as TensorFlow's rmsprop_test.py states it.

    tensorflow/python/training/rmsprop_test.py, ``_rmsprop_update_numpy``: the
    "rms" slot starts at 1, "mg" and "momentum" at 0, and per step
    rms = decay*rms + (1-decay)*g*g; denom = rms + eps (- mg*mg, centered);
    mom = momentum*mom + lr*g/sqrt(denom); var -= mom.
    """
    var, rms, mg, mom = p0.copy(), np.ones_like(p0), np.zeros_like(p0), np.zeros_like(p0)
    for g in grads:
        rms = rms * decay + (1 - decay) * g * g
        denom = rms + epsilon
        if centered:
            mg = mg * decay + (1 - decay) * g
            denom = denom - mg * mg
        mom = momentum * mom + lr * g / np.sqrt(denom)
        var = var - mom
    return var, {"square_avg": rms, "momentum_buffer": mom, "grad_avg": mg}


def reference_timm(
    p0, grads, lr=1e-2, alpha=0.9, eps=1e-10, weight_decay=0.0, momentum=0.0,
    centered=False, decoupled_decay=False, lr_in_momentum=True,
):  # fmt: skip
    """timm's RMSpropTF (timm/optim/rmsprop_tf.py), from its documented algorithm.

    square_avg starts at 1; TensorFlow's order of operations
    (``avg += (g**2 - avg) * (1 - alpha)``); eps inside the root; decoupled decay
    multiplies the parameter by ``1 - lr * weight_decay``; with
    ``lr_in_momentum`` the buffer accumulates ``lr * g / avg``.
    """
    p, sq, ga, buf = p0.copy(), np.ones_like(p0), np.zeros_like(p0), np.zeros_like(p0)
    for grad in grads:
        g = grad
        if weight_decay:
            if decoupled_decay:
                p = p * (1.0 - lr * weight_decay)
            else:
                g = g + weight_decay * p
        sq = sq + (g**2 - sq) * (1.0 - alpha)
        if centered:
            ga = ga + (g - ga) * (1.0 - alpha)
            avg = np.sqrt(sq - ga * ga + eps)
        else:
            avg = np.sqrt(sq + eps)
        if momentum > 0:
            if lr_in_momentum:
                buf = momentum * buf + lr * g / avg
                p = p - buf
            else:
                buf = momentum * buf + g / avg
                p = p - lr * buf
        else:
            p = p - lr * g / avg
    return p, {"square_avg": sq, "momentum_buffer": buf, "grad_avg": ga}
