"""The broader suite of issue 14, item 6: five new tasks for ``bench_auto_suite.py``.

Each task has train / valid / test ``(X, y)`` tensors, a model factory, an optimizer, a budget
and a quarter-decade learning-rate grid. The grid and every full training are scored on the
**test** set; ``auto_lr`` sees the **valid** set (the user's validation data). Seeds vary the
initialisation (of the new head, for the fine-tuning task) and the batch order; the data and
the pretrained network are fixed.

- ``charlm_adamw``: a 2-layer causal transformer, character level, AdamW, on the docstrings of
  a fixed list of standard-library modules; metric: test cross-entropy.
- ``finetune_digits``: an MLP pretrained on digits 0-4 (all their training images), fine-tuned
  whole (new 5-class head) on 10 images per class of digits 5-9; metric: test accuracy.
- ``onecycle_cnn_bn``: a small CNN with BatchNorm on digits, SGD momentum 0.9, one-cycle
  schedule (the grid's rate is the schedule's peak); metric: test accuracy.
- ``slow_tanh_deep``: an 8-layer, 32-wide tanh MLP on digits, SGD momentum 0.9: vanishing
  signals keep the loss on a plateau for hundreds of steps; metric: test accuracy.
- ``cliff_linear_sgd``: plain SGD on ill-conditioned least squares (a linear model,
  batch 64): the best rate sits at the edge of stability; metric: test MSE.

Two more under a schedule (the rate is the peak), added later to measure the confirmation's
bracket there: ``onecycle_mlp_sgd`` (seed 000's digits MLP, SGD momentum 0.9, one-cycle;
test accuracy) and ``cosine_charlm_adamw`` (``charlm_adamw`` under ``warmup_cosine``; test
cross-entropy).
"""

from __future__ import annotations

import inspect
import math
import os
import time
from dataclasses import asdict, dataclass
from functools import cache

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrtune.data import load_dataset
from lrtune.data.batching import as_batches
from lrtune.models import mlp
from lrtune.schedules.presets import named_schedule

torch.set_num_threads(1)

# -- the tasks -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteTask:
    """One task: its data (``data``), model (``model``), optimizer and budget.

    ``grid`` is ``(lowest, highest)`` rate, rounded to quarter-decades; ``schedule`` is the
    lrtune preset training runs under (``None``: constant rate; else the rate is its peak).
    """

    name: str
    data: str
    model: str
    optimizer: str
    epochs: int
    grid: tuple[float, float]
    batch_size: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str | None = None
    metric: str = "acc"  # "acc" (higher is better) or "loss" (lower is better)
    note: str = ""

    def grid_lrs(self) -> list[float]:
        from common import quarter_decades  # the same grid rule as section 1's suite

        return quarter_decades(*self.grid)


TASKS: dict[str, SuiteTask] = {
    t.name: t
    for t in [
        SuiteTask("charlm_adamw", "docstrings", "charformer", "adamw", epochs=2,
                  grid=(1e-4, 0.1), batch_size=32, weight_decay=0.01, metric="loss",
                  note="2-layer causal transformer d=48, context 32, AdamW (wd 0.01), "
                       "stdlib docstrings"),
        SuiteTask("finetune_digits", "digits_5to9_few", "pretrained_mlp", "sgd", epochs=30,
                  grid=(1e-4, 1.0), batch_size=10, momentum=0.9,
                  note="MLP 128-64 pretrained on digits 0-4, fine-tuned whole on 10 images "
                       "per class of 5-9, SGD momentum 0.9"),
        SuiteTask("onecycle_cnn_bn", "digits", "cnn_bn", "sgd", epochs=8, grid=(1e-3, 3.2),
                  momentum=0.9, schedule="one_cycle",
                  note="CNN 16-32 with BatchNorm, SGD momentum 0.9, one-cycle (peak = rate)"),
        SuiteTask("slow_tanh_deep", "digits", "tanh_deep", "sgd", epochs=40, grid=(1e-3, 3.2),
                  momentum=0.9, note="8 x 32 tanh MLP, SGD momentum 0.9: a plateau"),
        SuiteTask("cliff_linear_sgd", "illcond", "linear", "sgd", epochs=5, grid=(1e-3, 3.2),
                  batch_size=64, metric="loss",
                  note="linear least squares, ill-conditioned inputs, plain SGD"),
        # added in the fifth session, to measure the confirmation's bracket under a schedule
        SuiteTask("onecycle_mlp_sgd", "digits", "mlp", "sgd", epochs=6, grid=(1e-3, 3.2),
                  momentum=0.9, schedule="one_cycle",
                  note="digits MLP 64-300-100-10, SGD momentum 0.9, one-cycle (peak = rate)"),
        SuiteTask("cosine_charlm_adamw", "docstrings", "charformer", "adamw", epochs=2,
                  grid=(3.2e-4, 0.32), weight_decay=0.01, schedule="warmup_cosine",
                  metric="loss",
                  note="charlm_adamw's transformer and data under warmup_cosine (peak = rate)"),
    ]
}

