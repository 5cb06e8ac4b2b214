"""Benchmarks of ``lrtune.sweep``: speed (vectorised vs sequential) and quality (vs a grid).

speed:   K = 8 rates of the digits MLP (64-300-100-10, batch 32, SGD momentum 0.9), the same
         steps trained (a) by ``sweep`` with the batched-matmul engine (successive halving off, so
         every copy trains every step), (b) with the vmap engine,
         (c) as 8 separate plain torch loops, (d) by the minimal hand-written batched loop (the
         reference for what batching alone gives: stacked weights, ``baddbmm``, autograd,
         ``_foreach`` SGD momentum, nothing else), and (e) ``default``: ``sweep`` as a user
         calls it, successive halving on, which stops about 40 % of the copy-steps early
         (``copy_steps_fraction``): the time a user waits, not the engine's speed. Each variant
         runs in its own fresh subprocess (so its peak RSS is its own), paired and
         alternating, repeated; medians reported, and a bootstrap 95 % interval of each
         speed-up's median.
         Time: wall and CPU (process) time; the machine is shared, CPU time is the steadier.
         A per-phase breakdown of one step (forward, loss, backward, update, and the rest of
         a whole run per step: bookkeeping, batching, evaluation).
quality: the range-test suite (``benchmarks/common.py``): per task and seed, the default range
         test, then ``confirm_lr`` (K = 8 rates in the bracket, ``--fraction`` of the task's
         epochs), then a full training at the confirmed rate, scored against the grid's best
         (reused from ``results/finder_quality.json`` where present, else computed).

Usage (repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_sweep.py speed
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_sweep.py breakdown --rounds 3
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_sweep.py quality
    # the sweep's options: --halving {auto,on,off} --choice {window,final}; --tasks a,b
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCH_COMMON = Path(__file__).resolve().parent / "common.py"
GRID_JSON = BENCH_COMMON.parent / "results" / "finder_quality.json"
K = 8
LRS = [0.003 * 2**i for i in range(K)]


# -- speed -------------------------------------------------------------------------------------
def _digits():
    from lrtune.data import load_dataset

    s = load_dataset("digits", seed=0)
    return s.train, s.valid


def _mlp():
    from lrtune.models import mlp

    torch.manual_seed(0)
    return mlp(64, 10)


def _plain(model, train, valid, epochs):
    """8 separate runs, the loop a user writes: same batches, momentum SGD, eval per epoch."""
    import copy

    from lrtune.data.batching import as_batches

    loss_fn = nn.CrossEntropyLoss()
    for lr in LRS:
        torch.manual_seed(0)
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9)
        batches = as_batches(train, 32, shuffle=True, seed=0)
        for _ in range(epochs):
            m.train()
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(m(x), y)
                if not torch.isfinite(loss):
                    break
                loss.backward()
                opt.step()
            m.eval()
            with torch.no_grad():
                out = m(valid[0])
                loss_fn(out, valid[1]).item()
                (out.argmax(1) == valid[1]).float().mean().item()


def _stacked_mlp(model) -> list[torch.Tensor]:
    """Every Linear's weight and bias stacked for the K copies: (K, out, in), (K, 1, out)."""
    out = []
    for m in model:
        if isinstance(m, nn.Linear):
            out += [m.weight.detach().expand(K, *m.weight.shape).clone().requires_grad_(),
                    m.bias.detach().expand(K, 1, *m.bias.shape).clone().requires_grad_()]
    return out


def _minimal_logits(params, x):
    """(K, B, C) logits of the stacked ReLU MLP on a batch every copy shares."""
    h = x.flatten(1).expand(K, *x.flatten(1).shape)
    for i in range(0, len(params), 2):
        if i:
            h = torch.relu(h)
        h = torch.baddbmm(params[i + 1], h, params[i].transpose(1, 2))
    return h


def _minimal_losses(h, y):
    return nn.functional.cross_entropy(h.reshape(-1, h.shape[-1]), y.repeat(K),
                                       reduction="none").view(K, -1).mean(1)


def _minimal_update(params, grads, bufs, neg_lrs):
    with torch.no_grad():
        if not bufs:
            bufs.extend(g.clone() for g in grads)
        else:
            torch._foreach_mul_(bufs, 0.9)
            torch._foreach_add_(bufs, grads)
        torch._foreach_addcmul_(params, bufs, neg_lrs)


