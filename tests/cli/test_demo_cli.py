import json
import re
from pathlib import Path

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


def test_demo_whose_training_fails_in_the_first_epoch_reports_the_error(tmp_path, capsys,
                                                                        monkeypatch):
    import lrtune.cli.train
    from lrtune.finder import FinderResult

    def failed_training(args):  # what run_training returns after a NaN in epoch 1
        lrs = [1e-3, 1e-2, 1e-1]
        FinderResult(lrs=lrs, losses=[2.0, 1.0, 3.0], smoothed_losses=[2.0, 1.0, 3.0],
                     train_lrs=lrs, train_losses=[2.0, 1.0, 3.0], stop_reason="finished",
                     stop_lr=0.1, suggestions={"steepest": 1e-2}, rule="steepest",
                     suggested_lr=1e-2, verdict="ok",
                     settings={"start_lr": 1e-3, "end_lr": 0.1, "num_iters": 3},
                     ).to_json(_mkdir(Path(args.out)) / "lr_find.json")
        return {"lr": 1e-2, "epochs": 3, "epochs_run": 1, "stop_reason": "non_finite",
                "best_epoch": None, "best_valid_loss": None, "error": "the loss is nan"}

    def _mkdir(out):
        (out / "lr_find").mkdir(parents=True)
        return out / "lr_find"

    monkeypatch.setattr(lrtune.cli.train, "run_training", failed_training)
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "3", "--out", str(out), "--verbose", "0"]) == 1
    assert "lrtune demo: error: the loss is nan" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "no epoch finished with a finite valid loss" in report
    assert "Training stopped: the loss is nan" in report
