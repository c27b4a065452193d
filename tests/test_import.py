"""``import rmsprop`` stays light: no torch, JAX or JIT compiler."""

import subprocess
import sys

HEAVY = ("torch", "jax", "jaxlib", "numba", "llvmlite", "array_api_compat", "dask")


def test_import_pulls_in_no_heavy_library():
    code = (
        "import sys, rmsprop\n"
        "rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9)\n"
        "import numpy as np\n"
        "rmsprop.step_(np.ones(3), np.ones(3), np.zeros(3), 0.1, 0.9)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
