"""lrtune's framework integrations against each framework's own loop (and its own finder).

One function per framework; ``--only NAME`` runs one. Every timing is paired: each repeat runs
all contenders back to back, in an order that rotates between repeats, and the ratio reported is
the median over repeats of the per-repeat ratio (with its range). Times are this process's CPU
time (``time.process_time``, one thread, no DataLoader workers): on a CPU shared with other
jobs it is steadier than wall-clock time, since waiting for a core is not counted.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py
    ... bench_integrations.py --only lightning --repeats 5
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import machine, splits_of
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from lrtune.models import mlp

RESULTS = Path(__file__).resolve().parent / "results"


def paired(contenders: dict, repeats: int) -> dict[str, list[float]]:
    """CPU seconds of each contender per repeat (one warm-up run each first)."""
    names = list(contenders)
    for name in names:
        contenders[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.process_time()
            contenders[name]()
            times[name].append(time.process_time() - start)
    return times


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float]:
    per_repeat = [x / y for x, y in zip(times[a], times[b], strict=True)]
    return {"median": statistics.median(per_repeat), "min": min(per_repeat),
            "max": max(per_repeat)}


# -- PyTorch Lightning --------------------------------------------------------------------------
def bench_lightning(repeats: int, steps: int) -> dict:
    """(a) the range test through ``lrtune.integrations.lightning`` against Lightning's own
    ``Trainer.fit`` over the same number of optimizer steps; (b) Lightning's ``Tuner.lr_find``
    against ours on the same module, data and sweep: time, suggestion, and the validation
    accuracy of a model trained at each suggestion."""
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    from lrtune.integrations.lightning import find_lr

    warnings.filterwarnings("ignore")  # Lightning's advice (workers, logger) is not the subject
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    splits = splits_of("digits")
    train, valid = TensorDataset(*splits.train), splits.valid

    class Digits(pl.LightningModule):
        """Seed 000's MLP (64-300-100-10) on digits, SGD with momentum 0.9."""

        def __init__(self, lr: float = 0.01, seed: int = 0) -> None:
            super().__init__()
            self.save_hyperparameters()
            torch.manual_seed(seed)
            self.net = mlp(splits.in_features, splits.n_outputs)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    def loader(seed: int = 0) -> DataLoader:
        return DataLoader(train, batch_size=32, shuffle=True,
                          generator=torch.Generator().manual_seed(seed))

    root = tempfile.mkdtemp(prefix="lrtune_bench_")

    def trainer(**kwargs) -> pl.Trainer:
        return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False,
                          num_sanity_val_steps=0, default_root_dir=root, **kwargs)

    # (a) overhead: equal work, a sweep that never diverges (checked)
    quiet_sweep = dict(start_lr=1e-5, end_lr=0.05, num_iters=steps)

    def ours():
        result = find_lr(Digits(), None, loader(), **quiet_sweep)
        assert len(result.train_losses) == steps, result.stop_reason

    def ours_in_fit():
        result = find_lr(Digits(), trainer(), loader(), **quiet_sweep)
        assert len(result.train_losses) == steps, result.stop_reason

    def lightning_fit():
        fit = trainer(max_steps=steps)
        fit.fit(Digits(), loader())
        assert fit.global_step == steps

    times = paired({"lrtune find_lr(module)": ours, "lrtune find_lr(module, trainer)": ours_in_fit,
                    "Lightning Trainer.fit": lightning_fit}, repeats)
    overhead = {
        "steps": steps, "repeats": repeats,
        "median_cpu_s": {k: statistics.median(v) for k, v in times.items()},
        "ratio_find_lr_to_fit": ratio(times, "lrtune find_lr(module)", "Lightning Trainer.fit"),
        "ratio_find_lr_trainer_to_fit": ratio(times, "lrtune find_lr(module, trainer)",
                                              "Lightning Trainer.fit"),
    }

    # (b) the two finders on the same sweep, three initialisations; then train at each
    sweep = dict(lo=1e-6, hi=10.0, n=100)
    finders = []
    for seed in range(3):
        start = time.process_time()
        theirs = Tuner(trainer()).lr_find(Digits(seed=seed), train_dataloaders=loader(seed),
                                          min_lr=sweep["lo"], max_lr=sweep["hi"],
                                          num_training=sweep["n"], update_attr=False)
        their_s = time.process_time() - start
        start = time.process_time()
        mine = find_lr(Digits(seed=seed), None, loader(seed), start_lr=sweep["lo"],
                       end_lr=sweep["hi"], num_iters=sweep["n"])
        my_s = time.process_time() - start
        finders.append({"seed": seed, "lightning_s": their_s, "lightning_lr": theirs.suggestion(),
                        "lightning_points": len(theirs.results["lr"]), "lrtune_s": my_s,
                        "lrtune_lr": mine.suggested_lr, "lrtune_verdict": mine.verdict,
                        "lrtune_points": len(mine.train_losses)})

    def accuracy(lr: float | None, seed: int, epochs: int = 10) -> float | None:
        if lr is None:
            return None
        module = Digits(lr=lr, seed=seed)
        trainer(max_epochs=epochs).fit(module, loader(seed))
        with torch.no_grad():
            return float((module.net(valid[0]).argmax(1) == valid[1]).float().mean())

    for row in finders:
        row["lightning_valid_acc"] = accuracy(row["lightning_lr"], row["seed"])
        row["lrtune_valid_acc"] = accuracy(row["lrtune_lr"], row["seed"])
    return {"overhead": overhead, "finders": {"sweep": sweep, "epochs": 10, "runs": finders},
            "versions": {"lightning": pl.__version__}}


FRAMEWORKS = {"lightning": bench_lightning}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(FRAMEWORKS), help="run one framework's section")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps timed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    for name in [args.only] if args.only else list(FRAMEWORKS):
        wall = time.perf_counter()
        out = {"machine": machine(), **FRAMEWORKS[name](args.repeats, args.steps),
               "wall_s": time.perf_counter() - wall}
        (RESULTS / f"integrations_{name}.json").write_text(json.dumps(out, indent=2))
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
