"""Print how closely each preset reproduces its framework: ``python tests/agreement_report.py``.

The same comparisons as test_frameworks.py (50 steps of random gradients), with
the measured max |ours - theirs| / max |theirs| over parameters and state
instead of a pass/fail bound.
"""

import itertools
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import optax
import test_optax
import torch

import rmsprop.torch

from frameworks import (
    max_relative_difference,
    problem,
    reference_tensorflow,
    reference_timm,
    run_keras,
    run_numpy,
    run_optax,
    run_torch,
    well_posed,
)


def jax_rows():
    """rmsprop.optax against optax.rmsprop, rmsprop.RMSProp, and its own float64 run."""
    import jax  # noqa: PLC0415

    import rmsprop.optax  # noqa: PLC0415

    differences = []
    for case in test_optax.OPTAX_OPTIONS:
        m, n, c, s, i, bc = case.values
        params, grads = test_optax.pytree()
        grads = test_optax.well_posed(grads, c, bc, i)
        options = {"nesterov": n, "centered": c, "eps_in_sqrt": s, "bias_correction": bc}
        with jax.enable_x64(True):
            theirs, _ = test_optax.run(
                optax.rmsprop(0.01, momentum=m, initial_scale=i, **options), params, grads
            )
            ours, _ = test_optax.run(
                rmsprop.optax.rmsprop(0.01, preset="optax", momentum=m, initial_cache=i, **options),
                params,
                grads,
            )
        differences.append(test_optax.difference(ours, theirs))
    rows = [("rmsprop.optax (optax) vs optax.rmsprop, float64, 48 option sets", max(differences))]
    differences = []
    for preset in ("pytorch", "tensorflow", "keras", "timm", None):
        for options in test_optax.PRESET_OPTIONS:
            params, grads = test_optax.pytree(1)
            arrays = {k: v.copy() for k, v in params.items()}
            optimizer = rmsprop.RMSProp(list(arrays.values()), preset=preset, lr=0.01, **options)
            for g in grads:
                optimizer.step([g[k] for k in arrays])
            with jax.enable_x64(True):
                ours, _ = test_optax.run(
                    rmsprop.optax.rmsprop(0.01, preset=preset, **options), params, grads
                )
            differences.append(test_optax.difference(ours, arrays))
    rows.append(("rmsprop.optax vs rmsprop.RMSProp, float64, 5 presets x 5 sets", max(differences)))
    return rows


def worst(pairs):
    return max(max_relative_difference(a, b) for a, b in pairs)


def main():
    p0, grads = problem()
    rows = []
    for dtype in ("float64", "float32"):
        pairs = []
        for m, c, wd, mx in itertools.product([0.0, 0.9], [False, True], [0.0, 0.1], [False, True]):
            options = {"momentum": m, "centered": c, "weight_decay": wd, "maximize": mx}
            theirs = run_torch(p0, grads, torch.optim.RMSprop, dtype, lr=0.01, alpha=0.9, **options)
            ours = run_torch(
                p0,
                grads,
                rmsprop.torch.RMSProp,
                dtype,
                preset="pytorch",
                lr=0.01,
                beta=0.9,
                **options,
            )
            pairs += [(ours[0], theirs[0])] + [(ours[1][k], theirs[1][k]) for k in theirs[1]]
        rows.append((f"pytorch vs torch.optim.RMSprop, {dtype}, 16 option sets", worst(pairs)))
        pairs = []
        for m, c, wd, mx in itertools.product([0.0, 0.9], [False, True], [0.0, 0.1], [False, True]):
            options = {"momentum": m, "centered": c, "weight_decay": wd, "maximize": mx}
            theirs = run_torch(p0, grads, torch.optim.RMSprop, dtype, lr=0.01, alpha=0.9, **options)
            ours = run_torch(p0, grads, rmsprop.torch.RMSprop, dtype, lr=0.01, alpha=0.9, **options)
            pairs += [(ours[0], theirs[0])] + [(ours[1][k], theirs[1][k]) for k in theirs[1]]
        rows.append((f"rmsprop.torch.RMSprop vs torch.optim.RMSprop, {dtype}", worst(pairs)))
    pairs = []
    for m, n, c, bc in itertools.product([None, 0.9], [False, True], [False, True], [False, True]):
        if n and not m:
            continue
        options = {"nesterov": n, "centered": c, "bias_correction": bc}
        g = well_posed(grads, c, bc)
        theirs = run_optax(p0, g, learning_rate=0.01, momentum=m, **options)
        ours, _ = run_numpy(p0, g, "optax", lr=0.01, momentum=m or 0.0, **options)
        pairs.append((ours, theirs))
    rows.append(("optax vs optax.rmsprop, float64, 12 option sets", worst(pairs)))
    rows += jax_rows()
    pairs = []
    for m, c, wd in itertools.product([0.0, 0.9], [False, True], [0.0, 0.01]):
        theirs = run_keras(
            p0, grads, learning_rate=0.01, momentum=m, centered=c, weight_decay=wd or None
        )
        ours, _ = run_numpy(p0, grads, "keras", lr=0.01, momentum=m, centered=c, weight_decay=wd)
        pairs.append((ours, theirs))
    rows.append(
        (
            "keras vs keras.optimizers.RMSprop (Keras 3, torch backend), float64, 8 sets",
            worst(pairs),
        )
    )
    pairs = []
    for lr, decay, m, eps, c in [
        (0.5, 0.9, 0.0, 1e-3, True),
        (0.5, 0.95, 0.9, 1e-5, True),
        (0.1, 0.9, 0.0, 1e-3, False),
    ]:
        theirs = reference_tensorflow(p0, grads, lr, decay, m, eps, c)
        ours = run_numpy(
            p0, grads, "tensorflow", lr=lr, beta=decay, momentum=m, eps=eps, centered=c
        )
        pairs.append((ours[0], theirs[0]))
    rows.append(("tensorflow vs TF1 ApplyRMSProp formula (rmsprop_test.py)", worst(pairs)))
    pairs = []
    for m, c, wd, dec in [
        (0.9, True, 1e-2, False),
        (0.9, False, 1e-2, True),
        (0.0, False, 0.0, False),
    ]:
        theirs = reference_timm(
            p0, grads, momentum=m, centered=c, weight_decay=wd, decoupled_decay=dec
        )
        ours = run_numpy(
            p0, grads, "timm", momentum=m, centered=c, weight_decay=wd, decoupled_weight_decay=dec
        )
        pairs.append((ours[0], theirs[0]))
    rows.append(("timm vs RMSpropTF's algorithm", worst(pairs)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:.2e}")


if __name__ == "__main__":
    with np.errstate(all="raise"):
        main()
