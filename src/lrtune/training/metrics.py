"""Epoch metrics, the direction of monitored values, and the hyperparameters the history records.

An :class:`EpochMetric` accumulates a metric exactly over a whole pass (an epoch or a validation
set), never as a mean of per-batch values: macro-F1, AUROC or R² of a set are not the mean of
their values on its batches. Built-in names map to `torchmetrics <https://torchmetrics.rtfd.io>`_
classes, which also sync their states across ranks under ``torch.distributed`` in ``compute()``.
torchmetrics is imported on first use only (it takes seconds to import).

Built-in names (outputs are logits, as ``nn.CrossEntropyLoss`` / ``nn.BCEWithLogitsLoss`` take;
log-probabilities work too; outputs ``(N,)`` or ``(N, 1)`` are binary, ``(N, C, ...)`` have
``C`` classes, known from the first batch; targets are class indices, or one-hot rows /
probabilities that are argmaxed — 0/1 values thresholded at 0.5 for binary outputs):

=============  ==============================================================  ======
name           torchmetrics class                                              better
=============  ==============================================================  ======
``accuracy``   ``CountAccuracy`` (the value of ``MulticlassAccuracy(micro)``)  max
``f1``         ``MulticlassF1Score(average="macro")`` / ``BinaryF1Score``      max
``precision``  ``MulticlassPrecision(average="macro")`` / ``BinaryPrecision``  max
``recall``     ``MulticlassRecall(average="macro")`` / ``BinaryRecall``        max
``auroc``      ``MulticlassAUROC(average="macro")`` (one-vs-rest of the        max
               softmax) / ``BinaryAUROC`` (of the sigmoid)
``top5``       ``MulticlassAccuracy(top_k=5, average="micro")`` (C >= 5)       max
``mcc``        ``MulticlassMatthewsCorrCoef`` / ``BinaryMatthewsCorrCoef``     max
``mse``        ``MeanSquaredError``                                            min
``rmse``       ``MeanSquaredError(squared=False)`` per output, then the mean   min
``mae``        ``MeanAbsoluteError``                                           min
``mape``       ``MeanAbsolutePercentageError`` (a fraction, not percent)       min
``r2``         ``R2Score`` (the mean over output columns)                      max
=============  ==============================================================  ======

Over several output columns each regression metric is the mean of the columns' values, as
scikit-learn's ``multioutput="uniform_average"``. Regression states are float64 (float32 on
Apple's MPS, which has no float64); a target of ``N`` values is reshaped to an ``(N, 1)`` output.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from lrtune.lr_free import effective_lrs

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A plain per-batch metric ``fn(output, target) -> 0-d tensor`` (averaged per sample)."""

# name -> (binary class, multiclass class, multiclass kwargs) and (class, kwargs, higher is
# better); strings name torchmetrics classes, imported at first use.
_CLASSIFICATION = {
    "accuracy": ("BinaryAccuracy", "MulticlassAccuracy", {"average": "micro"}),
    "f1": ("BinaryF1Score", "MulticlassF1Score", {"average": "macro"}),
    "precision": ("BinaryPrecision", "MulticlassPrecision", {"average": "macro"}),
    "recall": ("BinaryRecall", "MulticlassRecall", {"average": "macro"}),
    "auroc": ("BinaryAUROC", "MulticlassAUROC", {"average": "macro"}),
    "top5": (None, "MulticlassAccuracy", {"average": "micro", "top_k": 5}),
    "mcc": ("BinaryMatthewsCorrCoef", "MulticlassMatthewsCorrCoef", {}),
}
_REGRESSION = {
    "mse": ("MeanSquaredError", {}, False),
    "rmse": ("MeanSquaredError", {"squared": False, "num_outputs": None}, False),
    "mae": ("MeanAbsoluteError", {}, False),
    "mape": ("MeanAbsolutePercentageError", {}, False),
    "r2": ("R2Score", {}, True),
}
BUILTIN_METRICS = (*_CLASSIFICATION, *_REGRESSION)


