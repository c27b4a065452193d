"""Model-shaped steps against the flat roofline, and the host time of a step per tensor.

Part 1, for ResNet-50's 161 and BERT-base's 199 parameter shapes (float32): one
optimizer step of rmsprop.torch.RMSProp and rmsprop.RMSProp with float32 arithmetic
(and, for reference, with the default rounding, bound by float64 arithmetic here), over

- parameters and gradients allocated one by one, state as the optimizers make it
  (flat: views of one buffer per dtype);
- the same with the state one tensor per parameter (as before flat state);
- parameters and gradients flattened by rmsprop.torch.flatten_ (torch): one launch
  over a stretch of each flat buffer (rmsprop.torch._spans), and for comparison the
  same launch member by member; or allocated by the caller as views of one array
  (NumPy arrays cannot be re-homed in place);

beside the 5-stream roofline loop over flat NumPy arrays of the same size. Interleaved
rounds in one process, one model at a time; medians with min and max, and each
median's share of the roofline (roofline time / time).

Part 2: the host time of ``step()`` over N parameters of 10 float32 values (the data
take nanoseconds; what is timed is the per-tensor work): rmsprop.torch.RMSProp,
flattened and not, and rmsprop.RMSProp, beside torch.optim.RMSprop.

Part 3: the host time around the launch of a ResNet-50 step (its time less that of
its Numba launches) right after a launch over the whole model has evicted the caches,
as in training, where every step follows one.

    .venv/bin/python benchmarks/bench_flat.py [--rounds 11] [--models resnet50,bert-base]
"""

import argparse
import functools
import gc
import math
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np
import torch

import rmsprop
import rmsprop.torch
from rmsprop import _kernels, bench
from rmsprop.bench import ROOFLINE
from rmsprop.bench._peers import _roofline, bert_base_shapes, resnet50_shapes
from rmsprop.torch import _spans

MODELS = {"resnet50": ("ResNet-50", resnet50_shapes), "bert-base": ("BERT-base", bert_base_shapes)}
LR, BETA = 1e-3, 0.9


def _torch_params(
    shapes: list[tuple[int, ...]], dtype: torch.dtype = torch.float32
) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=generator).to(dtype)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator).to(dtype)
    return params


def torch_step(
    shapes: list[tuple[int, ...]],
    f32: bool,
    flat: bool = False,
    separate_state: bool = False,
    dtype: torch.dtype = torch.float32,
    spans: bool = True,
    **options: Any,
) -> Callable[[], None]:
    """A step of rmsprop.torch.RMSProp over parameters of ``shapes`` (and ``dtype``, their
    gradients' too), after two steps; ``spans=False``: its launches member by member
    (the plan built without spans)."""
    params = _torch_params(shapes, dtype)
    if flat:
        rmsprop.torch.flatten_(params)
        generator = torch.Generator().manual_seed(1)
        for p in params:
            p.grad.copy_(torch.randn(p.shape, generator=generator))
    opt = rmsprop.torch.RMSProp(params, lr=LR, beta=BETA, float32_arithmetic=f32, **options)
    if spans:
        opt.step()
    else:  # the first step builds the plan the later steps keep: without spans
        with mock.patch.object(_spans, "span", return_value=None):
            opt.step()
    if separate_state:  # one tensor per buffer and counter, as before flat state
        for state in opt.state.values():
            for key, value in state.items():
                state[key] = value.clone()
    opt.step()
    return opt.step


def numpy_step(
    shapes: list[tuple[int, ...]],
    f32: bool,
    flat: bool = False,
    separate_state: bool = False,
    **options: Any,
) -> Callable[[], None]:
    """A step of rmsprop.RMSProp over float32 parameters of ``shapes``, after one step."""
    rng = np.random.default_rng(0)
    sizes = [math.prod(s) for s in shapes]
    if flat:  # the caller's choice: parameters and gradients as views of one array each
        whole = [rng.standard_normal(sum(sizes), dtype=np.float32) for _ in range(2)]
        ends = np.cumsum(sizes)
        params, grads = (
            [a[end - n : end].reshape(s) for n, end, s in zip(sizes, ends, shapes, strict=True)]
            for a in whole
        )
    else:
        params = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
        grads = [rng.standard_normal(s, dtype=np.float32) for s in shapes]
    opt = rmsprop.RMSProp(params, lr=LR, beta=BETA, float32_arithmetic=f32, **options)
    if separate_state:
        for buffers in opt._state:
            for key, value in buffers.items():
                buffers[key] = value.copy()
    opt.step(grads)
    return lambda: opt.step(grads)


def report(heading: str, results: list[bench.Result]) -> None:
    """Medians in ms with min and max, and each one's share of the first (the roofline)."""
    roofline = results[0].median
    width = max(len(r.name) for r in results)
    print(f"\n{heading}; ms, {len(results[0].times)} rounds; share of the roofline")
    for r in results:
        spread = f"({min(r.times) * 1e3:.2f} to {max(r.times) * 1e3:.2f})"
        share = roofline / r.median
        print(f"  {r.name:<{width}}  {r.median * 1e3:8.2f} {spread:>18}  {share:5.2f}")


