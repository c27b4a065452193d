"""The Numba group kernel: one launch over many CPU tensors, any dense layout, bfloat16.

Compared bit for bit with the float64 torch._foreach_* path of rmsprop.torch, itself
the rule evaluated in float64 and rounded once (through float32 for bfloat16, as
torch's copy_ rounds).
"""

import numpy as np
import pytest

numba = pytest.importorskip("numba", reason="Numba is not installed")

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

import rmsprop.torch  # noqa: E402
from rmsprop import Hyperparameters, _accel  # noqa: E402
from rmsprop.torch._backends import FAMILY_DTYPES, kernel_can_update  # noqa: E402
from rmsprop.torch._foreach import foreach_update  # noqa: E402

from tensors import assert_identical  # noqa: E402

OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1, "maximize": True},
    {"momentum": 0.9, "nesterov": True, "lr_in_momentum": True, "eps_in_sqrt": True},
    {"weight_decay": 0.1, "decoupled_weight_decay": True, "centered": True},
    {"bias_correction": True, "centered": True, "momentum": 0.9},
]
CORRECTION = 1.0 - 0.99**2  # the bias correction of step 2 at the pytorch preset's beta
STORAGE = [
    (torch.float32, torch.float32),
    (torch.float64, torch.float64),
    (torch.bfloat16, torch.float32),
    (torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float32),
    (torch.float16, torch.float16),
    (torch.float32, torch.float64),
]


def launch(members, hp, float32_arithmetic=False, correction=1.0):
    """One step of the Numba group kernel over ``members`` (torch tensors)."""
    kernels.Launch(members, hp, float32_arithmetic=float32_arithmetic)(
        [g for _, g, _ in members], hp, correction
    )


def members(p_dtype, s_dtype, seed=0):
    """Sizes around the chunk and parallel thresholds, special values, odd layouts."""
    generator = torch.Generator().manual_seed(seed)

    def make(shape, dtype, positive=False, layout=None):
        x = torch.randn(shape, generator=generator, dtype=torch.float64)
        x = (x.abs() * 0.1 if positive else x).to(dtype)
        return x.contiguous(memory_format=layout) if layout is not None else x

    out = []
    for shape, layout in [
        ((0,), None), ((1,), None), ((17,), None), ((kernels.GROUP_CHUNK + 5,), None),
        ((3, 5, 7, 9), torch.channels_last), ((40, 30), None),
    ]:  # fmt: skip
        p, g = make(shape, p_dtype, layout=layout), make(shape, p_dtype, layout=layout)
        if p.numel() > 6:  # special values at the start of memory, in any layout
            flat = g.as_strided((g.numel(),), (1,), g.storage_offset())
            flat[:4] = torch.tensor([0.0, float("inf"), float("nan"), 1e30])
        state = [make(shape, s_dtype, i == 0, layout) for i in range(3)]
        out.append((p, g, state))
    p, g = (torch.randn(30, 40, generator=generator).to(p_dtype).t() for _ in range(2))
    out.append((p, g, [torch.rand(30, 40, generator=generator).to(s_dtype).t() for _ in range(3)]))
    return out


def covering():
    """Every storage pair with the seed's options and with the largest set, every option
    set with float32 and with bfloat16 storage: reading and rounding a kind are one
    function each, the same for every option, and each pair is a compile of its own."""
    for i, options in enumerate(OPTION_SETS):
        for pair in STORAGE:
            if i in (0, 1) or pair in STORAGE[:1] + STORAGE[3:4]:
                yield options, *pair


