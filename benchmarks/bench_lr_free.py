"""Tuned rate vs learning-rate-free optimizers on the benchmark suite's tasks.

For every task of ``common.TASKS`` and every seed, with lrtune's Trainer (the same loop for all):

* ``tuned constant``: the range test (``find_lr``, the API defaults: 300 steps, steepest), then
  the task's optimizer at the suggested rate, constant. An inconclusive range test is
  confirmed as ``lrtune train --lr auto --confirm`` does (``confirm_lr``, 8 rates, half the
  epochs) and that rate is used;
* ``tuned one-cycle``: the same rate as the peak of a one-cycle schedule (the range test's
  time counted again: a user runs it once per recipe);
* ``prodigy``, ``schedule-free AdamW``, ``D-Adapt Adam``: their packages' defaults
  (``lrtune.lr_free``; Schedule-Free with 2 % warmup), no schedule.

Each trains the task's epochs; the final weights (Schedule-Free: its evaluation point) are
scored on the test split. Compute is the wall time of the whole recipe (rate search included)
and its optimizer steps (range test + confirmation copies + training).

Usage (from the repository root; ``--epochs-scale 0.5`` halves every task's epochs)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_lr_free.py
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import TASKS, machine, run_finder, splits_of, steps_per_epoch

from lrtune.models import mlp
from lrtune.training import NonFiniteLossError, Trainer
from lrtune.training.setup import make_loss, make_optimizer

RESULTS = Path(__file__).resolve().parent / "results"
LR_FREE = {"prodigy": "prodigy", "schedule-free AdamW": "schedulefree-adamw",
           "D-Adapt Adam": "dadapt-adam"}


def _fit(task, seed: int, optimizer_name: str, lr, *, momentum: float, schedule=None) -> dict:
    """Train ``task`` from the seed's initialisation; the final weights' test metric."""
    from lrtune.lr_free import set_run_length

    splits = splits_of(task.dataset)
    torch.manual_seed(seed)
    model = mlp(splits.in_features, splits.n_outputs, task.hidden)
    optimizer = make_optimizer(optimizer_name, model.parameters(), lr=lr, momentum=momentum)
    total = task.epochs * steps_per_epoch(task)
    set_run_length(optimizer, total)
    schedules = None
    if schedule is not None:
        from lrtune.schedules import HyperparamScheduler, named_schedule

        values = named_schedule(schedule, lr=lr, total_steps=total, momentum=momentum or None)
        schedules = HyperparamScheduler(optimizer, values, interval="batch")
    classification = splits.task == "classification"
    trainer = Trainer(model, optimizer, make_loss(splits.task), device="cpu", verbose=0,
                      metrics=["accuracy"] if classification else None, schedules=schedules)
    try:
        trainer.fit(splits.train, epochs=task.epochs, batch_size=task.batch_size, seed=seed)
        test = trainer.evaluate(splits.test)
        metric = test["accuracy"] if classification else test["loss"]
        diverged = not math.isfinite(test["loss"])
    except NonFiniteLossError:
        diverged = True
    if diverged:  # a diverged run scores chance / an infinite loss
        metric = 1.0 / splits.n_outputs if classification else math.inf
    return {"metric": metric, "diverged": diverged, "steps": trainer.global_step,
            "effective_lr": trainer.history.epochs[-1].get("effective_lr")
            if len(trainer.history) else None}


def _tuned_rate(task, seed: int) -> dict:
    """The range test's suggestion, confirmed when inconclusive; seconds and steps spent."""
    t0 = time.perf_counter()
    finder, _ = run_finder(task, seed)
    steps = len(finder.train_losses)
    lr, source = finder.suggested_lr, "range test"
    if lr is None:
        from common import build

        from lrtune.confirmation import confirm_lr
        from lrtune.confirmation.confirm import confirm_budget

        splits = splits_of(task.dataset)
        model, _, loss_fn = build(task, seed, lr=1e-3)
        res = confirm_lr(model, task.optimizer, {"momentum": task.momentum}, loss_fn,
                         splits.train, splits.valid, finder, k=8,
                         budget_steps=confirm_budget(finder, task.epochs, steps_per_epoch(task),
                                                     0.5)["steps"],
                         batch_size=task.batch_size, seed=seed)
        lr, source = res.chosen_lr, "confirmed"
        steps += sum(min(res.settings["steps"], d if d is not None else math.inf)
                     for d in res.diverged_step)
    return {"lr": lr, "source": source, "search_seconds": time.perf_counter() - t0,
            "search_steps": steps}