def models(chosen: list[str], rounds: int) -> None:
    for key in chosen:
        title, make_shapes = MODELS[key]
        shapes = make_shapes()
        elements = sum(math.prod(s) for s in shapes)
        step = functools.partial
        label = "float32 arithmetic"
        factories: dict[str, Callable[[], Callable[[], None]]] = {
            ROOFLINE: step(_roofline, elements, "float32"),
            f"torch, {label}: state flat": step(torch_step, shapes, True),
            f"torch, {label}: state one tensor each": step(
                torch_step, shapes, True, separate_state=True
            ),
            f"torch, {label}: flatten_": step(torch_step, shapes, True, flat=True),
            f"torch, {label}: flatten_, member by member": step(
                torch_step, shapes, True, flat=True, spans=False
            ),
            f"NumPy, {label}: state flat": step(numpy_step, shapes, True),
            f"NumPy, {label}: state one array each": step(
                numpy_step, shapes, True, separate_state=True
            ),
            f"NumPy, {label}: parameters views of one array": step(
                numpy_step, shapes, True, flat=True
            ),
            # The default rounding is bound by float64 arithmetic here, whatever the layout.
            "torch, default rounding: state flat": step(torch_step, shapes, False),
            "torch, default rounding: flatten_": step(torch_step, shapes, False, flat=True),
            "NumPy, default rounding: state flat": step(numpy_step, shapes, False),
        }
        results = bench.measure(factories, elements, "float32", rounds, lambda: None)
        report(f"{title}: {len(shapes)} tensors, {elements:,} float32 values", results)
        del results
        gc.collect()


def host(counts: list[int], rounds: int) -> None:
    print(f"\nhost time of step() over N tensors of 10 float32 values, µs ({rounds} rounds)")
    steps: dict[str, Callable[[], None]] = {}
    for n in counts:
        shapes = [(10,)] * n
        steps[f"N={n:>5}  rmsprop.torch.RMSProp, float32 arithmetic"] = torch_step(shapes, True)
        steps[f"N={n:>5}  rmsprop.torch.RMSProp, float32 arithmetic, flatten_"] = torch_step(
            shapes, True, flat=True
        )
        steps[f"N={n:>5}  rmsprop.RMSProp (NumPy), float32 arithmetic"] = numpy_step(shapes, True)
        optimizer = torch.optim.RMSprop(_torch_params(shapes), lr=LR, alpha=BETA, foreach=True)
        optimizer.step()
        steps[f"N={n:>5}  torch.optim.RMSprop (foreach)"] = optimizer.step
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name].append(timeit.timeit(step, number=20) / 20)
    width = max(map(len, samples))
    for name, values in samples.items():
        spread = f"({min(values) * 1e6:.0f} to {max(values) * 1e6:.0f})"
        print(f"  {name:<{width}}  {statistics.median(values) * 1e6:8.0f} {spread:>16}")


def host_after_a_big_step(rounds: int) -> None:
    shapes = resnet50_shapes()
    roofline = _roofline(sum(math.prod(s) for s in shapes), "float32")
    steps = {
        "rmsprop.torch.RMSProp, float32 arithmetic": torch_step(shapes, True),
        "rmsprop.torch.RMSProp, float32 arithmetic, flatten_": torch_step(shapes, True, flat=True),
    }
    inside: list[float] = []
    launch = _kernels.launch

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        launch(*args)
        inside.append(time.perf_counter() - started)

    samples: dict[str, list[float]] = {name: [] for name in steps}
    with mock.patch.object(_kernels, "launch", timed):
        for _ in range(rounds):
            for name, step in steps.items():
                roofline()  # the caches hold what a big launch leaves
                inside.clear()
                started = time.perf_counter()
                step()
                samples[name].append(time.perf_counter() - started - sum(inside))
    heading = "host time around a ResNet-50 step's launches, after a big launch"
    print(f"\n{heading}, µs ({rounds} rounds)")
    width = max(map(len, samples))
    for name, values in samples.items():
        spread = f"({min(values) * 1e6:.0f} to {max(values) * 1e6:.0f})"
        print(f"  {name:<{width}}  {statistics.median(values) * 1e6:8.0f} {spread:>16}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--models", default="resnet50,bert-base")
    parser.add_argument("--tensors", default="10,161,199,1000")
    args = parser.parse_args()
    rmsprop.load_kernels()
    chosen = [m for m in args.models.split(",") if m]
    models(chosen, args.rounds)
    host([int(n) for n in args.tensors.split(",")], args.rounds)
    host_after_a_big_step(args.rounds)


if __name__ == "__main__":
    main()
