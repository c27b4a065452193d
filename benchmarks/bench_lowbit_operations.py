"""Low-bit state where no kernel runs: a step in torch operations (``rmsprop.torch``) and
in NumPy (``rmsprop.RMSProp``) against the kernel's.

One float32 parameter of 4,194,304 elements, ``state_bits`` 16 and 8, stepped by
``rmsprop.torch.RMSProp`` and ``rmsprop.RMSProp`` with the kernels on and off
(``rmsprop._accel.set_enabled``), medians of interleaved rounds in one process. Then,
in a child process per kind of state (glibc told to return freed memory), the peak
resident memory (``VmHWM``) that a later step adds over a parameter of 2**24 elements
stepped without the kernels: bounded by the slices, whatever the parameter's size.

    .venv/bin/python benchmarks/bench_lowbit_operations.py [--rounds 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

import rmsprop.torch
from rmsprop import _accel

CHILD = r"""
import re, sys
import numpy as np, torch, rmsprop, rmsprop.torch
from rmsprop import _accel, _lowbit_numpy
from rmsprop.torch import _lowbit_ops

def status(key):
    return int(re.search(rf"{key}:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

_accel.set_enabled(False)
front, bits, options = sys.argv[1], int(sys.argv[2]), eval(sys.argv[3])
if front == "torch":
    p = torch.nn.Parameter(torch.randn(1 << 24))
    p.grad = torch.randn(1 << 24)
    opt = rmsprop.torch.RMSProp([p], lr=1e-3, state_bits=bits, **options)
    step, size = opt.step, _lowbit_ops.SLICE
else:
    rng = np.random.default_rng(0)
    p, g = rng.standard_normal((2, 1 << 24), dtype=np.float32)
    opt = rmsprop.RMSProp([p], lr=1e-3, state_bits=bits, **options)
    step, size = (lambda: opt.step([g])), _lowbit_numpy.SLICE
step()
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
step()
added = status("VmHWM") - before
print(f"{added / 2**20:.1f} MiB, {added / size:.0f} bytes per element of a slice")
"""
FRONTS = ("torch", "numpy")


def _step(front: str, bits: int, kernels: bool) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(0)
    p = torch.nn.Parameter(torch.randn(1 << 22, generator=generator))
    p.grad = torch.randn(1 << 22, generator=generator)
    if front == "torch":
        opt = rmsprop.torch.RMSProp([p], lr=1e-3, state_bits=bits)
        run = opt.step
    else:
        array, grad = p.detach().numpy(), p.grad.numpy()
        numpy_opt = rmsprop.RMSProp([array], lr=1e-3, state_bits=bits)

        def run() -> None:
            numpy_opt.step([grad])

    def step() -> None:
        previous = _accel.set_enabled(kernels)
        try:
            run()
        finally:
            _accel.set_enabled(previous)

    step()  # state created, kernels compiled
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    rmsprop.load_kernels()
    steps = {
        (front, bits, kernels): _step(front, bits, kernels)
        for front in FRONTS for bits in (16, 8) for kernels in (True, False)
    }  # fmt: skip
    times: dict[tuple[str, int, bool], list[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - start)
    print(f"4,194,304 float32 parameters, ms a step, median of {rounds} (min to max):")
    for (front, bits, kernels), t in times.items():
        without = "torch operations" if front == "torch" else "NumPy operations"
        name = f"{front}, state_bits={bits}, {'kernel' if kernels else without}"
        print(f"  {name:<42} {statistics.median(t) * 1e3:8.1f} ({min(t) * 1e3:.1f} to "
              f"{max(t) * 1e3:.1f})")  # fmt: skip
    print("\nPeak memory a step without the kernels adds, 2**24 float32 parameters:")
    environment = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    for front in FRONTS:
        for bits in (16, 8):
            for options in ("{}", "{'momentum': 0.9, 'centered': True}"):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, front, str(bits), options],
                    env=environment, capture_output=True, text=True, check=True, timeout=600,
                )  # fmt: skip
                print(f"  {front}, state_bits={bits}, {options:<36} {out.stdout.strip()}")


if __name__ == "__main__":
    main()
