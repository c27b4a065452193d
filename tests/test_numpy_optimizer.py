"""rmsprop.RMSProp: the stateful optimizer over NumPy arrays."""

import copy
import pickle

import numpy as np
import pytest

import rmsprop

from memory import extra_bytes
from oracle import assert_identical

pytestmark = pytest.mark.usefixtures("backend")  # the NumPy path and the fused kernels


def make(shapes=((3, 4), (5,), ()), dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape).astype(dtype) for shape in shapes]


def gradients(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=p.shape).astype(p.dtype) for p in params] for _ in range(steps)]


def test_defaults_reproduce_step_exactly():
    params = make()
    expected = [p.copy() for p in params]
    caches = [np.zeros_like(p) for p in params]
    optimizer = rmsprop.RMSProp(params, lr=0.01, beta=0.9)
    for grads in gradients(params, 20):
        optimizer.step(grads)
        for i, g in enumerate(grads):
            expected[i], caches[i] = rmsprop.step(expected[i], g, caches[i], 0.01, 0.9)
    for p, e in zip(params, expected, strict=True):
        assert_identical(p, e)
    assert optimizer.steps == 20


@pytest.mark.parametrize("preset", [None, "pytorch", "tensorflow", "keras", "optax", "timm"])
def test_state_dict_resumes_bit_exactly(preset):
    options = {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.01}
    params = make()
    grads = gradients(params, 20)
    optimizer = rmsprop.RMSProp(params, preset=preset, **options)
    for g in grads[:10]:
        optimizer.step(g)
    snapshot = copy.deepcopy(optimizer.state_dict())
    saved_params = [p.copy() for p in params]
    for g in grads[10:]:
        optimizer.step(g)
    final = [p.copy() for p in params]

    resumed_params = [p.copy() for p in saved_params]
    resumed = rmsprop.RMSProp(resumed_params, lr=1.0)  # options come from the snapshot
    resumed.load_state_dict(snapshot)
    assert resumed.hyperparameters == optimizer.hyperparameters
    assert resumed.steps == 10
    for g in grads[10:]:
        resumed.step(g)
    for a, b in zip(resumed_params, final, strict=True):
        assert_identical(a, b)


def test_state_dict_is_plain_numpy_and_a_snapshot():
    params = make()
    optimizer = rmsprop.RMSProp(params, lr=0.1, momentum=0.5)
    state_dict = optimizer.state_dict()
    assert set(state_dict) == {"steps", "hyperparameters", "state"}
    assert set(state_dict["state"][0]) == {"cache", "momentum_buffer"}
    assert all(type(v) is np.ndarray for s in state_dict["state"] for v in s.values())
    optimizer.step(gradients(params, 1)[0])
    assert not state_dict["state"][0]["cache"].any()  # taken before the step, not changed by it


@pytest.mark.parametrize("make_copy", [copy.deepcopy, lambda o: pickle.loads(pickle.dumps(o))])
def test_a_copy_steps_its_own_arrays(make_copy):
    """A deep copy or an unpickled optimizer has its own parameters and state, and its
    steps touch nothing of the original's (kept launches hold memory addresses: they
    are not copied)."""
    params = make(shapes=((300, 300), (7,)))
    grads = gradients(params, 3)
    optimizer = rmsprop.RMSProp(params, lr=0.01, momentum=0.9)
    for g in grads[:2]:
        optimizer.step(g)
    twin = make_copy(optimizer)
    before = copy.deepcopy((optimizer.params, optimizer.state_dict()))
    twin.step(grads[2])
    assert all(not np.shares_memory(a, b) for a, b in zip(twin.params, params, strict=True))
    for a, b in zip(optimizer.params, before[0], strict=True):
        assert_identical(a, b)
    for now, then in zip(optimizer.state_dict()["state"], before[1]["state"], strict=True):
        assert all(np.array_equal(now[k], then[k]) for k in then)
    optimizer.step(grads[2])
    for a, b in zip(twin.params, optimizer.params, strict=True):
        assert_identical(a, b)


def test_load_state_dict_checks_everything_first():
    params = make()
    optimizer = rmsprop.RMSProp(params, lr=0.1)
    good = optimizer.state_dict()
    before = copy.deepcopy(good)
    wrong_shape = copy.deepcopy(good)
    wrong_shape["state"][2]["cache"] = np.zeros(7)
    with pytest.raises(ValueError, match=r"state_dict\['state'\]\[2\]\['cache'\] has shape \(7,\)"):
        optimizer.load_state_dict(wrong_shape)
    with pytest.raises(ValueError, match=r"holds state for 1 parameters, this optimizer has 3"):
        optimizer.load_state_dict({**good, "state": good["state"][:1]})
    with pytest.raises(ValueError, match=r"lacks \['steps'\]"):
        optimizer.load_state_dict({k: v for k, v in good.items() if k != "steps"})
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        optimizer.load_state_dict(
            {**good, "hyperparameters": {**good["hyperparameters"], "beta": 2}}
        )
    with pytest.raises(ValueError, match=r"must hold 'cache'"):
        optimizer.load_state_dict({**good, "state": [{"rho": np.zeros(1)}] * 3})
    after = optimizer.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"]
    for a, b in zip(after["state"], before["state"], strict=True):
        assert_identical(a["cache"], b["cache"])


