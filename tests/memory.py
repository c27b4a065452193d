"""Measuring what one call adds to a process's peak memory, in a child process."""

import subprocess
import sys

import pytest

PRELUDE = r"""
import re

def _status(key):
    return int(re.search(rf"{key}:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024

def measure(call):
    call()  # a first call allocates what stays (state, caches, compiled code)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident size to the current one
    base = _status("VmRSS")
    call()
    print(_status("VmHWM") - base)
"""


def extra_bytes(script, *args, timeout=120):
    """Run ``script`` (which calls ``measure(call)`` once) in a child; the bytes that the
    second ``call()`` raised its peak resident memory by. Skips where Linux does not
    let a process reset its peak."""
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + script, *map(str, args)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0 and "clear_refs" in done.stderr:
        pytest.skip("this kernel does not let a process reset its peak memory")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)
