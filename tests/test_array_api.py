"""Arrays of other libraries: PyTorch, JAX, Dask and the array-API reference (array-api-strict)."""

import numpy as np
import pytest

import rmsprop

from oracle import reference

RTOL = 1e-12  # float64 results against NumPy's (measured: identical)


def sample(shape=(3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape), rng.normal(size=shape), rng.random(shape)


def assert_close_to_numpy(new_p, new_v, arrays, lr=0.01, beta=0.9, eps=1e-8):
    expected = rmsprop.step(*arrays, lr, beta, eps)
    np.testing.assert_allclose(np.asarray(new_p), expected[0], rtol=RTOL, atol=0)
    np.testing.assert_allclose(np.asarray(new_v), expected[1], rtol=RTOL, atol=0)


class TestTorch:
    torch = pytest.importorskip("torch")

    @pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4)])
    def test_float64_matches_numpy(self, shape):
        arrays = sample(shape)
        tensors = [self.torch.from_numpy(a.copy()) for a in arrays]
        new_p, new_v = rmsprop.step(*tensors, 0.01, 0.9)
        assert isinstance(new_p, self.torch.Tensor) and isinstance(new_v, self.torch.Tensor)
        assert new_p.dtype == self.torch.float64 and new_p.device == tensors[0].device
        assert tuple(new_p.shape) == shape
        assert_close_to_numpy(new_p, new_v, arrays)
        for t, a in zip(tensors, arrays, strict=True):  # inputs untouched
            np.testing.assert_array_equal(t.numpy(), a)

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
    def test_narrow_dtypes_are_kept_and_rounded_once(self, dtype):
        dtype = getattr(self.torch, dtype)
        tensors = [self.torch.from_numpy(a).to(dtype) for a in sample()]
        new_p, new_v = rmsprop.step(*tensors, 0.01, 0.9)
        assert new_p.dtype == dtype and new_v.dtype == dtype
        wide = [t.double().numpy() for t in tensors]
        expected = reference(*wide, 0.01, 0.9)
        assert self.torch.equal(new_p, self.torch.from_numpy(expected[0]).to(dtype))
        assert self.torch.equal(new_v, self.torch.from_numpy(expected[1]).to(dtype))

    def test_integer_tensors_give_float64(self):
        t = self.torch.tensor([1, 2, 3])
        new_p, new_v = rmsprop.step(t, t, t, 0.1, 0.5)
        assert new_p.dtype == self.torch.float64 and new_v.dtype == self.torch.float64
        assert_close_to_numpy(new_p, new_v, [t.numpy()] * 3, 0.1, 0.5)

    def test_pure_step_is_differentiable(self):
        p = self.torch.tensor([1.0, 2.0], dtype=self.torch.float64, requires_grad=True)
        g = self.torch.tensor([0.5, -0.5], dtype=self.torch.float64)
        new_p, _ = rmsprop.step(p, g, self.torch.zeros(2, dtype=self.torch.float64), 0.1, 0.9)
        new_p.sum().backward()
        assert p.grad.tolist() == [1.0, 1.0]

    @pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
    def test_in_place_matches_step(self, dtype):
        dtype = getattr(self.torch, dtype)
        p, g, v = (self.torch.from_numpy(a).to(dtype) for a in sample())
        expected = rmsprop.step(p, g, v, 0.01, 0.9)
        assert rmsprop.step_(p, g, v, 0.01, 0.9) == (p, v)
        assert self.torch.equal(p, expected[0]) and self.torch.equal(v, expected[1])

    def test_in_place_on_a_parameter_that_requires_grad(self):
        p = self.torch.nn.Parameter(self.torch.ones(3, dtype=self.torch.float64))
        v = self.torch.zeros(3, dtype=self.torch.float64)
        g = self.torch.full((3,), 0.5, dtype=self.torch.float64)
        rmsprop.step_(p, g, v, 0.1, 0.9)
        assert p.is_leaf and p.requires_grad and p.grad_fn is None
        assert_close_to_numpy(p.detach(), v, [np.ones(3), np.full(3, 0.5), np.zeros(3)], 0.1, 0.9)

    def test_in_place_on_non_contiguous_views(self):
        base = self.torch.zeros(4, 6, dtype=self.torch.float64)
        cache = self.torch.zeros(6, 4, dtype=self.torch.float64).T
        p, v = base[:, ::2], cache[:, 1::2]
        g = self.torch.ones(4, 3, dtype=self.torch.float64)
        rmsprop.step_(p, g, v, 0.1, 0.9)
        assert (base[:, 1::2] == 0).all() and (base[:, ::2] != 0).all()
        assert (cache[:, ::2] == 0).all()
        assert_close_to_numpy(p, v, [np.zeros((4, 3)), np.ones((4, 3)), np.zeros((4, 3))], 0.1, 0.9)

    def test_interleaved_views_of_one_tensor_do_not_share_memory(self):
        base = self.torch.zeros(8, dtype=self.torch.float64)
        rmsprop.step_(base[::2], self.torch.ones(4, dtype=self.torch.float64), base[1::2], 0.1, 0.9)
        assert_close_to_numpy(
            base[::2], base[1::2], [np.zeros(4), np.ones(4), np.zeros(4)], 0.1, 0.9
        )


