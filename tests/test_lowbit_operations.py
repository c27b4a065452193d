"""Low-bit state where no fused kernel runs: the kernels' step in torch operations
(rmsprop.torch._lowbit_ops), which must write the kernels' bytes.

Its pieces are checked against their definitions (rmsprop._random, rmsprop._blockwise);
the whole step against the Numba kernel, by running the same optimizer twice, with the
kernels on and off, over every option set, parameter dtype and both arithmetics.
"""

import numpy as np
import pytest

from rmsprop import _blockwise, _random
from rmsprop._blockwise import BLOCK, SIGNED, UNSIGNED

torch = pytest.importorskip("torch")
pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import _accel, _kernels  # noqa: E402
from rmsprop._interrupt import write_all  # noqa: E402
from rmsprop._options import Hyperparameters  # noqa: E402
from rmsprop.torch import _backends, _lowbit_ops  # noqa: E402

EDGES = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15, 12345]


def _bits(t):
    """A tensor's bytes, for comparisons bit for bit, but for the sign of a NaN: IEEE 754
    leaves it open, and the kernel's compiler may fold ``-g * -g`` into ``g * g``."""
    t = t.detach()
    if t.is_floating_point():
        t = torch.where(t.isnan(), torch.nan, t)
    return t.contiguous().view(-1).view(torch.uint8)


def test_the_random_bits_are_rmsprop_randoms():
    for seed in (0, 1, 2**63 - 1, 987654321):
        for step in (1, 2, 2**24, 2**31 + 5):
            for stream in (0, 1, 160, 2**31):
                begin = _lowbit_ops.start(seed, torch.tensor(step), stream)
                expected = _random.start(seed, step, stream)
                assert int(begin) & _random.MASK == expected
    j = torch.tensor([0, 1, 255, 256, 2**32 - 1, 2**32, 2**40 + 3])
    for begin in EDGES:
        z = torch.tensor(_lowbit_ops._signed(begin))
        draws = _lowbit_ops.draws(z, j)
        assert [int(d) & _random.MASK for d in draws] == [_random.draw(begin, int(i)) for i in j]
        mixed = _lowbit_ops.mix(z.reshape(1))
        assert int(mixed[0]) & _random.MASK == _random.mix(begin)
        for k in range(3):
            assert _lowbit_ops.weyl(z, j, k).tolist() == [_random.weyl(begin, int(i), k) for i in j]


def test_stochastic_bfloat16_rounds_as_the_definition():
    generator = np.random.default_rng(0)
    bits = generator.integers(0, 2**32, 20_000, dtype=np.uint64)
    bits[:6] = [0x7F800000, 0xFF800000, 0x7FC00001, 0xFFFFFFFF, 0x7F7FFFFF, 0]
    random = generator.integers(0, 2**16, bits.size, dtype=np.uint64)
    values = torch.from_numpy(bits.astype(np.uint32).view(np.float32))  # float32: as is
    got = _lowbit_ops.stochastic_bfloat16(values, torch.from_numpy(random.astype(np.int64)))
    expected = _random.round_bfloat16(bits, random, np.where) & 0xFFFF
    assert np.array_equal(got.numpy().view(np.uint16), expected.astype(np.uint16))


@pytest.mark.parametrize("code", [UNSIGNED, SIGNED], ids=["unsigned", "signed"])
@pytest.mark.parametrize("work", [torch.float64, torch.float32])
def test_the_codes_are_blockwise_codes(code, work):
    generator = np.random.default_rng(1)
    n = 5 * BLOCK + 77  # the last block partial
    magnitudes = 10.0 ** generator.uniform(-40, 30, n)
    values = magnitudes * (generator.choice([-1.0, 1.0], n) if code.signed else 1.0)
    values[:BLOCK] = 0.0  # an all-zero block
    values[BLOCK + 3] = np.nan  # NaN and infinities stay in their own elements
    values[2 * BLOCK + 5] = -np.inf if code.signed else np.inf
    values[3 * BLOCK : 4 * BLOCK] *= 1e-300  # a block of tiny values
    values = values.astype(np.float32).astype(np.float64) if work == torch.float32 else values
    random = generator.integers(0, 1 << _blockwise.RANDOM_BITS, n)
    codes, scales = _lowbit_ops.encode(
        torch.from_numpy(values).to(work), code, torch.from_numpy(random)
    )
    expected_codes, expected_scales = _blockwise.encode(values, code, random.astype(np.uint64))
    assert np.array_equal(codes.numpy(), expected_codes)
    assert np.array_equal(scales.numpy(), expected_scales)
    decoded = _lowbit_ops.decode(codes, scales, code, torch.float64)
    assert np.array_equal(
        decoded.numpy(), _blockwise.decode(expected_codes, expected_scales, code), equal_nan=True
    )


