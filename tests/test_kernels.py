"""The fused Numba kernels against the rule, across options, sizes, threads and layers."""

import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rmsprop
from rmsprop import Hyperparameters, _accel
from rmsprop._dispatch import kernel_kinds, laid_out_alike
from rmsprop._options import SEED_RULE, Scalars
from rmsprop._rule import State, family_update

from oracle import assert_identical, reference

kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

# Each option on its own, and mixes of them (every combination would compile 192 kernels).
OPTION_SETS = [
    {},
    {"maximize": True},
    {"eps_in_sqrt": False},
    {"centered": True},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.9, "lr_in_momentum": False},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "decoupled_weight_decay": True},
    {"momentum": 0.5, "nesterov": True, "centered": True, "weight_decay": 0.01, "maximize": True},
    {"momentum": 0.9, "lr_in_momentum": False, "centered": True, "eps_in_sqrt": False,
     "weight_decay": 0.01, "decoupled_weight_decay": True},
    {"bias_correction": True},
    {"bias_correction": True, "centered": True, "momentum": 0.9, "eps_in_sqrt": False},
]  # fmt: skip
#: The bias correction the tests pass (1 - 0.9**3, that of step 3 at beta 0.9).
CORRECTION = 1.0 - 0.9**3
SIZES = [0, 1, 7, 4097, kernels.PARALLEL_MIN - 1, kernels.PARALLEL_MIN + 3]
#: The option sets whose parallel build the sweeps run too (the others: serial sizes).
#: A parallel build is its serial twin's loop body under prange; each build costs a
#: compile of about 2 s, so the sweeps run every option set's serial build and these.
PARALLEL_SETS = [0, 9, 10, 12]


def sizes_for(index):
    """The sizes the sweeps step for OPTION_SETS[index]."""
    return SIZES if index in PARALLEL_SETS else [n for n in SIZES if n < kernels.PARALLEL_MIN]


def data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    p, g, b, a = rng.normal(size=(4, n))
    v = rng.random(n)
    return [x.astype(dtype) for x in (p, g, v, b, a)]


def family(hp, p, g, v, b, a, correction=1.0, float32_arithmetic=False):
    """The kernel's step with ``hp``'s options, in place (buffers the options use only)."""
    kernels.update(
        hp.switches, Scalars.of(hp, correction), p, g, v, b if hp.momentum else None,
        a if hp.centered else None, float32_arithmetic=float32_arithmetic,
    )  # fmt: skip


def seed_rule(p, g, v, lr, beta, eps=1e-8, out=(None, None)):
    kernels.update(
        SEED_RULE, Scalars(lr, beta, eps), p, g, v, new_param=out[0], new_square_avg=out[1]
    )


def numpy_family(hp, p, g, v, b, a, correction=CORRECTION):
    """The rule on float64 NumPy arrays, rounded once to the inputs' dtype."""
    wide = [x.astype(np.float64) for x in (p, g, v, b, a)]
    with np.errstate(all="ignore"):
        new_p, new = family_update(
            wide[0], wide[1], State(*wide[2:]), hp, np.sqrt, lambda x: np.maximum(x, 0.0),
            correction,
        )  # fmt: skip
    return [x.astype(p.dtype) for x in (new_p, *new)]


