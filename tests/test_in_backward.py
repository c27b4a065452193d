"""step_in_backward=True: each parameter stepped inside backward(), its gradient freed.

The same numbers as ordinary stepping (torch.equal), the same checkpoints, a lower
peak memory, and clear refusals of what cannot work.
"""

import copy
import gc
import os
import pickle
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import rmsprop.torch  # noqa: E402

OPTIMIZERS = [
    pytest.param(
        rmsprop.torch.RMSProp, {"lr": 0.01, "momentum": 0.9, "centered": True}, id="RMSProp"
    ),
    pytest.param(
        rmsprop.torch.RMSProp,
        {"lr": 0.01, "preset": "pytorch", "weight_decay": 0.1, "float32_arithmetic": True},
        id="RMSProp-float32_arithmetic",
    ),
    pytest.param(rmsprop.torch.RMSprop, {"lr": 0.01, "momentum": 0.9}, id="RMSprop"),
]


def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5)).to(
        dtype
    )


def cnn(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 5),
    ).to(dtype)  # fmt: skip


def batch(net, generator, dtype):
    shape = (8, 20) if isinstance(net[0], torch.nn.Linear) else (8, 3, 8, 8)
    return torch.randn(shape, generator=generator, dtype=dtype), torch.randn(
        8, 5, generator=generator, dtype=dtype
    )


def train(pairs, steps, dtype, seed=1):
    """Train each (net, optimizer, scheduler) on the same batches."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = batch(pairs[0][0], generator, dtype)
        for net, opt, schedule in pairs:
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
            schedule.step()


def assert_same(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize(("cls", "options"), OPTIMIZERS)
@pytest.mark.parametrize("make", [mlp, cnn])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_twenty_steps_equal_ordinary_stepping(cls, options, make, dtype):
    nets = [make(dtype), make(dtype)]
    optimizers = [cls(nets[0].parameters(), **options)]
    optimizers.append(cls(nets[1].parameters(), step_in_backward=True, **options))
    schedules = [torch.optim.lr_scheduler.StepLR(opt, 5, 0.5) for opt in optimizers]
    train(list(zip(nets, optimizers, schedules, strict=True)), 20, dtype)
    assert_same(*nets)
    assert all(p.grad is None for p in nets[1].parameters())  # freed inside backward
    assert optimizers[0].state_dict()["state"].keys() == optimizers[1].state_dict()["state"].keys()


def test_checkpoints_move_between_the_modes_and_torch():
    nets = [mlp(torch.float32) for _ in range(4)]
    first = rmsprop.torch.RMSprop(
        nets[0].parameters(), lr=0.01, momentum=0.9, step_in_backward=True
    )
    constant = torch.optim.lr_scheduler.LambdaLR(first, lambda _: 1.0)
    train([(nets[0], first, constant)], 5, torch.float32)
    saved = first.state_dict()
    others = [
        rmsprop.torch.RMSprop(nets[1].parameters(), lr=0.01, momentum=0.9),
        torch.optim.RMSprop(nets[2].parameters(), lr=0.01, momentum=0.9),
        rmsprop.torch.RMSprop(nets[3].parameters(), lr=0.01, momentum=0.9, step_in_backward=True),
    ]
    for net, opt in zip(nets[1:], others, strict=True):
        net.load_state_dict(nets[0].state_dict())
        opt.load_state_dict(copy.deepcopy(saved))
    pairs = [(net, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
             for net, opt in zip(nets, [first, *others], strict=True)]  # fmt: skip
    train(pairs, 5, torch.float32, seed=2)
    for net in nets[1:]:
        assert_same(nets[0], net)
    # And back: torch's checkpoint into an optimizer that steps inside backward().
    back = mlp(torch.float32)
    back.load_state_dict(nets[2].state_dict())
    opt = rmsprop.torch.RMSprop(back.parameters(), lr=0.01, momentum=0.9, step_in_backward=True)
    opt.load_state_dict(copy.deepcopy(others[1].state_dict()))  # not sharing its buffers
    pairs = [
        (nets[2], others[1], pairs[2][2]),
        (back, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)),
    ]
    train(pairs, 3, torch.float32, seed=3)
    assert_same(nets[2], back)


def test_a_second_backward_before_step_is_refused_and_writes_nothing():
    net = mlp(torch.float64)
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=0.01, step_in_backward=True)
    x, y = torch.ones(2, 20, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64)
    torch.nn.functional.mse_loss(net(x), y).backward()
    before = [p.clone() for p in net.parameters()]
    state = copy.deepcopy(opt.state_dict())
    with pytest.raises(RuntimeError, match="second backward before step"):
        torch.nn.functional.mse_loss(net(x), y).backward()
    opt.step()  # steps no partial gradient
    for p, q in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, q)
    assert str(opt.state_dict()) == str(state)
    torch.nn.functional.mse_loss(net(x), y).backward()  # the next iteration steps again
    assert not all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


def test_more_than_one_process_is_refused(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    with pytest.raises(RuntimeError, match="more than one process"):
        rmsprop.torch.RMSProp(mlp(torch.float32).parameters(), lr=0.01, step_in_backward=True)
    opt = rmsprop.torch.RMSProp(mlp(torch.float32).parameters(), lr=0.01)  # stepping normally
    assert opt._hooks is None


def test_copies_step_their_own_parameters_and_a_dropped_optimizer_none():
    net = mlp(torch.float64)
    opt = rmsprop.torch.RMSProp(net.parameters(), lr=0.01, step_in_backward=True)
    x, y = torch.ones(2, 20, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64)
    torch.nn.functional.mse_loss(net(x), y).backward()
    opt.step()
    for copied in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        params = copied.param_groups[0]["params"]
        sum((p * p).sum() for p in params).backward()
        assert all(p.grad is None and copied.state[p]["step"].item() == 2 for p in params)
    assert all(opt.state[p]["step"].item() == 1 for p in net.parameters())
    del opt, copied
    gc.collect()
    torch.nn.functional.mse_loss(net(x), y).backward()  # no optimizer: gradients stay
    assert all(p.grad is not None for p in net.parameters())


MEMORY = r"""
import gc, re, sys, torch, rmsprop.torch

def status(key):
    return int(re.search(rf"{key}:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

torch.manual_seed(0)
layers = []
for _ in range(16):  # 16 parameters of 1 MiB: the largest is 1/16 of the model
    layers += [torch.nn.Linear(512, 512, bias=False), torch.nn.Tanh()]
net = torch.nn.Sequential(*layers)
opt = rmsprop.torch.RMSProp(net.parameters(), lr=1e-3, step_in_backward=sys.argv[1] == "1")
x = torch.randn(2, 512)

def train_step():
    opt.zero_grad(set_to_none=True)
    net(x).square().sum().backward()
    opt.step()

train_step()  # the state, allocated once
opt.zero_grad(set_to_none=True)
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
train_step()
print(status("VmHWM") - base)
"""


@pytest.mark.subprocess
def test_a_training_step_peaks_without_the_gradients():
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    peaks = []
    for in_backward in ("0", "1"):
        done = subprocess.run(
            [sys.executable, "-c", MEMORY, in_backward],
            capture_output=True, text=True, timeout=120, check=False, env=env,
        )  # fmt: skip
        if done.returncode != 0 and "clear_refs" in done.stderr:
            pytest.skip("this kernel does not let a process reset its peak memory")
        assert done.returncode == 0, done.stderr
        peaks.append(int(done.stdout))
    gradients = 16 * 512 * 512 * 4
    assert peaks[0] - peaks[1] >= 0.8 * gradients, peaks