def _train(bits, kernels, options, dtype, shapes, layout=torch.contiguous_format):
    """Parameters and state dict after three steps (a NaN in one gradient block)."""
    previous = _accel.set_enabled(kernels)
    try:
        generator = torch.Generator().manual_seed(0)
        params = [
            torch.nn.Parameter(
                torch.randn(shape, generator=generator).to(dtype).contiguous(memory_format=layout)
                if len(shape) == 4 else torch.randn(shape, generator=generator).to(dtype)
            )
            for shape in shapes
        ]  # fmt: skip
        opt = rmsprop.torch.RMSProp(params, lr=0.01, state_bits=bits, seed=7, **options)
        for step in range(3):
            for p in params:
                g = torch.randn(p.shape, generator=generator).to(dtype)
                if step == 1:
                    g.view(-1)[BLOCK + 2] = float("nan")
                p.grad = g.contiguous(memory_format=layout) if p.dim() == 4 else g
            opt.step()
        return [p.detach().clone() for p in params], opt.state_dict()["state"]
    finally:
        _accel.set_enabled(previous)


def _same(a, b):
    params_a, state_a = a
    params_b, state_b = b
    assert all(torch.equal(_bits(x), _bits(y)) for x, y in zip(params_a, params_b, strict=True))
    assert state_a.keys() == state_b.keys()
    for i in state_a:
        assert state_a[i].keys() == state_b[i].keys()
        for key, value in state_a[i].items():
            assert torch.equal(_bits(value), _bits(state_b[i][key])), (i, key)


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [(8, torch.float32), (16, torch.float32), (16, torch.bfloat16), (16, torch.float16)],
)
def test_without_kernels_the_optimizer_writes_the_kernels_bytes(bits, dtype):
    """Through the optimizer, the kernels turned off (every option set is checked against
    the kernels' reference in test_blockwise_state and test_stochastic_state)."""
    shapes = [(9000,), (BLOCK * 20 + 13,), (300,), (64, 70)]
    options = {"momentum": 0.9, "centered": True, "weight_decay": 0.1, "bias_correction": True}
    _same(_train(bits, True, options, dtype, shapes), _train(bits, False, options, dtype, shapes))


@pytest.mark.parametrize("bits", [16, 8])
def test_float32_arithmetic_and_layouts_without_kernels(bits, monkeypatch):
    """float32 arithmetic (the scalars in float32 too, as the kernel's), channels_last,
    and parameters cut into several slices."""
    monkeypatch.setattr(_lowbit_ops, "SLICE", 2 * BLOCK)
    options = {"float32_arithmetic": True, "momentum": 0.9, "weight_decay": 0.1}
    shapes = [(8, 16, 8, 8), (9000,)]  # every one coded: small ones keep float32 state
    for layout in (torch.contiguous_format, torch.channels_last):
        kernel = _train(bits, True, options, torch.float32, shapes, layout)
        _same(kernel, _train(bits, False, options, torch.float32, shapes, layout))


