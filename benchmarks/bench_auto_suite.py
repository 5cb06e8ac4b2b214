"""``lrtune.auto_lr`` (default settings) and the plain range test against a grid search, on the
broader suite of issue 14 (item 6): the seven tasks of ``suite_tasks.py`` and the six of
``common.py``.

Three steps, each resumable; results in ``benchmarks/results/``:

1. ``grid``: every rate of each task's quarter-decade grid x 3 seeds, a full training each
   (``auto_suite_grid.json``: a cache keyed by task definition, rate and seed; rerunning
   skips what is there). New tasks are scored on their test set, the old six on their
   validation set (as in section 1 of RESULTS.md); an old task not gridded here falls back
   to the grid of ``finder_quality.json`` (section 1's, measured on the other machine).
2. ``auto``: per task and seed, ``lrtune.auto_lr`` with its defaults (``epochs`` = the task's
   budget, ``valid`` = its validation set, ``schedule`` where the task trains with one), then
   a full training at the rate it returned, and one at the plain range test's rate (the same
   range test's suggestion, no confirmation). ``auto_lr`` is called, never copied, so this
   step measures whatever the library does today (``auto_suite.json``).
   Variants of the defaults (``--confirm``, ``--fraction``, ``--k``, ``--choice``, ``--unit``,
   ``--halving``, ``--above``) go to
   another file (``--out``); a full training at a rate is cached in ``auto_suite_scores.json``
   (per task definition, rate and seed), so variants that return the same rate share it.
3. ``report``: the tables (markdown) from both files, also written next to the results file
   (``auto_suite.md``; ``--out`` for a variant's). Two regrets: the single-run regret (the
   full training at the returned rate with the call's own seed) and the rate regret (the mean
   over the grid's 3 training seeds at that rate, trained through the cache where missing).
   ``variants``: one line per results file; ``shapes``: the range-test curves around their
   minimum against the grid's best rate.

Compute is counted in optimizer steps x copies: range-test steps + the confirmation's
copy-steps, against the grid's steps over one seed (rates x budget), i.e. one ``auto_lr`` call
against one seed of the grid.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_auto_suite.py grid
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_auto_suite.py auto
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_auto_suite.py report
    # a variant, e.g. a quarter of the planned training for the confirmation
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/bench_auto_suite.py auto \
        --fraction 0.25 --out auto_suite_confirm_f025.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import suite_tasks as st
import torch

RESULTS = Path(__file__).resolve().parent / "results"
GRID_JSON = RESULTS / "auto_suite_grid.json"
AUTO_JSON = RESULTS / "auto_suite.json"
OLD_GRID_JSON = RESULTS / "finder_quality.json"
SEEDS = [0, 1, 2]
TARGET_POINTS, TARGET_LOSS = 1.0, 1.05


def log(msg: str) -> None:
    print(msg, flush=True)


def meta() -> dict:
    import platform
    import subprocess

    import lrtune

    here = Path(__file__).resolve().parent
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                            text=True).stdout.strip()
    return {"git_commit": commit, "python": platform.python_version(), "torch": torch.__version__,
            "lrtune": lrtune.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "load": os.getloadavg()}


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _plain(spec: dict) -> dict:
    """``spec`` as it reads back from JSON (tuples become lists), so that a stored spec compares
    equal to the task's own: without this every cache lookup missed (and a rerun of the grid
    would start every task afresh)."""
    return json.loads(json.dumps(spec))


def _save(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two variants may write one cache at once
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)


# -- 1. the grid ---------------------------------------------------------------------------


def _grid_task(name: str) -> dict:
    """What the grid needs of a task, new (``suite_tasks``) or old (``common``): its rates,
    a full training ``train(lr, seed) -> record``, the record's score key, "acc"/"loss",
    the steps of one run and a spec that changes when the task does."""
    import common

    if name in st.TASKS:
        task = st.TASKS[name]
        return {"lrs": task.grid_lrs(), "train": lambda lr, s: st.train_run(task, lr, s),
                "key": st.score_key(task), "kind": task.metric, "steps": st.run_steps(task),
                "spec": st.task_dict(task)}
    task = common.TASKS[name]

    def train(lr: float, s: int) -> dict:
        t0 = time.perf_counter()
        rec = common.train(task, lr, s)
        return {**rec, "seconds": time.perf_counter() - t0}

    key = common.metric_name(task)
    return {"lrs": task.grid_lrs(), "train": train, "key": key, "kind": key,
            "steps": common.run_steps(task), "spec": common.task_dict(task)}


def run_grid(names: list[str]) -> None:
    data = _load(GRID_JSON) or {"tasks": {}, "runs": {}}
    for name in names:
        gt = _grid_task(name)
        spec = _plain(gt["spec"])
        if data["tasks"].get(name, {}).get("spec") != spec:  # a changed task: start afresh
            data["runs"][name] = {}
        data["tasks"][name] = {"spec": spec, "meta_start": meta()}
        runs = data["runs"].setdefault(name, {})
        t0 = time.perf_counter()
        for lr in gt["lrs"]:
            for s in SEEDS:
                key = f"{lr:.6g}|{s}"
                if key in runs:
                    continue
                runs[key] = gt["train"](lr, s)
                _save(data, GRID_JSON)
            rs = [runs[f"{lr:.6g}|{s}"] for s in SEEDS]
            log(f"{name} lr {lr:.3g}: {gt['key']} {[round(r[gt['key']], 4) for r in rs]} "
                f"({np.mean([r['seconds'] for r in rs]):.2f} s/run)")
        data["tasks"][name]["meta_end"] = meta()
        data["tasks"][name]["summary"] = summarise_grid(gt, runs)
        _save(data, GRID_JSON)
        g = data["tasks"][name]["summary"]
        log(f"{name}: grid best {g['best']:.4f} at {g['best_lr']:.3g} "
            f"({time.perf_counter() - t0:.0f} s)")


def summarise_grid(gt: dict, runs: dict) -> dict:
    """Mean score per rate, the best rate, the score one step above it, the plateau check."""
    key, lrs = gt["key"], gt["lrs"]
    per = [[runs[f"{lr:.6g}|{s}"] for s in SEEDS] for lr in lrs]
    means = [float(np.mean([r[key] for r in rs])) for rs in per]
    b = int(np.argmax(means) if gt["kind"] == "acc" else np.argmin(means))
    return {"metric": key, "lrs": lrs, "means": means, "best_lr": lrs[b], "best": means[b],
            "best_index": b, "best_per_seed": [r[key] for r in per[b]],
            "above_best": means[b + 1] if b + 1 < len(lrs) else None,
            "steps": len(lrs) * gt["steps"],  # one seed of the grid
            "seconds_per_run": float(np.mean([r["seconds"] for rs in per for r in rs])),
            "flat_steps": [flat_steps(rs) for rs in per]}


def flat_steps(runs: list[dict], drop: float = 0.05) -> int | None:
    """Steps before the mean training loss of a window falls ``drop`` below the first
    window's (the smallest over seeds); ``None`` when it never does within the record."""
    out = []
    for r in runs:
        w = r.get("early_loss")
        if w is None:  # an old task's run: not recorded
            return None
        hit = next((i for i, v in enumerate(w) if w and v < (1 - drop) * w[0]), None)
        out.append(math.inf if hit is None else hit * st.EARLY_WINDOW)
    m = min(out)
    return None if m == math.inf else int(m)


