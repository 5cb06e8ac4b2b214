import math

import pytest
import torch
from conftest import FakeScheduler, make_model
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrtune.data.batching import TensorBatches
from lrtune.training import Callback, NonFiniteLossError, Trainer


def _sgd(model, lr=0.1, momentum=0.9):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def test_fit_matches_a_hand_written_loop_bit_for_bit(data):
    (train, valid), batch_size = data, 16
    model = make_model()
    history = Trainer(model, _sgd(model), nn.CrossEntropyLoss(), device="cpu", verbose=0).fit(
        train, valid, epochs=3, batch_size=batch_size, seed=7)

    ref = make_model()
    opt, loss_fn = _sgd(ref), nn.CrossEntropyLoss()
    batches = TensorBatches(*train, batch_size, shuffle=True, seed=7)
    losses = []
    for _ in range(3):
        for x, y in batches:
            opt.zero_grad()
            loss = loss_fn(ref(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [b["loss"] for b in history.batches] == losses
    assert history.num_batches == 3 * math.ceil(96 / batch_size)
    assert [b["step"] for b in history.batches] == list(range(1, 19))
    assert [b["batch"] for b in history.batches[:7]] == [1, 2, 3, 4, 5, 6, 1]


def test_epoch_records(data):
    train, valid = data
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.8,
                                             weight_decay=1e-4),
                      nn.CrossEntropyLoss(), metrics=["accuracy"], device="cpu", verbose=0)
    history = trainer.fit(train, valid, epochs=2, batch_size=32)
    first = history[0]
    assert set(first) == {"epoch", "train_loss", "valid_loss", "train_valid_ratio",
                          "valid_accuracy", "lr", "momentum", "weight_decay", "duration"}
    assert (first["lr"], first["momentum"], first["weight_decay"]) == (0.05, 0.8, 1e-4)
    batch_losses = [b["loss"] for b in history.batches if b["epoch"] == 1]
    assert first["train_loss"] == pytest.approx(sum(batch_losses[:2]) * 32 / 96
                                                + batch_losses[2] * 32 / 96)
    assert first["train_valid_ratio"] == pytest.approx(first["train_loss"] / first["valid_loss"])
    assert first["duration"] > 0
    # the valid numbers are the ones evaluate() gives for the weights after epoch 2
    scores = trainer.evaluate(valid)
    assert history[1]["valid_loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert history[1]["valid_accuracy"] == pytest.approx(scores["accuracy"])
    with torch.no_grad():
        out = model(valid[0])
    assert scores["accuracy"] == pytest.approx((out.argmax(1) == valid[1]).float().mean().item())
    assert scores["loss"] == pytest.approx(nn.functional.cross_entropy(out, valid[1]).item(),
                                           rel=1e-6)
    assert trainer.stop_reason == "completed"


def test_param_groups_and_adam_momentum(data):
    train, _ = data
    model = make_model()
    opt = torch.optim.Adam([{"params": model[0].parameters()},
                            {"params": model[3].parameters(), "lr": 0.001}],
                           lr=0.01, betas=(0.85, 0.999))
    history = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0).fit(
        train, epochs=1)
    record = history[0]
    assert (record["lr"], record["lr_group1"]) == (0.01, 0.001)
    assert (record["momentum"], record["momentum_group1"]) == (0.85, 0.85)
    assert "valid_loss" not in record
    assert history.batches[0]["momentum"] == 0.85


def test_dataloader_input_and_predict(data):
    train, valid = data
    model = make_model()
    loader = DataLoader(TensorDataset(*train), batch_size=20, shuffle=True)
    trainer = Trainer(model, _sgd(model), nn.CrossEntropyLoss(), device="cpu", verbose=0)
    history = trainer.fit(loader, DataLoader(TensorDataset(*valid), batch_size=20), epochs=2)
    assert history.num_batches == 2 * 5
    assert len(history) == 2
    with torch.no_grad():
        expected = model(valid[0])
    assert torch.allclose(trainer.predict(valid[0], batch_size=7), expected, atol=1e-6)
    assert torch.allclose(trainer.predict(valid), expected, atol=1e-6)
    assert torch.allclose(trainer.predict(DataLoader(TensorDataset(*valid), batch_size=9)),
                          expected, atol=1e-6)


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer, logs, **kwargs):
        self.calls.append(("train_begin", logs["initial_epoch"]))

    def on_epoch_begin(self, trainer, logs, **kwargs):
        self.calls.append(("epoch_begin", logs["epoch"]))

    def on_batch_begin(self, trainer, logs, **kwargs):
        self.calls.append(("batch_begin", logs["batch"]))

    def on_batch_end(self, trainer, logs, **kwargs):
        assert logs["loss"] == trainer.history.batches[-1]["loss"]
        self.calls.append(("batch_end", logs["batch"]))

    def on_validation_end(self, trainer, logs, **kwargs):
        assert "valid_loss" in logs
        assert "duration" not in logs
        self.calls.append(("validation_end", logs["epoch"]))

    def on_epoch_end(self, trainer, logs, **kwargs):
        assert logs is trainer.history.epochs[-1]
        self.calls.append(("epoch_end", logs["epoch"]))

    def on_train_end(self, trainer, logs, **kwargs):
        self.calls.append(("train_end", logs["stop_reason"]))


