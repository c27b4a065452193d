"""A one-line progress bar on stderr; a single summary line when stderr is not a terminal."""

import sys
import time
from typing import TextIO

from rmsprop._interrupt import checkpoint

WIDTH = 30


class Progress:
    """``with Progress("label", total) as bar: bar.update(done)``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None):
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.started = time.perf_counter()
        self._shown = -1

    def __enter__(self) -> "Progress":
        return self

    def update(self, done: int) -> None:
        checkpoint()  # where a long command notices Ctrl-C (see rmsprop._interrupt)
        percent = done * 100 // self.total
        if self.live and percent != self._shown:
            self._shown = percent
            filled = done * WIDTH // self.total
            bar = "█" * filled + "·" * (WIDTH - filled)
            self.stream.write(f"\r   {self.label:<22} {bar} {percent:3d}% {done}/{self.total}")
            self.stream.flush()

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None:  # interrupted or failed: the caller says so, not a summary
            return
        seconds = time.perf_counter() - self.started
        line = f"   {self.label:<22} {self.total} steps in {seconds:.1f} s"
        # On a terminal, overwrite the bar and clear the rest of its line.
        self.stream.write(f"\r{line}\x1b[K\n" if self.live else f"{line}\n")
        self.stream.flush()
