"""lrtune for skorch: the range test on a ``NeuralNet``, and lrtune schedules as its policies.

Schedules need no glue: :class:`lrtune.TorchScheduler` takes torch's ``last_epoch`` keyword,
so skorch's own callback builds it, per batch or per epoch, for any hyperparameter::

    from skorch.callbacks import LRScheduler
    from lrtune import TorchScheduler
    from lrtune.schedules import one_cycle
    cb = LRScheduler(policy=TorchScheduler, schedules=one_cycle(0.1, 500), step_every="batch")

(``schedules`` may be ``{"lr": ..., "momentum": ...}``; ``group_scales``, ``time_axis`` and
``total_steps`` pass through too.) When training resumes (``partial_fit``), skorch gives every
policy the epoch count as ``last_epoch``, the right step for ``step_every="epoch"`` only;
this module's :class:`LRScheduler` (skorch's, with ``policy=TorchScheduler`` by default)
resumes a per-batch schedule at the batch count instead.

:func:`find_lr` runs the core range test through the net's own ``infer`` and ``get_loss`` (what
skorch's ``train_step_single`` does), on the module, criterion and optimizer the net built.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

try:
    import skorch
    from skorch.dataset import unpack_data
except ImportError:  # pragma: no cover - exercised by monkeypatching in the tests
    raise ImportError(
        "lrtune.integrations.skorch needs skorch: pip install 'lrtune[skorch]'"
    ) from None

from lrtune.finder.range_test import find_lr as _core_find_lr
from lrtune.finder.result import FinderResult
from lrtune.schedules.torch_compat import TorchScheduler

__all__ = ["LRScheduler", "find_lr"]


class LRScheduler(skorch.callbacks.LRScheduler):
    """skorch's ``LRScheduler`` with lrtune's :class:`~lrtune.TorchScheduler` as the policy.

    Same arguments as skorch's (``schedules=`` and the policy's other keywords go in
    ``**kwargs``); the one difference: with ``step_every="batch"`` a resumed run
    (``partial_fit``) continues at the number of batches trained so far, not at the epoch count.

    Examples:
        >>> from lrtune.schedules import cosine
        >>> LRScheduler(schedules=cosine(0.1, steps=4), step_every="batch").simulate(4, 1.0)
        array([0.1       , 0.08535534, 0.05      , 0.01464466])
    """

    def __init__(self, policy=TorchScheduler, monitor="train_loss", event_name="event_lr",
                 step_every="epoch", **kwargs: Any) -> None:
        super().__init__(policy=policy, monitor=monitor, event_name=event_name,
                         step_every=step_every, **kwargs)

    def on_train_begin(self, net, **kwargs: Any) -> None:
        """Build the policy as skorch does, then move a per-batch one to the batch count."""
        super().on_train_begin(net, **kwargs)
        if self.step_every == "batch" and isinstance(self.lr_scheduler_, TorchScheduler):
            self.lr_scheduler_.load_state_dict({"step": self.batch_idx_})


_DEFAULT_NAMES = {"modules": "module", "criteria": "criterion", "optimizers": "optimizer"}


def _components(net, kind: str) -> list[str]:
    """Names of the net's modules, criteria or optimizers (``module``, ``criterion2``, ...)."""
    return list(getattr(net, f"_{kind}", None) or [_DEFAULT_NAMES[kind]])


def _train_batch_size(net, n_samples: int) -> int:
    size = net.get_params().get("iterator_train__batch_size", net.batch_size)
    return n_samples if size == -1 else size


def _as_tensor(value) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor | np.ndarray):
        return torch.as_tensor(value)  # what skorch's to_tensor does: the dtype is kept
    return None


def _data(net, X, y, finder_kwargs: dict[str, Any]):
    """``(X, y)`` tensors when both are arrays (the core batches them in a seeded order, with
    the net's training batch size unless ``batch_size`` is given); else the net's own training
    ``DataLoader`` over ``net.get_dataset(X, y)`` (datasets, dicts, DataFrames, ``y=None``)."""
    X_t, y_t = _as_tensor(X), _as_tensor(y)
    if X_t is None or y_t is None:
        loader = net.get_iterator(net.get_dataset(X, y), training=True)
        if isinstance(getattr(loader, "batch_size", None), int):
            finder_kwargs.setdefault("batch_size", loader.batch_size)  # for the record
        return loader
    param = next((p for p in net.module_.parameters() if p.is_floating_point()), None)
    if X_t.is_floating_point() and param is not None and X_t.dtype != param.dtype:
        raise ValueError(
            f"X is {str(X_t.dtype).removeprefix('torch.')} but the module's parameters are "
            f"{str(param.dtype).removeprefix('torch.')}: convert X (e.g. X.astype(np.float32)), "
            "as net.fit needs too"
        )
    finder_kwargs.setdefault("batch_size", _train_batch_size(net, len(X_t)))
    return X_t, y_t