def _minimal(model, train, valid, epochs):
    """The simplest hand-written batched loop for the K copies: stacked weights, ``baddbmm``
    forward, cross-entropy over the flattened (K*B) rows, autograd, ``_foreach`` SGD momentum;
    a finite-loss check per step (as the plain loop) and an evaluation per epoch."""
    from lrtune.data.batching import as_batches

    torch.manual_seed(0)
    params = _stacked_mlp(model)
    neg_lrs = [-torch.tensor(LRS).view(K, *[1] * (p.dim() - 1)) for p in params]
    bufs: list[torch.Tensor] = []
    batches = as_batches(train, 32, shuffle=True, seed=0)
    for _ in range(epochs):
        for x, y in batches:
            losses = _minimal_losses(_minimal_logits(params, x), y)
            if not bool(torch.isfinite(losses).all()):
                return
            _minimal_update(params, torch.autograd.grad(losses.sum(), params), bufs, neg_lrs)
        with torch.no_grad():
            out = _minimal_logits(params, valid[0])
            _minimal_losses(out, valid[1]).tolist()
            (out.argmax(-1) == valid[1]).float().mean(1).tolist()


def _engine_loop(model, train, valid, epochs):
    """The batched engine without the sweep's loop: the same batches, steps and validation
    pass per epoch, but no per-copy loss/accuracy curves, divergence checks or set-up probe."""
    from lrtune.confirmation.core import _evaluate
    from lrtune.confirmation.engines import BatchedMLPEngine, Training
    from lrtune.confirmation.optim import optim_spec
    from lrtune.data.batching import as_batches

    torch.manual_seed(0)
    eng = BatchedMLPEngine(model, optim_spec("sgd", {"momentum": 0.9}), LRS,
                           training=Training(nn.CrossEntropyLoss()))
    batches = as_batches(train, 32, shuffle=True, seed=0)
    for _ in range(epochs):
        for batch in batches:
            losses, _, _ = eng.losses(batch, train=True)
            eng.update(losses, [True] * K)
        _evaluate(eng, [valid], accuracy=True)


def _runner(variant: str, model, train, valid):
    """``epochs -> None``: one whole run of ``variant`` (a sweep engine, plain, minimal, or
    ``engine``: the batched engine without the sweep's loop)."""
    if variant == "plain":
        return lambda epochs: _plain(model, train, valid, epochs)
    if variant == "minimal":
        return lambda epochs: _minimal(model, train, valid, epochs)
    if variant == "engine":
        return lambda epochs: _engine_loop(model, train, valid, epochs)
    from lrtune.confirmation import sweep

    if variant == "default":  # what a user gets from sweep(): fewer copy-steps, see docstring
        return lambda epochs: sweep(model, "sgd", nn.CrossEntropyLoss(), train, valid, lrs=LRS,
                                    epochs=epochs, opt_kwargs={"momentum": 0.9})
    # halving off: every copy trains every step, the work the other variants do (with the
    # default halving, about 40 % of the copy-steps would stop early and flatter the ratio)
    return lambda epochs: sweep(model, "sgd", nn.CrossEntropyLoss(), train, valid, lrs=LRS,
                                epochs=epochs, opt_kwargs={"momentum": 0.9}, engine=variant,
                                halving=False)


def speed_child(variant: str, epochs: int) -> dict:
    """One timed run of one variant, in this (fresh) process."""
    torch.set_num_threads(1)
    train, valid = _digits()
    model = _mlp()
    run = _runner(variant, model, train, valid)
    run(1)  # warm-up: one short run (allocator, kernels, lazy imports), not timed
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    w0, c0 = time.perf_counter(), time.process_time()
    result = run(epochs)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"variant": variant, "wall": wall, "cpu": cpu, "peak_rss_mib": rss1 / 1024,
            "peak_rss_growth_mib": (rss1 - rss0) / 1024,
            "copy_steps_fraction": getattr(result, "compute_fraction", 1.0)}


PHASES = ("forward", "loss", "backward", "update")


