"""rounding="pytorch": torch.optim.RMSprop's numbers, bit for bit (torch.equal).

rmsprop.torch.RMSprop computes this way; rmsprop.torch.RMSProp does with
``rounding="pytorch"`` (its default, "once", is the float64 evaluation rounded once).
"""

import copy
import itertools

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402

COMBINATIONS = [
    pytest.param(m, c, wd, mx, id=f"momentum{m}-centered{c:d}-wd{wd}-maximize{mx:d}")
    for m, c, wd, mx in itertools.product([0.0, 0.9], [False, True], [0.0, 0.1], [False, True])
]


def mlp(dtype, seed=0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5)]
    return torch.nn.Sequential(*layers).to(dtype)


def train_side_by_side(nets, optimizers, steps, dtype):
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(8, 20, generator=generator, dtype=dtype)
        y = torch.randn(8, 5, generator=generator, dtype=dtype)
        for net, optimizer in zip(nets, optimizers, strict=True):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            optimizer.step()


def assert_identical(a, b):
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize(("momentum", "centered", "weight_decay", "maximize"), COMBINATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_100_steps_of_an_mlp_equal_torch_optim_rmsprop(
    dtype, momentum, centered, weight_decay, maximize
):
    options = {"momentum": momentum, "centered": centered, "weight_decay": weight_decay}
    options["maximize"] = maximize
    nets = [mlp(dtype) for _ in range(3)]
    optimizers = [
        rmsprop.torch.RMSprop(nets[0].parameters(), 1e-3, 0.9, **options),
        rmsprop.torch.RMSProp(
            nets[1].parameters(), 1e-3, preset="pytorch", beta=0.9, rounding="pytorch", **options
        ),
        torch.optim.RMSprop(nets[2].parameters(), 1e-3, 0.9, **options),
    ]
    train_side_by_side(nets, optimizers, 100, dtype)
    assert_identical(nets[0], nets[2])
    assert_identical(nets[1], nets[2])
    for ours, theirs in zip(nets[0].parameters(), nets[2].parameters(), strict=True):
        for key, value in optimizers[2].state[theirs].items():
            assert torch.equal(optimizers[0].state[ours][key], value), key


@pytest.mark.parametrize("foreach", [None, True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_a_large_parameter_and_each_foreach_setting(dtype, foreach):
    generator = torch.Generator().manual_seed(2)
    start = torch.randn(300_000, generator=generator, dtype=dtype)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    options = {"momentum": 0.9, "centered": True, "weight_decay": 0.01, "foreach": foreach}
    optimizers = [
        rmsprop.torch.RMSprop([ours], 1e-3, **options),
        torch.optim.RMSprop([theirs], 1e-3, **options),
    ]
    for _ in range(5):
        grad = torch.randn(300_000, generator=generator, dtype=dtype)
        for p, optimizer in zip((ours, theirs), optimizers, strict=True):
            p.grad = grad.clone()
            optimizer.step()
    assert torch.equal(ours, theirs)


def test_complex_parameters():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(50, dtype=torch.complex64, generator=generator)
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    optimizers = [
        rmsprop.torch.RMSprop([ours], 1e-2, momentum=0.9, centered=True),
        torch.optim.RMSprop([theirs], 1e-2, momentum=0.9, centered=True),
    ]
    for _ in range(5):
        grad = torch.randn(50, dtype=torch.complex64, generator=generator)
        for p, optimizer in zip((ours, theirs), optimizers, strict=True):
            p.grad = grad.clone()
            optimizer.step()
    assert torch.equal(ours, theirs)


def test_checkpoints_keep_the_rounding_and_resume_identically():
    nets = [mlp(torch.float32) for _ in range(2)]
    optimizers = [
        rmsprop.torch.RMSprop(nets[0].parameters(), 1e-3, momentum=0.9),
        torch.optim.RMSprop(nets[1].parameters(), 1e-3, momentum=0.9),
    ]
    train_side_by_side(nets, optimizers, 3, torch.float32)
    resumed_net = mlp(torch.float32, seed=5)
    resumed_net.load_state_dict(nets[0].state_dict())
    resumed = rmsprop.torch.RMSprop(resumed_net.parameters())
    resumed.load_state_dict(copy.deepcopy(optimizers[1].state_dict()))  # torch's checkpoint
    assert resumed.param_groups[0]["rounding"] == "pytorch"
    train_side_by_side([resumed_net, nets[1]], [resumed, optimizers[1]], 3, torch.float32)
    assert_identical(resumed_net, nets[1])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rounding": "pytorch", "eps_in_sqrt": True}, r"needs eps_in_sqrt=False"),
        ({"rounding": "pytorch", "state_dtype": torch.float32}, r"state_dtype and float32_"),
        ({"rounding": "pytorch", "float32_arithmetic": True}, r"state_dtype and float32_"),
        ({"rounding": "twice"}, r"rounding must be one of \('once', 'pytorch'\)"),
    ],
)
def test_bad_roundings_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        rmsprop.torch.RMSProp(mlp(torch.float32).parameters(), preset="pytorch", **options)
    optimizer = rmsprop.torch.RMSprop(mlp(torch.float32).parameters())
    optimizer.param_groups[0]["centered"] = True
    optimizer.param_groups[0]["eps_in_sqrt"] = True  # changed after construction
    with pytest.raises(ValueError, match=r"needs eps_in_sqrt=False"):
        optimizer.step()


# --- the fused kernel in PyTorch's order (rmsprop._torch_kernel) -----------------------------

kernels_loaded = pytest.mark.skipif(rmsprop._accel.load() is None, reason="Numba is not installed")


@kernels_loaded
@pytest.mark.parametrize(("momentum", "centered", "weight_decay", "maximize"), COMBINATIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_fused_kernel_equals_torch_on_a_300k_parameter(
    monkeypatch, dtype, momentum, centered, weight_decay, maximize
):
    from rmsprop import _torch_kernel  # noqa: PLC0415

    options = {"momentum": momentum, "centered": centered, "weight_decay": weight_decay}
    options["maximize"] = maximize
    # The first-use check launches the kernel too: run it before counting launches.
    hp = rmsprop.Hyperparameters.from_preset("pytorch", lr=1e-3, beta=0.9, **options)
    assert _torch_kernel.matches(hp, dtype)
    launches = []
    call = _torch_kernel.Launch.__call__
    monkeypatch.setattr(
        _torch_kernel.Launch, "__call__", lambda *args: launches.append(call(*args))
    )
    generator = torch.Generator().manual_seed(4)
    start = torch.randn(300_000, generator=generator, dtype=dtype)
    small = torch.randn(37, 3, generator=generator, dtype=dtype)
    ours = [torch.nn.Parameter(start.clone()), torch.nn.Parameter(small.clone())]
    theirs = [torch.nn.Parameter(start.clone()), torch.nn.Parameter(small.clone())]
    optimizers = [
        rmsprop.torch.RMSprop(ours, 1e-3, 0.9, **options),
        torch.optim.RMSprop(theirs, 1e-3, 0.9, **options),
    ]
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=generator, dtype=dtype) for p in ours]
        for params, optimizer in zip((ours, theirs), optimizers, strict=True):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
    assert len(launches) == 4, "the fused kernel ran every step"
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        for key, value in optimizers[1].state[b].items():
            assert torch.equal(optimizers[0].state[a][key], value), key


