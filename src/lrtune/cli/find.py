"""``lrtune find``: the learning-rate range test on a dataset and model from the registry."""

from __future__ import annotations

import argparse

from lrtune.cli.checks import MAX_CONFIRM, MAX_NUM_ITERS
from lrtune.cli.common import (
    UsageError,
    bounded_int,
    momentum_value,
    nonnegative_float,
    positive_float,
    positive_int,
    seed_everything,
)
from lrtune.cli.rundir import add_overwrite_argument
from lrtune.lr_free import LR_FREE

MIN_NUM_ITERS = 8  # as lrtune.finder.suggest.MIN_POINTS: fewer points give no verdict

CONFIRM_FRACTION = 0.5  # as lrtune.sweep.confirm (copied: --help must not import torch)

EPILOG = """examples:
  lrtune find                                   # digits, seed 000's MLP, SGD
  lrtune find --optimizer adam --num-iters 300 --out runs/adam
  lrtune find --optimizer sgd --momentum 0.9 --validate
  lrtune find --confirm                         # + train 8 rates of the bracket for 10 epochs
  lrtune find --confirm 6 --epochs 40           # 6 rates, 20 epochs (half of 40)
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "find", help="learning-rate range test", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(p)
    p.add_argument("--start-lr", type=positive_float, default=1e-7)
    p.add_argument("--end-lr", type=positive_float, default=10.0)
    p.add_argument("--num-iters", type=bounded_int(MIN_NUM_ITERS, MAX_NUM_ITERS), default=300,
                   help=f"optimizer steps ({MIN_NUM_ITERS} to {MAX_NUM_ITERS:,}, default 300)")
    p.add_argument("--mode", choices=["exp", "linear"], default="exp")
    p.add_argument("--smooth", type=float, default=0.05,
                   help="smoothing window, fraction of the sweep (default 0.05)")
    p.add_argument("--diverge-factor", type=positive_float, default=4.0)
    p.add_argument("--accumulation-steps", type=positive_int, default=1)
    p.add_argument("--validate", action="store_true",
                   help="monitor the validation loss (every --val-every steps) instead of training")
    p.add_argument("--val-every", type=positive_int, default=1)
    p.add_argument("--rule", default=None, help="suggestion rule (default: the measured best)")
    p.add_argument("--out", default="runs/find", help="output folder (default runs/find)")
    add_overwrite_argument(p)
    add_confirm_arguments(p)
    p.set_defaults(run=run)


def add_confirm_arguments(p: argparse.ArgumentParser, *, with_epochs: bool = True) -> None:
    """``--confirm [K]``: check K rates of the range test's bracket by short real training."""
    p.add_argument("--confirm", type=bounded_int(1, MAX_CONFIRM), nargs="?", const=8, default=None,
                   metavar="K",
                   help="train K rates (default 8) inside the range test's bracket at once "
                        "(vectorised) on a short budget and pick the best by validation")
    if with_epochs:  # `lrtune train` has its own --epochs
        p.add_argument("--epochs", type=positive_int, default=20,
                       help="planned training epochs; --confirm trains --confirm-fraction of "
                            "them (all of them after an inconclusive range test)")
    p.add_argument("--confirm-fraction", type=positive_float, default=CONFIRM_FRACTION,
                   help=f"share of the planned epochs the confirmation trains "
                        f"(default {CONFIRM_FRACTION})")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds data, model and optimizer."""
    p.add_argument("--dataset", default="digits", help="dataset name (default digits, offline)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    p.add_argument("--model", default="mlp", help="model name (default mlp: 300-100 ReLU)")
    p.add_argument("--optimizer", choices=["sgd", "adam", "adamw", *LR_FREE], default="sgd",
                   help="sgd (default), adam, adamw, or a learning-rate-free one "
                        "(needs pip install 'lrtune[lrfree]'; `lrtune train` only)")
    p.add_argument("--momentum", type=momentum_value, default=0.0,
                   help="SGD momentum in [0, 1) (Adam: beta1 when given)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    p.add_argument("--weight-decay", type=nonnegative_float, default=0.0)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["32", "bf16-mixed", "16-mixed"], default="32",
                   help="32 (default), bf16-mixed or 16-mixed (autocast; a GradScaler for 16)")
    p.add_argument("--clip-grad-norm", type=positive_float, default=None, metavar="MAX",
                   help="clip the gradients' total norm to MAX before each optimizer step")


def build_setup(args):
    """Data splits, model, optimizer and loss from the shared options."""
    import torch

    from lrtune.data import load_dataset
    from lrtune.models import build_model
    from lrtune.training.setup import loss_for, make_optimizer

    seed_everything(args.seed)
    splits = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir)
    model = build_model(args.model, splits.in_features, splits.n_outputs,
                        input_shape=splits.input_shape).to(args.device)
    try:
        optimizer = make_optimizer(args.optimizer, model.parameters(), lr=1.0,
                                   momentum=args.momentum, weight_decay=args.weight_decay,
                                   nesterov=args.nesterov)
    except ImportError as exc:  # a learning-rate-free optimizer's package is not installed
        raise UsageError(str(exc)) from None
    return splits, model, optimizer, loss_for(splits), torch.device(args.device)


def run(args) -> int:
    from lrtune import distributed
    from lrtune.cli.checks import check_confirm_options, check_model_options, check_output_path
    from lrtune.cli.rundir import run_in_folder

    check_output_path(args.out)
    check_model_options(args)
    if args.end_lr <= args.start_lr:
        raise ValueError(
            f"--end-lr ({args.end_lr}) must be greater than --start-lr ({args.start_lr})"
        )
    check_confirm_options(args)
    from lrtune.finder import RULES
    from lrtune.finder.suggest import DEFAULT_RULE

    rule = args.rule or DEFAULT_RULE
    if rule not in RULES:
        raise ValueError(f"unknown --rule {rule!r}; choose from {', '.join(RULES)}")
    if not 0 <= args.smooth < 1:
        raise ValueError(f"--smooth must be in [0, 1), got {args.smooth}")
    if not distributed.is_main():  # rank 0 alone holds the folder's lock
        return _find(args, rule)
    return run_in_folder(args.out, lambda: _find(args, rule), command="find",
                         overwrite=args.overwrite)


def _find(args, rule: str) -> int:
    from lrtune import distributed
    from lrtune.finder import find_lr

    splits, model, optimizer, loss_fn, device = build_setup(args)
    result = find_lr(
        distributed.wrap(model, device), optimizer, loss_fn, splits.train,
        start_lr=args.start_lr, end_lr=args.end_lr,
        num_iters=args.num_iters, mode=args.mode, batch_size=args.batch_size, smooth=args.smooth,
        diverge_factor=args.diverge_factor, accumulation_steps=args.accumulation_steps,
        precision=args.precision, clip_grad_norm=args.clip_grad_norm,
        val_data=splits.valid if args.validate else None, val_every=args.val_every, rule=rule,
        seed=args.seed, device=device,
    )
    if not distributed.is_main():  # every rank holds the same result; rank 0 reports it
        return 0
    png, js = result.save(args.out)
    world = distributed.world_size()
    ranks = f", {world} ranks x batch {args.batch_size}" if world > 1 else ""
    print(f"range test on {splits.name} ({args.model}, {args.optimizer}{ranks}): "
          f"{result.summary()}")
    for name, lr in result.suggestions.items():
        print(f"  {name:<11} {'-' if lr is None else f'{lr:.3g}'}")
    print(f"wrote {png} and {js}")
    if args.confirm:  # a single-process check of the bracket, on rank 0 (the others are done)
        confirm(args, result, model, splits, loss_fn, device, js)
    return 0


def confirm(args, result, model, splits, loss_fn, device, json_path):
    """Run the confirmation sweep; write sweep.png/sweep.json beside ``json_path`` (lr_find.json),
    add its keys to it and redraw lr_find.png with the confirmed rate.

    Returns the :class:`~lrtune.sweep.SweepResult`."""
    import json

    from lrtune.result_io import write_json
    from lrtune.sweep import confirm_lr
    from lrtune.sweep.confirm import confirm_epochs

    epochs = confirm_epochs(result, args.epochs, args.confirm_fraction)
    kwargs = {"momentum": args.momentum, "weight_decay": args.weight_decay,
              "nesterov": args.nesterov}
    swept = confirm_lr(model, args.optimizer, kwargs, loss_fn, splits.train, splits.valid, result,
                       k=args.confirm, budget_epochs=epochs, batch_size=args.batch_size,
                       seed=args.seed, device=device)
    png, js = swept.save(json_path.parent)
    data = json.loads(json_path.read_text())
    data.update(confirmed_lr=swept.chosen_lr, confirm={
        "candidates": swept.lrs, "metric": swept.metric, "valid_metric": swept.final_metric,
        "diverged_step": swept.diverged_step, "epochs": epochs,
        "planned_epochs": args.epochs, "fraction": args.confirm_fraction,
        "bracket": swept.settings["bracket"], "range_test_suggestion": result.suggested_lr,
        "tolerance": swept.tolerance, "reason": swept.reason, "engine": swept.engine,
    })
    write_json(data, json_path)  # atomic: a failure keeps the range test's own result
    if swept.chosen_lr is not None:  # redraw the range test's figure with the confirmed rate
        from lrtune.plots import save_figure

        save_figure(result.plot(confirmed_lr=swept.chosen_lr), json_path.with_suffix(".png"))
    share = (f"{args.confirm_fraction:g} of {args.epochs}" if result.verdict == "ok" else
             f"all {args.epochs}: the range test was inconclusive")
    print(f"confirmation: {args.confirm} rates, {epochs} epochs each ({share}): "
          f"{swept.summary()}")
    print(swept.table())
    print(f"wrote {png} and {js}; confirmed_lr added to {json_path}")
    return swept
