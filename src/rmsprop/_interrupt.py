"""Ctrl-C for long commands: noticed at safe points, and never later than a second.

A ``KeyboardInterrupt`` raised wherever the main thread happens to be can be lost
(CPython drops one raised inside a gc callback, and JAX registers one) or land
inside a C extension's callback. While :func:`sigint_handled` is active, SIGINT
only sets a flag; the command's loops call :func:`checkpoint` between units of
work (a benchmark sample, a training step), which raises :exc:`Interrupted`. The
command then prints one line and exits with status 130.

Some units of work run long in C (compiling a kernel, allocating a model): a
watchdog thread learns of the signal from the interpreter's wakeup file
descriptor, which the C-level handler writes at once, and if the command has not
finished :data:`GRACE` seconds later, it prints the same line and ends the process
with status 130 itself. A second Ctrl-C ends it at once.

In the library, :func:`write_all` keeps writes that belong together (8-bit codes and
their scales) from being split by a ``KeyboardInterrupt``.
"""

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

#: Seconds between Ctrl-C and the watchdog's exit, if no checkpoint ended the command.
GRACE: Final = 0.8
#: The exit status of a command ended by SIGINT, as shells report it (128 + 2).
STATUS: Final = 130

_flag = threading.Event()
_said = threading.Lock()
_prog = "rmsprop"


class Interrupted(Exception):  # noqa: N818 - it is no error: the user asked to stop
    """Ctrl-C, noticed at a checkpoint."""


def checkpoint() -> None:
    """Raise :exc:`Interrupted` if Ctrl-C was pressed since :func:`sigint_handled` began."""
    if _flag.is_set():
        raise Interrupted


def announce() -> None:
    """Print the command's one line about the interruption (once per command)."""
    if _said.acquire(blocking=False):
        with contextlib.suppress(OSError, ValueError):  # no usable stderr: nothing to say
            sys.stderr.write(f"\n{_prog}: interrupted\n")
            sys.stderr.flush()


def _end_now() -> None:
    """The line, then exit 130 at once: from the watchdog thread or a second Ctrl-C, where
    the main thread may hold stderr's lock."""
    if _said.acquire(blocking=False):
        with contextlib.suppress(OSError):
            os.write(2, f"\n{_prog}: interrupted\n".encode())
    os._exit(STATUS)


@contextlib.contextmanager
def sigint_handled(prog: str) -> Iterator[None]:
    """Within the block, Ctrl-C sets the flag that :func:`checkpoint` reads, and a
    watchdog ends the process with status 130 if the block goes on for :data:`GRACE`
    seconds after it. Outside the main thread, a block without any of this."""
    global _prog, _said
    _prog, _said = prog, threading.Lock()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    done = threading.Event()
    watchdog = threading.Thread(target=_watch, args=(read, done), daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        done.set()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGINT, previous)
        with contextlib.suppress(OSError):  # the watchdog may have gone already
            os.write(write, b"\0")  # wakes the watchdog, which closes its end
        watchdog.join(timeout=1.0)
        os.close(write)
        _flag.clear()


def _on_sigint(signum: int, frame: object) -> None:
    if _flag.is_set():  # a second Ctrl-C: at once
        _end_now()
    _flag.set()


def _watch(read: int, done: threading.Event) -> None:
    """Wait for SIGINT on the wakeup descriptor; then give the command GRACE seconds."""
    try:
        while not done.is_set():
            ready, _, _ = select.select([read], [], [])
            data = os.read(read, 64) if ready else b""
            if bytes([signal.SIGINT]) in data and not done.wait(GRACE):
                _end_now()
    finally:
        os.close(read)


def write_all(pairs: Sequence[tuple[Any, Any]], copy: Callable[[Any, Any], object]) -> None:
    """``copy(target, value)`` for each pair, every one of them even when Ctrl-C lands
    between two (Python raises it between calls, never inside one): 8-bit codes are
    never left beside scales of another step. The interrupt is raised after the last."""
    done = 0
    try:
        while done < len(pairs):
            copy(*pairs[done])
            done += 1
    finally:  # interrupted: the rest (a copy done twice writes the same)
        for target, value in pairs[done:]:
            copy(target, value)
