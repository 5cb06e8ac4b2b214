"""Trainer epoch time against a hand-written PyTorch loop (and skorch, when installed).

Same model, data, optimizer and batch size; each repeat runs every contender once in an order
that alternates (ABC CBA ...), so a slow moment of the machine hits all of them. Reported: the
median seconds per epoch of each contender, the median of the per-repeat ratios to the
hand-written loop and its bootstrap 95 % interval. A second copy of the hand-written loop
(``hand2``) is timed as a control: its ratio to the first copy is what the arrangement and the
machine alone produce, the resolution of every other ratio (``--no-control`` drops it).

    OMP_NUM_THREADS=1 python benchmarks/bench_trainer.py --repeats 15 --epochs 2 [--wall]

Timing is the process's CPU time by default (``time.process_time``; one thread), which other
jobs on a shared machine disturb far less than wall-clock time; ``--wall`` switches.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from common import median_interval
from torch import nn

from lrtune.data import load_dataset
from lrtune.data.batching import TensorBatches
from lrtune.models import mlp
from lrtune.training import Trainer

CLOCK = time.process_time  # CPU seconds of this process: robust to other jobs on a shared box


def setup(seed: int = 0):
    torch.manual_seed(seed)
    splits = load_dataset("digits", seed=seed)
    model = mlp(splits.in_features, splits.n_outputs)
    return splits, model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def hand_written(splits, model, opt, epochs: int, batch_size: int) -> float:
    """What one writes by hand: the loop, the epoch's mean loss, validation loss + accuracy."""
    loss_fn = nn.CrossEntropyLoss()
    batches = TensorBatches(*splits.train, batch_size, shuffle=True, seed=0)
    Xv, yv = splits.valid
    start = CLOCK()
    for _ in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
            count += len(y)
        model.eval()
        with torch.no_grad():
            v_loss = v_correct = 0.0
            for i in range(0, len(yv), batch_size):
                out = model(Xv[i : i + batch_size])
                v_loss += loss_fn(out, yv[i : i + batch_size]).item() * len(out)
                v_correct += (out.argmax(1) == yv[i : i + batch_size]).sum().item()
        _ = (total / count, v_loss / len(yv), v_correct / len(yv))
    return (CLOCK() - start) / epochs


def hand_written_again(splits, model, opt, epochs: int, batch_size: int) -> float:
    """The control: the same hand-written loop under another name and place in the order."""
    return hand_written(splits, model, opt, epochs, batch_size)


def trainer(splits, model, opt, epochs: int, batch_size: int) -> float:
    t = Trainer(model, opt, nn.CrossEntropyLoss(), metrics=["accuracy"], device="cpu", verbose=0)
    start = CLOCK()
    t.fit(splits.train, splits.valid, epochs=epochs, batch_size=batch_size)
    return (CLOCK() - start) / epochs


def skorch_net(splits, model, opt, epochs: int, batch_size: int) -> float:
    from skorch import NeuralNetClassifier
    from skorch.helper import predefined_split
    from torch.utils.data import TensorDataset

    net = NeuralNetClassifier(
        model, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.SGD, lr=0.05,
        optimizer__momentum=0.9, batch_size=batch_size, max_epochs=epochs,
        train_split=predefined_split(TensorDataset(*splits.valid)), iterator_train__shuffle=True,
        device="cpu", verbose=0,
    )
    start = CLOCK()
    net.fit(*splits.train)
    return (CLOCK() - start) / epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-skorch", action="store_true")
    p.add_argument("--no-control", action="store_true", help="do not time the hand2 control")
    p.add_argument("--json", default=None, help="also write the raw timings here")
    p.add_argument("--wall", action="store_true", help="time wall-clock seconds instead")
    args = p.parse_args()
    if args.wall:
        global CLOCK
        CLOCK = time.perf_counter

    contenders = {"hand": hand_written, "trainer": trainer}
    if not args.no_control:
        contenders["hand2"] = hand_written_again
    if not args.no_skorch:
        try:
            import skorch  # noqa: F401

            contenders["skorch"] = skorch_net
        except ImportError:
            print("skorch is not installed: skipped (pip install 'lrtune[skorch]')")
    for fn in contenders.values():  # warm-up: imports, allocator, first-call costs
        fn(*setup(), 1, args.batch_size)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(args.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(contenders[name](*setup(), args.epochs, args.batch_size))

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread(s); digits MLP 64-300-100-10, SGD momentum, "
          f"batch size {args.batch_size}, 1078 train / 359 valid images")
    print(f"{args.repeats} paired repeats x {args.epochs} epochs; median "
          f"{'wall' if args.wall else 'CPU'} time per epoch:")
    for name in names:
        print(f"  {name:<8} {statistics.median(times[name]) * 1e3:8.2f} ms")
    for name in names[1:]:
        ratios = [a / b for a, b in zip(times[name], times["hand"], strict=True)]
        low, high = median_interval(ratios)
        print(f"  {name} / hand: median ratio {statistics.median(ratios):.3f} "
              f"(95 % interval {low:.3f}-{high:.3f}; min {min(ratios):.3f}, "
              f"max {max(ratios):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "seconds_per_epoch": times}, f, indent=1)


if __name__ == "__main__":
    main()
