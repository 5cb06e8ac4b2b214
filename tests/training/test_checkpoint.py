import os
import pickle

import pytest
import torch
from conftest import FakeScheduler, make_model
from torch import nn

from lrtune.training import (
    Callback,
    Checkpoint,
    EarlyStopping,
    Trainer,
    checkpoint_io,
    load_checkpoint,
)
from lrtune.training.checkpoint_io import atomic_write_bytes, remove_stale_temporaries


def test_atomic_write_leaves_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    atomic_write_bytes(b"old checkpoint", target)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(checkpoint_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(b"new checkpoint", target)
    assert target.read_bytes() == b"old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_atomic_write_fsyncs_file_then_renames_then_fsyncs_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_io.os, "fsync", fsync)
    monkeypatch.setattr(checkpoint_io.os, "replace", replace)
    atomic_write_bytes(b"x", tmp_path / "f")
    assert events == ["fsync-file", "replace", "fsync-dir"]


def test_a_killed_writer_leaves_only_a_temporary_that_is_cleaned_up(tmp_path):
    atomic_write_bytes(b"good", tmp_path / "last.pt")
    stale = tmp_path / f".last.pt.abc123{checkpoint_io.TMP_SUFFIX}"
    stale.write_bytes(b"half a checkp")  # what kill -9 during a write leaves
    assert (tmp_path / "last.pt").read_bytes() == b"good"
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists()


def test_load_refuses_pickled_code_and_foreign_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "lrtune.checkpoint", "payload": Evil()}, evil)
    with pytest.raises(ValueError) as info:
        load_checkpoint(evil)
    # one line, and never torch's advice to retry with weights_only=False
    assert str(info.value) == f"{evil} is not an lrtune checkpoint (or is unsafe to load)"
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    with pytest.raises(ValueError, match="is not an lrtune checkpoint"):
        load_checkpoint(other)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1]) + b"garbage")
    with pytest.raises(ValueError, match=r"junk\.pt is not an lrtune checkpoint"):
        load_checkpoint(junk)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


