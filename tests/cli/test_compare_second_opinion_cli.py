import json
import statistics

import pytest

from lrtune.cli import main


def test_second_opinion_runs_tuned_prodigy_and_schedule_free_over_seeds(tmp_path, capsys):
    out = tmp_path / "so"
    code = main(["compare", "--second-opinion", "--seeds", "2", "--out", str(out),
                 "--common", "--epochs 1 --batch-size 128 --momentum 0.9",
                 "--recipe", "mine: --lr 0.5", "--verbose", "0"])
    assert code == 0
    runs = json.loads((out / "summary.json").read_text())
    assert [(r["name"], r["seed"]) for r in runs] == [
        (name, seed) for seed in (0, 1)
        for name in ("tuned rate (--lr auto)", "Prodigy", "Schedule-Free AdamW")]
    tuned, prodigy, free = runs[:3]
    assert tuned["summary"]["lr_source"] == "confirmation"  # --lr 0.5 became --lr auto
    assert tuned["summary"]["optimizer"] == "sgd" and tuned["summary"]["seconds_lr_search"] > 0
    assert prodigy["summary"]["optimizer"] == "prodigy" and prodigy["summary"]["lr"] == 1.0
    assert free["summary"]["optimizer"] == "schedulefree-adamw"
    assert free["summary"]["lr"] == 0.0025
    for r in runs:  # the wall time covers the range test too
        assert r["seconds_total"] >= r["summary"]["seconds"] + r["summary"]["seconds_lr_search"]
        assert (tmp_path / r["dir"] / "checkpoints" / "best.pt").is_file()

    report = (out / "report.md").read_text()
    assert report.startswith("# Second opinion: the tuned rate vs learning-rate-free")
    assert "seeds 0, 1" in report and "(learning_curves.png)" in report
    # the table's mean ± sd is the seeds' valid accuracy at the best epoch, per recipe
    for name in ("tuned rate (--lr auto)", "Prodigy", "Schedule-Free AdamW"):
        values = []
        for r in runs:
            if r["name"] != name:
                continue
            epochs = json.loads((tmp_path / r["dir"] / "history.json").read_text())["epochs"]
            values.append(next(e["valid_accuracy"] for e in epochs
                               if e["epoch"] == r["summary"]["best_epoch"]))
        cell = f"| {name} | {statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g} |"
        assert cell in report
    means = {name: statistics.fmean(
        json.loads((tmp_path / r["dir"] / "history.json").read_text())["epochs"][0][
            "valid_accuracy"] for r in runs if r["name"] == name)
        for name in ("tuned rate (--lr auto)", "Prodigy", "Schedule-Free AdamW")}
    winner = max(means, key=means.get)
    assert f"- Winner by valid accuracy: **{winner}**" in report
    assert report.count("worse than " + winner) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["--recipe", "a: --lr 0.1", "--recipe", "b: --lr 0.2"],
     "--second-opinion takes one recipe: --common OPTIONS and at most one --recipe"),
    (["--common", "--optimizer prodigy"],
     "--second-opinion compares a tuned rate with learning-rate-free optimizers; give your "
     "recipe's own optimizer, not prodigy"),
])
def test_second_opinion_usage_errors(tmp_path, capsys, argv, message):
    assert main(["compare", "--second-opinion", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