@pytest.mark.slow  # a kernel compile per option set and dtype (about 2 s each, cold)
@pytest.mark.parametrize(
    "index", range(len(OPTION_SETS)), ids=lambda i: "-".join(OPTION_SETS[i]) or "seed"
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_family_kernel_is_the_rule(index, dtype):
    hp = Hyperparameters(lr=0.01, **OPTION_SETS[index])
    for n in sizes_for(index):
        p, g, v, b, a = data(n, dtype)
        expected = numpy_family(hp, p, g, v, b, a)
        family(hp, p, g, v, b, a, correction=CORRECTION)
        assert_identical(p, expected[0])
        assert_identical(v, expected[1])
        if hp.momentum:
            assert_identical(b, expected[2])
        if hp.centered:
            assert_identical(a, expected[3])


@settings(max_examples=60)
@given(
    st.sampled_from(OPTION_SETS),
    st.sampled_from([np.float32, np.float64]),
    hnp.arrays(np.float64, st.integers(0, 50), elements=st.floats(-1e6, 1e6)),
    st.floats(1e-6, 1.0),
    st.floats(0.0, 1.0),
)
def test_family_kernel_is_the_rule_on_generated_values(options, dtype, values, lr, beta):
    assume(beta < 1.0 or not options.get("bias_correction"))  # refused: 1 - beta**t = 0
    hp = Hyperparameters(lr=lr, beta=beta, **options)
    p, g, b, a = (np.roll(values, k).astype(dtype) for k in range(4))
    v = np.abs(np.roll(values, 4)).astype(dtype)
    expected = numpy_family(hp, p, g, v, b, a)
    family(hp, p, g, v, b, a, correction=CORRECTION)
    assert_identical(p, expected[0])
    assert_identical(v, expected[1])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_seed_rule_in_place_and_into_new_arrays(dtype):
    for n in SIZES:
        p, g, v, _, _ = data(n, dtype, seed=n)
        expected = [x.astype(dtype) for x in reference(p, g, v, 0.01, 0.9)]
        out_p, out_v = np.empty_like(p), np.empty_like(v)
        seed_rule(p, g, v, 0.01, 0.9, out=(out_p, out_v))
        assert_identical(out_p, expected[0])
        assert_identical(out_v, expected[1])
        seed_rule(p, g, v, 0.01, 0.9)
        assert_identical(p, expected[0])
        assert_identical(v, expected[1])


def test_mixed_dtypes_of_grads_and_state():
    p, g, v, _, _ = data(100, np.float32)
    expected = [x.astype(np.float32) for x in reference(p, g.astype(np.float64), v, 0.01, 0.9)]
    seed_rule(p, g.astype(np.float64), v, 0.01, 0.9)
    assert_identical(p, expected[0])
    p, g, v, _, _ = data(100, np.float16)
    wide_v = v.astype(np.float64)
    expected = reference(p, g, wide_v, 0.01, 0.9)
    seed_rule(p, g, wide_v, 0.01, 0.9)
    assert_identical(p, expected[0].astype(np.float16))  # rounded once, as NumPy rounds
    assert_identical(wide_v, expected[1])


def test_what_the_kernel_runs_over():
    """Dense arrays laid out alike, whatever the order of their dimensions; not views with
    gaps, nor arrays laid out differently, nor dtypes it does not store."""
    a = np.zeros((3, 4, 5))
    assert laid_out_alike([a, a.copy(), np.zeros((3, 4, 5), np.float32)])
    assert laid_out_alike([a.T, np.zeros((5, 4, 3), order="F")])
    perm = a.transpose(1, 2, 0)  # neither C nor F
    assert laid_out_alike([perm, np.zeros((3, 4, 5), np.float16).transpose(1, 2, 0)])
    assert not laid_out_alike([perm, np.zeros((4, 5, 3))])
    assert not laid_out_alike([a[:, ::2], a[:, ::2]])  # gaps
    assert laid_out_alike([np.zeros(()), np.zeros(())])
    assert kernel_kinds(a, a, [a]) == ("float64", "float64", "float64")
    assert kernel_kinds(a, a.astype(int), [a]) is None
    assert kernel_kinds(a.astype(np.float16), a, [a.astype(np.float32)]) == (
        "float16",
        "float64",
        "float32",
    )
    assert kernel_kinds(a, a, [a, a.astype(np.float32)]) is None  # state of two dtypes


def test_where_step_in_place_runs_the_kernel(monkeypatch):
    calls = []
    update = kernels.update
    monkeypatch.setattr(
        kernels, "update", lambda *a, **k: calls.append(a[2].shape) or update(*a, **k)
    )
    rmsprop.load_kernels()
    p = np.ones((4, 4))
    rmsprop.step_(p, np.ones((4, 4)), np.zeros((4, 4)), 0.1, 0.9)
    assert calls == [(4, 4)]  # over their memory
    rmsprop.step_(p.T, np.ones((4, 4)).T, np.zeros((4, 4)).T, 0.1, 0.9)
    assert calls == [(4, 4)] * 2  # Fortran order, all alike: the same
    rmsprop.step_(p.T, np.ones((4, 4)), np.zeros((4, 4)), 0.1, 0.9)
    assert len(calls) == 2  # laid out differently: NumPy, in slices
    rmsprop.step_(np.ones(4, np.float16), np.ones(4), np.zeros(4, np.float32), 0.1, 0.9)
    assert len(calls) == 3  # float16 with a float32 cache: the kernel
    rmsprop.step_(p, np.ones((4, 4), int), np.zeros((4, 4)), 0.1, 0.9)
    assert len(calls) == 4  # integer gradients: converted, then the kernel


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "permuted", "strided", "mixed"])
def test_step_and_step_in_place_equal_the_numpy_path_in_every_layout(dtype, layout):
    rng = np.random.default_rng(1)

    def arrays(shape=(30, 40, 50)):
        p, g = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
        v = rng.random(shape).astype(dtype)
        if layout == "F":
            return [np.asfortranarray(x) for x in (p, g, v)]
        if layout == "permuted":
            return [x.transpose(2, 0, 1) for x in (p, g, v)]
        if layout == "strided":
            return [x[:, ::3] for x in (p, g, v)]
        if layout == "mixed":
            return [p, np.asfortranarray(g), v]
        return [p, g, v]

    inputs = arrays()
    results = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            rmsprop.load_kernels()
            new = rmsprop.step(*inputs, 0.01, 0.9)
            p, g, v = (x.copy(order="K") for x in inputs)
            rmsprop.step_(p, g, v, 0.01, 0.9)
            results.append((*new, p, v))
        finally:
            _accel.set_enabled(previous)
    for ours, theirs in zip(*results, strict=True):
        assert_identical(ours, theirs)
    assert results[0][0].strides == np.empty_like(inputs[0]).strides  # laid out as params


