"""``rmsprop bench``: see rmsprop beat its peers, measured here and now."""

import argparse
from pathlib import Path

from rmsprop.cli._common import Subparsers, prepare_out_dir

DEFAULT_OUT = Path("rmsprop-bench")


def add_parser(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "bench",
        help="time rmsprop against NumPy, PyTorch and optax on this machine",
        description=(
            "Times one RMSProp step of rmsprop (step_, RMSProp, rmsprop.torch.RMSProp), NumPy as "
            "the seed writes it, torch.optim.RMSprop (foreach and for-loop) and optax under "
            "jax.jit, beside a trivial 5-stream loop (the roofline), for N from 10^3 to 5x10^7 "
            "in float32 and float64, and whole steps over model-shaped parameter sets (ResNet-50 "
            "contiguous, channels_last and bfloat16; BERT-base). Interleaved rounds in one "
            "process; medians with min and max. Writes bench.json and bench.png to --out."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
        help=f"where to write bench.json and bench.png (default ./{DEFAULT_OUT}/)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true", help="N up to 10^6, 3 rounds, no models (a minute)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rmsprop import bench  # noqa: PLC0415 - the harness loads only for this command

    out: Path = args.out
    prepare_out_dir(out)  # before minutes of measuring, not after
    sizes = bench.QUICK_SIZES if args.quick else bench.SIZES
    report = bench.run(sizes, lambda n: bench.rounds(n, args.quick), model=not args.quick)
    print(bench.table(report))
    written = bench.save(report, out)
    print(f"\nWrote {', '.join(map(str, written))}")
    return 0