# -- 2. auto_lr and the plain range test ---------------------------------------------------


def copy_steps(sweep) -> int:
    """Optimizer steps x copies the confirmation trained (``SweepResult.copy_steps``: a copy
    counts until it diverged or successive halving stopped it; stopped copies leave the
    engine and cost no more)."""
    return 0 if sweep is None else int(sweep.copy_steps)


SCORES_JSON = RESULTS / "auto_suite_scores.json"


def _scorer(name: str, seed: int, spec: dict, train_at):
    """``lr -> score`` of a full training at ``lr``, cached on disk per task definition, rate
    and seed (a full training is deterministic on one machine: step 2 ran three times with
    identical records), so variants that return the same rate do not train it again."""

    spec = _plain(spec)

    def score(lr: float) -> float:
        key = f"{lr!r}|{seed}"
        entry = _load(SCORES_JSON).get(name, {})
        if entry.get("spec") == spec and key in entry["scores"]:
            return entry["scores"][key]
        value = train_at(lr)
        cache = _load(SCORES_JSON)  # reread: another run may have written meanwhile
        if cache.get(name, {}).get("spec") != spec:
            cache[name] = {"spec": spec, "scores": {}}
        cache[name]["scores"][key] = value
        _save(cache, SCORES_JSON)
        return value

    return score


