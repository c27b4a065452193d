"""rmsprop._random: SplitMix64 draws and stochastic rounding, the same bits everywhere.

The draws against SplitMix64's known outputs, then the one definition run by Python
ints and NumPy uint64 arrays against the kernels' copies (Numba's, and the Triton
kernel's under its interpreter), bit for bit over many (seed, step, stream,
element). Stochastic rounding: every float32 rounds to one of its two bfloat16
neighbours, with the mean of all 2^16 draws equal to the float32 value exactly; NaN,
infinities, zeros, subnormals and the largest finite values handled.
"""

import numpy as np
import pytest

from rmsprop._random import draw, round_bfloat16, start

try:  # the Triton kernel's copy, looked up by the interpreter in this module's globals
    from rmsprop import _triton_codes
except ImportError:  # no torch or no Triton: its test skips
    _triton_codes = None

#: The first outputs of SplitMix64 seeded with 0 (its state advanced by GAMMA first).
KNOWN = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_mix_gives_splitmix64s_known_outputs():
    assert [draw(0, j) for j in range(3)] == KNOWN


def _cases(n=4096, seed=0):
    rng = np.random.default_rng(seed)
    cases = rng.integers(0, 2**63, size=(4, n), dtype=np.uint64)  # seed, step, stream, j
    cases[:, :3] = [[0, 2**63 - 1, 1]] * 4  # edges
    return cases


def _python(cases):
    return np.array(
        [draw(start(int(s), int(t), int(m)), int(j)) for s, t, m, j in cases.T], dtype=np.uint64
    )


def test_numpy_arrays_give_pythons_bits():
    cases = _cases(512)
    got = draw(start(cases[0], cases[1], cases[2]), cases[3])
    assert got.dtype == np.uint64 and np.array_equal(got, _python(cases))


def test_the_numba_kernels_copy_gives_the_same_bits():
    numba = pytest.importorskip("numba")
    from rmsprop import _numba_codes  # noqa: PLC0415

    @numba.njit
    def many(cases, out):
        for i in range(cases.shape[1]):
            begin = _numba_codes.start(cases[0, i], cases[1, i], cases[2, i])
            out[i] = _numba_codes.mix(begin + (cases[3, i] + np.uint64(1)) * _numba_codes.GAMMA)
        return out

    cases = _cases()
    assert np.array_equal(many(cases, np.zeros(cases.shape[1], np.uint64)), _python(cases))


def test_the_triton_kernels_copy_gives_the_same_bits():
    """The Triton kernel's ``_start`` and ``_mix`` under its interpreter (the tests'
    conftest sets TRITON_INTERPRET=1)."""
    torch = pytest.importorskip("torch")
    triton = pytest.importorskip("triton")
    if _triton_codes is None:
        pytest.skip("rmsprop._triton_codes does not load here")
    kernel = _triton_draws(triton)
    cases = _cases(256)
    source = torch.from_numpy(cases.view(np.int64)).contiguous()
    out = torch.zeros(256, dtype=torch.int64)
    for i in range(256):  # scalar seed, step, stream per program, as in the kernel
        kernel[(1,)](source, out, i, 256)
    assert np.array_equal(out.numpy().view(np.uint64), _python(cases))


def _triton_draws(triton):
    import triton.language as tl  # noqa: PLC0415

    @triton.jit
    def kernel(cases, out, i, n):
        seed = tl.load(cases + i).to(tl.uint64)
        step = tl.load(cases + n + i).to(tl.uint64)
        stream = tl.load(cases + 2 * n + i).to(tl.uint64)
        j = tl.load(cases + 3 * n + i).to(tl.uint64)
        begin = _triton_codes.random_start(seed, step, stream)
        bits = _triton_codes.mix(begin + (j + 1) * 0x9E3779B97F4A7C15)
        tl.store(out + i, bits.to(tl.int64, bitcast=True))

    return kernel


# --- stochastic rounding -------------------------------------------------------------------


def _bfloat16_value(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32).astype(np.float64)


