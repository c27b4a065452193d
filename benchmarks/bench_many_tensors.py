"""Host time of one optimizer step over many tiny tensors: the per-tensor work of Python.

1,000 parameters of 10 float32 values each (the data move in nanoseconds: what is timed
is the dispatch), every optimizer in the same process, interleaved rounds; medians
in µs per step, with min and max.

    .venv/bin/python benchmarks/bench_many_tensors.py [--tensors 1000] [--rounds 25]
"""

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

import rmsprop
import rmsprop.torch


def torch_step(make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], count: int):
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(10, generator=generator)) for _ in range(count)]
    for p in params:
        p.grad = torch.randn(10, generator=generator)
    return make(params).step


def numpy_step(count: int) -> Callable[[], None]:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(10, dtype=np.float32) for _ in range(count)]
    grads = [rng.standard_normal(10, dtype=np.float32) for _ in range(count)]
    optimizer = rmsprop.RMSProp(params, preset="pytorch")
    return lambda: optimizer.step(grads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    rmsprop.load_kernels()
    n = args.tensors
    steps = {
        "rmsprop.torch.RMSProp (preset pytorch)": torch_step(
            lambda ps: rmsprop.torch.RMSProp(ps, preset="pytorch"), n
        ),
        "rmsprop.torch.RMSprop (PyTorch's rounding)": torch_step(rmsprop.torch.RMSprop, n),
        "rmsprop.RMSProp (NumPy, preset pytorch)": numpy_step(n),
        "torch.optim.RMSprop (foreach)": torch_step(
            lambda ps: torch.optim.RMSprop(ps, foreach=True), n
        ),
        "torch.optim.RMSprop (for-loop, its CPU default)": torch_step(torch.optim.RMSprop, n),
    }
    for step in steps.values():  # state, plans, compiled kernels
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - started) * 1e6)
    width = max(map(len, times))
    rounds = f"min to max, {args.rounds} rounds"
    print(f"one step over {n:,} tensors of 10 float32 values, µs ({rounds})")
    for name, values in times.items():
        spread = f"({min(values):.0f} to {max(values):.0f})"
        print(f"  {name:<{width}}  {statistics.median(values):9.0f}  {spread}")


if __name__ == "__main__":
    main()
