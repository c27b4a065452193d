"""benchmarks/gpu_check.py keeps working: run on CPU tensors under Triton's interpreter."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("triton", reason="Triton is not installed")

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_and_finds_the_kernel_exact(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(SCRIPT.parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["exactness"], "no exactness rows"
    assert all(row["bit_identical"] for row in report["exactness"])
    sweep = report["every_option_combination"]
    assert sweep["runs"] > 0 and sweep["bit_identical"] == sweep["runs"]
    cases = {row["case"] for row in report["speed"]}
    assert len(cases) == 3 and all(row["median_s"] > 0 for row in report["speed"])
    if importlib.util.find_spec("matplotlib") is None:  # the figure needs it; the rest does not
        assert not (tmp_path / "gpu_check.png").exists()
    else:
        assert (tmp_path / "gpu_check.png").stat().st_size > 10_000
