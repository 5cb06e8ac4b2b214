"""Does the keypoint CNN learn the synthetic faces in minutes on a small CPU?

Trains ``keypoint_cnn`` on ``synthetic-faces`` (2 800 training faces of 48×48) with Adam,
with and without seed 004's flip augmentation, in a plain loop over ``TensorBatches``, and
prints the validation RMSE in pixels per epoch against the baseline of predicting the mean
training keypoints.

Run: OMP_NUM_THREADS=1 python benchmarks/bench_synthetic_faces.py --epochs 6
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn

from lrtune.data import TensorBatches, load_dataset
from lrtune.data.augment import make_augment
from lrtune.models import keypoint_cnn


def rmse_pixels(pred: torch.Tensor, target: torch.Tensor, size: int) -> float:
    """Unit coordinates span ``size / 2`` pixels per unit."""
    return float(((pred - target) ** 2).mean().sqrt()) * size / 2


def run(splits, augment_name: str, epochs: int, seed: int) -> list[tuple[int, float, float]]:
    torch.manual_seed(seed)
    model = keypoint_cnn(splits.input_shape, splits.n_outputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    augment = make_augment(augment_name, splits, generator=torch.Generator().manual_seed(seed))
    batches = TensorBatches(*splits.train, batch_size=64, seed=seed)
    X_valid, y_valid = splits.valid
    size = splits.extra["image_size"]
    rows, start = [], time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        for xb, yb in batches:
            if augment is not None:
                xb, yb = augment(xb, yb)
            loss = nn.functional.mse_loss(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            valid = rmse_pixels(model(X_valid), y_valid, size)
        rows.append((epoch, valid, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    splits = load_dataset("synthetic-faces", seed=args.seed)
    size = splits.extra["image_size"]
    mean = splits.train[1].mean(0, keepdim=True).expand_as(splits.valid[1])
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    baseline = rmse_pixels(mean, splits.valid[1], size)
    print(f"baseline (mean keypoints): valid RMSE {baseline:.2f} px")
    results = {name: run(splits, name, args.epochs, args.seed) for name in ("none", "flip")}
    print("\n| epoch | valid RMSE, no augmentation (px) | valid RMSE, flip (px) | "
          "elapsed none / flip (s) |")
    print("|---:|---:|---:|---:|")
    for (epoch, plain, t_plain), (_, flip, t_flip) in zip(*results.values(), strict=True):
        print(f"| {epoch} | {plain:.2f} | {flip:.2f} | {t_plain:.0f} / {t_flip:.0f} |")


if __name__ == "__main__":
    main()
