"""rmsprop.torch.RMSProp under DDP, ZeRO, FSDP2 and a distributed checkpoint (2 ranks, gloo)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 240  # seconds for the whole two-rank run; it takes a few


def run_bounded(*args):
    """Run the worker in its own process group; kill the whole group if it overruns."""
    process = subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"the distributed run did not finish in {TIMEOUT} s")
    return process.returncode, stderr


def shortened(text, head=4000, tail=16000):
    """``text`` whole up to ``head + tail`` characters, else its start and its end: the
    first error of a rank and the end of the run."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    result_file = tmp_path_factory.mktemp("distributed") / "results.json"
    returncode, stderr = run_bounded(result_file)
    assert returncode == 0, shortened(stderr)
    return json.loads(result_file.read_text())


@pytest.mark.parametrize(
    "run",
    ["ddp", "ddp_state", "ddp_flat", "zero", "zero_state", "fsdp2", "fsdp2_state", "checkpoint"],
)
def test_two_ranks_match_one_process(results, run):
    """Max |distributed - single| / max |single| over params (and state, *_state)."""
    assert results[run] <= 1e-6


def test_ddp_averages_into_the_gradients_of_a_flattened_model(results):
    assert results["ddp_flat_kept"] == 1.0


def test_a_failing_rank_fails_the_run_instead_of_hanging(tmp_path):
    returncode, stderr = run_bounded(tmp_path / "results.json", 1)
    assert returncode != 0
    assert "rank 1 fails on purpose" in stderr
    assert not (tmp_path / "results.json").exists()
