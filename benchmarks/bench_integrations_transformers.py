"""The range test's overhead through each framework integration against the framework's own
training loop over the same number of optimizer steps, paired in one process.

Every repeat times both sides back to back, in an order that alternates between repeats; the
ratio reported is the median over repeats of the per-repeat ratio of time per optimizer step
(interquartile range as the noise), for wall-clock and for this process's CPU time (steadier on
a shared CPU: waiting for a core is not counted). One section per framework; ``--only NAME``
runs one.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_integrations.py
    ... bench_integrations.py --only transformers --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded

import numpy as np
import torch
from common import machine

RESULTS = Path(__file__).resolve().parent / "results"


def paired(run_a: Callable[[], int], run_b: Callable[[], int], repeats: int) -> dict:
    """Time ``run_a`` and ``run_b`` (each returns its optimizer steps) ``repeats`` times."""
    run_a(), run_b()  # warm-up: allocator, lazy imports
    times: dict[str, dict[str, list[float]]] = {"a": {"wall": [], "cpu": [], "steps": []},
                                                 "b": {"wall": [], "cpu": [], "steps": []}}
    for r in range(repeats):
        for side, run in ((("a", run_a), ("b", run_b)) if r % 2 == 0
                          else (("b", run_b), ("a", run_a))):
            t0, c0 = time.perf_counter(), time.process_time()
            steps = run()
            times[side]["wall"].append(time.perf_counter() - t0)
            times[side]["cpu"].append(time.process_time() - c0)
            times[side]["steps"].append(steps)
    out: dict = {"raw": times}
    for clock in ("wall", "cpu"):
        per_step = {s: np.array(times[s][clock]) / np.array(times[s]["steps"]) for s in "ab"}
        ratios = per_step["a"] / per_step["b"]
        q1, med, q3 = np.percentile(ratios, [25, 50, 75])
        out[clock] = {"a_ms_per_step": 1e3 * float(np.median(per_step["a"])),
                      "b_ms_per_step": 1e3 * float(np.median(per_step["b"])),
                      "ratio": float(med), "q1": float(q1), "q3": float(q3)}
    return out


# -- Hugging Face Transformers -----------------------------------------------------------------
def bench_transformers(repeats: int, num_iters: int = 100) -> dict:
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

    steps = {"n": num_iters}

    def range_test() -> int:
        result = find_lr(trainer(), start_lr=1e-6, end_lr=1e-2, num_iters=num_iters)
        steps["n"] = len(result.train_losses)  # HF's side then runs exactly as many steps
        return steps["n"]

    def hf_train() -> int:
        t = trainer(max_steps=steps["n"])
        t.train()
        return t.state.global_step

    out = paired(range_test, hf_train, repeats)
    out.update(model="BertForSequenceClassification(hidden 64, 2 layers)", batch_size=16,
               seq_len=32, num_iters=num_iters, transformers=transformers.__version__,
               note="a: lrtune find_lr(trainer) incl. optimizer creation, snapshot, restore; "
                    "b: trainer.train(max_steps=same steps); Trainer construction not timed "
                    "on either side")
    return out


BENCHES: dict[str, Callable[[int], dict]] = {
    "transformers": bench_transformers,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(BENCHES), help="run one framework's section")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "integrations.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    out["machine"] = machine()
    print("| framework | clock | ours ms/step | framework's loop ms/step | ratio (IQR) |")
    print("|---|---|---|---|---|")
    for name, bench in BENCHES.items():
        if args.only and name != args.only:
            continue
        res = out[name] = bench(args.repeats)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
        for clock in ("wall", "cpu"):
            c = res[clock]
            print(f"| {name} | {clock} | {c['a_ms_per_step']:.1f} | {c['b_ms_per_step']:.1f} | "
                  f"{c['ratio']:.3f} ({c['q1']:.3f}-{c['q3']:.3f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
