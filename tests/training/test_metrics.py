import pytest
import torch
import torchmetrics
from sklearn import metrics as skm

from lrtune.training.callbacks.base import construction_mode, resolve_mode
from lrtune.training.metrics import metric_direction, resolve_metrics


def _epoch_value(metric, output, target, batch_size):
    metric.reset()
    for start in range(0, len(target), batch_size):
        metric.update(output[start:start + batch_size], target[start:start + batch_size])
    return metric.compute()


@pytest.fixture(scope="module")
def classified():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (150,), generator=gen)
    logits = torch.randn(150, 4, generator=gen, dtype=torch.float64)
    logits[torch.arange(150), target] += 1.0  # better than chance, far from perfect
    return logits, target


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_classification_metrics_equal_scikit_learn(classified, batch_size):
    logits, target = classified
    probs, pred = logits.softmax(dim=1).numpy(), logits.argmax(dim=1).numpy()
    metrics = resolve_metrics(["f1", "auroc", "accuracy", "precision", "recall", "mcc"])
    expected = {
        "f1": skm.f1_score(target, pred, average="macro"),
        "auroc": skm.roc_auc_score(target, probs, multi_class="ovr"),
        "accuracy": skm.accuracy_score(target, pred),
        "precision": skm.precision_score(target, pred, average="macro"),
        "recall": skm.recall_score(target, pred, average="macro"),
        "mcc": skm.matthews_corrcoef(target, pred),
    }
    for name, metric in metrics.items():
        assert _epoch_value(metric, logits, target, batch_size) == pytest.approx(
            expected[name], abs=1e-6), name


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_regression_metrics_equal_scikit_learn(batch_size):
    gen = torch.Generator().manual_seed(1)
    target = torch.randn(150, 3, generator=gen, dtype=torch.float64)
    output = target + 0.7 * torch.randn(150, 3, generator=gen, dtype=torch.float64)
    metrics = resolve_metrics(["r2", "mse", "rmse", "mae"])
    expected = {
        "r2": skm.r2_score(target, output),
        "mse": skm.mean_squared_error(target, output),
        "rmse": skm.root_mean_squared_error(target, output),
        "mae": skm.mean_absolute_error(target, output),
    }
    for name, metric in metrics.items():
        assert _epoch_value(metric, output, target, batch_size) == pytest.approx(
            expected[name], abs=1e-6), name


def test_r2_of_a_single_output_with_flat_targets_in_float32():
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(100, generator=gen)
    output = (target + 0.5 * torch.randn(100, generator=gen)).unsqueeze(1)  # (N, 1) model
    r2 = resolve_metrics(["r2"])["r2"]
    expected = skm.r2_score(target.double(), output.squeeze(1).double())
    assert _epoch_value(r2, output, target, 7) == pytest.approx(expected, abs=1e-5)


def test_binary_outputs_and_one_hot_targets():
    gen = torch.Generator().manual_seed(3)
    target = torch.randint(0, 2, (90,), generator=gen)
    logit = torch.randn(90, generator=gen, dtype=torch.float64) + (target - 0.5)
    metrics = resolve_metrics(["auroc", "f1", "accuracy"])
    for shape in [(90,), (90, 1)]:  # logits of a one-unit model, targets as BCE takes them
        values = {n: _epoch_value(m, logit.reshape(shape), target.double().reshape(shape), 1)
                  for n, m in metrics.items()}
        assert values["auroc"] == pytest.approx(skm.roc_auc_score(target, logit), abs=1e-6)
        pred = (logit > 0).long()
        assert values["f1"] == pytest.approx(skm.f1_score(target, pred), abs=1e-6)
        assert values["accuracy"] == pytest.approx(skm.accuracy_score(target, pred), abs=1e-6)
    # today's accuracy on one-hot targets: the argmax of the row
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 1.0]])
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 0, 2]), 3).float()
    assert _epoch_value(resolve_metrics("accuracy")["accuracy"], logits, one_hot, 2) == \
        pytest.approx(2 / 3)


def test_top5_counts_a_hit_anywhere_in_the_five_largest_logits():
    logits = torch.arange(7.0).repeat(4, 1)  # classes 2..6 are the top five of every row
    target = torch.tensor([6, 2, 1, 0])
    assert _epoch_value(resolve_metrics(["top5"])["top5"], logits, target, 3) == 0.5
    with pytest.raises(ValueError, match="metric 'top5' needs at least 5 classes, the outputs "
                                         "have 3"):
        resolve_metrics(["top5"])["top5"].update(torch.zeros(2, 3), torch.zeros(2).long())


def test_torchmetrics_objects_and_callables():
    gen = torch.Generator().manual_seed(4)
    output = torch.randn(50, 3, generator=gen, dtype=torch.float64)
    target = torch.randint(0, 3, (50,), generator=gen)

    def error_rate(out, tgt):
        return (out.argmax(dim=1) != tgt).float().mean()

    metrics = resolve_metrics({
        "kappa": torchmetrics.CohenKappa(task="multiclass", num_classes=3),
        "error": error_rate,
        "macro_f1": "f1",
    })
    assert [m.higher_is_better for m in metrics.values()] == [True, None, True]
    pred = output.argmax(dim=1)
    assert _epoch_value(metrics["kappa"], output, target, 7) == pytest.approx(
        skm.cohen_kappa_score(target, pred), abs=1e-6)
    # a per-sample mean callable is exact when weighted by batch size (7 does not divide 50)
    assert _epoch_value(metrics["error"], output, target, 7) == pytest.approx(
        1 - skm.accuracy_score(target, pred), abs=1e-6)
    assert _epoch_value(metrics["macro_f1"], output, target, 7) == pytest.approx(
        skm.f1_score(target, pred, average="macro"), abs=1e-6)
    # one batch's value leaves the epoch's state alone
    metrics["macro_f1"](output[:5], target[:5])
    assert metrics["macro_f1"].compute() == pytest.approx(
        skm.f1_score(target, pred, average="macro"), abs=1e-6)


