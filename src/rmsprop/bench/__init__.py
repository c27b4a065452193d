"""``rmsprop bench``: rmsprop against its peers, side by side in one process.

Every implementation takes RMSProp steps (lr 1e-3, beta 0.9, eps 1e-8 inside the root
where it has the option) on arrays of N elements, for N from 10^3 to 5·10^7 in float32
and float64, and whole optimizer steps on model-shaped parameter sets: ResNet-50 (161
tensors, 25.6M values; contiguous, channels_last, and bfloat16 with float32 state) and
BERT-base (199 tensors, 109M values). Rounds are interleaved: each round times one
sample of every implementation, so machine noise hits all alike; a sample is as many
calls as fill about 20 ms. The table gives the median per call with min and max over
rounds, the throughput counting the five memory streams an RMSProp step must move
(read params, grads, cache; write params, cache: 20 bytes per float32 element, 14 for
bfloat16 parameters and gradients with float32 state), and the share of a trivial
five-stream loop that moves the same bytes (the roofline). Peers that are not installed
are skipped with a note.
"""

import functools
import gc
import statistics
import time
import timeit
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rmsprop import _interrupt
from rmsprop._progress import Progress
from rmsprop.bench._peers import (
    UnavailableError,
    bert_base_shapes,
    implementations,
    model_implementations,
    models,
    resnet50_shapes,
    roofline_kernel,
)  # fmt: skip
from rmsprop.bench._report import machine, plot, save, table
from rmsprop.bench._settings import (
    BETA,
    DTYPES,
    EPS,
    EXACT_TORCH,
    FAST_NUMPY,
    FAST_TORCH,
    LR,
    OPTAX,
    OURS,
    OURS_OPTAX,
    PAUSE,
    QUICK_SIZES,
    ROOFLINE,
    SAMPLE_SECONDS,
    SIZES,
    Step,
)  # fmt: skip

__all__ = [
    "BETA", "DTYPES", "EPS", "EXACT_TORCH", "FAST_NUMPY", "FAST_TORCH", "LR", "OPTAX", "OURS",
    "OURS_OPTAX", "QUICK_SIZES", "ROOFLINE", "SIZES", "Result", "UnavailableError",
    "bert_base_shapes", "implementations", "machine", "measure", "model_implementations",
    "models", "plot", "resnet50_shapes", "roofline_kernel", "rounds", "run", "save", "table",
]  # fmt: skip


@dataclass
class Result:
    """Per-call times (seconds) of one implementation on one configuration."""

    name: str
    elements: int
    dtype: str
    times: list[float] = field(default_factory=list)
    skipped: str | None = None
    bytes_per_element: int | None = None  # default: five streams of ``dtype``

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def gbps(self) -> float:
        per_element = self.bytes_per_element or 5 * _itemsize(self.dtype)
        return per_element * self.elements / self.median / 1e9

    def as_dict(self, roofline: "Result | None") -> dict[str, Any]:
        if self.skipped:
            return {"implementation": self.name, "skipped": self.skipped}
        share = roofline.median / self.median if roofline and roofline.times else None
        return {
            "implementation": self.name,
            "elements": self.elements,
            "dtype": self.dtype,
            "median_s": self.median,
            "min_s": min(self.times),
            "max_s": max(self.times),
            "gb_per_s_5_streams": self.gbps(),
            "share_of_roofline": share,
        }


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _calls_per_sample(step: Step) -> int:
    """As many calls as take about SAMPLE_SECONDS (at least one)."""
    started = time.perf_counter()
    step()
    once = max(time.perf_counter() - started, 1e-7)
    return max(1, int(SAMPLE_SECONDS / once))


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX on donation, torch on threads
        yield


def measure(
    factories: Mapping[str, Callable[[], Step]],
    elements: int,
    dtype: str,
    rounds: int,
    tick: Callable[[], None],
    bytes_per_element: int | None = None,
) -> list[Result]:
    """Time every implementation, interleaved over ``rounds`` rounds."""
    results = [
        Result(name, elements, dtype, bytes_per_element=bytes_per_element) for name in factories
    ]
    steps: list[tuple[Result, Step, int]] = []
    with _quiet():
        for result, factory in zip(results, factories.values(), strict=True):
            _interrupt.checkpoint()  # Ctrl-C between units of work (rmsprop._interrupt)
            try:
                step = factory()
                step()  # compile, allocate state
                steps.append((result, step, _calls_per_sample(step)))
            except UnavailableError as reason:
                result.skipped = str(reason)
        for round_ in range(rounds):
            # Each round starts one implementation later: every one follows every other
            # equally often (what ran before can slow the next one, see PAUSE).
            first = round_ % len(steps) if steps else 0
            for result, step, calls in steps[first:] + steps[:first]:
                _interrupt.checkpoint()
                time.sleep(PAUSE)
                result.times.append(timeit.timeit(step, number=calls) / calls)
            tick()
    del steps
    gc.collect()
    return results


def rounds(elements: int, quick: bool) -> int:
    """Rounds for arrays of ``elements``: fewer for big ones, whose samples are long."""
    return 3 if quick or elements >= 10**7 else 9 if elements >= 10**6 else 15


def run(sizes: tuple[int, ...], rounds_for: Callable[[int], int], model: bool) -> dict[str, Any]:
    """All measurements, as the JSON document that ``rmsprop bench`` writes."""
    peers = implementations()
    configurations = [(n, d) for d in DTYPES for n in sizes]
    total = sum(rounds_for(n) for n, _ in configurations)
    total += len(models()) * rounds_for(10**7) if model else 0
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {"lr": LR, "beta": BETA, "eps": EPS},
    }
    report["arrays"] = []
    with Progress("benchmark rounds", total) as bar:
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            bar.update(done)

        for n, dtype in configurations:
            factories = {name: functools.partial(f, n, dtype) for name, f in peers.items()}
            results = measure(factories, n, dtype, rounds_for(n), tick)
            roofline = results[0] if not results[0].skipped else None
            report["arrays"] += [r.as_dict(roofline) for r in results]
        if model:
            report["models"] = []
            for case in models():
                results = measure(
                    model_implementations(case), case.elements, case.dtype, rounds_for(10**7),
                    tick, bytes_per_element=case.bytes_per_element,
                )  # fmt: skip
                roofline = results[0] if not results[0].skipped else None
                report["models"].append({
                    "model": case.name,
                    "tensors": len(case.shapes),
                    "elements": case.elements,
                    "dtype": case.dtype,
                    "bytes_per_element": case.bytes_per_element,
                    "results": [r.as_dict(roofline) for r in results],
                })  # fmt: skip
    return report