def task_scorer(name: str, seed: int):
    """``lr -> score`` of a full training of task ``name`` with training seed ``seed`` (the
    grid's training, cached in ``auto_suite_scores.json``)."""
    import common

    if name in common.TASKS:
        task = common.TASKS[name]
        return _scorer(name, seed, common.task_dict(task), lambda lr:
                       common.train(task, lr, seed)[common.metric_name(task)])
    task = st.TASKS[name]
    return _scorer(name, seed, st.task_dict(task), lambda lr:
                   st.train_run(task, lr, seed)[st.score_key(task)])


def rate_scores(name: str, lr: float | None) -> list[float] | None:
    """The scores of full trainings at ``lr`` with each of the grid's training seeds (the
    "rate regret" compares their mean with the grid's best mean); None without a rate."""
    return None if lr is None else [task_scorer(name, s)(lr) for s in SEEDS]


def fill_rate_scores(out: Path, names: list[str]) -> None:
    """Add the per-seed scores at each call's returned rate (``auto_lr``'s and the plain range
    test's) to the records of ``out`` that lack them: full trainings through the cache, never
    a grid or an ``auto_lr`` call again."""
    for key, rec in (_load(out).get("runs") or {}).items():
        if rec["task"] not in names or ("rate_scores" in rec
                                         and "range_test_rate_scores" in rec):
            continue
        rec["rate_scores"] = rate_scores(rec["task"], rec["lr"])
        rec["range_test_rate_scores"] = rate_scores(rec["task"], rec["range_test_lr"])
        data = _load(out)  # merge: another run may have written meanwhile
        data["runs"][key] = rec
        _save(data, out)
        log(f"{key}: rate scores {rec['rate_scores']}, range test's "
            f"{rec['range_test_rate_scores']}")


def run_auto(names: list[str], tag: str, out: Path, options: dict, above: float | None,
             inconclusive: float | None = None) -> None:
    """``auto_lr`` with its defaults (``options`` and ``above`` empty) or a variant of them
    (``options``: keyword arguments of ``auto_lr``; ``above``: the bracket's reach above the
    range test's minimum, in decades, patched into ``bracket_from_finder``; ``inconclusive``:
    the confirmation's share of the plan after an inconclusive range test, patched into
    ``confirm_budget``), recorded in ``out``."""
    import functools

    import common

    import lrtune
    import lrtune.auto
    from lrtune.confirmation.confirm import bracket_from_finder, confirm_budget

    if above is not None:
        lrtune.auto.bracket_from_finder = functools.partial(bracket_from_finder, above=above)
    if inconclusive is not None:
        def patched(finder, planned, per_epoch, fraction, *, unit):
            # confirm_budget doubles the share after an inconclusive test: half of it is given
            share = fraction if finder.verdict == "ok" else inconclusive / 2
            return confirm_budget(finder, planned, per_epoch, share, unit=unit)

        lrtune.auto.confirm_budget = patched
    data = _load(out) or {"runs": {}}
    here = {**meta(), "options": options, "above": above, "inconclusive": inconclusive}
    for name in names:
        old = name in common.TASKS
        t0 = time.perf_counter()
        for s in SEEDS:
            if old:
                task = common.TASKS[name]
                sp = common.splits_of(task.dataset)
                model, opt, loss_fn = common.build(task, s, lr=1e-3)
                train, valid, epochs, bs, schedule = (sp.train, sp.valid, task.epochs,
                                                      task.batch_size, None)
            else:
                task = st.TASKS[name]
                train, valid, _ = st.splits(task.data)
                model, opt, loss_fn = st.build(task, s, lr=1e-3)
                epochs, bs, schedule = task.epochs, task.batch_size, task.schedule
            score = task_scorer(name, s)
            c0 = time.perf_counter()
            res = lrtune.auto_lr(model, opt, loss_fn, train, valid, epochs=epochs,
                                 batch_size=bs, seed=s, schedule=schedule, verbose=False,
                                 **options)
            secs = time.perf_counter() - c0
            fin, sw = res.finder, res.sweep
            rec = {
                "task": name, "seed": s, "lr": res.lr, "decided_by": res.decided_by,
                "reason": res.reason, "seconds": secs,
                "finder_steps": len(fin.train_losses), "verdict": fin.verdict,
                "finder_reason": fin.reason, "range_test_lr": fin.suggested_lr,
                "steepest_value": fin.suggestions.get("steepest"),
                "min_loss_lr": fin.min_loss_lr, "stop_reason": fin.stop_reason,
                "stop_lr": fin.stop_lr,
                "range_test_curve": {"lrs": fin.lrs, "smoothed": fin.smoothed_losses},
                "sweep_copy_steps": copy_steps(sw),
                "sweep": None if sw is None else {
                    "lrs": sw.lrs, "bracket": sw.settings.get("bracket"),
                    "final_metric": sw.final_metric, "scores": sw.scores,
                    "score_name": sw.score_name, "diverged_step": sw.diverged_step,
                    "stopped_step": sw.stopped_step, "compute_fraction": sw.compute_fraction,
                    "engine": sw.engine, "steps": sw.settings.get("steps"),
                    "steps_per_epoch": sw.settings.get("steps_per_epoch"),
                    "chosen_lr": sw.chosen_lr, "reason": sw.reason,
                    "curve_steps": sw.steps, "valid_loss": sw.valid_loss},
                "score": None if res.lr is None else score(res.lr),
                "range_test_score": (None if fin.suggested_lr is None
                                     else score(fin.suggested_lr)),
                "rate_scores": rate_scores(name, res.lr),
                "range_test_rate_scores": rate_scores(name, fin.suggested_lr),
            }
            data = _load(out) or data  # merge: another run may have written meanwhile
            data.setdefault("runs", {})[f"{name}|{s}"] = rec
            data.setdefault("meta", {})[tag] = here
            _save(data, out)
            log(f"{name} seed {s}: auto_lr {res.lr} ({res.decided_by}, {secs:.1f} s) -> "
                f"{rec['score']}; range test {fin.suggested_lr} ({fin.verdict}) -> "
                f"{rec['range_test_score']}")
        log(f"{name}: {time.perf_counter() - t0:.0f} s")


