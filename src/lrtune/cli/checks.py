"""Checks the subcommands share, run before anything is loaded, trained or written.

Each raises :class:`~lrtune.cli.common.UsageError` with one line naming the option and the
value, so a mistake costs nothing (no training, no file touched).
"""

from __future__ import annotations

import os
from pathlib import Path

from lrtune.cli.common import UsageError

MAX_NUM_ITERS = 1_000_000  # find: one loss per step (a longer range test is never needed)
MAX_SCHEDULE_STEPS = 1_000_000  # schedule: the preview holds every value in memory
MAX_CONFIRM = 64  # --confirm K: K copies of the model train at once
DEFAULT_DATASET = "digits"  # --dataset when neither it nor --data is given (offline)


def check_output_path(text: str, flag: str = "--out", *, folder: bool = True) -> Path:
    """The path a subcommand writes to: not empty, of the right kind, in a writable place.

    Args:
        text: the option's value.
        flag: the option's name, for the message.
        folder: a folder is expected (else a file).

    Examples:
        >>> check_output_path("")
        Traceback (most recent call last):
        ...
        lrtune.cli.common.UsageError: --out is empty; give a folder
    """
    kind = "folder" if folder else "file"
    if not str(text).strip():
        raise UsageError(f"{flag} is empty; give a {kind}")
    path = Path(text).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {text} is a file, not a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{flag} {text} is a folder; give a file name")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the first ancestor that exists: the one that gets written
    if not existing.is_dir():
        raise UsageError(f"{flag} {text}: {existing} is a file, so nothing can be written under it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {text}: {existing} is not writable")
    return path


def check_device(text: str, flag: str = "--device") -> None:
    """A device this torch can use: ``cpu``, ``cuda``/``cuda:N`` with CUDA, ``mps``, ..."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} {text!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as exc:  # AssertionError: "not compiled with CUDA"
        from lrtune.steps import first_line

        raise UsageError(f"{flag} {text} is not available here (torch {torch.__version__}: "
                         f"{first_line(exc)})") from None


def check_dataset(name: str, data_dir: str | None) -> None:
    """A known dataset, and a ``--data-dir`` only where one is read, naming an existing folder."""
    from lrtune.data import DATASETS, OFFLINE_DATASETS

    if name not in DATASETS:
        raise UsageError(f"unknown --dataset {name!r}; choose from {', '.join(sorted(DATASETS))}")
    if data_dir is None:
        return
    if name in OFFLINE_DATASETS:
        raise UsageError(f"--data-dir is not used by --dataset {name} (built in, no files); "
                         "drop --data-dir")
    if not Path(data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such folder")


def check_model_options(args) -> None:
    """``--dataset/--data-dir/--model/--optimizer/--momentum/--nesterov/--device`` together."""
    from lrtune.cli.factories import is_factory
    from lrtune.models import MODELS

    data = getattr(args, "data", None)
    if data is not None and not is_factory(data):
        raise UsageError(f"--data {data!r}: expected pkg.module:factory (registry datasets "
                         "go to --dataset)")
    if data is not None and args.dataset is not None:
        raise UsageError(f"--data {data!r} and --dataset {args.dataset!r} name two datasets: "
                         "give one")
    if data is None:
        args.dataset = args.dataset or DEFAULT_DATASET  # None: not given (so --data may be)
        check_dataset(args.dataset, args.data_dir)
    if not is_factory(args.model) and args.model not in MODELS:
        raise UsageError(f"unknown --model {args.model!r}; choose from {', '.join(sorted(MODELS))}")
    if args.nesterov and (args.optimizer != "sgd" or not args.momentum):
        raise UsageError("--nesterov needs --optimizer sgd and a --momentum > 0")
    check_device(args.device)


def check_confirm_options(args) -> None:
    # `train --lr auto` confirms unless --no-confirm; `find` only with --confirm
    confirming = args.confirm or (getattr(args, "lr", None) == "auto"
                                  and not getattr(args, "no_confirm", False))
    if confirming and args.confirm_fraction > 1:
        raise UsageError(f"--confirm-fraction must be in (0, 1], got {args.confirm_fraction}")


def check_train_options(args) -> None:
    """Everything about one ``lrtune train`` namespace that can be checked without data.

    ``lrtune compare`` runs it on every recipe before training any; ``demo`` on its recipe.
    """
    from lrtune.data.augment import AUGMENTATIONS
    from lrtune.schedules.presets import NAMES

    check_output_path(args.out)
    check_model_options(args)
    if args.confirm and args.lr != "auto":
        raise UsageError("--confirm checks the range test's bracket: it needs --lr auto")
    if args.confirm and getattr(args, "no_confirm", False):
        raise UsageError("--confirm and --no-confirm contradict each other: give one")
    from lrtune.cli.setup import (
        CONFIRM_DEFAULTS,
        RANGE_TEST_DEFAULTS,
        check_range_test_options,
        check_unused,
    )

    if args.lr == "auto":
        check_range_test_options(args)
        if getattr(args, "no_confirm", False):
            check_unused(args, CONFIRM_DEFAULTS, "sets the confirmation, which --no-confirm "
                                                 "skips: give one of them")
    else:  # a given rate: no range test, no confirmation would read these
        check_unused(args, {**RANGE_TEST_DEFAULTS, **CONFIRM_DEFAULTS},
                     "sets the range test or the confirmation of --lr auto: it needs --lr auto")
        if getattr(args, "no_confirm", False):
            raise UsageError("--no-confirm skips the confirmation of --lr auto: it needs --lr auto")
    check_confirm_options(args)
    schedule = args.schedule or "constant"
    if schedule not in (*NAMES, "plateau"):
        raise UsageError(f"unknown --schedule {schedule!r}; choose from "
                         f"{', '.join((*NAMES, 'plateau'))}")
    if schedule in ("constant", "plateau"):
        for flag in ("lr_end", "momentum_end"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} is not used by --schedule "
                                 f"{schedule}; choose a schedule that moves it (e.g. linear)")
    if args.augment not in AUGMENTATIONS:
        raise UsageError(f"unknown --augment {args.augment!r}; choose from "
                         f"{', '.join(AUGMENTATIONS)}")
    if args.resume is not None and getattr(args, "overwrite", False):
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: "
                         "give one of them")
