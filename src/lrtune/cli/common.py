"""Argument helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import math
import random


class UsageError(Exception):
    """A mistake in the command line or its inputs; printed as one line, exit status 2."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CLI run is repeatable."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- user code may rely on the legacy global RNG
    torch.manual_seed(seed)