def test_zero_state_starts_over():
    params = make()
    optimizer = rmsprop.RMSProp(params, preset="tensorflow", lr=0.1, momentum=0.9)
    optimizer.step(gradients(params, 1)[0])
    optimizer.zero_state()
    state = optimizer.state_dict()
    assert state["steps"] == 0
    assert all((s["cache"] == 1.0).all() and not s["momentum_buffer"].any() for s in state["state"])


def test_none_gradients_skip_parameters():
    params = make()
    frozen = params[1].copy()
    optimizer = rmsprop.RMSProp(params, lr=0.1)
    optimizer.step([np.ones((3, 4)), None, np.ones(())])
    assert_identical(params[1], frozen)
    assert not optimizer.state_dict()["state"][1]["cache"].any()


def test_gradients_may_be_nested_lists():
    params = [np.zeros(2)]
    rmsprop.RMSProp(params, lr=0.1, beta=0.0, eps=0.0).step([[1.0, -2.0]])
    assert params[0].tolist() == [-0.1, 0.1]


def test_turning_momentum_on_later_creates_the_buffer():
    params = make()
    optimizer = rmsprop.RMSProp(params, lr=0.1)
    optimizer.step(gradients(params, 1)[0])
    assert "momentum_buffer" not in optimizer.state_dict()["state"][0]
    optimizer.hyperparameters = optimizer.hyperparameters.replace(momentum=0.9, centered=True)
    optimizer.step(gradients(params, 1)[0])
    assert {"momentum_buffer", "grad_avg"} <= set(optimizer.state_dict()["state"][0])
    with pytest.raises(TypeError, match=r"must be rmsprop\.Hyperparameters"):
        optimizer.hyperparameters = {"lr": 0.1}


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_narrow_params_are_rounded_once_from_float64(dtype):
    params = make(dtype=dtype)
    wide = [p.astype(np.float64) for p in params]
    narrow_opt = rmsprop.RMSProp(params, lr=0.01)
    for grads in gradients(params, 1):
        narrow_opt.step(grads)
        rmsprop.RMSProp(wide, lr=0.01).step([g.astype(np.float64) for g in grads])
    for p, w in zip(params, wide, strict=True):
        assert p.dtype == dtype
        assert_identical(p, w.astype(dtype))


def test_float32_state_for_float16_params():
    params = make(dtype=np.float16)
    optimizer = rmsprop.RMSProp(params, lr=0.01, momentum=0.9, state_dtype=np.float32)
    optimizer.step(gradients(params, 1)[0])
    assert all(v.dtype == np.float32 for s in optimizer.state_dict()["state"] for v in s.values())
    with pytest.raises(TypeError, match="state_dtype must be a floating dtype, got int32"):
        rmsprop.RMSProp(params, lr=0.01, state_dtype=np.int32)


BAD = [
    (
        lambda: rmsprop.RMSProp([[1.0, 2.0]], lr=0.1),
        TypeError,
        r"params\[0\] is \[1.0, 2.0\] \(list\)",
    ),
    (lambda: rmsprop.RMSProp([np.arange(3)], lr=0.1), TypeError, r"params\[0\] has dtype int64"),
    (lambda: rmsprop.RMSProp([np.ones(3, np.complex64)], lr=0.1), TypeError, r"dtype complex64"),
    (
        lambda: rmsprop.RMSProp([np.ones(3)[::-1].copy(), np.zeros(2)[:0]], lr=0.1, beta=3),
        ValueError,
        r"beta must be in \[0, 1\]",
    ),
    (lambda: rmsprop.RMSProp([np.ones(3)], preset="pytorch", alpha=0.9), TypeError, "alpha"),
    (lambda: rmsprop.RMSProp([np.ones(3)]), TypeError, r"lr is required"),
]


@pytest.mark.parametrize(("make_optimizer", "error", "match"), BAD)
def test_bad_construction(make_optimizer, error, match):
    with pytest.raises(error, match=match):
        make_optimizer()


def test_params_that_share_memory_or_are_read_only():
    base = np.zeros(10)
    with pytest.raises(ValueError, match=r"params\[1\] and params\[0\] share memory"):
        rmsprop.RMSProp([base[:6], base[5:]], lr=0.1)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[0\] is a read-only array"):
        rmsprop.RMSProp([frozen], lr=0.1)


