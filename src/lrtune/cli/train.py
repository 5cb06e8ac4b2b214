"""``lrtune train``: fit a model with the per-epoch table, early stopping, checkpoints, TensorBoard.

With no ``--schedule`` (or ``constant``) the learning rate stays fixed. ``--lr auto`` runs
``lrtune.auto_lr``: the range test, then a confirmation of K rates of its bracket (measured:
the range test's rate alone met the target on 2 of 13 benchmark tasks; ``--no-confirm``: the
range test alone; ``--confirm K``: K rates instead of 8); the model is put back to its fresh
initialisation and trains at that rate (the schedule's peak).
``--resume`` continues a run from its last checkpoint bit-for-bit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from lrtune.cli.common import (
    UsageError,
    bounded_int,
    momentum_value,
    positive_float,
    positive_int,
    unit_fraction,
)
from lrtune.cli.rundir import add_overwrite_argument, run_in_folder
from lrtune.cli.setup import (
    add_confirm_arguments,
    add_model_arguments,
    add_range_test_arguments,
    build_setup,
    sweep_choices,
)
from lrtune.trained import model_spec

EPILOG = """examples:
  lrtune train --lr 0.05 --momentum 0.9 --epochs 20 --patience 3
  lrtune train --lr auto --schedule one_cycle --epochs 10 --out runs/one_cycle
  lrtune train --lr auto --epochs 20            # range test, 8 rates confirmed on 1/4 of the steps
  lrtune train --lr auto --no-confirm --num-iters 500 --rule valley   # the range test alone
  lrtune train --lr auto --data mypkg.data:load --model mypkg.nets:make   # your own data, model
  lrtune train --schedule linear --lr 0.03 --lr-end 0.0001 --momentum 0.9 --momentum-end 0.999
  lrtune train --out runs/train --resume        # continue from runs/train/checkpoints/last.pt
  lrtune train --optimizer prodigy --epochs 20  # learning-rate-free: Prodigy sets its own rate

