"""``lrtune demo``: seed 000's recipe end to end, offline by default.

Sample grid -> learning-rate range test -> the suggested rate -> a freshly initialised model
trained with early stopping, checkpoints and TensorBoard -> test metrics, all written into
``DIR/report.md`` (with every figure) and ``DIR/summary.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lrtune.cli.common import momentum_value, positive_int
from lrtune.cli.rundir import add_overwrite_argument, run_in_folder

EPILOG = """examples:
  lrtune demo                                   # digits, offline, about a minute
  lrtune demo --dataset fashion-mnist --data-dir ~/data/fashion --out runs/fashion
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="seed 000's recipe end to end, with a report", description=__doc__,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", default="digits", help="digits (default, offline), mnist, "
                                                        "fashion-mnist")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw"], default="sgd")
    p.add_argument("--momentum", type=momentum_value, default=0.9,
                   help="SGD momentum in [0, 1) (default 0.9)")
    p.add_argument("--epochs", type=positive_int, default=100, help="at most (default 100)")
    p.add_argument("--patience", type=positive_int, default=10,
                   help="early-stopping patience in epochs (default 10)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    add_overwrite_argument(p)
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    p.set_defaults(run=run)


def run(args) -> int:
    from lrtune.cli.checks import check_output_path, check_train_options
    from lrtune.cli.compare import train_args

    check_output_path(args.out)
    out = Path(args.out)
    # seed 000's recipe is the range test's suggestion itself (--lr auto would confirm it)
    train_argv = ["--dataset", args.dataset, "--model", "mlp", "--optimizer", args.optimizer,
                  "--momentum", str(args.momentum), "--lr", "auto", "--no-confirm",
                  "--epochs", str(args.epochs),
                  "--patience", str(args.patience), "--batch-size", str(args.batch_size),
                  "--seed", str(args.seed)]
    if args.data_dir:
        train_argv += ["--data-dir", args.data_dir]
    train = train_args("demo", train_argv, out / "train", args.verbose)
    check_train_options(train)
    return run_in_folder(out, lambda: _demo(args, out, train, train_argv), command="demo",
                         overwrite=args.overwrite)


def _demo(args, out: Path, train, train_argv: list[str]) -> int:
    from lrtune.cli.train import run_training
    from lrtune.data import load_dataset
    from lrtune.data.figures import plot_sample_grid
    from lrtune.finder import FinderResult
    from lrtune.plots import pyplot
    from lrtune.result_io import write_json

    start = time.perf_counter()
    splits = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir)
    if splits.task != "classification":
        raise ValueError(f"the demo is seed 000's classification recipe; {args.dataset!r} is "
                         "a regression dataset (try lrtune compare for seed 004)")
    grid = out / "sample_grid.png"
    pyplot().close(plot_sample_grid(*splits.train, splits.class_names, path=grid))
    summary = run_training(train)
    finder = FinderResult.from_json(out / "train" / "lr_find" / "lr_find.json")
    summary["seconds_total"] = round(time.perf_counter() - start, 3)
    summary["suggestions"] = finder.suggestions
    summary["rule"] = finder.rule
    report = _write_report(out, splits, finder, summary, train_argv)
    write_json(summary, out / "summary.json")
    if "error" in summary:
        print(f"lrtune demo: error: {summary['error']}")
        return 1
    print(f"test accuracy {summary['test_accuracy']:.4f} (best epoch {summary['best_epoch']}, "
          f"lr {summary['lr']:.3g}); {summary['seconds_total']:.0f} s; wrote {report}")
    return 0


def _write_report(out: Path, splits, finder, summary: dict, train_argv: list[str]) -> Path:
    from lrtune.finder.suggest import DESCRIPTIONS
    from lrtune.report import Report

    train_dir = out / "train"
    report = Report(f"lrtune demo: seed 000's recipe on {splits.name}")
    n = [len(part[1]) for part in (splits.train, splits.valid, splits.test)]
    report.paragraph(
        f"Data: `{splits.name}`, {n[0]} training, {n[1]} validation and {n[2]} test samples of "
        f"shape {tuple(splits.input_shape)}; the seed's MLP (300 and 100 ReLU units). "
        f"Reproduce: `lrtune train {' '.join(train_argv)}`."
    )
    report.image(out / "sample_grid.png", "sample images with their class names", relative_to=out)

    report.heading("1. Learning-rate range test")
    report.paragraph(
        f"The rate grew geometrically from {finder.settings['start_lr']:g} to "
        f"{finder.settings['end_lr']:g} over at most {finder.settings['num_iters']} steps; the "
        f"sweep stopped ({finder.stop_reason}) at lr {finder.stop_lr:.3g}. The smoothed loss "
        f"was lowest at lr {finder.min_loss_lr:.3g}, where it turns up."
    )
    report.image(train_dir / "lr_find" / "lr_find.png", "loss against learning rate",
                 relative_to=out)
    report.table(["rule", "suggested lr"],
                 [[name + (" (chosen)" if name == finder.rule else ""), lr]
                  for name, lr in finder.suggestions.items()])
    report.paragraph(
        f"**Chosen rate: {summary['lr']:.3g}**, the `{finder.rule}` rule (verdict "
        f"{finder.verdict}): {DESCRIPTIONS[finder.rule]}. The model was then re-initialised to "
        "its fresh weights before training."
    )

    report.heading("2. Training")
    best = ("no epoch finished with a finite valid loss" if summary["best_epoch"] is None else
            f"early stopping restored the weights of the best epoch, **{summary['best_epoch']}** "
            f"(valid loss {summary['best_valid_loss']:.4g})")
    report.paragraph(
        f"{summary['epochs_run']} of at most {summary['epochs']} epochs "
        f"(stopped: {summary['stop_reason']}); {best}. "
        "Checkpoints: `train/checkpoints/best.pt` and `last.pt`; learning curves in TensorBoard: "
        "`tensorboard --logdir " + str(train_dir / "tensorboard") + "`."
    )
    report.image(train_dir / "learning_curves.png", "learning curves", relative_to=out)

    report.heading("3. Test")
    if "test_accuracy" in summary:
        report.table(["test loss", "test accuracy", "wall time (s)"],
                     [[summary["test_loss"], summary["test_accuracy"],
                       summary["seconds_total"]]])
    else:
        report.paragraph(f"Training stopped: {summary.get('error')}")
    return report.write(out / "report.md")
