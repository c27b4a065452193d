"""Per-call cost of small RMSProp steps, of ``import rmsprop``, and of loading the kernels.

Every case runs in the same process, in interleaved rounds (one batch of each
case per round), so machine noise hits all of them alike; the table gives the
median per call with the min and max over rounds.

    .venv/bin/python benchmarks/bench_small.py [--rounds 25]
"""

import argparse
import math
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable

import numpy as np

import rmsprop
from rmsprop import _accel

SEED_2 = ([1.0, 2.0, 3.0], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0], 0.01, 0.9)


def seed_as_written(params, grads, cache, lr, beta, eps=1e-8):
    """The seed's function as a newcomer writes it in plain Python: the peer to beat."""
    new_cache = [beta * v + (1 - beta) * g**2 for g, v in zip(grads, cache, strict=True)]
    new_params = [
        p - lr * g / math.sqrt(v + eps) for p, g, v in zip(params, grads, new_cache, strict=True)
    ]
    return new_params, new_cache


def seed_with_numpy(params, grads, cache, lr, beta, eps=1e-8):
    """The seed's function as a NumPy user writes it: convert, compute, convert back."""
    p, g, v = np.asarray(params), np.asarray(grads), np.asarray(cache)
    v = beta * v + (1 - beta) * g**2
    return (p - lr * g / np.sqrt(v + eps)).tolist(), v.tolist()


def cases() -> dict[str, Callable[[], object]]:
    p100 = np.ones(100, np.float32)
    g100 = np.full(100, 0.5, np.float32)
    v100 = np.zeros(100, np.float32)
    arrays3 = [np.array(x) for x in SEED_2[:3]]
    return {
        "rmsprop.step, seed example 2 (3-element lists)": lambda: rmsprop.step(*SEED_2),
        "plain-Python loop as the seed writes it": lambda: seed_as_written(*SEED_2),
        "NumPy round trip as the seed writes it": lambda: seed_with_numpy(*SEED_2),
        "rmsprop.step, Python floats": lambda: rmsprop.step(1.0, 0.1, 0.0, 0.1, 0.9),
        "rmsprop.step, 3-element float64 arrays": lambda: rmsprop.step(*arrays3, 0.01, 0.9),
        "rmsprop.step_, 100 float32 elements (NumPy path)": numpy_path(
            lambda: rmsprop.step_(p100, g100, v100, 1e-3, 0.9)
        ),
        "rmsprop.step_, 100 float32 elements (kernels loaded)": lambda: rmsprop.step_(
            p100, g100, v100, 1e-3, 0.9
        ),
    }


def numpy_path(function: Callable[[], object]) -> Callable[[], object]:
    """``function`` with the fused kernels turned off while it runs."""

    def call() -> object:
        previous = _accel.set_enabled(False)
        try:
            return function()
        finally:
            _accel.set_enabled(previous)

    return call


IMPORT = "import time; t = time.perf_counter(); import rmsprop; print(time.perf_counter() - t)"
# Numba imported and the first in-place step on kernels, cache warm (the import of numpy
# and rmsprop before it not counted).
FIRST_KERNEL_STEP = (
    "import numpy as np, rmsprop, time\n"
    "p, v = np.ones(100, np.float32), np.zeros(100, np.float32)\n"
    "t = time.perf_counter(); rmsprop.load_kernels(); rmsprop.step_(p, p.copy(), v, 0.1, 0.9)\n"
    "print(time.perf_counter() - t)"
)


def fresh_process_times(code: str, runs: int) -> list[float]:
    return [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
            ).stdout
        )
        for _ in range(runs)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--calls", type=int, default=20000, help="calls per batch")
    args = parser.parse_args()
    rmsprop.load_kernels()

    timers = {name: timeit.Timer(function) for name, function in cases().items()}
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(args.calls) / args.calls * 1e6)

    width = max(map(len, samples))
    print(f"{'case':<{width}}  median µs/call   (min to max over {args.rounds} rounds)")
    for name, values in samples.items():
        print(
            f"{name:<{width}}  {statistics.median(values):8.2f}        "
            f"({min(values):.2f} to {max(values):.2f})"
        )
    runs = max(5, args.rounds // 3)
    fresh_process_times(FIRST_KERNEL_STEP, 1)  # warm the disk cache of the kernels
    for name, code in (
        ("import rmsprop (fresh process, NumPy included)", IMPORT),
        ("import Numba + first kernel step_ (fresh process)", FIRST_KERNEL_STEP),
    ):
        times = fresh_process_times(code, runs)
        print(
            f"{name:<{width}}  {statistics.median(times) * 1e3:8.1f} ms     "
            f"({min(times) * 1e3:.1f} to {max(times) * 1e3:.1f})"
        )


if __name__ == "__main__":
    main()