def _exact_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _floating(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision logits lose ranks in a softmax)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _is_binary(output: torch.Tensor) -> bool:
    return output.dim() == 1 or (output.dim() == 2 and output.shape[1] == 1)


class EpochMetric:
    """A metric accumulated exactly over every batch since :meth:`reset`.

    Build one with :func:`resolve_metrics`. The wrapped ``torchmetrics.Metric`` (``.metric``) of
    a built-in name is created at the first :meth:`update`, when the output's shape tells the
    number of classes; it is kept across resets.

    Attributes:
        name: the metric's name (``valid_<name>`` in the epoch logs).
        higher_is_better: ``True`` / ``False``, or ``None`` when unknown (a plain callable).
    """

    def __init__(self, name: str, *, metric: Any = None,
                 build: Callable[[torch.Tensor], Any] | None = None,
                 adapt: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None,
                 finish: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 higher_is_better: bool | None = None) -> None:
        if metric is None and build is None:
            raise ValueError("EpochMetric needs a torchmetrics metric or a factory")
        self.name = name
        self.metric = metric
        self._build = build
        self._adapt = adapt
        self._finish = finish
        self.higher_is_better = (higher_is_better if higher_is_better is not None
                                 else getattr(metric, "higher_is_better", None))
        self._device: torch.device | None = None
        self._probe: EpochMetric | None = None

    def to(self, device: str | torch.device) -> EpochMetric:
        """Keep the states on ``device`` (the outputs' device by default); returns ``self``."""
        self._device = torch.device(device)
        if self.metric is not None:
            self.metric = self.metric.to(self._device)
        return self

    def reset(self) -> None:
        """Forget every batch seen so far (call before each pass)."""
        if self.metric is not None:
            self.metric.reset()

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: the model's ``output`` and its ``target``."""
        output, target = output.detach(), target.detach()
        if self.metric is None:
            self.metric = self._build(output).to(self._device or output.device)
        args = self._adapt(output, target) if self._adapt else (output, target)
        self.metric.update(*args)

    def compute(self) -> float:
        """The metric over every batch since :meth:`reset` (all ranks' under DDP)."""
        if self.metric is None or not self.metric.update_called:
            raise ValueError(f"metric {self.name!r} has no data: no update() since reset()")
        value = self._computed(self.metric)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"metric {self.name!r} must compute one number, got {shape}")
        return float(value)

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """This batch's value alone, as a 0-d tensor (the epoch's state is untouched; no sync).

        Examples:
            >>> acc = resolve_metrics(["accuracy"])["accuracy"]
            >>> acc(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
            tensor(0.5000)
        """
        if self._probe is None:
            clone = None if self.metric is None else self.metric.clone()
            self._probe = EpochMetric(self.name, metric=clone, build=self._build,
                                      adapt=self._adapt, finish=self._finish,
                                      higher_is_better=self.higher_is_better)
        probe = self._probe
        probe.reset()
        probe.update(output, target)
        probe.metric.sync_on_compute = False  # one rank's batch, never a collective
        return self._computed(probe.metric)

    def _computed(self, metric) -> torch.Tensor:
        value = metric.compute()
        return self._finish(value) if self._finish else value

    def __repr__(self) -> str:
        return f"EpochMetric({self.name!r}, higher_is_better={self.higher_is_better})"


