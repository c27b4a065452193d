"""Each preset reproduces its framework's RMSProp over 50 steps of random gradients.

Differences are measured as max |ours - theirs| / max |theirs| over the
parameters and every state buffer (``frameworks.max_relative_difference``).
"""

import itertools
import math
import os

import numpy as np
import pytest

import rmsprop

from frameworks import (
    STEPS,
    max_relative_difference,
    problem,
    reference_tensorflow,
    reference_timm,
    run_keras,
    run_numpy,
    run_optax,
    run_torch,
    well_posed,
)

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on PyTorch: no TensorFlow here

FLOAT64_TOLERANCE = 1e-12
FLOAT32_TOLERANCE = 1e-6

TORCH_OPTIONS = [
    pytest.param(m, c, wd, mx, id=f"momentum{m}-centered{c:d}-wd{wd}-maximize{mx:d}")
    for m, c, wd, mx in itertools.product([0.0, 0.9], [False, True], [0.0, 0.1], [False, True])
]


def assert_agree(ours, theirs, tolerance, keys=None):
    """Parameters and the state buffers ``keys`` (default: all of theirs) within ``tolerance``."""
    params, state = ours
    their_params, their_state = theirs
    assert max_relative_difference(params, their_params) <= tolerance
    for key in keys if keys is not None else their_state:
        assert max_relative_difference(state[key], their_state[key]) <= tolerance, key


class TestPyTorch:
    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize(("momentum", "centered", "weight_decay", "maximize"), TORCH_OPTIONS)
    @pytest.mark.parametrize("dtype", ["float64", "float32"])
    def test_preset_matches_torch_optim_rmsprop(
        self, dtype, momentum, centered, weight_decay, maximize
    ):
        import rmsprop.torch  # noqa: PLC0415

        p0, grads = problem()
        options = {"momentum": momentum, "centered": centered, "weight_decay": weight_decay}
        options["maximize"] = maximize
        theirs = run_torch(
            p0, grads, self.torch.optim.RMSprop, dtype, lr=0.01, alpha=0.9, **options
        )
        tolerance = FLOAT64_TOLERANCE if dtype == "float64" else FLOAT32_TOLERANCE
        ours = run_torch(
            p0, grads, rmsprop.torch.RMSProp, dtype, preset="pytorch", lr=0.01, beta=0.9, **options
        )
        assert sorted(ours[1]) == sorted(theirs[1])  # the same state buffers, by name
        assert_agree(ours, theirs, tolerance)
        ours_numpy = run_numpy(
            p0, grads, "pytorch", getattr(np, dtype), lr=0.01, beta=0.9, **options
        )
        assert_agree(ours_numpy, theirs, tolerance)

    def test_torch_defaults(self):
        """RMSProp(params, preset="pytorch") takes torch.optim.RMSprop's defaults."""
        import rmsprop.torch  # noqa: PLC0415

        p0, grads = problem()
        theirs = run_torch(p0, grads, self.torch.optim.RMSprop)
        assert_agree(run_torch(p0, grads, rmsprop.torch.RMSProp, preset="pytorch"), theirs, 1e-12)


OPTAX_OPTIONS = [
    pytest.param(m, n, c, bc, id=f"momentum{m}-nesterov{n:d}-centered{c:d}-bias_correction{bc:d}")
    for m, n, c, bc in itertools.product([None, 0.9], [False, True], [False, True], [False, True])
    if m or not n  # optax's nesterov needs momentum
]