def test_hook_order(data):
    (X, y), valid = data
    rec = Recorder()
    model = make_model()
    Trainer(model, _sgd(model), nn.CrossEntropyLoss(), callbacks=[rec], device="cpu",
            verbose=0).fit((X[:40], y[:40]), valid, epochs=2, batch_size=20)
    epoch = ["batch_begin", "batch_end", "batch_begin", "batch_end", "validation_end",
             "epoch_end"]
    names = [c[0] for c in rec.calls]
    assert names == ["train_begin", "epoch_begin", *epoch, "epoch_begin", *epoch, "train_end"]
    assert rec.calls[-1] == ("train_end", "completed")


def test_callback_can_stop_mid_epoch(data):
    class StopAfter(Callback):
        def on_batch_end(self, trainer, logs, **kwargs):
            if trainer.global_step == 4:
                trainer.should_stop = True

    train, valid = data
    model = make_model()
    trainer = Trainer(model, _sgd(model), nn.CrossEntropyLoss(), callbacks=[StopAfter()],
                      device="cpu", verbose=0)
    history = trainer.fit(train, valid, epochs=5, batch_size=16)
    assert history.num_batches == 4
    assert len(history) == 1
    assert trainer.stop_reason == "stopped"


def test_batch_and_epoch_schedules(data):
    train, valid = data
    model = make_model()
    opt = _sgd(model)
    per_batch = FakeScheduler(opt, "batch")
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), schedules=per_batch, device="cpu",
                      verbose=0)
    history = trainer.fit(train, valid, epochs=2, batch_size=32)
    assert per_batch.applies == 1 + 6
    assert per_batch.step_count == 6
    assert [b["lr"] for b in history.batches] == [0.1 * 0.5**k for k in range(6)]
    assert [b["momentum"] for b in history.batches] == [0.5 + 0.01 * k for k in range(6)]
    assert [r["lr"] for r in history.epochs] == [0.1, 0.1 * 0.5**3]  # in force at epoch start
    assert per_batch.seen_logs == [None] * 6

    model = make_model()
    opt = _sgd(model)
    per_epoch = FakeScheduler(opt, "epoch", lr=0.2)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), schedules=[per_epoch], device="cpu",
                      verbose=0)
    history = trainer.fit(train, valid, epochs=3, batch_size=32)
    assert [r["lr"] for r in history.epochs] == [0.2, 0.1, 0.05]
    assert [b["lr"] for b in history.batches] == [0.2] * 3 + [0.1] * 3 + [0.05] * 3
    assert [logs["valid_loss"] for logs in per_epoch.seen_logs] == history.column("valid_loss")


def test_bad_arguments(data):
    model = make_model()
    opt = _sgd(model)
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2, got 3"):
        Trainer(model, opt, nn.CrossEntropyLoss(), verbose=3)
    with pytest.raises(TypeError, match="lacks interval, apply"):
        Trainer(model, opt, nn.CrossEntropyLoss(), schedules=object())
    with pytest.raises(TypeError, match="Callback instances"):
        Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=[print])
    with pytest.raises(ValueError, match="unknown metric 'f2'"):
        Trainer(model, opt, nn.CrossEntropyLoss(), metrics=["f2"])
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        trainer.fit(data[0], epochs=0)
    with pytest.raises(ValueError, match="training data is empty"):
        trainer.fit((torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)), epochs=1)


def test_augment_is_applied_to_training_batches_only(data):
    train, valid = data
    seen = []

    def augment(x, y):
        seen.append(len(x))
        return x * 0, y

    model = make_model()
    history = Trainer(model, _sgd(model), nn.CrossEntropyLoss(), augment=augment, device="cpu",
                      verbose=0).fit(train, valid, epochs=1, batch_size=32)
    assert seen == [32, 32, 32]
    assert history[0]["train_loss"] != pytest.approx(history[0]["valid_loss"])


def test_verbose_zero_prints_nothing(data, capsys):
    model = make_model()
    Trainer(model, _sgd(model), nn.CrossEntropyLoss(), device="cpu", verbose=0).fit(
        *data, epochs=2)
    assert capsys.readouterr() == ("", "")


def test_non_finite_loss_stops_with_where_and_lr(data, tmp_path):
    from lrtune.training import Checkpoint, EarlyStopping

    calls = {"n": 0}

    def flaky_loss(output, target):
        calls["n"] += torch.is_grad_enabled()  # count training batches only
        loss = nn.functional.cross_entropy(output, target)
        return loss * math.nan if calls["n"] == 7 else loss  # epoch 3, batch 1 at batch size 32

    train, valid = data
    model = make_model()
    stopper = EarlyStopping(patience=5, restore_best_weights=True)
    ckpt = Checkpoint(tmp_path)
    trainer = Trainer(model, _sgd(model, lr=0.05), flaky_loss, callbacks=[stopper, ckpt],
                      device="cpu", verbose=0)
    original = trainer._train_epoch

    def snapshot_files(epoch):
        result = original(epoch)
        snapshot_files.files = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}
        return result

    snapshot_files.files = {}
    trainer._train_epoch = snapshot_files
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 3, batch 1 of 3 "
                                                 r"\(lr 0\.05\)") as info:
        trainer.fit(train, valid, epochs=5, batch_size=32)
    assert (info.value.epoch, info.value.batch, info.value.lr) == (3, 1, 0.05)
    assert trainer.stop_reason == "non_finite"
    assert trainer.epoch == 2
    assert len(info.value.history) == 2
    assert info.value.history.num_batches == 6
    # neither checkpoint was touched after the last complete epoch
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == snapshot_files.files
    # the weights are finite: the NaN step was never taken, and the best ones are restored
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[name])
