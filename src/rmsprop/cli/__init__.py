"""The ``rmsprop`` command: ``step`` (one update on JSON or .npy input), ``demo``, ``bench``."""

import sys
from collections.abc import Sequence

import rmsprop
from rmsprop import _interrupt
from rmsprop.cli import _bench, _demo, _step
from rmsprop.cli._common import Parser, UsageError


def build_parser() -> Parser:
    parser = Parser(
        prog="rmsprop",
        description="The RMSProp update (adaptive gradient scaling), from the command line.",
    )
    parser.add_argument("--version", action="version", version=f"rmsprop {rmsprop.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _step.add_parser(commands)
    _demo.add_parser(commands)
    _bench.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status (2 for bad input)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    prog = "rmsprop" if args.command is None else f"rmsprop {args.command}"
    try:
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
        if args.command is None:
            parser.print_help()
            return 2
        with _interrupt.sigint_handled(prog):  # Ctrl-C: one line and 130, within a second
            status: int = args.run(args)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except (_interrupt.Interrupted, KeyboardInterrupt):
        _interrupt.announce()
        return _interrupt.STATUS
    return status