class TestJax:
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")

    @pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4)])
    def test_float64_matches_numpy(self, shape):
        arrays = sample(shape)
        with self.jax.enable_x64(True):
            jarrays = [self.jnp.asarray(a) for a in arrays]
            new_p, new_v = rmsprop.step(*jarrays, 0.01, 0.9)
            assert isinstance(new_p, self.jax.Array) and new_p.dtype == self.jnp.float64
            assert (
                new_p.devices() == jarrays[0].devices() and new_v.devices() == jarrays[2].devices()
            )
            assert new_p.shape == shape
            assert_close_to_numpy(new_p, new_v, arrays)

    def test_integer_arrays_give_float64_with_x64(self):
        with self.jax.enable_x64(True):
            a = self.jnp.arange(4)
            new_p, new_v = rmsprop.step(a, a, a, 0.1, 0.5)
            assert new_p.dtype == self.jnp.float64 and new_v.dtype == self.jnp.float64
            assert_close_to_numpy(new_p, new_v, [np.arange(4)] * 3, 0.1, 0.5)

    def test_without_x64_float32_is_computed_in_float32(self):
        """JAX without x64 has no float64: the step runs in float32, within a few float32 ulp."""
        arrays = [a.astype(np.float32) for a in sample((1000,))]
        with self.jax.enable_x64(False):
            new_p, new_v = rmsprop.step(*(self.jnp.asarray(a) for a in arrays), 0.01, 0.9)
            assert new_p.dtype == self.jnp.float32 and new_v.dtype == self.jnp.float32
        expected = rmsprop.step(*arrays, 0.01, 0.9)
        scale = np.abs(arrays[0]) + 0.01 * np.abs(arrays[1]) / np.sqrt(expected[1] + 1e-8)
        assert (np.abs(np.asarray(new_p) - expected[0]) <= 4 * 2.0**-24 * scale).all()
        np.testing.assert_allclose(np.asarray(new_v), expected[1], rtol=4 * 2.0**-24)

    def test_step_inside_jit(self):
        with self.jax.enable_x64(True):
            arrays = sample()
            jitted = self.jax.jit(lambda p, g, v: rmsprop.step(p, g, v, 0.01, 0.9))
            new_p, new_v = jitted(*(self.jnp.asarray(a) for a in arrays))
            assert_close_to_numpy(new_p, new_v, arrays)


class TestDask:
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")

    def test_stays_lazy_and_matches_numpy(self):
        arrays = sample((6, 4))
        calls = []

        def load(a):
            calls.append(1)
            return a

        lazy = [
            self.da.from_delayed(self.dask.delayed(load)(a), shape=a.shape, dtype=a.dtype).rechunk(
                2
            )
            for a in arrays
        ]
        new_p, new_v = rmsprop.step(*lazy, 0.01, 0.9)
        assert isinstance(new_p, self.da.Array) and isinstance(new_v, self.da.Array)
        assert calls == []  # nothing computed yet
        assert_close_to_numpy(new_p.compute(), new_v.compute(), arrays)
        assert calls

    def test_in_place_replaces_the_graph(self):
        arrays = sample((6, 4))
        p, g, v = (self.da.from_array(a, chunks=3) for a in arrays)
        rmsprop.step_(p, g, v, 0.01, 0.9)
        assert_close_to_numpy(p.compute(), v.compute(), arrays)


class TestArrayApiStrict:
    xp = pytest.importorskip("array_api_strict")

    def test_step_and_step_in_place(self):
        arrays = sample()
        xs = [self.xp.asarray(a.copy()) for a in arrays]
        new_p, new_v = rmsprop.step(*xs, 0.01, 0.9)
        assert type(new_p) is type(xs[0]) and new_p.dtype == self.xp.float64
        assert new_p.device == xs[0].device
        assert_close_to_numpy(np.asarray(new_p), np.asarray(new_v), arrays)
        rmsprop.step_(*xs, 0.01, 0.9)
        assert_close_to_numpy(np.asarray(xs[0]), np.asarray(xs[2]), arrays)

    def test_float32_is_kept(self):
        xs = [self.xp.asarray(a.astype(np.float32)) for a in sample()]
        new_p, new_v = rmsprop.step(*xs, 0.01, 0.9)
        assert new_p.dtype == self.xp.float32 and new_v.dtype == self.xp.float32


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_torch_low_precision_params_take_a_float32_cache_in_place(low):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, low)
    p, g, v = torch.full((3,), 0.5, dtype=dtype), torch.full((3,), 1e3, dtype=dtype), torch.zeros(3)
    rmsprop.step_(p, g, v, 1e-2, 0.9)
    expected_p, expected_v = rmsprop.step(0.5, float(g[0]), 0.0, 1e-2, 0.9)
    assert v.dtype == torch.float32 and torch.equal(v, torch.full((3,), expected_v).float())
    assert torch.equal(p, torch.full((3,), expected_p, dtype=torch.float64).to(dtype))
    with pytest.raises(TypeError, match=r"cache has dtype torch\.float16"):
        rmsprop.step_(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.float16), 0.1, 0.9)