DIR receives checkpoints/{best,last}.pt, tensorboard/ (tensorboard --logdir DIR/tensorboard),
history.json, history.csv, learning_curves.png and summary.json (test metrics of the best epoch).
DIR must be new or empty: --resume continues the run in it, --overwrite replaces it.
"""

# what Trainer.load_state_dict reads: a checkpoint without them is refused before any work
RESUME_KEYS = ("model", "optimizer", "optimizer_type", "schedules", "callbacks", "history", "rng",
               "epoch", "global_step", "extra")
EPOCH_SCHEDULES = ("linear", "step", "plateau")  # seed 004 adjusts per epoch; others per batch
# settings that must not change when a run is resumed (they change the data, model or schedule)
RESUME_SETTINGS = ("dataset", "model", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                   "batch_size",
                   "seed", "schedule", "interval", "lr_end", "momentum_end", "augment",
                   "plateau_factor", "plateau_patience", "precision", "clip_grad_norm",
                   "accumulation_steps")


def lr_argument(text: str) -> float | str:
    """``auto`` or a finite number > 0."""
    return "auto" if text == "auto" else positive_float(text)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a model (table, early stopping, checkpoints, TensorBoard)",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--lr", type=lr_argument, default=None,
                   help="learning rate, or 'auto' for lrtune.auto_lr's: the range test, then "
                        "a confirmation of its bracket (default 0.01; learning-rate-free "
                        "optimizers: their package's default)")
    add_confirm_arguments(p, with_epochs=False, automatic=True)
    add_range_test_arguments(p)
    p.add_argument("--schedule", default=None,
                   help="constant, linear, one_cycle, cosine, warmup_cosine, cyclic, "
                        "cosine_restarts, step, exponential or plateau (default: constant lr)")
    p.add_argument("--interval", choices=["batch", "epoch"], default=None,
                   help="step the schedule per batch or per epoch "
                        f"(default: epoch for {', '.join(EPOCH_SCHEDULES)}; batch otherwise)")
    p.add_argument("--lr-end", type=positive_float, default=None,
                   help="the schedule's final lr (linear: seed 004's 0.03 -> 0.0001)")
    p.add_argument("--momentum-end", type=momentum_value, default=None,
                   help="the schedule's final momentum (linear: seed 004's 0.9 -> 0.999)")
    p.add_argument("--plateau-factor", type=unit_fraction, default=0.1,
                   help="plateau: multiply lr by this in (0, 1) (default 0.1)")
    p.add_argument("--plateau-patience", type=bounded_int(0, 10**6), default=2,
                   help="plateau: epochs without improvement before lowering lr (default 2)")
    p.add_argument("--epochs", type=positive_int, default=10, help="total epochs (default 10)")
    p.add_argument("--accumulation-steps", type=positive_int, default=1, metavar="K",
                   help="micro-batches per optimizer step (default 1)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="early stopping on the valid loss after this many epochs without "
                        "improvement; the best weights are restored")
    p.add_argument("--augment", default="none", help="none (default) or flip (keypoint data)")
    p.add_argument("--out", default="runs/train", help="output folder DIR (default runs/train)")
    p.add_argument("--resume", nargs="?", const="last", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default DIR/checkpoints/last.pt)")
    add_overwrite_argument(p)
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                   help="0 quiet, 1 table + live bar on a terminal (default), 2 table only")
    p.set_defaults(run=run)


def run(args) -> int:
    from lrtune import distributed
    from lrtune.cli.checks import check_train_options

    args.lr = _resolve_lr(args)
    check_train_options(args)
    if not distributed.is_main():  # rank 0 alone holds the folder's lock
        return _train_and_report(args)
    return run_in_folder(args.out, lambda: _train_and_report(args), command="train",
                         resume=args.resume is not None, overwrite=args.overwrite,
                         resume_hint=(Path(args.out) / "checkpoints" / "last.pt").is_file())


def _train_and_report(args) -> int:
    from lrtune import distributed

    summary = run_training(args)
    main = distributed.is_main()  # every rank has the same summary; rank 0 reports it
    if "error" in summary:
        if main:
            print(f"lrtune train: error: {summary['error']}", file=sys.stderr)
        return 1
    if args.verbose and main:
        line = f"best epoch {summary['best_epoch']} (valid loss {summary['best_valid_loss']:.6g})"
        if "test_loss" in summary:
            line += f"; test loss {summary['test_loss']:.6g}"
        if "test_accuracy" in summary:
            line += f", test accuracy {summary['test_accuracy']:.4f}"
        print(line)
        print(f"wrote {', '.join(str(p) for p in summary['written'])}")
    return 0


def run_training(args) -> dict:
    """Everything ``lrtune train`` does; returns the summary (``"error"`` set on a NaN stop).

    ``lrtune demo`` and ``lrtune compare`` run their recipes through this too.
    """
    from lrtune import distributed
    from lrtune.cli.checks import check_train_options
    from lrtune.data.batching import as_batches
    from lrtune.lr_free import effective_lrs, set_run_length
    from lrtune.training import (
        Checkpoint,
        EarlyStopping,
        NonFiniteLossError,
        TensorBoard,
        Trainer,
        load_checkpoint,
    )

    args.lr = _resolve_lr(args)
    check_train_options(args)  # again: demo and compare call this directly
    out = Path(args.out)
    main, world = distributed.is_main(), distributed.world_size()
    settings = {k: getattr(args, k) for k in RESUME_SETTINGS}
    settings["schedule"] = args.schedule or "constant"
    settings["epochs"] = args.epochs
    settings["world_size"] = world  # batch_size is per process: the samples per step change
    state = None
    if args.resume is not None:
        path = out / "checkpoints" / "last.pt" if args.resume == "last" else Path(args.resume)
        state = load_checkpoint(path, require=RESUME_KEYS)
        saved = state["extra"].get("settings") if isinstance(state["extra"], dict) else None
        if not isinstance(saved, dict) or "lr" not in state["extra"]:
            raise ValueError(f"{path} was not written by `lrtune train` (no settings in it); "
                             "resume it with Trainer.fit(..., resume=PATH)")
        _check_same_settings(saved, settings, path)

    splits, model, optimizer, loss_fn, device = build_setup(args)
    # optimizer steps per epoch, on every rank: what per-batch schedules and the Trainer count
    n_batches = len(as_batches(splits.train, args.batch_size, rank=distributed.rank(),
                               world_size=world))
    per_epoch = -(-n_batches // args.accumulation_steps)
    _schedule_values(args, 1.0, per_epoch)  # a run too short for it fails now, not after --lr auto
    seconds_lr_search = 0.0  # the range test (and confirmation) of --lr auto
    lr_source = "given"
    net = distributed.wrap(model, device)  # DDP under torchrun; `model` stays the bare module
    if state is not None and args.lr == "auto":
        lr = float(state["extra"]["lr"])  # the rate the interrupted run chose, and how
        lr_source = state["extra"].get("lr_source", "range test")
    elif args.lr == "auto":
        search_start = time.perf_counter()
        lr, lr_source = _auto_lr(args, splits, model, net, optimizer, loss_fn, device, out)
        seconds_lr_search = round(time.perf_counter() - search_start, 3)
    else:
        lr = float(args.lr)
    for group in optimizer.param_groups:
        group["lr"] = lr
    set_run_length(optimizer, args.epochs * per_epoch)  # Schedule-Free's warmup
    schedules = _build_schedules(args, optimizer, lr, per_epoch)
    augment = _build_augment(args.augment, splits)
    classification = splits.task == "classification"

    callbacks = []
    if args.patience:
        callbacks.append(EarlyStopping("valid_loss", patience=args.patience,
                                       restore_best_weights=True))
    spec = model_spec(args.model, splits)
    checkpoint = Checkpoint(out / "checkpoints", monitor="valid_loss",
                            extra={"lr": lr, "lr_source": lr_source, "settings": settings,
                                   "model_spec": spec})
    callbacks += [checkpoint, TensorBoard(out / "tensorboard")]
    trainer = Trainer(net, optimizer, loss_fn, metrics=["accuracy"] if classification else None,
                      callbacks=callbacks, schedules=schedules, augment=augment, device=device,
                      verbose=args.verbose, precision=args.precision,
                      clip_grad_norm=args.clip_grad_norm)
    if args.verbose and main:
        batch = f"{args.batch_size}" if world == 1 else \
            f"{args.batch_size} per process x {world} = {args.batch_size * world}"
        print(f"training {args.model} on {splits.name} ({args.optimizer}, lr {lr:.4g}, schedule "
              f"{settings['schedule']}, {args.epochs} epochs, batch size {batch})")
    start = time.perf_counter()
    failure = None
    try:
        trainer.fit(splits.train, splits.valid, epochs=args.epochs, batch_size=args.batch_size,
                    accumulation_steps=args.accumulation_steps, resume=state, seed=args.seed)
    except NonFiniteLossError as exc:
        failure = exc
    summary = {
        "dataset": splits.name, "model": args.model, "optimizer": args.optimizer, "lr": lr,
        "lr_source": lr_source,
        "schedule": settings["schedule"], "epochs": args.epochs,
        "epochs_run": len(trainer.history), "stop_reason": trainer.stop_reason,
        "best_epoch": checkpoint.best_epoch_,
        "best_valid_loss": checkpoint.best_ if checkpoint.best_epoch_ else None,
        "seconds": round(time.perf_counter() - start, 3),
        "seconds_lr_search": seconds_lr_search,
    }
    if effective_lrs(optimizer) is not None:  # Prodigy, D-Adaptation: the rate they arrived at
        summary["effective_lr"] = effective_lrs(optimizer)[0]
    # rank 0 wrote it (a barrier followed); its answer keeps every rank on the same path
    if failure is None and distributed.broadcast_object(checkpoint.best_path.is_file()):
        # the test set sees the best epoch's weights, whatever the last epoch did
        model.load_state_dict(load_checkpoint(checkpoint.best_path)["model"])
        test = trainer.evaluate(splits.test, batch_size=max(args.batch_size, 256))
        summary["test_loss"] = test["loss"]
        if classification:
            summary["test_accuracy"] = test["accuracy"]
    if failure is not None:
        summary["error"] = str(failure)
    if "image_size" in splits.extra and "test_loss" in summary:
        # coordinates live in [-1, 1] over the image: RMSE in pixels is sqrt(MSE) * size / 2
        summary["test_rmse_px"] = math.sqrt(summary["test_loss"]) * splits.extra["image_size"] / 2
    if main:
        summary["written"] = [str(p) for p in _write_outputs(out, trainer.history, summary)]
    return summary


def _resolve_lr(args) -> float | str:
    """``--lr`` as given, else 0.01, or a learning-rate-free optimizer's own default."""
    from lrtune.lr_free import LR_FREE

    if args.optimizer not in LR_FREE:
        return 0.01 if args.lr is None else args.lr
    if args.lr == "auto":
        raise UsageError(f"--lr auto runs the range test, which does not apply to "
                         f"{args.optimizer}: it sets its own step size (leave --lr out)")
    if args.lr is not None:
        return args.lr
    from lrtune.lr_free import default_lr

    try:
        return default_lr(args.optimizer)
    except ImportError as exc:
        raise UsageError(str(exc)) from None