# -- data ----------------------------------------------------------------------------------

# a fixed list: the text is the same on every machine with Python 3.11
DOC_MODULES = ("abc", "argparse", "bisect", "calendar", "collections", "contextlib", "copy",
               "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch",
               "fractions", "functools", "glob", "heapq", "inspect", "itertools", "json",
               "logging", "os", "pathlib", "pprint", "queue", "random", "re", "shutil",
               "statistics", "string", "subprocess", "tempfile", "textwrap", "threading",
               "typing", "unittest", "zipfile")
CONTEXT = 32


@cache
def docstring_text() -> str:
    """Module docstrings and the docstrings of their own public members, in sorted order,
    restricted to printable ASCII (others become ``?``)."""
    import importlib

    parts = []
    for name in DOC_MODULES:
        mod = importlib.import_module(name)
        parts.append(inspect.cleandoc(mod.__doc__ or ""))
        for attr in sorted(a for a in vars(mod) if not a.startswith("_")):
            obj = getattr(mod, attr)
            if getattr(obj, "__module__", None) != name or not (
                    inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            parts.append(inspect.cleandoc(obj.__doc__ or ""))
    text = "\n\n".join(p for p in parts if p)
    return "".join(c if (32 <= ord(c) < 127 or c == "\n") else "?" for c in text)


VOCAB = ["\n"] + [chr(i) for i in range(32, 127)]  # 96 symbols


def _char_windows(n_train: int = 2048, n_eval: int = 512):
    """Train windows from the first 80 % of the text, valid and test from two later 10 %
    slices, at offsets drawn with seed 0; ``X`` the first CONTEXT chars, ``y`` shifted by 1."""
    text = docstring_text()
    ids = torch.tensor([VOCAB.index(c) for c in text], dtype=torch.long)
    n = len(ids)
    gen = torch.Generator().manual_seed(0)
    cuts = [(0, int(0.8 * n), n_train), (int(0.8 * n), int(0.9 * n), n_eval),
            (int(0.9 * n), n, n_eval)]
    out = []
    for lo, hi, count in cuts:
        starts = torch.randint(lo, hi - CONTEXT - 1, (count,), generator=gen)
        win = torch.stack([ids[s:s + CONTEXT + 1] for s in starts.tolist()])
        out.append((win[:, :-1].contiguous(), win[:, 1:].contiguous()))
    return tuple(out)


def _digits_few(per_class: int = 10, valid_per_class: int = 10):
    """Digits 5-9 relabelled 0-4: ``per_class`` training and ``valid_per_class`` validation
    images per class (drawn with seed 0 from the digits train split), every other 5-9 image
    of the dataset is the test set."""
    s = load_dataset("digits", seed=0)
    X = torch.cat([s.train[0], s.valid[0], s.test[0]])
    y = torch.cat([s.train[1], s.valid[1], s.test[1]])
    gen = torch.Generator().manual_seed(0)
    n_tr = len(s.train[1])
    train_idx, valid_idx = [], []
    for c in range(5, 10):
        pool = torch.nonzero(y[:n_tr] == c).flatten()
        pool = pool[torch.randperm(len(pool), generator=gen)]
        train_idx.append(pool[:per_class])
        valid_idx.append(pool[per_class:per_class + valid_per_class])
    tr, va = torch.cat(train_idx), torch.cat(valid_idx)
    used = torch.zeros(len(y), dtype=torch.bool)
    used[tr] = used[va] = True
    te = torch.nonzero(~used & (y >= 5)).flatten()
    return tuple((X[i], y[i] - 5) for i in (tr, va, te))


def _illcond(n: int = 3000, d: int = 20):
    """Least squares with input scales spread over 1.5 decades (seed 0): ``y = X w + noise``
    (noise 0.1, target standardised on train), 60/20/20."""
    rng = np.random.default_rng(0)
    scales = np.logspace(0, -1.5, d)
    X = rng.standard_normal((n, d)) * scales
    w = rng.standard_normal(d) / scales  # every direction matters
    y = X @ w + 0.1 * rng.standard_normal(n)
    y = (y - y[:int(0.6 * n)].mean()) / y[:int(0.6 * n)].std()
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None]
    a, b = int(0.6 * n), int(0.8 * n)
    return (X[:a], y[:a]), (X[a:b], y[a:b]), (X[b:], y[b:])