def run_in_threads(arrays, n_threads):
    errors = []

    def work(p, g, v):
        try:
            for _ in range(5):
                rmsprop.step_(p, g, v, 0.01, 0.9)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=triple) for triple in arrays[:n_threads]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors


def test_concurrent_calls_from_threads_match_serial_calls():
    n = kernels.PARALLEL_MIN * 4  # parallel kernels
    arrays = [data(n, np.float32, seed=s)[:3] for s in range(4)]
    serial = [[x.copy() for x in triple] for triple in arrays]
    for p, g, v in serial:
        for _ in range(5):
            rmsprop.step_(p, g, v, 0.01, 0.9)
    run_in_threads(arrays, 4)
    for (p, _, v), (sp, _, sv) in zip(arrays, serial, strict=True):
        assert_identical(p, sp)
        assert_identical(v, sv)


THREADED_SCRIPT = """
import threading, numpy as np, rmsprop, numba
from rmsprop import _kernels
rmsprop.load_kernels()
n = _kernels.PARALLEL_MIN * 4
rng = np.random.default_rng(0)
arrays = [[rng.normal(size=n).astype(np.float32) for _ in range(3)] for _ in range(4)]
for a in arrays:
    a[2] = np.abs(a[2])
serial = [[x.copy() for x in a] for a in arrays]
for p, g, v in serial:
    for _ in range(5):
        rmsprop.step_(p, g, v, 0.01, 0.9)
def work(p, g, v):
    for _ in range(5):
        rmsprop.step_(p, g, v, 0.01, 0.9)
threads = [threading.Thread(target=work, args=a) for a in arrays]
[t.start() for t in threads]
[t.join() for t in threads]
assert all(np.array_equal(a[0], s[0]) and np.array_equal(a[2], s[2]) for a, s in zip(arrays, serial))
print(numba.threading_layer())
"""


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_threads_are_safe_with_every_threading_layer(layer):
    """Numba's workqueue layer aborts on concurrent parallel launches: they are serialized."""
    env = {"NUMBA_THREADING_LAYER": layer} if layer != "default" else {}
    result = subprocess.run(
        [sys.executable, "-c", THREADED_SCRIPT],
        capture_output=True, text=True, timeout=300, check=False,
        env={**__import__("os").environ, **env},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    if layer == "workqueue":
        assert result.stdout.strip() == "workqueue"


def test_without_kernels_the_results_are_the_same():
    script = (
        "import numpy as np, rmsprop, sys\n"
        "p = np.linspace(-1, 1, 70000); v = np.zeros_like(p)\n"
        "rmsprop.step_(p, np.cos(p), v, 0.01, 0.9)\n"
        "print(rmsprop.load_kernels(), 'numba' in sys.modules, p.tobytes().hex()[:64], p.sum())\n"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
            check=True, env={**__import__("os").environ, "RMSPROP_KERNELS": setting},
        ).stdout.split()
        for setting in ("0", "1")
    ]  # fmt: skip
    assert outputs[0][:2] == ["False", "False"]
    assert outputs[1][:2] == ["True", "True"]
    assert outputs[0][2:] == outputs[1][2:]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(6), ids=lambda i: "-".join(OPTION_SETS[i]) or "seed")
