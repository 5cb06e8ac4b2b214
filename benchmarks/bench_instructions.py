"""Overhead counted in CPU instructions (valgrind's callgrind): a measure no other job can disturb.

Timing ratios on a shared 2-core VM scatter by ±30 % per pair, so a 3–5 % overhead target takes
hundreds of pairs to resolve. Instructions executed are deterministic: the same program on the
same inputs runs the same instructions whatever else the machine does. This counts them for
the two overhead targets of the step protocol (issue 11):

- ``trainer``: ``lrtune.Trainer.fit`` against the hand-written loop of ``bench_trainer.py``
  (digits MLP, SGD momentum, batch 32, validation loss + accuracy every epoch), 3 epochs a run;
- ``finder``: ``lrtune.find_lr(restore=True)`` against the hand-written range test of
  ``bench_finder_overhead.py`` (300 steps, batch 32; the hand loop bare, the strict comparison).

Each variant runs in its own process under callgrind twice, with ``--runs 1`` and ``--runs
1 + extra`` timed runs after one warm-up; the difference of the two totals is what ``extra`` runs
execute (imports, set-up and the warm-up cancel out exactly). Ratio = lrtune's instructions /
the hand loop's. Instructions are not time (a cache miss costs more than an add), but Python
and dispatch overhead, which is what a wrapper adds, shows up in them one for one.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_instructions.py [--extra 3]

Takes ~15 min on 2 cores (valgrind runs the interpreter ~50x slower; the torch import dominates).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PAIRS = {"trainer": ("trainer", "hand"), "finder": ("find_lr", "hand")}


def child(comparison: str, variant: str, runs: int, built: int) -> None:
    """One warm-up run, then ``runs`` runs of ``variant`` (what callgrind counts). ``built``
    set-ups are made either way, so that their cost cancels in the difference."""
    sys.path.insert(0, str(HERE))
    import torch

    torch.set_num_threads(1)
    if comparison == "trainer":
        import bench_trainer as bench

        fn = bench.trainer if variant == "trainer" else bench.hand_written
        made = [bench.setup() for _ in range(built)]  # all built before any run
        for setup in made[:runs + 1]:
            fn(*setup, 3, 32)
    else:
        import bench_finder_overhead as bench

        case = bench.CASES["digits_mlp_b32"]
        made = [bench.setup(case) for _ in range(built)]
        for setup in made[:runs + 1]:
            bench.run_variant(variant, *setup, batch_size=case["batch_size"], num_iters=300)


def count(comparison: str, variant: str, runs: int, built: int) -> int:
    """Instructions executed by a child process with ``runs`` runs (callgrind's total)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--child", comparison, variant, str(runs), str(built)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        found = re.search(r"^summary:\s+(\d+)", out.read_text(), re.M)
        if found is None:
            raise RuntimeError(f"no instruction total in callgrind's output for {variant}")
        return int(found.group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", type=int, default=3, help="runs counted (the difference)")
    parser.add_argument("--comparisons", default=",".join(PAIRS))
    parser.add_argument("--child", nargs=4, metavar=("COMPARISON", "VARIANT", "RUNS", "BUILT"))
    parser.add_argument("--out", type=Path, default=RESULTS / "instructions.json")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), int(args.child[3]))
        return 0
    jobs = [(c, v, n) for c in args.comparisons.split(",") for v in PAIRS[c]
            for n in (1, 1 + args.extra)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core
        counted = pool.map(lambda job: count(*job, built=2 + args.extra), jobs)
        totals = dict(zip(jobs, counted, strict=True))
    sys.path.insert(0, str(HERE))
    from common import machine

    out = {"machine": machine(), "extra_runs": args.extra, "comparisons": {}}
    for comparison in args.comparisons.split(","):
        per_variant = {v: totals[(comparison, v, 1 + args.extra)] - totals[(comparison, v, 1)]
                       for v in PAIRS[comparison]}
        lrtune_side, hand = PAIRS[comparison]
        out["comparisons"][comparison] = {
            "instructions": per_variant, "ratio": per_variant[lrtune_side] / per_variant[hand]}
        print(f"{comparison}: {lrtune_side} {per_variant[lrtune_side]:,} / hand "
              f"{per_variant[hand]:,} instructions over {args.extra} runs = "
              f"{per_variant[lrtune_side] / per_variant[hand]:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
