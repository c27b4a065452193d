"""One step over ResNet-50's shapes with float32 state, bfloat16 state rounded to nearest
and bfloat16 state rounded stochastically (``state_bits=16``), beside the 5-stream
roofline over flat arrays of the same size; medians of 9 interleaved rounds, with min
and max, and each one's share of the 20-byte roofline.

    .venv/bin/python benchmarks/bench_state_bits.py
"""

import functools
import math

import torch
from bench_flat import report, torch_step  # this folder's: run as a script

import rmsprop
from rmsprop import bench
from rmsprop.bench import ROOFLINE
from rmsprop.bench._peers import _roofline, resnet50_shapes


def main() -> None:
    rmsprop.load_kernels()
    shapes = resnet50_shapes()
    n = sum(math.prod(s) for s in shapes)
    step = functools.partial
    factories = {
        f"{ROOFLINE} (20 B)": step(_roofline, n, "float32"),
        "float32 state, float32 arithmetic": step(torch_step, shapes, True),
        "bfloat16 state to nearest, float32 arithmetic": step(
            torch_step, shapes, True, state_dtype=torch.bfloat16
        ),
        "state_bits=16, float32 arithmetic": step(torch_step, shapes, True, state_bits=16),
        "float32 state, default rounding": step(torch_step, shapes, False),
        "state_bits=16, default rounding": step(torch_step, shapes, False, state_bits=16),
    }
    results = bench.measure(factories, n, "float32", 9, lambda: None)
    report(f"ResNet-50's shapes ({n:,} float32 parameters)", results)


if __name__ == "__main__":
    main()
