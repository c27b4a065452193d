"""Ctrl-C during ``rmsprop bench`` and ``rmsprop demo``: status 130 and one line, within a
second, wherever the signal lands (see rmsprop._interrupt)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from rmsprop import _interrupt

pytestmark = pytest.mark.subprocess

# A terminal's Ctrl-C reaches a process whose SIGINT is handled as Python's default; a
# shell's background job (and so its children) ignores SIGINT: restore the default.
CHILD = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from rmsprop.cli import main\n"
    "print('ready', flush=True)\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
#: What "within a second" may take on a loaded two-core machine, beyond GRACE.
SLACK = 2.0


def interrupt(arguments, delay):
    """Start the command, send SIGINT ``delay`` seconds into it; (status, stderr, seconds
    from the signal to the end)."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(delay)
        if child.poll() is not None:
            pytest.fail(f"the command ended before the signal ({delay} s)")
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=30)
        return child.returncode, err, time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def assert_one_line(status, err, seconds, command):
    """Status 130 and one line about it, last, without a traceback; what the command wrote
    on stderr before (the demo's progress summaries when stderr is no terminal) stays."""
    assert status == 130, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1:] == [f"{command}: interrupted"], err[-2000:]
    assert lines.count(f"{command}: interrupted") == 1 and "Traceback" not in err, err[-2000:]
    assert seconds < _interrupt.GRACE + SLACK


@pytest.mark.parametrize("delay", [0.05, 0.8, 2.5, 6.0])
def test_ctrl_c_in_the_bench_exits_130_with_one_line(tmp_path, delay):
    status, err, seconds = interrupt(["bench", "--quick", "--out", str(tmp_path)], delay)
    assert_one_line(status, err, seconds, "rmsprop bench")
    assert not list(tmp_path.iterdir())  # nothing half written


@pytest.mark.parametrize("delay", [0.05, 1.0, 3.0])
def test_ctrl_c_in_the_demo_exits_130_with_one_line(tmp_path, delay):
    arguments = ["demo", "--steps", "6000", "--out", str(tmp_path)]  # runs well past 3 s
    status, err, seconds = interrupt(arguments, delay)
    assert_one_line(status, err, seconds, "rmsprop demo")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
