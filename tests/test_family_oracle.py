"""Every option combination of the family against an independent oracle (tests/oracle.py:
the rule written again from the options' definitions, in 200-bit arithmetic, with a
running bound on float64's rounding errors): the NumPy path, the Numba kernel and
torch's foreach path, in float64 (within the bound) and float32 (rounded once: the
exact value rounded to float32, but where the bound straddles a rounding boundary)."""

import itertools

import numpy as np
import pytest

from rmsprop import Hyperparameters, _accel
from rmsprop._dispatch import Rule, update_arrays

from oracle import family_exact

FLAGS = ("maximize", "centered", "eps_in_sqrt", "nesterov", "lr_in_momentum",
         "decoupled_weight_decay", "momentum", "weight_decay", "bias_correction")  # fmt: skip
#: Units of 2**-53 of the running bound that a float64 evaluation may be off by.
ROUNDINGS = 32
N = 24


def combinations():
    for values in itertools.product((False, True), repeat=len(FLAGS)):
        options = dict(zip(FLAGS, values, strict=True))
        if options["nesterov"] and not options["momentum"]:
            continue
        options["momentum"] = 0.9 if options["momentum"] else 0.0
        options["weight_decay"] = 0.1 if options["weight_decay"] else 0.0
        yield options


def inputs(seed):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal(N), rng.standard_normal(N)
    v = np.abs(rng.standard_normal(N)) * 0.1 + 0.01
    b, a = rng.standard_normal(N) * 0.1, rng.standard_normal(N) * 0.01
    return p, g, v, b, a


def expected(hp, correction, p, g, v, b, a):
    """Per output: the exact values and their bounds, as arrays."""
    rows = [
        family_exact(*values, hp.as_dict(), correction)
        for values in zip(p, g, v, b, a, strict=True)
    ]
    return [
        None if rows[0][k] is None
        else (np.array([float(r[k].value) for r in rows]), np.array([float(r[k].size) for r in rows]))
        for k in range(4)
    ]  # fmt: skip


def check(outputs, exact, dtype):
    for name, got, want in zip(
        ("param", "cache", "momentum", "grad_avg"), outputs, exact, strict=True
    ):
        if want is None:
            continue
        value, size = want
        bound = ROUNDINGS * 2.0**-53 * size
        if dtype == np.float64:
            assert np.all(np.abs(got - value) <= bound), name
            continue
        # Rounded once to float32: the exact value rounded to float32, where the float64
        # evaluation's bound decides it; else between the bound's ends, rounded.
        low, high = (np.float32(x) for x in (value - bound, value + bound))
        decided = low == high
        assert np.all(got[decided] == low[decided]), name
        assert np.all((low <= got) & (got <= high)), name


def covering():
    """Every option on and off at least once, in few combinations: each one a compiled
    kernel (about 2 s each, cold)."""
    every = [*combinations()]
    on = every[-1]  # every flag on
    yield every[0]
    yield on
    for flag in ("centered", "momentum", "eps_in_sqrt", "lr_in_momentum", "decoupled_weight_decay"):
        off = {**on, flag: 0.0 if flag == "momentum" else False}
        if flag == "momentum":
            off["nesterov"] = False
        yield off


def run_and_check(options, seed, dtype):
    hp = Hyperparameters.from_preset("pytorch", **options)
    correction = hp.correction(3)
    start = [x.astype(dtype) for x in inputs(seed)]
    p, g, v, b, a = (x.copy() for x in start)
    state = (v, b if hp.momentum else None, a if hp.centered else None)
    update_arrays(Rule.family(hp, correction), p, g, state)
    check((p, v, b, a), expected(hp, correction, *start), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_the_numpy_path_against_the_oracle_for_every_option_combination(dtype):
    previous = _accel.set_enabled(False)
    try:
        for seed, options in enumerate(combinations()):
            run_and_check(options, seed, dtype)
    finally:
        _accel.set_enabled(previous)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_the_numba_kernel_against_the_oracle(dtype):
    if _accel.load() is None:
        pytest.skip("Numba is not installed")
    chosen = list(covering()) if dtype == np.float64 else list(covering())[:2]
    for seed, options in enumerate(chosen):
        run_and_check(options, seed, dtype)


def test_torchs_foreach_path_against_the_oracle():
    torch = pytest.importorskip("torch")
    from rmsprop.torch._foreach import foreach_update  # noqa: PLC0415

    for seed, options in enumerate(combinations()):
        hp = Hyperparameters.from_preset("pytorch", **options)
        correction = hp.correction(3)
        start = inputs(seed)
        p, g, v, b, a = (torch.from_numpy(x.copy()) for x in start)
        foreach_update(
            [(p, g, [v, b if hp.momentum else None, a if hp.centered else None])],
            hp,
            torch.float64,
            correction,
        )
        check(tuple(t.numpy() for t in (p, v, b, a)), expected(hp, correction, *start), np.float64)
