"""The seed's three worked examples, in every input kind."""

import math

import numpy as np
import pytest

import rmsprop
from rmsprop.demo._seed import SEED_EXAMPLES

EXAMPLES = [pytest.param(ex, id=f"example{i}") for i, ex in enumerate(SEED_EXAMPLES, start=1)]


def test_example_1_exact_value():
    """With eps inside the root the formula gives 0.683773815..., not the printed 0.683772."""
    params, cache = rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9)
    exact = 1.0 - 0.1 * 0.1 / math.sqrt(0.001 + 1e-8)
    assert params[0] == pytest.approx(exact, rel=0, abs=1e-12)
    assert params[0] == pytest.approx(0.683773815110, rel=0, abs=1e-12)
    assert cache == [pytest.approx(0.001, rel=0, abs=1e-15)]
    # The seed prints 0.683772: what the step gives when eps is left out.
    dropped, _ = rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9, eps=0.0)
    assert round(dropped[0], 6) == 0.683772
    assert round(params[0], 6) == 0.683774


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_match_the_printed_values(example):
    params, cache = rmsprop.step(
        example.params, example.grads, example.cache, example.lr, example.beta
    )
    assert type(params) is list and type(cache) is list
    assert all(type(x) is float for x in params + cache)
    if example is not SEED_EXAMPLES[0]:  # example 1: see test_example_1_exact_value
        assert [round(x, 6) for x in params] == example.printed_params
    assert [round(x, 6) for x in cache] == example.printed_cache


@pytest.mark.parametrize("example", EXAMPLES)
def test_examples_agree_across_kinds(example):
    args = (example.params, example.grads, example.cache)
    expected = rmsprop.step(*args, example.lr, example.beta)
    as_arrays = rmsprop.step(*(np.array(a) for a in args), example.lr, example.beta)
    as_tuples = rmsprop.step(*(tuple(a) for a in args), example.lr, example.beta)
    np.testing.assert_array_equal(as_arrays[0], expected[0])
    np.testing.assert_array_equal(as_arrays[1], expected[1])
    assert as_tuples == (tuple(expected[0]), tuple(expected[1]))
    for i in range(len(example.params)):
        one = rmsprop.step(*(a[i] for a in args), example.lr, example.beta)
        assert one == (expected[0][i], expected[1][i])
