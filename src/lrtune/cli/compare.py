"""``lrtune compare``: run several training recipes on the same data and seed, side by side.

A recipe is a set of ``lrtune train`` options. Give them on the command line
(``--recipe "NAME: OPTIONS"``, with ``--common OPTIONS`` shared by all) or in a TOML file
(``--recipes FILE``; format in ``examples/seed004_compare.toml``). Every run is written to
``DIR/<recipe>/`` exactly as ``lrtune train`` writes it; ``DIR/report.md`` puts them side by side.

``--second-opinion`` asks whether tuning was worth it: your recipe (``--common`` and at most
one ``--recipe``) trains with ``--lr auto`` next to Prodigy and Schedule-Free AdamW with their
own defaults, over ``--seeds`` seeds each; the report says which reached the better validation
metric, by how much (mean ± sd over the seeds) and the wall time of each, the range test
included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from pathlib import Path

from lrtune.cli.common import UsageError, positive_int
from lrtune.cli.rundir import add_overwrite_argument, run_in_folder

EPILOG = """examples:
  lrtune compare --recipes examples/seed004_compare.toml --out runs/seed004
  lrtune compare --common "--epochs 20 --momentum 0.9" \\
      --recipe "constant: --lr 0.05" --recipe "one cycle: --lr 0.05 --schedule one_cycle"
  lrtune compare --second-opinion --common "--epochs 20 --momentum 0.9 --schedule one_cycle"
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="run several recipes side by side", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipes", metavar="FILE.toml", help="recipes from a TOML file")
    p.add_argument("--recipe", action="append", default=[], metavar='"NAME: OPTIONS"',
                   help="one recipe: a name, a colon, then `lrtune train` options (repeatable)")
    p.add_argument("--common", default="", metavar='"OPTIONS"',
                   help="`lrtune train` options every recipe shares")
    p.add_argument("--table-epochs", default=None, metavar="E1,E2,...",
                   help="epochs shown in each run's table (default: about six, spread out)")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--second-opinion", action="store_true",
                   help="train the recipe with --lr auto next to Prodigy and Schedule-Free "
                        "AdamW (their defaults), over --seeds seeds, and say which did better")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="--second-opinion: seeds per recipe, from the recipe's --seed on "
                        "(default 3)")

    add_overwrite_argument(p)
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2)
    p.set_defaults(run=run)


def toml_options(table: dict, where: str) -> list[str]:
    """``{"lr": 0.03, "nesterov": true}`` -> ``["--lr", "0.03", "--nesterov"]``.

    Examples:
        >>> toml_options({"lr_end": 1e-4, "nesterov": True, "augment": "flip"}, "x")
        ['--lr-end', '0.0001', '--nesterov', '--augment', 'flip']
    """
    argv: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, int | float | str):
            argv += [flag, str(value)]
        else:
            raise UsageError(f"{where}: option {key!r} must be a string, number or boolean")
    return argv


def read_recipes(path: str, extra_common: list[str] = ()) -> tuple[str | None,
                                                                  list[tuple[str, list[str]]]]:
    """Title and ``(name, train options)`` of every recipe in a TOML file.

    A recipe's options are the file's ``[common]``, then ``extra_common`` (``--common``), then
    its own: later ones win.
    """
    import tomllib

    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"recipes file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
    common_table, tables = data.get("common", {}), data.get("recipes", [])
    if not isinstance(common_table, dict):
        raise UsageError(f"{path}: common must be a table ([common])")
    if not (isinstance(tables, list) and all(isinstance(t, dict) for t in tables)):
        raise UsageError(f"{path}: recipes must be an array of tables ([[recipes]])")
    common = toml_options(common_table, f"{path} [common]") + list(extra_common)
    recipes = []
    for i, table in enumerate(tables):
        table = dict(table)
        name = table.pop("name", None)
        if not name:
            raise UsageError(f"{path}: recipe {i + 1} has no name")
        recipes.append((str(name), common + toml_options(table, f"{path} recipe {name!r}")))
    return data.get("title"), recipes


def parse_recipe(text: str, common: list[str]) -> tuple[str, list[str]]:
    name, sep, options = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"--recipe must look like 'NAME: OPTIONS', got {text!r}")
    return name.strip(), common + split_options(options, f"--recipe {name.strip()!r}")


