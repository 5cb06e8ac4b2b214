import math

import pytest
import torch
import torchmetrics
from conftest import make_model
from torch import nn

from lrtune.training import Callback, Checkpoint, EarlyStopping, Trainer
from lrtune.training.metrics import resolve_metrics


class FakeTrainer:
    def __init__(self):
        self.model = make_model()
        self.should_stop, self.stop_reason, self.messages = False, None, []


def _run(es, values, key="valid_loss"):
    trainer = FakeTrainer()
    es.on_train_begin(trainer, {})
    for epoch, value in enumerate(values, start=1):
        es.on_epoch_end(trainer, {"epoch": epoch, key: value})
        if trainer.should_stop:
            return trainer, epoch
    return trainer, None


@pytest.mark.parametrize(
    ("kwargs", "values", "stopped", "best_epoch"),
    [
        ({"patience": 0}, [1.0, 0.9, 0.95, 0.5], 3, 2),
        ({"patience": 2}, [1.0, 0.9, 0.95, 0.92, 0.5], 4, 2),
        ({"patience": 2}, [1.0, 0.9, 0.95, 0.8, 0.85, 0.84], 6, 4),
        ({"patience": 1, "min_delta": 0.05}, [1.0, 0.97, 0.9], 2, 1),
        ({"patience": 1, "start_from_epoch": 2}, [1.0, 2.0, 3.0, 3.5], 4, 3),
        ({"patience": 1}, [1.0, math.nan, 0.5], 2, 1),
        ({"patience": 5}, [1.0, 0.9, 0.8], None, 3),
    ],
)
def test_stopping_rules(kwargs, values, stopped, best_epoch):
    es = EarlyStopping(**kwargs)
    trainer, epoch = _run(es, values)
    assert epoch == stopped
    assert es.stopped_epoch_ == stopped
    assert es.best_epoch_ == best_epoch
    assert trainer.should_stop is (stopped is not None)
    if stopped:
        assert trainer.stop_reason == "early_stopping"
        assert f"early stopping at epoch {stopped}: valid_loss has not improved" in \
            trainer.messages[0]


def test_max_mode_for_accuracy():
    es = EarlyStopping("valid_accuracy", patience=1)
    assert es.mode == "max"
    _, epoch = _run(es, [0.5, 0.7, 0.6], key="valid_accuracy")
    assert (epoch, es.best_) == (3, 0.7)


def test_missing_monitor_and_bad_arguments():
    with pytest.raises(ValueError, match="EarlyStopping monitors 'valid_loss', which the epoch "
                                         r"logs do not have \(they have: epoch, train_loss\)"):
        EarlyStopping().on_epoch_end(FakeTrainer(), {"epoch": 1, "train_loss": 0.3})
    with pytest.raises(ValueError, match="patience must be an integer >= 0, got -1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta must be a finite number >= 0, got nan"):
        EarlyStopping(min_delta=math.nan)
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto', got 'up'"):
        EarlyStopping(mode="up")


def test_state_round_trip_keeps_patience_and_cpu_weights():
    es = EarlyStopping(patience=3, restore_best_weights=True)
    _run(es, [1.0, 0.5, 0.7, 0.8])
    assert es.wait_ == 2
    assert all(t.device.type == "cpu" for t in es.best_weights_.values())
    again = EarlyStopping(patience=3, restore_best_weights=True)
    again.on_train_begin(FakeTrainer(), {})
    again.load_state_dict(es.state_dict())
    trainer = FakeTrainer()
    again.on_epoch_end(trainer, {"epoch": 5, "valid_loss": 0.9})
    assert trainer.should_stop
    assert again.stopped_epoch_ == 5


def _trainer_with(data, *callbacks):
    model = make_model()
    return Trainer(model, torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9),
                   nn.CrossEntropyLoss(), callbacks=list(callbacks), device="cpu", verbose=0)


def _weights_after_epoch(trainer, epoch):
    class Keep(Callback):
        def on_epoch_end(self, t, logs, **kwargs):
            if logs["epoch"] == epoch:
                self.weights = {k: v.clone() for k, v in t.model.state_dict().items()}

    keep = Keep()
    trainer.callbacks.append(keep)
    return keep


class Interrupt(Callback):
    def on_epoch_end(self, trainer, logs, **kwargs):
        if logs["epoch"] == 4:
            raise KeyboardInterrupt


@pytest.mark.parametrize("ending", ["completed", "early_stopping", "interrupted"])
def test_restore_best_weights_however_training_ends(data, ending):
    es = EarlyStopping(patience=1 if ending == "early_stopping" else 100,
                       restore_best_weights=True)
    extra = [Interrupt()] if ending == "interrupted" else []
    trainer = _trainer_with(data, es, *extra)
    # make the valid loss worse than the best from epoch 3 on, whatever the training does
    noisy = trainer._evaluate_batches

    def evaluate(batches):
        scores = noisy(batches)
        scores["loss"] = [3.0, 2.0, 1.0, 5.0, 6.0, 7.0][trainer.epoch - 1]
        return scores

    trainer._evaluate_batches = evaluate
    keep = _weights_after_epoch(trainer, 3)
    if ending == "interrupted":
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(*data, epochs=6)
    else:
        trainer.fit(*data, epochs=6)
    assert trainer.stop_reason == ending
    assert es.best_epoch_ == 3
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, keep.weights[name]), name
    assert "restored the weights of epoch 3 (valid_loss 1)" in trainer.messages


