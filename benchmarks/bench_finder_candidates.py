"""Two candidate fixes for the finder's rules, measured like the shipped ones (NOT in lrtune yet).

- ``steepest_nopad``: ``steepest`` on a curve smoothed with the same Gaussian but without
  edge padding (kernel cut and renormalised at the ends): the finder pads with the first raw
  loss, so one noisy first batch becomes a steep fake descent at ``start_lr``.
- ``valley_lds``: fastai's ``valley``: the middle of the longest *decreasing subsequence*
  (not run of consecutive decreases), so one uptick does not split the real descent.

Quality: reuses the grid of ``results/finder_quality.json`` (run bench_finder_quality.py
first), runs ``find_lr`` again (same seeds, so the same curves) and trains at each candidate's
rate. Stability: 5 seeds x num_iters {100, 200, 300}, spread max/min over the ok runs.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_finder_candidates.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_finder_quality import RESULTS, SETTINGS, score
from common import TASKS, metric_name, run_finder, train

from lrtune.finder.suggest import steepest


def smooth_no_padding(losses, window: float) -> np.ndarray:
    """The finder's Gaussian smoothing, but near the ends the kernel is cut and renormalised
    instead of padding with the end value (which turns one noisy first loss into a fake slope).
    """
    y = np.asarray(losses, dtype=np.float64)
    sigma = window / 2.0
    if sigma < 0.5 or len(y) < 3:
        return y.copy()
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    total = np.convolve(y, kernel, mode="same")
    mass = np.convolve(np.ones_like(y), kernel, mode="same")
    return total / mass


def steepest_nopad(lrs, raw_losses, smooth: float = 0.05) -> float | None:
    """``steepest`` on the curve smoothed without edge padding."""
    return steepest(lrs, smooth_no_padding(raw_losses, smooth * len(raw_losses)))


def valley_lds(lrs, losses) -> float | None:
    y = np.asarray(losses, dtype=np.float64)
    n = len(y)
    lds = np.ones(n, dtype=int)
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[i] > lds[best_end]:
            best_end = i
    start = best_end - lds[best_end]
    third = (best_end - start) / 3
    idx = start + int(third) + int(third / 2)
    return float(lrs[max(idx, 0)]) if lds[best_end] >= 3 else None


CANDIDATES = {"steepest_nopad": steepest_nopad, "valley_lds": valley_lds}


def candidate(name: str, res) -> float | None:
    """Raw curve for the re-smoothing candidate, the finder's smoothed curve otherwise."""
    if name == "steepest_nopad":
        return steepest_nopad(res.lrs, res.losses, res.settings["smooth"])
    return CANDIDATES[name](res.lrs, res.smoothed_losses)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=Path, default=RESULTS / "finder_quality.json")
    parser.add_argument("--settings", default="default,iters300")
    parser.add_argument("--out", type=Path, default=RESULTS / "finder_candidates.json")
    args = parser.parse_args(argv)
    grid = json.loads(args.grid.read_text())
    seeds = grid["seeds"]
    tasks = [TASKS[n] for n in grid["tasks"] if n != "digits_deep_momentum"]
    out = {"quality": [], "stability": []}
    print("## Quality (cell: metric (difference), lr / best lr, [inconclusive/seeds])\n")
    print("| setting | task | " + " | ".join(CANDIDATES) + " |")
    print("|---|---|" + "---|" * len(CANDIDATES))
    for name in args.settings.split(","):
        for task in tasks:
            g = grid["tasks"][task.name]["grid_summary"]
            key = metric_name(task)
            per_rule: dict[str, list] = {c: [] for c in CANDIDATES}
            inconclusive = 0
            for s in seeds:
                res, _ = run_finder(task, s, **SETTINGS[name])
                inconclusive += res.verdict != "ok"
                for c in CANDIDATES:
                    lr = candidate(c, res)
                    rec = train(task, lr, s) if lr else {"lr": None, key: None}
                    per_rule[c].append(rec)
                    out["quality"].append({"setting": name, "task": task.name, "rule": c,
                                           "verdict": res.verdict, **rec})
            cells = []
            for c in CANDIDATES:
                vals = [r[key] for r in per_rule[c] if r[key] is not None]
                sc = score(task, float(np.mean(vals)), g["best"])
                lrs = [r["lr"] for r in per_rule[c] if r["lr"]]
                diff = (f"{-sc['gap_points']:+.1f} pt" if "gap_points" in sc
                        else f"x{sc['loss_over_best']:.2f}")
                cells.append(f"{np.mean(vals):.4f} ({diff}){'' if sc['pass'] else ' ✗'} "
                             f"x{np.exp(np.mean(np.log(lrs))) / g['best_lr']:.2g} "
                             f"[{inconclusive}/{len(seeds)}]")
            print(f"| {name} | {task.name} | " + " | ".join(cells) + " |", flush=True)

    print("\n## Stability, start_lr=1e-7, end_lr=10 (cell: worst seed spread at one num_iters "
          "/ spread of medians across num_iters / overall; ok runs only)\n")
    print("| task | " + " | ".join(CANDIDATES) + " |")
    print("|---|" + "---|" * len(CANDIDATES))
    for task in tasks:
        vals = {c: {n: [] for n in (100, 200, 300)} for c in CANDIDATES}
        for n in (100, 200, 300):
            for s in range(5):
                res, _ = run_finder(task, s, num_iters=n)
                for c in CANDIDATES:
                    lr = candidate(c, res)
                    out["stability"].append({"task": task.name, "num_iters": n, "seed": s,
                                             "rule": c, "verdict": res.verdict, "lr": lr})
                    if res.verdict == "ok" and lr:
                        vals[c][n].append(lr)
        cells = []
        for c in CANDIDATES:
            per = [v for v in vals[c].values() if len(v) >= 2]
            seed_spread = max(max(v) / min(v) for v in per) if per else float("nan")
            med = [float(np.median(v)) for v in vals[c].values() if v]
            every = [x for v in vals[c].values() for x in v]
            cells.append(f"{seed_spread:.1f}x / {max(med) / min(med):.1f}x / "
                         f"{max(every) / min(every):.1f}x")
        print(f"| {task.name} | " + " | ".join(cells) + " |", flush=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