@kernels_loaded
def test_where_the_kernel_does_not_match_torch_computes_it(monkeypatch):
    from rmsprop import _torch_kernel  # noqa: PLC0415

    monkeypatch.setattr(_torch_kernel, "matches", lambda hp, dtype, device=None: False)
    monkeypatch.setattr(_torch_kernel.Launch, "__call__", lambda *args: pytest.fail("kernel ran"))
    nets = [mlp(torch.float32) for _ in range(2)]
    optimizers = [
        rmsprop.torch.RMSprop(nets[0].parameters(), 1e-3, momentum=0.9),
        torch.optim.RMSprop(nets[1].parameters(), 1e-3, momentum=0.9),
    ]
    train_side_by_side(nets, optimizers, 5, torch.float32)
    assert_identical(nets[0], nets[1])


@kernels_loaded
def test_a_torch_without_fused_multiply_adds_is_detected():
    """At ATEN_CPU_CAPABILITY=default torch's kernels round each product: the first-use
    check finds that the kernel differs, and torch's functional computes the step."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = """
import torch, rmsprop, rmsprop.torch
from rmsprop import _torch_kernel
hp = rmsprop.Hyperparameters.from_preset("pytorch", momentum=0.9)
assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
assert not _torch_kernel.matches(hp, torch.float32)
torch.manual_seed(0)
a, b = (torch.nn.Parameter(torch.randn(100_000)) for _ in range(2))
b.data.copy_(a)
ours, theirs = rmsprop.torch.RMSprop([a], momentum=0.9), torch.optim.RMSprop([b], momentum=0.9)
for _ in range(3):
    g = torch.randn(100_000)
    a.grad, b.grad = g.clone(), g.clone()
    ours.step(), theirs.step()
assert torch.equal(a, b)
print("ok")
"""
    env = {**__import__("os").environ, "ATEN_CPU_CAPABILITY": "default"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stdout + done.stderr[-3000:]
