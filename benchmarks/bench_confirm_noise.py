"""How stable is the sweep's choice under validation noise, with tiny data? Old rule vs others.

Digits (scikit-learn, 1 797 images 8x8, pixels / 16): per data seed, a stratified draw of
``--train-per-class`` training and ``--valid-per-class`` validation images per class; every
other image is the test set (~1 700). Per data seed and per order seed (init, batch order,
dropout: the sweep's ``seed``), one ``lrtune.sweep`` of K = 8 rates (the MLP 300-100, SGD
momentum 0.9 or ``--optimizer adam``, batch 10, no halving) keeps every copy's final weights,
which are scored on the test set (with ``--halving on`` the rules choose from a second sweep
with halving, whose surviving copies end with the same weights). Each choice rule below is
then applied to the same recorded validation curves:

- ``final``: the previous rule, the final validation accuracy, lowest rate within one paired
  standard error of the best;
- ``last3`` / ``lastq``: the mean validation accuracy of the last 3 evaluations / the last
  quarter of them, same tolerance, lowest within;
- ``lastq_loss``: the mean validation *loss* over the last quarter, lowest rate within 1 %;
- ``lastq_max``: the best mean of the last quarter, no preference for low rates;
- ``lastq_acc_loss``: among the rates within noise of the best ``lastq`` accuracy, the one
  with the lowest ``lastq`` loss.

The sweeps run with ``choice="final"`` (so their tolerance is the paired standard error of the
accuracy, and ``final`` is the sweep's own choice); ``lastq_loss`` is the library's
``choice="window"`` (the same functions, ``window_scores`` and ``tolerances``).

Reported per rule: the regret (test accuracy of the best rate of that sweep minus that of the
chosen rate; mean, 90th percentile, max, in points), and the instability: how often two order
seeds of the same data draw choose different rates, and the mean |log2| ratio between them.

Usage (repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_confirm_noise.py
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch
from torch import nn

from lrtune.confirmation import sweep
from lrtune.confirmation.result import choose, tolerances, window_scores
from lrtune.models import mlp

RESULTS = Path(__file__).resolve().parent / "results"
BASE_LR = {"sgd": 0.003, "adam": 0.0001}  # 8 rates x1.9 apart from here


def draw(seed: int, n_train: int, n_valid: int):
    """Stratified train / valid draw per class; the rest is the test set."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y.numpy() == c))
        tr += idx[:n_train].tolist()
        va += idx[n_train:n_train + n_valid].tolist()
    rest = sorted(set(range(len(y))) - set(tr) - set(va))
    return (X[tr], y[tr]), (X[va], y[va]), (X[rest], y[rest])


def window_mean(curve: list, n: int):
    tail = [v for v in curve[-n:] if v is not None]
    return None if len(tail) < n else float(np.mean(tail))


