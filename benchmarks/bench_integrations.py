"""Overhead of the range test through each framework integration (one function per framework).

For each framework the range test through ``lrtune.integrations.<name>.find_lr`` is timed
against the framework's own training loop doing the same optimizer steps on the same data
and network (skorch, Keras and Lightning also against ``lrtune.find_lr`` or the integration's
other entry point; Lightning also against its own ``Tuner.lr_find``). The sweep's range never
diverges (checked), so the work is equal.

Paired (``common.paired``): every repeat times all contenders back to back, in an order rotating
between repeats; each ratio reported is the median over repeats of the per-repeat ratio (with
its quartiles and range). Times are this process's CPU time (``time.process_time``), steadier
than wall time on a shared CPU; wall time is stored too. Results go to
``results/integrations_<name>.json`` (Keras: ``integrations_keras_<backend>.json``); ``--out DIR``
writes them elsewhere.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py
    ... bench_integrations.py --only skorch --repeats 21
    ... bench_integrations.py --only keras --backend jax        # Keras on JAX (default: torch)
    ... bench_integrations.py --only lightning --repeats 5 --steps 200
    ... bench_integrations.py --only transformers --repeats 7
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import numpy as np
import torch
from common import machine, paired, ratio, splits_of
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import lrtune
from lrtune.models import mlp

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = dict(start_lr=1e-5, end_lr=0.1, mode="exp")  # plain SGD never diverges in this range


# -- skorch ---------------------------------------------------------------------------------------
def bench_skorch(repeats: int = 15, epochs: int = 3, batch_size: int = 32) -> dict:
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


# -- Keras 3 --------------------------------------------------------------------------------------
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


def bench_keras(repeats: int = 15, steps: int = 300, backend: str | None = None,
                batch_size: int = 32) -> dict:
    """Keras 3 (``backend``, else ``KERAS_BACKEND``, else torch): ``find_lr(model, X, y)`` vs
    ``model.fit`` over the same batches in the same order (``shuffle=False``), digits MLP
    64-300-100-10, plain SGD. Also the CPU time spent inside ``LRRangeTest``'s hooks."""
    if backend:
        os.environ["KERAS_BACKEND"] = backend  # read once, when keras is first imported
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from lrtune.integrations.keras import LRRangeTest, find_lr

    hooks_cpu: list[float] = []
    _time_hooks(LRRangeTest, hooks_cpu)
    X, y = splits_of("digits").train
    X, y = X.numpy().reshape(len(X), -1), y.numpy().astype(np.int32)  # images: flattened
    order = np.resize(np.arange(len(X)), steps * batch_size)  # find_lr's shuffle=False order
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
        res = find_lr(model, X, y, batch_size=batch_size, num_iters=steps, shuffle=False,
                      start_lr=SWEEP["start_lr"], end_lr=SWEEP["end_lr"])
        if len(res.train_losses) != steps:
            raise RuntimeError(f"the sweep stopped early ({res.stop_reason}): unequal work")

    def keras_fit() -> None:
        model.fit(X[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)

    times = paired({"integration": integration, "keras fit": keras_fit}, repeats, reset)
    hooks_ms = 1e3 * float(np.median(hooks_cpu[1:]))  # [0]: the warm-up run
    backend = keras.backend.backend()
    return {**times, "tag": f"keras_{backend}", "backend": backend,
            "keras": keras.__version__, "steps": steps, "batch_size": batch_size,
            "repeats": repeats, "hooks_median_cpu_ms": hooks_ms,
            "cpu_ratios": {"integration/keras fit": ratio(times["cpu"], "integration",
                                                          "keras fit")}}


# -- PyTorch Lightning ----------------------------------------------------------------------------
def bench_lightning(repeats: int = 5, steps: int = 200) -> dict:
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
                    "Lightning Trainer.fit": lightning_fit}, repeats)["cpu"]
    overhead = {
        "steps": steps, "repeats": repeats,
        "median_cpu_s": {k: float(np.median(v)) for k, v in times.items()},
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


# -- Hugging Face Transformers --------------------------------------------------------------------
def bench_transformers(repeats: int = 7, steps: int = 100) -> dict:
    """``lrtune.integrations.transformers.find_lr(trainer)`` against ``trainer.train()`` with
    ``max_steps`` = the steps the range test ran: a 2-layer BERT (hidden 64) classifying 512
    random 32-token sequences, batch 16, AdamW, HF's default clipping at 1.0; no logging,
    saving or progress bar on HF's side."""
    import transformers

    from lrtune.integrations.transformers import find_lr

    transformers.logging.set_verbosity_error()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 1000, (512, 32), generator=gen)
    labels = (ids[:, 0] >= 500).long()

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones_like(ids[i]),
                    "labels": labels[i]}

    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, vocab_size=1000,
                                     max_position_embeddings=32, num_labels=2)
    workdir = tempfile.mkdtemp(prefix="bench_hf_")

    def trainer(max_steps: int = -1):
        torch.manual_seed(0)
        args = transformers.TrainingArguments(
            output_dir=workdir, report_to=[], use_cpu=True, save_strategy="no",
            logging_strategy="no", disable_tqdm=True, per_device_train_batch_size=16,
            max_steps=max_steps, learning_rate=1e-3, seed=0)
        return transformers.Trainer(model=transformers.BertForSequenceClassification(config),
                                    args=args, train_dataset=Tokens())

    ran = {"n": steps}

    def range_test() -> int:
        result = find_lr(trainer(), start_lr=1e-6, end_lr=1e-2, num_iters=steps)
        ran["n"] = len(result.train_losses)  # HF's side then runs exactly as many steps
        return ran["n"]

    def hf_train() -> int:
        t = trainer(max_steps=ran["n"])
        t.train()
        return t.state.global_step

    times = paired({"a": range_test, "b": hf_train}, repeats)
    out: dict = {"raw": {s: {"wall": times["wall"][s], "cpu": times["cpu"][s],
                             "steps": times["steps"][s]} for s in "ab"}}
    for clock in ("wall", "cpu"):  # time per optimizer step
        per_step = {s: np.array(times[clock][s]) / np.array(times["steps"][s]) for s in "ab"}
        r = ratio(per_step, "a", "b")
        out[clock] = {"a_ms_per_step": 1e3 * float(np.median(per_step["a"])),
                      "b_ms_per_step": 1e3 * float(np.median(per_step["b"])),
                      "ratio": r.pop("median"), **r}
    out.update(model="BertForSequenceClassification(hidden 64, 2 layers)", batch_size=16,
               seq_len=32, num_iters=steps, transformers=transformers.__version__,
               note="a: lrtune find_lr(trainer) incl. optimizer creation, snapshot, restore; "
                    "b: trainer.train(max_steps=same steps); Trainer construction not timed "
                    "on either side")
    return out


