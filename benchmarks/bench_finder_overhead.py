"""Overhead of ``find_lr`` against the hand-written range-test loop a user would write.

Both do the same ``N`` optimizer steps on the same batches: set the rate, zero the gradients,
forward, backward, step, record ``loss.item()``. The sweep's range is chosen so that it never
stops early (checked), so the work is identical. ``find_lr`` runs with ``restore=True``; the
hand loop is timed bare (the strict comparison) and with the state save/restore a user needs
to re-train from the same weights (``copy.deepcopy`` of both state dicts, then load them).

Measurements are paired (``common.paired``, after one warm-up run of each variant): every
repeat times all variants back to back, in an order that rotates between repeats; the ratio
reported is the median over repeats of the per-repeat ratio, with its interquartile range as
the noise. Both wall-clock time and this process's CPU
time (``time.process_time``) are recorded: on a CPU shared with other jobs the CPU time is the
steadier of the two, since time spent waiting for a core is not counted.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_finder_overhead.py
    ... bench_finder_overhead.py --profile   # where find_lr's time goes (cProfile)
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from common import machine, paired, ratio, splits_of

from lrtune.data.batching import TensorBatches
from lrtune.finder import find_lr, lr_at
from lrtune.models import mlp

RESULTS = Path(__file__).resolve().parent / "results"
# start/end chosen so that plain SGD never diverges within the sweep: equal work on both sides
SWEEP = dict(start_lr=1e-5, end_lr=0.1, mode="exp")
CASES = {
    "digits_mlp_b32": dict(hidden=(300, 100), batch_size=32),
    "digits_wide_b256": dict(hidden=(512, 512), batch_size=256),
}


def setup(case: dict, seed: int = 0):
    splits = splits_of("digits")
    torch.manual_seed(seed)
    model = mlp(splits.in_features, splits.n_outputs, case["hidden"])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    return model, optimizer, torch.nn.CrossEntropyLoss(), splits.train


def hand_loop(model, optimizer, loss_fn, data, *, batch_size, num_iters, restore):
    """What a user writes for a range test (exponential sweep, recorded losses)."""
    if restore:
        saved = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
    batches = TensorBatches(*data, batch_size, shuffle=True, seed=0)
    it = iter(batches)
    lrs, losses = [], []
    model.train()
    for step in range(num_iters):
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        lr = lr_at(step, num_iters=num_iters, **SWEEP)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        lrs.append(lr)
        losses.append(loss.item())
    if restore:
        model.load_state_dict(saved[0])
        optimizer.load_state_dict(saved[1])
    return lrs, losses


def run_variant(name: str, model, optimizer, loss_fn, data, *, batch_size: int,
                num_iters: int) -> None:
    """One run of variant ``name`` (what is timed)."""
    if name.startswith("find_lr"):
        res = find_lr(model, optimizer, loss_fn, data, batch_size=batch_size, num_iters=num_iters,
                      restore=name == "find_lr", seed=0, **SWEEP)
        if len(res.train_losses) != num_iters:
            raise RuntimeError(f"the sweep stopped early ({res.stop_reason}): unequal work")
    else:
        hand_loop(model, optimizer, loss_fn, data, batch_size=batch_size, num_iters=num_iters,
                  restore=name == "hand+restore")


VARIANTS = ("find_lr", "hand", "hand+restore", "find_lr(restore=False)")


def measure(case: dict, num_iters: int, repeats: int) -> dict:
    fresh: list = []  # the model, optimizer, loss and data of the next run (set up untimed)

    def reset() -> None:
        fresh[:] = setup(case)

    def variant(name: str):
        return lambda: run_variant(name, *fresh, batch_size=case["batch_size"],
                                   num_iters=num_iters)

    times = paired({v: variant(v) for v in VARIANTS}, repeats, reset)
    pairs = [("find_lr", "hand"), ("find_lr", "hand+restore"),
             ("find_lr(restore=False)", "hand")]
    return {
        "wall": times["wall"], "cpu": times["cpu"],
        "median_ms": {v: 1e3 * float(np.median(t)) for v, t in times["wall"].items()},
        "median_cpu_ms": times["median_cpu_ms"],
        "wall_ratios": {f"{a}/{b}": ratio(times["wall"], a, b) for a, b in pairs},
        "cpu_ratios": {f"{a}/{b}": ratio(times["cpu"], a, b) for a, b in pairs},
    }


def profile(case: dict, num_iters: int) -> str:
    model, optimizer, loss_fn, data = setup(case)
    prof = cProfile.Profile()
    prof.enable()
    find_lr(model, optimizer, loss_fn, data, batch_size=case["batch_size"],
            num_iters=num_iters, seed=0, **SWEEP)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-iters", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "finder_overhead.json")
    args = parser.parse_args(argv)
    if args.profile:
        for name in args.cases.split(","):
            print(f"## {name}\n{profile(CASES[name], args.num_iters)}")
        return 0
    out = {"machine": machine(), "num_iters": args.num_iters, "repeats": args.repeats,
           "sweep": SWEEP, "cases": {}}
    for name in args.cases.split(","):
        out["cases"][name] = {**CASES[name], **measure(CASES[name], args.num_iters,
                                                         args.repeats)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(f"\nN = {args.num_iters} steps, {args.repeats} paired repeats, order rotated. "
          "Ratio: median over repeats (interquartile range).\n")
    print("| case | clock | find_lr ms | hand ms | find_lr / hand | find_lr / hand+restore "
          "| find_lr(restore=False) / hand |")
    print("|---|---|---|---|---|---|---|")
    for name, c in out["cases"].items():
        for clock, ms, ratios in (("wall", c["median_ms"], c["wall_ratios"]),
                                  ("cpu", c["median_cpu_ms"], c["cpu_ratios"])):
            cells = [f"{s['median']:.3f} ({s['q1']:.3f}-{s['q3']:.3f})" for s in ratios.values()]
            print(f"| {name} | {clock} | {ms['find_lr']:.0f} | {ms['hand']:.0f} | "
                  + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
