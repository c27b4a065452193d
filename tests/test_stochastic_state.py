"""bfloat16 state written with stochastic rounding by the Numba group kernel.

Against a reference written here from the rule itself: the step evaluated in float64
by rmsprop._rule.family_update on NumPy arrays, each state value rounded to float32,
then to bfloat16 with the 16-bit words of the element's draw (rmsprop._random) from
the sequence of (seed, step, stream); the parameter rounded once, as without
stochastic rounding.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
kernels = pytest.importorskip("rmsprop._kernels", reason="Numba is not installed")

from rmsprop import Hyperparameters, _lowbit_numpy, _random, _rule  # noqa: E402
from rmsprop.torch import _lowbit_ops  # noqa: E402

OPTION_SETS = [
    {},
    {"momentum": 0.9, "centered": True, "weight_decay": 0.1},
    {"momentum": 0.5, "nesterov": True, "eps_in_sqrt": False, "maximize": True},
]


def _bits(t):
    return t.view(torch.int16).numpy().astype(np.int64) & 0xFFFF


def _reference(p, g, state, hp, step, stream, seed):
    """New parameter (float32) and state bits (bfloat16) for one member."""
    wide = [torch.zeros(0) if b is None else b.double().numpy().ravel() for b in state]
    new_p, new = _rule.family_update(
        p.double().numpy().ravel(), g.double().numpy().ravel(),
        _rule.State(wide[0], wide[1] if hp.momentum else 0.0, wide[2] if hp.centered else 0.0),
        hp, np.sqrt, lambda x: np.maximum(x, 0.0), 1.0,
    )  # fmt: skip
    j = np.arange(p.numel(), dtype=np.uint64)
    bits64 = _random.draw(_random.start(seed, step, stream), j)
    out = []
    for k, value in enumerate((new.cache, new.momentum_buffer, new.grad_avg)):
        bits = np.asarray(value, np.float64).astype(np.float32).view(np.uint32).astype(np.int64)
        random = _random.word(bits64, k).astype(np.int64)
        out.append(_random.round_bfloat16(bits, random, np.where))
    return np.asarray(new_p, np.float64).astype(np.float32), out


def _numpy_views(t):
    """A CPU tensor's memory as a NumPy array (bfloat16: ml_dtypes')."""
    if t is None or t.dtype != torch.bfloat16:
        return None if t is None else t.numpy()
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)


@pytest.mark.parametrize("launch_type", ["numba", "ops", "numpy"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_the_kernel_writes_the_references_bits(options, launch_type):
    """The Numba kernel, and its step in torch operations (for devices without it) and
    in NumPy (rmsprop.RMSProp without it), on the same memory."""
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    generator = torch.Generator().manual_seed(0)
    sizes = [1, 7, 40_000, 70_000]
    members, counters, streams = [], [], []
    for k, n in enumerate(sizes):
        p = torch.randn(n, generator=generator)
        g = torch.randn(n, generator=generator)
        state = [torch.rand(n, generator=generator).bfloat16()]
        state.append(torch.randn(n, generator=generator).bfloat16() if hp.momentum else None)
        state.append(torch.randn(n, generator=generator).bfloat16() * 0.1 if hp.centered else None)
        members.append((p, g, state))
        counters.append(torch.tensor(float(3 + k)))
        streams.append(11 * k)
    seed = 2**40 + 12345
    expected = [
        _reference(p, g, state, hp, int(counters[k]) + 1, streams[k], seed)
        for k, (p, g, state) in enumerate(members)
    ]
    grads = [g for _, g, _ in members]
    if launch_type == "numpy":
        arrays = [(p.numpy(), g.numpy(), [_numpy_views(b) for b in state])
                  for p, g, state in members]  # fmt: skip
        stochastic = ([c.numpy() for c in counters], streams, seed)
        _lowbit_numpy.Launch(arrays, hp, stochastic=stochastic)([g.numpy() for g in grads], hp)
    else:
        make = kernels.Launch if launch_type == "numba" else _lowbit_ops.Launch
        make(members, hp, stochastic=(counters, streams, seed))(grads, hp)
    for (p, _, state), (new_p, new_state) in zip(members, expected, strict=True):
        assert np.array_equal(p.numpy(), new_p)
        for buffer, bits in zip(state, new_state, strict=False):
            if buffer is not None:
                assert np.array_equal(_bits(buffer), bits)


def test_the_rounding_is_unbiased_over_steps():
    """A constant gradient: the square average of 200,000 elements, averaged over the
    elements, follows the float64 recursion within its sampling error."""
    hp = Hyperparameters.from_preset("pytorch", lr=0.0, beta=0.999)
    n = 200_000
    p, g = torch.zeros(n), torch.full((n,), 0.3)
    v = torch.zeros(n).bfloat16()
    counter = torch.tensor(0.0)
    launch = kernels.Launch([(p, g, [v, None, None])], hp, stochastic=([counter], [0], 7))
    exact = 0.0
    for _ in range(300):
        launch([g], hp)
        counter += 1
        exact = 0.999 * exact + 0.001 * 0.09
    mean = float(v.double().mean())
    nearest = float(torch.tensor(exact).bfloat16().double())
    assert abs(mean - exact) < 2e-4 * exact  # round-to-nearest stalls: a bias of ~0.2 %
    assert abs(nearest - exact) > abs(mean - exact)


def test_the_same_seed_and_step_give_the_same_bits():
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2)
    results = []
    for seed in (1, 1, 2):
        p, g = torch.ones(5000), torch.full((5000,), 0.37)
        v = torch.full((5000,), 0.01).bfloat16()
        counter = torch.tensor(4.0)  # the caller keeps it alive, as the state does
        kernels.Launch([(p, g, [v, None, None])], hp, stochastic=([counter], [3], seed))([g], hp)
        results.append(_bits(v))
    assert np.array_equal(results[0], results[1]) and not np.array_equal(results[0], results[2])


# --- rmsprop.torch.RMSProp(state_bits=16) ---------------------------------------------------

import copy  # noqa: E402

import rmsprop.torch  # noqa: E402
from rmsprop import _accel  # noqa: E402


def _params(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in ((30, 20), (7,), ())]


def _grads(params, generator):
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)


@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_the_optimizer_steps_as_the_reference(options):
    params = _params()
    opt = rmsprop.torch.RMSProp(params, preset="pytorch", lr=1e-2, state_bits=16, seed=9, **options)
    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    expected = [p.detach().clone() for p in params]
    state = [[torch.zeros(p.shape).bfloat16() if on else None for on in
              (True, bool(hp.momentum), hp.centered)] for p in params]  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    for step in range(1, 4):
        _grads(params, generator)
        for k, p in enumerate(params):
            new_p, bits = _reference(expected[k], p.grad, state[k], hp, step, k, 9)
            expected[k] = torch.from_numpy(new_p)
            for b, (buffer, value) in enumerate(zip(state[k], bits, strict=False)):
                if buffer is not None:
                    bits16 = torch.from_numpy(value.astype(np.uint16).view(np.int16))
                    state[k][b] = bits16.view(torch.bfloat16).reshape(p.shape)
        opt.step()
    for k, p in enumerate(params):
        assert torch.equal(p.detach(), expected[k].reshape(p.shape))
        assert opt.state[p]["square_avg"].dtype == torch.bfloat16
        assert torch.equal(opt.state[p]["square_avg"].flatten(), state[k][0].flatten())


def test_a_checkpoint_resumes_bit_for_bit():
    generator = torch.Generator().manual_seed(2)
    grads = [[torch.randn(p.shape, generator=generator) for p in _params()] for _ in range(4)]

    def train(params, opt, steps):
        for g in steps:
            for p, gradient in zip(params, g, strict=True):
                p.grad = gradient.clone()
            opt.step()

    whole = _params()
    opt = rmsprop.torch.RMSProp(whole, preset="pytorch", momentum=0.9, state_bits=16, seed=3)
    train(whole, opt, grads)
    first = _params()
    opt = rmsprop.torch.RMSProp(first, preset="pytorch", momentum=0.9, state_bits=16, seed=3)
    train(first, opt, grads[:2])
    saved = copy.deepcopy(opt.state_dict())
    assert saved["param_groups"][0]["state_bits"] == 16 and saved["param_groups"][0]["seed"] == 3
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in first]
    opt = rmsprop.torch.RMSProp(resumed, preset="pytorch", momentum=0.9, state_bits=16, seed=3)
    opt.load_state_dict(saved)
    train(resumed, opt, grads[2:])
    for a, b in zip(whole, resumed, strict=True):
        assert torch.equal(a, b)


def test_options_and_parameters_it_cannot_round_stochastically_are_refused():
    """(Tensors the kernels do not take, and no kernels: test_blockwise_state, for both
    state_bits 16 and 8.)"""
    with pytest.raises(ValueError, match="state_bits"):
        rmsprop.torch.RMSProp(_params(), lr=0.1, state_bits=4)
    with pytest.raises(ValueError, match="rounding='once'"):
        rmsprop.torch.RMSProp(_params(), lr=0.1, state_bits=16, state_dtype=torch.float32)
    complex_param = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(RuntimeError, match="kernels"):
        rmsprop.torch.RMSProp([complex_param], lr=0.1, state_bits=16)


@pytest.mark.parametrize("options", OPTION_SETS[:2], ids=str)
def test_the_triton_kernel_writes_the_same_bits(options):
    """Under Triton's interpreter (CPU tensors), the GPU kernel's stochastic rounding
    gives the CPU kernel's bits: the same random draws, the same rounding."""
    pytest.importorskip("triton")
    from rmsprop import _triton  # noqa: PLC0415

    hp = Hyperparameters.from_preset("pytorch", lr=1e-2, **options)
    results = []
    for launch_type in (kernels.Launch, _triton.Launch):
        generator = torch.Generator().manual_seed(5)
        members, counters = [], []
        for n in (3, 20_000):
            p, g = torch.randn(n, generator=generator), torch.randn(n, generator=generator)
            state = [torch.rand(n, generator=generator).bfloat16()]
            state.append(torch.randn(n, generator=generator).bfloat16() if hp.momentum else None)
            state.append(torch.randn(n, generator=generator).bfloat16() if hp.centered else None)
            members.append((p, g, state))
            counters.append(torch.tensor(6.0))
        sizing = {"chunk": 1 << 14, "block": 1 << 14} if launch_type is _triton.Launch else {}
        launch = launch_type(members, hp, stochastic=(counters, [4, 9], 77), **sizing)
        with np.errstate(all="ignore"):
            launch([g for _, g, _ in members], hp)
        results.append([t.clone() for p, _, s in members for t in (p, *s) if t is not None])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a.view(torch.int16) if a.dtype == torch.bfloat16 else a,
                           b.view(torch.int16) if b.dtype == torch.bfloat16 else b)  # fmt: skip