# -- 3. the tables -------------------------------------------------------------------------


def grid_of(name: str) -> dict:
    """The grid summary of a task from auto_suite_grid.json (this machine; the old six are
    scored on valid, as in section 1), else, for the old six, from finder_quality.json
    (section 1's grid, measured on the other machine; its steps are over 3 seeds)."""
    grid = _load(GRID_JSON).get("tasks", {}).get(name, {}).get("summary")
    if grid:
        return {**grid, "kind": "acc" if grid["metric"].endswith("acc") else "loss",
                "scored_on": "test" if name in st.TASKS else "valid"}
    old = json.loads(OLD_GRID_JSON.read_text())
    g = old["tasks"][name]["grid_summary"]
    seeds = old["seeds"]
    recs = [r for r in old["grid"] if r["task"] == name and r["lr"] == g["best_lr"]]
    return {**g, "kind": g["metric"], "scored_on": "valid", "steps": g["steps"] // len(seeds),
            "best_per_seed": [r[g["metric"]] for r in sorted(recs, key=lambda r: r["seed"])]}


def regret(kind: str, value: float | None, best: float) -> float | None:
    """Accuracy points below the grid's best, or % of loss above it (None: no rate)."""
    if value is None:
        return None
    if kind == "acc":
        return 100 * (best - value)
    return math.inf if not math.isfinite(value) else 100 * (value / best - 1)


def mean_regret(kind: str, scores: list[float] | None, best: float) -> float | None:
    """The rate regret: :func:`regret` of the mean score over the grid's training seeds at one
    returned rate (None: no rate). A diverged seed makes it infinite."""
    if scores is None:
        return None
    if kind != "acc" and not all(math.isfinite(v) for v in scores):
        return math.inf
    return regret(kind, float(np.mean(scores)), best)


def _rate_cell(rates: list[float | None], present: bool, unit: str) -> str:
    return " / ".join(fmt(x) for x in rates) + f" {unit}" if present else "not measured"


def _yes(ok: bool, present: bool) -> str:
    return "-" if not present else ("yes" if ok else "**no**")


def passes(kind: str, r: float | None) -> bool:
    return r is not None and r <= (TARGET_POINTS if kind == "acc" else 100 * (TARGET_LOSS - 1))


def fmt(r: float | None) -> str:
    return "no rate" if r is None else ("inf" if r == math.inf else f"{r:.1f}")


