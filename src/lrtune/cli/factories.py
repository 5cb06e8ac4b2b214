"""``--model pkg.module:factory`` and ``--data pkg.module:factory``: your own model and data.

Signatures:

- **model factory**: returns an ``nn.Module``. It is called with no arguments, or with those
  of ``in_features`` (inputs per sample, flattened), ``num_classes`` (the outputs: classes, or
  regression targets) and ``input_shape`` (one sample's shape) that its signature names.
- **data factory**: called with no arguments (or ``seed=`` when it takes ``seed``); returns an
  :class:`lrtune.data.Splits`, or a ``(train, valid, test)`` tuple whose parts are ``(X, y)``
  tensor pairs or DataLoaders of ``(x, y)`` batches (read once into memory; the CLI batches
  them with ``--batch-size``). Integer targets mean classification, float targets regression.

The module is imported from the current folder or ``sys.path``. Any failure to import, find or
call the factory, or a wrong return type, is one
:class:`~lrtune.cli.common.UsageError` line naming the option.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from lrtune.cli.common import UsageError


def is_factory(text: str | None) -> bool:
    """Whether an option names a factory (``pkg.module:name``) rather than a registry entry."""
    return bool(text) and ":" in text


def load_factory(spec: str, option: str) -> Callable:
    """The callable ``spec`` (``pkg.module:attr``) names, or a UsageError naming ``option``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{option} {spec!r}: expected pkg.module:factory")
    here = os.getcwd()  # "importable from the current folder", also for the installed
    if here not in sys.path:  # `lrtune` command, whose sys.path does not hold it (python -m does)
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or any error the module raises as it loads
        raise UsageError(f"{option} {spec!r}: cannot import {module_name!r} "
                         f"({type(exc).__name__}: {exc})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{option} {spec!r}: module {module_name!r} has no attribute "
                             f"{attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"{option} {spec!r}: {attr!r} is not callable")
    return target


def _call(factory: Callable, spec: str, option: str, offered: dict[str, Any]):
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    kwargs = {k: v for k, v in offered.items() if k in params}
    try:
        return factory(**kwargs)
    except Exception as exc:
        raise UsageError(f"{option} {spec!r} failed: {type(exc).__name__}: {exc}") from None


def model_from_factory(spec: str, splits):
    """The ``nn.Module`` the model factory ``spec`` builds for ``splits``."""
    from torch import nn

    factory = load_factory(spec, "--model")
    model = _call(factory, spec, "--model", {
        "in_features": splits.in_features, "num_classes": splits.n_outputs,
        "input_shape": tuple(splits.input_shape)})
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {spec!r} returned {type(model).__name__}, not an nn.Module")
    return model


def splits_from_factory(spec: str, seed: int):
    """The :class:`~lrtune.data.Splits` the data factory ``spec`` returns (or builds)."""
    from lrtune.data.splits import Splits

    factory = load_factory(spec, "--data")
    data = _call(factory, spec, "--data", {"seed": seed})
    if isinstance(data, Splits):
        return data
    if not (isinstance(data, tuple | list) and len(data) == 3):
        what = (f"a {type(data).__name__} of {len(data)}" if isinstance(data, tuple | list)
                else type(data).__name__)
        raise UsageError(f"--data {spec!r} returned {what}; expected a Splits or "
                         "a (train, valid, test) tuple of (X, y) pairs or DataLoaders")
    parts = [_as_pair(part, name, spec) for part, name in zip(data, ("train", "valid", "test"),
                                                               strict=True)]
    y = parts[0][1]
    task = "regression" if y.is_floating_point() else "classification"
    if task == "classification":  # int32 (numpy's default on some platforms) -> what CE needs
        parts = [(X, t.long()) for X, t in parts]
    else:  # one target per sample: (N,) -> (N, 1), the shape of a num_classes=1 model's output
        parts = [(X, t.unsqueeze(1) if t.dim() == 1 else t) for X, t in parts]
    if task == "classification":  # every split's classes count, not only the training set's
        n = max(int(p[1].max()) for p in parts) + 1
        class_names = [str(i) for i in range(n)]
    else:
        class_names = None
    return Splits(name=spec, train=parts[0], valid=parts[1], test=parts[2], task=task,
                  class_names=class_names)


def check_model_fits(model, splits, loss_fn, device, data: str | None, model_spec: str) -> None:
    """Run the model and the loss on two samples of every split, so a factory's model that does
    not fit its data is one :class:`UsageError` line naming the options and the split, before
    the range test or training starts (not a traceback from inside it).

    Regression outputs must have the targets' shape: MSE would broadcast ``(N, 1)`` against
    ``(N,)`` into an ``(N, N)`` loss and train on it without a word.
    """
    from lrtune.steps import first_line, primary_output, probing

    names = " and ".join(f"{o} {s!r}" for o, s in (("--data", data), ("--model", model_spec))
                         if is_factory(s))
    with probing(model):
        for name in ("train", "valid", "test"):
            X, y = (t[:2].to(device) for t in getattr(splits, name))
            try:
                out = primary_output(model(X))
                if splits.task == "regression" and tuple(out.shape) != tuple(y.shape):
                    raise ValueError(f"the model outputs shape {tuple(out.shape[1:])} per "
                                     f"sample, the targets have {tuple(y.shape[1:])}")
                if splits.task == "classification" and out.dim() == 2 \
                        and out.shape[1] < splits.n_outputs:
                    raise ValueError(f"the model outputs {out.shape[1]} class scores, the "
                                     f"data have {splits.n_outputs} classes")
                loss_fn(out, y)
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                raise UsageError(f"{names}: the model does not fit the {name} data "
                                 f"(inputs {X.dtype} {tuple(X.shape[1:])} per sample, "
                                 f"targets {y.dtype}): {first_line(exc)}") from None


def _as_pair(part, name: str, spec: str):
    """``(X, y)`` tensors from a pair or a DataLoader of ``(x, y)`` batches."""
    import torch

    if isinstance(part, tuple | list) and len(part) == 2 and all(
            isinstance(t, torch.Tensor) for t in part):
        X, y = part
    elif isinstance(part, torch.utils.data.DataLoader):
        try:
            batches = [(b[0], b[1]) for b in part]
            X, y = (torch.cat([b[i] for b in batches]) for i in (0, 1))
        except Exception as exc:
            raise UsageError(f"--data {spec!r}: the {name} DataLoader must yield (x, y) tensor "
                             f"batches ({type(exc).__name__}: {exc})") from None
    else:
        what = type(part).__name__
        if isinstance(part, tuple | list):  # e.g. numpy arrays: say what the pair holds
            what = f"a {what} of {', '.join(type(t).__name__ for t in part)}"
        raise UsageError(f"--data {spec!r}: {name} is {what}, not an (X, y) pair of tensors or "
                         "a DataLoader (torch.as_tensor converts arrays)")
    if len(X) != len(y) or len(X) == 0:
        raise UsageError(f"--data {spec!r}: {name} has {len(X)} inputs and {len(y)} targets")
    return X, y