FRAMEWORKS = {"skorch": bench_skorch, "keras": bench_keras, "lightning": bench_lightning,
              "transformers": bench_transformers}


def _summary(value):
    """``value`` without its lists of raw timings (what is printed)."""
    if isinstance(value, dict):
        kept = {k: _summary(v) for k, v in value.items()
                if not (isinstance(v, list) and v and not isinstance(v[0], dict))}
        return {k: v for k, v in kept.items() if v != {}}
    return [_summary(v) for v in value] if isinstance(value, list) else value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--only", choices=list(FRAMEWORKS), help="run one framework's benchmark")
    p.add_argument("--repeats", type=int, help="paired repeats (default: per framework)")
    p.add_argument("--steps", type=int,
                   help="optimizer steps timed (keras, lightning, transformers; default: each's)")
    p.add_argument("--epochs", type=int, help="skorch: epochs timed (default 3)")
    p.add_argument("--backend", choices=["torch", "jax"], help="keras: its backend")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="folder for the results JSON (default: benchmarks/results)")
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in vars(args).items() if v is not None}
    for name in [args.only] if args.only else list(FRAMEWORKS):
        bench = FRAMEWORKS[name]
        kwargs = {k: v for k, v in options.items() if k in inspect.signature(bench).parameters}
        wall = time.perf_counter()
        out = {"framework": name, "machine": machine(), **bench(**kwargs),
               "wall_s": time.perf_counter() - wall}
        tag = out.pop("tag", name)  # keras: one file per backend
        (args.out / f"integrations_{tag}.json").write_text(json.dumps(out, indent=1))
        print(f"## {tag}\n{json.dumps(_summary(out), indent=1)}")


if __name__ == "__main__":
    main()