def _all_draws(values):
    """The bfloat16 bits of each float32 value for each of the 2^16 random draws."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.int64)[:, None]
    random = np.arange(1 << 16, dtype=np.int64)[None, :]
    return round_bfloat16(bits, random, np.where)


def test_each_value_rounds_to_a_neighbour_and_its_mean_is_the_value_exactly():
    rng = np.random.default_rng(2)
    values = np.concatenate([
        rng.standard_normal(64) * 10.0 ** rng.integers(-30, 30, 64),
        [0.0, -0.0, 1.0, -1.0, 1.0 + 2**-8, 3.0 - 2**-20, 1e-40, -1e-42, 2**-126, 3.3895e38],
    ]).astype(np.float32)  # fmt: skip
    draws = _all_draws(values)
    for value, bits in zip(values, draws, strict=True):
        below = np.float32(value).view(np.uint32) >> 16
        assert set(np.unique(bits)) <= {int(below), int(below) + 1}
        exact = float(np.float32(value))
        mean = _bfloat16_value(bits).mean() if np.isfinite(_bfloat16_value(bits)).all() else None
        if mean is not None:
            assert mean == exact, value  # 2^16 draws sum exactly in float64


def test_special_values_round_as_expected():
    values = np.array([np.inf, -np.inf, np.nan, -np.nan], np.float32)
    draws = _all_draws(values)
    assert (draws[0] == 0x7F80).all() and (draws[1] == 0xFF80).all()
    nan = _bfloat16_value(draws[2:].ravel())
    assert np.isnan(nan).all()
    signalling = np.array([0x7F800001, 0xFF800001], np.uint32).view(np.float32)
    assert np.isnan(_bfloat16_value(_all_draws(signalling).ravel())).all()
    largest = np.array([np.finfo(np.float32).max], np.float32)
    rounded = _bfloat16_value(_all_draws(largest).ravel())
    assert set(np.unique(rounded)) == {3.3895313892515355e38, np.inf}


def test_each_weyl_sequence_visits_every_20_bit_value_once_per_period():
    from rmsprop._random import WEYL, WEYL_MASK, weyl  # noqa: PLC0415

    j = np.arange(1 << 20, dtype=np.uint64)
    begin = 0x0123456789ABCDEF
    for k in range(3):
        bits = weyl(begin, j, k)
        assert bits.max() <= WEYL_MASK and np.unique(bits).size == 1 << 20
        assert bits[0] == (begin >> (20 * k)) & WEYL_MASK
    # the element index wraps at 2**32 (the kernels' 32-bit arithmetic), a period of 2**20
    assert weyl(begin, np.uint64(2**32 + 5), 1) == weyl(begin, np.uint64(5), 1)
    assert all(w % 2 == 1 for w in WEYL)


def test_the_parameters_bits_take_every_16_bit_value_16_times_a_period():
    """stochastic_rounding's bits: the upper 16 of a fourth Weyl sequence, whose offset
    comes from mix(begin), not from the bits that start the state's three."""
    from rmsprop._random import (  # noqa: PLC0415
        PARAMETER_WEYL,
        WEYL,
        mix,
        parameter_bits,
        parameter_offset,
    )

    j = np.arange(1 << 20, dtype=np.uint64)
    begin = 0x0123456789ABCDEF
    offset = parameter_offset(begin)
    assert offset == mix(begin) & 0xFFFFF
    bits = parameter_bits(offset, j)
    assert bits.max() < 1 << 16
    assert np.array_equal(np.bincount(bits.astype(np.int64)), np.full(1 << 16, 16))
    assert parameter_bits(offset, np.uint64(2**32 + 7)) == parameter_bits(offset, np.uint64(7))
    assert PARAMETER_WEYL % 2 == 1 and PARAMETER_WEYL not in WEYL


def test_an_elements_weyl_bits_are_uniform_over_steps():
    """Element j's bits over 20,000 steps (the start of each step's sequence from
    start()): their mean and the share under half within 5 sigma of uniform's."""
    from rmsprop._random import start, weyl  # noqa: PLC0415

    steps = np.arange(20_000, dtype=np.uint64)
    begins = start(np.full_like(steps, 3), steps, np.full_like(steps, 7))
    for j in (0, 1, 12345):
        bits = weyl(begins, np.uint64(j), 0).astype(np.float64) / 2**20
        sigma = np.sqrt(1 / 12 / steps.size)
        assert abs(bits.mean() - 0.5) < 5 * sigma
        assert abs((bits < 0.5).mean() - 0.5) < 5 * np.sqrt(0.25 / steps.size)
