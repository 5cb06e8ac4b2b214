"""``lrtune find``: the learning-rate range test on a dataset and model from the registry."""

from __future__ import annotations

import argparse

from lrtune.cli.common import positive_float, positive_int
from lrtune.cli.rundir import add_overwrite_argument
from lrtune.cli.setup import (
    add_confirm_arguments,
    add_model_arguments,
    add_range_test_arguments,
    build_setup,
    check_range_test_options,
    sweep_choices,
)

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
    add_range_test_arguments(p)
    p.add_argument("--mode", choices=["exp", "linear"], default="exp")
    p.add_argument("--smooth", type=float, default=0.05,
                   help="smoothing window, fraction of the sweep (default 0.05)")
    p.add_argument("--diverge-factor", type=positive_float, default=4.0)
    p.add_argument("--accumulation-steps", type=positive_int, default=1)
    p.add_argument("--validate", action="store_true",
                   help="monitor the validation loss (every --val-every steps) instead of training")
    p.add_argument("--val-every", type=positive_int, default=1)
    p.add_argument("--out", default="runs/find", help="output folder (default runs/find)")
    add_overwrite_argument(p)
    add_confirm_arguments(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lrtune import distributed
    from lrtune.cli.checks import check_confirm_options, check_model_options, check_output_path
    from lrtune.cli.rundir import run_in_folder

    check_output_path(args.out)
    check_model_options(args)
    rule = check_range_test_options(args)
    check_confirm_options(args)
    if not args.confirm:
        from lrtune.cli.setup import CONFIRM_DEFAULTS, PLANNED_EPOCHS, check_unused

        check_unused(args, {**CONFIRM_DEFAULTS, "epochs": PLANNED_EPOCHS},
                     "sets the confirmation: it needs --confirm")
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
        confirm(args, result, model, optimizer, splits, loss_fn, device, args.out)
    return 0


def confirm(args, result, model, optimizer, splits, loss_fn, device, out):
    """Confirm the range test ``result`` (:func:`lrtune.auto.confirm_range_test`, as
    :func:`lrtune.auto_lr` does) and save it all into ``out`` (:meth:`AutoLRResult.save`:
    sweep.png/json, the confirmed rate in lr_find.json and lr_find.png, auto_lr.json).

    Returns the :class:`~lrtune.auto.AutoLRResult`."""
    from lrtune.auto import (
        AutoLRResult,
        budget_text,
        confirm_range_test,
        group_ratios,
        rates_per_group,
    )

    swept = confirm_range_test(model, optimizer, loss_fn, splits.train, splits.valid, result,
                               epochs=args.epochs, k=args.confirm,
                               confirm_fraction=args.confirm_fraction,
                               # one optimizer step's samples, as the range test accumulates
                               batch_size=args.batch_size * args.accumulation_steps,
                               seed=args.seed, device=device,
                               precision=args.precision, clip_grad_norm=args.clip_grad_norm,
                               **sweep_choices(args))
    lr = swept.chosen_lr
    reason = f"confirmation requested (--confirm {args.confirm}): " + (
        swept.summary() if lr is not None else swept.reason)
    auto = AutoLRResult(lr, rates_per_group(lr, group_ratios(optimizer)), "confirmation", reason,
                        result, swept)
    paths = auto.save(out)
    s = swept.settings
    share = f"{s['confirm_share']:g} of the plan" + (
        "" if result.verdict == "ok" else ": the range test was inconclusive")
    print(f"confirmation: {args.confirm} rates, "
          f"{budget_text({'steps': s['steps']}, args.epochs, s['steps_per_epoch'])} each "
          f"({share}): {swept.summary()}")
    print(swept.table())
    print(f"wrote {', '.join(str(p) for p in paths[2:])}; confirmed_lr added to {paths[1]}")
    return auto
