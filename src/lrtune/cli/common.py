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


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text)
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


def momentum_value(text: str) -> float:
    """SGD momentum or Adam's beta1: a number in [0, 1) (1 or more never decays: it diverges)."""
    value = _number(text)
    if not 0 <= value < 1:  # also false for NaN
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1), got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def bounded_int(low: int, high: int):
    """An argparse type for an integer in ``[low, high]``; ``2e9`` is read as 2000000000.

    The upper bound is checked here, before anything of that size is allocated.
    """

    def parse(text: str) -> int:
        try:
            number = float(text) if any(c in text.lower() for c in ".e") else int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if isinstance(number, float) and not (math.isfinite(number) and number.is_integer()):
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        value = int(number)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high:,}, got {text}")
        return value

    return parse


def unit_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a factor that shrinks something)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text}")
    return value
