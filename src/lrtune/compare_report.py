"""Side-by-side report of several training runs: seed 004's tables, a summary, overlaid curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lrtune.plots import legend_beside, pyplot, save_figure
from lrtune.report import Report


def default_table_epochs(n_epochs: int, count: int = 6) -> list[int]:
    """About ``count`` epochs spread geometrically, always the first and the last.

    Examples:
        >>> default_table_epochs(100)
        [1, 3, 6, 16, 40, 100]
        >>> default_table_epochs(3)
        [1, 2, 3]
    """
    if n_epochs <= count:
        return list(range(1, n_epochs + 1))
    return np.unique(np.rint(np.geomspace(1, n_epochs, count)).astype(int)).tolist()


def seed_table_rows(epochs: list[dict], shown: list[int] | None) -> list[list]:
    """Rows ``Epoch | Train loss | Valid loss | Train / Val`` for the epochs in ``shown``."""
    shown = shown or default_table_epochs(len(epochs))
    by_epoch = {e["epoch"]: e for e in epochs}
    return [[n, by_epoch[n]["train_loss"], by_epoch[n].get("valid_loss"),
             by_epoch[n].get("train_valid_ratio")] for n in shown if n in by_epoch]


def _test_metric(summary: dict) -> tuple[str, float | None]:
    if "test_accuracy" in summary:
        return "test accuracy", summary["test_accuracy"]
    if "test_rmse_px" in summary:
        return "test keypoint RMSE (px)", summary["test_rmse_px"]
    return "test loss", summary.get("test_loss")


def plot_overlay(runs: list[dict], histories: list[list[dict]]):
    """Every run's valid loss (solid) and train loss (dashed) per epoch, log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    for i, (run, epochs) in enumerate(zip(runs, histories, strict=True)):
        color = f"C{i}"
        x = [e["epoch"] for e in epochs]
        ax.plot(x, [e["train_loss"] for e in epochs], "--", color=color, lw=1,
                label=f"{run['name']} train")
        ax.plot(x, [e.get("valid_loss") for e in epochs], "-", color=color, lw=2,
                label=f"{run['name']} valid")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.3)
    legend_beside(ax)
    ax.set_title("learning curves")
    return fig


def comparison_sentences(runs: list[dict]) -> list[str]:
    """How each run did against the first (the baseline), in plain words."""
    base = runs[0]["summary"]
    label, base_metric = _test_metric(base)
    lines = []
    for run in runs[1:]:
        s = run["summary"]
        if s.get("best_valid_loss") is None or base.get("best_valid_loss") is None:
            lines.append(f"- {run['name']}: no valid loss to compare.")
            continue
        change = s["best_valid_loss"] / base["best_valid_loss"] - 1
        word = "lower" if change < 0 else "higher"
        text = (f"- **{run['name']}** against **{runs[0]['name']}**: best valid loss "
                f"{s['best_valid_loss']:.4g} vs {base['best_valid_loss']:.4g} "
                f"({abs(change) * 100:.1f}% {word})")
        _, metric = _test_metric(s)
        if metric is not None and base_metric is not None:
            text += f"; {label} {metric:.4g} vs {base_metric:.4g}"
        lines.append(text + ".")
    return lines


def write_compare_report(out: Path, runs: list[dict], *, title: str | None,
                         table_epochs: list[int] | None) -> Path:
    """Write ``out/report.md`` and ``out/learning_curves.png``; return the report's path."""
    histories = [json.loads((Path(r["dir"]) / "history.json").read_text())["epochs"]
                 for r in runs]
    report = Report(title or "Comparison")
    report.heading("Summary")
    metric_label = _test_metric(runs[0]["summary"])[0]
    report.table(
        ["Recipe", "Best valid loss", "Best epoch", metric_label, "Epochs run", "Wall time (s)"],
        [[r["name"], r["summary"].get("best_valid_loss"), r["summary"].get("best_epoch"),
          _test_metric(r["summary"])[1], r["summary"].get("epochs_run"),
          r["summary"].get("seconds")] for r in runs],
    )
    if len(runs) > 1:
        report.paragraph("\n".join(comparison_sentences(runs)))
    curves = save_figure(plot_overlay(runs, histories), out / "learning_curves.png")
    report.image(curves, "learning curves of every run", relative_to=out)
    for run, epochs in zip(runs, histories, strict=True):
        report.heading(run["name"], level=3)
        s = run["summary"]
        report.paragraph(f"lr {s['lr']:.4g} ({s['lr_source']}), schedule {s['schedule']}, "
                         f"stopped: {s.get('stop_reason')}; files in `{Path(run['dir']).name}/`.")
        report.table(["Epoch", "Train loss", "Valid loss", "Train / Val"],
                     seed_table_rows(epochs, table_epochs))
    return report.write(out / "report.md")
