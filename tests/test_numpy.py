"""NumPy inputs: dtypes, shapes, scalars, purity and in-place updates."""

import numpy as np
import pytest

import rmsprop
from rmsprop import _accel
from rmsprop._slices import slices

from memory import extra_bytes
from oracle import assert_identical, reference, ulp_distance

pytestmark = pytest.mark.usefixtures("backend")  # the NumPy path and the fused kernels

FLOATS = [np.float16, np.float32, np.float64]


def read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (3, 4), (2, 0, 3), (2, 3, 4)])
def test_step_keeps_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(0)
    p, g = (rng.normal(size=shape).astype(dtype) for _ in range(2))
    v = rng.random(size=shape).astype(dtype)
    new_p, new_v = rmsprop.step(*read_only(p, g, v), 0.01, 0.9)
    assert type(new_p) is np.ndarray and type(new_v) is np.ndarray
    assert new_p.dtype == dtype and new_v.dtype == dtype
    assert new_p.shape == shape and new_v.shape == shape
    expected = reference(p, g, v, 0.01, 0.9)
    assert ulp_distance(new_p, expected[0].astype(dtype)).max(initial=0) <= 1
    assert ulp_distance(new_v, expected[1].astype(dtype)).max(initial=0) <= 1


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_])
def test_integer_and_bool_inputs_give_float64(dtype):
    p = np.array([1, 0, 1], dtype=dtype)
    new_p, new_v = rmsprop.step(p, p, p, 0.5, 0.5)
    assert new_p.dtype == np.float64 and new_v.dtype == np.float64
    expected = reference(p, p, p, 0.5, 0.5)
    assert_identical(new_p, expected[0])
    assert_identical(new_v, expected[1])


