"""``lrtune predict``: load a trained model from its run folder or checkpoint and predict.

Input is the run's own test split by default, or a ``.npy`` array of inputs. Predictions go
to a CSV: the class (name and index) for classification, the outputs for regression.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

TOLERATED = 1.0  # inputs beyond [-1, 2] are far from the [0, 1] images every dataset holds
EPILOG = """examples:
  lrtune predict runs/train                         # the test split of the run's dataset
  lrtune predict runs/train/checkpoints/last.pt --input images.npy --out preds.csv
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="predict with a trained model", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="a run folder of lrtune train or demo (its checkpoints/best.pt) "
                   "or a checkpoint file")
    p.add_argument("--input", default=None, help=".npy array of inputs (default: the test split)")
    p.add_argument("--data-dir", default=None, help="dataset folder, for the test split")
    p.add_argument("--seed", type=int, default=None, help="split seed (default: the run's)")
    p.add_argument("--out", default=None, help="CSV to write (default SOURCE/predictions.csv)")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np
    import torch

    from lrtune.cli.checks import check_output_path
    from lrtune.trained import checkpoint_of, load_trained
    from lrtune.training.checkpoint_io import load_checkpoint

    source = Path(args.source)
    out = check_output_path(args.out, folder=False) if args.out is not None else (
        (source if source.is_dir() else source.parent.parent) / "predictions.csv")
    model, spec = load_trained(args.source)
    labels = None
    if args.input is not None:
        try:
            X = torch.from_numpy(np.load(args.input, allow_pickle=False)).float()
        except (OSError, ValueError, TypeError) as exc:  # TypeError: strings, not numbers
            raise ValueError(f"cannot read --input {args.input}: {exc}") from None
        if X.dim() < 2 or len(X) == 0:
            raise ValueError(f"--input {args.input} must hold at least one sample (an array "
                             f"of shape (n, ...)), got shape {tuple(X.shape)}")
        _check_finite(X, f"--input {args.input}")
    else:
        from lrtune.data import load_dataset

        ckpt = checkpoint_of(source)
        seed = args.seed
        if seed is None:
            seed = load_checkpoint(ckpt)["extra"].get("settings", {}).get("seed", 0)
        X, labels = load_dataset(spec["dataset"], seed=seed, data_dir=args.data_dir).test
    if tuple(X.shape[1:]) != tuple(spec["input_shape"]) and X[0].numel() != spec["in_features"]:
        raise ValueError(f"inputs of shape {tuple(X.shape[1:])} do not fit the model, which "
                         f"expects {tuple(spec['input_shape'])}")
    with torch.no_grad():
        outputs = torch.cat([model(X[i : i + 512]) for i in range(0, len(X), 512)])
    bad = int((~torch.isfinite(outputs)).any(1).sum())
    if bad:
        raise ValueError(f"the model's outputs are not finite for {bad} of {len(X)} inputs (input "
                         f"values span {X.min().item():.3g} to {X.max().item():.3g}; the model "
                         "was trained on images in [0, 1]): no prediction written")
    low, high = X.min().item(), X.max().item()
    if low < -TOLERATED or high > 1 + TOLERATED:
        print(f"lrtune predict: warning: input values span {low:.3g} to {high:.3g}, far outside "
              "the [0, 1] the model was trained on: predictions may be meaningless",
              file=sys.stderr)
    _write_csv(out, outputs, spec)
    line = f"predicted {len(X)} samples with {spec['name']} trained on {spec['dataset']}"
    if labels is not None and spec["task"] == "classification":
        accuracy = (outputs.argmax(1) == labels).float().mean().item()
        line += f"; accuracy {accuracy:.4f} on the test split"
    elif labels is not None:
        line += f"; test MSE {torch.nn.functional.mse_loss(outputs, labels).item():.6g}"
    print(f"{line}; wrote {out}")
    return 0


def _check_finite(X, what: str) -> None:
    import torch

    bad = int((~torch.isfinite(X.reshape(len(X), -1))).any(1).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {len(X)} samples hold NaN or infinite values; "
                         "predictions on them would be meaningless")


def _write_csv(path: Path, outputs, spec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        if spec["task"] == "classification":
            names = spec.get("class_names") or [str(i) for i in range(spec["n_outputs"])]
            writer.writerow(["index", "class", "label"])
            for i, k in enumerate(outputs.argmax(1).tolist()):
                writer.writerow([i, k, names[k]])
        else:
            writer.writerow(["index", *[f"output_{j}" for j in range(outputs.shape[1])]])
            for i, row in enumerate(outputs.tolist()):
                writer.writerow([i, *(f"{v:.6g}" for v in row)])
