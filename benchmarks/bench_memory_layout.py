"""What bounds a step over a model's tensors on this machine: arithmetic, or memory pages.

One launch of the Numba group kernel over ResNet-50's 161 parameter shapes (25.6M
float32 values, the seed's rule), in float64 and in float32 arithmetic, with the
tensors where they usually are (each parameter, gradient and state buffer allocated
on its own by torch), as views of three flat torch tensors, and as views of three
flat arrays allocated by NumPy (which asks Linux for huge pages, where torch does
not), beside the flat 5-stream roofline over the NumPy arrays.
Interleaved rounds in one process; medians, with min and max, and the share of
the roofline. Then the arithmetic alone: the same kernel over 2^18 elements that stay
in cache, its time per element scaled to the model's element count (float32, and
bfloat16 parameters and gradients with float32 state).

    .venv/bin/python benchmarks/bench_memory_layout.py [--rounds 15]
"""

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rmsprop import Hyperparameters, _accel, bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    kernels = _accel.load()
    assert kernels is not None, "Numba is not installed"
    hp = Hyperparameters(lr=1e-3, beta=0.9, eps=1e-8)
    sizes = [math.prod(s) for s in bench.resnet50_shapes()]
    total = sum(sizes)
    offsets = np.cumsum([0, *sizes])
    generator = torch.Generator().manual_seed(0)
    separate = [[torch.randn(n, generator=generator) for n in sizes] for _ in range(2)]
    separate.append([torch.zeros(n) for n in sizes])
    flat = [np.random.default_rng(k).standard_normal(total, dtype=np.float32) for k in range(2)]
    flat.append(np.zeros(total, np.float32))
    pieces = list(itertools.pairwise(offsets))
    views = [[torch.from_numpy(a[start:end]) for start, end in pieces] for a in flat]
    flat_torch = [torch.from_numpy(a).clone() for a in flat]  # torch's allocator: no huge pages
    torch_views = [[a[start:end] for start, end in pieces] for a in flat_torch]

    def launch(tensors: list[list[torch.Tensor]], float32: bool) -> Callable[[], None]:
        p, g, v = tensors
        members = [(x, y, [w, None, None]) for x, y, w in zip(p, g, v, strict=True)]
        run = kernels.Launch(members, hp, float32_arithmetic=float32)
        return lambda: run(g, hp)

    roofline = bench.roofline_kernel()
    steps = {
        "roofline: 5-stream loop over the flat arrays": lambda: roofline(*flat),
        "float64 arithmetic, tensors allocated one by one": launch(separate, False),
        "float64 arithmetic, views of flat arrays": launch(views, False),
        "float32 arithmetic, tensors allocated one by one": launch(separate, True),
        "float32 arithmetic, views of flat torch tensors": launch(torch_views, True),
        "float32 arithmetic, views of flat arrays": launch(views, True),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        step()
    for round_ in range(args.rounds):
        names = list(steps)
        first = round_ % len(names)  # every case follows every other equally often
        for name in names[first:] + names[:first]:
            time.sleep(0.01)
            started = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - started)
    roof = statistics.median(times[next(iter(steps))])
    width = max(map(len, times))
    print(f"one step over ResNet-50's shapes ({total:,} float32 values), ms, {args.rounds} rounds")
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"({min(values) * 1e3:.2f} to {max(values) * 1e3:.2f})"
        print(f"  {name:<{width}}  {median * 1e3:7.2f} {spread:>18}  {roof / median:5.0%}")

    print("arithmetic alone (2^18 elements in cache, scaled to the model), ms")
    for dtype in (torch.float32, torch.bfloat16):
        for float32 in (False, True):
            per_element = in_cache(kernels, hp, dtype, float32, args.rounds)
            name = str(dtype).removeprefix("torch.")
            label = f"{name} parameters, {'float32' if float32 else 'float64'} arithmetic"
            print(f"  {label:<{width}}  {per_element * total * 1e3:7.2f}")


def in_cache(
    kernels: Any, hp: Hyperparameters, dtype: torch.dtype, float32: bool, rounds: int
) -> float:
    """Seconds per element of one launch over 2^18 elements that stay in cache (median):
    parameters and gradients of ``dtype``, the square average in float32."""
    n = 1 << 18
    generator = torch.Generator().manual_seed(0)
    p, g = (torch.randn(n, generator=generator).to(dtype) for _ in range(2))
    v = torch.zeros(n)
    run = kernels.Launch([(p, g, [v, None, None])], hp, float32_arithmetic=float32)
    run([g], hp)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(20):
            run([g], hp)
        times.append((time.perf_counter() - started) / 20 / n)
    return statistics.median(times)


if __name__ == "__main__":
    main()
