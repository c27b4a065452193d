"""Random shapes, dtypes, layouts and mismatched state: nothing crashes, and nothing is
modified by a call that raises. Where a call succeeds, it computed what rmsprop.step does."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rmsprop

pytestmark = pytest.mark.usefixtures("backend")  # the NumPy path and the fused kernels

FLOATS = [np.float16, np.float32, np.float64]


@st.composite
def arrays(draw, shape=None, dtypes=(*FLOATS, np.int64)):
    """An array of a drawn (or given) shape and dtype, contiguous or not."""
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 9), max_size=3)))
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(["C", "F", "strided", "transposed"]))
    values = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(values)
    if layout == "strided":
        base = np.asarray(rng.standard_normal(tuple(2 * n for n in shape))).astype(dtype)
        return base[(*(slice(None, None, 2) for _ in shape), ...)]
    array = np.asarray(rng.standard_normal(shape[::-1] if layout == "transposed" else shape))
    array = array.astype(dtype)
    if layout == "transposed":
        return array.T
    return np.array(array, order="F") if layout == "F" else array  # 0-d stays 0-d


@st.composite
def step_inputs(draw):
    p = draw(arrays())
    same_shape = draw(st.booleans())
    g = draw(arrays(shape=p.shape if same_shape else None))
    v = draw(arrays(shape=p.shape if draw(st.booleans()) else None))
    v = np.abs(v) if v.dtype.kind == "f" else v
    return p, g, v


def copies(*xs):
    return [x.copy() for x in xs]


def assert_same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@settings(max_examples=200)
@given(step_inputs(), st.sampled_from([0.0, 1e-3, 1.0]), st.sampled_from([0.0, 0.9, 1.0]))
def test_step_in_place_either_computes_step_or_changes_nothing(inputs, lr, beta):
    p, g, v = inputs
    before = copies(p, g, v)
    try:
        rmsprop.step_(p, g, v, lr, beta)
    except (TypeError, ValueError):
        for x, y in zip((p, g, v), before, strict=True):
            assert_same(x, y)
        return
    expected_p, expected_v = rmsprop.step(*before, lr, beta)
    assert_same(p, np.asarray(expected_p).astype(p.dtype))
    assert_same(v, np.asarray(expected_v).astype(v.dtype))
    assert_same(g, before[1])


@settings(max_examples=100)
@given(st.data())
def test_numpy_optimizer_steps_or_changes_nothing(data):
    params = data.draw(st.lists(arrays(dtypes=FLOATS), min_size=1, max_size=3))
    options = data.draw(st.sampled_from([{}, {"momentum": 0.9, "centered": True}]))
    state_dtype = data.draw(st.sampled_from([None, np.float32]))
    opt = rmsprop.RMSProp(params, lr=0.01, state_dtype=state_dtype, **options)
    grads = [data.draw(arrays(shape=p.shape if data.draw(st.booleans()) else None)) for p in params]
    saved = opt.state_dict()
    before = copies(*params)
    try:
        opt.step(grads)
    except (TypeError, ValueError):
        for p, b in zip(params, before, strict=True):
            assert_same(p, b)
        now = opt.state_dict()
        assert now["steps"] == saved["steps"]
        for x, y in zip(now["state"], saved["state"], strict=True):
            for key in y:
                assert_same(x[key], y[key])
        return
    # A checkpoint of other shapes is refused whole.
    bad = opt.state_dict()
    bad["state"][0]["cache"] = np.zeros(params[0].size + 1)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    assert opt.steps == 1


@settings(max_examples=60)
@given(st.data())
def test_torch_optimizer_steps_or_changes_nothing(data):
    torch = pytest.importorskip("torch")
    import rmsprop.torch  # noqa: PLC0415

    arrays_ = data.draw(st.lists(arrays(dtypes=FLOATS), min_size=1, max_size=3))
    params = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in arrays_]
    for p in params:
        grad = data.draw(arrays(shape=tuple(p.shape), dtypes=FLOATS))
        p.grad = torch.from_numpy(np.asarray(grad)).to(p.dtype)  # torch wants p's dtype
    opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=0.01, momentum=0.5)
    opt.step()
    victim = data.draw(st.integers(0, len(params) - 1))
    key = data.draw(st.sampled_from(["square_avg", "momentum_buffer"]))
    wrong = data.draw(st.lists(st.integers(0, 9), max_size=3).map(tuple))
    if wrong != tuple(params[victim].shape):
        opt.state[params[victim]][key] = torch.zeros(wrong, dtype=params[victim].dtype)
    before = [p.detach().clone() for p in params]
    steps = [float(opt.state[p]["step"]) for p in params]
    try:
        opt.step()
    except RuntimeError:
        assert wrong != tuple(params[victim].shape)
        for p, b in zip(params, before, strict=True):
            assert torch.equal(p, b) or (p.isnan() == b.isnan()).all()
        assert [float(opt.state[p]["step"]) for p in params] == steps
        return
    assert wrong == tuple(params[victim].shape)
