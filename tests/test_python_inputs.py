"""Plain-Python inputs: numbers and (nested) lists and tuples."""

import copy
import math
from fractions import Fraction

import numpy as np
import pytest

import rmsprop
from rmsprop._step import PYTHON_LOOP_MAX

from oracle import assert_identical, reference


def test_scalars_give_python_floats():
    params, cache = rmsprop.step(1, 0.5, 0, 0.1, 0.9)
    assert type(params) is float and type(cache) is float
    expected = reference(1.0, 0.5, 0.0, 0.1, 0.9)
    assert (params, cache) == (float(expected[0]), float(expected[1]))


def test_numbers_of_other_real_types_are_accepted():
    params, cache = rmsprop.step(
        [Fraction(1, 2), np.float32(0.25)], [1, np.int8(2)], [0, 0.0], 0.1, 0.9
    )
    expected = rmsprop.step([0.5, 0.25], [1.0, 2.0], [0.0, 0.0], 0.1, 0.9)
    assert (params, cache) == expected
    assert all(type(x) is float for x in params + cache)


@pytest.mark.parametrize(
    ("params", "expected_type"),
    [
        ([[1.0, 2.0], [3.0, 4.0]], list),
        (((1.0, 2.0), (3.0, 4.0)), tuple),
        ([(1.0, 2.0), (3.0, 4.0)], list),
    ],
)
def test_nested_containers_keep_their_types(params, expected_type):
    grads = [[0.1, -0.2], [0.3, 0.0]]
    cache = ((0.0, 0.5), (1.0, 2.0))
    new_params, new_cache = rmsprop.step(params, grads, cache, 0.01, 0.9)
    assert type(new_params) is expected_type
    assert [type(row) for row in new_params] == [type(row) for row in params]
    assert type(new_cache) is tuple and all(type(row) is tuple for row in new_cache)
    expected = reference(params, grads, cache, 0.01, 0.9)
    assert_identical(np.array(new_params), expected[0])
    assert_identical(np.array(new_cache), expected[1])


@pytest.mark.parametrize("empty", [[], (), [[], []], [[[]]]])
def test_empty_inputs_give_empty_outputs(empty):
    params, cache = rmsprop.step(empty, copy.deepcopy(empty), copy.deepcopy(empty), 0.1, 0.9)
    assert params == empty and cache == empty
    assert type(params) is type(empty)


@pytest.mark.parametrize("n", [1, 3, PYTHON_LOOP_MAX, PYTHON_LOOP_MAX + 1, 1000])
def test_short_and_long_lists_agree_with_the_oracle(n):
    rng = np.random.default_rng(n)
    p, g = rng.normal(size=(2, n))
    v = rng.random(n)
    new_p, new_v = rmsprop.step(p.tolist(), g.tolist(), v.tolist(), 0.003, 0.95)
    expected = reference(p, g, v, 0.003, 0.95)
    assert_identical(np.array(new_p), expected[0])
    assert_identical(np.array(new_v), expected[1])


@pytest.mark.parametrize(
    ("p", "g", "v", "lr", "beta", "eps"),
    [
        (1.0, 0.0, 0.0, 0.1, 0.9, 0.0),  # 0 / 0: NaN
        (1.0, 1e-200, 0.0, 0.1, 0.9, 0.0),  # g*g underflows: x / 0 = inf
        (1.0, 1.0, -5.0, 0.1, 0.9, 1e-8),  # negative cache: sqrt of a negative number
        (1.0, math.inf, 0.0, 0.1, 0.9, 1e-8),  # inf / inf
        (math.nan, 1.0, 0.0, 0.1, 0.9, 1e-8),
        (1.0, 1e200, 1e300, 0.1, 0.9, 1e-8),  # g*g overflows
        (1.0, 1.0, math.inf, 0.1, 1.0, 1e-8),
    ],
)
@pytest.mark.parametrize("container", [float, list])
def test_ieee_754_values_propagate_without_errors(p, g, v, lr, beta, eps, container):
    wrap = (lambda x: x) if container is float else (lambda x: [x, 0.5])
    new_p, new_v = rmsprop.step(wrap(p), wrap(g), wrap(v), lr, beta, eps)
    expected = reference(wrap(p), wrap(g), wrap(v), lr, beta, eps)
    assert_identical(np.array(new_p), expected[0])
    assert_identical(np.array(new_v), expected[1])


def test_inputs_are_not_modified():
    params, grads, cache = [[1.0, 2.0]], [[0.5, 0.5]], [[0.0, 0.0]]
    before = copy.deepcopy((params, grads, cache))
    new_params, new_cache = rmsprop.step(params, grads, cache, 0.1, 0.9)
    assert (params, grads, cache) == before
    assert new_params is not params and new_params[0] is not params[0]
    assert new_cache is not cache


def test_in_place_on_lists_writes_into_the_same_lists():
    params, grads, cache = [[1.0, 2.0], [3.0, 4.0]], ((0.5, 0.1), (0.0, -1.0)), [[0.0, 0.1], [1, 0]]
    rows = list(params)
    expected = rmsprop.step(params, grads, cache, 0.1, 0.9)
    returned = rmsprop.step_(params, grads, cache, 0.1, 0.9)
    assert returned[0] is params and returned[1] is cache
    assert params[0] is rows[0] and params[1] is rows[1]
    assert (params, cache) == expected
    assert all(type(x) is float for row in params + cache for x in row)


def test_in_place_on_lists_propagates_ieee_values():
    params, cache = [1.0, 2.0], [0.0, -1.0]
    rmsprop.step_(params, [0.0, 1.0], cache, 0.1, 0.9, eps=0.0)
    assert math.isnan(params[0]) and math.isnan(params[1])
    assert cache == [0.0, 0.9 * -1.0 + (1 - 0.9) * 1.0]


def test_hyperparameters_accept_ints_and_numpy_scalars():
    expected = rmsprop.step([1.0], [0.5], [0.0], 1.0, 0.5, 0.0)
    assert rmsprop.step([1.0], [0.5], [0.0], 1, np.float32(0.5), np.int64(0)) == expected
    assert rmsprop.step([1.0], [0.5], [0.0], lr=1, beta=0.5, eps=0) == expected


def test_beta_at_the_ends_of_its_range():
    # beta = 1: the cache never changes; beta = 0: it is the last squared gradient.
    params, cache = rmsprop.step([1.0], [0.5], [4.0], 0.1, 1.0, 0.0)
    assert cache == [4.0] and params == [1.0 - 0.1 * 0.5 / 2.0]
    params, cache = rmsprop.step([1.0], [0.5], [4.0], 0.1, 0.0, 0.0)
    assert cache == [0.25] and params == [1.0 - 0.1]
