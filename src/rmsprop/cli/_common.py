"""What the CLI's commands share."""

import argparse
from typing import TYPE_CHECKING, Any, NoReturn


class UsageError(Exception):
    """Bad input from the user: reported on one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, raised as :class:`UsageError`."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[Parser]
else:
    Subparsers = Any