def test_bad_metric_specs():
    with pytest.raises(ValueError, match="unknown metric 'f2'; choose from accuracy, f1"):
        resolve_metrics(["f2"])
    with pytest.raises(ValueError, match="metric 'x' must be a name, a torchmetrics Metric or a "
                                         "callable, got int"):
        resolve_metrics({"x": 3})
    with pytest.raises(ValueError, match="got a MeanMetric without a name"):
        resolve_metrics([torchmetrics.MeanMetric()])
    with pytest.raises(ValueError, match="other than 'loss', got 'loss'"):
        resolve_metrics({"loss": "mse"})
    with pytest.raises(ValueError, match="metric 'r2' has no data"):
        resolve_metrics(["r2"])["r2"].compute()
    vector = resolve_metrics({"v": lambda o, t: o.mean(dim=0)})["v"]
    with pytest.raises(ValueError, match=r"metric 'v' must return one number per batch, got "
                                         r"shape \(3,\)"):
        vector.update(torch.zeros(4, 3), torch.zeros(4))


@pytest.mark.parametrize("name", [
    "valid_r2", "valid_auroc", "valid_iou", "valid_dice", "valid_map", "valid_top5",
    "valid_bleu", "valid_kappa", "valid_mcc", "valid_spearman", "valid_accuracy", "val_acc",
    "train_f1", "valid_precision", "valid_recall", "pearson", "r2_score", "mean_iou",
    "val_top3_accuracy", "map@5", "valid_average_precision", "neg_mean_squared_error",
    "recall_at_fpr_0.1", "f1_score",
])
def test_higher_is_better_names(name):
    assert metric_direction(name) == "max"


@pytest.mark.parametrize("name", [
    "valid_loss", "train_loss", "valid_mse", "valid_mae", "valid_rmse", "valid_mape", "mape",
    "miss_rate", "valid_miss_rate_at_5", "miss_rate_top", "fpr", "valid_fnr", "perplexity",
    "top1_error", "valid_error", "false_positive_rate", "loss_ema", "accuracy_loss",
])
def test_lower_is_better_names(name):
    assert metric_direction(name) == "min"


@pytest.mark.parametrize("name", ["valid_score", "mapping", "valid_custom", "at_f1"])
def test_unknown_or_contradictory_names_ask_for_a_mode(name):
    with pytest.raises(ValueError, match=f"cannot tell whether '{name}' is better high or low; "
                                         "pass mode='min' or mode='max'"):
        resolve_mode("auto", name)
    assert metric_direction(name, strict=False) is None
    assert resolve_mode("max", name) == "max"


def test_the_metric_object_decides_over_the_name():
    metrics = resolve_metrics({"error": torchmetrics.R2Score(), "score": "mse"})
    assert metric_direction("valid_error", metrics) == "max"  # the table alone says min
    assert metric_direction("train_score", metrics) == "min"
    assert metric_direction("score", metrics) == "min"


def test_construction_mode_defers_only_names_a_metric_may_carry():
    assert construction_mode("auto", "valid_r2") == "max"  # provisional, rechecked at begin
    assert construction_mode("auto", "valid_score") is None  # a custom metric may say
    with pytest.raises(ValueError, match="cannot tell whether 'score' is better"):
        construction_mode("auto", "score")  # not a metric's log key: unknown forever


def test_accuracy_is_exact_and_bounded_over_a_long_pass():
    gen = torch.Generator().manual_seed(1)
    target = torch.randint(0, 3, (2500,), generator=gen)
    logits = torch.randn(2500, 3, generator=gen)
    metric = resolve_metrics("accuracy")["accuracy"]
    value = _epoch_value(metric, logits, target, 1)  # 2500 updates: the per-batch counts fold
    assert value == skm.accuracy_score(target, logits.argmax(dim=1))
    assert len(metric._hits_seen) < 1024


@pytest.mark.parametrize("name", ["accuracy", "f1"])
@pytest.mark.parametrize(("output", "target", "message"), [
    # language-model logits (N, L, C) with (N, L) labels: classes must be in dim 1
    ((4, 6, 10), (4, 6), r"targets must be \(4, 10\).*give the metric logits.transpose\(1, 2\)"),
    # a (N, 2) one-hot target for 3 classes once gave a silent, wrong accuracy
    ((8, 3), (8, 2), r"targets of shape \(8, 2\).*must be \(8,\) \(class indices\) or \(8, 3\)"),
    ((8, 3), (9,), r"targets of shape \(9,\)"),
    ((8, 1), (7,), r"must be 8 values"),
])
def test_mismatched_classification_shapes_are_named(name, output, target, message):
    metric = resolve_metrics([name])[name]
    with pytest.raises(ValueError, match=message):
        metric.update(torch.randn(output), torch.randint(0, 2, target))
