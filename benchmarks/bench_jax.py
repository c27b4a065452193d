"""rmsprop.optax.rmsprop against optax.rmsprop, two peers alone in many interleaved rounds.

``rmsprop bench`` times them among ten implementations with three rounds per large
size, too few to tell two equal compiled programs apart. Here the two alone, under
``jax.jit`` with donated buffers, on the same arrays, in rounds that alternate which
one goes first; printed: the median per step of each, and the median over rounds of
the ratio of their times (above 1: rmsprop.optax is slower).

    .venv/bin/python benchmarks/bench_jax.py [--rounds 40] [--elements 10000000]
"""

import argparse
import functools
import statistics

from rmsprop import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--elements", type=int, default=10**7)
    args = parser.parse_args()
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