def test_valid_r2_is_maximised_and_the_best_epoch_restored():
    # the case: R² rose 0.463 -> 0.547 and the name-guessed "min" kept the worst epoch
    es = EarlyStopping("valid_r2", patience=1, restore_best_weights=True)
    trainer = FakeTrainer()
    trainer.metrics = resolve_metrics(["r2"])
    es.on_train_begin(trainer, {})
    assert es.mode == "max"
    for epoch, r2 in enumerate([0.463, 0.50, 0.547, 0.52, 0.51], start=1):
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.fill_(epoch)  # the weights say which epoch they are from
        es.on_epoch_end(trainer, {"epoch": epoch, "valid_r2": r2})
        if trainer.should_stop:
            break
    es.on_train_end(trainer, {})
    assert (es.stopped_epoch_, es.best_epoch_, es.best_) == (4, 3, 0.547)
    assert all(torch.all(p == 3) for p in trainer.model.parameters())
    assert "restored the weights of epoch 3 (valid_r2 0.547)" in trainer.messages


def test_auto_mode_of_a_custom_metric_comes_from_the_trainer_at_train_begin():
    def agreement(output, target):
        return (output.argmax(dim=1) == target).float().mean()

    es = EarlyStopping("valid_agreement", patience=0)
    assert es.mode is None  # a custom metric's direction is only known at train begin
    trainer = FakeTrainer()
    trainer.metrics = resolve_metrics({"agreement": agreement})
    with pytest.raises(ValueError, match="cannot tell whether 'valid_agreement' is better high "
                                         "or low; pass mode='min' or mode='max'"):
        es.on_train_begin(trainer, {})
    agreement.higher_is_better = True
    trainer.metrics = resolve_metrics({"agreement": agreement})
    es.on_train_begin(trainer, {})
    assert es.mode == "max"
    # the metric object outranks the name table: a torchmetrics R² logged as "error" is max
    trainer.metrics = resolve_metrics({"error": torchmetrics.R2Score()})
    es = EarlyStopping("valid_error")
    assert es.mode == "min"
    es.on_train_begin(trainer, {})
    assert (es.mode, es.best_) == ("max", -math.inf)
    assert EarlyStopping("valid_agreement", mode="min").mode == "min"


def test_unknown_monitor_that_no_metric_can_explain_fails_at_construction(tmp_path):
    for make in (EarlyStopping, lambda m: Checkpoint(tmp_path, monitor=m)):
        with pytest.raises(ValueError, match="cannot tell whether 'score' is better high or "
                                             "low; pass mode='min' or mode='max'"):
            make("score")


def test_checkpoint_resolves_auto_mode_against_the_trainer_metrics(tmp_path):
    ckpt = Checkpoint(tmp_path, monitor="valid_auroc")
    assert ckpt.mode == "max"
    trainer = FakeTrainer()
    trainer.metrics = resolve_metrics({"auroc": torchmetrics.MeanSquaredError()})
    ckpt.on_train_begin(trainer, {})
    assert (ckpt.mode, ckpt.best_) == ("min", math.inf)


@pytest.mark.parametrize("make", [lambda d: EarlyStopping("valid_loss", patience=2),
                                  lambda d: Checkpoint(d / "ck")], ids=["early", "checkpoint"])
def test_a_valid_monitor_without_validation_data_fails_before_training(tmp_path, make):
    # it failed at the end of the first epoch, after that epoch's training
    model = make_model()
    batches = []

    class Count(Callback):
        def on_batch_end(self, trainer, logs):
            batches.append(1)

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      callbacks=[make(tmp_path), Count()], verbose=0)
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    with pytest.raises(ValueError, match=r"monitors 'valid_loss', but fit\(\) got no "
                                         "validation data"):
        trainer.fit((X, y), epochs=2)
    assert batches == []
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").iterdir())
    # a train_ monitor, or a Checkpoint that keeps last.pt only, needs none
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      callbacks=[EarlyStopping("train_loss"),
                                 Checkpoint(tmp_path / "last", save_best=False)], verbose=0)
    trainer.fit((X, y), epochs=1)


def test_a_builtin_metric_monitor_without_that_metric_fails_before_training():
    # EarlyStopping("valid_accuracy") without metrics=["accuracy"] failed after one epoch
    model = make_model()
    X, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      callbacks=[EarlyStopping("valid_accuracy")], metrics=["f1"], verbose=0)
    with pytest.raises(ValueError, match=r"monitors 'valid_accuracy', but the Trainer computes "
                                         r"no 'accuracy' \(metrics: f1\); pass metrics="):
        trainer.fit((X, y), (X, y), epochs=1)
    assert trainer.global_step == 0