class TestOptax:
    optax = pytest.importorskip("optax")

    @pytest.mark.parametrize(("momentum", "nesterov", "centered", "bias_correction"), OPTAX_OPTIONS)
    def test_preset_matches_optax_rmsprop(self, momentum, nesterov, centered, bias_correction):
        p0, grads = problem()
        grads = well_posed(grads, centered, bias_correction)
        options = {"nesterov": nesterov, "centered": centered, "bias_correction": bias_correction}
        theirs = run_optax(p0, grads, learning_rate=0.01, momentum=momentum, **options)
        ours, _ = run_numpy(p0, grads, "optax", lr=0.01, momentum=momentum or 0.0, **options)
        assert max_relative_difference(ours, theirs) <= FLOAT64_TOLERANCE

    @pytest.mark.parametrize(("momentum", "centered"), [(0.0, False), (0.9, True)])
    def test_bias_correction_in_the_torch_optimizer(self, momentum, centered):
        """Per-parameter step counts on the fused kernel and on the foreach path."""
        pytest.importorskip("torch")
        import rmsprop.torch  # noqa: PLC0415

        p0, grads = problem()
        grads = well_posed(grads, centered, True)
        options = {"centered": centered, "bias_correction": True}
        theirs = run_optax(p0, grads, learning_rate=0.01, momentum=momentum or None, **options)
        for enabled in (True, False):
            previous = rmsprop._accel.set_enabled(enabled)
            try:
                ours, _ = run_torch(
                    p0, grads, rmsprop.torch.RMSProp, preset="optax", lr=0.01, momentum=momentum,
                    **options,
                )  # fmt: skip
            finally:
                rmsprop._accel.set_enabled(previous)
            assert max_relative_difference(ours, theirs) <= FLOAT64_TOLERANCE, enabled

    @pytest.mark.parametrize("bias_correction", [False, True])
    def test_initial_scale_and_eps_outside(self, bias_correction):
        p0, grads = problem()
        theirs = run_optax(
            p0, grads, learning_rate=0.01, decay=0.8, eps=1e-3, initial_scale=1.0,
            eps_in_sqrt=False, bias_correction=bias_correction,
        )  # fmt: skip
        ours, _ = run_numpy(
            p0, grads, "optax", lr=0.01, beta=0.8, eps=1e-3, initial_cache=1.0, eps_in_sqrt=False,
            bias_correction=bias_correction,
        )  # fmt: skip
        assert max_relative_difference(ours, theirs) <= FLOAT64_TOLERANCE


class TestKeras:
    @pytest.mark.parametrize(
        ("momentum", "centered", "weight_decay"),
        list(itertools.product([0.0, 0.9], [False, True], [0.0, 0.01])),
    )
    def test_preset_matches_keras_rmsprop(self, momentum, centered, weight_decay):
        pytest.importorskip("keras")
        p0, grads = problem()
        theirs = run_keras(
            p0, grads, learning_rate=0.01, momentum=momentum, centered=centered,
            weight_decay=weight_decay or None,
        )  # fmt: skip
        ours, _ = run_numpy(
            p0,
            grads,
            "keras",
            lr=0.01,
            momentum=momentum,
            centered=centered,
            weight_decay=weight_decay,
        )
        assert max_relative_difference(ours, theirs) <= FLOAT64_TOLERANCE

    # The numbers below are those of Keras 3's own tests and docs
    # (keras/src/optimizers/rmsprop_test.py and the RMSprop docstring).

    def test_keras_single_step(self):
        w = np.array([1.0, 2.0, 3.0, 4.0])
        rmsprop.RMSProp([w], preset="keras", lr=0.5).step([np.array([1.0, 6.0, 7.0, 2.0])])
        np.testing.assert_allclose(w, [-0.5811, 0.4189, 1.4189, 2.4189], rtol=1e-4, atol=1e-4)

    def test_keras_weight_decay(self):
        """Three optimizers with weight_decay=0.004 and zero gradients: 2 * 0.996**3."""
        w = np.array(2.0)
        for _ in range(3):
            rmsprop.RMSProp([w], preset="keras", lr=1.0, weight_decay=0.004).step([np.zeros(())])
        assert float(w) == pytest.approx(1.9760959, abs=1e-6)

    def test_keras_golden_centered(self):
        w = np.ones(10)
        optimizer = rmsprop.RMSProp([w], preset="keras", centered=True)
        optimizer.step([np.full(10, 0.01)])
        for golden in [0.9967, 0.9933, 0.9908, 0.9885, 0.9864]:
            np.testing.assert_allclose(w, golden, rtol=5e-4, atol=5e-4)
            optimizer.step([np.arange(1, 11) / 10])

    def test_keras_docstring_example(self):
        w = np.array(10.0)
        rmsprop.RMSProp([w], preset="keras", lr=0.1).step([w.copy()])  # d(w**2 / 2) / dw = w
        assert round(float(w), 6) == 9.683772


