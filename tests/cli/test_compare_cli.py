import json
import re
from pathlib import Path

import pytest

from lrtune.cli import main

TOML = """
title = "two rates"
[common]
epochs = 2
momentum = 0.9
verbose = 0
[[recipes]]
name = "slow"
lr = 0.001
[[recipes]]
name = "fast (0.05)"
lr = 0.05
"""


def test_compare_from_toml_writes_runs_tables_and_overlay(tmp_path, capsys):
    recipes = tmp_path / "r.toml"
    recipes.write_text(TOML)
    out = tmp_path / "cmp"
    assert main(["compare", "--recipes", str(recipes), "--out", str(out), "--verbose", "0"]) == 0
    runs = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in runs] == ["slow", "fast (0.05)"]
    assert [r["summary"]["lr"] for r in runs] == [0.001, 0.05]
    for r in runs:
        assert (Path(r["dir"]) / "checkpoints" / "best.pt").is_file()
    report = (out / "report.md").read_text()
    assert report.startswith("# two rates")
    assert "| Epoch | Train loss | Valid loss | Train / Val |" in report
    assert report.count("| Epoch |") == 2
    assert re.search(r"\*\*fast \(0.05\)\*\* against \*\*slow\*\*: best valid loss", report)
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "![learning curves of every run](learning_curves.png)" in report


def test_command_line_recipes_override_common_options(tmp_path):
    out = tmp_path / "cmp"
    code = main(["compare", "--common", "--epochs 1 --lr 0.01", "--recipe", "a: --lr 0.02",
                 "--table-epochs", "1", "--out", str(out), "--verbose", "0"])
    assert code == 0
    [run] = json.loads((out / "summary.json").read_text())
    assert run["summary"]["lr"] == 0.02 and run["summary"]["epochs"] == 1


def test_common_options_apply_to_toml_recipes_too(tmp_path):
    recipes = tmp_path / "r.toml"
    recipes.write_text('[common]\nepochs = 3\n[[recipes]]\nname = "a"\nlr = 0.02\n')
    out = tmp_path / "cmp"
    assert main(["compare", "--recipes", str(recipes), "--common", "--epochs 1 --lr 0.5",
                 "--out", str(out), "--verbose", "0"]) == 0
    [run] = json.loads((out / "summary.json").read_text())
    assert run["summary"]["epochs"] == 1 and run["summary"]["lr"] == 0.02  # the recipe wins


@pytest.mark.parametrize(
    ("text", "message"),
    [('common = "x"\n', "common must be a table"),
     ("recipes = [1, 2]\n", "recipes must be an array of tables"),
     ('[recipes]\nname = "a"\n', "recipes must be an array of tables")],
)
def test_badly_shaped_recipe_files_are_one_line(tmp_path, capsys, text, message):
    recipes = tmp_path / "r.toml"
    recipes.write_text(text)
    assert main(["compare", "--recipes", str(recipes), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recipe", "a: --lr -1"], "recipe 'a': argument --lr: must be a finite number > 0"),
        (["--recipe", "no colon"], "--recipe must look like 'NAME: OPTIONS'"),
        ([], "no recipe"),
        (["--recipe", "a: --lr 1", "--recipe", "a: --lr 2"], "recipe names must be distinct"),
        (["--recipes", "missing.toml"], "recipes file not found: missing.toml"),
    ],
)
def test_bad_recipes_are_one_line_and_run_nothing(tmp_path, capsys, argv, message):
    code = main(["compare", *argv, "--out", str(tmp_path / "cmp")])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "cmp").exists()


def test_broken_toml_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[recipes]\nname = 1")
    assert main(["compare", "--recipes", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert f"{bad} is not valid TOML" in capsys.readouterr().err


def test_keypoint_runs_report_pixel_error(tmp_path):
    out = tmp_path / "faces"
    code = main(["compare", "--common", "--dataset synthetic-faces --model cnn --epochs 1 "
                 "--optimizer adam --lr 0.001 --batch-size 64",
                 "--recipe", "plain:", "--recipe", "flip: --augment flip",
                 "--out", str(out), "--verbose", "0"])
    assert code == 0
    runs = json.loads((out / "summary.json").read_text())
    assert all(0 < r["summary"]["test_rmse_px"] < 48 for r in runs)
    assert "test keypoint RMSE (px)" in (out / "report.md").read_text()