def test_float32_arithmetic_kernel_stays_close(index):
    hp = Hyperparameters(lr=0.01, **OPTION_SETS[index])
    for n in sizes_for(index)[2::3]:  # 7, and past the parallel threshold for some
        accurate = data(n, np.float32)
        fast = [x.copy() for x in accurate]
        family(hp, *accurate)
        family(hp, *fast, float32_arithmetic=True)
        for a, f in zip(accurate, fast, strict=True):
            assert f.dtype == np.float32
            assert np.max(np.abs(f - a), initial=0) <= 4e-7 * max(np.max(np.abs(a)), 1.0)


@pytest.mark.parametrize("state_dtype", [None, np.float32])
def test_the_optimizer_over_mixed_layouts_dtypes_and_changing_gradients(state_dtype):
    """rmsprop.RMSProp with the kernels equals its NumPy path bit for bit: parameters of
    three dtypes in every layout (C, Fortran, permuted, with gaps), of 0 and 1 element,
    gradients present on some steps only, and options that add buffers midway."""
    rng = np.random.default_rng(4)

    def model():
        r = np.random.default_rng(5)
        dense = r.standard_normal((6, 7, 8))
        return [
            dense.astype(np.float32),
            np.asfortranarray(dense.astype(np.float64)),
            dense.astype(np.float16).transpose(2, 0, 1),
            r.standard_normal((40, 30))[:, ::2].astype(np.float32),  # gaps: NumPy, in slices
            np.zeros(0, np.float32),
            np.ones(1, np.float16),
            np.array(0.5),
            r.standard_normal(3 * kernels.PARALLEL_MIN).astype(np.float32),
        ]

    steps = []
    for step in range(4):
        grads = [
            None if (step + i) % 3 == 0 else rng.standard_normal(p.shape)
            for i, p in enumerate(model())
        ]
        steps.append(
            [g if g is None else g.astype(p.dtype) for g, p in zip(grads, model(), strict=True)]
        )
        if step == 2:  # a gradient laid out unlike its parameter
            steps[-1][0] = None if steps[-1][0] is None else np.asfortranarray(steps[-1][0])
    results = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            params = model()
            opt = rmsprop.RMSProp(params, lr=0.01, centered=True, state_dtype=state_dtype)
            for step, grads in enumerate(steps):
                if step == 2:
                    opt.hyperparameters = opt.hyperparameters.replace(momentum=0.9)
                opt.step(grads)
            results.append((params, opt.state_dict()["state"]))
        finally:
            _accel.set_enabled(previous)
    (ours, our_state), (theirs, their_state) = results
    for a, b in zip(ours, theirs, strict=True):
        assert_identical(a, b)
    for mine, yours in zip(our_state, their_state, strict=True):
        assert mine.keys() == yours.keys()
        for key in mine:
            assert_identical(mine[key], yours[key])