def run_task(task, seeds) -> dict:
    rows: dict[str, list[dict]] = {}
    for seed in seeds:
        rate = _tuned_rate(task, seed)
        for name, schedule in (("tuned constant", None), ("tuned one-cycle", "one_cycle")):
            t0 = time.perf_counter()
            if rate["lr"] is None:
                out = {"metric": None, "diverged": None, "steps": 0, "effective_lr": None}
            else:
                out = _fit(task, seed, task.optimizer, rate["lr"], momentum=task.momentum,
                           schedule=schedule)
            out.update(seed=seed, lr=rate["lr"], lr_source=rate["source"],
                       seconds=time.perf_counter() - t0 + rate["search_seconds"],
                       steps=out["steps"] + rate["search_steps"])
            rows.setdefault(name, []).append(out)
        for name, optimizer in LR_FREE.items():
            t0 = time.perf_counter()
            out = _fit(task, seed, optimizer, None, momentum=0.0)
            out.update(seed=seed, seconds=time.perf_counter() - t0)
            rows.setdefault(name, []).append(out)
    summary = {}
    for name, runs in rows.items():
        values = [r["metric"] for r in runs if r["metric"] is not None]
        summary[name] = {
            "mean": statistics.fmean(values) if values else None,
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "seconds": statistics.fmean(r["seconds"] for r in runs),
            "steps": statistics.fmean(r["steps"] for r in runs),
            "diverged": sum(bool(r["diverged"]) for r in runs), "runs": runs,
        }
    return summary


def table(results: dict) -> str:
    lines = ["| task | metric | recipe | test metric, mean ± sd (3 seeds) | wall s / seed | "
             "steps / seed | rate used |", "|---|---|---|---|---|---|---|"]
    for name, task_out in results["tasks"].items():
        for recipe, s in task_out["recipes"].items():
            runs = s["runs"]
            if "effective_lr" in runs[0] and runs[0]["effective_lr"] is not None:
                rate = "d·lr " + ", ".join(f"{r['effective_lr']:.2g}" for r in runs)
            elif "lr" in runs[0]:
                rate = ", ".join("-" if r["lr"] is None else f"{r['lr']:.2g}" for r in runs)
            else:
                rate = "default"
            value = "-" if s["mean"] is None else f"{s['mean']:.4f} ± {s['sd'] or 0:.4f}"
            if s["diverged"]:
                value += f" ({s['diverged']} diverged)"
            lines.append(f"| {name} | {task_out['metric']} | {recipe} | {value} | "
                         f"{s['seconds']:.2f} | {s['steps']:.0f} | {rate} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="", help="comma-separated task names (default all)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="multiply every task's epochs (rounded, at least 1)")
    args = parser.parse_args(argv)
    names = args.tasks.split(",") if args.tasks else list(TASKS)
    seeds = list(range(args.seeds))
    results = {"machine": machine(), "seeds": seeds, "epochs_scale": args.epochs_scale,
               "tasks": {}}
    t0 = time.perf_counter()
    for name in names:
        task = TASKS[name]
        task = replace(task, epochs=max(1, round(task.epochs * args.epochs_scale)))
        metric = "test accuracy" if splits_of(task.dataset).task == "classification" else \
            "test MSE (standardised)"
        start = time.perf_counter()
        recipes = run_task(task, seeds)
        results["tasks"][name] = {"metric": metric, "epochs": task.epochs,
                                  "optimizer": task.optimizer, "momentum": task.momentum,
                                  "recipes": recipes, "seconds": time.perf_counter() - start}
        print(f"{name}: " + "; ".join(
            f"{r} {s['mean'] if s['mean'] is None else round(s['mean'], 4)}"
            f" ({s['seconds']:.1f} s)" for r, s in recipes.items()), flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "lr_free.json").write_text(json.dumps(results, indent=1))
    results["seconds_total"] = time.perf_counter() - t0
    (RESULTS / "lr_free.json").write_text(json.dumps(results, indent=1))
    (RESULTS / "lr_free.md").write_text(table(results) + "\n")
    print(table(results))
    print(f"total {results['seconds_total']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
