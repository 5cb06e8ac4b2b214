"""PyTorch Lightning: the range test on a ``LightningModule``'s own ``training_step``.

:func:`find_lr` drives the module's ``training_step`` (any batch type) with the optimizer its
``configure_optimizers`` returns, through :func:`lrtune.find_lr`'s step protocol, so the sweep,
the divergence stop, the rules and the :class:`~lrtune.FinderResult` are the core's. Every
param group keeps its ratio to the first (Lightning's own finder sets them all to one rate).
:class:`LRFinder` is the callback form: it runs the test at fit start and applies the suggestion.

Examples:
    >>> import lightning.pytorch as pl
    >>> from lrtune.integrations.lightning import LRFinder
    >>> isinstance(LRFinder(num_iters=100), pl.Callback)
    True
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader

from lrtune import distributed
from lrtune.finder import find_lr as core_find_lr
from lrtune.finder.range_test import base_rate
from lrtune.finder.range_test import scale_lrs as scale_lr
from lrtune.finder.result import FinderResult

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.model_helpers import is_overridden
    from lightning.pytorch.utilities.parsing import (
        lightning_getattr,
        lightning_hasattr,
        lightning_setattr,
    )
    from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
except ImportError as err:  # pragma: no cover - exercised by a test that hides lightning
    raise ImportError("lrtune.integrations.lightning needs PyTorch Lightning: "
                      "pip install 'lrtune[lightning]'") from err

__all__ = ["LRFinder", "find_lr"]

log = logging.getLogger(__name__)
# what the caller may pass on to lrtune.find_lr (the rest is the module's)
_FINDER_ARGS = frozenset(inspect.signature(core_find_lr).parameters) - {
    "model", "optimizer", "loss_fn", "data", "step"}


def find_lr(module: pl.LightningModule, trainer: pl.Trainer | None = None,
            train_dataloaders: Any = None, datamodule: pl.LightningDataModule | None = None, *,
            update_attr: bool = False, attr_name: str = "", **finder_kwargs: Any) -> FinderResult:
    """Run the range test on ``module``'s ``training_step`` and ``configure_optimizers``.

    Without a trainer the module is driven in this process, on the device it is on. With one,
    the test runs inside ``trainer.fit`` (stopped right after it, nothing trained), so the
    trainer's strategy (e.g. ``"ddp"``: every rank gets the same curve), device, mixed
    precision, gradient clipping and ``accumulate_grad_batches`` apply; call it on every rank.
    Either way the module, the optimizer and the RNG are restored afterwards, ``self.log`` is a
    no-op during the test (its points are the result, not logged metrics) and the scheduler is
    left out of the sweep.

    Args:
        module: a ``LightningModule`` with automatic optimisation.
        trainer: optional ``lightning.pytorch.Trainer`` to run the test in.
        train_dataloaders: a ``DataLoader`` (or any re-iterable of batches); by default the
            datamodule's or the module's ``train_dataloader()``.
        datamodule: a ``LightningDataModule`` (``prepare_data``/``setup("fit")`` are called).
        update_attr: write the suggestion (when there is one) to the module's learning-rate
            attribute, as Lightning's ``lr_find(update_attr=True)`` does; scaled as the groups
            are when the first group's rate is not the attribute's (see ``_set_lr_attr``).
        attr_name: that attribute (on the module or its ``hparams``); by default ``lr`` or
            ``learning_rate``, whichever exists.
        **finder_kwargs: passed to :func:`lrtune.find_lr` (``start_lr``, ``end_lr``,
            ``num_iters``, ``rule``, ``precision``, ``accumulation_steps`` …); they override
            what is read from the trainer.

    Returns:
        The core's :class:`~lrtune.FinderResult`.

    Raises:
        ValueError: manual optimisation, not exactly one optimizer, several train
            dataloaders, or no training data.
        TypeError: not a ``LightningModule`` or ``Trainer``, or an argument ``lrtune.find_lr``
            does not take.
        AttributeError: ``update_attr`` and no learning-rate attribute to write.
    """
    _check_module(module)
    _check_finder_kwargs(finder_kwargs)
    if trainer is not None and not isinstance(trainer, pl.Trainer):
        raise TypeError(f"trainer must be a lightning.pytorch.Trainer or None, got "
                        f"{type(trainer).__name__} (pass the data as train_dataloaders=...)")
    if update_attr:
        attr_name = lr_attr_name(module, attr_name)
    if trainer is not None:
        return _find_in_fit(module, trainer, train_dataloaders, datamodule,
                            dict(update_attr=update_attr, attr_name=attr_name, **finder_kwargs))
    if distributed.is_distributed():
        raise ValueError("under torch.distributed pass a Trainer (e.g. strategy='ddp') or use "
                         "the LRFinder callback: without one the gradients are not synchronised")
    data = _one_loader(_train_data(module, train_dataloaders, datamodule))
    try:
        conf = module.configure_optimizers()
    except RuntimeError as error:  # Lightning's "not attached to a Trainer" (self.trainer read)
        if module._trainer is not None:
            raise
        raise RuntimeError(f"{error} (configure_optimizers needs one: pass it, "
                           "find_lr(module, pl.Trainer(...), loader))") from error
    optimizer = _one_optimizer(conf)
    result = _range_test(module, module, optimizer, data, module.training_step, finder_kwargs)
    if update_attr and result.suggested_lr is not None:
        _set_lr_attr(module, attr_name, result.suggested_lr, base_rate(optimizer))
    return result


class LRFinder(pl.Callback):
    """Run the range test at fit start, then train at the suggested rate.

    The optimizer's param groups are all scaled by one factor so that the rate the schedule is
    built on (``initial_lr``; OneCycleLR's ``max_lr``) becomes the suggestion (the groups keep
    their ratios, the schedulers' base rates follow: see :func:`scale_lr`), and with
    ``update_attr`` the module's ``lr``/``learning_rate`` attribute is set too. When the test
    is inconclusive nothing is changed (logged as a warning). A fit resumed from a checkpoint
    (``ckpt_path``) keeps the checkpoint's rates: no test runs. The result is ``result_``.

    Args:
        update_attr: also write the suggestion to the module's learning-rate attribute
            (skipped, not an error, when the module has none and ``attr_name`` is empty).
        attr_name: that attribute; by default ``lr`` or ``learning_rate``.
        **finder_kwargs: passed to :func:`lrtune.find_lr` (``start_lr``, ``num_iters`` …).

    Examples:
        >>> finder = LRFinder(start_lr=1e-5, end_lr=1.0, num_iters=100)
        >>> finder.result_ is None
        True
    """

    def __init__(self, *, update_attr: bool = True, attr_name: str = "",
                 **finder_kwargs: Any) -> None:
        _check_finder_kwargs(finder_kwargs)
        self.update_attr, self.attr_name, self.finder_kwargs = update_attr, attr_name, finder_kwargs
        self.result_: FinderResult | None = None
        self._find_only = False  # find_lr(module, trainer): stop the fit after the test

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _check_module(pl_module)
        if trainer.ckpt_path is not None and not self._find_only:
            return  # resumed: the checkpoint's rates are the ones the run was training at
        attr = (lr_attr_name(pl_module, self.attr_name, required=bool(self.attr_name))
                if self.update_attr else "")
        trainer.fit_loop.setup_data()  # the train dataloader, sampler injected (DDP) as in fit
        strategy = trainer.strategy
        kwargs = {**_trainer_settings(trainer), **self.finder_kwargs}
        self.result_ = _range_test(pl_module, strategy.model, _one_optimizer(trainer.optimizers),
                                   _one_loader(trainer.train_dataloader), strategy.training_step,
                                   kwargs)
        lr, base = self.result_.suggested_lr, base_rate(trainer.optimizers[0])
        if lr is None and trainer.is_global_zero:
            log.warning("lrtune: the range test is inconclusive (%s); the learning rate is left "
                        "as configured", self.result_.reason)
        elif lr is not None and not self._find_only:
            scale_lr(trainer.optimizers[0], lr, [c.scheduler for c in trainer.lr_scheduler_configs])
        if lr is not None and self.update_attr and attr:
            _set_lr_attr(pl_module, attr, lr, base)
        if self._find_only:
            trainer.should_stop = True


def lr_attr_name(module: pl.LightningModule, attr_name: str = "", *,
                 required: bool = True) -> str:
    """The module's learning-rate attribute, found as Lightning's tuner finds it: ``attr_name``
    when given (on the module or its ``hparams``), else ``lr``, else ``learning_rate``.

    Returns ``""`` when there is none and ``required`` is false; raises AttributeError otherwise.
    """
    if attr_name:
        if lightning_hasattr(module, attr_name):
            return attr_name
        raise AttributeError(f"the module has no learning-rate attribute {attr_name!r} "
                             "(looked on the module and on module.hparams)")
    for name in ("lr", "learning_rate"):
        if lightning_hasattr(module, name):
            return name
    if required:
        raise AttributeError("update_attr needs the module (or module.hparams) to have 'lr' or "
                             "'learning_rate'; name another one with attr_name=...")
    return ""


# -- glue -------------------------------------------------------------------------------------
def _set_lr_attr(module: pl.LightningModule, attr: str, lr: float, base: float) -> None:
    """Write the suggestion ``lr`` for the reference group, whose rate was ``base``, to the
    attribute ``configure_optimizers`` builds the rates from: scaled as the groups are, so that
    a first group at a tenth of ``self.lr`` gets ``lr`` again (not a tenth of it)."""
    old = lightning_getattr(module, attr)
    if isinstance(old, int | float) and not isinstance(old, bool) and old > 0 and old != base:
        lr = old * (lr / base)
    lightning_setattr(module, attr, lr)


def _check_module(module: Any) -> None:
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a lightning.pytorch.LightningModule, got "
                        f"{type(module).__name__}")
    if not module.automatic_optimization:
        raise ValueError("the module uses manual optimisation (automatic_optimization = False); "
                         "lrtune's range test drives training_step's returned loss, so it needs "
                         "automatic optimisation")


def _check_finder_kwargs(kwargs: dict[str, Any]) -> None:
    unknown = sorted(set(kwargs) - _FINDER_ARGS)
    if unknown:
        raise TypeError(f"unknown range-test argument(s): {', '.join(unknown)} "
                        f"(lrtune.find_lr takes {', '.join(sorted(_FINDER_ARGS))})")


def _find_in_fit(module, trainer, train_dataloaders, datamodule, kwargs) -> FinderResult:
    """``trainer.fit`` with a find-only :class:`LRFinder` first in line (as Lightning's tuner)."""
    finder = LRFinder(**kwargs)
    finder._find_only = True
    trainer.callbacks = [finder, *trainer.callbacks]
    try:
        trainer.fit(module, train_dataloaders, datamodule=datamodule)
    finally:
        trainer.callbacks = [c for c in trainer.callbacks if c is not finder]
    if finder.result_ is None:  # e.g. the fit was interrupted before on_fit_start
        raise RuntimeError("the range test did not run: trainer.fit ended before fit start")
    return finder.result_


def _trainer_settings(trainer: pl.Trainer) -> dict[str, Any]:
    """What the trainer says about how one step runs, in :func:`lrtune.find_lr`'s words."""
    precision = str(trainer.precision)
    settings: dict[str, Any] = {
        # "-true" precisions (64, bf16, 16) cast the module itself: nothing to autocast
        "precision": "32" if precision.endswith("-true") else precision,
        "accumulation_steps": int(trainer.accumulate_grad_batches),
        "device": trainer.strategy.root_device,
    }
    clip = trainer.gradient_clip_val
    if clip:
        algorithm = str(getattr(trainer.gradient_clip_algorithm, "value",
                                trainer.gradient_clip_algorithm))
        settings["clip_grad_value" if algorithm == "value" else "clip_grad_norm"] = float(clip)
    return settings


def _range_test(module, model, optimizer, data, training_step, kwargs) -> FinderResult:
    """The core's range test with ``training_step`` as the step; ``model`` is what the core
    snapshots and puts in train mode (the DDP wrapper under a DDP strategy)."""
    step = _step(module, training_step, _length(data))
    with _no_logging(module):
        return core_find_lr(model, optimizer, data=data, step=step, **kwargs)


def _step(module, training_step, n_batches: int | None):
    """``step(model, batch)`` for the core: the module's batch hooks, then its training_step
    with a running ``batch_idx`` (restarting each pass, as in an epoch)."""
    with_idx = is_param_in_hook_signature(module.training_step, "batch_idx", min_args=2)
    counter = itertools.count()

    def step(model, batch):
        index = next(counter)
        if n_batches:
            index %= n_batches
        batch = module.on_before_batch_transfer(batch, 0)
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        batch = module.on_after_batch_transfer(batch, 0)
        out = training_step(batch, index) if with_idx else training_step(batch)
        if out is None:
            raise ValueError("training_step returned None (Lightning's 'skip this batch'); the "
                             "range test needs a loss at every step")
        return out

    return step


@contextlib.contextmanager
def _no_logging(module: pl.LightningModule) -> Iterator[None]:
    """``self.log``/``self.log_dict`` do nothing inside: outside a loop they would warn or raise,
    and inside ``fit`` they would record range-test points as the run's metrics."""
    own = {name: vars(module)[name] for name in ("log", "log_dict") if name in vars(module)}

    def quiet(*args: Any, **kwargs: Any) -> None:
        return None

    module.log = module.log_dict = quiet
    try:
        yield
    finally:
        for name in ("log", "log_dict"):
            if name in own:
                setattr(module, name, own[name])
            else:
                delattr(module, name)


def _train_data(module, train_dataloaders, datamodule):
    if isinstance(train_dataloaders, pl.LightningDataModule):
        train_dataloaders, datamodule = None, train_dataloaders
    if train_dataloaders is not None and datamodule is not None:
        raise ValueError("give train_dataloaders or datamodule, not both")
    if train_dataloaders is not None:
        return train_dataloaders
    if datamodule is not None:
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.train_dataloader()
    if is_overridden("train_dataloader", module):
        return module.train_dataloader()
    raise ValueError("no training data: pass train_dataloaders= or datamodule=, or define "
                     "train_dataloader() on the module")


def _one_loader(data: Any) -> Any:
    if isinstance(data, Mapping) or (isinstance(data, list | tuple) and data
                                     and all(isinstance(d, DataLoader) for d in data)):
        raise ValueError(f"the range test needs one train dataloader, got {len(data)} "
                         "(a Lightning CombinedLoader); pass the one to sweep on")
    return data


def _one_optimizer(conf: Any) -> torch.optim.Optimizer:
    """The optimizer in any of ``configure_optimizers``' return forms (the scheduler is left
    out of the sweep): an optimizer, a list of them or of dicts, a dict with ``"optimizer"``,
    or ``([optimizers], [schedulers])``."""
    if isinstance(conf, torch.optim.Optimizer):
        found = [conf]
    elif isinstance(conf, Mapping) and "optimizer" in conf:
        found = [conf["optimizer"]]
    elif isinstance(conf, list | tuple):
        if len(conf) == 2 and all(isinstance(part, list | tuple) for part in conf):
            conf = conf[0]
        found = [_one_optimizer(item) for item in conf]
    else:
        raise ValueError(f"configure_optimizers must return an optimizer (or a dict/list with "
                         f"one), got {type(conf).__name__}")
    if len(found) != 1:
        raise ValueError(f"configure_optimizers returned {len(found)} optimizers; the range test "
                         "(like Lightning's automatic optimisation) drives exactly one")
    return found[0]


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except TypeError:
        return None
