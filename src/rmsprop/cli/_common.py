"""What the CLI's commands share."""

import argparse
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn


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


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, then rename it to ``path``.

    A crash leaves either the old file or the new one, never half of one; the
    temporary file is removed on any failure. OSError becomes a UsageError. A
    symbolic link is written through: its target gets the new file, the link stays.
    """
    path = path.resolve() if path.is_symlink() else path
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise UsageError(f"cannot write {str(path)!r}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise UsageError(f"cannot write {str(path)!r}: {error.strerror}") from None
        raise


def write_bytes_atomically(path: Path, data: bytes) -> None:
    """:func:`write_atomically` for bytes already in memory."""

    def write(file: BinaryIO) -> None:
        file.write(data)

    write_atomically(path, write)


def prepare_out_dir(out: Path) -> None:
    """Create ``out`` and check that files can be written there, before any work."""
    check = out / ".rmsprop-write-check"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomically(check, lambda file: None)
        check.unlink()
    except OSError as error:
        raise UsageError(f"cannot write to --out {str(out)!r}: {error.strerror}") from None
    except UsageError:
        raise UsageError(f"cannot write to --out {str(out)!r}") from None


def save_figure(path: Path, draw: Callable[[BinaryIO], None]) -> None:
    """Have ``draw`` render a figure in memory, then write it to ``path`` atomically."""
    buffer = io.BytesIO()
    draw(buffer)
    write_bytes_atomically(path, buffer.getvalue())
