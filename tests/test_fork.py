"""Fused kernels in forked processes and with a threading layer that cannot start.

Each case runs in a child Python bounded by a timeout: before the fix, GNU OpenMP
killed a forked child whose parent had run a parallel kernel, a fork Pool never
returned, and NUMBA_THREADING_LAYER=tbb without TBB raised on every large array.
"""

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba", reason="Numba is not installed")

PRELUDE = """
import multiprocessing, os, sys
import numpy as np
import rmsprop

N = 100_000  # above the parallel threshold


def arrays(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(N), rng.standard_normal(N), rng.random(N)


def expected(seed):
    p, g, v = arrays(seed)
    return rmsprop.step(p, g, v, lr=0.1, beta=0.9)[0]


def stepped(seed):
    p, g, v = arrays(seed)
    rmsprop.step_(p, g, v, lr=0.1, beta=0.9)
    return p


rmsprop.load_kernels()
stepped(0)  # the parent runs a parallel kernel first
"""

CASES = {
    "os.fork": """
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(stepped(1), expected(1)) else 3)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
""",
    "fork Pool": """
with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map(stepped, range(4))
assert all(np.array_equal(r, expected(i)) for i, r in enumerate(results))
""",
    "DataLoader workers across epochs": """
import torch

class Steps(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return stepped(i)

loader = torch.utils.data.DataLoader(Steps(), batch_size=None, num_workers=2)
for epoch in range(2):
    for i, result in enumerate(loader):
        assert np.array_equal(result.numpy(), expected(i))
    stepped(0)  # and the parent keeps running kernels between epochs
""",
}


def layers():
    available = ["omp", "workqueue"]
    if importlib.util.find_spec("tbb") is not None:
        available.append("tbb")
    return available


def run(code, layer, timeout=120):
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    script = PRELUDE + textwrap.dedent(code) + "\nprint('ok')\n"
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("layer", layers())
@pytest.mark.parametrize("case", list(CASES))
def test_children_forked_after_a_parallel_kernel_run_kernels_too(case, layer):
    if case.startswith("DataLoader"):
        pytest.importorskip("torch")
    done = run(CASES[case], layer)
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stdout + done.stderr


@pytest.mark.skipif(importlib.util.find_spec("tbb") is not None, reason="TBB is installed")
def test_a_threading_layer_that_cannot_start_falls_back_to_one_thread_with_one_warning():
    code = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for seed in range(3):
        assert np.array_equal(stepped(seed), expected(seed))
assert len(caught) == 0, caught  # the one warning came with the prelude's first kernel
"""
    done = run(code, "tbb")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("threading layer failed to start") == 1, done.stderr
