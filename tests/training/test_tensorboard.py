import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch
from conftest import make_model
from torch import nn

from lrtune.training import Callback, Checkpoint, TensorBoard, Trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _train(tmp_path, data, epochs=2, callbacks=(), resume=None):
    model = make_model()
    opt = torch.optim.SGD([{"params": model[0].parameters()},
                           {"params": model[3].parameters(), "lr": 0.01, "weight_decay": 1e-3}],
                          lr=0.1, momentum=0.9)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), metrics=["accuracy"],
                      callbacks=[TensorBoard(tmp_path / "tb"), *callbacks], device="cpu",
                      verbose=0)
    trainer.fit(*data, epochs=epochs, batch_size=32, resume=resume)
    return trainer


def _read(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_losses_metrics_and_hyperparameters(tmp_path, data):
    history = _train(tmp_path, data).history
    epoch = _read(tmp_path / "tb" / "epoch")
    assert set(epoch) == {"loss/train", "loss/valid", "accuracy/valid", "lr/group0", "lr/group1",
                          "momentum/group0", "momentum/group1", "weight_decay/group0",
                          "weight_decay/group1"}
    for tag, key in [("loss/train", "train_loss"), ("loss/valid", "valid_loss"),
                     ("accuracy/valid", "valid_accuracy"), ("lr/group1", "lr_group1"),
                     ("weight_decay/group1", "weight_decay_group1")]:
        assert [s for s, _ in epoch[tag]] == [1, 2]
        assert [v for _, v in epoch[tag]] == pytest.approx(history.column(key), rel=1e-6)
    batch = _read(tmp_path / "tb" / "batch")
    assert [s for s, _ in batch["loss/train"]] == list(range(1, 7))
    assert [v for _, v in batch["loss/train"]] == pytest.approx(
        [b["loss"] for b in history.batches], rel=1e-6)
    assert [v for _, v in batch["lr/group1"]] == pytest.approx([0.01] * 6)
    assert [v for _, v in batch["momentum/group0"]] == pytest.approx([0.9] * 6)


class Crash(Callback):
    def on_batch_end(self, trainer, logs, **kwargs):
        if (logs["epoch"], logs["batch"]) == (3, 2):
            raise KeyboardInterrupt


def test_resume_purges_what_the_crashed_run_wrote_past_its_checkpoint(tmp_path, data):
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, data, epochs=4, callbacks=[Checkpoint(tmp_path / "ck"), Crash()])
    trainer = _train(tmp_path, data, epochs=4, callbacks=[Checkpoint(tmp_path / "ck")],
                     resume=tmp_path / "ck" / "last.pt")
    batch = _read(tmp_path / "tb" / "batch")["loss/train"]
    assert [s for s, _ in batch] == list(range(1, 13))  # steps 7 and 8 written once, not twice
    assert [v for _, v in batch] == pytest.approx([b["loss"] for b in trainer.history.batches],
                                                  rel=1e-6)
    assert [s for s, _ in _read(tmp_path / "tb" / "epoch")["loss/train"]] == [1, 2, 3, 4]


def test_a_resume_in_the_same_second_is_read_after_the_crashed_run(tmp_path, data, monkeypatch):
    """Event files are read in name order: second, host, pid, then a counter that sorts as
    text. The crashed run's writers get counters 8 and 9, the resumed run's 10 and 11 ("10"
    sorts before "9"), so only a later second puts the resumed files last."""
    from tensorboard.summary.writer import event_file_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(8))
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, data, epochs=4, callbacks=[Checkpoint(tmp_path / "ck"), Crash()])
    trainer = _train(tmp_path, data, epochs=4, callbacks=[Checkpoint(tmp_path / "ck")],
                     resume=tmp_path / "ck" / "last.pt")
    batch = _read(tmp_path / "tb" / "batch")["loss/train"]
    assert [s for s, _ in batch] == list(range(1, 13))
    assert [v for _, v in batch] == pytest.approx([b["loss"] for b in trainer.history.batches],
                                                  rel=1e-6)
    assert [s for s, _ in _read(tmp_path / "tb" / "epoch")["loss/train"]] == [1, 2, 3, 4]


def _get(port, path, **query):
    url = f"http://127.0.0.1:{port}{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_the_tensorboard_server_serves_the_scalars(tmp_path, data):
    """Starts the real ``tensorboard`` on loopback (a few seconds) and reads its HTTP data API."""
    history = _train(tmp_path, data).history
    exe = Path(sys.executable).with_name("tensorboard")
    if not exe.exists():
        pytest.skip("the tensorboard command is not installed next to this python")
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        [str(exe), "--logdir", str(tmp_path / "tb"), "--host", "127.0.0.1", "--port", "0",
         "--reload_interval", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port, tags, deadline = None, {}, time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            if port is None:
                log.seek(0)
                found = re.search(r"http://127\.0\.0\.1:(\d+)/", log.read())
                port = found and int(found.group(1))
            if port:
                try:
                    tags = _get(port, "/data/plugin/scalars/tags")
                except OSError:
                    tags = {}
                if "loss/valid" in tags.get("epoch", {}) and "lr/group0" in tags.get("batch", {}):
                    break
            time.sleep(0.2)
        log.seek(0)
        assert port, f"tensorboard did not start within 60 s:\n{log.read()}"
        assert tags, f"tensorboard served no scalars within 60 s:\n{log.read()}"
        assert {"loss/train", "loss/valid", "accuracy/valid", "lr/group0", "momentum/group1",
                "weight_decay/group1"} <= set(tags["epoch"])
        valid = _get(port, "/data/plugin/scalars/scalars", run="epoch", tag="loss/valid")
        assert [row[1] for row in valid] == [1, 2]
        assert [row[2] for row in valid] == pytest.approx(history.column("valid_loss"), rel=1e-6)
        lrs = _get(port, "/data/plugin/scalars/scalars", run="batch", tag="lr/group0")
        assert [row[2] for row in lrs] == pytest.approx([0.1] * 6)
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # the server and its data-server child
        server.wait(timeout=10)
        log.close()