def test_bad_gradients_change_nothing():
    params = make()
    optimizer = rmsprop.RMSProp(params, lr=0.1)
    before = [p.copy() for p in params]
    good = gradients(params, 1)[0]
    cases = [
        (good[:2], ValueError, r"expected 3 gradients, got 2"),
        (
            [good[0], np.ones(4), good[2]],
            ValueError,
            r"grads\[1\] has shape \(4,\) but params\[1\]",
        ),
        ([good[0], good[1], "x"], TypeError, r"grads\[2\] is 'x' \(str\)"),
        ([good[0], good[1].astype(complex), good[2]], TypeError, r"grads\[1\] has complex dtype"),
        ([params[0], good[1], good[2]], ValueError, r"grads\[0\] shares memory with params\[0\]"),
    ]
    for grads, error, match in cases:
        with pytest.raises(error, match=match):
            optimizer.step(grads)
        for p, b in zip(params, before, strict=True):
            assert_identical(p, b)
        assert optimizer.steps == 0


def test_float32_arithmetic_is_close_and_opt_in():
    """float32 data computed in float32: a few float32 ulp from the float64 evaluation."""
    params = make(dtype=np.float32)
    grads = gradients(params, 20)
    runs = {}
    for fast in (False, True):
        ps = [p.copy() for p in params]
        optimizer = rmsprop.RMSProp(
            ps, lr=0.01, momentum=0.9, centered=True, float32_arithmetic=fast
        )
        for g in grads:
            optimizer.step(g)
        runs[fast] = ps
    for accurate, fast in zip(runs[False], runs[True], strict=True):
        assert fast.dtype == np.float32
        assert np.max(np.abs(fast - accurate)) <= 1e-6 * np.max(np.abs(accurate))
    assert any(not np.array_equal(a, f) for a, f in zip(runs[False], runs[True], strict=True))
    with pytest.raises(TypeError, match="float32_arithmetic must be True or False"):
        rmsprop.RMSProp(params, lr=0.1, float32_arithmetic="yes")


def test_float32_arithmetic_leaves_float64_data_alone():
    params = make(dtype=np.float64)
    expected = [p.copy() for p in params]
    grads = gradients(params, 3)
    for ps, fast in ((params, True), (expected, False)):
        optimizer = rmsprop.RMSProp(ps, lr=0.01, float32_arithmetic=fast)
        for g in grads:
            optimizer.step(g)
    for p, e in zip(params, expected, strict=True):
        assert_identical(p, e)


OPTIMIZER_MEMORY = """
import sys
import numpy as np
import rmsprop

n = 4_000_000
if sys.argv[1] == "float16":
    p, g = np.ones(n, np.float16), np.full(n, 0.5, np.float16)
else:  # a transposed float32 matrix: dense, not C-contiguous
    p, g = np.ones((2000, 2000), np.float32).T, np.full((2000, 2000), 0.5, np.float32).T
opt = rmsprop.RMSProp([p], lr=0.1, momentum=0.9, centered=True)
measure(lambda: opt.step([g]))
"""


@pytest.mark.parametrize("case", ["float16", "transposed float32"])
def test_a_step_that_must_widen_or_copy_does_it_slice_by_slice(case):
    """Before: float64 copies of the whole parameter and state, 80+ bytes per element."""
    extra = extra_bytes(OPTIMIZER_MEMORY, case)
    assert extra < 16 * 2**20, f"{extra / 2**20:.1f} MiB"


def test_state_is_views_of_one_aligned_array_per_dtype():
    """The buffers created together are views of one array per dtype, each on a 64-byte
    boundary, in C order; turning options on later adds buffers of the same kind, and a
    loaded snapshot is copied into such an array."""
    from rmsprop._flat import ALIGNMENT  # noqa: PLC0415

    params = make(shapes=((3, 4), (5,), (), (7, 2)), dtype=np.float32)
    params.append(np.asfortranarray(np.ones((3, 5))))
    optimizer = rmsprop.RMSProp(params, lr=0.01, momentum=0.9)

    def bases(key):
        return {id(buffers[key].base) for buffers in optimizer._state}

    def aligned(key):
        return all(buffers[key].ctypes.data % ALIGNMENT == 0 for buffers in optimizer._state)

    by_dtype = {}
    for p, buffers in zip(params, optimizer._state, strict=True):
        by_dtype.setdefault(p.dtype, set()).add(id(buffers["cache"].base))
        assert buffers["cache"].flags.c_contiguous and buffers["cache"].shape == p.shape
    assert all(len(ids) == 1 for ids in by_dtype.values()) and len(by_dtype) == 2
    assert aligned("cache") and aligned("momentum_buffer")
    optimizer.hyperparameters = optimizer.hyperparameters.replace(centered=True)
    optimizer.step(gradients(params, 1)[0])
    assert len(bases("grad_avg")) == 2 and aligned("grad_avg")
    saved = optimizer.state_dict()
    optimizer.load_state_dict(saved)
    assert len(bases("cache")) == 2 and aligned("cache")
    for buffers, kept in zip(optimizer._state, saved["state"], strict=True):
        for key, value in kept.items():
            assert np.array_equal(buffers[key], value) and buffers[key] is not value


