"""The kernels' disk cache: a build compiled in one process is loaded by the next.

Before the fix, every kernel closed over compiled functions, whose pickle holds a
per-process id: Numba keyed the cache on it, never found an entry, compiled every
kernel again in every process (2 to 5 s each) and added a file each time.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("numba", reason="Numba is not installed")
pytest.importorskip("torch", reason="PyTorch is not installed")

pytestmark = pytest.mark.subprocess

SCRIPT = textwrap.dedent(
    """
    import numpy as np, torch
    from numba.core import event
    import rmsprop, rmsprop.torch

    compiled = []

    class Compiles(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            compiled.append(ev.data["dispatcher"].py_func.__qualname__)

    event.register("numba:compile", Compiles())
    for dtype in (np.float32, np.float64):
        for n in (1_000, 100_000):  # one thread, and every thread
            p, g, v = np.ones(n, dtype), np.full(n, 0.5, dtype), np.zeros(n, dtype)
            rmsprop.step_(p, g, v, lr=0.01, beta=0.9)
            assert p[0] == dtype(1 - 0.01 * 0.5 / np.sqrt(0.1 * 0.25 + 1e-8))
    w = torch.nn.Parameter(torch.ones(100_000))
    opt = rmsprop.torch.RMSprop([w], lr=0.01, momentum=0.9)  # torch's rounding: its kernel
    w.grad = torch.full_like(w, 0.5)
    opt.step()
    print(" ".join(sorted(set(compiled))))
    """
)


def run(cache: str) -> str:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONFAULTHANDLER="1")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_second_process_compiles_no_kernel_and_adds_no_file(tmp_path):
    first = run(str(tmp_path))
    names = set(first.split())
    assert "_address_table" in names  # compiled (with the helpers they inline)
    assert {name.rsplit("_", 1)[0] for name in names if name.startswith("kernel_")} == {"kernel"}
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert run(str(tmp_path)) == ""  # all loaded from the cache
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == files
    # One index per function and build, holding one entry: processes that add different
    # builds at the same time never write to the same file.
    indexes = [name for name in files if name.endswith(".nbi")]
    data = [name for name in files if name.endswith(".nbc")]
    assert len(indexes) == len(data) == len(set(indexes))
    assert all(name.endswith(".1.nbc") for name in data)
