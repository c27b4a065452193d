"""``rmsprop demo``: see adaptive scaling work, from the seed's examples to a trained network."""

import argparse
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import rmsprop
from rmsprop.cli._common import (
    Subparsers,
    UsageError,
    prepare_out_dir,
    save_figure,
    write_bytes_atomically,
)

DEFAULT_STEPS = 2000
QUICK_STEPS = 400
DEFAULT_OUT = Path("rmsprop-demo")


def add_parser(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "demo",
        help="see RMSProp work: the seed's examples, 2-D problems, a network on digits",
        description=(
            "Runs the seed's worked examples, gradient descent and RMSProp on two 2-D "
            "problems, and a small network trained on 1,797 handwritten digits with "
            "RMSProp, SGD, Adam (and torch.optim.RMSprop when PyTorch is installed). "
            "Writes PNG figures and a JSON of every number shown to --out."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"where to write the figures and demo.json (default ./{DEFAULT_OUT}/)",
    )
    parser.add_argument(
        "--steps",
        type=_positive,
        metavar="N",
        help=f"training steps per optimizer (default {DEFAULT_STEPS}; {QUICK_STEPS} with --quick)",
    )
    parser.add_argument(
        "--random-seed",
        "--seed",
        dest="random_seed",
        type=_non_negative,
        default=0,
        help="random seed of the data split, the weights and the batches",
    )
    parser.add_argument("--quick", action="store_true", help=f"train for {QUICK_STEPS} steps")
    parser.set_defaults(run=run)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= {minimum}, got {text!r}"
        ) from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _non_negative(text: str) -> int:
    return _integer(text, 0)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)
    prepare_out_dir(out)
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("the demo draws its figures with matplotlib: pip install 'rmsprop[demo]'")
    # Imported here: `rmsprop step` and `rmsprop --help` need none of this.
    from rmsprop.demo import _plots  # noqa: PLC0415

    report: dict[str, Any] = {"settings": {"steps": steps, "random_seed": args.random_seed}}
    report["seed_examples"] = _seed_examples()
    report["surfaces"] = _surfaces(out / "adaptive_scaling.png", _plots.adaptive_scaling)
    report["digits"] = _digits(
        out / "digits_training.png", _plots.digits_training, steps, args.random_seed
    )
    write_bytes_atomically(out / "demo.json", json.dumps(report, indent=1).encode())
    print()
    print(
        f"Wrote {out / 'adaptive_scaling.png'}, {out / 'digits_training.png'}, {out / 'demo.json'}"
    )
    return 0


def _seed_examples() -> list[dict[str, Any]]:
    from rmsprop.demo._seed import SEED_EXAMPLES  # noqa: PLC0415

    print("1. The seed's worked examples. One RMSProp step, for each element (eps = 1e-8):")
    print("       cache  = beta * cache + (1 - beta) * grads**2")
    print("       params = params - lr * grads / sqrt(cache + eps)")
    results = []
    for number, example in enumerate(SEED_EXAMPLES, start=1):
        result = example.run()
        results.append(result)
        inputs = result["inputs"]
        print(
            f"\n   Example {number}: params={inputs['params']} grads={inputs['grads']}\n"
            f"              cache={inputs['cache']} lr={inputs['lr']} beta={inputs['beta']}"
        )
        for name in ("params", "cache"):
            print(f"     new {name:<6} {_numbers(result[name])}")
            print(f"       6 decimals {_numbers(result[name + '_6_decimals'], 6)}")
            print(f"       the seed   {_numbers(result['seed_prints'][name], 6)}")
    print(
        "\n   Example 1's printed 0.683772 leaves eps out; the formula, eps inside the root,\n"
        "   gives 0.683774. In example 2 the gradients differ threefold, yet every parameter\n"
        "   moves by the same 0.031623: each step is divided by its gradient's own scale."
    )
    return results


def _numbers(values: list[float], decimals: int | None = None) -> str:
    shown = (repr(v) if decimals is None else f"{v:.{decimals}f}" for v in values)
    return "[" + ", ".join(shown) + "]"


def _surfaces(figure: Path, draw: Callable[[Any, BinaryIO], None]) -> list[dict[str, Any]]:
    from rmsprop.demo._surfaces import SURFACES, descend  # noqa: PLC0415

    print("\n2. Adaptive scaling, seen: gradient descent and RMSProp from the same start")
    results, report = [], []
    for surface in SURFACES:
        paths = descend(surface)
        results.append((surface, paths))
        print(f"   {surface.name}: f = {surface.formula}, {surface.steps} steps")
        for path in paths:
            x, y = path.points[-1]
            print(
                f"     {path.optimizer:<17} {path.settings:<18} final loss {path.losses[-1]:9.3g}"
                f"   at ({x:.4f}, {y:.4f})"
            )
        report.append(
            {"surface": surface.name, "formula": surface.formula, "steps": surface.steps}
            | {"paths": [path.summary() for path in paths]}
        )
    print(
        "   On the quadratic, gradient descent's step is capped by the steep y direction\n"
        "   (lr < 2/1000), so it crawls along x; RMSProp divides each coordinate's step by\n"
        "   that coordinate's own gradient scale and moves along both at the same pace.\n"
        "   Rosenbrock's curved valley follows no axis, so per-coordinate scaling helps\n"
        "   less: with each method's best step size, gradient descent ends lower there."
    )
    save_figure(figure, lambda target: draw(results, target))
    return report


def _digits(
    figure: Path, draw: Callable[[Any, BinaryIO], None], steps: int, random_seed: int
) -> list[dict[str, Any]]:
    from rmsprop._progress import Progress  # noqa: PLC0415
    from rmsprop.demo._digits import (  # noqa: PLC0415
        BATCH,
        SIXTEEN_BIT,
        contenders,
        load_digits,
        split,
        train,
    )

    _, labels = load_digits()
    train_rows, test_rows = split(labels, random_seed)
    print(
        f"\n3. A 64-32-10 network on {len(labels):,} handwritten 8×8 digits "
        f"({len(train_rows):,} to train on, {len(test_rows)} held out),\n"
        f"   {steps} minibatch steps of {BATCH}, random seed {random_seed}, "
        "the same batches for every optimizer:"
    )
    with_torch = importlib.util.find_spec("torch") is not None
    with_16_bit = importlib.util.find_spec("ml_dtypes") is not None
    rmsprop.load_kernels()  # the network's arrays are small: use the fused kernels from the start
    runs = []
    for contender in contenders(with_torch, with_16_bit):
        with Progress(contender.name, steps) as bar:
            runs.append(train(contender, steps, random_seed, bar.update))
    if not with_torch:
        print("   (torch.optim.RMSprop left out: PyTorch is not installed)")
    if not with_16_bit:
        print("   (16-bit state left out: it needs ml_dtypes, pip install ml_dtypes)")
    print(
        f"\n   {'optimizer':<23} {'settings':<27} {'train acc':>9} {'test acc':>9} "
        f"{'test loss':>9} {'µs/step':>8}"
    )
    for r in runs:
        print(
            f"   {r.name:<23} {r.settings:<27} {r.train_accuracy:9.1%} {r.test_accuracy:9.1%} "
            f"{r.test_loss:9.4f} {r.microseconds_per_step:8.1f}"
        )
    print("   (µs/step: median time of the optimizer's step alone, the network's work excluded)")
    if with_16_bit:
        print(
            f"   {SIXTEEN_BIT}: the state in bfloat16 (half of float32's bytes), rounded\n"
            "   stochastically, so that small updates still count on average."
        )
    save_figure(figure, lambda target: draw(runs, target))
    return [r.summary() for r in runs]
