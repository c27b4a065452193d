"""Hogwild training: forked children step one shared model, as PyTorch's Hogwild example.

Each case runs in a child Python bounded by a timeout (a hang fails the test, never
blocks the suite): children made by ``torch.multiprocessing`` with the fork start
method each build an optimizer over the shared parameters and train; the parent ran
a parallel kernel before forking, or did not. The children set one torch thread each,
as PyTorch advises for CPU Hogwild: without it torch's own first matmul in a forked
child hangs here, rmsprop or not.
"""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("numba", reason="Numba is not installed")

SCRIPT = """
import sys
import torch
import torch.multiprocessing as mp
import rmsprop, rmsprop.torch

parent_ran_kernel, concurrent = sys.argv[1] == "1", sys.argv[2] == "1"
rmsprop.load_kernels()
if parent_ran_kernel:  # a parallel kernel in the parent, before any fork
    w = torch.nn.Parameter(torch.ones(100_000, dtype=torch.float64))
    w.grad = torch.ones_like(w)
    rmsprop.torch.RMSprop([w]).step()


def make():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(256, 512), torch.nn.Tanh(), torch.nn.Linear(512, 10)]
    return torch.nn.Sequential(*layers).double()  # 136,714 values: the kernels' size


def train(model, optimizer_class, rank):
    # As PyTorch's multiprocessing notes advise: a forked child's first OpenMP region
    # hangs in torch's own matmul otherwise (GNU OpenMP is not fork-safe), with or
    # without rmsprop (measured here).
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(rank)
    opt = optimizer_class(model.parameters(), 1e-3, 0.9, momentum=0.9, centered=True)
    for _ in range(10):
        x = torch.randn(16, 256, generator=generator, dtype=torch.float64)
        y = torch.randn(16, 10, generator=generator, dtype=torch.float64)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def hogwild(optimizer_class):
    model = make()
    model.share_memory()
    children = []
    for rank in range(2):
        child = mp.get_context("fork").Process(target=train, args=(model, optimizer_class, rank))
        child.start()
        if not concurrent:  # one after the other: a result that does not depend on timing
            child.join(60)
        children.append(child)
    for child in children:
        child.join(60)
        assert child.exitcode == 0, child.exitcode
    return [p.detach().clone() for p in model.parameters()]


ours, theirs, start = hogwild(rmsprop.torch.RMSprop), hogwild(torch.optim.RMSprop), make()
for a, b, s in zip(ours, theirs, start.parameters()):
    assert torch.isfinite(a).all() and not torch.equal(a, s)
    if not concurrent:
        # float64, rounded once against rounded per operation, over 20 steps: 7e-12 measured
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-10
print("ok")
"""


@pytest.mark.parametrize("concurrent", [False, True], ids=["in-turn", "concurrent"])
@pytest.mark.parametrize(
    "parent_ran_kernel", [False, True], ids=["fresh-parent", "parent-ran-kernel"]
)
def test_hogwild_children_finish_and_match_torch_optim_rmsprop(parent_ran_kernel, concurrent):
    args = [sys.executable, "-c", textwrap.dedent(SCRIPT), str(int(parent_ran_kernel))]
    # A session of its own: on a timeout the forked grandchildren are killed too.
    with subprocess.Popen(
        [*args, str(int(concurrent))], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    ) as child:  # fmt: skip
        try:
            stdout, stderr = child.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
            pytest.fail(f"Hogwild run did not finish in 180 s: {stdout}{stderr[-3000:]}")
    assert child.returncode == 0 and stdout.endswith("ok\n"), stdout + stderr[-3000:]