@pytest.mark.parametrize(("options", "p_dtype", "s_dtype"), list(covering()), ids=str)
def test_one_launch_equals_the_foreach_path_bit_for_bit(options, p_dtype, s_dtype):
    hp = Hyperparameters.from_preset("pytorch", **options)
    ours = members(p_dtype, s_dtype)
    theirs = [
        (
            p.clone(memory_format=torch.preserve_format),
            g,
            [b.clone(memory_format=torch.preserve_format) for b in bs],
        )
        for p, g, bs in ours
    ]
    launch(ours, hp, correction=CORRECTION)
    foreach_update(theirs, hp, torch.float64, CORRECTION)
    assert_identical(ours, theirs)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_the_optimizer_on_a_channels_last_model_equals_the_foreach_path(layout):
    """Steps 2 on run on a kept plan; parameters and state in channels_last stay so."""
    results = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            torch.manual_seed(0)
            net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3),
            ).to(memory_format=layout)  # fmt: skip
            opt = rmsprop.torch.RMSProp(net.parameters(), preset="pytorch", lr=1e-2, momentum=0.9)
            x = torch.randn(4, 3, 10, 10).to(memory_format=layout)
            for _ in range(4):
                opt.zero_grad()
                torch.nn.functional.mse_loss(net(x), torch.zeros(4, 3)).backward()
                opt.step()
            weight = net[0].weight
            assert opt.state[weight]["square_avg"].stride() == weight.stride()
            results.append([p.detach().clone() for p in net.parameters()])
            if enabled:
                assert opt._plans, "a plan is kept for the group"
        finally:
            _accel.set_enabled(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_bfloat16_parameters_with_float32_state_and_groups_of_mixed_dtypes():
    results = []
    for enabled in (True, False):
        previous = _accel.set_enabled(enabled)
        try:
            generator = torch.Generator().manual_seed(1)
            low = [torch.nn.Parameter(torch.randn(50, 40, generator=generator).bfloat16())]
            wide = [torch.nn.Parameter(torch.randn(300, generator=generator).double())]
            opt = rmsprop.torch.RMSProp(
                [{"params": low, "centered": True}, {"params": wide}],
                preset="pytorch", lr=1e-2, state_dtype=torch.float32,
            )  # fmt: skip
            for step in range(3):
                for p in (*low, *wide):
                    p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)
                if step == 1:
                    wide[0].grad = None  # a parameter without a gradient this step
                opt.step()
            results.append([p.detach().clone() for p in (*low, *wide)])
        finally:
            _accel.set_enabled(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_a_group_added_later_gets_its_own_launch():
    generator = torch.Generator().manual_seed(2)
    first = torch.nn.Parameter(torch.randn(100, generator=generator))
    opt = rmsprop.torch.RMSProp([first], lr=0.1)
    second = torch.nn.Parameter(torch.randn(10, 10, generator=generator))
    for step in range(4):
        if step == 2:
            opt.add_param_group({"params": [second], "momentum": 0.5})
        for p in (first, second):
            p.grad = torch.ones_like(p)
        opt.step()
    assert float(opt.state[first]["step"]) == 4 and float(opt.state[second]["step"]) == 2
    expected = torch.from_numpy(np.asarray(rmsprop.step(1.0, 1.0, 0.0, 0.1, 0.9)[0]))
    assert expected.item() != 1.0  # (sanity: a step moves)


def test_sizes_and_layouts_the_kernel_does_not_take():
    can = kernel_can_update
    p = torch.zeros(4, 6, dtype=torch.int32)
    assert not can(FAMILY_DTYPES, p, p.clone(), [p.clone(), None, None])
    q = torch.zeros(4, 6)
    assert can(FAMILY_DTYPES, q, q.clone(), [q.clone(), None, None])
    assert not can(FAMILY_DTYPES, q, q.clone(), [torch.zeros(24), None, None])


def test_the_numpy_optimizer_launches_once_per_group_of_dtypes(monkeypatch):
    """Arrays of one dtype share a launch; layouts it cannot read take the per-array path;
    the numbers are those of the NumPy path, bit for bit."""
    calls = []
    launch = kernels.Launch.__call__
    monkeypatch.setattr(kernels.Launch, "__call__", lambda *a: calls.append(1) or launch(*a))

    def run(enabled):
        previous = _accel.set_enabled(enabled)
        try:
            rng = np.random.default_rng(0)
            params = [
                rng.standard_normal(3000, dtype=np.float32),
                rng.standard_normal((40, 50)).astype(np.float32),
                np.asfortranarray(rng.standard_normal((30, 20))),
                rng.standard_normal(7),
                rng.standard_normal((4, 5, 6)).transpose(2, 0, 1),  # dense, neither C nor F
            ]
            opt = rmsprop.RMSProp(params, lr=0.01, momentum=0.9, centered=True)
            for _ in range(3):
                grads = [rng.standard_normal(p.shape).astype(p.dtype) for p in params]
                grads[2] = np.asfortranarray(grads[2])
                opt.step(grads)
            return params
        finally:
            _accel.set_enabled(previous)

    ours = run(True)
    assert len(calls) == 2 * 3  # a float32 and a float64 group, three steps
    theirs = run(False)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a, b)


@numba.njit
def _decode_all(out):
    for h in range(65536):
        out[h] = kernels._read(np.uint16(h), kernels.FLOAT16)
    return out


@numba.njit
def _encode(values, out):
    for i in range(values.size):
        out[i] = kernels.narrow(values[i], kernels.FLOAT16)
    return out