def bracket_note(rec: dict, best_lr: float) -> str:
    """Where the grid's best rate lies against the confirmation's bracket: "in", "above"
    (by the factor) or "below"; "-" without a confirmation."""
    sw = rec.get("sweep")
    if not sw or not sw.get("bracket"):
        return "-"
    lo, hi = sw["bracket"]
    if best_lr > hi * 1.0001:
        return f"above ×{best_lr / hi:.2f}"
    return "below" if best_lr < lo * 0.9999 else "in"


def report(names: list[str], out: Path = AUTO_JSON) -> str:
    runs = _load(out).get("runs", {})
    lines = ["| task | grid best @ lr (mean of 3 seeds) | grid's best rate, per seed | auto_lr: "
             "lr per seed (decided by) | auto_lr regret per seed (of the mean) | pass | "
             "auto_lr rate regret per call (3 seeds at its rate) | pass | "
             "compute / grid (range test's share) | range test: lr per seed | "
             "range test regret per seed | pass | range test rate regret per call | pass | "
             "compute / grid | grid best vs bracket |",
             "|---" * 16 + "|"]
    summary = {}
    for name in names:
        recs = [runs.get(f"{name}|{s}") for s in SEEDS]
        if any(r is None for r in recs):
            continue
        g = grid_of(name)
        kind, best = g["kind"], g["best"]
        unit = "pt" if kind == "acc" else "%"
        own = [regret(kind, v, best) for v in g["best_per_seed"]]
        auto = [regret(kind, r["score"], best) for r in recs]
        plain = [regret(kind, r["range_test_score"], best) for r in recs]
        rate = [mean_regret(kind, r.get("rate_scores"), best) for r in recs]
        plain_rate = [mean_regret(kind, r.get("range_test_rate_scores"), best) for r in recs]
        has_rate = all("rate_scores" in r for r in recs)
        scores = [r["score"] for r in recs]
        mean = None if None in scores else regret(kind, float(np.mean(scores)), best)
        comp = [(r["finder_steps"] + r["sweep_copy_steps"]) / g["steps"] for r in recs]
        share = [r["finder_steps"] / max(1, r["finder_steps"] + r["sweep_copy_steps"])
                 for r in recs]
        plain_comp = [r["finder_steps"] / g["steps"] for r in recs]
        by = ", ".join(f"{r['lr']:.3g} ({'conf' if r['decided_by'] == 'confirmation' else 'rt'})"
                       if r["lr"] else "none" for r in recs)
        rt_lrs = ", ".join(f"{r['range_test_lr']:.3g}" if r["range_test_lr"] else "none"
                           for r in recs)
        ok_auto = all(passes(kind, x) for x in auto)
        ok_plain = all(passes(kind, x) for x in plain)
        ok_rate = has_rate and all(passes(kind, x) for x in rate)
        ok_plain_rate = has_rate and all(passes(kind, x) for x in plain_rate)
        summary[name] = {"kind": kind, "grid_best": best, "grid_best_lr": g["best_lr"],
                         "grid_own_regret": own, "auto_regret": auto, "auto_mean_regret": mean,
                         "auto_pass": ok_auto,
                         "auto_compute": comp, "range_test_share": share,
                         "plain_regret": plain, "plain_pass": ok_plain,
                         "plain_compute": plain_comp, "scored_on": g["scored_on"],
                         "auto_rate_regret": rate if has_rate else None,
                         "auto_rate_pass": ok_rate if has_rate else None,
                         "plain_rate_regret": plain_rate if has_rate else None,
                         "plain_rate_pass": ok_plain_rate if has_rate else None}
        lines.append(
            f"| {name} | {best:.4f} @ {g['best_lr']:.3g} ({g['scored_on']}) | "
            f"{' / '.join(fmt(x) for x in own)} {unit} | {by} | "
            f"{' / '.join(fmt(x) for x in auto)} {unit} (mean {fmt(mean)}) | "
            f"{'yes' if ok_auto else '**no**'} | "
            f"{_rate_cell(rate, has_rate, unit)} | {_yes(ok_rate, has_rate)} | "
            f"{np.mean(comp):.2f} ({np.mean(share):.0%}) | "
            f"{rt_lrs} | "
            f"{' / '.join(fmt(x) for x in plain)} {unit} | {'yes' if ok_plain else '**no**'} | "
            f"{_rate_cell(plain_rate, has_rate, unit)} | {_yes(ok_plain_rate, has_rate)} | "
            f"{np.mean(plain_comp):.3f} | "
            f"{', '.join(bracket_note(r, g['best_lr']) for r in recs)} |")
    n_auto = sum(v["auto_pass"] for v in summary.values())
    n_plain = sum(v["plain_pass"] for v in summary.values())
    n_rate = sum(bool(v["auto_rate_pass"]) for v in summary.values())
    n_plain_rate = sum(bool(v["plain_rate_pass"]) for v in summary.values())
    worst = max((max(v["auto_compute"]) for v in summary.values()), default=0.0)
    lines.append(f"\nauto_lr meets the per-seed target on {n_auto} of {len(summary)} tasks, "
                 f"the plain range test on {n_plain}; on the rate regret (every call, the "
                 f"mean of 3 training seeds at its rate) auto_lr on {n_rate}, the range test "
                 f"on {n_plain_rate}; auto_lr's compute is at most {worst:.2f} of the grid's "
                 f"(one seed).")
    text = "\n".join(lines)
    data = _load(out)
    if data:
        data["summary"] = summary
        _save(data, out)
    return text