def test_a_failing_kernel_hands_low_bit_state_to_the_operations():
    """A fallible kernel (Triton's) that fails writes nothing; the launch it leaves
    behind steps the low-bit state in torch operations, as the Numba kernel would."""

    def failing(members, hp, **options):
        raise RuntimeError("no GPU here")

    def members(seed):
        generator = torch.Generator().manual_seed(seed)
        p = torch.randn(5000, generator=generator)
        g = torch.randn(5000, generator=generator)
        codes = torch.zeros(5000, dtype=torch.uint8)
        scales = torch.ones(_blockwise.blocks(5000))
        return [(p, g, [codes, None, None])], [[scales, None, None]]

    hp = Hyperparameters(lr=0.01)
    fake = _backends.Backend(
        "fake", failing, ("cpu",), _backends.FAMILY_DTYPES, fallible=True, codes=True
    )
    previous = _accel.set_triton_enabled(True)
    try:
        group, scales = members(0)
        low = {"stochastic": ([torch.zeros(())], [0], 3), "scales": scales}
        with pytest.warns(RuntimeWarning, match="low-bit state"):
            launch = fake.launch(group, hp, False, **low)
        launch([group[0][1]], hp)
        twin, twin_scales = members(0)
        low = {"stochastic": ([torch.zeros(())], [0], 3), "scales": twin_scales}
        _kernels.Launch(twin, hp, **low)([twin[0][1]], hp)
        assert torch.equal(group[0][0], twin[0][0])  # the parameter
        assert torch.equal(group[0][2][0], twin[0][2][0])  # the codes
        assert torch.equal(scales[0][0], twin_scales[0][0])
        assert not torch.equal(group[0][0], members(0)[0][0][0])  # it stepped
    finally:
        _accel.set_triton_enabled(previous)


@pytest.mark.parametrize("bits", [16, 8])
def test_a_buffer_the_options_do_not_use_is_left_alone(bits):
    """A momentum buffer kept from steps with momentum, in a step without: neither the
    kernel nor the operations touch it."""
    hp = Hyperparameters(lr=0.01)  # momentum 0
    results = []
    for make in (_kernels.Launch, _lowbit_ops.Launch):
        generator = torch.Generator().manual_seed(2)
        p, g = torch.randn(5000, generator=generator), torch.randn(5000, generator=generator)
        if bits == 8:
            buffers = [torch.full((5000,), k, dtype=torch.uint8) for k in (40, 200)]
            scales = [torch.ones(_blockwise.blocks(5000)) for _ in range(2)]
            low = {"scales": [[scales[0], scales[1], None]]}
        else:
            buffers = [torch.rand(5000, generator=generator).bfloat16() for _ in range(2)]
            scales, low = [], {}
        kept = [t.clone() for t in (buffers[1], *scales[1:])]
        counter = torch.zeros(())  # alive while the launch is: the kernel keeps its address
        launch = make([(p, g, [buffers[0], buffers[1], None])], hp,
                      stochastic=([counter], [0], 1), **low)  # fmt: skip
        launch([g], hp)
        assert all(torch.equal(a, b) for a, b in zip(kept, (buffers[1], *scales[1:]), strict=True))
        results.append((p, buffers[0], *scales[:1]))
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_ctrl_c_between_two_writes_still_writes_them_all():
    """Codes and their scales are written together (by both steps without kernels, this
    one and rmsprop._lowbit_numpy's): a KeyboardInterrupt raised after one copy (where
    Python delivers Ctrl-C: between calls) lets the others finish."""
    written, interrupt = {}, [True]

    def copy(target, value):
        written[target] = value
        if target == 1 and interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_all([(k, 10 + k) for k in range(4)], copy)
    assert written == {0: 10, 1: 11, 2: 12, 3: 13}


def test_what_nothing_takes_is_still_refused_before_any_write():
    """A sparse gradient: neither a kernel nor the operations take it."""
    previous = _accel.set_enabled(False)
    try:
        p = torch.nn.Parameter(torch.ones(5000))
        opt = rmsprop.torch.RMSProp([p], lr=0.1, state_bits=16)
        p.grad = torch.ones(5000).to_sparse()
        with pytest.raises(RuntimeError):
            opt.step()
        assert (p == 1).all()
    finally:
        _accel.set_enabled(previous)