def test_each_output_keeps_its_own_dtype():
    p = np.ones(3, np.float32)
    v = np.zeros(3, np.float64)
    g = np.full(3, 0.5, np.float16)
    new_p, new_v = rmsprop.step(p, g, v, 0.1, 0.9)
    assert new_p.dtype == np.float32 and new_v.dtype == np.float64
    expected = reference(p, g, v, 0.1, 0.9)
    assert_identical(new_p, expected[0].astype(np.float32))
    assert_identical(new_v, expected[1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_numpy_scalars_give_numpy_scalars(dtype):
    new_p, new_v = rmsprop.step(dtype(1.0), dtype(0.1), dtype(0.0), 0.1, 0.9)
    assert type(new_p) is dtype and type(new_v) is dtype
    expected = reference(1.0, dtype(0.1), 0.0, 0.1, 0.9)
    assert_identical(new_p, expected[0].astype(dtype))


def test_zero_dimensional_arrays_stay_arrays():
    new_p, _new_v = rmsprop.step(np.array(1.0), np.array(0.1), np.array(0.0), 0.1, 0.9)
    assert type(new_p) is np.ndarray and new_p.shape == ()
    assert float(new_p) == rmsprop.step(1.0, 0.1, 0.0, 0.1, 0.9)[0]


def test_grads_and_cache_may_be_python_sequences_with_numpy_params():
    p = np.array([[1.0, 2.0]], np.float32)
    new_p, new_v = rmsprop.step(p, [[0.1, 0.2]], ((0.0, 0.0),), 0.1, 0.9)
    assert new_p.dtype == np.float32 and new_v.dtype == np.float64
    expected = reference(p, [[0.1, 0.2]], [[0.0, 0.0]], 0.1, 0.9)
    assert_identical(new_p, expected[0].astype(np.float32))
    assert_identical(new_v, expected[1])


def test_non_contiguous_inputs():
    base = np.arange(24, dtype=np.float64).reshape(4, 6) / 10
    p, g, v = base[::2, ::3], base.T[1:3, :2] - 1, np.abs(base[1::2, 1::3])
    expected = reference(p, g, v, 0.05, 0.8)
    new_p, new_v = rmsprop.step(p, g, v, 0.05, 0.8)
    assert_identical(new_p, expected[0])
    assert_identical(new_v, expected[1])
    p, v = p.copy(order="F")[:, ::-1], v.copy()[::-1]
    expected = reference(p, g, v, 0.05, 0.8)
    rmsprop.step_(p, g, v, 0.05, 0.8)
    assert_identical(p, expected[0])
    assert_identical(v, expected[1])


def test_float64_results_are_bit_identical_to_the_oracle_with_ieee_values():
    values = np.array(
        [0.0, -0.0, 1e-310, 5e-324, 1e300, -1e300, np.inf, -np.inf, np.nan, 1.0, -2.5]
    )
    p, g, v = np.meshgrid(values, values, np.abs(values), indexing="ij")
    for eps in (0.0, 1e-8):
        for beta in (0.0, 0.9, 1.0):
            new_p, new_v = rmsprop.step(p, g, v, 0.1, beta, eps)
            expected = reference(p, g, v, 0.1, beta, eps)
            assert_identical(new_p, expected[0])
            assert_identical(new_v, expected[1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_in_place_returns_the_same_arrays_with_the_pure_values(dtype):
    rng = np.random.default_rng(1)
    p, g = rng.normal(size=(2, 7, 3)).astype(dtype)
    v = rng.random((7, 3)).astype(dtype)
    expected = rmsprop.step(p, g, v, 0.02, 0.99)
    p_out, v_out = rmsprop.step_(p, g, v, 0.02, 0.99)
    assert p_out is p and v_out is v
    assert_identical(p, expected[0])
    assert_identical(v, expected[1])


def test_in_place_on_a_zero_dimensional_array_and_on_empty_arrays():
    p, v = np.array(1.0), np.array(0.0)
    rmsprop.step_(p, np.array(0.1), v, 0.1, 0.9)
    assert float(p) == rmsprop.step(1.0, 0.1, 0.0, 0.1, 0.9)[0]
    empty = np.empty((0, 3), np.float32)
    assert rmsprop.step_(empty, empty.copy(), empty.copy(), 0.1, 0.9)[0] is empty


def test_in_place_on_views_touches_only_the_view():
    base = np.zeros(10)
    rmsprop.step_(base[2:5], np.ones(3), np.zeros(3), 0.1, 0.9)
    assert (base[:2] == 0).all() and (base[5:] == 0).all() and (base[2:5] != 0).all()


def test_no_floating_point_warnings_and_ieee_results_on_every_path():
    """np.errstate(all="raise") turns a NumPy floating-point warning into an error: the
    NumPy path computes IEEE 754 results (0/0 is NaN, an overflowing square is inf)
    without one. The kernels never consult np.errstate (compiled arithmetic raises
    nothing): they must give the same values."""
    results = {}
    for kernels in (False, True):
        previous = _accel.set_enabled(kernels)
        try:
            with np.errstate(all="raise"):
                nan_p, _ = rmsprop.step(
                    np.array([1.0]), np.array([0.0]), np.array([0.0]), 0.1, 0.9, eps=0.0
                )
                big = (np.array([1.0]), np.array([1e300]), np.array([-1.0]))
                rmsprop.step_(*big, 0.1, 0.9)
        finally:
            _accel.set_enabled(previous)
        results[kernels] = (nan_p[0], big[0][0], big[2][0])
    assert np.isnan(results[False][0]) and results[False][1:] == (1.0, np.inf)
    assert np.isnan(results[True][0]) and results[True][1:] == results[False][1:]


def test_overflow_when_rounding_to_float16_gives_inf_without_warnings():
    p = np.array([65000.0, -65000.0], np.float16)
    g = np.array([-1.0, 1.0], np.float16)
    new_p, _ = rmsprop.step(p, g, np.zeros(2, np.float16), 1000.0, 0.9)
    assert new_p.tolist() == [np.inf, -np.inf]


def test_a_float32_cache_keeps_float16_parameters_moving():
    """In float16 a gradient of 1e3 gives a cache of 1e5 = inf, and the parameter stops;
    a float32 cache (taken in place) keeps the statistics, rounded once each."""
    p16, g16 = np.full(4, 0.5, np.float16), np.full(4, 1e3, np.float16)
    narrow = (p16.copy(), np.zeros(4, np.float16))
    wide = (p16.copy(), np.zeros(4, np.float32))
    for p, v in (narrow, wide):
        rmsprop.step_(p, g16, v, 1e-2, 0.9)
    after_one = narrow[0].copy()
    expected_p, expected_v = rmsprop.step(p16.astype(np.float64), g16, np.zeros(4), 1e-2, 0.9)
    assert (wide[1] == np.float32(expected_v)).all()
    assert (wide[0] == np.float16(expected_p)).all()
    for p, v in (narrow, wide):
        rmsprop.step_(p, g16, v, 1e-2, 0.9)
    assert np.isinf(narrow[1]).all() and (narrow[0] == after_one).all()  # stuck
    assert np.isfinite(wide[1]).all() and (wide[0] < after_one).all()  # still moving


@pytest.mark.parametrize("layout", ["contiguous", "fortran", "strided"])
def test_slices_cover_every_element_once_in_every_layout(layout):
    base = np.arange(6 * 7 * 8, dtype=np.float64).reshape(6, 7, 8)
    arrays = {
        "contiguous": (base, base + 1000),
        "fortran": (np.asfortranarray(base), np.asfortranarray(base + 1000)),
        "strided": (base[::2, 1:, ::3], (base + 1000)[::2, 1:, ::3]),
    }[layout]
    seen = []
    for a, b in slices(arrays, limit=5):
        assert a.size <= 5 and a.shape == b.shape
        assert (b - a == 1000).all()  # the same positions in both
        seen += a.ravel().tolist()
    assert sorted(seen) == sorted(arrays[0].ravel().tolist())


MEMORY = """
import sys
import numpy as np
import rmsprop

n = 5_000_000
p, g = np.ones(n, np.float16), np.full(n, 0.5, np.float16)
v = np.zeros(n, np.float32) if sys.argv[1] == "float32 cache" else np.zeros(n, np.float16)
if sys.argv[1] == "strided float32":
    p, g, v = (np.ones(2 * n, np.float32)[::2] for _ in range(3))
measure(lambda: rmsprop.step_(p, g, v, 0.1, 0.9))
"""


@pytest.mark.parametrize("case", ["float16 cache", "float32 cache", "strided float32"])
def test_step_in_place_widens_slice_by_slice(case):
    """Before, float16 and non-contiguous arrays were widened whole: 56 bytes of float64
    temporaries per element, 280 MB here. Now at most a slice's worth."""
    extra = extra_bytes(MEMORY, case)
    assert extra < 16 * 2**20, f"{extra / 2**20:.1f} MiB"
