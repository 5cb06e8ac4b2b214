"""Overhead of the range test through each framework integration against that framework's own
plain training loop over the same steps (issue 12, point 6). One function per framework.

Each comparison is paired: every repeat times both sides back to back, in an order that
alternates between repeats; the figure is the median over repeats of the per-repeat ratio, with
its interquartile range as the noise, on wall-clock and on this process's CPU time
(``time.process_time``, the steadier of the two on a shared CPU).

Keras: ``lrtune.integrations.keras.find_lr`` (N steps, ``restore=True``, analysis included)
against ``model.fit`` over the same N batches of the same arrays (same order, ``shuffle=False``)
with the same model and optimizer. The sweep (1e-5 -> 0.1, plain SGD) never stops early
(checked), so both sides train exactly N steps.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py --only keras
    ... --only keras --keras-backend jax
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = dict(start_lr=1e-5, end_lr=0.1)  # plain SGD never diverges in it: equal work


def paired(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time every side once per repeat (order alternating); wall and CPU seconds per side."""
    names = list(sides)
    times: dict[str, list[float]] = {f"{n}_{c}": [] for n in names for c in ("wall", "cpu")}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            sides[name]()
            times[f"{name}_wall"].append(time.perf_counter() - wall)
            times[f"{name}_cpu"].append(time.process_time() - cpu)
    return times


def ratio_summary(times: dict[str, list[float]], num: str, den: str) -> dict[str, dict]:
    out = {}
    for clock in ("wall", "cpu"):
        ratios = [a / b for a, b in zip(times[f"{num}_{clock}"], times[f"{den}_{clock}"],
                                        strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        out[clock] = dict(ratio_median=round(statistics.median(ratios), 4),
                          ratio_iqr=[round(q1, 4), round(q3, 4)],
                          num_ms=round(1e3 * statistics.median(times[f"{num}_{clock}"]), 1),
                          den_ms=round(1e3 * statistics.median(times[f"{den}_{clock}"]), 1))
    return out


def digits():
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)


def _time_hooks(cls, sink: list[float]) -> None:
    """Add the CPU time of every call of ``cls``'s hooks to ``sink[-1]`` (load-independent:
    what the callback itself costs, apart from Keras' own work)."""
    def timer(hook):
        def timed(self, *a, **k):
            start = time.process_time()
            try:
                return hook(self, *a, **k)
            finally:
                sink[-1] += time.process_time() - start
        return timed

    for name in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin",
                 "on_train_batch_end", "on_train_end"):
        setattr(cls, name, timer(getattr(cls, name)))


def bench_keras(args) -> dict:
    """find_lr through the Keras callback vs ``model.fit`` on the same N batches."""
    os.environ.setdefault("KERAS_BACKEND", args.keras_backend)
    import keras
    import numpy as np

    from lrtune.integrations.keras import LRRangeTest, find_lr

    hooks_cpu: list[float] = []  # CPU seconds spent inside the callback's hooks, per find_lr
    _time_hooks(LRRangeTest, hooks_cpu)

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
    x, y = digits()
    n_steps, batch = args.num_iters, 32
    order = np.concatenate([np.arange(len(x))] * (-(-n_steps * batch // len(x))))
    xs, ys = x[order][: n_steps * batch], y[order][: n_steps * batch]  # what find_lr trains on

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(300, activation="relu"),
                              keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    results = {}

    def range_test():
        hooks_cpu.append(0.0)
        results["last"] = find_lr(model, x, y, batch_size=batch, num_iters=n_steps,
                                  shuffle=False, **SWEEP)

    def plain_fit():
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)

    sides = {"find_lr": range_test, "fit": plain_fit}
    paired(sides, 1)  # warm-up (first-call costs on both sides)
    stopped = results["last"].stop_reason
    assert stopped == "finished" and len(results["last"].train_lrs) == n_steps, stopped
    del hooks_cpu[:]
    times = paired(sides, args.repeats)
    hooks_ms = 1e3 * statistics.median(hooks_cpu)
    fit_ms = 1e3 * statistics.median(times["fit_cpu"])
    return dict(hooks_cpu_ms=round(hooks_ms, 1), hooks_over_fit=round(hooks_ms / fit_ms, 4),
                framework=f"keras {keras.__version__}", backend=keras.backend.backend(),
                case=f"digits MLP 300-100, batch {batch}, SGD, {n_steps} steps",
                repeats=args.repeats, summary=ratio_summary(times, "find_lr", "fit"),
                times=times)


FRAMEWORKS: dict[str, Callable[[argparse.Namespace], dict]] = {"keras": bench_keras}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(FRAMEWORKS), action="append",
                        help="run only this framework (repeatable); default: all")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--num-iters", type=int, default=300)
    parser.add_argument("--keras-backend", default="torch", choices=["torch", "jax"])
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    for name in args.only or list(FRAMEWORKS):
        out = FRAMEWORKS[name](args)
        out["machine"] = dict(python=platform.python_version(), processor=platform.processor(),
                              cpus=os.cpu_count(), omp=os.environ.get("OMP_NUM_THREADS"))
        tag = name if name != "keras" else f"keras_{out['backend']}"
        (RESULTS / f"integrations_{tag}.json").write_text(json.dumps(out, indent=1))
        print(name, out.get("backend", ""), out["case"])
        if "hooks_cpu_ms" in out:
            print(f"  inside the callback's hooks: {out['hooks_cpu_ms']} ms CPU per range test "
                  f"({100 * out['hooks_over_fit']:.1f} % of the plain fit's CPU time)")
        for clock, s in out["summary"].items():
            print(f"  {clock}: find_lr {s['num_ms']} ms, framework {s['den_ms']} ms, ratio "
                  f"{s['ratio_median']} (IQR {s['ratio_iqr'][0]}-{s['ratio_iqr'][1]})")


if __name__ == "__main__":
    sys.exit(main())
