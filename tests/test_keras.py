"""rmsprop.keras.RMSprop on each installed Keras backend, each in a process of its own
(Keras fixes its backend at import; the checks are in keras_worker.py)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("keras") is None:  # imported here, Keras would pick a backend
    pytest.skip("Keras is not installed", allow_module_level=True)

pytestmark = pytest.mark.subprocess

WORKER = Path(__file__).with_name("keras_worker.py")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_on_the_backend(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = subprocess.run(
        [sys.executable, str(WORKER), backend],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    # preset="keras" is keras.optimizers.RMSprop, bit for bit, over 50 steps of a model.
    for name in ("plain", "momentum", "centered", "all"):
        assert results[f"keras {name}"] is True, name
    # The other presets (and Keras's with options Keras lacks) are rmsprop.RMSProp's
    # float64 numbers, over 50 steps.
    for preset in ("None", "pytorch", "tensorflow", "optax", "timm", "keras"):
        assert results[f"preset {preset}"] <= 1e-15, preset
    # Saved with its model (a learning-rate schedule too), loaded, and training on alike.
    assert results["saved keras"] is True
    assert results["saved pytorch"] is True
    assert results["refused"] == ["TypeError", "TypeError"]