class CrashAt(Callback):
    """Raise in the middle of an epoch, after the previous epoch's checkpoint was written."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, trainer, logs, **kwargs):
        if (logs["epoch"], logs["batch"]) == (self.epoch, self.batch):
            raise KeyboardInterrupt


def _run(tmp_path, init_seed, *, resume=None, crash=None, epochs=6):
    model = make_model(seed=init_seed, dropout=0.3)  # dropout: the torch RNG matters
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    per_batch = FakeScheduler(opt, "batch", lr=0.2)
    per_batch.lr_at = lambda step: 0.2 / (1 + 0.05 * step)
    stopper = EarlyStopping(patience=50, restore_best_weights=True)
    callbacks = [stopper, Checkpoint(tmp_path / "ckpt")]
    if crash:
        callbacks.append(CrashAt(*crash))
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), metrics=["accuracy"],
                      callbacks=callbacks, schedules=[per_batch], device="cpu", verbose=0)
    return trainer, stopper, per_batch


def _without_durations(history):
    return [{k: v for k, v in r.items() if k != "duration"} for r in history.epochs]


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, data):
    torch.manual_seed(123)
    straight, straight_es, straight_sched = _run(tmp_path / "a", 0)
    straight.fit(*data, epochs=6, batch_size=16, seed=3)

    torch.manual_seed(123)
    crashed, _, _ = _run(tmp_path / "b", 0, crash=(4, 2))
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(*data, epochs=6, batch_size=16, seed=3)
    last = tmp_path / "b" / "ckpt" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 3

    torch.manual_seed(999)  # a different process state: everything must come from the file
    resumed, resumed_es, resumed_sched = _run(tmp_path / "b", 42)
    resumed.fit(*data, epochs=6, batch_size=16, seed=3, resume=last)

    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _without_durations(resumed.history) == _without_durations(straight.history)
    assert resumed.history.batches == straight.history.batches
    assert resumed_sched.step_count == straight_sched.step_count == 6 * 6
    assert resumed_es.state_dict()["best_epoch"] == straight_es.state_dict()["best_epoch"]
    for a, b in zip(torch.load(tmp_path / "a" / "ckpt" / "last.pt", weights_only=True)
                    ["optimizer"]["state"].values(),
                    load_checkpoint(last)["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_resume_continues_a_data_loaders_own_generator(tmp_path, data):
    """A DataLoader seeded with ``generator=`` draws its order from that generator, not from
    torch's RNG: the checkpoint keeps its state, so the resumed epochs see the batches the
    uninterrupted run saw (a fresh loader, as a restarted process builds it)."""
    from torch.utils.data import DataLoader, TensorDataset

    def loader():
        return DataLoader(TensorDataset(*data[0]), batch_size=16, shuffle=True,
                          generator=torch.Generator().manual_seed(5))

    def fit(folder, crash=None, resume=None):
        model = make_model(seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        callbacks = [Checkpoint(folder)] + ([CrashAt(*crash)] if crash else [])
        trainer = Trainer(model, opt, nn.CrossEntropyLoss(), callbacks=callbacks, device="cpu",
                          verbose=0)
        trainer.fit(loader(), data[1], epochs=4, resume=resume)
        return trainer

    straight = fit(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "b", crash=(3, 2))
    resumed = fit(tmp_path / "b", resume=tmp_path / "b" / "last.pt")
    for a, b in zip(straight.model.state_dict().values(),
                    resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history.batches == straight.history.batches


def test_checkpoint_contents_and_best(tmp_path, data):
    trainer, _, _ = _run(tmp_path, 0)
    trainer.fit(*data, epochs=3, batch_size=32)
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    best = load_checkpoint(tmp_path / "ckpt" / "best.pt")
    assert set(last) >= {"model", "optimizer", "schedules", "callbacks", "history", "epoch",
                         "rng", "data", "extra"}
    assert set(last["rng"]) == {"torch", "cuda", "numpy", "python"}
    assert last["epoch"] == 3
    assert last["data"] == {"passes": 3, "seed": 0}
    assert set(last["callbacks"]) == {"EarlyStopping", "Checkpoint"}
    assert last["schedules"] == [{"step": 9}]
    best_epoch, _ = trainer.history.best("valid_loss")
    assert best["epoch"] == best_epoch == last["callbacks"]["Checkpoint"]["best_epoch"]


def test_resume_rejects_another_model_optimizer_or_setup(tmp_path, data):
    trainer, _, _ = _run(tmp_path, 0)
    trainer.fit(*data, epochs=1, batch_size=32)
    path = tmp_path / "ckpt" / "last.pt"

    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3),
                          nn.Linear(3, 3))
    other = Trainer(wider, torch.optim.SGD(wider.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    device="cpu", verbose=0)
    with pytest.raises(ValueError, match=r"does not match the model \(Sequential\): missing "
                                         r"from the checkpoint: 4.weight, 4.bias; shape mismatch: "
                                         r"0.weight: checkpoint \[16, 6\] vs model \[32, 6\]"):
        other.fit(*data, epochs=2, resume=path)

    model = make_model()
    adam = Trainer(model, torch.optim.Adam(model.parameters()), nn.CrossEntropyLoss(),
                   device="cpu", verbose=0)
    with pytest.raises(ValueError, match="written with optimizer SGD, this trainer uses Adam"):
        adam.fit(*data, epochs=2, resume=path)

    plain = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    device="cpu", verbose=0)
    with pytest.raises(ValueError, match=r"holds 1 scheduler state\(s\), this trainer has 0"):
        plain.fit(*data, epochs=2, resume=path)
    fresh, _, _ = _run(tmp_path / "x", 0)
    with pytest.raises(ValueError, match="trained with seed=0, fit got seed=5"):
        fresh.fit(*data, epochs=2, resume=path, seed=5)


def test_resume_with_a_mismatched_optimizer_state_leaves_the_model_untouched(tmp_path, data):
    trainer, _, _ = _run(tmp_path, 0)
    trainer.fit(*data, epochs=1, batch_size=32)
    model = make_model(seed=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    two_groups = torch.optim.SGD([{"params": model[0].parameters()},
                                  {"params": model[3].parameters()}], lr=0.1, momentum=0.9)
    other = Trainer(model, two_groups, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                    schedules=[FakeScheduler(two_groups)])
    with pytest.raises(ValueError, match=r"optimizer state in checkpoint .* does not match"):
        other.fit(*data, epochs=2, resume=tmp_path / "ckpt" / "last.pt")
    for name, value in model.state_dict().items():  # was overwritten before the failing load
        assert torch.equal(value, before[name]), name


def test_resume_of_an_early_stopped_run_stays_stopped(tmp_path, data):
    def run(seed, **fit):
        model = make_model(seed=seed)
        stopper = EarlyStopping(patience=0, min_delta=1e9, restore_best_weights=True)
        trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                          nn.CrossEntropyLoss(), device="cpu", verbose=0,
                          callbacks=[stopper, Checkpoint(tmp_path / "ckpt")])
        trainer.fit(*data, epochs=6, batch_size=16, **fit)
        return trainer

    straight = run(0)
    assert (len(straight.history), straight.stop_reason) == (2, "early_stopping")
    resumed = run(1, resume=tmp_path / "ckpt" / "last.pt")  # e.g. after a crash at the end
    assert (len(resumed.history), resumed.stop_reason) == (2, "early_stopping")
    for (name, a), b in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # the best epoch's weights, as in the straight run


def test_resume_when_already_done_trains_nothing(tmp_path, data):
    trainer, _, _ = _run(tmp_path, 0)
    trainer.fit(*data, epochs=2, batch_size=32)
    again, _, _ = _run(tmp_path, 1)
    history = again.fit(*data, epochs=2, batch_size=32, resume=tmp_path / "ckpt" / "last.pt")
    assert len(history) == 2
    assert again.stop_reason == "completed"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    """A plain ``open()`` gives 0o666 & ~umask; the atomic write's temporary file must too."""
    from lrtune.training.checkpoint_io import atomic_write_text

    old = os.umask(umask)
    try:
        atomic_write_text("x", tmp_path / "atomic.json")
        (tmp_path / "plain.json").write_text("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "atomic.json").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.json").stat().st_mode & 0o777 == 0o666 & ~umask
