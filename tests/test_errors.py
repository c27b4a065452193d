"""Every bad input raises TypeError or ValueError naming the argument, and modifies nothing."""

import copy
import math

import numpy as np
import pytest

import rmsprop

pytestmark = pytest.mark.usefixtures("backend")  # the NumPy path and the fused kernels


def torch():
    return pytest.importorskip("torch")


def jnp():
    return pytest.importorskip("jax.numpy")


def lists(p=(1.0, 2.0), g=(0.1, 0.2), v=(0.0, 0.0)):
    return [list(p), list(g), list(v), 0.1, 0.9, 1e-8]


def arrays(p=(1.0, 2.0), g=(0.1, 0.2), v=(0.0, 0.0)):
    return [np.array(p), np.array(g), np.array(v), 0.1, 0.9, 1e-8]


def read_only(name):
    args = arrays()
    args["pgv".index(name)].flags.writeable = False
    return args


def overlapping_views():
    base = np.arange(5.0)
    return [base[:-1], np.ones(4), base[1:], 0.1, 0.9, 1e-8]


def with_hyper(index, value):
    args = lists()
    args[index] = value
    return args


def tensors(dtype_p="float64", dtype_v="float64", dtype_g="float64"):
    t = torch()
    return [
        t.tensor([1.0, 2.0], dtype=getattr(t, dtype_p)),
        t.tensor([0.1, 0.2], dtype=getattr(t, dtype_g)),
        t.tensor([0.0, 0.0], dtype=getattr(t, dtype_v)),
        0.1,
        0.9,
        1e-8,
    ]


def torch_views(views, base):
    """Arguments made of views of one tensor, ``views(base)``, with default hyperparameters."""
    return [*views(base), 0.1, 0.9, 1e-8]


def same_object(args, i, j):
    args[j] = args[i]
    return args


BOTH = [
    # shapes and structure
    ("grads length", lambda: lists(g=(0.1,)), ValueError, r"grads has shape \(1,\)"),
    ("cache length", lambda: lists(v=(0.0, 0.0, 0.0)), ValueError, r"cache has shape \(3,\)"),
    (
        "ragged params",
        lambda: [[[1.0], [1.0, 2.0]], [[0.1], [0.1]], [[0.0], [0.0]], 0.1, 0.9, 1e-8],
        ValueError,
        r"params is ragged: params\[0\] has shape \(1,\) but params\[1\] has shape \(2,\)",
    ),
    (
        "ragged grads",
        lambda: [[[1.0], [2.0]], [[0.1], 0.1], [[0.0], [0.0]], 0.1, 0.9, 1e-8],
        ValueError,
        r"grads is ragged",
    ),
    (
        "scalar vs list",
        lambda: [[1.0], 0.1, [0.0], 0.1, 0.9, 1e-8],
        ValueError,
        r"grads has shape \(\)",
    ),
    (
        "array shapes, no broadcasting",
        lambda: arrays(g=(0.1,)),
        ValueError,
        r"grads has shape \(1,\)",
    ),
    ("array cache shape", lambda: arrays(v=[[0.0, 0.0]]), ValueError, r"cache has shape \(1, 2\)"),
    # element types
    ("string element", lambda: lists(g=(0.1, "x")), TypeError, r"grads\[1\] is 'x' \(str\)"),
    (
        "None element",
        lambda: [[[1.0, 2.0]], [[0.1, 0.2]], [[0.0, None]], 0.1, 0.9, 1e-8],
        TypeError,
        r"cache\[0\]\[1\] is None",
    ),
    ("bool element", lambda: lists(p=(True, 2.0)), TypeError, r"params\[0\] is True \(bool\)"),
    ("complex element", lambda: lists(g=(1j, 0.2)), TypeError, r"grads\[0\] is 1j.*complex"),
    ("huge int element", lambda: lists(p=(10**400, 1.0)), ValueError, r"params\[0\].*too large"),
    (
        "not an array",
        lambda: [{"a": 1.0}, [0.1], [0.0], 0.1, 0.9, 1e-8],
        TypeError,
        r"params is \{'a'",
    ),
    ("string params", lambda: ["1.0", 0.1, 0.0, 0.1, 0.9, 1e-8], TypeError, r"params is '1.0'"),
    (
        "complex array",
        lambda: [np.ones(2), np.ones(2, np.complex128), np.zeros(2), 0.1, 0.9, 1e-8],
        TypeError,
        r"grads has complex dtype complex128",
    ),
    (
        "string array",
        lambda: [np.ones(2), np.zeros(2), np.array(["a", "b"]), 0.1, 0.9, 1e-8],
        TypeError,
        r"cache has dtype <U1",
    ),
    (
        "object array",
        lambda: [np.ones(2), np.array([1.0, None]), np.zeros(2), 0.1, 0.9, 1e-8],
        TypeError,
        r"grads has dtype object",
    ),
    # mixed kinds and libraries
    (
        "list params, numpy grads",
        lambda: [[1.0, 2.0], np.ones(2), [0.0, 0.0], 0.1, 0.9, 1e-8],
        TypeError,
        r"grads is a numpy ndarray but params is a Python list",
    ),
    (
        "torch params, numpy grads",
        lambda: [tensors()[0], np.ones(2), *tensors()[2:]],
        TypeError,
        r"grads is a numpy ndarray but params is a torch Tensor",
    ),
    (
        "torch params, list cache",
        lambda: [*tensors()[:2], [0.0, 0.0], 0.1, 0.9, 1e-08],
        TypeError,
        r"cache is a Python list but params is a torch Tensor",
    ),
    (
        "jax params, torch cache",
        lambda: [jnp().ones(2), jnp().ones(2), *tensors()[2:]],
        TypeError,
        r"cache is a torch Tensor but params is a jax",
    ),
    ("torch complex", lambda: tensors(dtype_g="complex128"), TypeError, r"grads has complex dtype"),
    (
        "torch shapes",
        lambda: [
            torch().ones(2, dtype=torch().float64),
            torch().ones(1, 2),
            torch().zeros(2, dtype=torch().float64),
            0.1,
            0.9,
            1e-8,
        ],
        ValueError,
        r"grads has shape \(1, 2\)",
    ),
    (
        "torch devices",
        lambda: [
            torch().ones(2, dtype=torch().float64),
            torch().ones(2, device="meta", dtype=torch().float64),
            torch().zeros(2, dtype=torch().float64),
            0.1,
            0.9,
            1e-8,
        ],
        ValueError,
        r"grads is on device meta but params is on cpu",
    ),
    # hyperparameters
    *[
        (
            f"lr={value!r}",
            lambda value=value: with_hyper(3, value),
            ValueError,
            r"lr must be a finite number >= 0",
        )
        for value in (-0.1, math.nan, math.inf)
    ],
    *[
        (
            f"beta={value!r}",
            lambda value=value: with_hyper(4, value),
            ValueError,
            r"beta must be in \[0, 1\]",
        )
        for value in (-0.1, 1.5, math.nan, -math.inf)
    ],
    *[
        (
            f"eps={value!r}",
            lambda value=value: with_hyper(5, value),
            ValueError,
            r"eps must be a finite number >= 0",
        )
        for value in (-1e-8, math.nan, math.inf)
    ],
    *[
        (
            f"{name}={value!r}",
            lambda index=index, value=value: with_hyper(index, value),
            TypeError,
            rf"{name} is ",
        )
        for index, name in ((3, "lr"), (4, "beta"), (5, "eps"))
        for value in (True, np.bool_(False), "0.1", None, 0.5j, np.array([0.1]))
    ],
]

