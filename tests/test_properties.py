"""Property tests: step and step_ against the oracle over shapes, dtypes and values."""

import copy

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rmsprop

from oracle import assert_identical, exact_scalar, reference, ulp_distance

pytestmark = pytest.mark.usefixtures("backend")  # the NumPy path and the fused kernels

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
U = 2.0**-53  # unit roundoff of float64

lrs = st.one_of(st.sampled_from([0.0, 1e-3, 1.0]), st.floats(0, 1e3))
betas = st.one_of(st.sampled_from([0.0, 0.9, 0.99, 1.0]), st.floats(0, 1))
epss = st.one_of(st.sampled_from([0.0, 1e-8]), st.floats(0, 1))
shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


ANY_FLOAT_DTYPE = st.sampled_from(FLOAT_DTYPES)


@st.composite
def triples(draw, dtypes=ANY_FLOAT_DTYPE, allow_special=True, cache_min=None):
    """(params, grads, cache) arrays of one shape; each of its own drawn dtype."""
    shape = draw(shapes)

    def array(min_value=None):
        dtype = np.dtype(draw(dtypes))
        if dtype.kind != "f":
            return draw(hnp.arrays(dtype, shape))
        elements = st.floats(
            min_value=min_value,
            width=dtype.itemsize * 8,
            allow_nan=allow_special and min_value is None,
            allow_infinity=allow_special,
        )
        return draw(hnp.arrays(dtype, shape, elements=elements))

    return array(), array(), array(cache_min)


def read_only(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def check_against_oracle(p, g, v, lr, beta, eps, new_p, new_v):
    expected_p, expected_v = reference(p, g, v, lr, beta, eps)
    for new, expected, source in ((new_p, expected_p, p), (new_v, expected_v, v)):
        dtype = source.dtype if source.dtype.kind == "f" else np.dtype(np.float64)
        if dtype == np.float64:
            assert_identical(new, expected)
        else:  # the float64 evaluation rounded once: within 1 ulp
            with np.errstate(over="ignore"):
                rounded = expected.astype(dtype)
            assert new.dtype == dtype
            assert ulp_distance(new, rounded).max(initial=0) <= 1


@pytest.mark.slow
@given(triples(), lrs, betas, epss)
def test_step_matches_the_oracle(arrays, lr, beta, eps):
    p, g, v = read_only(*arrays)  # step must not write: read-only inputs would raise
    new_p, new_v = rmsprop.step(p, g, v, lr, beta, eps)
    check_against_oracle(p, g, v, lr, beta, eps, new_p, new_v)


@given(
    triples(dtypes=st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.bool_])),
    lrs,
    betas,
)
def test_step_with_integer_and_bool_inputs_matches_the_oracle(arrays, lr, beta):
    p, g, v = read_only(*arrays)
    new_p, new_v = rmsprop.step(p, g, v, lr, beta)
    check_against_oracle(p, g, v, lr, beta, 1e-8, new_p, new_v)


@given(
    st.sampled_from(FLOAT_DTYPES).flatmap(lambda d: triples(dtypes=st.just(d))), lrs, betas, epss
)
def test_step_in_place_matches_step(arrays, lr, beta, eps):
    p, g, v = (a.copy() for a in arrays)
    g.flags.writeable = False
    expected = rmsprop.step(p, g, v, lr, beta, eps)
    assert rmsprop.step_(p, g, v, lr, beta, eps) == (p, v)
    assert_identical(p, expected[0])
    assert_identical(v, expected[1])


@given(triples(dtypes=st.just(np.float64)), lrs, betas, epss)
def test_nested_lists_match_arrays(arrays, lr, beta, eps):
    p, g, v = (a.tolist() for a in arrays)
    before = copy.deepcopy((p, g, v))
    new_p, new_v = rmsprop.step(p, g, v, lr, beta, eps)
    assert (p, g, v) == before  # list equality: the same float objects, NaN included
    expected = rmsprop.step(*arrays, lr, beta, eps)

    def as_array(x):  # an empty (0, 0) array's tolist() is [], of shape (0,)
        return np.array(x, dtype=np.float64).reshape(expected[0].shape)

    assert_identical(as_array(new_p), expected[0])
    assert_identical(as_array(new_v), expected[1])
    if arrays[0].ndim:  # a 0-d array becomes a Python float: nothing to update in place
        rmsprop.step_(p, g, v, lr, beta, eps)
        assert_identical(as_array(p), expected[0])
        assert_identical(as_array(v), expected[1])