def split_options(text: str, where: str) -> list[str]:
    """``shlex.split`` with a mistake (an unbalanced quote) named after its option."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc} in {text!r}") from None


def train_args(name: str, argv: list[str], out: Path, verbose: int):
    """The ``lrtune train`` namespace of one recipe; a bad option names the recipe."""
    from lrtune.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(
                ["train", *argv, "--out", str(out), "--verbose", str(verbose)])
    except SystemExit:
        reason = err.getvalue().strip().split("error: ", 1)[-1]
        raise UsageError(f"recipe {name!r}: {reason}") from None


def slug(name: str) -> str:
    """A folder name for a recipe.

    Examples:
        >>> slug("net5 (flip)")
        'net5-flip'
    """
    return re.sub(r"[^A-Za-z0-9._]+", "-", name).strip("-") or "run"


def run(args) -> int:
    from lrtune.cli.checks import check_output_path, check_train_options

    check_output_path(args.out)
    common = split_options(args.common, "--common")
    if args.second_opinion:
        return run_in_folder(Path(args.out), lambda: run_second_opinion(args, common),
                             command="compare", overwrite=args.overwrite)
    title, recipes = read_recipes(args.recipes, common) if args.recipes else (None, [])
    recipes += [parse_recipe(text, common) for text in args.recipe]
    if len(recipes) < 1:
        raise UsageError("no recipe: give --recipes FILE.toml or at least one --recipe")
    names = [name for name, _ in recipes]
    if len(set(map(slug, names))) != len(names):
        raise UsageError(f"recipe names must be distinct: {names}")
    out = Path(args.out)
    # parse every recipe before running any, so a typo in the last one costs nothing
    parsed = [(name, argv, train_args(name, argv, out / slug(name), args.verbose))
              for name, argv in recipes]
    for name, _, train in parsed:  # and check them all, so a mistake in the last costs nothing
        try:
            check_train_options(train)
        except (UsageError, ValueError) as exc:
            raise UsageError(f"recipe {name!r}: {exc}") from None
    return run_in_folder(out, lambda: _run_recipes(args, out, title, parsed), command="compare",
                         overwrite=args.overwrite)


def _run_recipes(args, out: Path, title: str | None, parsed) -> int:
    from lrtune.cli.train import run_training
    from lrtune.compare_report import write_compare_report
    from lrtune.result_io import write_json

    runs = []
    for name, argv, train in parsed:
        if args.verbose:
            print(f"== {name}: lrtune train {shlex.join(argv)}")
        summary = run_training(train)
        runs.append({"name": name, "dir": str(out / slug(name)), "summary": summary})
        if "error" in summary:
            print(f"recipe {name!r} stopped: {summary['error']}")
    epochs = _epochs(args.table_epochs)
    report = write_compare_report(out, runs, title=title, table_epochs=epochs)
    write_json(runs, out / "summary.json")
    print(f"wrote {report}")
    return 1 if any("error" in r["summary"] for r in runs) else 0


def run_second_opinion(args, common: list[str]) -> int:
    """``--second-opinion``: the recipe with ``--lr auto`` vs Prodigy vs Schedule-Free AdamW."""
    import time

    from lrtune.cli.train import run_training
    from lrtune.lr_free import LR_FREE
    from lrtune.second_opinion import LR_FREE_RECIPES, TUNED, write_second_opinion_report

    if args.recipes or len(args.recipe) > 1:
        raise UsageError("--second-opinion takes one recipe: --common OPTIONS and at most one "
                         "--recipe (not --recipes FILE)")
    argv = common + (parse_recipe(args.recipe[0], [])[1] if args.recipe else [])
    out = Path(args.out)
    mine = train_args("your recipe", argv, out, args.verbose)
    if mine.optimizer in LR_FREE:
        raise UsageError(f"--second-opinion compares a tuned rate with learning-rate-free "
                         f"optimizers; give your recipe's own optimizer, not {mine.optimizer}")
    # the lr-free recipes keep the data, model, batch size, epochs, patience and weight decay,
    # and drop what only a hand-set rate needs: lr, schedule, momentum, confirmation
    free = {"lr": None, "schedule": None, "interval": None, "lr_end": None, "momentum": 0.0,
            "momentum_end": None, "nesterov": False, "confirm": None}
    plans = [(TUNED, {"lr": "auto"})] + [(name, {**free, "optimizer": optimizer})
                                         for name, optimizer in LR_FREE_RECIPES.items()]
    runs = []
    for seed in range(mine.seed, mine.seed + args.seeds):
        for name, overrides in plans:
            folder = out / slug(name) / f"seed{seed}"
            train = train_args(name, argv, folder, args.verbose)
            vars(train).update(overrides, seed=seed)
            if args.verbose:
                print(f"== {name}, seed {seed}")
            start = time.perf_counter()
            summary = run_training(train)
            runs.append({"name": name, "seed": seed, "dir": str(folder), "summary": summary,
                         "seconds_total": round(time.perf_counter() - start, 3)})
            if "error" in summary:
                print(f"{name}, seed {seed} stopped: {summary['error']}")
    report = write_second_opinion_report(out, runs, recipe=shlex.join(argv))
    (out / "summary.json").write_text(json.dumps(runs, indent=2) + "\n")
    print(f"wrote {report}")
    return 1 if any("error" in r["summary"] for r in runs) else 0


def _epochs(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        epochs = sorted({int(t) for t in text.split(",")})
    except ValueError:
        raise UsageError(
            f"--table-epochs must be integers separated by commas, got {text!r}"
        ) from None
    if epochs[0] < 1:
        raise UsageError(f"--table-epochs must be >= 1, got {text!r}")
    return epochs