IN_PLACE_ONLY = [
    ("read-only params", lambda: read_only("p"), ValueError, r"params is a read-only array"),
    ("read-only cache", lambda: read_only("v"), ValueError, r"cache is a read-only array"),
    (
        "tuple params",
        lambda: [(1.0, 2.0), [0.1, 0.2], [0.0, 0.0], 0.1, 0.9, 1e-8],
        TypeError,
        r"params is \(1.0, 2.0\) \(tuple\), which cannot be updated in place",
    ),
    (
        "tuple cache",
        lambda: [[1.0, 2.0], [0.1, 0.2], (0.0, 0.0), 0.1, 0.9, 1e-8],
        TypeError,
        r"cache is .*tuple.*cannot be updated in place",
    ),
    (
        "tuple inside params",
        lambda: [[[1.0], (2.0,)], [[0.1], [0.2]], [[0.0], [0.0]], 0.1, 0.9, 1e-8],
        TypeError,
        r"params\[1\] is a tuple",
    ),
    (
        "float params",
        lambda: [1.0, 0.1, 0.0, 0.1, 0.9, 1e-8],
        TypeError,
        r"params is 1.0 \(float\).*rmsprop.step",
    ),
    (
        "numpy scalar params",
        lambda: [np.float64(1.0), 0.1, np.zeros(()), 0.1, 0.9, 1e-8],
        TypeError,
        r"params is .*numpy.float64.*rmsprop.step",
    ),
    (
        "numpy cache given as list",
        lambda: [np.ones(2), np.ones(2), [0.0, 0.0], 0.1, 0.9, 1e-8],
        TypeError,
        r"cache is \[0.0, 0.0\] \(list\), which cannot be updated in place",
    ),
    (
        "integer params",
        lambda: [np.array([1, 2]), np.ones(2), np.zeros(2, np.int64), 0.1, 0.9, 1e-8],
        TypeError,
        r"params has dtype int64",
    ),
    (
        "cache dtype",  # narrower than params (a wider cache is taken: see test_numpy.py)
        lambda: [np.ones(2), np.ones(2), np.zeros(2, np.float32), 0.1, 0.9, 1e-8],
        TypeError,
        r"cache has dtype float32 but params has dtype float64",
    ),
    (
        "params is cache",
        lambda: same_object(arrays(), 0, 2),
        ValueError,
        r"params and cache share memory",
    ),
    (
        "grads is params",
        lambda: same_object(arrays(), 0, 1),
        ValueError,
        r"grads and params share memory",
    ),
    (
        "grads is cache",
        lambda: same_object(arrays(), 2, 1),
        ValueError,
        r"grads and cache share memory",
    ),
    ("overlapping views", overlapping_views, ValueError, r"params and cache share memory"),
    (
        "list params is cache",
        lambda: same_object(lists(), 0, 2),
        ValueError,
        r"cache is the same list object as params",
    ),
    (
        "list grads is params",
        lambda: same_object(lists(), 0, 1),
        ValueError,
        r"grads is the same list object as params",
    ),
    (
        "shared rows",
        lambda: [[[1.0]] * 2, [[0.1], [0.2]], [[0.0], [0.0]], 0.1, 0.9, 1e-8],
        ValueError,
        r"params\[1\] is the same list object as params\[0\]",
    ),
    (
        "jax is immutable",
        lambda: [jnp().ones(2), jnp().ones(2), jnp().zeros(2), 0.1, 0.9, 1e-8],
        TypeError,
        r"params is a jax .*immutable; use rmsprop.step\(\)",
    ),
    (
        "torch integer params",
        lambda: [
            torch().ones(2, dtype=torch().int64),
            torch().ones(2),
            torch().zeros(2, dtype=torch().int64),
            0.1,
            0.9,
            1e-8,
        ],
        TypeError,
        r"params has dtype torch.int64",
    ),
    (
        "torch cache dtype",
        lambda: tensors(dtype_v="float32"),
        TypeError,
        r"cache has dtype torch.float32 but params",
    ),
    (
        "torch params is cache",
        lambda: same_object(tensors(), 0, 2),
        ValueError,
        r"params and cache share memory",
    ),
    (
        "torch overlapping views",
        lambda: torch_views(lambda b: [b[:-1], torch().ones(4), b[1:]], torch().arange(5.0)),
        ValueError,
        r"params and cache share memory",
    ),
    (
        "torch grads view of params",
        lambda: torch_views(lambda b: [b[0], b[0].view(3), torch().zeros(3)], torch().ones(2, 3)),
        ValueError,
        r"grads and params share memory",
    ),
]