def test_float16_is_read_exactly_and_written_to_nearest_even_as_numpy_and_torch_do():
    """Every one of the 65,536 half-precision patterns reads as its value; writes round
    the float64 value to float32, then to float16, to nearest even (subnormals, ties,
    overflow to infinity and NaN included)."""
    patterns = np.arange(65536, dtype=np.uint16)
    values = patterns.view(np.float16).astype(np.float64)
    assert np.array_equal(_decode_all(np.zeros(65536)), values, equal_nan=True)
    rng = np.random.default_rng(0)
    finite = values[np.isfinite(values)]
    tries = np.concatenate([
        rng.standard_normal(100_000) * 10.0 ** rng.integers(-9, 6, 100_000),
        finite, finite * (1 + 2**-11), finite * (1 - 2**-12), np.nextafter(finite, 0.0),
        [65504.0, 65519.99, 65520.0, 1e9, -1e9, np.inf, -np.inf, 2**-25, 2**-24,
         3 * 2**-26, 2**-26, 0.0, -0.0],
    ])  # fmt: skip
    got = _encode(tries, np.zeros(tries.size, np.uint16))
    with np.errstate(over="ignore"):
        expected = tries.astype(np.float32).astype(np.float16).view(np.uint16)
    assert np.array_equal(got, expected)
    nan = _encode(np.array([np.nan]), np.zeros(1, np.uint16)).view(np.float16)
    assert np.isnan(nan).all()


@pytest.mark.parametrize(
    ("p_dtype", "s_dtype"),
    [pair for pair in STORAGE if torch.float64 not in pair and pair != (torch.float32,) * 2],
    ids=str,
)
def test_float32_arithmetic_on_16_bit_storage_is_float32_storage_rounded_once(p_dtype, s_dtype):
    """float32 registers for bfloat16 and float16 storage too: 16-bit values read exactly,
    computed as float32 data would be, each result rounded once to its storage."""
    hp = Hyperparameters.from_preset("pytorch", **OPTION_SETS[1])
    ours = members(p_dtype, s_dtype, seed=3)
    wide = [  # copies: .float() of a float32 tensor is the tensor itself
        (p.to(torch.float32, copy=True), g.float(), [b.to(torch.float32, copy=True) for b in bs])
        for p, g, bs in ours
    ]
    launch(ours, hp, float32_arithmetic=True)
    launch(wide, hp, float32_arithmetic=True)
    rounded = [(p.to(p_dtype), g, [b.to(s_dtype) for b in bs]) for p, g, bs in wide]
    assert_identical(ours, rounded)


@pytest.mark.parametrize(
    "sizes",
    [
        [],
        [1],
        [5, 0, 3],
        [kernels.GROUP_CHUNK * 3 + 1],
        [kernels.GROUP_CHUNK + 7] * 50,
        [(k * 7919) % 100_000 for k in range(161)],
    ],
    ids=["none", "one", "empty-inside", "long", "uneven", "model-like"],
)
def test_the_work_table_covers_every_element_once_in_balanced_parts(sizes):
    sizes = np.array(sizes, dtype=np.int64)
    chunks, parts = kernels.work_table(sizes)
    covered = [np.zeros(n, dtype=np.int64) for n in sizes]
    for t, first, count in chunks:
        assert 0 < count <= kernels.GROUP_CHUNK
        covered[t][first : first + count] += 1
    assert all((c == 1).all() for c in covered)
    assert parts[0] == 0 and parts[-1] == len(chunks) and len(parts) == kernels.PARTS + 1
    assert (np.diff(parts) >= 0).all()
    ends = np.concatenate([[0], np.cumsum(chunks[:, 2])])
    largest = chunks[:, 2].max(initial=0)
    for threads in (1, 2, 3, 4, 8, 16):  # each thread's share within one chunk of equal
        shares = np.diff(ends[parts[:: kernels.PARTS // threads]])
        assert (np.abs(shares - ends[-1] / threads) <= largest).all()


def test_small_launches_are_cut_finer_so_that_every_thread_gets_work():
    chunks, _ = kernels.work_table(np.array([10_000], dtype=np.int64))
    assert len(chunks) >= 8
    chunks, _ = kernels.work_table(np.array([100], dtype=np.int64))
    assert chunks.tolist() == [[0, 0, 100]]


def test_float16_from_numpy_is_rounded_once_from_float64_as_astype_rounds():
    """NumPy's float16 is rounded once from float64 (through float32 would round twice:
    the values just beside each midpoint between two halves tell them apart)."""
    halves = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)
    finite = np.unique(halves[np.isfinite(halves)])
    midpoints = finite[:-1] + np.diff(finite) / 2
    tries = np.concatenate([
        midpoints, np.nextafter(midpoints, -np.inf), np.nextafter(midpoints, np.inf),
        finite, [65519.99, 65520.0, 1e9, -np.inf, 2**-25, 2**-25 * (1 + 2**-40), 2**-26],
    ])  # fmt: skip
    got = _encode_once(tries, np.zeros(tries.size, np.uint16))
    with np.errstate(over="ignore"):
        expected = tries.astype(np.float16).view(np.uint16)
        twice = tries.astype(np.float32).astype(np.float16).view(np.uint16)
    assert np.array_equal(got, expected)
    assert not np.array_equal(got, twice)  # the case this test is about does occur


@numba.njit
def _encode_once(values, out):
    for i in range(values.size):
        out[i] = kernels.narrow(values[i], kernels.FLOAT16_ONCE)
    return out
