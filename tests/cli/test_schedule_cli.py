"""``lrtune schedule`` in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrtune.cli import main


def run_json(capsys, *args):
    assert main(["schedule", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_one_value_per_step_for_lr_and_momentum(capsys):
    data = run_json(capsys, "linear", "--lr", "0.03", "--lr-end", "0.0001", "--momentum", "0.9",
                    "--momentum-end", "0.999", "--steps", "30")
    np.testing.assert_allclose(data["lr"], np.linspace(0.03, 0.0001, 30), rtol=1e-12)
    np.testing.assert_allclose(data["momentum"], np.linspace(0.9, 0.999, 30), rtol=1e-12)
    assert data["lr"][0] == 0.03
    assert data["momentum"][-1] == 0.999


@pytest.mark.parametrize("name", ["constant", "linear", "one_cycle", "cosine", "warmup_cosine",
                                  "cyclic", "cosine_restarts", "step", "exponential"])
def test_every_name_previews(capsys, name):
    data = run_json(capsys, name, "--lr", "0.1", "--steps", "40")
    assert len(data["lr"]) == 40
    assert max(data["lr"]) == pytest.approx(0.1)
    if name in ("one_cycle", "cyclic"):
        assert len(data["momentum"]) == 40
        assert max(data["momentum"]) > min(data["momentum"])
    else:
        assert data["momentum"] is None


def test_constant_momentum_is_shown_when_given(capsys):
    data = run_json(capsys, "cosine", "--steps", "5", "--momentum", "0.9")
    assert data["momentum"] == [0.9] * 5
    assert data["lr"][-1] == 0.0


def test_table_flags_jumps_and_png_is_written(capsys, tmp_path):
    out = tmp_path / "step.png"
    assert main(["schedule", "step", "--lr", "0.1", "--steps", "80", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].split() == ["step", "lr"]
    assert "jumps in lr at steps 40, 60" in text
    assert sum("<- jump: lr" in line for line in text.splitlines()) == 2
    assert out.stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cosine", "--lr", "-0.1"], "argument --lr: must be a finite number > 0, got -0.1"),
        (["cosine", "--steps", "1"], "total_steps must be an integer >= 2, got 1"),
        (["linear", "--steps", "-3"], "argument --steps: must be between 1 and 1,000,000, got -3"),
        (["nope"], "unknown schedule name 'nope'"),
        (["linear", "--momentum-end", "0.9"], "momentum_end (0.9) needs momentum"),
    ],
)
def test_bad_values_print_one_line_and_exit_2(capsys, args, message):
    try:
        code = main(["schedule", *args])
    except SystemExit as exc:  # argparse's checks
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lrtune schedule: error: ")
    assert message in lines[0]