def variants_table(files: list[str], names: list[str]) -> str:
    """One line per results file of step 2: tasks meeting the per-seed target, tasks within
    25 % of the grid's compute (mean over seeds), both, the worst regret of each failing
    task and the compute range (recomputed from the runs; each file's ``report`` as well)."""
    lines = ["| results file | what | tasks meeting the target (per seed) | compute ≤ 0.25 | "
             "both | compute / grid (min-max of task means) | failing tasks: worst seed | "
             "tasks meeting the target on the rate regret (every call) |",
             "|---" * 8 + "|"]
    for f in files:
        data = _load(RESULTS / f)
        report(names, RESULTS / f)  # refreshes the file's summary
        summ = _load(RESULTS / f)["summary"]
        first = next(iter(data.get("meta", {}).values()), {})
        what = ", ".join([f"{k}={v}" for k, v in first.get("options", {}).items()]
                         + [f"{k}={first[k]}" for k in ("above", "inconclusive")
                            if first.get(k) is not None])
        comp = {n: float(np.mean(v["auto_compute"])) for n, v in summ.items()}
        ok = [n for n, v in summ.items() if v["auto_pass"]]
        cheap = [n for n in summ if comp[n] <= 0.25]
        fails = "; ".join(
            f"{n} {fmt(max(x for x in v['auto_regret'] if x is not None))}"
            f"{' pt' if v['kind'] == 'acc' else ' %'}"
            for n, v in summ.items() if not v["auto_pass"])
        measured = all(v.get("auto_rate_pass") is not None for v in summ.values())
        rate_ok = (f"{sum(bool(v['auto_rate_pass']) for v in summ.values())} of {len(summ)}"
                   if measured else "not measured")
        lines.append(f"| {f} | {what or 'defaults'} | {len(ok)} of {len(summ)} | {len(cheap)} | "
                     f"{len(set(ok) & set(cheap))} | {min(comp.values()):.2f}-"
                     f"{max(comp.values()):.2f} | {fails} | {rate_ok} |")
    return "\n".join(lines)


def _loss_at(lrs: np.ndarray, loss: np.ndarray, lr: float) -> float:
    """The curve's loss at the recorded rate nearest ``lr`` (on a log axis)."""
    return float(loss[int(np.argmin(np.abs(np.log(lrs) - math.log(lr))))])


def curve_shapes(names: list[str], out: Path = AUTO_JSON, reach: float = 0.25) -> str:
    """Per conclusive range test of ``out``: where the grid's best rate lies against the
    minimum of the smoothed range-test curve, and how steeply that curve falls over the
    ``reach`` decades before its minimum and rises over the ``reach`` decades after it
    (relative to the minimum's loss): is there a shape that tells a best rate above the
    minimum (a bracket that should reach higher) from one below it?"""
    runs = _load(out).get("runs", {})
    lines = [f"| task | seed | grid best / minimum's rate | fall over {reach} decade before "
             f"the minimum | rise over {reach} decade after it | divergence / minimum |",
             "|---" * 6 + "|"]
    for name in names:
        best = grid_of(name)["best_lr"]
        for s in SEEDS:
            rec = runs.get(f"{name}|{s}")
            if rec is None or rec["verdict"] != "ok" or "range_test_curve" not in rec:
                continue
            lrs = np.asarray(rec["range_test_curve"]["lrs"])
            loss = np.asarray(rec["range_test_curve"]["smoothed"])
            i = int(np.nanargmin(loss))
            fall = _loss_at(lrs, loss, lrs[i] / 10**reach) / loss[i] - 1
            rise = _loss_at(lrs, loss, lrs[i] * 10**reach) / loss[i] - 1
            lines.append(f"| {name} | {s} | {best / lrs[i]:.2f} | {fall:.1%} | {rise:.1%} | "
                         f"{rec['stop_lr'] / lrs[i]:.1f} |")
    return "\n".join(lines)