@cache
def splits(data: str):
    """``(train, valid, test)`` of a task's data."""
    if data == "docstrings":
        return _char_windows()
    if data == "digits_5to9_few":
        return _digits_few()
    if data == "illcond":
        return _illcond()
    s = load_dataset(data, seed=0)
    return s.train, s.valid, s.test


# -- models --------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm transformer block, causal self-attention written out (vmap-friendly)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharFormer(nn.Module):
    """A tiny GPT: token and position embeddings, ``layers`` blocks, final norm, head."""

    def __init__(self, vocab: int = len(VOCAB), d: int = 48, layers: int = 2, heads: int = 4,
                 context: int = CONTEXT) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(0.02 * torch.randn(context, d))
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos[: idx.shape[1]]
        return self.head(self.ln(self.blocks(x)))


def lm_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy of ``(B, T, V)`` logits against ``(B, T)`` ids."""
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def cnn_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def tanh_deep(depth: int = 8, width: int = 32) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(64, width), nn.Tanh()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


PRETRAIN_SEED = 0


@cache
def pretrained_state() -> dict[str, torch.Tensor]:
    """MLP 64-128-64-5 trained on every digits-train image of classes 0-4 (Adam 1e-3,
    batch 32, 30 epochs, seed 0): deterministic, about a second."""
    s = load_dataset("digits", seed=0)
    keep = s.train[1] < 5
    X, y = s.train[0][keep], s.train[1][keep]
    torch.manual_seed(PRETRAIN_SEED)
    net = mlp(64, 5, (128, 64))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(30):
        for xb, yb in as_batches((X, y), 32, shuffle=True, seed=PRETRAIN_SEED):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(xb), yb).backward()
            opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def pretrained_mlp() -> nn.Module:
    """The pretrained MLP with a new 5-class head (initialised from torch's global RNG)."""
    net = mlp(64, 5, (128, 64))
    head = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)][-1]
    body = {k: v for k, v in pretrained_state().items() if not k.startswith(head + ".")}
    missing = net.load_state_dict(body, strict=False).missing_keys
    assert sorted(missing) == [f"{head}.bias", f"{head}.weight"], missing
    return net


MODELS = {"charformer": CharFormer, "pretrained_mlp": pretrained_mlp, "cnn_bn": cnn_bn,
          "tanh_deep": tanh_deep, "linear": lambda: nn.Linear(20, 1), "mlp": lambda: mlp(64, 10)}


def loss_of(task: SuiteTask):
    if task.model == "charformer":
        return lm_loss
    return nn.MSELoss() if task.metric == "loss" else nn.CrossEntropyLoss()


