"""Options and setup shared by ``find``, ``train``, ``compare`` and ``demo``: data, model,
optimizer, the range test's and the confirmation's options.

``--model`` and ``--data`` take a registry name or ``pkg.module:factory``
(:mod:`lrtune.cli.factories` documents the factories' signatures).
"""

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
from lrtune.lr_free import LR_FREE

MIN_NUM_ITERS = 8  # as lrtune.finder.suggest.MIN_POINTS: fewer points give no verdict
CONFIRM_FRACTION = 0.25  # as lrtune.confirmation.confirm (copied: --help must not import torch)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every subcommand that builds data, model and optimizer."""
    p.add_argument("--dataset", default=None, help="dataset name (default digits, offline)")
    p.add_argument("--data", default=None, metavar="PKG.MODULE:FACTORY",
                   help="your own data instead of --dataset: a factory returning a Splits or "
                        "(train, valid, test) (X, y) pairs or DataLoaders (called with seed= "
                        "when it takes it)")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's files")
    p.add_argument("--model", default="mlp",
                   help="model name (default mlp: 300-100 ReLU) or PKG.MODULE:FACTORY returning "
                        "an nn.Module (given in_features=, num_classes=, input_shape= when its "
                        "signature names them)")
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


# the defaults of the range test's and the confirmation's options: a value other than these
# is one the user gave, refused where nothing would read it (check_unused)
RANGE_TEST_DEFAULTS = {"start_lr": 1e-7, "end_lr": 10.0, "num_iters": 300, "rule": None}
CONFIRM_DEFAULTS = {"halving": "auto", "choice": "window", "confirm_fraction": CONFIRM_FRACTION}
PLANNED_EPOCHS = 20  # `lrtune find --epochs`: the plan the confirmation takes its share of


def add_range_test_arguments(p: argparse.ArgumentParser) -> None:
    """``--start-lr --end-lr --num-iters --rule``: the range test's sweep and rule."""
    d = RANGE_TEST_DEFAULTS
    p.add_argument("--start-lr", type=positive_float, default=d["start_lr"])
    p.add_argument("--end-lr", type=positive_float, default=d["end_lr"])
    p.add_argument("--num-iters", type=bounded_int(MIN_NUM_ITERS, MAX_NUM_ITERS),
                   default=d["num_iters"],
                   help=f"optimizer steps ({MIN_NUM_ITERS} to {MAX_NUM_ITERS:,}, "
                        f"default {d['num_iters']})")
    p.add_argument("--rule", default=d["rule"], help="suggestion rule (default: the measured best)")


def check_unused(args, defaults: dict, why: str) -> None:
    """A UsageError for the first option of ``defaults`` given a value other than its default
    (so set by the user) where nothing reads it: ``why`` says what it needs."""
    for name, default in defaults.items():
        if getattr(args, name, default) != default:
            raise UsageError(f"--{name.replace('_', '-')} {why}")


def check_range_test_options(args) -> str:
    """The rule to use; a UsageError for a bad rule or range."""
    from lrtune.finder import RULES
    from lrtune.finder.suggest import DEFAULT_RULE

    if args.end_lr <= args.start_lr:
        raise UsageError(
            f"--end-lr ({args.end_lr}) must be greater than --start-lr ({args.start_lr})")
    rule = args.rule or DEFAULT_RULE
    if rule not in RULES:
        raise UsageError(f"unknown --rule {rule!r}; choose from {', '.join(RULES)}")
    return rule


def add_confirm_arguments(p: argparse.ArgumentParser, *, with_epochs: bool = True,
                          automatic: bool = False) -> None:
    """``--confirm [K]``: check K rates of the range test's bracket by short real training;
    ``automatic`` (``lrtune train --lr auto``) adds ``--no-confirm``."""
    p.add_argument("--confirm", type=bounded_int(2, MAX_CONFIRM), nargs="?", const=8, default=None,
                   metavar="K",
                   help="train K rates (default 8) inside the range test's bracket at once "
                        "(vectorised) on a short budget and pick the best by validation"
                        + ("; --lr auto always does this (unless --no-confirm): --confirm K "
                           "sets K" if automatic else ""))
    if automatic:
        p.add_argument("--no-confirm", action="store_true",
                       help="--lr auto: skip the confirmation (the range test's rate alone, "
                            "or an error when it is inconclusive)")
    if with_epochs:  # `lrtune train` has its own --epochs
        p.add_argument("--epochs", type=positive_int, default=PLANNED_EPOCHS,
                       help="planned training epochs; --confirm trains --confirm-fraction of "
                            "their steps (twice that after an inconclusive range test)")
    p.add_argument("--halving", choices=("auto", "on", "off"), default=CONFIRM_DEFAULTS["halving"],
                   help="successive halving in the confirmation: stop rates clearly behind the "
                        "best at a quarter and half of its budget (auto, the default: on, also "
                        "under a schedule)")
    p.add_argument("--choice", choices=("window", "final"), default=CONFIRM_DEFAULTS["choice"],
                   help="how the confirmation picks: window = mean validation loss over the "
                        "last quarter of its evaluations, final = the last evaluation's metric "
                        "(the lowest rate within noise of the best, either way)")
    p.add_argument("--confirm-fraction", type=positive_float, default=CONFIRM_FRACTION,
                   help=f"share of the planned steps the confirmation trains after a "
                        f"conclusive range test, twice that (at most all) after an "
                        f"inconclusive one (default {CONFIRM_FRACTION})")


def sweep_choices(args) -> dict:
    """The confirmation's ``halving=`` and ``choice=`` from ``--halving`` and ``--choice``."""
    return {"halving": {"on": True, "off": False}.get(args.halving, args.halving),
            "choice": args.choice}


def build_setup(args):
    """Data splits, model, optimizer and loss from the shared options."""
    import torch

    from lrtune.cli.factories import (
        check_model_fits,
        is_factory,
        model_from_factory,
        splits_from_factory,
    )
    from lrtune.data import load_dataset
    from lrtune.models import build_model
    from lrtune.training.setup import loss_for, make_optimizer

    seed_everything(args.seed)
    data = getattr(args, "data", None)
    if is_factory(data):
        splits = splits_from_factory(data, args.seed)
    else:
        splits = load_dataset(args.dataset, seed=args.seed, data_dir=args.data_dir)
    if is_factory(args.model):
        model = model_from_factory(args.model, splits).to(args.device)
    else:
        model = build_model(args.model, splits.in_features, splits.n_outputs,
                            input_shape=splits.input_shape).to(args.device)
    try:
        optimizer = make_optimizer(args.optimizer, model.parameters(), lr=1.0,
                                   momentum=args.momentum, weight_decay=args.weight_decay,
                                   nesterov=args.nesterov)
    except ImportError as exc:  # a learning-rate-free optimizer's package is not installed
        raise UsageError(str(exc)) from None
    loss_fn = loss_for(splits)
    if is_factory(data) or is_factory(args.model):
        check_model_fits(model, splits, loss_fn, args.device, data, args.model)
    return splits, model, optimizer, loss_fn, torch.device(args.device)
