"""``rmsprop step``: the seed's function on JSON or .npy input."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import rmsprop
from rmsprop._validation import MAX_DEPTH, flatten
from rmsprop.cli._common import Subparsers, UsageError, write_atomically

ARRAYS = ("params", "grads", "cache")
HYPERPARAMETERS = ("lr", "beta", "eps")
REQUIRED = (*ARRAYS, "lr", "beta")

EXAMPLES = """\
examples:
  rmsprop step --params '[1.0]' --grads '[0.1]' --cache '[0.0]' --lr 0.1 --beta 0.9
  echo '{"params": [1.0], "grads": [0.1], "cache": [0.0], "lr": 0.1, "beta": 0.9}' | rmsprop step
  rmsprop step --params p.npy --grads g.npy --cache c.npy --lr 1e-3 --beta 0.99 --out new.npz
"""


def add_parser(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "step",
        help="one RMSProp step on JSON or .npy input",
        description=(
            "One RMSProp step: cache = beta*cache + (1-beta)*grads**2, "
            "params -= lr*grads/sqrt(cache + eps). Inputs not given as options are read "
            'from one JSON object on stdin. Prints {"params": ..., "cache": ...} as JSON '
            "(NaN and Infinity as Python's json module writes them)."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name in ARRAYS:
        parser.add_argument(
            f"--{name}", metavar="JSON|FILE.npy", help=f"{name}: a JSON number/array or a .npy file"
        )
    parser.add_argument("--lr", type=float, help="learning rate, >= 0")
    parser.add_argument("--beta", type=float, help="decay of the squared-gradient average, 0..1")
    parser.add_argument("--eps", type=float, help="added inside the square root (default 1e-8)")
    parser.add_argument(
        "--decimals",
        type=_decimals,
        metavar="N",
        help="round the printed numbers to N decimals (what is computed is never rounded)",
    )
    parser.add_argument(
        "--out",
        metavar="FILE.npz",
        help="write params and cache to FILE.npz (atomically) instead of printing them",
    )
    parser.set_defaults(run=run)


def _decimals(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.out is not None and not args.out.endswith(".npz"):
        raise UsageError(f"--out must name a .npz file, got {args.out!r}")
    values: dict[str, Any] = {}
    if any(getattr(args, name) is None for name in REQUIRED):
        values = _read_stdin()
    for name in ARRAYS:
        if getattr(args, name) is not None:
            values[name] = _load_array(name, getattr(args, name))
    for name in HYPERPARAMETERS:
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    for name in REQUIRED:
        if name not in values:
            raise UsageError(f"missing {name}: give it as --{name} or in the JSON object on stdin")
    params = values["params"]
    if not isinstance(params, np.ndarray) and any(
        isinstance(values[name], np.ndarray) for name in ARRAYS
    ):
        params = _as_array(params, "params")
    try:
        new_params, new_cache = rmsprop.step(
            params,
            values["grads"],
            values["cache"],
            values["lr"],
            values["beta"],
            values.get("eps", 1e-8),
        )
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    if args.out is not None:
        _save_npz(Path(args.out), new_params, new_cache)
        print(f"wrote {args.out}: {_summary('params', new_params)}, {_summary('cache', new_cache)}")
    else:
        result = {
            "params": _jsonable(new_params, args.decimals),
            "cache": _jsonable(new_cache, args.decimals),
        }
        print(json.dumps(result))
    return 0


def _read_stdin() -> dict[str, Any]:
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin.isatty():
        missing = "--params, --grads, --cache, --lr and --beta"
        raise UsageError(f"give {missing} as options, or pipe one JSON object with them on stdin")
    text = stdin.read()
    if not text.strip():
        raise UsageError(
            "stdin is empty: give params, grads, cache, lr and beta as options or in a JSON object"
        )
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"stdin is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise UsageError(f"stdin is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(values, dict):
        raise UsageError(
            "stdin must hold one JSON object with keys params, grads, cache, lr, beta (and eps)"
        )
    unknown = sorted(set(values) - {*ARRAYS, *HYPERPARAMETERS})
    if unknown:
        raise UsageError(
            f"unknown key {unknown[0]!r} in the JSON on stdin; "
            "expected params, grads, cache, lr, beta, eps"
        )
    return values


def _load_array(name: str, text: str) -> Any:
    if text.strip().lower().endswith(".npy"):
        try:
            return np.load(text.strip(), allow_pickle=False)
        except OSError as error:
            reason = error.strerror or str(error)
            raise UsageError(f"--{name}: cannot read {text!r}: {reason}") from None
        except ValueError as error:
            raise UsageError(f"--{name}: {text!r} is not a readable .npy array: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"--{name} is neither valid JSON ({error.msg}) nor the name of a .npy file: {text!r}"
        ) from None
    except RecursionError:
        raise UsageError(f"--{name} is nested deeper than {MAX_DEPTH} levels") from None


def _as_array(value: object, name: str) -> np.ndarray[Any, Any]:
    """A JSON value as a float64 array, checked as ``rmsprop.step`` checks lists."""
    try:
        shape, flat = flatten(value, name)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None
    return np.array(flat, dtype=np.float64).reshape(shape)


def _jsonable(value: Any, decimals: int | None) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()
    if decimals is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item, decimals) for item in value]
    return round(value, decimals)


def _summary(name: str, value: Any) -> str:
    array = np.asarray(value)
    return f"{name} {array.dtype} {array.shape}"


def _save_npz(path: Path, params: Any, cache: Any) -> None:
    def write(file: BinaryIO) -> None:
        # Exactly these two arrays (an allow_pickle= keyword would be stored as a third
        # array by the NumPy versions whose savez does not take it).
        np.savez(file, params=np.asarray(params), cache=np.asarray(cache))

    write_atomically(path, write)
