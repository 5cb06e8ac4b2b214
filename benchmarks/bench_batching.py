"""Batching speed: lrtune's TensorBatches against DataLoader(TensorDataset).

One shuffled epoch over 55 000 × 784 float32 samples (Fashion-MNIST's training part after the
5 000 validation images) at batch size 32, the batches only iterated (no model), so the time
is the batching overhead a training loop pays. The two are timed alternately in one process,
``--repeats`` times each; the medians and their ratio are printed as a Markdown table.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_batching.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from lrtune.data import TensorBatches


def epoch_seconds(batches) -> tuple[float, int]:
    start = time.perf_counter()
    n = 0
    for xb, _ in batches:
        n += len(xb)
    return time.perf_counter() - start, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=55_000)
    parser.add_argument("--features", type=int, default=784)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    load_before = os.getloadavg()
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(args.samples, args.features, generator=gen)
    y = torch.randint(0, 10, (args.samples,), generator=gen)
    ours = TensorBatches(X, y, args.batch_size, shuffle=True, seed=0)
    loader = DataLoader(TensorDataset(X, y), batch_size=args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {"TensorBatches": [], "DataLoader(TensorDataset)": []}
    epoch_seconds(ours)  # warm-up of both paths
    epoch_seconds(loader)
    for _ in range(args.repeats):
        for name, batches in (("TensorBatches", ours), ("DataLoader(TensorDataset)", loader)):
            seconds, n = epoch_seconds(batches)
            assert n == args.samples
            times[name].append(seconds)

    medians = {name: statistics.median(t) for name, t in times.items()}
    n_batches = len(ours)
    print(f"torch {torch.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"{args.samples} x {args.features} float32, batch {args.batch_size} ({n_batches} "
          f"batches), shuffled, {args.repeats} paired repeats\n")
    print("| batching | median epoch (s) | per batch (µs) | all repeats (s) |")
    print("|---|---:|---:|---|")
    for name, median in medians.items():
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"| {name} | {median:.3f} | {1e6 * median / n_batches:.1f} | {runs} |")
    ratio = medians["DataLoader(TensorDataset)"] / medians["TensorBatches"]
    print(f"\nTensorBatches is {ratio:.1f}x faster (ratio of medians)")
    loads = (", ".join(f"{v:.2f}" for v in load) for load in (load_before, os.getloadavg()))
    print("load average (1, 5, 15 min) before: {}; after: {}".format(*loads))


if __name__ == "__main__":
    main()
