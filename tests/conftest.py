import os

# The Triton kernel runs on CPU tensors under Triton's interpreter in these tests;
# Triton reads this when a kernel is defined, so before anything imports it.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from hypothesis import HealthCheck, settings

from rmsprop import _accel

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
# HYPOTHESIS_PROFILE=thorough for a long local run; CI is derandomized.
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

KERNELS_AVAILABLE = _accel.load() is not None


@pytest.fixture(params=["numpy", "kernels"])
def backend(request):
    """Run a test on the NumPy path and on the fused kernels (for arrays of every size)."""
    if request.param == "kernels" and not KERNELS_AVAILABLE:
        pytest.skip("Numba is not installed")
    previous = _accel.set_enabled(request.param == "kernels")
    yield request.param
    _accel.set_enabled(previous)
