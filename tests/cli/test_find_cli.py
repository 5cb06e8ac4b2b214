import json
import subprocess
import sys

import pytest

from lrtune.cli import main


def test_find_writes_plot_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["find", "--momentum", "0.9", "--num-iters", "60", "--start-lr", "1e-5",
                 "--out", str(out)])
    assert code == 0
    data = json.loads((out / "lr_find.json").read_text())
    assert {"lrs", "losses", "suggested_lr", "verdict"} <= data.keys()
    assert len(data["lrs"]) == len(data["losses"]) <= 60
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "range test on digits (mlp, sgd)" in printed
    assert ("suggested lr" in printed) == (data["verdict"] == "ok")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start-lr", "0"], "argument --start-lr: must be a finite number > 0, got 0"),
        (["--start-lr", "1e-2", "--end-lr", "1e-3"], "--end-lr (0.001) must be greater than"),
        (["--num-iters", "1"], "argument --num-iters: must be between 8 and 1,000,000, got 1"),
        (["--batch-size", "0"], "argument --batch-size: must be > 0, got 0"),
        (["--dataset", "imagenet"], "unknown --dataset 'imagenet'"),
        (["--model", "resnet"], "unknown --model 'resnet'"),
        (["--optimizer", "lion"], "argument --optimizer: invalid choice: 'lion'"),
        (["--rule", "magic"], "unknown --rule 'magic'"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["find", "--out", str(tmp_path), *argv]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "lr_find.json").exists()


def test_python_dash_m_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "lrtune", "find", "--num-iters", "0"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == ("lrtune find: error: argument --num-iters: must be between 8 "
                                   "and 1,000,000, got 0 (see lrtune find --help)")


def test_confirm_redraws_lr_find_png_with_the_confirmed_rate(tmp_path, capsys, monkeypatch):
    import lrtune.plots

    drawn = []
    plot_finder = lrtune.plots.plot_finder

    def spy(result, ax=None, *, confirmed_lr=None):
        drawn.append(confirmed_lr)
        return plot_finder(result, ax=ax, confirmed_lr=confirmed_lr)

    monkeypatch.setattr(lrtune.plots, "plot_finder", spy)
    out = tmp_path / "run"
    assert main(["find", "--momentum", "0.9", "--num-iters", "60", "--start-lr", "1e-4",
                 "--confirm", "2", "--epochs", "2", "--out", str(out)]) == 0
    data = json.loads((out / "lr_find.json").read_text())
    assert data["confirmed_lr"] is not None
    assert drawn == [None, data["confirmed_lr"]]  # the range test's figure, then redrawn
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


def test_confirm_trains_the_samples_of_one_accumulated_optimizer_step(tmp_path, capsys):
    # before: the range test accumulated 3 micro-batches, the confirmation trained single ones
    out = tmp_path / "f"
    assert main(["find", "--accumulation-steps", "3", "--batch-size", "16", "--num-iters", "20",
                 "--confirm", "2", "--epochs", "1", "--out", str(out)]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["settings"]["batch_size"] == 48
