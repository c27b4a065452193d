"""bfloat16 parameters written with stochastic rounding (``stochastic_rounding=True``).

The new parameter, evaluated as without it (in float64, or float32 with
``float32_arithmetic``), is rounded to float32, then to bfloat16 with the top 16-bit
word of the element's draw (rmsprop._random) from the sequence of (seed, step,
stream): the word the state does not use. Checked against that reference for every
launch (the Numba kernel, its step in torch operations, the Triton kernel under its
interpreter) and every kind of state, whose bytes must be those of the same launch
without it; then through the optimizer: unbiased, reproducible, resumed from a
checkpoint, refused where it cannot apply.
"""

import copy
import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import Hyperparameters, _accel, _blockwise, _random, _rule  # noqa: E402
from rmsprop.torch import _lowbit_ops  # noqa: E402

OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "eps_in_sqrt": False, "maximize": True},
]
#: The state kinds: float32 (rounded to nearest), bfloat16 rounded stochastically, 8-bit.
STATES = ["float32", "bfloat16", "8-bit"]
KEYS = ("square_avg", "momentum_buffer", "grad_avg")


def _bits(t):
    return t.view(torch.int16).numpy().astype(np.int64) & 0xFFFF


def _members(hp, state, sizes, seed=0):
    """Members with bfloat16 parameters (gradients over 10 decades), their state of
    kind ``state``, counters, streams and, for 8-bit state, scales."""
    generator = torch.Generator().manual_seed(seed)
    members, counters, streams, scales = [], [], [], []
    for k, n in enumerate(sizes):
        p = torch.randn(n, generator=generator).bfloat16()
        magnitude = 10.0 ** torch.randint(-8, 2, (n,), generator=generator)
        g = (torch.randn(n, generator=generator) * magnitude).bfloat16()
        buffers, row = [], []
        for key, used in zip(KEYS, (True, hp.momentum, hp.centered), strict=True):
            draw = torch.rand if key == "square_avg" else torch.randn
            x = draw(n, generator=generator) * magnitude**2 if used else None
            if x is None:
                buffers.append(None)
                row.append(None)
            elif state == "8-bit":
                codes, s = _blockwise.encode(x.double().numpy(), _blockwise.CODES[key])
                buffers.append(torch.from_numpy(codes))
                row.append(torch.from_numpy(s))
            else:
                buffers.append(x.to(getattr(torch, state)))
        members.append((p, g, buffers))
        scales.append(row)
        counters.append(torch.tensor(float(5 + k)))
        streams.append(3 * k + 1)
    return members, counters, streams, scales if state == "8-bit" else None


def _expected(members, counters, streams, seed, hp, work=np.float64):
    """The reference: each new parameter rounded to float32, then stochastically."""
    out = []
    for (p, g, buffers), counter, stream in zip(members, counters, streams, strict=True):
        values = []
        for b, k in zip(buffers, KEYS, strict=True):
            values.append(None if b is None else b.double().numpy())
        if values[0] is not None and buffers[0].dtype == torch.uint8:
            return None  # 8-bit state: compared with the same launch without it
        new_p, _ = _rule.family_update(
            p.double().numpy(), g.double().numpy(), _rule.State(*values), hp, np.sqrt,
            lambda x: np.maximum(x, 0.0), 1.0,
        )  # fmt: skip
        begin = _random.start(seed, int(counter) + 1, stream)
        j = np.arange(p.numel(), dtype=np.uint64)
        random = _random.word(_random.draw(begin, j), 3).astype(np.int64)
        single = np.asarray(new_p, work).astype(np.float32).view(np.uint32).astype(np.int64)
        out.append(_random.round_bfloat16(single, random, np.where))
    return out


def _launch(make, members, counters, streams, scales, seed, hp, state, round_params):
    options = {"stochastic": (counters, streams, seed), "round_params": round_params}
    if state == "8-bit":
        options["scales"] = scales
    elif state == "float32":
        options["round_state"] = False
    if not round_params and state == "float32":
        options = {}
    make(members, hp, **options)([g for _, g, _ in members], hp)


def _copy(members, scales):
    return copy.deepcopy(members), copy.deepcopy(scales)


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("launch_type", ["numba", "ops"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_the_parameters_bits_are_the_references_and_the_state_is_unchanged(
    options, launch_type, state
):
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    make = kernels.Launch if launch_type == "numba" else _lowbit_ops.Launch
    seed = 2**50 + 3
    members, counters, streams, scales = _members(hp, state, [1, 7, 5000, 70_001])
    plain, plain_scales = _copy(members, scales)
    expected = _expected(members, counters, streams, seed, hp)
    _launch(make, members, counters, streams, scales, seed, hp, state, True)
    _launch(kernels.Launch, plain, counters, streams, plain_scales, seed, hp, state, False)
    for k, ((p, _, buffers), (q, _, plain_buffers)) in enumerate(zip(members, plain, strict=True)):
        if expected is not None:
            assert np.array_equal(_bits(p), expected[k])
        # Nearest and stochastic differ only by one bfloat16 unit, in either direction.
        gap = np.abs(p.float().numpy() - q.float().numpy())
        assert np.all(gap <= np.abs(q.float().numpy()) * 2.0**-7 + 1e-38)
        for b, c in zip(buffers, plain_buffers, strict=True):
            if b is not None:
                assert torch.equal(b.view(torch.uint8), c.view(torch.uint8))
        if scales is not None:
            for s, t in zip(scales[k], plain_scales[k], strict=True):
                assert s is None or torch.equal(s, t)


@pytest.mark.parametrize("state", STATES)
def test_the_triton_kernel_writes_the_same_bits(state):
    """Under Triton's interpreter (CPU tensors), the GPU kernel rounds parameters with
    the CPU kernel's bits, whatever the state."""
    pytest.importorskip("triton")
    from rmsprop import _triton  # noqa: PLC0415

    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, momentum=0.9, centered=True)
    results = []
    for make in (kernels.Launch, _triton.Launch):
        members, counters, streams, scales = _members(hp, state, [3, 5000])
        sizing = {"chunk": 1 << 13, "block": 1 << 13} if make is _triton.Launch else {}
        _launch(functools.partial(make, **sizing), members, counters, streams, scales, 99, hp,
                state, True)  # fmt: skip
        tensors = [t for p, _, s in members for t in (p, *s) if t is not None]
        tensors += [t for row in scales or [] for t in row if t is not None]
        results.append([t.view(torch.uint8).clone() for t in tensors])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
