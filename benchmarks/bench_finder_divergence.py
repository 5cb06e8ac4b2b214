"""Does the range test's divergence test stop on noise? Old rule vs new, on the same curves.

The old rule: stop once the online-smoothed loss exceeds ``diverge_factor`` × its best. The
new one (:mod:`lrtune.finder.divergence`) also requires the excess to exceed the loss's
measured noise. The curve a sweep records before it stops does not depend on the rule, so
each sweep runs once without stopping (``diverge_factor=1e12``) and both rules are replayed
on its curve:

1. fresh models: every task, setting and seed of ``bench_finder_quality.py`` (72 sweeps):
   does the new rule stop at the same point (hence the same verdict and suggestions)?
2. partly trained models: the digits MLP (300-100) trained for a few epochs with SGD momentum,
   Adam or SGD, sweeps with batch 32 and 16: where does each rule stop, and where does the
   loss really blow up (first point > max(1, 10 × the median of the first 50))?

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_finder_divergence.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from bench_finder_quality import SETTINGS
from common import TASKS, build, run_finder, splits_of
from torch import nn

import lrtune
from lrtune.finder.divergence import DivergenceTest


def factor_stop(points, alpha, factor=4.0) -> int | None:
    avg, best = 0.0, np.inf
    for i, p in enumerate(points):
        avg = p if i == 0 else alpha * p + (1 - alpha) * avg
        best = min(best, avg)
        if i and avg > factor * best:
            return i + 1
    return None


def noise_stop(points, alpha, factor=4.0) -> int | None:
    test = DivergenceTest(alpha, factor)
    return next((i + 1 for i, p in enumerate(points) if test.update(p)), None)


def alpha_of(n_points: int) -> float:
    return 2.0 / (0.05 * n_points + 1.0)


def fresh() -> None:
    same, total = 0, 0
    for task in TASKS.values():
        for name, setting in SETTINGS.items():
            for seed in range(3):
                res, _ = run_finder(task, seed, diverge_factor=1e12, **setting)
                a = alpha_of(setting["num_iters"])
                old, new = factor_stop(res.losses, a), noise_stop(res.losses, a)
                total += 1
                same += old == new
                if old != new:
                    print(f"  changed: {task.name} {name} seed {seed}: {old} -> {new}")
    print(f"fresh models: the same stop on {same} of {total} sweeps")


def partly_trained() -> None:
    splits = splits_of("digits")
    X, y = splits.train
    early = {"old": 0, "new": 0}
    total = 0
    print("| optimizer, epochs | seed | batch | old stop (lr) | new stop (lr) | blow-up (lr) |")
    print("|---|---|---|---|---|---|")
    for opt_name, epochs in (("sgd-momentum", 6), ("sgd-momentum", 12), ("sgd-momentum", 25),
                             ("adam", 12), ("adam", 25), ("sgd", 8)):
        for seed in range(3):
            model, _, loss_fn = build(TASKS["digits_sgd"], seed, lr=0.1)
            opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if opt_name == "adam" else
                   torch.optim.SGD(model.parameters(), lr=0.1,
                                   momentum=0.9 if opt_name == "sgd-momentum" else 0.0))
            gen = torch.Generator().manual_seed(seed)
            for _ in range(epochs):
                perm = torch.randperm(len(y), generator=gen)
                for i in range(0, len(y), 32):
                    idx = perm[i:i + 32]
                    opt.zero_grad()
                    nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
                    opt.step()
            for batch in (32, 16):
                res = lrtune.find_lr(model, opt, loss_fn, (X, y), seed=seed, batch_size=batch,
                                     diverge_factor=1e12)
                lrs, losses = res.lrs, np.asarray(res.losses)
                a = alpha_of(300)
                cells = []
                blow = next((i for i, v in enumerate(losses)
                             if v > max(1.0, 10 * np.median(losses[:50]))), len(losses) - 1)
                for key, rule in (("old", factor_stop), ("new", noise_stop)):
                    at = rule(losses, a)
                    cells.append(f"{at} ({lrs[at - 1]:.2g})" if at else "none")
                    early[key] += at is not None and lrs[blow] / lrs[at - 1] > 10
                total += 1
                print(f"| {opt_name}, {epochs} | {seed} | {batch} | {cells[0]} | {cells[1]} | "
                      f"{blow + 1} ({lrs[blow]:.2g}) |", flush=True)
    print(f"partly trained: stopped more than a decade below the blow-up: old rule "
          f"{early['old']} of {total}, new rule {early['new']} of {total}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    fresh()
    partly_trained()