def find_lr(net, X, y=None, *, apply: bool = False, **finder_kwargs: Any) -> FinderResult:
    """Run lrtune's range test on a skorch ``NeuralNet`` and return the core's result.

    Each step is skorch's own training step: ``net.get_loss(net.infer(Xi), yi, X=Xi,
    training=True)``, so a ``NeuralNetClassifier``'s log of its probabilities under
    ``NLLLoss``, a custom ``get_loss`` or a dict ``X`` count exactly as in ``net.fit``. The
    rate sweeps ``net.optimizer_`` (every param group keeps its ratio to the first). Weights
    and optimizer state of all the net's modules and criteria are put back afterwards
    (``restore=True``, the default); the net's history and callbacks are not touched, so
    callbacks such as ``GradientNormClipping`` do not run: pass ``clip_grad_norm=...`` instead.

    Args:
        net: a ``skorch.NeuralNet`` (classifier, regressor, ...), initialised or not
            (``net.initialize()`` is called when needed).
        X, y: what ``net.fit`` accepts. NumPy arrays and tensors are batched by the core in a
            seeded order with the net's training batch size (``batch_size=`` overrides it);
            anything else (a ``Dataset``, a dict, ``y=None``) goes through the net's own
            training iterator, ``net.get_iterator(net.get_dataset(X, y), training=True)``.
            ``val_data=(X_valid, y_valid)`` may be NumPy arrays too.
        apply: when the test suggests a rate, set it: every param group of ``net.optimizer_``
            gets its own suggestion (the groups keep their ratios, frozen ones stay at 0) and
            ``net.lr`` (``net.set_params(lr=...)``) that of the group it sets, the parameters
            no ``optimizer__param_groups`` pattern matched: the rate the next ``net.fit``
            starts from (groups with an ``lr`` of their own start from theirs).
        **finder_kwargs: passed to :func:`lrtune.find_lr` (``start_lr``, ``end_lr``,
            ``num_iters``, ``rule``, ``val_data``, ``clip_grad_norm``, ``seed``, ...).

    Returns:
        The :class:`~lrtune.FinderResult` of :func:`lrtune.find_lr`.

    Raises:
        ValueError: the net has several optimizers, or X's float dtype is not the module's.
    """
    if not isinstance(net, skorch.NeuralNet):
        raise TypeError(f"net must be a skorch NeuralNet, got {type(net).__name__}")
    if not net.initialized_:
        net.initialize()
    optimizers = _components(net, "optimizers")
    if optimizers != ["optimizer"]:
        raise ValueError(f"find_lr sweeps one optimizer; this net has {', '.join(optimizers)}")
    net.check_data(X, y)
    data = _data(net, X, y, finder_kwargs)
    val = finder_kwargs.get("val_data")
    if isinstance(val, tuple | list) and all(isinstance(v, np.ndarray | torch.Tensor) for v in val):
        finder_kwargs["val_data"] = tuple(map(_as_tensor, val))
    # every module and criterion the net built: train() and restore reach all of them
    parts = nn.ModuleDict({name: part for name in _components(net, "modules")
                           + _components(net, "criteria")
                           if isinstance(part := getattr(net, name + "_"), nn.Module)})

    def step(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        Xi, yi = unpack_data(batch)
        y_pred = net.infer(Xi)
        return {"loss": net.get_loss(y_pred, yi, X=Xi, training=True),
                "output": y_pred, "target": yi}

    result = _core_find_lr(parts, net.optimizer_, data=data, step=step, **finder_kwargs)
    if apply and result.suggested_lr is not None:
        # set_params(lr=) writes one rate to every group: the last is skorch's group of the
        # parameters no optimizer__param_groups pattern matched, the one net.lr sets on a refit;
        # then every group gets its own suggestion (ratios kept, frozen groups at 0)
        lrs = result.suggested_lrs or [result.suggested_lr]
        net.set_params(lr=lrs[-1])
        result.apply(net.optimizer_)
    return result
