"""A second opinion on a tuned rate: the same recipe trained by learning-rate-free optimizers.

``lrtune compare --second-opinion`` trains the user's recipe with ``--lr auto`` (the range
test) next to Prodigy and Schedule-Free AdamW with their defaults, on the same data and seeds;
this module turns the runs into numbers (mean and spread over the seeds) and a report that
says which reached the better validation metric, by how much, and at what wall time.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from lrtune.compare_report import plot_overlay
from lrtune.plots import pyplot
from lrtune.report import Report

TUNED = "tuned rate (--lr auto)"
# recipe name -> --optimizer; each runs with its package's defaults (no lr, schedule, momentum)
LR_FREE_RECIPES = {"Prodigy": "prodigy", "Schedule-Free AdamW": "schedulefree-adamw"}


def validation_metric(summary: dict[str, Any], epochs: list[dict[str, Any]]
                      ) -> tuple[str, float | None, bool]:
    """``(label, value, higher_is_better)`` of one run's validation result.

    Classification: the valid accuracy of the best epoch (the one the checkpoint kept, by
    valid loss, whose weights the test set sees); otherwise the best valid loss.

    Examples:
        >>> validation_metric({"best_epoch": 2, "best_valid_loss": 0.3},
        ...                   [{"epoch": 1, "valid_accuracy": 0.8},
        ...                    {"epoch": 2, "valid_accuracy": 0.9}])
        ('valid accuracy', 0.9, True)
        >>> validation_metric({"best_epoch": 1, "best_valid_loss": 0.3}, [{"epoch": 1}])
        ('best valid loss', 0.3, False)
    """
    best = summary.get("best_epoch")
    record = next((e for e in epochs if e["epoch"] == best), None)
    if record is not None and "valid_accuracy" in record:
        return "valid accuracy", record["valid_accuracy"], True
    return "best valid loss", summary.get("best_valid_loss"), False


def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value; ``None`` for none).

    Examples:
        >>> mean_sd([1.0, 2.0, 3.0])
        (2.0, 1.0)
    """
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per recipe (in order of first appearance) over its seeds.

    Each run is ``{"name", "seed", "dir", "summary", "seconds_total"}``; the row holds the
    validation metric, the test metric, the rate (chosen, or ``d * lr`` where estimated) and
    the wall time (the whole run, the rate search included) as ``(mean, sd)`` pairs.
    """
    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        epochs = json.loads((Path(run["dir"]) / "history.json").read_text())["epochs"]
        label, value, higher = validation_metric(run["summary"], epochs)
        row = rows.setdefault(run["name"], {"name": run["name"], "label": label,
                                            "higher_is_better": higher, "per_seed": []})
        s = run["summary"]
        row["per_seed"].append({
            "seed": run["seed"], "valid": value, "test": _test_value(s),
            "lr": s.get("effective_lr", s.get("lr")), "seconds": run["seconds_total"],
            "seconds_lr_search": s.get("seconds_lr_search", 0.0), "error": s.get("error"),
        })
    for row in rows.values():
        for key in ("valid", "test", "lr", "seconds", "seconds_lr_search"):
            row[key] = mean_sd([p[key] for p in row["per_seed"]])
    return list(rows.values())


def _test_value(summary: dict[str, Any]) -> float | None:
    if "test_accuracy" in summary:
        return summary["test_accuracy"]
    return summary.get("test_rmse_px", summary.get("test_loss"))


def _test_label(summary: dict[str, Any]) -> str:
    if "test_accuracy" in summary:
        return "test accuracy"
    return "test keypoint RMSE (px)" if "test_rmse_px" in summary else "test loss"


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """Plain sentences: which recipe reached the better validation metric and by how much.

    A difference smaller than the larger of the two standard deviations over the seeds is
    called within the spread: the seeds cannot tell the recipes apart.

    Examples:
        >>> rows = [{"name": "a", "label": "valid accuracy", "higher_is_better": True,
        ...          "valid": (0.90, 0.01), "seconds": (10.0, 1.0)},
        ...         {"name": "b", "label": "valid accuracy", "higher_is_better": True,
        ...          "valid": (0.95, 0.01), "seconds": (5.0, 0.5)}]
        >>> best, other = verdict(rows)
        >>> best
        '- Winner by valid accuracy: **b**, 0.95 ± 0.01 over the seeds.'
        >>> print(other.replace("; ", ";\\n"))
        - **a**: 0.9 ± 0.01, 0.05 worse than b (more than the spread over the seeds);
        wall time 10 s vs 5 s.
    """
    scored = [r for r in rows if r["valid"][0] is not None]
    if not scored:
        return ["- No recipe produced a validation metric to compare."]
    higher = scored[0]["higher_is_better"]
    best = (max if higher else min)(scored, key=lambda r: r["valid"][0])
    lines = [f"- Winner by {best['label']}: **{best['name']}**, {best['valid'][0]:.4g} ± "
             f"{best['valid'][1]:.2g} over the seeds."]
    for row in rows:
        if row is best:
            continue
        if row["valid"][0] is None:
            lines.append(f"- **{row['name']}**: no validation metric (every seed stopped).")
            continue
        gap = abs(row["valid"][0] - best["valid"][0])
        spread = max(row["valid"][1], best["valid"][1])
        where = "within the spread over the seeds" if gap <= spread else \
            "more than the spread over the seeds"
        lines.append(f"- **{row['name']}**: {row['valid'][0]:.4g} ± {row['valid'][1]:.2g}, "
                     f"{gap:.2g} worse than {best['name']} ({where}); wall time "
                     f"{row['seconds'][0]:.3g} s vs {best['seconds'][0]:.3g} s.")
    return lines


def _pm(pair: tuple[float | None, float | None]) -> str:
    mean, sd = pair
    return "-" if mean is None else f"{mean:.4g} ± {sd:.2g}"


def write_second_opinion_report(out: Path, runs: list[dict[str, Any]], *,
                                recipe: str) -> Path:
    """Write ``out/report.md`` (+ ``out/learning_curves.png``, first seed of each recipe)."""
    rows = aggregate(runs)
    seeds = sorted({r["seed"] for r in runs})
    test_label = _test_label(runs[0]["summary"])
    report = Report("Second opinion: the tuned rate vs learning-rate-free optimizers")
    report.paragraph(f"The recipe `lrtune train {recipe}` with `--lr auto`, next to Prodigy and "
                     f"Schedule-Free AdamW with their packages' defaults, on the same data, "
                     f"seeds {', '.join(map(str, seeds))}. Mean ± standard deviation over the "
                     "seeds; wall time is the whole run, the range test included.")
    report.paragraph("\n".join(verdict(rows)))
    report.table(
        ["Recipe", rows[0]["label"], test_label, "lr (d·lr where estimated)",
         "Wall time (s)", "of which finding the rate (s)"],
        [[r["name"], _pm(r["valid"]), _pm(r["test"]), _pm(r["lr"]), _pm(r["seconds"]),
          _pm(r["seconds_lr_search"])] for r in rows])
    report.heading("Per seed", level=3)
    report.table(["Recipe", "Seed", rows[0]["label"], test_label, "lr", "Wall time (s)"],
                 [[r["name"], p["seed"], p["valid"], p["test"], p["lr"], p["seconds"]]
                  for r in rows for p in r["per_seed"]])
    first = [next(run for run in runs if run["name"] == r["name"]) for r in rows]
    histories = [json.loads((Path(run["dir"]) / "history.json").read_text())["epochs"]
                 for run in first]
    fig = plot_overlay(first, histories)
    curves = out / "learning_curves.png"
    fig.savefig(curves, dpi=300)
    pyplot().close(fig)
    report.image(curves, f"learning curves, seed {seeds[0]}", relative_to=out)
    return report.write(out / "report.md")