def grid_tables(names: list[str]) -> str:
    data = _load(GRID_JSON).get("tasks", {})
    out = []
    for name in names:
        if name not in data or "summary" not in data[name]:
            continue
        g, spec = data[name]["summary"], data[name]["spec"]
        sizes = (f"{spec['n_train']} train / {spec['n_valid']} valid / {spec['n_test']} test, "
                 if "n_train" in spec else "")
        out.append(f"\n**{name}** ({spec['note']}; {sizes}batch {spec['batch_size']}, "
                   f"{spec['steps_per_run']} steps per run, {g['seconds_per_run']:.2f} s per "
                   f"run)\n")
        out.append("| lr | " + " | ".join(f"{lr:.3g}" for lr in g["lrs"]) + " |")
        out.append("|---" * (len(g["lrs"]) + 1) + "|")
        out.append(f"| {g['metric']} | " + " | ".join(
            ("**" if i == g["best_index"] else "") + f"{m:.4g}"
            + ("**" if i == g["best_index"] else "") for i, m in enumerate(g["means"])) + " |")
        if any(f is not None for f in g["flat_steps"]):
            out.append("| flat steps | " + " | ".join(
                "-" if f is None else str(f) for f in g["flat_steps"]) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    import common

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["grid", "auto", "report", "variants", "shapes"])
    parser.add_argument("--tasks", default="", help="comma-separated (default: all)")
    parser.add_argument("--tag", default="run", help="label of this auto run's metadata")
    parser.add_argument("--out", default=AUTO_JSON.name,
                        help="results file of step 2 in results/ (variants: another name)")
    parser.add_argument("--confirm", choices=["default", "auto", "true", "false"],
                        default="default", help="auto_lr's confirm= (a variant)")
    parser.add_argument("--fraction", type=float, help="auto_lr's confirm_fraction= (a variant)")
    parser.add_argument("--k", type=int, help="auto_lr's k= (a variant)")
    parser.add_argument("--choice", choices=["window", "final"],
                        help="auto_lr's choice= (a variant)")
    parser.add_argument("--halving", choices=["auto", "on", "off"],
                        help="auto_lr's halving= (a variant)")
    parser.add_argument("--unit", choices=["steps", "epochs"],
                        help="auto_lr's confirm_unit= (a variant; epochs: the earlier rule, "
                             "whole epochs)")
    parser.add_argument("--above", type=float,
                        help="decades the bracket reaches above the range test's minimum "
                             "(a variant; patched into bracket_from_finder)")
    parser.add_argument("--inconclusive", type=float,
                        help="the confirmation's share of the plan after an inconclusive range "
                             "test (a variant; patched into confirm_budget)")
    parser.add_argument("--files", default=AUTO_JSON.name,
                        help="variants: comma-separated results files of step 2")
    args = parser.parse_args(argv)
    out = RESULTS / args.out
    options = {}
    if args.confirm != "default":
        options["confirm"] = {"auto": "auto", "true": True, "false": False}[args.confirm]
    if args.fraction is not None:
        options["confirm_fraction"] = args.fraction
    if args.k is not None:
        options["k"] = args.k
    if args.choice is not None:
        options["choice"] = args.choice
    if args.halving is not None:
        options["halving"] = {"auto": "auto", "on": True, "off": False}[args.halving]
    if args.unit is not None:
        options["confirm_unit"] = args.unit
    new, old = list(st.TASKS), list(common.TASKS)
    names = args.tasks.split(",") if args.tasks else new + old
    if args.what == "grid":
        run_grid(names)
    elif args.what == "auto":
        run_auto(names, args.tag, out, options, args.above, args.inconclusive)
    elif args.what == "variants":
        log(variants_table(args.files.split(","), names))
    elif args.what == "shapes":
        log(curve_shapes(names, out))
    else:
        fill_rate_scores(out, names)
        text = grid_tables(names) + "\n\n" + report(names, out)
        out.with_suffix(".md").write_text(text + "\n")
        log(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
