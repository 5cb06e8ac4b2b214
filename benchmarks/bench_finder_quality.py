"""How good is the range test's suggestion? Compare it with a learning-rate grid search.

For every task of ``common.TASKS``:

1. grid: train at every rate of the task's quarter-decade grid, 3 seeds each, fixed epochs;
   the grid's best is the best *mean over seeds* of the final validation metric;
2. range test: ``find_lr`` once per seed and per finder setting (``SETTINGS``);
3. for every suggestion rule, train at the rate it suggested (seed s trains from the model the
   finder of seed s saw) with the same budget, and compare with the grid's best.

Compute is counted in optimizer steps (exact, immune to a shared CPU's noise).

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_finder_quality.py
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import (
    TASKS,
    machine,
    metric_name,
    run_finder,
    run_steps,
    splits_of,
    task_dict,
    train,
)

from lrtune.finder import RULES

# the finder settings measured; "default" is the API default
SETTINGS = {
    "default": dict(start_lr=1e-7, end_lr=10.0, num_iters=300),
    "iters100": dict(start_lr=1e-7, end_lr=10.0, num_iters=100),
    "start1e-5": dict(start_lr=1e-5, end_lr=10.0, num_iters=100),
    "start1e-5_iters200": dict(start_lr=1e-5, end_lr=10.0, num_iters=200),
}
RESULTS = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(msg, flush=True)


def grid_search(task, seeds) -> list[dict]:
    return [{"task": task.name, **train(task, lr, s)} for lr in task.grid_lrs() for s in seeds]


def summarise_grid(task, records) -> dict:
    """Mean metric per grid rate, the best rate, and the first collapsed rate above it."""
    key = metric_name(task)
    lrs = task.grid_lrs()
    means = [float(np.mean([r[key] for r in records if r["lr"] == lr])) for lr in lrs]
    better = np.argmax if key == "acc" else np.argmin
    b = int(better(means))
    n_classes = splits_of(task.dataset).n_outputs
    # collapsed: near chance (classification) or no better than predicting the mean (MSE >= 1
    # on standardised targets)
    collapsed = [m <= 1.0 / n_classes + 0.1 if key == "acc" else m >= 1.0 for m in means]
    cliff = next((lrs[i] for i in range(b + 1, len(lrs)) if collapsed[i]), None)
    return {"metric": key, "lrs": lrs, "means": means, "best_lr": lrs[b], "best": means[b],
            "collapse_lr": cliff, "collapse_over_best": cliff / lrs[b] if cliff else None,
            "steps": len(records) * run_steps(task)}


def score(task, value: float, best: float) -> dict:
    """Classification: points below best; regression: loss / best loss."""
    if math.isnan(value):
        return {"fraction": None, "pass": False}
    if metric_name(task) == "acc":
        return {"gap_points": 100 * (best - value), "fraction": value / best,
                "pass": 100 * (best - value) <= 1.0}
    ratio = value / best
    return {"loss_over_best": ratio, "fraction": best / value if value > 0 else 0.0,
            "pass": ratio <= 1.05}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "finder_quality.json")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="finder settings to measure (default: all)")
    parser.add_argument("--grid-from", type=Path, default=None,
                        help="reuse the grid runs of an earlier results JSON (same tasks, seeds)")
    parser.add_argument("--report", action="store_true",
                        help="only rebuild the summary and tables from the JSON at --out")
    args = parser.parse_args(argv)
    if args.report:
        out = json.loads(args.out.read_text())
        tasks = [TASKS[n] for n in out["tasks"]]
        out["summary"] = summarise(out, tasks)
        args.out.write_text(json.dumps(out, indent=1, default=float))
        print_tables(out, tasks)
        return 0
    seeds = list(range(args.seeds))
    tasks = [TASKS[n] for n in args.tasks.split(",")]
    t_start = time.perf_counter()
    out = {"machine": machine(), "seeds": seeds, "settings": SETTINGS, "tasks": {},
           "grid": [], "finder": [], "suggested": [], "summary": {}}

    settings = {name: SETTINGS[name] for name in args.settings.split(",")}
    out["settings"] = settings
    earlier = json.loads(args.grid_from.read_text())["grid"] if args.grid_from else None
    for task in tasks:
        t0 = time.perf_counter()
        grid = ([r for r in earlier if r["task"] == task.name] if earlier
                else grid_search(task, seeds))
        g = summarise_grid(task, grid)
        out["tasks"][task.name] = {**task_dict(task), "grid_summary": g}
        out["grid"] += grid
        log(f"{task.name}: grid best {g['metric']}={g['best']:.4f} at lr {g['best_lr']:.3g}; "
            f"collapse at {g['collapse_lr']} ({time.perf_counter() - t0:.0f}s)")

        cache: dict[tuple[int, float], dict] = {}
        for name, setting in settings.items():
            for s in seeds:
                res, secs = run_finder(task, s, **setting)
                out["finder"].append({
                    "task": task.name, "setting": name, "seed": s, "verdict": res.verdict,
                    "reason": res.reason, "stop_reason": res.stop_reason, "stop_lr": res.stop_lr,
                    "steps": len(res.train_losses), "seconds": secs,
                    "min_loss_lr": res.min_loss_lr, "suggestions": res.suggestions,
                })
                for rule, lr in res.suggestions.items():
                    if lr is None:
                        rec = {"lr": None, "seed": s, "diverged": False, g["metric"]: None}
                    else:
                        key = (s, float(f"{lr:.6g}"))
                        if key not in cache:
                            cache[key] = train(task, lr, s)
                        rec = cache[key]
                    out["suggested"].append({"task": task.name, "setting": name, "rule": rule,
                                             "verdict": res.verdict, **rec})
        log(f"{task.name}: done ({time.perf_counter() - t0:.0f}s)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1, default=float))

    out["summary"] = summarise(out, tasks)
    out["total_seconds"] = time.perf_counter() - t_start
    args.out.write_text(json.dumps(out, indent=1, default=float))
    print_tables(out, tasks)
    return 0


def summarise(out, tasks) -> dict:
    summary = {}
    for task in tasks:
        g = out["tasks"][task.name]["grid_summary"]
        key = g["metric"]
        for name in out["settings"]:
            fin = [f for f in out["finder"] if f["task"] == task.name and f["setting"] == name]
            steps = float(np.mean([f["steps"] for f in fin]))
            inconclusive = sum(f["verdict"] != "ok" for f in fin)
            for rule in RULES:
                recs = [r for r in out["suggested"] if r["task"] == task.name
                        and r["setting"] == name and r["rule"] == rule]
                # a rule that found no point on a seed's curve gives no rate to train at:
                # the mean is over the seeds where it gave one (``no_value`` counts the others)
                values = [r[key] for r in recs if r[key] is not None]
                value = float(np.mean(values)) if values else math.nan
                lrs = [r["lr"] for r in recs if r["lr"]]
                summary[f"{task.name}|{name}|{rule}"] = {
                    "value": value, **score(task, value, g["best"]),
                    "lr_geomean": float(np.exp(np.mean(np.log(lrs)))) if lrs else None,
                    "lr_over_best": (float(np.exp(np.mean(np.log(lrs)))) / g["best_lr"]
                                     if lrs else None),
                    "max_lr_over_best": max(lrs) / g["best_lr"] if lrs else None,
                    "diverged_runs": sum(bool(r["diverged"]) for r in recs),
                    "no_value": len(recs) - len(values),
                    "inconclusive": inconclusive, "runs": len(recs),
                    "finder_steps": steps, "compute_ratio": steps / g["steps"],
                }
    return summary


def fmt_score(task, s) -> str:
    if s["fraction"] is None:
        return "no value"
    if "gap_points" in s:
        return f"{s['value']:.4f} ({-s['gap_points']:+.1f} pt)"
    return f"{s['value']:.4f} (x{s['loss_over_best']:.2f})"


def print_tables(out, tasks) -> None:
    log("\n## Grid (mean of final validation metric over seeds)\n")
    log("| task | metric | grid | runs x steps | best lr | best | collapse lr (x best) |")
    log("|---|---|---|---|---|---|---|")
    for task in tasks:
        t = out["tasks"][task.name]
        g = t["grid_summary"]
        cliff = (f"{g['collapse_lr']:.3g} (x{g['collapse_over_best']:.1f})"
                 if g["collapse_lr"] else "none in grid")
        log(f"| {task.name} | {g['metric']} | {len(g['lrs'])} rates {g['lrs'][0]:.2g}-"
            f"{g['lrs'][-1]:.2g} | {len(g['lrs']) * len(out['seeds'])} x {t['steps_per_run']} | "
            f"{g['best_lr']:.3g} | {g['best']:.4f} | {cliff} |")
    for name in out["settings"]:
        log(f"\n## Suggestions, setting `{name}` {out['settings'][name]}\n")
        log("Cell: metric at the suggestion (mean of seeds) (difference from grid best), "
            "suggested lr / best lr, [inconclusive verdicts/seeds, diverged runs].\n")
        log("| task | " + " | ".join(RULES) + " | finder steps / grid steps |")
        log("|---|" + "---|" * (len(RULES) + 1))
        for task in tasks:
            cells = []
            for rule in RULES:
                s = out["summary"][f"{task.name}|{name}|{rule}"]
                ratio = f"x{s['lr_over_best']:.2g}" if s["lr_over_best"] else "-"
                flag = "" if s["pass"] else " ✗"
                none = f", {s['no_value']} no value" if s["no_value"] else ""
                cells.append(f"{fmt_score(task, s)}{flag} {ratio} "
                             f"[{s['inconclusive']}/{s['runs']}, {s['diverged_runs']}{none}]")
            s = out["summary"][f"{task.name}|{name}|{next(iter(RULES))}"]
            log(f"| {task.name} | " + " | ".join(cells)
                + f" | {s['finder_steps']:.0f} / {out['tasks'][task.name]['grid_summary']['steps']}"
                  f" = {s['compute_ratio']:.4f} |")
    log("\n## Rules at a glance\n")
    log("Cell: tasks within target / tasks; worst classification gap; worst regression loss "
        "ratio; highest suggestion / best lr of any seed. Over all tasks, ignoring the verdict, "
        "then (second line) only tasks where most seeds' verdict was ok.\n")
    log("| setting | " + " | ".join(RULES) + " |")
    log("|---|" + "---|" * len(RULES))
    for name in out["settings"]:
        for conclusive in (False, True):
            cells = []
            for rule in RULES:
                ss = [out["summary"][f"{t.name}|{name}|{rule}"] for t in tasks]
                if conclusive:
                    ss = [s for s in ss if 2 * s["inconclusive"] < s["runs"]]
                gaps = [s["gap_points"] for s in ss if "gap_points" in s]
                ratios = [s["loss_over_best"] for s in ss if "loss_over_best" in s]
                highs = [s["max_lr_over_best"] for s in ss if s["max_lr_over_best"]]
                worst_gap = f"{max(gaps):.1f} pt" if gaps else "-"
                worst_ratio = f"x{max(ratios):.2f}" if ratios else "-"
                high = f"x{max(highs):.2g}" if highs else "-"
                cells.append(f"{sum(s['pass'] for s in ss)}/{len(ss)}; {worst_gap}; "
                             f"{worst_ratio}; {high}")
            label = f"{name} (conclusive)" if conclusive else name
            log(f"| {label} | " + " | ".join(cells) + " |")
    log(f"\n(total {out.get('total_seconds', 0):.0f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
