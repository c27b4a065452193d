"""The benchmark suite's machinery (not its timings: those are read, never asserted)."""

import json
import math

import pytest

from rmsprop import bench
from rmsprop.cli import main


def test_resnet50_shapes():
    shapes = bench.resnet50_shapes()
    assert len(shapes) == 161
    assert sum(math.prod(s) for s in shapes) == 25_557_032


def test_a_tiny_run_reports_every_implementation(tmp_path):
    pytest.importorskip("matplotlib")
    report = bench.run((1000,), lambda n: 2, model=False)
    names = {r["implementation"] for r in report["arrays"]}
    assert names == set(bench.implementations())
    for row in report["arrays"]:
        if "skipped" in row:
            assert row["skipped"].endswith("is not installed") or row["skipped"] == (
                "float32 arithmetic applies to float32 data"
            )
            continue
        assert row["min_s"] <= row["median_s"] <= row["max_s"]
        assert row["gb_per_s_5_streams"] > 0
    roofline = next(r for r in report["arrays"] if r["implementation"] == bench.ROOFLINE)
    assert roofline["share_of_roofline"] == 1.0
    assert {"platform", "cpus", "versions", "python"} <= set(report["machine"])
    text = bench.table(report)
    assert "float32, N = 1,000" in text
    assert "rmsprop.step_" in text
    written = bench.save(report, tmp_path)
    assert json.loads((tmp_path / "bench.json").read_text())["settings"]["lr"] == bench.LR
    assert written == [tmp_path / "bench.json", tmp_path / "bench.png"]
    assert (tmp_path / "bench.png").read_bytes().startswith(b"\x89PNG")


def test_unavailable_peers_are_skipped_with_the_reason():
    def missing():
        raise bench.UnavailableError("frobnicator is not installed")

    results = bench.measure({"frobnicator": missing}, 10, "float32", 1, lambda: None)
    assert results[0].as_dict(None) == {
        "implementation": "frobnicator",
        "skipped": "frobnicator is not installed",
    }


def test_bench_command_rejects_an_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "--quick", "--out", str(blocker / "x")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err


def test_model_cases_and_their_bytes():
    cases = {case.name: case for case in bench.models()}
    assert set(cases) == {
        "ResNet-50", "ResNet-50, channels_last", "ResNet-50, bfloat16 parameters", "BERT-base"
    }  # fmt: skip
    assert cases["BERT-base"].elements == 109_482_240 and len(cases["BERT-base"].shapes) == 199
    assert cases["ResNet-50, bfloat16 parameters"].bytes_per_element == 14  # 2 + 2 + 4 + 2 + 4
    assert cases["ResNet-50"].bytes_per_element == 20


def test_model_rows_are_printed_with_their_speedups():
    row = {"elements": 10, "dtype": "float32", "min_s": 1.0, "max_s": 3.0, "median_s": 2.0,
           "gb_per_s_5_streams": 1.0, "share_of_roofline": 0.5}  # fmt: skip
    report = {
        "arrays": [],
        "models": [{
            "model": "ResNet-50", "tensors": 161, "elements": 10, "dtype": "float32",
            "bytes_per_element": 20,
            "results": [
                {**row, "implementation": "rmsprop.torch.RMSProp"},
                {**row, "implementation": "torch.optim.RMSprop (for-loop)", "median_s": 6.0},
                {"implementation": "rmsprop.RMSProp", "skipped": "not here"},
            ],
        }],
    }  # fmt: skip
    text = bench.table(report)
    assert "ResNet-50: 161 float32 tensors, 10 values, 20 bytes each a step" in text
    assert "rmsprop.torch.RMSProp is 3.0x faster than torch.optim.RMSprop (for-loop)" in text
    assert "rmsprop.RMSProp: skipped (not here)" in text