def _phase_times(step, steps: int, rounds: int) -> dict:
    """µs of CPU per step of each phase: ``step()`` yields after each phase; the round (of
    ``steps`` steps, after a warm-up) with the smallest total is kept (least disturbed)."""
    best = None
    for r in range(rounds + 1):
        t = dict.fromkeys(PHASES, 0.0)
        for _ in range(steps):
            c = time.process_time()
            for key in step():
                now = time.process_time()
                t[key] += now - c
                c = now
        if r and (best is None or sum(t.values()) < sum(best.values())):
            best = t
    return {k: 1e6 * v / steps for k, v in best.items()}


def breakdown(steps: int = 100, rounds: int = 5, epochs: int = 6) -> dict:
    """Per-phase CPU time of one step: the batched and vmap engines, the minimal loop and one
    plain step; ``rest``: a whole run's CPU time per step minus the phases (bookkeeping,
    batching, the per-epoch evaluation), from ``epochs``-epoch runs (least of ``rounds``)."""
    from lrtune.confirmation.engines import BatchedMLPEngine, Training, VmapEngine
    from lrtune.confirmation.losses import per_copy_loss
    from lrtune.confirmation.optim import optim_spec

    torch.set_num_threads(1)
    train, valid = _digits()
    x, y = train[0][:32], train[1][:32]
    spec = optim_spec("sgd", {"momentum": 0.9})
    loss_fn = nn.CrossEntropyLoss()
    out: dict = {}
    for cls in (BatchedMLPEngine, VmapEngine):
        eng = cls(_mlp(), spec, [1e-4] * K, training=Training(loss_fn))

        def engine_step(eng=eng):
            o = eng.forward(x, train=True)
            yield "forward"
            losses = per_copy_loss(loss_fn, o, y)
            yield "loss"
            grads = torch.autograd.grad(losses.sum(), eng.leaves)
            yield "backward"
            eng.opt.step(eng.leaves, grads)
            yield "update"

        whole = _phase_times(engine_step, steps, rounds)
        out[cls.name] = whole
    params = _stacked_mlp(_mlp())
    bufs: list[torch.Tensor] = []
    neg_lrs = [torch.full((K,) + (1,) * (p.dim() - 1), -1e-4) for p in params]

    def minimal_step():
        h = _minimal_logits(params, x)
        yield "forward"
        losses = _minimal_losses(h, y)
        yield "loss"
        grads = torch.autograd.grad(losses.sum(), params)
        yield "backward"
        _minimal_update(params, grads, bufs, neg_lrs)
        yield "update"

    out["minimal"] = _phase_times(minimal_step, steps, rounds)
    m = _mlp()
    opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)

    def plain_step():
        o = m(x)
        yield "forward"
        loss = loss_fn(o, y)
        yield "loss"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        yield "backward"
        opt.step()
        yield "update"

    plain = _phase_times(plain_step, steps, rounds)
    out["plain x1"] = plain
    out["plain x8"] = {k: K * v for k, v in plain.items()}
    n_steps = epochs * len(range(0, len(train[0]), 32))
    names = ("batched", "engine", "vmap", "minimal", "plain x8")
    runs = {name: _runner(name.split()[0], _mlp(), train, valid) for name in names}
    cpu: dict = {name: [] for name in names}
    for name in names:
        runs[name](1)
    for r in range(rounds):  # whole runs alternate, so load changes hit all alike
        for name in names if r % 2 == 0 else names[::-1]:
            c = time.process_time()
            runs[name](epochs)
            cpu[name].append(time.process_time() - c)
    out["engine"] = dict(out["batched"])  # the same engine and phases, without the sweep's loop
    for name in names:
        per_step = 1e6 * min(cpu[name]) / n_steps
        out[name]["run per step"] = per_step
        out[name]["run per step, median"] = 1e6 * statistics.median(cpu[name]) / n_steps
        out[name]["rest"] = per_step - sum(out[name][k] for k in PHASES)
    return out


