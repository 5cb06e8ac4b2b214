"""How stable is the range test's suggestion across seeds and sweep lengths?

For every task of ``common.TASKS``, every finder setting of ``STARTS`` and
``num_iters`` in {100, 200, 300}: ``find_lr`` with 5 seeds (model initialisation and batch
order). Spread = max / min of a rule's suggestion; target <= 2x.

Reported per task x rule: the worst spread over the 5 seeds at one ``num_iters``, the spread of
the per-``num_iters`` medians (100 vs 200 vs 300), and the spread over all 15 runs. Only runs
whose verdict is "ok" count (what a user is shown); ``n_ok`` says how many of 15 they are.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_finder_stability.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from common import TASKS, machine, run_finder

from lrtune.finder import RULES

STARTS = {"start1e-7": 1e-7, "start1e-5": 1e-5}
ITERS = (100, 200, 300)
RESULTS = Path(__file__).resolve().parent / "results"


def spread(values) -> float | None:
    v = [x for x in values if x]
    return max(v) / min(v) if len(v) >= 2 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "finder_stability.json")
    args = parser.parse_args(argv)
    tasks = [TASKS[n] for n in args.tasks.split(",")]
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    runs = []
    for task in tasks:
        for start_name, start in STARTS.items():
            for n in ITERS:
                for s in seeds:
                    res, _ = run_finder(task, s, start_lr=start, end_lr=10.0, num_iters=n)
                    runs.append({"task": task.name, "start": start_name, "num_iters": n,
                                 "seed": s, "verdict": res.verdict, "reason": res.reason,
                                 "suggestions": res.suggestions})
        print(f"{task.name} done ({time.perf_counter() - t0:.0f}s)", flush=True)

    summary = {}
    for task in tasks:
        for start_name in STARTS:
            for rule in RULES:
                mine = [r for r in runs if r["task"] == task.name and r["start"] == start_name]
                ok = [r for r in mine if r["verdict"] == "ok"]
                per_n = {n: [r["suggestions"][rule] for r in ok if r["num_iters"] == n]
                         for n in ITERS}
                seed_spreads = [spread(v) for v in per_n.values()]
                medians = [float(np.median(v)) for v in per_n.values() if v]
                summary[f"{task.name}|{start_name}|{rule}"] = {
                    "n_ok": len(ok), "n": len(mine),
                    "seed_spread_worst": max((x for x in seed_spreads if x), default=None),
                    "iters_spread": spread(medians) if len(medians) == len(ITERS) else None,
                    "overall_spread": spread([r["suggestions"][rule] for r in ok]),
                    "overall_spread_ignoring_verdict": spread(
                        [r["suggestions"][rule] for r in mine]),
                    "medians": dict(zip([str(n) for n in ITERS if per_n[n]], medians,
                                        strict=True)),
                }
    out = {"machine": machine(), "seeds": seeds, "starts": STARTS, "iters": ITERS,
           "runs": runs, "summary": summary, "total_seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))

    def f(x):
        return f"{x:.1f}x" if x else "-"

    for start_name, start in STARTS.items():
        print(f"\n## start_lr={start:g}, end_lr=10, num_iters in {ITERS}, {len(seeds)} seeds\n")
        print("Cell: worst seed spread at one num_iters / spread of the medians across "
              "num_iters / spread over all ok runs; ✗ = some spread > 2x.\n")
        print("| task | ok verdicts | " + " | ".join(RULES) + " |")
        print("|---|---|" + "---|" * len(RULES))
        for task in tasks:
            cells, n_ok = [], ""
            for rule in RULES:
                s = summary[f"{task.name}|{start_name}|{rule}"]
                n_ok = f"{s['n_ok']}/{s['n']}"
                parts = [s["seed_spread_worst"], s["iters_spread"], s["overall_spread"]]
                bad = any(p is not None and p > 2 for p in parts)
                cells.append(" / ".join(f(p) for p in parts) + (" ✗" if bad else ""))
            print(f"| {task.name} | {n_ok} | " + " | ".join(cells) + " |")
    print(f"\n(total {out['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
