"""One step over ResNet-50's shapes with float32 state, bfloat16 state rounded to nearest
and bfloat16 state rounded stochastically (``state_bits=16``), beside the 5-stream
roofline over flat arrays of the same size; medians of 9 interleaved rounds, with min
and max, and each one's share of the 20-byte roofline.

    .venv/bin/python benchmarks/bench_state_bits.py
"""

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import rmsprop
import rmsprop.torch
from rmsprop import bench
from rmsprop.bench._peers import resnet50_shapes


def optimizer_step(shapes: list[tuple[int, ...]], **options: Any) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)
    opt = rmsprop.torch.RMSProp(params, lr=1e-3, beta=0.9, **options)
    opt.step()
    opt.step()
    return opt.step


def main() -> None:
    rmsprop.load_kernels()
    shapes = resnet50_shapes()
    n = sum(math.prod(s) for s in shapes)
    roofline = bench.roofline_kernel()
    arrays = [np.random.default_rng(k).standard_normal(n, dtype=np.float32) for k in (0, 1)]
    arrays.append(np.zeros(n, np.float32))
    steps = {
        "roofline: 5-stream loop (20 B)": lambda: roofline(*arrays),
        "float32 state, float32 arithmetic": optimizer_step(shapes, float32_arithmetic=True),
        "bfloat16 state to nearest, float32 arithmetic": optimizer_step(
            shapes, float32_arithmetic=True, state_dtype=torch.bfloat16
        ),
        "state_bits=16, float32 arithmetic": optimizer_step(
            shapes, float32_arithmetic=True, state_bits=16
        ),
        "float32 state, default rounding": optimizer_step(shapes),
        "state_bits=16, default rounding": optimizer_step(shapes, state_bits=16),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(9):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            started = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times[names[0]])
    width = max(map(len, names))
    print(f"ResNet-50's shapes ({n:,} float32 parameters), ms, 9 rounds")
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"({min(values) * 1e3:.2f} to {max(values) * 1e3:.2f})"
        print(f"  {name:<{width}}  {median * 1e3:8.2f} {spread:>20}  {base / median:5.2f}")


if __name__ == "__main__":
    main()