def run_speed(args) -> dict:
    variants = ["batched", "vmap", "minimal", "plain", "default"]
    runs: list[dict] = []
    for r in range(args.repeats):
        order = variants if r % 2 == 0 else variants[::-1]  # alternate the order
        for v in order:
            text = subprocess.run(
                [sys.executable, __file__, "speed-child", v, str(args.epochs)],
                check=True, capture_output=True, text=True, env={**os.environ},
            ).stdout
            rec = json.loads(text.strip().splitlines()[-1])
            rec["repeat"] = r
            runs.append(rec)
            print(f"  repeat {r} {v:8s} wall {rec['wall']:.2f}s cpu {rec['cpu']:.2f}s "
                  f"peak RSS {rec['peak_rss_mib']:.0f} MiB", flush=True)
    summary = {}
    for v in variants:
        mine = [x for x in runs if x["variant"] == v]
        summary[v] = {key: statistics.median(x[key] for x in mine)
                      for key in ("wall", "cpu", "peak_rss_mib", "peak_rss_growth_mib",
                                  "copy_steps_fraction")}
    for v in ("batched", "vmap", "minimal", "default"):
        paired = [p["cpu"] / b["cpu"] for p, b in zip(
            [x for x in runs if x["variant"] == "plain"],
            [x for x in runs if x["variant"] == v], strict=True)]
        paired_wall = [p["wall"] / b["wall"] for p, b in zip(
            [x for x in runs if x["variant"] == "plain"],
            [x for x in runs if x["variant"] == v], strict=True)]
        summary[v]["speedup_cpu_median"] = statistics.median(paired)
        summary[v]["speedup_cpu_interval"] = _load_common().median_interval(paired)
        summary[v]["speedup_wall_median"] = statistics.median(paired_wall)
    return {"runs": runs, "summary": summary,
            "breakdown_us_per_step": breakdown(rounds=2, epochs=args.epochs),
            "epochs": args.epochs, "k": K, "lrs": LRS}


# -- quality -----------------------------------------------------------------------------------
def _load_common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCH_COMMON)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = mod
    spec.loader.exec_module(mod)
    return mod


def _grid(common, task, seeds) -> tuple[dict, str]:
    """The grid's summary: reused from the bench helper's results, or computed here."""
    if GRID_JSON.exists():
        data = json.loads(GRID_JSON.read_text())
        summary = data.get("tasks", {}).get(task.name, {}).get("grid_summary")
        if summary and data.get("seeds") == seeds:
            return summary, f"reused from {GRID_JSON}"
    key = common.metric_name(task)
    lrs = task.grid_lrs()
    means = []
    for lr in lrs:
        means.append(sum(common.train(task, lr, s)[key] for s in seeds) / len(seeds))
    b = max(range(len(lrs)), key=lambda i: means[i] if key == "acc" else -means[i])
    return ({"metric": key, "lrs": lrs, "means": means, "best_lr": lrs[b], "best": means[b],
             "steps": len(lrs) * len(seeds) * common.run_steps(task)},
            "computed here with the bench helper's train()")


