"""The benchmark suite's machinery (not its timings: those are read, never asserted)."""

import json
import math

import pytest

from rmsprop import _bench
from rmsprop.cli import main


def test_resnet50_shapes():
    shapes = _bench.resnet50_shapes()
    assert len(shapes) == 161
    assert sum(math.prod(s) for s in shapes) == 25_557_032


def test_a_tiny_run_reports_every_implementation(tmp_path):
    pytest.importorskip("matplotlib")
    report = _bench.run((1000,), lambda n: 2, model=False)
    names = {r["implementation"] for r in report["arrays"]}
    assert names == set(_bench._implementations())
    for row in report["arrays"]:
        if "skipped" in row:
            assert row["skipped"].endswith("is not installed") or row["skipped"] == (
                "float32 arithmetic applies to float32 data"
            )
            continue
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["gb_per_s_5_streams"] > 0
    roofline = next(r for r in report["arrays"] if r["implementation"] == _bench.ROOFLINE)
    assert roofline["share_of_roofline"] == 1.0
    assert {"platform", "cpus", "versions", "python"} <= set(report["machine"])
    text = _bench.table(report)
    assert "float32, N = 1,000" in text
    assert "rmsprop.step_" in text
    written = _bench.save(report, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["settings"]["lr"] == _bench.LR
    assert written == [tmp_path / "bench.json", tmp_path / "bench.png"]
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_unavailable_peers_are_skipped_with_the_reason():
    def missing():
        raise _bench.UnavailableError("frobnicator is not installed")

    results = _bench.measure({"frobnicator": missing}, 10, "float32", 1, lambda: None)
    assert results[0].as_dict(None) == {
        "implementation": "frobnicator",
        "skipped": "frobnicator is not installed",
    }


def test_bench_command_rejects_an_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "--quick", "--out", str(blocker / "x")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
