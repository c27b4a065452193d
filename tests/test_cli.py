"""The command line: ``rmsprop step`` and ``rmsprop demo``."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rmsprop
from rmsprop.cli import _step as cli_step
from rmsprop.cli import main

SEED_1 = [
    "--params",
    "[1.0]",
    "--grads",
    "[0.1]",
    "--cache",
    "[0.0]",
    "--lr",
    "0.1",
    "--beta",
    "0.9",
]
TIMEOUT = 120  # seconds for a whole CLI process; they take about one


def run(capsys, monkeypatch, *argv, stdin=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin) if stdin is not None else io.StringIO(""))
    status = main(["step", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_options(capsys, monkeypatch):
    status, out, err = run(capsys, monkeypatch, *SEED_1)
    assert status == 0 and err == ""
    assert json.loads(out) == {"params": [0.6837738151101336], "cache": [0.0009999999999999998]}
    assert json.loads(out)["params"] == rmsprop.step([1.0], [0.1], [0.0], 0.1, 0.9)[0]


def test_json_object_on_stdin_and_decimals(capsys, monkeypatch):
    document = {"params": [1.0, 2.0, 3.0], "grads": [0.1, 0.2, 0.3], "cache": [0, 0, 0]}
    document |= {"lr": 0.01, "beta": 0.9, "eps": 1e-8}
    status, out, _ = run(capsys, monkeypatch, "--decimals", "6", stdin=json.dumps(document))
    assert status == 0
    assert json.loads(out) == {
        "params": [0.968377, 1.968377, 2.968377],
        "cache": [0.001, 0.004, 0.009],
    }


def test_options_override_stdin(capsys, monkeypatch):
    document = {"params": [1.0], "grads": [0.1], "cache": [0.0], "lr": 5.0, "beta": 0.9}
    status, out, _ = run(capsys, monkeypatch, "--lr", "0.1", stdin=json.dumps(document))
    assert status == 0
    assert json.loads(out)["params"] == [0.6837738151101336]


def test_nested_and_scalar_inputs(capsys, monkeypatch):
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        "1",
        "--grads",
        "0.1",
        "--cache",
        "0",
        "--lr",
        "0.1",
        "--beta",
        "0.9",
    )
    assert status == 0
    assert json.loads(out) == {"params": 0.6837738151101336, "cache": 0.0009999999999999998}
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        "[[1, 2]]",
        "--grads",
        "[[0.1, 0.2]]",
        "--cache",
        "[[0, 0]]",
        "--lr",
        "0.1",
        "--beta",
        "0.9",
        "--eps",
        "0",
    )
    assert status == 0
    new_params, new_cache = rmsprop.step([[1, 2]], [[0.1, 0.2]], [[0, 0]], 0.1, 0.9, 0)
    assert json.loads(out) == {"params": new_params, "cache": new_cache}


def test_non_finite_values_are_printed_as_python_json_does(capsys, monkeypatch):
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        "[1.0]",
        "--grads",
        "[0.0]",
        "--cache",
        "[0.0]",
        "--lr",
        "0.1",
        "--beta",
        "0.9",
        "--eps",
        "0",
        "--decimals",
        "3",
    )
    assert status == 0 and out.strip() == '{"params": [NaN], "cache": [0.0]}'


def test_npy_inputs_and_npz_output(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    p, g = rng.normal(size=(2, 3, 4)).astype(np.float32)
    v = rng.random((3, 4)).astype(np.float32)
    for name, a in zip(("p", "g", "v"), (p, g, v), strict=True):
        np.save(tmp_path / f"{name}.npy", a)
    out_file = tmp_path / "new.npz"
    out_file.write_bytes(b"old contents")
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        str(tmp_path / "p.npy"),
        "--grads",
        str(tmp_path / "g.npy"),
        "--cache",
        str(tmp_path / "v.npy"),
        "--lr",
        "0.001",
        "--beta",
        "0.99",
        "--out",
        str(out_file),
        "--decimals",
        "2",
    )
    assert status == 0
    assert out.strip() == f"wrote {out_file}: params float32 (3, 4), cache float32 (3, 4)"
    expected = rmsprop.step(p, g, v, 0.001, 0.99)
    with np.load(out_file) as saved:
        assert sorted(saved.files) == ["cache", "params"]
        np.testing.assert_array_equal(saved["params"], expected[0])  # never rounded
        np.testing.assert_array_equal(saved["cache"], expected[1])
        assert saved["params"].dtype == np.float32
    assert sorted(os.listdir(tmp_path)) == ["g.npy", "new.npz", "p.npy", "v.npy"]


def test_npy_params_with_json_grads_and_json_params_with_npy_cache(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "p.npy", np.array([1.0, 2.0]))
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        str(tmp_path / "p.npy"),
        "--grads",
        "[0.1, 0.2]",
        "--cache",
        "[0, 0]",
        "--lr",
        "0.1",
        "--beta",
        "0.9",
    )
    assert status == 0
    expected = rmsprop.step([1.0, 2.0], [0.1, 0.2], [0.0, 0.0], 0.1, 0.9)
    assert json.loads(out) == {"params": expected[0], "cache": expected[1]}
    np.save(tmp_path / "v.npy", np.array([0.0, 0.0]))
    status, out, _ = run(
        capsys,
        monkeypatch,
        "--params",
        "[1.0, 2.0]",
        "--grads",
        "[0.1, 0.2]",
        "--cache",
        str(tmp_path / "v.npy"),
        "--lr",
        "0.1",
        "--beta",
        "0.9",
    )
    assert status == 0 and json.loads(out) == {"params": expected[0], "cache": expected[1]}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "new.npz"
    out_file.write_bytes(b"old contents")

    def crash(*args, **kwargs):
        args[0].write(b"half an npz")
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_step.np, "savez", crash)
    status, _, err = run(capsys, monkeypatch, *SEED_1, "--out", str(out_file))
    assert status == 130 and err == "\nrmsprop step: interrupted\n"  # Ctrl-C: one line
    assert out_file.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["new.npz"]


def test_out_onto_a_symbolic_link_writes_its_target_and_keeps_the_link(
    tmp_path, capsys, monkeypatch
):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    status, _, _ = run(capsys, monkeypatch, *SEED_1, "--out", str(link))
    assert status == 0 and link.is_symlink() and link.resolve() == target
    with np.load(target) as saved:
        assert sorted(saved.files) == ["cache", "params"]  # exactly these two arrays


def test_input_nested_too_deeply_is_one_line_and_status_2(capsys, monkeypatch):
    deep = "[" * 500 + "1.0" + "]" * 500
    status, _, err = run(capsys, monkeypatch, "--params", deep, *SEED_1[2:])
    assert status == 2 and err == "rmsprop step: error: params is nested deeper than 64 levels\n"
    very_deep = '{"params": ' + "[" * 100_000 + "]" * 100_000 + "}"
    status, _, err = run(capsys, monkeypatch, stdin=very_deep)
    assert status == 2 and err == "rmsprop step: error: stdin is nested deeper than 64 levels\n"


def test_ctrl_c_in_a_real_process_exits_130_with_one_line():
    code = (
        "import sys, rmsprop.cli._step as s\n"
        "def stop(*a, **k): raise KeyboardInterrupt\n"
        "s._read_stdin = stop\n"
        "from rmsprop.cli import main\n"
        "sys.exit(main(['step']))\n"
    )
    result = subprocess_run(sys.executable, "-c", code, stdin="")
    assert result.returncode == 130 and result.stderr.strip() == "rmsprop step: interrupted"


BAD = [
    ([*SEED_1[:-2], "--beta", "1.5"], "beta must be in [0, 1], got 1.5"),
    ([*SEED_1[:-4], "--lr", "-1", *SEED_1[-2:]], "lr must be a finite number >= 0, got -1.0"),
    ([*SEED_1[:-4], "--lr", "x", *SEED_1[-2:]], "argument --lr: invalid float value: 'x'"),
    (["--params", "[1.0", *SEED_1[2:]], "--params is neither valid JSON"),
    (["--params", "[1.0, 2.0]", *SEED_1[2:]], "grads has shape (1,) but params has shape (2,)"),
    (["--params", '["a"]', *SEED_1[2:]], "params[0] is 'a' (str); expected a real number"),
    (["--params", "missing.npy", *SEED_1[2:]], "--params: cannot read 'missing.npy': No such file"),
    ([*SEED_1, "--decimals", "-1"], "argument --decimals: expected an integer >= 0, got -1"),
    ([*SEED_1, "--out", "new.json"], "--out must name a .npz file, got 'new.json'"),
    ([*SEED_1, "--out", "/nonexistent-dir/new.npz"], "cannot write '/nonexistent-dir/new.npz'"),
    ([*SEED_1, "--bogus"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[m.split(":")[0][:40] for _, m in BAD])
def test_bad_options(capsys, monkeypatch, argv, message):
    status, out, err = run(capsys, monkeypatch, *argv)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rmsprop step: error: ")
    assert message in err


BAD_STDIN = [
    ("", "stdin is empty"),
    ("[1, 2]", "stdin must hold one JSON object"),
    ("{", "stdin is not valid JSON"),
    ('{"params": [1], "grads": [1], "cache": [0], "lr": 0.1}', "missing beta"),
    (
        '{"params": [1], "grads": [1], "cache": [0], "lr": 0.1, "beta": 0.9, "rho": 1}',
        "unknown key 'rho'",
    ),
    ('{"params": [1], "grads": [1], "cache": [0], "lr": "0.1", "beta": 0.9}', "lr is '0.1' (str)"),
]


@pytest.mark.parametrize(("stdin", "message"), BAD_STDIN, ids=[m for _, m in BAD_STDIN])
def test_bad_stdin(capsys, monkeypatch, stdin, message):
    status, out, err = run(capsys, monkeypatch, stdin=stdin)
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and message in err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "step" in capsys.readouterr().out


def subprocess_run(*argv, stdin=""):
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def test_python_dash_m_and_the_console_script():
    result = subprocess_run(sys.executable, "-m", "rmsprop", "step", *SEED_1, "--decimals", "6")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"params": [0.683774], "cache": [0.001]}
    script = Path(sys.executable).with_name("rmsprop")
    if not script.exists():
        pytest.skip("the rmsprop console script is not installed next to this Python")
    result = subprocess_run(
        str(script), "step", stdin='{"params": 1, "grads": 0.1, "cache": 0, "lr": 0.1, "beta": 0.9}'
    )
    assert result.returncode == 0 and json.loads(result.stdout)["params"] == 0.6837738151101336


def test_a_bad_input_in_a_real_process_is_one_line_and_status_2():
    result = subprocess_run(sys.executable, "-m", "rmsprop", "step", *SEED_1[:-1], "nan")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "rmsprop step: error: beta must be in [0, 1], got nan\n"


def test_unknown_top_level_option(capsys):
    assert main(["--bogus"]) == 2
    assert capsys.readouterr().err == "rmsprop: error: unrecognized arguments: --bogus\n"
