"""Shared pieces of the benchmarks: the task suite, a training loop, the range test, paired timing.

Every task is small enough to train in well under a second per epoch on one CPU thread. Seeds
vary the model's initialisation and the batch order; the train/valid split is fixed (seed 0),
so every run of a task is scored on the same validation set.
"""

from __future__ import annotations

import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from lrtune.data import load_dataset
from lrtune.data.batching import as_batches
from lrtune.data.splits import Splits, split_three_ways
from lrtune.finder import find_lr
from lrtune.finder.result import FinderResult
from lrtune.models import mlp
from lrtune.training.setup import make_loss, make_optimizer

torch.set_num_threads(1)


@dataclass(frozen=True)
class Task:
    """One benchmark task: data, network, optimizer, training budget and its learning-rate grid.

    ``grid`` is ``(lowest lr, highest lr)``, rounded to quarter-decades (10^(k/4)); its points
    are a quarter-decade (x1.78) apart.
    """

    name: str
    dataset: str
    optimizer: str
    momentum: float
    hidden: tuple[int, ...]
    epochs: int
    grid: tuple[float, int]
    batch_size: int = 32
    note: str = ""

    def grid_lrs(self) -> list[float]:
        return quarter_decades(*self.grid)


def quarter_decades(lowest: float, highest: float) -> list[float]:
    """The grid's rates: 10^(k/4) from ``lowest`` to ``highest``, both rounded to the grid."""
    lo, hi = (round(4 * math.log10(v)) for v in (lowest, highest))
    return [float(10 ** (k / 4)) for k in range(lo, hi + 1)]


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("digits_sgd", "digits", "sgd", 0.0, (300, 100), epochs=20, grid=(1e-3, 3.2),
             note="seed 000's MLP, plain SGD"),
        Task("digits_momentum", "digits", "sgd", 0.9, (300, 100), epochs=20, grid=(3e-4, 1.0),
             note="seed 000's MLP, SGD momentum 0.9"),
        Task("digits_adam", "digits", "adam", 0.0, (300, 100), epochs=20, grid=(1e-4, 1.0),
             note="seed 000's MLP, Adam"),
        Task("diabetes_momentum", "diabetes", "sgd", 0.9, (32,), epochs=30, grid=(3e-5, 0.32),
             note="regression (442 samples), MLP 32, SGD momentum 0.9"),
        Task("friedman1_adam", "friedman1", "adam", 0.0, (64, 64), epochs=20, grid=(1e-4, 1.0),
             note="regression (2 000 samples), MLP 64-64, Adam"),
        Task("digits_deep_momentum", "digits", "sgd", 0.9, (100,) * 6, epochs=20,
             grid=(1e-3, 1.0), note="6x100 plain MLP, SGD momentum 0.9: a narrow peak"),
    ]
}


def _regression(name: str) -> Splits:
    """A scikit-learn regression set (no download), 60/20/20, X and y standardised on train.

    ``diabetes``: 442 x 10 real data. ``friedman1``: 2 000 x 10 synthetic
    (``make_friedman1``, noise 1.0, random_state 0): a smooth non-linear target.
    """
    from sklearn.datasets import load_diabetes, make_friedman1

    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True)
    else:
        X, y = make_friedman1(n_samples=2000, noise=1.0, random_state=0)
    splits = split_three_ways(
        X.astype(np.float32), y.astype(np.float32).reshape(-1, 1), valid_fraction=0.2,
        test_fraction=0.2, seed=0, stratify=False, task="regression", name=name,
    )
    (xt, yt) = splits.train
    xm, xs, ym, ys = xt.mean(0), xt.std(0), yt.mean(0), yt.std(0)

    def norm(pair):
        return (pair[0] - xm) / xs, (pair[1] - ym) / ys

    splits.train, splits.valid, splits.test = norm(splits.train), norm(splits.valid), norm(
        splits.test)
    return splits


@cache
def splits_of(dataset: str) -> Splits:
    if dataset in ("diabetes", "friedman1"):
        return _regression(dataset)
    return load_dataset(dataset, seed=0)


def build(task: Task, seed: int, lr: float):
    """Model (initialised from ``seed``), optimizer at ``lr`` and loss for ``task``."""
    splits = splits_of(task.dataset)
    torch.manual_seed(seed)
    model = mlp(splits.in_features, splits.n_outputs, task.hidden)
    optimizer = make_optimizer(task.optimizer, model.parameters(), lr=lr,
                               momentum=task.momentum)
    return model, optimizer, make_loss(splits.task)


