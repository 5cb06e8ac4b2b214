"""Overhead of the range test through each framework integration (one function per framework).

For each framework the range test through ``lrtune.integrations.<name>.find_lr`` is timed
against the framework's own training loop doing the same optimizer steps on the same data
and network, and against ``lrtune.find_lr`` on the equivalent plain PyTorch code (what the glue
itself costs). The sweep's range never diverges (checked), so the work is equal.

Paired: every repeat times all contenders back to back, in an order rotating between repeats;
each ratio reported is the median over repeats of the per-repeat ratio (with its quartiles).
Times are this process's CPU time (``time.process_time``), steadier than wall time on a shared
CPU; wall time is stored too.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py
    ... bench_integrations.py --only skorch --repeats 15
    KERAS_BACKEND=jax ... bench_integrations.py --only keras   # Keras on JAX (default: torch)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from common import machine, splits_of

import lrtune
from lrtune.models import mlp

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = dict(start_lr=1e-5, end_lr=0.1, mode="exp")  # plain SGD never diverges in this range


def paired(contenders: dict[str, Callable[[], None]], repeats: int,
           reset: Callable[[], None] = lambda: None) -> dict:
    """Time every contender once per repeat (rotating order) after one warm-up run each;
    ``reset()`` (untimed) runs before each, so every one starts from the same state."""
    for run in contenders.values():
        reset()
        run()
    names = list(contenders)
    cpu: dict[str, list[float]] = {n: [] for n in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            reset()
            t0, c0 = time.perf_counter(), time.process_time()
            contenders[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {"cpu": cpu, "wall": wall,
            "median_cpu_ms": {n: 1e3 * float(np.median(t)) for n, t in cpu.items()}}


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    r = np.array(times[a]) / np.array(times[b])
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def bench_skorch(repeats: int, epochs: int = 3, batch_size: int = 32) -> dict:
    """skorch: ``find_lr(net, X, y)`` vs ``net.partial_fit(X, y, epochs=...)`` over the same
    steps (digits MLP 64-300-100-10, SGD momentum 0.9, ``train_split=None``, ``verbose=0``),
    and vs ``lrtune.find_lr`` on the bare module, criterion and optimizer."""
    from skorch import NeuralNetClassifier

    from lrtune.integrations.skorch import find_lr

    splits = splits_of("digits")
    X, y = splits.train
    steps = epochs * -(-len(X) // batch_size)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        mlp(splits.in_features, splits.n_outputs, (300, 100)),
        criterion=torch.nn.CrossEntropyLoss, lr=0.01, optimizer=torch.optim.SGD,
        optimizer__momentum=0.9, batch_size=batch_size, max_epochs=epochs, train_split=None,
        verbose=0).initialize()
    start = copy.deepcopy((net.module_.state_dict(), net.optimizer_.state_dict()))

    def reset() -> None:  # partial_fit trains the net: every contender starts from `start`
        net.module_.load_state_dict(start[0])
        net.optimizer_.load_state_dict(start[1])
        net.history.clear()

    def integration() -> None:
        res = find_lr(net, X, y, num_iters=steps, **SWEEP)
        if len(res.train_losses) != steps:
            raise RuntimeError(f"the sweep stopped early ({res.stop_reason}): unequal work")

    def core() -> None:
        res = lrtune.find_lr(net.module_, net.optimizer_, net.criterion_, (X, y),
                             batch_size=batch_size, num_iters=steps, **SWEEP)
        if len(res.train_losses) != steps:
            raise RuntimeError(f"the sweep stopped early ({res.stop_reason}): unequal work")

    def skorch_loop() -> None:
        net.partial_fit(X, y, epochs=epochs)

    times = paired({"integration": integration, "skorch partial_fit": skorch_loop,
                    "lrtune.find_lr": core}, repeats, reset)
    return {**times, "steps": steps, "batch_size": batch_size, "repeats": repeats,
            "cpu_ratios": {
                "integration/skorch partial_fit": ratio(times["cpu"], "integration",
                                                        "skorch partial_fit"),
                "integration/lrtune.find_lr": ratio(times["cpu"], "integration",
                                                    "lrtune.find_lr")}}


def _time_hooks(cls, sink: list[float]) -> None:
    """Add the CPU time of every call of ``cls``'s hooks to ``sink[-1]``: what the callback
    itself costs, apart from the framework's own work (load inflates it less than a ratio)."""
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


def bench_keras(repeats: int, num_iters: int = 300, batch_size: int = 32) -> dict:
    """Keras 3 (``KERAS_BACKEND``, default torch): ``find_lr(model, X, y)`` vs ``model.fit``
    over the same batches in the same order (``shuffle=False``), digits MLP 64-300-100-10,
    plain SGD. Also the CPU time spent inside ``LRRangeTest``'s hooks."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from lrtune.integrations.keras import LRRangeTest, find_lr

    hooks_cpu: list[float] = []
    _time_hooks(LRRangeTest, hooks_cpu)
    X, y = splits_of("digits").train
    X, y = X.numpy().reshape(len(X), -1), y.numpy().astype(np.int32)  # images: flattened
    order = np.resize(np.arange(len(X)), num_iters * batch_size)  # find_lr's shuffle=False order
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((X.shape[1],)),
                              keras.layers.Dense(300, activation="relu"),
                              keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    start = [np.array(w) for w in model.get_weights()]

    def reset() -> None:  # fit trains the model: both contenders start from `start`
        model.set_weights(start)

    def integration() -> None:
        hooks_cpu.append(0.0)
        res = find_lr(model, X, y, batch_size=batch_size, num_iters=num_iters, shuffle=False,
                      start_lr=SWEEP["start_lr"], end_lr=SWEEP["end_lr"])
        if len(res.train_losses) != num_iters:
            raise RuntimeError(f"the sweep stopped early ({res.stop_reason}): unequal work")

    def keras_fit() -> None:
        model.fit(X[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)

    times = paired({"integration": integration, "keras fit": keras_fit}, repeats, reset)
    hooks_ms = 1e3 * float(np.median(hooks_cpu[1:]))  # [0]: the warm-up run
    backend = keras.backend.backend()
    return {**times, "tag": f"keras_{backend}", "backend": backend,
            "keras": keras.__version__, "steps": num_iters, "batch_size": batch_size,
            "repeats": repeats, "hooks_median_cpu_ms": hooks_ms,
            "cpu_ratios": {"integration/keras fit": ratio(times["cpu"], "integration",
                                                          "keras fit")}}


FRAMEWORKS: dict[str, Callable[[int], dict]] = {"skorch": bench_skorch, "keras": bench_keras}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--only", choices=sorted(FRAMEWORKS), help="run one framework's benchmark")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    for name in [args.only] if args.only else list(FRAMEWORKS):
        out = {"framework": name, "machine": machine(), **FRAMEWORKS[name](args.repeats)}
        tag = out.pop("tag", name)  # keras: one file per backend
        (RESULTS / f"integrations_{tag}.json").write_text(json.dumps(out, indent=1))
        print(f"## {name}: {out['steps']} steps, batch {out['batch_size']}, "
              f"{out['repeats']} paired repeats (CPU time)")
        for contender, ms in out["median_cpu_ms"].items():
            print(f"  {contender:<22} {ms:8.1f} ms")
        if "hooks_median_cpu_ms" in out:
            print(f"  inside LRRangeTest's hooks: {out['hooks_median_cpu_ms']:.1f} ms")
        for pair, r in out["cpu_ratios"].items():
            print(f"  {pair:<40} median {r['median']:.3f} (IQR {r['q1']:.3f}-{r['q3']:.3f})")


if __name__ == "__main__":
    main()
