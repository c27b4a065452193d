"""Hyperparameters, presets and the family rule."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rmsprop
from rmsprop import PRESETS, Hyperparameters
from rmsprop._rule import State, family_update, update

from oracle import assert_identical, reference


def numpy_family(p, g, state, hp, correction=1.0):
    with np.errstate(all="ignore"):
        return family_update(p, g, state, hp, np.sqrt, lambda x: np.maximum(x, 0.0), correction)


def test_defaults_are_the_seed():
    hp = Hyperparameters(lr=0.1)
    assert (hp.beta, hp.eps, hp.eps_in_sqrt, hp.initial_cache) == (0.9, 1e-8, True, 0.0)
    assert (hp.momentum, hp.centered, hp.weight_decay, hp.maximize) == (0.0, False, 0.0, False)


@given(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
    st.floats(0, 10),
    st.floats(0, 1),
    st.one_of(st.just(0.0), st.floats(0, 1)),
)
def test_family_at_its_defaults_is_the_seed_rule_bit_for_bit(values, lr, beta, eps):
    p, g, v = (np.array([x]) for x in values)
    hp = Hyperparameters(lr=lr, beta=beta, eps=eps)
    new_p, new_state = numpy_family(p, g, State(v), hp)
    expected = reference(p, g, v, lr, beta, eps)
    assert_identical(new_p, expected[0])
    assert_identical(new_state.cache, expected[1])
    with np.errstate(all="ignore"):
        assert_identical(update(p, g, v, lr, beta, eps, np.sqrt)[0], new_p)


def one_step(p, g, v, **options):
    """The family applied to scalars, with buffers at 0."""
    hp = Hyperparameters(**options)
    state = State(np.array(v), np.array(0.0), np.array(0.0))
    new_p, new_state = numpy_family(np.array(p), np.array(g), state, hp)
    return float(new_p), new_state


# One test per option with a non-default value, against the formula written out.
def test_eps_outside_the_root():
    new_p, _ = one_step(1.0, 0.5, 0.0, lr=0.1, beta=0.0, eps=0.25, eps_in_sqrt=False)
    assert new_p == pytest.approx(1.0 - 0.1 * 0.5 / (0.5 + 0.25), rel=1e-15)


def test_initial_cache():
    w = np.array([1.0])
    optimizer = rmsprop.RMSProp([w], lr=0.1, beta=0.5, eps=0.0, initial_cache=1.0)
    assert optimizer.state_dict()["state"][0]["cache"].tolist() == [1.0]
    optimizer.step([np.array([1.0])])
    assert w.tolist() == [1.0 - 0.1 * 1.0 / math.sqrt(0.5 * 1.0 + 0.5 * 1.0)]


def test_beta():
    _, state = one_step(1.0, 2.0, 1.0, lr=0.1, beta=0.25)
    assert float(state.cache) == 0.25 * 1.0 + 0.75 * 4.0


@pytest.mark.parametrize("lr_in_momentum", [True, False])
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_nesterov_and_lr_in_momentum(lr_in_momentum, nesterov):
    hp = Hyperparameters(
        lr=0.5, beta=0.0, eps=0.0, momentum=0.5, nesterov=nesterov, lr_in_momentum=lr_in_momentum
    )
    p, g, buf = np.array(1.0), np.array(2.0), np.array(0.25)
    new_p, state = numpy_family(p, g, State(np.array(0.0), buf), hp)
    scaled = 1.0 * (0.5 if lr_in_momentum else 1.0)  # (lr) * g / |g| with beta = 0
    new_buf = 0.5 * 0.25 + scaled
    step = 0.5 * new_buf + scaled if nesterov else new_buf
    assert float(state.momentum_buffer) == new_buf
    assert float(new_p) == 1.0 - (step if lr_in_momentum else 0.5 * step)


def test_centered():
    hp = Hyperparameters(lr=0.1, beta=0.5, eps=0.0, centered=True)
    new_p, state = numpy_family(
        np.array(1.0), np.array(1.0), State(np.array(1.0), None, np.array(0.5)), hp
    )
    # cache = 1, grad_avg = 0.75, variance = 1 - 0.5625
    assert float(state.grad_avg) == 0.75
    assert float(new_p) == 1.0 - 0.1 * 1.0 / math.sqrt(1.0 - 0.5625)


def test_centered_variance_is_clamped_at_zero():
    """Constant gradients give variance 0, and rounding can make it negative: never NaN."""
    w = np.full(1000, 1.0)
    rng = np.random.default_rng(0)
    g = rng.uniform(0.1, 10, 1000)
    optimizer = rmsprop.RMSProp([w], lr=1e-3, beta=0.5, eps=1e-8, centered=True, eps_in_sqrt=False)
    for _ in range(100):
        optimizer.step([g])
        assert not np.isnan(w).any()
    cache, grad_avg = (optimizer.state_dict()["state"][0][k] for k in ("cache", "grad_avg"))
    assert ((cache - grad_avg**2) < 0).any()  # the case the clamp is for did occur


@pytest.mark.parametrize("centered", [False, True])
def test_bias_correction(centered):
    """The mean square (and the centered mean) divided by 1 - beta**t, t counted from 1."""
    hp = Hyperparameters(lr=0.1, beta=0.75, eps=0.0, centered=centered, bias_correction=True)
    assert hp.correction(1) == 0.25 and hp.correction(2) == 1.0 - 0.5625
    assert hp.replace(bias_correction=False).correction(2) == 1.0
    grad_avg = np.array(0.0) if centered else None
    new_p, state = numpy_family(
        np.array(1.0), np.array(2.0), State(np.array(0.0), None, grad_avg), hp, hp.correction(1)
    )
    assert float(state.cache) == 1.0  # 0.25 * 4: the state itself is not corrected
    if centered:  # mean 0.5 / 0.25 = 2 = g: the variance is 4 - 4 = 0
        assert float(state.grad_avg) == 0.5 and float(new_p) == -math.inf
    else:  # the corrected mean square is g**2 = 4
        assert float(new_p) == 1.0 - 0.1 * 2.0 / 2.0


def test_bias_correction_counts_the_optimizers_steps():
    """rmsprop.RMSProp counts steps as optax does: once per step, whatever it updates."""
    w, skipped = np.zeros(3), np.zeros(3)
    optimizer = rmsprop.RMSProp([w, skipped], lr=0.1, beta=0.5, eps=0.0, bias_correction=True)
    optimizer.step([np.ones(3), None])
    optimizer.step([np.ones(3), np.ones(3)])
    assert (w == -0.2).all()  # each step's corrected mean square is exactly 1
    assert (skipped == -0.1 / math.sqrt(0.5 / 0.75)).all()  # step 2: 0.5 / (1 - 0.25)


@pytest.mark.parametrize("decoupled", [False, True])
def test_weight_decay(decoupled):
    new_p, state = one_step(
        2.0, 1.0, 0.0, lr=0.1, beta=0.0, eps=0.0, weight_decay=0.5, decoupled_weight_decay=decoupled
    )
    if decoupled:  # p * (1 - lr * wd), then the plain step with g = 1
        assert new_p == 2.0 * (1 - 0.05) - 0.1
    else:  # g = 1 + 0.5 * 2 = 2
        assert float(state.cache) == 4.0
        assert new_p == 2.0 - 0.1


def test_maximize():
    new_p, _ = one_step(1.0, 0.5, 0.0, lr=0.1, beta=0.0, eps=0.0, maximize=True)
    assert new_p == 1.1


def test_presets_and_overrides():
    assert Hyperparameters.from_preset("pytorch") == Hyperparameters(
        lr=0.01, beta=0.99, eps_in_sqrt=False, lr_in_momentum=False
    )
    assert Hyperparameters.from_preset("tensorflow", lr=1.0).initial_cache == 1.0
    assert Hyperparameters.from_preset("keras").decoupled_weight_decay
    assert Hyperparameters.from_preset("keras").eps == 1e-7
    assert Hyperparameters.from_preset("timm").eps == 1e-10
    assert Hyperparameters.from_preset("optax", lr=0.1) == Hyperparameters(lr=0.1)
    assert Hyperparameters.from_preset("pytorch", beta=0.9, eps_in_sqrt=True).beta == 0.9
    assert set(PRESETS) == {"pytorch", "tensorflow", "keras", "optax", "timm"}
    hp = Hyperparameters(lr=0.1)
    assert hp.replace(momentum=0.9).momentum == 0.9
    assert hp.as_dict()["lr"] == 0.1


BAD_OPTIONS = [
    ({"lr": -1.0}, ValueError, r"lr must be a finite number >= 0, got -1.0"),
    ({"lr": math.nan}, ValueError, r"lr must be a finite number"),
    ({"beta": 1.5}, ValueError, r"beta must be in \[0, 1\], got 1.5"),
    ({"eps": math.inf}, ValueError, r"eps must be a finite number"),
    ({"initial_cache": -1.0}, ValueError, r"initial_cache must be a finite number >= 0"),
    ({"momentum": -0.5}, ValueError, r"momentum must be a finite number >= 0"),
    ({"weight_decay": math.nan}, ValueError, r"weight_decay must be a finite number"),
    ({"momentum": True}, TypeError, r"momentum is True \(bool\); expected a real number"),
    ({"lr": "0.1"}, TypeError, r"lr is '0.1' \(str\)"),
    ({"centered": 1}, TypeError, r"centered must be True or False, got 1 \(int\)"),
    ({"maximize": "yes"}, TypeError, r"maximize must be True or False"),
    ({"nesterov": True}, ValueError, r"nesterov=True needs momentum > 0"),
    ({"bias_correction": True, "beta": 1.0}, ValueError, r"bias_correction=True needs beta < 1"),
    ({"bias_correction": 1}, TypeError, r"bias_correction must be True or False"),
]


@pytest.mark.parametrize(("options", "error", "match"), BAD_OPTIONS)
def test_bad_options(options, error, match):
    with pytest.raises(error, match=match):
        Hyperparameters(**{"lr": 0.1, **options})
    params = np.ones(2)
    with pytest.raises(error, match=match):
        rmsprop.RMSProp([params], **{"lr": 0.1, **options})


def test_unknown_preset_option_and_missing_lr():
    with pytest.raises(ValueError, match=r"preset must be one of \['keras', 'optax'"):
        Hyperparameters.from_preset("caffe", lr=0.1)
    with pytest.raises(TypeError, match=r"unknown option 'alpha'"):
        Hyperparameters.from_preset("pytorch", alpha=0.9)
    with pytest.raises(TypeError, match=r"lr is required: the 'optax' preset has no default"):
        Hyperparameters.from_preset("optax")
    with pytest.raises(TypeError, match=r"lr is required: the seed's rule"):
        Hyperparameters.from_preset()
    with pytest.raises(TypeError, match=r"unknown option 'rho'"):
        Hyperparameters(lr=0.1).replace(rho=0.9)
