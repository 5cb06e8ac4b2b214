import json

import pytest

from lrtune.cli import main


def test_train_lr_auto_confirm_trains_at_the_confirmed_rate(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--lr", "auto", "--confirm", "3", "--epochs", "2", "--momentum", "0.9",
                 "--out", str(out), "--verbose", "0"])
    assert code == 0
    found = json.loads((out / "lr_find" / "lr_find.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert len(found["confirm"]["candidates"]) == 3
    # a quarter of the planned 2 epochs x 34 steps (digits, batch 32): 17 steps, half an epoch
    assert found["confirm"]["steps"] == 17 and found["confirm"]["epochs"] == 0.5
    assert summary["lr"] == found["confirmed_lr"]
    assert (out / "lr_find" / "sweep.png").is_file()


def test_lr_auto_checks_the_confirmation_fraction_without_confirm(tmp_path, capsys):
    # --lr auto confirms by default, so its fraction is checked before anything is written
    assert main(["train", "--lr", "auto", "--confirm-fraction", "2",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--confirm-fraction must be in (0, 1], got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_confirm_needs_lr_auto(tmp_path, capsys):
    assert main(["train", "--lr", "0.1", "--confirm", "--out", str(tmp_path)]) == 2
    assert "it needs --lr auto" in capsys.readouterr().err


def test_confirm_and_no_confirm_contradict(tmp_path, capsys):
    assert main(["train", "--lr", "auto", "--confirm", "--no-confirm",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--confirm and --no-confirm contradict each other" in capsys.readouterr().err


def test_train_lr_auto_rejects_a_bad_range_test_option(tmp_path, capsys):
    assert main(["train", "--lr", "auto", "--start-lr", "1", "--end-lr", "0.1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--end-lr (0.1) must be greater than --start-lr (1.0)" in capsys.readouterr().err
    assert main(["train", "--lr", "auto", "--rule", "guess", "--out", str(tmp_path / "r")]) == 2
    assert "unknown --rule 'guess'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_halving_and_choice_reach_the_confirmation(tmp_path):
    runs = {"default": [], "set": ["--halving", "off", "--choice", "final"]}
    for name, extra in runs.items():
        assert main(["train", "--lr", "auto", "--confirm", "4", "--epochs", "1", "--verbose", "0",
                     "--out", str(tmp_path / name), *extra]) == 0
    swept = {name: json.loads((tmp_path / name / "lr_find" / "sweep.json").read_text())
             for name in runs}
    assert swept["default"]["choice"] == "window"
    assert swept["default"]["settings"]["halving"]["rungs"] == [0.25, 0.5]
    assert swept["set"]["choice"] == "final" and swept["set"]["settings"]["halving"] is None


def test_train_lr_auto_passes_accumulation_steps_to_the_search(tmp_path, monkeypatch):
    import lrtune.auto as auto

    seen = {}
    real = auto.auto_lr

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(auto, "auto_lr", spy)
    assert main(["train", "--lr", "auto", "--accumulation-steps", "3", "--epochs", "1",
                 "--num-iters", "20", "--confirm", "2", "--verbose", "0",
                 "--out", str(tmp_path / "run")]) == 0
    assert seen["accumulation_steps"] == 3


def test_after_no_rate_the_printed_advice_works_as_written(tmp_path, capsys):
    # before: "pass --lr VALUE" into the same --out was refused, with a hint to --resume a run
    # that has no checkpoint
    out = str(tmp_path / "run")
    assert main(["train", "--lr", "auto", "--no-confirm", "--end-lr", "1e-5", "--epochs", "1",
                 "--num-iters", "20", "--verbose", "0", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "and confirm=False: no rate" in err
    assert err.endswith(f"and pass --lr VALUE (with --overwrite to train in {out}, which holds "
                        "only this search)")
    assert main(["train", "--lr", "0.1", "--epochs", "1", "--verbose", "0", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" not in err and "--overwrite" in err
    assert main(["train", "--lr", "0.1", "--epochs", "1", "--verbose", "0", "--overwrite",
                 "--out", out]) == 0
    # a run with a checkpoint is still offered --resume
    assert main(["train", "--lr", "0.1", "--epochs", "1", "--verbose", "0", "--out", out]) == 2
    assert "use --resume to continue it or --overwrite" in capsys.readouterr().err


def test_lr_auto_searches_at_the_momentum_a_one_cycle_schedule_trains_at(tmp_path, monkeypatch):
    # one_cycle cycles momentum 0.95 -> 0.85 -> 0.95 (torch's defaults) on an SGD built with
    # momentum 0: a rate searched at momentum 0 made training diverge (digits, 10 epochs: test
    # accuracy 0.775, valid loss at chance from epoch 4; searched at 0.85: 0.972)
    import lrtune.auto as auto

    seen = []
    real = auto.auto_lr

    def spy(model, optimizer, *args, **kwargs):
        seen.append([g["momentum"] for g in optimizer.param_groups])
        result = real(model, optimizer, *args, **kwargs)
        seen.append([g["momentum"] for g in optimizer.param_groups])
        return result

    monkeypatch.setattr(auto, "auto_lr", spy)
    common = ["train", "--lr", "auto", "--epochs", "1", "--num-iters", "20", "--confirm", "2",
              "--schedule", "one_cycle", "--verbose", "0"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    assert seen == [[pytest.approx(0.85, abs=1e-3)]] * 2  # at the sampled step nearest the peak
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert history["batches"][0]["momentum"] == 0.95  # training's own schedule, from step 0
    seen.clear()  # a momentum the schedule keeps constant is searched at as it is
    assert main([*common, "--momentum", "0.9", "--out", str(tmp_path / "b")]) == 0
    assert seen == [[0.9], [0.9]]
