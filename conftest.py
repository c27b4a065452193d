"""Doctest collection: skip what needs an optional dependency that is not installed.

``make test`` installs them all; a partial environment (no torch, JAX or Triton)
still runs everything else. README.md's and docs/jax.md's examples use NumPy, JAX and optax;
README.md's, Keras on PyTorch.
"""

import importlib.util
import os

# Keras picks its backend at import, TensorFlow by default (not installed here): the
# doctests of README.md and src/rmsprop/keras.py run it on PyTorch.
if importlib.util.find_spec("torch") is not None:
    os.environ.setdefault("KERAS_BACKEND", "torch")

OPTIONAL = {
    "src/rmsprop/torch": ("torch",),
    "src/rmsprop/_triton_rule.py": ("triton",),
    "src/rmsprop/_triton.py": ("torch", "triton"),
    "src/rmsprop/_torch_kernel.py": ("torch", "numba"),
    "src/rmsprop/optax.py": ("jax", "optax"),
    "src/rmsprop/keras.py": ("keras", "torch"),
    "README.md": ("jax", "optax", "keras", "torch"),
    "docs/jax.md": ("jax", "optax"),
}

collect_ignore = [
    path
    for path, modules in OPTIONAL.items()
    if any(importlib.util.find_spec(module) is None for module in modules)
]
