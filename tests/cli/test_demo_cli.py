import json
import re

from lrtune.cli import main


def test_demo_runs_the_seed_recipe_and_writes_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "3", "--patience", "2", "--out", str(out),
                 "--verbose", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["lr_source"] == "range test"
    assert summary["lr"] == summary["suggestions"][summary["rule"]]
    report = (out / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) == 3
    assert all((out / path).is_file() for path in images)
    assert f"**Chosen rate: {summary['lr']:.3g}**" in report
    assert (out / "train" / "checkpoints" / "best.pt").is_file()
    assert any((out / "train" / "tensorboard").rglob("events.out.tfevents.*"))
    assert "test accuracy" in capsys.readouterr().out


def test_demo_refuses_a_regression_dataset(tmp_path, capsys):
    assert main(["demo", "--dataset", "synthetic-faces", "--out", str(tmp_path)]) == 2
    assert "regression dataset" in capsys.readouterr().err