def snapshot(args):
    """Deep copies of params, grads and cache (aliasing between them is kept)."""
    return copy.deepcopy(args[:3])


def assert_unchanged(args, before):
    for now, then in zip(args[:3], before, strict=True):
        if isinstance(now, np.ndarray):
            assert now.dtype == then.dtype
            np.testing.assert_array_equal(now, then)
        elif type(now).__module__.startswith("torch"):
            assert now.dtype == then.dtype
            if now.device.type != "meta":  # meta tensors hold no values
                assert now.tolist() == then.tolist()
        elif isinstance(now, list | tuple | float | int | str | dict):
            assert now == then
        else:  # jax arrays
            np.testing.assert_array_equal(np.asarray(now), np.asarray(then))


def ids(cases):
    return [pytest.param(*case[1:], id=case[0]) for case in cases]


@pytest.mark.parametrize(("make", "error", "match"), ids(BOTH))
@pytest.mark.parametrize("function", [rmsprop.step, rmsprop.step_], ids=["step", "step_"])
def test_bad_input(function, make, error, match):
    args = make()
    before = snapshot(args)
    with pytest.raises(error, match=match):
        function(*args)
    assert_unchanged(args, before)


@pytest.mark.parametrize(("make", "error", "match"), ids(IN_PLACE_ONLY))
def test_bad_input_in_place(make, error, match):
    args = make()
    before = snapshot(args)
    with pytest.raises(error, match=match):
        rmsprop.step_(*args)
    assert_unchanged(args, before)


FINE_FOR_STEP = {
    "read-only params",
    "read-only cache",
    "cache dtype",
    "params is cache",
    "grads is params",
    "grads is cache",
    "overlapping views",
    "list params is cache",
    "tuple params",
}


@pytest.mark.parametrize(
    ("make", "error", "match"), ids([case for case in IN_PLACE_ONLY if case[0] in FINE_FOR_STEP])
)
def test_what_only_in_place_rejects_is_fine_for_step(make, error, match):
    args = make()
    before = snapshot(args)
    rmsprop.step(*args)
    assert_unchanged(args, before)


@pytest.mark.parametrize("depth", [65, 500, 5000])
def test_lists_nested_deeper_than_numpy_allows_are_a_value_error(depth):
    """Not a RecursionError: the nesting is checked while it is walked."""

    def nested():
        deep = 1.0
        for _ in range(depth):
            deep = [deep]
        return deep

    with pytest.raises(ValueError, match="params is nested deeper than 64 levels"):
        rmsprop.step(nested(), nested(), nested(), 0.1, 0.9)
    with pytest.raises(ValueError, match="params is nested deeper than 64 levels"):
        rmsprop.step_(nested(), nested(), nested(), 0.1, 0.9)
