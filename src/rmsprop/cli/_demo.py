"""``rmsprop demo``: the seed's three worked examples, computed and compared."""

import argparse
from dataclasses import dataclass

import rmsprop
from rmsprop.cli._common import Subparsers


@dataclass(frozen=True)
class Example:
    """One worked example of the seed: inputs and the values the seed prints."""

    params: list[float]
    grads: list[float]
    cache: list[float]
    lr: float
    beta: float
    printed_params: list[float]
    printed_cache: list[float]


SEED_EXAMPLES = (
    Example([1.0], [0.1], [0.0], 0.1, 0.9, [0.683772], [0.001]),
    Example(
        [1.0, 2.0, 3.0],
        [0.1, 0.2, 0.3],
        [0.0, 0.0, 0.0],
        0.01,
        0.9,
        [0.968377, 1.968377, 2.968377],
        [0.001, 0.004, 0.009],
    ),
    Example(
        [0.5, -0.5],
        [0.05, -0.05],
        [0.01, 0.01],
        0.001,
        0.99,
        [0.499498, -0.499498],
        [0.009925, 0.009925],
    ),
)


def add_parser(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo",
        help="see RMSProp work: the seed's worked examples",
        description="Runs the seed's worked examples and compares them with its printed values.",
    )
    parser.set_defaults(run=run)


def _fmt(values: list[float], decimals: int | None = None) -> str:
    shown = values if decimals is None else [round(v, decimals) for v in values]
    return "[" + ", ".join(f"{v:.{decimals}f}" if decimals else repr(v) for v in shown) + "]"


def run(args: argparse.Namespace) -> int:
    del args
    print("RMSProp, one step, for each element (eps = 1e-8, inside the square root):")
    print("    cache  = beta * cache + (1 - beta) * grads**2")
    print("    params = params - lr * grads / sqrt(cache + eps)")
    for number, ex in enumerate(SEED_EXAMPLES, start=1):
        params, cache = rmsprop.step(ex.params, ex.grads, ex.cache, ex.lr, ex.beta)
        print()
        print(
            f"Example {number}: params={ex.params} grads={ex.grads} cache={ex.cache} "
            f"lr={ex.lr} beta={ex.beta}"
        )
        for name, exact, printed in (
            ("params", params, ex.printed_params),
            ("cache ", cache, ex.printed_cache),
        ):
            print(f"  new {name}  exact {_fmt(exact)}")
            print(f"              6 decimals {_fmt(exact, 6)}   the seed prints {_fmt(printed, 6)}")
        steps = [round(old - new, 6) for old, new in zip(ex.params, params, strict=True)]
        print(f"  step taken  {_fmt(steps, 6)}  (grads were {ex.grads})")
    dropped, _ = rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9, eps=0.0)
    print()
    print(
        "Example 1's printed 0.683772 is what the step gives with eps left out "
        f"({dropped[0]:.9f}); the formula keeps eps inside the root, which gives "
        f"{rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9)[0][0]:.9f}."
    )
    print(
        "Adaptive scaling: in example 2 the gradients differ threefold, yet every parameter "
        "moves by the same 0.031623, because each step is divided by the root of its own "
        "squared-gradient average."
    )
    return 0
