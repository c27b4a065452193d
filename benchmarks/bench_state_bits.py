"""A step with float32 state, bfloat16 state (rounded to nearest, and stochastically:
``state_bits=16``) and 8-bit blockwise state (``state_bits=8``), over ResNet-50's
shapes and over one flat tensor of the same size, beside roofline loops that move
the bytes each kind of state moves: 20 bytes an element for float32 state (read
parameter, gradient and square average, write parameter and square average), 16 for
bfloat16 state, 14 for 8-bit state (and the block scales, 4 bytes per 256
elements read and written: 1 %). Medians of interleaved rounds in one process, with
min and max, and each one's share of the roofline of its own bytes. The steps are
rmsprop.torch.RMSProp's, and rmsprop.RMSProp's with 8-bit state (the same kernel
through the NumPy front end).

With ``--bfloat16-params``: bfloat16 parameters and gradients with float32 state over
ResNet-50's shapes, written rounded to nearest and stochastically
(``stochastic_rounding=True``), beside the roofline of their 14 bytes an element.

    .venv/bin/python benchmarks/bench_state_bits.py [--rounds 9] [--bfloat16-params]
"""

import argparse
import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from bench_flat import numpy_step, torch_step  # this folder's: run as a script

import rmsprop
from rmsprop import bench
from rmsprop.bench._peers import resnet50_shapes

_LOOPS: dict[str, Any] = {}


def _roofline(n: int, state: str) -> Callable[[], None]:
    """``p += g; v += 1`` over float32 ``p``, ``g`` and ``v`` of ``state``'s dtype: reads
    three streams and writes two, computes nothing."""
    if not _LOOPS:
        from numba import njit, prange  # noqa: PLC0415

        @njit(parallel=True, cache=True)
        def loop(p, g, v, one):  # type: ignore[no-untyped-def]
            for i in prange(p.size):
                p[i] += g[i]
                v[i] += one

        _LOOPS["loop"] = loop
    generator = np.random.default_rng(0)
    p = generator.standard_normal(n, dtype=np.float32)
    g = generator.standard_normal(n, dtype=np.float32)
    dtype = {"float32": np.float32, "16-bit": np.uint16, "8-bit": np.uint8}[state]
    v = np.zeros(n, dtype=dtype)
    one = dtype(1)
    loop = _LOOPS["loop"]
    return lambda: loop(p, g, v, one)


def _share(results: list[bench.Result], roofline: dict[str, float], of: str = "") -> None:
    """Each result's median, spread, and share of the roofline of its kind (``of``: one
    roofline for every row, named so)."""
    width = max(len(r.name) for r in results)
    for r in results:
        spread = f"({min(r.times) * 1e3:.2f} to {max(r.times) * 1e3:.2f})"
        kind = next((k for k in ("16-bit", "8-bit") if f"({k}" in r.name), "float32")
        share = roofline[kind] / r.median
        print(f"  {r.name:<{width}}  {r.median * 1e3:8.2f} {spread:>18}  {share:5.2f} of "
              f"{of or kind}")  # fmt: skip


def bfloat16_params(rounds: int) -> None:
    """bfloat16 parameters, float32 state: rounded to nearest and stochastically."""
    shapes = resnet50_shapes()
    n = sum(math.prod(s) for s in shapes)
    step = functools.partial
    bf16 = torch.bfloat16
    factories: dict[str, Callable[[], Callable[[], None]]] = {
        "roofline, bfloat16 parameters (14 B)": step(_roofline, n, "8-bit"),
    }
    for label, f32 in (("float32 arithmetic", True), ("default rounding", False)):
        factories |= {
            f"to nearest, {label}": step(torch_step, shapes, f32, dtype=bf16),
            f"stochastic_rounding, {label}": step(
                torch_step, shapes, f32, dtype=bf16, stochastic_rounding=True
            ),
        }
    results = bench.measure(factories, n, "bfloat16", rounds, lambda: None)
    print(f"\nResNet-50's shapes, bfloat16 parameters and float32 state ({n:,}); ms, {rounds} "
          "rounds")  # fmt: skip
    _share(results, {"float32": results[0].median}, of="14 B")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--bfloat16-params", action="store_true")
    arguments = parser.parse_args()
    rounds = arguments.rounds
    rmsprop.load_kernels()
    if arguments.bfloat16_params:
        bfloat16_params(rounds)
        return
    shapes = resnet50_shapes()
    n = sum(math.prod(s) for s in shapes)
    step = functools.partial
    for title, chosen in (("ResNet-50's shapes", shapes), ("one flat tensor", [(n,)])):
        factories: dict[str, Callable[[], Callable[[], None]]] = {
            "roofline, float32 state (20 B)": step(_roofline, n, "float32"),
            "roofline, 16-bit state (16 B)": step(_roofline, n, "16-bit"),
            "roofline, 8-bit state (14 B)": step(_roofline, n, "8-bit"),
        }
        for label, f32 in (("float32 arithmetic", True), ("default rounding", False)):
            factories |= {
                f"float32 state, {label}": step(torch_step, chosen, f32),
                f"bfloat16 state to nearest (16-bit), {label}": step(
                    torch_step, chosen, f32, state_dtype=torch.bfloat16
                ),
                f"state_bits=16 (16-bit), {label}": step(torch_step, chosen, f32, state_bits=16),
                f"state_bits=8 (8-bit), {label}": step(torch_step, chosen, f32, state_bits=8),
                f"rmsprop.RMSProp, state_bits=8 (8-bit), {label}": step(
                    numpy_step, chosen, f32, state_bits=8
                ),
            }
        results = bench.measure(factories, n, "float32", rounds, lambda: None)
        roofline = {
            kind: next(r.median for r in results if r.name.startswith(f"roofline, {kind}"))
            for kind in ("float32", "16-bit", "8-bit")
        }
        print(f"\n{title} ({n:,} float32 parameters); ms, {rounds} rounds")
        _share(results, roofline)


if __name__ == "__main__":
    main()