def _check_same_settings(saved: dict, now: dict, path: Path) -> None:
    if saved.get("world_size", 1) != now["world_size"]:
        raise UsageError(
            f"{path} was written by a run of {saved.get('world_size', 1)} process(es), this one "
            f"has {now['world_size']}: --batch-size is per process, so the batches would differ; "
            "resume with the same torchrun --nproc_per_node x --nnodes")
    keys = [k for k in RESUME_SETTINGS if k in saved and saved[k] != now[k]]
    sets_warmup = now["optimizer"].startswith("schedulefree")
    if (now["schedule"] not in ("constant", "plateau") or sets_warmup) \
            and saved.get("epochs") != now["epochs"]:
        keys.append("epochs")  # the schedule's (or Schedule-Free's warmup's) length depends on it
    if keys:
        diffs = ", ".join(f"--{k.replace('_', '-')} {saved[k]} (now {now[k]})" for k in keys)
        raise UsageError(f"{path} was written by a run with different settings: {diffs}")


def _auto_lr(args, splits, model, net, optimizer, loss_fn, device,
             out: Path) -> tuple[float, str]:
    """``--lr auto``: :func:`lrtune.auto_lr` (range test, then a confirmation when it is
    inconclusive or known to be unreliable here). Under torchrun the range test runs on every
    rank (DDP), the decision and any confirmation on rank 0, which sends the rate to the others.
    Returns the rate and how it was decided. The model and the
    optimizer are left at their fresh initial state. Both search at the momentum the schedule
    puts at its rate's peak (:func:`_momentum_at_peak`), when it moves momentum."""
    from lrtune import distributed

    momentum = _momentum_at_peak(args, splits)
    if momentum is None:
        return _search(args, splits, model, net, optimizer, loss_fn, device, out)
    from lrtune.schedules.hyperparams import get_hyperparam, set_hyperparam

    groups = optimizer.param_groups
    own = [get_hyperparam(g, "momentum") for g in groups]
    if args.verbose and distributed.is_main():
        print(f"--lr auto: searching at momentum {momentum:.3g}, where the {args.schedule} "
              f"schedule puts it at its rate's peak (the optimizer has {own[0]:.3g})")
    for group in groups:
        set_hyperparam(group, "momentum", momentum)
    try:
        return _search(args, splits, model, net, optimizer, loss_fn, device, out)
    finally:
        for group, value in zip(groups, own, strict=True):
            set_hyperparam(group, "momentum", value)