def rules(res) -> dict[str, int | None]:
    """Every rule's chosen index on one sweep's recorded curves."""
    points = len(res.steps)
    q = max(1, points // 4)
    final = res.final_metric
    out = {"final": res.chosen_index}  # the sweep ran with choice="final"
    for name, n in (("last3", min(3, points)), ("lastq", q)):
        scores = [None if f is None else window_mean(c, n)
                  for f, c in zip(final, res.valid_metric, strict=True)]
        out[name] = choose(res.lrs, scores, mode="max", tolerance=res.tolerance)[0]
    losses = window_scores(res.valid_loss, final)[0]  # the library's choice="window"
    tol = tolerances("loss", losses, None, res.settings["n_valid"])
    out["lastq_loss"] = choose(res.lrs, losses, mode="min", tolerance=tol)[0]
    scores = [None if f is None else window_mean(c, q)
              for f, c in zip(final, res.valid_metric, strict=True)]
    out["lastq_max"] = choose(res.lrs, scores, mode="max", tolerance=0.0)[0]
    best = max(s for s in scores if s is not None)
    tols = res.tolerance if isinstance(res.tolerance, list) else [res.tolerance] * len(scores)
    near = [i for i, s in enumerate(scores) if s is not None and best - s <= (tols[i] or 0.0)]
    out["lastq_acc_loss"] = min(near, key=lambda i: losses[i]) if near else None
    return out


@torch.no_grad()
def test_accuracy(weights: dict, test) -> list[float]:
    net = mlp(64, 10)
    out = []
    for i in sorted(weights):
        net.load_state_dict(weights[i])
        net.eval()
        out.append(float((net(test[0]).argmax(1) == test[1]).float().mean()))
    return out


def run(args) -> dict:
    torch.set_num_threads(1)
    lrs = [float(f"{BASE_LR[args.optimizer] * 1.9**i:.3g}") for i in range(8)]
    records = []
    for d in range(args.data_seeds):
        train, valid, test = draw(d, args.train_per_class, args.valid_per_class)
        for o in range(args.order_seeds):
            runs = [sweep(lambda: mlp(64, 10), args.optimizer, nn.CrossEntropyLoss(), train,
                          valid, lrs=lrs, epochs=args.epochs, batch_size=10, seed=o,
                          opt_kwargs={"momentum": 0.9}, keep_weights=True, halving=halving,
                          choice="final")
                    for halving in ([False, True] if args.halving == "on" else [False])]
            acc = test_accuracy(runs[0].weights, test)  # every rate trained to the end
            res = runs[-1]  # the choices: of the halving sweep with --halving on (its
            # survivors' weights are those of the full sweep, tests/confirmation/test_halving)
            records.append({"data": d, "order": o, "test_acc": acc,
                            "choices": rules(res), "valid_final": res.final_metric,
                            "stopped_step": res.stopped_step,
                            "compute_fraction": res.compute_fraction})
        print(f"data seed {d}: " + "; ".join(
            f"{r['order']}: " + " ".join(f"{k}={v}" for k, v in r["choices"].items())
            for r in records if r["data"] == d), flush=True)
    summary = {}
    for rule in records[0]["choices"]:
        regrets = []
        for r in records:
            i = r["choices"][rule]
            regrets.append(100 * (max(r["test_acc"]) - (r["test_acc"][i] if i is not None
                                                          else 0.1)))
        changes, spread = [], []
        for d in range(args.data_seeds):
            picks = [r["choices"][rule] for r in records if r["data"] == d]
            for a, b in itertools.combinations(picks, 2):
                changes.append(a != b)
                spread.append(abs(np.log2(lrs[a] / lrs[b])))
        summary[rule] = {"regret_mean_pt": statistics.mean(regrets),
                         "regret_p90_pt": float(np.percentile(regrets, 90)),
                         "regret_max_pt": max(regrets),
                         "choice_changes": statistics.mean(changes),
                         "mean_abs_log2_ratio": statistics.mean(spread)}
    summary["compute_fraction_mean"] = statistics.mean(r["compute_fraction"] for r in records)
    return {"records": records, "summary": summary, "lrs": lrs, "args": vars(args)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-seeds", type=int, default=8)
    parser.add_argument("--order-seeds", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=5)
    parser.add_argument("--valid-per-class", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--optimizer", choices=sorted(BASE_LR), default="sgd",
                        help="sgd (momentum 0.9) or adam (beta1 0.9)")
    parser.add_argument("--halving", choices=("off", "on"), default="off",
                        help="choose from sweeps with successive halving (each rate's test "
                             "accuracy still from a sweep without)")
    parser.add_argument("--suffix", default="")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = run(args)
    out["seconds"] = time.perf_counter() - t0
    out["meta"] = {"torch": torch.__version__, "load": os.getloadavg(),
                   "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"confirm_noise{args.suffix}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"{'rule':12s} {'regret mean':>12s} {'p90':>6s} {'max':>6s} {'changes':>8s} "
          f"{'|log2|':>7s}")
    for rule, s in out["summary"].items():
        if not isinstance(s, dict):
            print(f"{rule}: {s:.3f}")
            continue
        print(f"{rule:12s} {s['regret_mean_pt']:12.2f} {s['regret_p90_pt']:6.2f} "
              f"{s['regret_max_pt']:6.2f} {s['choice_changes']:8.2f} "
              f"{s['mean_abs_log2_ratio']:7.2f}")
    print(f"{out['seconds']:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