@given(triples(allow_special=False, cache_min=0.0), lrs, betas, epss)
def test_cache_stays_non_negative(arrays, lr, beta, eps):
    _, new_v = rmsprop.step(*read_only(*arrays), lr, beta, eps)
    assert (np.asarray(new_v) >= 0).all()


@given(triples(allow_special=False, cache_min=0.0), lrs, betas, epss)
def test_zero_gradient_leaves_params_unchanged(arrays, lr, beta, eps):
    p, _, v = arrays
    g = np.zeros_like(arrays[1])
    # beta * cache + eps > 0, else the step is 0 / 0.
    assume((beta * v.astype(np.float64) + eps > 0).all())
    new_p, _ = rmsprop.step(*read_only(p, g, v), lr, beta, eps)
    assert_identical(new_p, p)


moderate = st.one_of(st.just(0.0), st.floats(1e-100, 1e100), st.floats(-1e100, -1e-100))


@given(
    st.floats(-1e6, 1e6),
    moderate,
    st.one_of(st.just(0.0), st.floats(1e-100, 1e100)),
    st.one_of(st.just(0.0), st.floats(1e-12, 10)),
    st.one_of(st.sampled_from([0.0, 1.0]), st.floats(1e-6, 1)),
    st.one_of(st.just(0.0), st.floats(1e-12, 1)),
)
def test_float64_error_against_high_precision(p, g, v, lr, beta, eps):
    """Away from underflow and overflow, float64 results are within a few roundings.

    Bound: |p_new - exact| <= 8 u (|p| + |step|) and |v_new - exact| <= 5 u v_exact,
    u = 2**-53 (a first-order count of the roundings in the rule).
    """
    assume(eps > 0 or beta * v + (1 - beta) * g * g > 0)
    new_p, new_v = rmsprop.step(p, g, v, lr, beta, eps)
    exact_p, exact_v, step = exact_scalar(p, g, v, lr, beta, eps)
    assert abs(new_v - exact_v) <= 5 * U * exact_v
    assert abs(new_p - exact_p) <= 8 * U * (abs(p) + abs(step))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_dtypes_are_within_one_ulp_where_the_update_nearly_cancels(dtype):
    """The case that breaks float32 arithmetic: p - step with step close to p."""
    rng = np.random.default_rng(2)
    p = rng.uniform(0.5, 2, 2000).astype(dtype)
    g = rng.uniform(0.1, 1, 2000).astype(dtype)
    v = np.zeros_like(p)
    # Step = lr * g / sqrt((1 - beta) g^2 + eps) ~= lr / sqrt(1 - beta): choose lr so it ~= p.
    lr = p.astype(np.float64) * np.sqrt(0.1) * (1 + 1e-4)
    for i in range(0, p.size, 100):
        new_p, _new_v = rmsprop.step(
            p[i : i + 100], g[i : i + 100], v[i : i + 100], float(lr[i]), 0.9, 0.0
        )
        expected = reference(p[i : i + 100], g[i : i + 100], v[i : i + 100], float(lr[i]), 0.9, 0.0)
        assert ulp_distance(new_p, expected[0].astype(dtype)).max() <= 1


@given(
    st.floats(-1e6, 1e6).filter(lambda x: abs(x) >= 1e-6),
    moderate,
    st.one_of(st.just(0.0), st.floats(1e-100, 1e100)),
    st.floats(1e-12, 10),
    st.floats(1e-6, 1),
)
def test_float64_within_2_ulp_where_the_step_does_not_cancel_the_parameter(p, g, v, lr, beta):
    """Where |step| <= |p| / 2, p_new is within 2 ulp of the exact value (measured: 1.46).

    Where the step nearly cancels the parameter, the float64 evaluation loses the
    relative accuracy of the difference (see the bound of the test above).
    """
    exact_p, _, step = exact_scalar(p, g, v, lr, beta, 1e-8)
    assume(abs(step) <= abs(p) / 2)
    new_p, _ = rmsprop.step(np.array([p]), np.array([g]), np.array([v]), lr, beta)
    assert abs(new_p[0] - exact_p) <= 2 * np.spacing(abs(float(exact_p)))