class TestTensorFlow:
    # tensorflow/python/training/rmsprop_test.py: testWithoutMomentum and
    # testWithMomentum, whose expected values are written out in closed form there.

    def test_tensorflow_without_momentum(self):
        w = np.array([1.0, 2.0])
        optimizer = rmsprop.RMSProp([w], preset="tensorflow", lr=2.0, beta=0.9, eps=1.0)
        optimizer.step([np.array([0.1, 0.1])])
        np.testing.assert_allclose(optimizer.state_dict()["state"][0]["cache"], [0.901, 0.901])
        first = 0.1 * 2.0 / math.sqrt(0.901 + 1.0)
        np.testing.assert_allclose(w, [1.0 - first, 2.0 - first])
        optimizer.step([np.array([0.1, 0.1])])
        cache = 0.901 * 0.9 + 0.001
        np.testing.assert_allclose(optimizer.state_dict()["state"][0]["cache"], [cache] * 2)
        second = 0.1 * 2.0 / math.sqrt(cache + 1.0)
        np.testing.assert_allclose(w, [1.0 - first - second, 2.0 - first - second])

    def test_tensorflow_with_momentum(self):
        w = np.array([3.0, 4.0])
        optimizer = rmsprop.RMSProp(
            [w], preset="tensorflow", lr=2.0, beta=0.9, momentum=0.5, eps=1e-5
        )
        optimizer.step([np.array([0.01, 0.01])])
        mom = 0.01 * 2.0 / math.sqrt(0.90001 + 1e-5)
        np.testing.assert_allclose(optimizer.state_dict()["state"][0]["momentum_buffer"], [mom] * 2)
        optimizer.step([np.array([0.01, 0.01])])
        mom2 = 0.5 * mom + 0.01 * 2.0 / math.sqrt(0.90001 * 0.9 + 2e-5)
        np.testing.assert_allclose(
            optimizer.state_dict()["state"][0]["momentum_buffer"], [mom2] * 2
        )
        np.testing.assert_allclose(w, [3.0 - mom - mom2, 4.0 - mom - mom2])

    # The parameter sets of that file's testDense, over 50 steps of random gradients.
    @pytest.mark.parametrize(
        ("lr", "decay", "momentum", "epsilon", "centered"),
        [
            (0.5, 0.9, 0.0, 1e-3, True),
            (0.5, 0.9, 0.0, 1e-3, False),
            (0.1, 0.9, 0.0, 1e-3, True),
            (0.5, 0.95, 0.0, 1e-3, False),
            (0.5, 0.95, 0.0, 1e-5, True),
            (0.5, 0.95, 0.9, 1e-5, True),
        ],
    )
    def test_tensorflow_dense(self, lr, decay, momentum, epsilon, centered):
        p0, grads = problem()
        theirs = reference_tensorflow(p0, grads, lr, decay, momentum, epsilon, centered)
        params, state = run_numpy(
            p0, grads, "tensorflow", lr=lr, beta=decay, momentum=momentum, eps=epsilon,
            centered=centered,
        )  # fmt: skip
        assert_agree((params, state), theirs, FLOAT64_TOLERANCE, keys=state)


class TestTimm:
    @pytest.mark.parametrize(
        ("momentum", "centered", "weight_decay", "decoupled", "lr_in_momentum"),
        [
            (0.0, False, 0.0, False, True),
            (0.9, False, 0.0, False, True),
            (0.9, True, 1e-2, False, True),
            (0.9, False, 1e-2, True, True),
            (0.9, True, 1e-2, True, False),
        ],
    )
    def test_preset_matches_rmsprop_tf(
        self, momentum, centered, weight_decay, decoupled, lr_in_momentum
    ):
        p0, grads = problem()
        theirs = reference_timm(
            p0, grads, momentum=momentum, centered=centered, weight_decay=weight_decay,
            decoupled_decay=decoupled, lr_in_momentum=lr_in_momentum,
        )  # fmt: skip
        params, state = run_numpy(
            p0, grads, "timm", momentum=momentum, centered=centered, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled, lr_in_momentum=lr_in_momentum,
        )  # fmt: skip
        assert_agree((params, state), theirs, FLOAT64_TOLERANCE, keys=state)


def test_numpy_and_torch_optimizers_and_step_agree_at_the_defaults():
    torch = pytest.importorskip("torch")
    import rmsprop.torch  # noqa: PLC0415

    p0, grads = problem()
    numpy_params, numpy_state = run_numpy(p0, grads, lr=0.01)
    torch_params, torch_state = run_torch(p0, grads, rmsprop.torch.RMSProp, lr=0.01)
    p, v = p0.copy(), np.zeros_like(p0)
    for g in grads:
        p, v = rmsprop.step(p, g, v, 0.01, 0.9)
    assert len(grads) == STEPS
    np.testing.assert_array_equal(numpy_params, p)  # the same float64 operations: identical
    np.testing.assert_array_equal(numpy_state["square_avg"], v)
    np.testing.assert_array_equal(torch_params, p)
    np.testing.assert_array_equal(torch_state["square_avg"], v)
    assert torch.get_default_dtype() == torch.float32  # nothing above changed it