def run_quality(args) -> dict:
    from lrtune.confirmation import confirm_lr
    from lrtune.confirmation.confirm import confirm_budget

    common = _load_common()
    fraction = args.fraction
    seeds = list(range(args.seeds))
    names = args.tasks.split(",") if args.tasks else list(common.TASKS)
    out: dict = {"tasks": {}, "seeds": seeds, "k": K, "fraction": fraction,
                 "halving": args.halving, "choice": args.choice}
    for name in names:
        task = common.TASKS[name]
        t0 = time.perf_counter()
        grid, source = _grid(common, task, seeds)
        splits = common.splits_of(task.dataset)
        key = grid["metric"]
        per_seed = []
        for s in seeds:
            finder, _ = common.run_finder(task, s)
            # whole epochs: the rule section 4 of RESULTS.md was measured with
            budget = confirm_budget(finder, task.epochs, common.steps_per_epoch(task), fraction,
                                    unit="epochs")["steps"]
            model, _, loss_fn = common.build(task, s, lr=1e-3)
            res = confirm_lr(model, task.optimizer, {"momentum": task.momentum}, loss_fn,
                             splits.train, splits.valid, finder, k=K, budget_steps=budget,
                             batch_size=task.batch_size, seed=s, halving=args.halving,
                             choice=args.choice)
            full = common.train(task, res.chosen_lr, s) if res.chosen_lr else None
            sweep_steps = res.copy_steps  # diverged copies until they diverged, stopped ones
            # until their halving rung
            per_seed.append({
                "seed": s, "suggested_lr": finder.suggested_lr, "verdict": finder.verdict,
                "bracket": res.settings["bracket"], "candidates": res.lrs,
                "short_metric": res.final_metric, "chosen_lr": res.chosen_lr,
                "full_metric": None if full is None else full[key],
                "finder_steps": len(finder.train_losses), "sweep_copy_steps": sweep_steps,
                "sweep_seconds": res.seconds, "engine": res.engine, "budget_steps": budget,
                "stopped_step": res.stopped_step, "sweep_compute_fraction": res.compute_fraction,
            })
        values = [p["full_metric"] for p in per_seed]
        mean = (sum(values) / len(values)) if None not in values else None
        if key == "acc":
            gap = None if mean is None else 100 * (grid["best"] - mean)
            ok = gap is not None and gap <= 1.0
        else:
            gap = None if mean is None else mean / grid["best"]
            ok = gap is not None and gap <= 1.05
        compute = sum(p["finder_steps"] + p["sweep_copy_steps"] for p in per_seed)
        out["tasks"][name] = {
            "metric": key, "grid_best": grid["best"], "grid_best_lr": grid["best_lr"],
            "grid_source": source, "grid_steps": grid["steps"], "confirmed_mean": mean,
            "gap": gap, "pass": ok, "compute_steps": compute,
            "compute_fraction": compute / grid["steps"],
            "per_seed": per_seed, "seconds": time.perf_counter() - t0,
        }
        unit = "pt" if key == "acc" else "x best loss"
        print(f"{name}: grid best {grid['best']:.4f} at {grid['best_lr']:.3g} ({source}); "
              f"confirmed {[p['chosen_lr'] for p in per_seed]} -> mean {mean} "
              f"({gap if gap is None else round(gap, 3)} {unit}) pass={ok}; compute "
              f"{compute / grid['steps']:.3f} of the grid", flush=True)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"sweep_quality{args.suffix}.json").write_text(json.dumps(out, indent=1))
    return out


def _halving_arg(text: str):
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"--halving must be auto, on or off, got {text!r}")
    return choices[text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--epochs", type=int, default=6)
    sp.add_argument("--repeats", type=int, default=5)
    sp.add_argument("--suffix", default="", help="suffix of the results file name")
    bd = sub.add_parser("breakdown", help="only the per-phase breakdown of the speed benchmark")
    bd.add_argument("--epochs", type=int, default=6)
    bd.add_argument("--rounds", type=int, default=5)
    bd.add_argument("--suffix", default="", help="suffix of the results file name")
    child = sub.add_parser("speed-child")
    child.add_argument("variant")
    child.add_argument("epochs", type=int)
    q = sub.add_parser("quality")
    q.add_argument("--tasks", default="")
    q.add_argument("--seeds", type=int, default=3)
    q.add_argument("--fraction", type=float, default=0.25,
                   help="share of the task's epochs the confirmation trains")
    q.add_argument("--suffix", default="", help="suffix of the results file name")
    q.add_argument("--halving", type=_halving_arg, default="auto",
                   help="the sweep's successive halving: auto (default), on or off")
    q.add_argument("--choice", choices=("window", "final"), default="window",
                   help="the sweep's choice rule (default window)")
    args = parser.parse_args(argv)
    if args.what == "speed-child":
        print(json.dumps(speed_child(args.variant, args.epochs)))
        return 0
    from lrtune import __version__

    meta = {"torch": torch.__version__, "lrtune": __version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "load_before": os.getloadavg()}
    if args.what == "breakdown":
        result = {"breakdown_us_per_step": breakdown(rounds=args.rounds, epochs=args.epochs),
                  "epochs": args.epochs, "k": K, "lrs": LRS}
    else:
        result = run_speed(args) if args.what == "speed" else run_quality(args)
    result["meta"] = {**meta, "load_after": os.getloadavg()}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"sweep_{args.what}{getattr(args, 'suffix', '')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result.get("summary", {}), indent=1))
    if args.what in ("speed", "breakdown"):
        print(json.dumps(result["breakdown_us_per_step"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