def test_the_optimizer_on_the_triton_kernel_equals_it_on_the_cpu_kernel(monkeypatch):
    """CPU tensors sent to the Triton kernel (as CUDA ones would be), under its
    interpreter, against the Numba kernel: parameters and state bit for bit."""
    pytest.importorskip("triton")
    import rmsprop._dispatch  # noqa: PLC0415

    results = []
    for triton_path in (False, True):
        if triton_path:
            monkeypatch.setattr(rmsprop._dispatch, "GPU_DEVICE_TYPES", ("cpu",))
        previous = _accel.set_enabled(not triton_path)
        try:
            params = _params(4)
            opt = rmsprop.torch.RMSProp(
                params, preset="pytorch", lr=1e-2, momentum=0.9, state_bits=16, seed=21
            )
            generator = torch.Generator().manual_seed(8)
            for _ in range(3):
                _grads(params, generator)
                with np.errstate(all="ignore"):
                    opt.step()
            results.append(
                [p.detach().clone() for p in params]
                + [opt.state[p][k].view(torch.int16).clone() for p in params
                   for k in ("square_avg", "momentum_buffer")]
            )  # fmt: skip
        finally:
            _accel.set_enabled(previous)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_a_small_model_in_a_fresh_process_loads_the_kernels_it_needs():
    """Below the size that loads Numba for speed (rmsprop._accel), stochastic rounding
    still needs the kernels: a tiny model steps instead of being refused."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import torch, rmsprop.torch\n"
        "w = torch.nn.Parameter(torch.ones(7))\n"
        "opt = rmsprop.torch.RMSProp([w], lr=0.1, state_bits=16, step_in_backward=True)\n"
        "(w * torch.arange(7.0)).sum().backward()\n"
        "opt.step()\n"
        "print(opt.state[w]['square_avg'].dtype, float(w[1]) < 1.0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["torch.bfloat16", "True"]
