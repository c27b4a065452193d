"""Doctest collection: skip what needs an optional dependency that is not installed.

``make test`` installs them all; a partial environment (no torch, JAX or Triton)
still runs everything else. README.md's and docs/jax.md's examples use NumPy, JAX and optax.
"""

import importlib.util

OPTIONAL = {
    "src/rmsprop/torch": ("torch",),
    "src/rmsprop/_triton_rule.py": ("triton",),
    "src/rmsprop/_triton.py": ("torch", "triton"),
    "src/rmsprop/_torch_kernel.py": ("torch", "numba"),
    "src/rmsprop/optax.py": ("jax", "optax"),
    "README.md": ("jax", "optax"),
    "docs/jax.md": ("jax", "optax"),
}

collect_ignore = [
    path
    for path, modules in OPTIONAL.items()
    if any(importlib.util.find_spec(module) is None for module in modules)
]