def _classification_targets(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class indices of ``target`` for ``output``; a ValueError when their shapes do not pair
    (e.g. ``(N, L, C)`` language-model logits with ``(N, L)`` labels: the classes go in dim 1)."""
    _check_classification_shapes(output, target)
    if _is_binary(output):
        target = target.reshape(-1)
        return (target > 0.5).long() if target.is_floating_point() else target.long()
    if target.dim() == output.dim():  # one-hot rows or probabilities
        target = target.argmax(dim=1)
    return target.long()


def _check_classification_shapes(output: torch.Tensor, target: torch.Tensor) -> None:
    if _is_binary(output):
        if target.numel() == output.shape[0]:
            return
        expected = f"{output.shape[0]} values"
    else:
        indices = (output.shape[0], *output.shape[2:])
        if tuple(target.shape) in (indices, tuple(output.shape)):
            return
        expected = f"{indices} (class indices) or {tuple(output.shape)} (one-hot)"
    last = output.dim() > 2 and target.shape == output.shape[:-1]  # (N, L, C) logits
    raise ValueError(
        f"classification metrics got outputs of shape {tuple(output.shape)} and targets of shape "
        f"{tuple(target.shape)}: outputs are (N,), (N, 1) or (N, C, ...) with the classes in "
        f"dim 1, so the targets must be {expected}"
        + ("; give the metric logits.transpose(1, 2)" if last else "")
    )


def _classification_metric(name: str) -> EpochMetric:
    import torchmetrics.classification as tmc

    binary, multiclass, kwargs = _CLASSIFICATION[name]

    def build(output: torch.Tensor):
        if _is_binary(output):
            if binary is None:
                raise ValueError(f"metric {name!r} needs (N, C) logits of C >= 5 classes, "
                                 f"got outputs of shape {tuple(output.shape)}")
            return getattr(tmc, binary)(validate_args=False)  # adapt() gives clean inputs
        if output.dim() < 2:
            raise ValueError(f"metric {name!r} needs outputs of shape (N,), (N, 1) or (N, C, ...),"
                             f" got {tuple(output.shape)}")
        classes = output.shape[1]
        if kwargs.get("top_k", 1) > classes:
            raise ValueError(f"metric {name!r} needs at least {kwargs['top_k']} classes, "
                             f"the outputs have {classes}")
        return getattr(tmc, multiclass)(classes, validate_args=False, **kwargs)

    def adapt(output: torch.Tensor, target: torch.Tensor) -> tuple:
        # probabilities where torchmetrics would otherwise decide logits-or-probabilities per
        # batch (binary thresholds, AUROC); the other multiclass metrics only rank the logits
        output = _floating(output)
        if _is_binary(output):
            probs = output.reshape(-1).sigmoid()
        else:
            probs = output.softmax(dim=1) if name == "auroc" else output
        return probs, _classification_targets(output, target)

    return EpochMetric(name, build=build, adapt=adapt, higher_is_better=True)


def _regression_metric(name: str) -> EpochMetric:
    import torchmetrics.regression as tmr

    cls, kwargs, higher = _REGRESSION[name]

    def build(output: torch.Tensor):
        args = dict(kwargs)
        if "num_outputs" in args:  # one RMSE per output column, then their mean (scikit-learn)
            args["num_outputs"] = output.shape[1] if output.dim() == 2 else 1
        return getattr(tmr, cls)(**args).set_dtype(_exact_dtype(output.device))

    def adapt(output: torch.Tensor, target: torch.Tensor) -> tuple:
        if target.shape != output.shape and target.numel() == output.numel():
            target = target.reshape(output.shape)  # (N,) targets of an (N, 1) output
        dtype = _exact_dtype(output.device)
        return output.to(dtype), target.to(dtype)

    return EpochMetric(name, build=build, adapt=adapt, finish=torch.mean, higher_is_better=higher)


@functools.cache
def _weighted_mean_class():
    """A torchmetrics sum/count mean (its ``MeanMetric`` drops the weights when NaNs are kept)."""
    import torchmetrics

    class WeightedMean(torchmetrics.Metric):
        full_state_update = False

        def __init__(self) -> None:
            super().__init__()
            self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
            self.add_state("count", torch.tensor(0.0), dist_reduce_fx="sum")

        def update(self, value: torch.Tensor, weight: int) -> None:
            self.total += value * weight
            self.count += weight

        def compute(self) -> torch.Tensor:
            return self.total / self.count

    return WeightedMean


def _mean_metric(name: str, fn: Metric) -> EpochMetric:
    """A per-batch callable averaged over samples: exact only for per-sample means."""

    def build(output: torch.Tensor):
        return _weighted_mean_class()().set_dtype(_exact_dtype(output.device))

    def adapt(output: torch.Tensor, target: torch.Tensor) -> tuple:
        value = torch.as_tensor(fn(output, target), device=output.device).detach()
        if value.numel() != 1:
            raise ValueError(f"metric {name!r} must return one number per batch, "
                             f"got shape {tuple(value.shape)}")
        size = target.shape[0] if target.dim() else 1
        return value.reshape(()).to(_exact_dtype(output.device)), size

    return EpochMetric(name, build=build, adapt=adapt,
                       higher_is_better=getattr(fn, "higher_is_better", None))


class CountAccuracy(EpochMetric):
    """Top-1 accuracy kept as two running counts (correct, seen): exact over the epoch, as
    torchmetrics' ``MulticlassAccuracy(average="micro")``, without its per-update cost
    (measured: ~8 % of a digits MLP epoch). Binary outputs ``(N,)``/``(N, 1)`` are logits
    (positive above 0); one-hot or probability targets are argmaxed. Under
    ``torch.distributed`` :meth:`compute` sums the counts of every rank.
    """

    def __init__(self, name: str = "accuracy") -> None:
        super().__init__(name, build=lambda output: None, higher_is_better=True)
        self._hits_seen: list[torch.Tensor] = []  # per batch, on the outputs' device: no sync
        self._seen = 0

    def to(self, device: str | torch.device) -> CountAccuracy:
        self._device = torch.device(device)
        return self

    def reset(self) -> None:
        self._hits_seen, self._seen = [], 0

    @staticmethod
    def _hits(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
        if output.dim() == 2 and target.dim() == 1 and output.shape[1] > 1 \
                and len(target) == len(output) \
                and not target.is_floating_point():  # class indices: the common case, 3 ops
            return (output.argmax(dim=1) == target).sum(), len(target)
        output, target = output.detach(), target.detach()
        pred = (output.reshape(-1) > 0).long() if _is_binary(output) else output.argmax(dim=1)
        target = _classification_targets(output, target).reshape(pred.shape)
        return (pred == target).sum(), pred.numel()

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        hits, seen = self._hits(output, target)
        found = self._hits_seen
        found.append(hits)  # summed in compute(), not per batch (one op fewer per batch)
        if len(found) >= 1024:  # bounded memory on long passes
            found[:] = [torch.stack(found).sum()]
        self._seen += seen

    def compute(self) -> float:
        from lrtune import distributed

        hits = self._hits_seen
        correct = float(torch.stack(hits).sum()) if hits else 0.0
        seen = float(self._seen)
        if distributed.is_distributed():  # every rank joins, also one that saw no batch
            counts = torch.tensor([correct, seen], dtype=torch.float64)
            correct, seen = distributed.all_reduce(counts, "sum").tolist()
        if not seen:
            raise ValueError(f"metric {self.name!r} has no data: no update() since reset()")
        return correct / seen

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hits, seen = self._hits(output, target)
        return hits.float() / seen


def _builtin(name: str, key: str) -> EpochMetric:
    if name == "accuracy":
        return CountAccuracy(key)
    if name in _CLASSIFICATION:
        metric = _classification_metric(name)
    elif name in _REGRESSION:
        metric = _regression_metric(name)
    else:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(BUILTIN_METRICS)}, "
                         "or pass a torchmetrics Metric or a callable in a {name: metric} dict")
    metric.name = key
    return metric


def resolve_metrics(
    metrics: str | Sequence[str] | Mapping[str, Any] | None,
) -> dict[str, EpochMetric]:
    """``{name: EpochMetric}`` from names, or from a ``{name: spec}`` mapping.

    A spec is a built-in name (see the module's table), a ``torchmetrics.Metric`` (its
    ``higher_is_better`` gives the direction; it gets the raw outputs and targets), an
    :class:`EpochMetric`, or a plain callable ``fn(output, target) -> 0-d tensor`` whose
    per-batch values are averaged weighted by batch size — exact only for per-sample means such
    as accuracy; give it a ``higher_is_better`` attribute to tell its direction.

    Examples:
        >>> resolve_metrics(["accuracy", "r2"])
        {'accuracy': EpochMetric('accuracy', higher_is_better=True), \
'r2': EpochMetric('r2', higher_is_better=True)}
    """
    if metrics is None:
        return {}
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, Mapping):
        for spec in metrics:
            if not isinstance(spec, str):
                raise ValueError(f"metrics must be names or a {{name: metric}} dict; got a "
                                 f"{type(spec).__name__} without a name")
        metrics = {name: name for name in metrics}
    import torchmetrics

    resolved = {}
    for key, spec in metrics.items():
        if not isinstance(key, str) or not key or key == "loss":
            raise ValueError(f"metric names must be non-empty strings other than 'loss', "
                             f"got {key!r}")
        if isinstance(spec, str):
            resolved[key] = _builtin(spec, key)
        elif isinstance(spec, EpochMetric):
            resolved[key] = spec
        elif isinstance(spec, torchmetrics.Metric):
            resolved[key] = EpochMetric(key, metric=spec)
        elif callable(spec):
            resolved[key] = _mean_metric(key, spec)
        else:
            raise ValueError(f"metric {key!r} must be a name, a torchmetrics Metric or a "
                             f"callable, got {type(spec).__name__}")
    return resolved


# Direction of known names, matched as whole ``_``-separated tokens (``map`` is not ``mape``).
LOWER_IS_BETTER = frozenset({
    "loss", "mse", "mae", "rmse", "mape", "smape", "msle", "rmsle", "nll", "error", "err",
    "miss_rate", "fpr", "fnr", "false_positive_rate", "false_negative_rate", "fdr", "perplexity",
    "ppl", "wer", "cer", "eer", "brier", "hamming", "log_loss", "cross_entropy", "distance",
    "hausdorff", "ece", "calibration_error", "duration",
})
HIGHER_IS_BETTER = frozenset({
    "accuracy", "acc", "f1", "fbeta", "auroc", "auc", "roc_auc", "ap", "average_precision",
    "map", "r2", "iou", "miou", "jaccard", "dice", "top1", "top5", "topk", "bleu", "rouge",
    "meteor", "kappa", "cohen_kappa", "mcc", "spearman", "pearson", "precision", "recall",
    "sensitivity", "specificity", "tpr", "tnr", "true_positive_rate", "psnr", "ssim",
    "explained_variance", "ndcg", "mrr", "hit_rate", "hits",
})
_PREFIXES = ("valid_", "val_", "train_", "test_")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[_\-@./\s]+", name.lower()) if t]


def _table_direction(name: str) -> str | None:
    """``"min"``/``"max"`` from the tables, or None when unknown."""
    tokens = _tokens(name)
    negated = bool(tokens) and tokens[0] == "neg"  # scikit-learn's neg_mean_squared_error
    tokens = tokens[1:] if negated else tokens
    joined = "_".join(tokens)
    if joined in LOWER_IS_BETTER or joined in HIGHER_IS_BETTER:  # the specific name first
        found = ["min" if joined in LOWER_IS_BETTER else "max"]
    else:  # the head: the last known phrase before "at" (top1_error, recall_at_fpr_0.1)
        head = tokens[:tokens.index("at")] if "at" in tokens else tokens
        found = []
        for j in range(1, len(head) + 1):
            for i in range(j):  # phrases ending at j, longest first
                phrase = "_".join(head[i:j])
                if phrase in LOWER_IS_BETTER:
                    found.append("min")
                elif phrase in HIGHER_IS_BETTER or re.fullmatch(r"top\d+", phrase):
                    found.append("max")
                else:
                    continue
                break
    if not found:
        return None
    direction = found[-1]
    return {"min": "max", "max": "min"}[direction] if negated else direction


def metric_name(monitor: str) -> str:
    """The metric a monitored log key names: ``valid_f1`` → ``f1``.

    Examples:
        >>> metric_name("valid_r2"), metric_name("train_loss"), metric_name("r2")
        ('r2', 'loss', 'r2')
    """
    for prefix in _PREFIXES:
        if monitor.startswith(prefix):
            return monitor[len(prefix):]
    return monitor


def metric_direction(monitor: str, metrics: Mapping[str, Any] | None = None,
                     *, strict: bool = True) -> str | None:
    """``"min"`` or ``"max"``: which way ``monitor`` (an epoch-log key) improves.

    First the metric object's ``higher_is_better`` when ``monitor`` is ``valid_<name>``,
    ``train_<name>`` or ``<name>`` of one of ``metrics``; then the tables
    :data:`LOWER_IS_BETTER` / :data:`HIGHER_IS_BETTER`: the whole name, else whole
    ``_``-separated tokens, the last known phrase before an ``at`` token deciding (``map`` is
    max but ``mape`` min, ``miss_rate_at_5`` and ``top1_error`` min, ``recall_at_fpr_0.1`` and
    ``top3_acc`` max); a ``neg_`` prefix flips the direction (``neg_mean_squared_error``).

    Raises:
        ValueError: (``strict``) a name of unknown direction; otherwise None is returned.

    Examples:
        >>> metric_direction("valid_r2"), metric_direction("valid_mape"), metric_direction("map")
        ('max', 'min', 'max')
        >>> metric_direction("miss_rate_at_0.5"), metric_direction("val_top3_acc")
        ('min', 'max')
    """
    name = metric_name(monitor)
    if isinstance(metrics, Mapping) and name in metrics:
        higher = getattr(metrics[name], "higher_is_better", None)
        if higher is not None:
            return "max" if higher else "min"
    direction = _table_direction(name)
    if direction is None and strict:
        raise ValueError(f"cannot tell whether {monitor!r} is better high or low; "
                         "pass mode='min' or mode='max'")
    return direction


def momentum_of(group: dict) -> float | None:
    """SGD's ``momentum``, or Adam's ``betas[0]``, the quantity that plays its role."""
    if "momentum" in group:
        return float(group["momentum"])
    if "betas" in group:
        return float(group["betas"][0])
    return None


def read_hyperparams(optimizer: torch.optim.Optimizer) -> dict[str, list[float]]:
    """``{"lr": [...], "momentum": [...], "weight_decay": [...]}``, one value per param group.

    Keys an optimizer does not have are left out. Optimizers that estimate their own step size
    (Prodigy, D-Adaptation) add ``"effective_lr"``: ``d * lr``, the rate they actually use.

    Examples:
        >>> p = torch.nn.Parameter(torch.zeros(1))
        >>> read_hyperparams(torch.optim.Adam([p], lr=0.01, betas=(0.8, 0.99)))
        {'lr': [0.01], 'momentum': [0.8], 'weight_decay': [0.0]}
    """
    groups = optimizer.param_groups
    values = {"lr": [float(g["lr"]) for g in groups]}
    momenta = [momentum_of(g) for g in groups]
    if all(m is not None for m in momenta):
        values["momentum"] = momenta
    if all("weight_decay" in g for g in groups):
        values["weight_decay"] = [float(g["weight_decay"]) for g in groups]
    effective = effective_lrs(optimizer)  # Prodigy, D-Adaptation: the step they take is d * lr
    if effective is not None:
        values["effective_lr"] = effective
    return values


def flatten_hyperparams(values: dict[str, list[float]]) -> dict[str, float]:
    """One record key per group: ``lr`` for the first, ``lr_group1`` … for the others.

    Examples:
        >>> flatten_hyperparams({"lr": [0.1, 0.01], "momentum": [0.9, 0.9]})
        {'lr': 0.1, 'lr_group1': 0.01, 'momentum': 0.9, 'momentum_group1': 0.9}
    """
    flat = {}
    for name, per_group in values.items():
        for i, value in enumerate(per_group):
            flat[name if i == 0 else f"{name}_group{i}"] = value
    return flat
