"""rmsprop.optax.rmsprop against optax.rmsprop, two peers alone in many interleaved rounds.

``rmsprop bench`` times them among ten implementations with three rounds per large
size, too few to tell two equal compiled programs apart. Here the two alone, under
``jax.jit`` with donated buffers, on the same arrays, in rounds that alternate which
one goes first; printed: the median per step of each, and the median over rounds of
the ratio of their times (above 1: rmsprop.optax is slower).

    .venv/bin/python benchmarks/bench_jax.py [--rounds 40] [--elements 10000000]

``--state-bits``: instead, rmsprop.optax.rmsprop with ``state_bits`` 32, 16 and 8
(momentum 0.9: two state buffers) on float32 parameters in one leaf, beside
optax.rmsprop with the same momentum; printed: the median per step of each, with
min and max.
"""

import argparse
import functools
import statistics
from typing import Any

import numpy as np

from rmsprop import bench
from rmsprop.bench._peers import optax_step


def _state_bits_step(elements: int, bits: int | None) -> Any:
    """One jitted update and apply of rmsprop.optax (``bits``) or optax.rmsprop (None),
    parameters and state donated."""
    import jax  # noqa: PLC0415 - the script's optional part
    import optax  # noqa: PLC0415

    import rmsprop.optax  # noqa: PLC0415

    if bits is None:
        transform = optax.rmsprop(1e-3, decay=0.99, eps=1e-8, momentum=0.9)
    else:
        transform = rmsprop.optax.rmsprop(1e-3, preset="pytorch", momentum=0.9, state_bits=bits)
    rng = np.random.default_rng(0)
    params = jax.numpy.asarray(rng.standard_normal(elements, dtype=np.float32))
    grads = jax.numpy.asarray(rng.standard_normal(elements, dtype=np.float32))
    return optax_step(transform, params, grads)


def state_bits(elements: int, rounds: int) -> None:
    """Print the step times of rmsprop.optax with each ``state_bits``, and optax's."""
    factories = {
        f"rmsprop.optax, state_bits={bits}": functools.partial(_state_bits_step, elements, bits)
        for bits in (32, 16, 8)
    }
    factories["optax.rmsprop (float32 state)"] = functools.partial(_state_bits_step, elements, None)
    results = bench.measure(factories, elements, "float32", rounds, lambda: None)
    print(f"float32 parameters, momentum 0.9, N = {elements:,} (ms a step, median, min to max):")
    for r in results:
        spread = f"{min(r.times) * 1e3:.2f} to {max(r.times) * 1e3:.2f}"
        print(f"  {r.name:<34} {r.median * 1e3:8.2f}  ({spread})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--elements", type=int, default=10**7)
    parser.add_argument("--state-bits", action="store_true", help="time low-bit state")
    args = parser.parse_args()
    if args.state_bits:
        state_bits(args.elements, args.rounds)
        return
    peers = bench.implementations()
    for dtype in bench.DTYPES:
        factories = {
            name: functools.partial(peers[name], args.elements, dtype)
            for name in (bench.OURS_OPTAX, bench.OPTAX)
        }
        ours, theirs = bench.measure(factories, args.elements, dtype, args.rounds, lambda: None)
        if ours.skipped or theirs.skipped:
            print(f"{dtype}: skipped ({ours.skipped or theirs.skipped})")
            continue
        ratio = statistics.median(a / b for a, b in zip(ours.times, theirs.times, strict=True))
        print(
            f"{dtype}, N = {args.elements:,}: {ours.name} {ours.median * 1e3:.2f} ms, "
            f"{theirs.name} {theirs.median * 1e3:.2f} ms, time ratio (median of rounds) "
            f"{ratio:.3f}"
        )


if __name__ == "__main__":
    main()