def _momentum_at_peak(args, splits) -> float | None:
    """The momentum training's schedule sets at its rate's peak, when that schedule moves
    momentum away from the optimizer's own (``one_cycle`` and ``cyclic`` do by default, with
    torch's 0.85-0.95 and 0.8-0.9): the range test and the confirmation train at a constant
    momentum, and a rate found at the optimizer's momentum 0 diverges at 0.85 (its steps are
    1/(1 - momentum) = 6.7x longer). ``None`` when the schedule leaves momentum alone."""
    import numpy as np

    per_epoch = _search_steps_per_epoch(args, splits)
    built = _schedule_values(args, 1.0, per_epoch)
    if built is None or "momentum" not in built[2]:
        return None
    _, total, values = built
    steps = np.unique(np.linspace(0, total - 1, min(total, 10_001)).astype(int))
    peak = int(steps[np.argmax([values["lr"](int(t)) for t in steps])])
    momentum = float(values["momentum"](peak))
    return None if momentum == args.momentum else momentum


def _search(args, splits, model, net, optimizer, loss_fn, device,
            out: Path) -> tuple[float, str]:
    """The range test and the confirmation of ``--lr auto`` (see :func:`_auto_lr`)."""
    from lrtune import distributed
    from lrtune.auto import auto_lr
    from lrtune.finder.suggest import DEFAULT_RULE

    finder = None
    if distributed.world_size() > 1:  # the range test in the launch configuration of training
        from lrtune.finder import find_lr

        finder = find_lr(net, optimizer, loss_fn, splits.train,
                         batch_size=args.batch_size, seed=args.seed, device=device,
                         precision=args.precision, clip_grad_norm=args.clip_grad_norm,
                         start_lr=args.start_lr, end_lr=args.end_lr, num_iters=args.num_iters,
                         rule=args.rule or DEFAULT_RULE,
                         accumulation_steps=args.accumulation_steps)  # the same on every rank
    answer = None  # (lr, how it was decided, the error when there is no rate)
    if distributed.is_main():
        result = auto_lr(model, optimizer, loss_fn, splits.train, splits.valid,
                         epochs=args.epochs, schedule=_confirmation_schedule(args, splits),
                         confirm=not args.no_confirm,
                         k=args.confirm or 8, confirm_fraction=args.confirm_fraction,
                         batch_size=args.batch_size, seed=args.seed, precision=args.precision,
                         clip_grad_norm=args.clip_grad_norm, start_lr=args.start_lr,
                         end_lr=args.end_lr, num_iters=args.num_iters, rule=args.rule,
                         accumulation_steps=args.accumulation_steps,
                         device=device, verbose=bool(args.verbose), finder=finder,
                         **sweep_choices(args))
        paths = result.save(out / "lr_find")
        if args.verbose:
            print(f"range test: {result.finder.summary()}")
            if result.sweep is not None:
                print(result.sweep.table())
        error = (f"--lr auto: {result.reason}; see {paths[0]} and pass --lr VALUE (with "
                 f"--overwrite to train in {out}, which holds only this search)"
                 if result.lr is None else None)
        answer = (result.lr, result.decided_by, error)
    lr, source, error = distributed.broadcast_object(answer)  # every rank stops, or trains
    if error is not None:
        raise UsageError(error)
    return float(lr), source