def steps_per_epoch(task: Task) -> int:
    return -(-len(splits_of(task.dataset).train[1]) // task.batch_size)


def run_steps(task: Task) -> int:
    """Optimizer steps in one full training run of ``task``."""
    return task.epochs * steps_per_epoch(task)


@torch.no_grad()
def evaluate(model, loss_fn, data, task_kind: str) -> dict[str, float]:
    model.eval()
    X, y = data
    out = model(X)
    loss = float(loss_fn(out, y))
    result = {"loss": loss if math.isfinite(loss) else math.inf}
    if task_kind == "classification":
        # non-finite logits count as wrong answers
        ok = torch.isfinite(out).all(dim=1) & (out.argmax(dim=1) == y)
        result["acc"] = float(ok.float().mean())
    model.train()
    return result


def train(task: Task, lr: float, seed: int) -> dict:
    """Train ``task`` at a constant ``lr`` for its epoch budget; score the *final* weights.

    The final (not best-epoch) validation metric is the honest answer to "what do I get if I
    train at this rate". A non-finite training loss stops the run: it has diverged.
    """
    splits = splits_of(task.dataset)
    model, optimizer, loss_fn = build(task, seed, lr)
    batches = as_batches(splits.train, task.batch_size, shuffle=True, seed=seed)
    diverged, steps = False, 0
    model.train()
    for _ in range(task.epochs):
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            optimizer.step()
            steps += 1
        if diverged:
            break
    metrics = evaluate(model, loss_fn, splits.valid, splits.task)
    if diverged and splits.task == "classification":
        metrics["acc"] = min(metrics["acc"], 1.0 / splits.n_outputs)
    if diverged:
        metrics["loss"] = math.inf
    return {"lr": lr, "seed": seed, "diverged": diverged, "steps": steps, **metrics}


def metric_name(task: Task) -> str:
    return "acc" if splits_of(task.dataset).task == "classification" else "loss"


def run_finder(task: Task, seed: int, **settings) -> tuple[FinderResult, float]:
    """``find_lr`` on a fresh model of ``task`` (initialised from ``seed``); result and seconds.

    The model the finder sees is the one :func:`train` starts from with the same seed, as in
    the usual "find, then train" flow (``restore=True`` puts it back).
    """
    splits = splits_of(task.dataset)
    model, optimizer, loss_fn = build(task, seed, lr=1e-3)
    t0 = time.perf_counter()
    result = find_lr(model, optimizer, loss_fn, splits.train, batch_size=task.batch_size,
                     seed=seed, **settings)
    return result, time.perf_counter() - t0


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
    }


def task_dict(task: Task) -> dict:
    return {**asdict(task), "grid_lrs": task.grid_lrs(), "steps_per_run": run_steps(task)}


def paired(contenders: dict[str, Callable[[], object]], repeats: int,
           reset: Callable[[], None] = lambda: None) -> dict:
    """Time every contender once per repeat, in an order rotating between repeats.

    One untimed warm-up run of each comes first (allocator, lazy imports); ``reset()``
    (untimed) runs before every run, so each starts from the same state. Returns the
    per-repeat ``wall`` and ``cpu`` seconds (``time.process_time``: this process's CPU time,
    steadier than wall time on a shared CPU) of each contender, their medians in ms, and
    ``steps``: what each run returned, where a contender returns its number of steps.
    """
    for run in contenders.values():
        reset()
        run()
    names = list(contenders)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    steps: dict[str, list] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            reset()
            t0, c0 = time.perf_counter(), time.process_time()
            done = contenders[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            steps[name].append(done)
    out = {"cpu": cpu, "wall": wall,
           "median_cpu_ms": {n: 1e3 * float(np.median(t)) for n, t in cpu.items()}}
    if all(s is not None for runs in steps.values() for s in runs):
        out["steps"] = steps
    return out


def median_interval(ratios: list[float], resamples: int = 2000) -> tuple[float, float]:
    """Bootstrap 95 % interval of the median of ``ratios`` (fixed seed: repeatable)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios)))
                     for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    """Median, quartiles and range over repeats of the per-repeat ratio ``a / b``."""
    r = np.array(times[a]) / np.array(times[b])
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(r.min()),
            "max": float(r.max())}