def _kept_launch_run(change, enabled):
    """Five steps of an optimizer whose launches are kept from step 2, with ``change``
    applied to the gradients of step 3; the parameters and the step count after."""
    from rmsprop import _accel  # noqa: PLC0415

    previous = _accel.set_enabled(enabled)
    try:
        params = make(shapes=((30, 40), (50,), (3, 4, 5)), dtype=np.float32)
        optimizer = rmsprop.RMSProp(params, lr=0.01, momentum=0.5, bias_correction=True)
        steps = gradients(params, 5, seed=4)
        for k, grads in enumerate(steps):
            optimizer.step(change(params, grads) if k == 3 else grads)
            if k == 1 and enabled:
                assert optimizer._kept is not None, "the launches are kept"
        return params, optimizer
    finally:
        _accel.set_enabled(previous)


def _other_layout(params, grads):
    return [np.asfortranarray(grads[0]), *grads[1:]]


def _none_gradient(params, grads):
    return [grads[0], None, grads[2]]


def _float64_gradient(params, grads):
    return [grads[0].astype(np.float64), *grads[1:]]


def _int32_gradient(params, grads):  # the same strides as float32
    return [(grads[0] * 10).astype(np.int32), *grads[1:]]


def _nested_list(params, grads):
    return [grads[0], grads[1].tolist(), grads[2]]


def _view_of_a_larger_array(params, grads):
    wide = np.zeros((30, 80), np.float32)
    wide[:, ::2] = grads[0]
    return [wide[:, ::2], *grads[1:]]


def _read_only_gradient(params, grads):  # its address is not read from a writable buffer
    frozen = grads[1].copy()
    frozen.flags.writeable = False
    return [grads[0], frozen, grads[2]]


@pytest.mark.parametrize(
    "change",
    [lambda params, grads: grads, _other_layout, _none_gradient, _float64_gradient,
     _int32_gradient, _nested_list, _view_of_a_larger_array, _read_only_gradient],
    ids=["same kind", "other layout", "None", "float64", "int32", "nested list", "strided view",
         "read-only"],
)  # fmt: skip
def test_kept_launches_give_the_numpy_paths_numbers_whatever_the_gradients_become(change):
    ours, optimizer = _kept_launch_run(change, True)
    theirs, _ = _kept_launch_run(change, False)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)
    assert optimizer.steps == 5


def test_kept_launches_still_refuse_a_gradient_that_overlaps_its_parameter():
    params = make(shapes=((300,),), dtype=np.float32)
    optimizer = rmsprop.RMSProp(params, lr=0.01)
    for grads in gradients(params, 2):
        optimizer.step(grads)
    before = params[0].copy()
    with pytest.raises(ValueError, match="shares memory"):
        optimizer.step([params[0]])
    assert np.array_equal(params[0], before) and optimizer.steps == 2


@pytest.mark.skipif(
    not rmsprop._optimizer._MOVABLE_DATA, reason="this NumPy never gives an array other memory"
)
def test_a_parameter_given_other_memory_through_data_is_written_where_it_now_is(backend):
    """NumPy 1.x: ``p.data = ...`` frees a parameter's memory and gives it other; the
    launches kept from earlier steps hold its old address, and must not write there."""
    import warnings  # noqa: PLC0415

    ours, theirs = make(dtype=np.float32), make(dtype=np.float32)
    optimizers = [rmsprop.RMSProp(ours, lr=0.01), rmsprop.RMSProp(theirs, lr=0.01)]
    for k, grads in enumerate(gradients(ours, 5)):
        if k == 3:
            for params in (ours, theirs):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    params[0].data = (params[0] + 1.0).data
        optimizers[0].step(grads)
        optimizers[1].step([g.tolist() for g in grads])  # never kept: converted each step
        if k == 2 and backend == "kernels":
            assert optimizers[0]._kept is not None and optimizers[0]._launches
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)


def test_kept_launches_follow_changed_options():
    ours, theirs = make(dtype=np.float32), make(dtype=np.float32)
    optimizers = [rmsprop.RMSProp(ours, lr=0.01), rmsprop.RMSProp(theirs, lr=0.01)]
    for k, grads in enumerate(gradients(ours, 5)):
        if k == 3:
            for optimizer in optimizers:
                optimizer.hyperparameters = optimizer.hyperparameters.replace(momentum=0.9, lr=0.02)
        optimizers[0].step(grads)
        optimizers[1].step([g.tolist() for g in grads])  # never kept: converted each step
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)