def _search_steps_per_epoch(args, splits) -> int:
    """Optimizer steps per epoch as ``auto_lr`` counts them (rank 0, the whole train data,
    ``--accumulation-steps`` batches per step): the unit its schedule is read in."""
    from lrtune.auto import steps_per_epoch

    return steps_per_epoch(splits.train, args.batch_size * args.accumulation_steps)


def _interval_and_length(args, per_epoch: int) -> tuple[str, int]:
    """How often training steps its schedule (``"batch"``: every optimizer step, ``per_epoch``
    of them per epoch; or ``"epoch"``) and how many times."""
    interval = args.interval or ("epoch" if args.schedule in EPOCH_SCHEDULES else "batch")
    return interval, args.epochs * (per_epoch if interval == "batch" else 1)


def _confirmation_schedule(args, splits):
    """The schedule ``--lr auto`` confirms under: the one training will use, ``--lr-end`` and
    per-epoch steps included (None for a constant rate or ``plateau``, which starts constant)."""
    per_epoch = _search_steps_per_epoch(args, splits)
    built = _schedule_values(args, 1.0, per_epoch)
    if built is None:
        return None
    interval = built[0]
    if interval == "batch" and args.lr_end is None:
        return args.schedule  # the preset as auto_lr builds it

    def schedule(peak: float):  # over the planned run's optimizer steps, as auto_lr reads it
        lr_at = _schedule_values(args, peak, per_epoch)[2]["lr"]
        return lr_at if interval == "batch" else (lambda step: lr_at(int(step // per_epoch)))

    schedule.name = f"{args.schedule} per {interval}"
    return schedule


def _schedule_values(args, lr: float, per_epoch: int):
    """``(interval, steps, {"lr": ..., maybe "momentum": ...})`` of ``--schedule`` as training
    builds it over ``per_epoch`` optimizer steps per epoch (``None`` for ``constant`` and
    ``plateau``); a run too short for the schedule is a UsageError naming the options."""
    name = args.schedule or "constant"
    if name in ("constant", "plateau"):
        return None
    from lrtune.schedules import named_schedule

    interval, total = _interval_and_length(args, per_epoch)
    explicit_momentum = args.momentum or args.momentum_end is not None
    try:
        values = named_schedule(name, lr=lr, total_steps=total, lr_end=args.lr_end,
                                momentum=args.momentum if explicit_momentum else None,
                                momentum_end=args.momentum_end)
    except ValueError as exc:
        raise UsageError(f"--schedule {name} stepped per {interval} gets {total} steps in "
                         f"--epochs {args.epochs}: {exc}") from None
    return interval, total, values


def _build_schedules(args, optimizer, lr: float, per_epoch: int):
    name = args.schedule or "constant"
    if name == "constant":
        return None  # a constant lr needs no scheduler
    if name == "plateau":
        from lrtune.schedules import ReduceLROnPlateau

        return ReduceLROnPlateau(optimizer, monitor="valid_loss", factor=args.plateau_factor,
                                 patience=args.plateau_patience)
    from lrtune.schedules import HyperparamScheduler

    interval, _, values = _schedule_values(args, lr, per_epoch)
    return HyperparamScheduler(optimizer, values, interval=interval)


def _build_augment(name: str, splits):
    if name == "none":
        return None
    from lrtune.data.augment import make_augment

    return make_augment(name, splits)


def _write_outputs(out: Path, history, summary: dict) -> list[Path]:
    from lrtune.plots import pyplot
    from lrtune.training.checkpoint_io import atomic_write_text
    from lrtune.training.curves import plot_history

    out.mkdir(parents=True, exist_ok=True)
    history.to_json(out / "history.json")
    history.to_csv(out / "history.csv")
    written = [out / "history.json", out / "history.csv"]
    if len(history):
        fig = plot_history(history)
        fig.savefig(out / "learning_curves.png", dpi=300)
        pyplot().close(fig)
        written.append(out / "learning_curves.png")
    atomic_write_text(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    written += [out / "summary.json", out / "checkpoints", out / "tensorboard"]
    return written
