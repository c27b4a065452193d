"""``rmsprop demo``: outputs, the accuracy it promises, determinism and its errors."""

import importlib.util
import json

import pytest

from rmsprop.cli import _demo, main
from rmsprop.demo._digits import SIXTEEN_BIT, contenders, train

pytest.importorskip("matplotlib")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "nested" / "out"
    status = main(["demo", "--quick", "--out", str(out)])
    return status, out


def test_quick_demo_writes_figures_and_json(quick_run):
    status, out = quick_run
    assert status == 0
    for name in ("adaptive_scaling.png", "digits_training.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 20_000  # a real figure, not an empty canvas
    report = json.loads((out / "demo.json").read_text())
    assert report["settings"] == {"steps": _demo.QUICK_STEPS, "random_seed": 0}
    assert report["seed_examples"][0]["params"] == [0.6837738151101336]
    assert {s["surface"] for s in report["surfaces"]} == {"quadratic", "rosenbrock"}
    names = [run["optimizer"] for run in report["digits"]]
    assert names[:3] == ["rmsprop.RMSProp", "SGD", "Adam"]
    assert all(len(run["train_losses"]) == _demo.QUICK_STEPS for run in report["digits"])
    assert sorted(p.name for p in out.iterdir()) == [
        "adaptive_scaling.png",
        "demo.json",
        "digits_training.png",
    ]


def test_rmsprop_beats_plain_gradient_descent_on_the_quadratic(quick_run):
    _, out = quick_run
    quadratic = json.loads((out / "demo.json").read_text())["surfaces"][0]
    gd, rms = quadratic["paths"]
    assert rms["final_loss"] < 1e-6
    assert gd["final_loss"] > 1.0


def test_rmsprop_reaches_95_percent_on_digits_within_the_default_budget():
    run = train(contenders(with_torch=False)[0], _demo.DEFAULT_STEPS, random_seed=0)
    assert run.name == "rmsprop.RMSProp"
    assert run.test_accuracy >= 0.95


def test_training_is_deterministic_for_a_seed():
    first, second = (train(contenders(with_torch=False)[0], 100, random_seed=3) for _ in range(2))
    assert first.train_losses == second.train_losses
    assert first.test_accuracy_curve == second.test_accuracy_curve


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_torch_optim_rmsprop_follows_nearly_the_same_curve():
    """Only the place of eps differs (PyTorch adds it after the root)."""
    ours, _, _, theirs = (train(c, 300, random_seed=0) for c in contenders(with_torch=True))
    assert theirs.name == "torch.optim.RMSprop"
    gaps = [abs(a - b) / a for a, b in zip(ours.train_losses, theirs.train_losses, strict=True)]
    assert 0 < max(gaps) < 1e-3


def test_without_torch_and_ml_dtypes_the_demo_says_so(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    missing = ("torch", "ml_dtypes")
    monkeypatch.setattr(
        _demo.importlib.util, "find_spec", lambda name: None if name in missing else real(name)
    )
    assert main(["demo", "--steps", "60", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch.optim.RMSprop left out: PyTorch is not installed" in out
    assert "16-bit state left out: it needs ml_dtypes" in out
    assert len(json.loads((tmp_path / "demo.json").read_text())["digits"]) == 3


def test_16_bit_state_follows_float32_states_curve():
    """The row with half the state memory: bfloat16 state, the same training within 0.1 %."""
    pytest.importorskip("ml_dtypes")
    ours, *_, sixteen = contenders(with_torch=False, with_16_bit=True)
    assert sixteen.name == SIXTEEN_BIT
    a, b = (train(c, 300, random_seed=0) for c in (ours, sixteen))
    gaps = [abs(x - y) / x for x, y in zip(a.train_losses, b.train_losses, strict=True)]
    assert 0 < max(gaps) < 1e-3  # not float32 state's numbers (1e-4 apart), the same training
    assert abs(a.test_loss - b.test_loss) < 1e-3 * a.test_loss


def test_without_matplotlib_one_line_and_status_2(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        _demo.importlib.util, "find_spec", lambda name: None if name == "matplotlib" else real(name)
    )
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "rmsprop demo: error: the demo draws its figures with matplotlib: "
        "pip install 'rmsprop[demo]'\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
        (["--steps", "many"], "argument --steps: expected an integer >= 1, got 'many'"),
        (["--seed", "-1"], "argument --random-seed/--seed: expected an integer >= 0, got -1"),
    ],
)
def test_bad_options(capsys, argv, message):
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_unwritable_out_is_reported_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["demo", "--out", str(blocker / "out")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"rmsprop demo: error: cannot write to --out '{blocker / 'out'}'")
    assert err.count("\n") == 1
