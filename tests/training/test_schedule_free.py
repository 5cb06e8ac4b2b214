import itertools

import pytest
import torch
from conftest import make_data
from torch import nn

from lrtune.data.batching import TensorBatches
from lrtune.training import (
    Callback,
    Checkpoint,
    EarlyStopping,
    ScheduleFreeMode,
    TensorBoard,
    Trainer,
    load_checkpoint,
)
from lrtune.training.setup import make_optimizer

LR_FREE = ["prodigy", "schedulefree-adamw", "schedulefree-sgd", "dadapt-adam"]


def bn_model(seed=0, dropout=0.0, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(16, 3)).to(dtype)


def _reference(model, opt, train, valid, epochs, batch_size, seed):
    """The schedulefree README's loop, written out: train()/eval() and the BatchNorm refresh."""
    loss_fn = nn.CrossEntropyLoss()
    batches = TensorBatches(*train, batch_size, shuffle=True, seed=seed)
    valid_losses = []
    for _ in range(epochs):
        model.train()
        opt.train()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        model.train()
        opt.eval()
        with torch.no_grad():
            for x, _ in itertools.islice(TensorBatches(*train, batch_size, shuffle=False), 50):
                model(x)
        model.eval()
        with torch.no_grad():
            valid_losses.append(loss_fn(model(valid[0]), valid[1]).item())
    return valid_losses


def _double(pair):
    return pair[0].double(), pair[1]


@pytest.mark.parametrize("name", ["schedulefree-adamw", "schedulefree-sgd"])
def test_trainer_matches_the_authors_loop_weights_batchnorm_and_valid_loss(name):
    train, valid = _double(make_data()), _double(make_data(48, seed=1))
    ref_model = bn_model(dtype=torch.float64)
    ref_opt = make_optimizer(name, ref_model.parameters(), lr=None)
    ref_valid = _reference(ref_model, ref_opt, train, valid, 3, 16, seed=5)

    model = bn_model(dtype=torch.float64)
    opt = make_optimizer(name, model.parameters(), lr=None)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0)
    trainer.fit(train, valid, epochs=3, batch_size=16, seed=5)
    for (key, a), b in zip(model.state_dict().items(), ref_model.state_dict().values(),
                           strict=True):
        assert torch.allclose(a.double(), b.double(), rtol=1e-12, atol=1e-12), key
    assert trainer.history.column("valid_loss") == pytest.approx(ref_valid, rel=1e-10)
    assert opt.param_groups[0]["train_mode"] is False  # left at x: evaluate/predict use it
    assert trainer.evaluate(valid)["loss"] == pytest.approx(ref_valid[-1], rel=1e-10)
    assert torch.allclose(trainer.predict(valid[0]), ref_model(valid[0]), atol=1e-12)
    assert sum(isinstance(c, ScheduleFreeMode) for c in trainer._active) == 1


def test_checkpoints_hold_the_evaluation_point_and_the_callback_is_not_doubled(tmp_path):
    train, valid = make_data(), make_data(48, seed=1)
    model = bn_model()
    opt = make_optimizer("schedulefree-adamw", model.parameters(), lr=0.01)
    mine = ScheduleFreeMode(bn_batches=2)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                      callbacks=[Checkpoint(tmp_path), mine])
    trainer.fit(train, valid, epochs=2, batch_size=16)
    assert [c for c in trainer._active if isinstance(c, ScheduleFreeMode)] == [mine]
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["optimizer"]["param_groups"][0]["train_mode"] is False
    for key, value in model.state_dict().items():  # x, as the model holds it after fit
        assert torch.equal(saved["model"][key], value), key
    # y (where gradients are taken) differs from x: the switch really happened
    opt.train()
    assert not torch.equal(model[0].weight, saved["model"]["0.weight"])


def test_batchnorm_refresh_leaves_the_random_stream_alone():
    train = make_data()
    model = bn_model(dropout=0.5)
    opt = make_optimizer("schedulefree-sgd", model.parameters(), lr=None)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0)
    trainer.fit(train, epochs=1, batch_size=16)
    callback = ScheduleFreeMode()
    callback.on_epoch_begin(trainer, {})
    running = model[1].running_mean.clone()
    before = torch.get_rng_state()
    callback.on_validation_begin(trainer, {})
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(model[1].running_mean, running)  # the statistics were recomputed
    with pytest.raises(ValueError, match="bn_batches must be an integer >= 1, got 0"):
        ScheduleFreeMode(bn_batches=0)


class CrashAt(Callback):
    def on_batch_end(self, trainer, logs, **kwargs):
        if (logs["epoch"], logs["batch"]) == (3, 2):
            raise KeyboardInterrupt


def _run(folder, name, crash=False):
    model = bn_model(dropout=0.3)  # dropout: the RNG matters; BatchNorm: the refresh does
    opt = make_optimizer(name, model.parameters(), lr=None)
    stopper = EarlyStopping(patience=50, restore_best_weights=True)
    callbacks = [stopper, Checkpoint(folder), *([CrashAt()] if crash else [])]
    return Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=callbacks, device="cpu",
                   verbose=0)


def _without_durations(history):
    return [{k: v for k, v in r.items() if k != "duration"} for r in history.epochs]


@pytest.mark.parametrize("name", LR_FREE)
def test_resume_is_bit_identical_for_each_optimizer(tmp_path, name):
    train, valid = make_data(), make_data(48, seed=1)
    torch.manual_seed(1)
    straight = _run(tmp_path / "a", name)
    straight.fit(train, valid, epochs=4, batch_size=16, seed=3)

    torch.manual_seed(1)
    crashed = _run(tmp_path / "b", name, crash=True)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(train, valid, epochs=4, batch_size=16, seed=3)
    last = tmp_path / "b" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 2

    torch.manual_seed(99)
    resumed = _run(tmp_path / "b", name)
    resumed.fit(train, valid, epochs=4, batch_size=16, seed=3, resume=last)
    for (key, a), b in zip(straight.model.state_dict().items(),
                           resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    assert _without_durations(resumed.history) == _without_durations(straight.history)
    assert resumed.history.batches == straight.history.batches
    a = load_checkpoint(tmp_path / "a" / "last.pt")["optimizer"]
    b = load_checkpoint(last)["optimizer"]
    assert a["param_groups"] == b["param_groups"]  # d, k, weight sums ... all the same


@pytest.mark.parametrize("name", ["prodigy", "dadapt-adam"])
def test_effective_lr_in_history_and_tensorboard(tmp_path, name):
    from test_tensorboard import _read

    model = bn_model()
    opt = make_optimizer(name, model.parameters(), lr=None)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                      callbacks=[TensorBoard(tmp_path)])
    trainer.fit(make_data(), make_data(48, seed=1), epochs=3, batch_size=16)
    column = trainer.history.column("effective_lr")
    assert column[0] == pytest.approx(1e-6)  # d0 * lr: the value in force at epoch 1's start
    assert column[2] == pytest.approx(opt.param_groups[0]["d"]) or column[2] > column[0]
    epoch = _read(tmp_path / "epoch")
    assert [v for _, v in epoch["effective_lr/group0"]] == pytest.approx(column, rel=1e-6)
    batch = _read(tmp_path / "batch")["effective_lr/group0"]
    assert len(batch) == 18 and batch[-1][1] == pytest.approx(opt.param_groups[0]["d"], rel=1e-6)