def build(task: SuiteTask, seed: int, lr: float):
    """Model (initialised from ``seed``), optimizer at ``lr`` and loss of ``task``."""
    if task.model == "pretrained_mlp":
        pretrained_state()  # its own seed; must not depend on the run's
    torch.manual_seed(seed)
    model = MODELS[task.model]()
    if task.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=task.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=task.momentum,
                              weight_decay=task.weight_decay)
    return model, opt, loss_of(task)


def steps_per_epoch(task: SuiteTask) -> int:
    return -(-len(splits(task.data)[0][1]) // task.batch_size)


def run_steps(task: SuiteTask) -> int:
    return task.epochs * steps_per_epoch(task)


# -- training and scoring ------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loss_fn, data, metric: str) -> dict[str, float]:
    """Loss (and accuracy) of ``model`` on ``data``, in chunks of 512."""
    was = model.training
    model.eval()
    X, y = data
    total, hits = 0.0, 0
    for i in range(0, len(y), 512):
        out = model(X[i:i + 512])
        total += float(loss_fn(out, y[i:i + 512])) * len(y[i:i + 512])
        if metric == "acc":
            ok = torch.isfinite(out).all(dim=1) & (out.argmax(dim=1) == y[i:i + 512])
            hits += int(ok.sum())
    model.train(was)
    loss = total / len(y)
    res = {"loss": loss if math.isfinite(loss) else math.inf}
    if metric == "acc":
        res["acc"] = hits / len(y)
    return res


EARLY_WINDOW = 50  # the training loss is recorded as means over windows of this many steps
EARLY_STEPS = 600


def train_run(task: SuiteTask, lr: float, seed: int) -> dict:
    """Train ``task`` at ``lr`` (the peak, under a schedule) for its budget; score the final
    weights on test (and valid). A non-finite training loss stops the run (diverged: chance
    accuracy, infinite loss). Also returns the mean training loss of each window of
    EARLY_WINDOW steps over the first EARLY_STEPS steps (the plateau check)."""
    train, valid, test = splits(task.data)
    model, opt, loss_fn = build(task, seed, lr)
    batches = as_batches(train, task.batch_size, shuffle=True, seed=seed)
    total = task.epochs * len(batches)
    sched = (None if task.schedule is None
             else named_schedule(task.schedule, lr=lr, total_steps=total)["lr"])
    early: list[float] = []
    window: list[float] = []
    diverged, step = False, 0
    t0 = time.perf_counter()
    model.train()
    for _ in range(task.epochs):
        for x, y in batches:
            if sched is not None:
                for group in opt.param_groups:
                    group["lr"] = sched(step)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                diverged = True
                break
            loss.backward()
            opt.step()
            step += 1
            if step <= EARLY_STEPS:
                window.append(float(loss.detach()))
                if len(window) == EARLY_WINDOW:
                    early.append(float(np.mean(window)))
                    window = []
        if diverged:
            break
    seconds = time.perf_counter() - t0
    scores = {}
    for part, data in (("test", test), ("valid", valid)):
        m = evaluate(model, loss_fn, data, task.metric)
        if diverged:
            m["loss"] = math.inf
            if "acc" in m:
                m["acc"] = min(m["acc"], 1.0 / n_classes(task))
        scores.update({f"{part}_{k}": v for k, v in m.items()})
    return {"lr": lr, "seed": seed, "diverged": diverged, "steps": step, "seconds": seconds,
            "early_loss": early, **scores}


def n_classes(task: SuiteTask) -> int:
    return int(splits(task.data)[0][1].max()) + 1


def score_key(task: SuiteTask) -> str:
    """The grid's and the benchmark's score: test accuracy or test loss."""
    return f"test_{task.metric}"


def task_dict(task: SuiteTask) -> dict:
    train, valid, test = splits(task.data)
    return {**asdict(task), "grid_lrs": task.grid_lrs(), "steps_per_run": run_steps(task),
            "n_train": len(train[1]), "n_valid": len(valid[1]), "n_test": len(test[1])}
