"""The Trainer on the step protocol: any batch, accumulation, precision, clipping, schedulers."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_data, make_model
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lrtune import Trainer
from lrtune.data.batching import TensorBatches
from lrtune.schedules import ReduceLROnPlateau
from lrtune.training import NonFiniteLossError
from lrtune.training.callbacks import Checkpoint
from lrtune.training.checkpoint_io import load_checkpoint


class HFStyle(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.head = nn.Embedding(20, 8), nn.Linear(8, 3)

    def forward(self, input_ids, attention_mask, labels=None):
        mask = attention_mask.unsqueeze(-1).float()
        logits = self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Tokens(Dataset):
    def __init__(self, n=80, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 20, (n, 6), generator=gen)
        self.mask = torch.ones(n, 6, dtype=torch.long)
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


def test_hf_style_model_with_dict_batches_and_a_metric_on_the_logits():
    torch.manual_seed(0)
    model = HFStyle()
    trainer = Trainer(model, torch.optim.Adam(model.parameters(), lr=0.01),
                      step=lambda m, b: m(**b), metrics=["accuracy"], device="cpu", verbose=0)
    valid = DataLoader(Tokens(40, seed=1), batch_size=16)
    history = trainer.fit(DataLoader(Tokens(), batch_size=16), valid, epochs=3)
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3]
    scores = trainer.evaluate(valid)
    preds = trainer.predict(valid)  # mappings are passed as keyword arguments
    labels = Tokens(40, seed=1).labels
    assert preds.shape == (40, 3)
    assert scores["accuracy"] == pytest.approx((preds.argmax(1) == labels).float().mean().item())
    assert history.epochs[-1]["valid_accuracy"] == pytest.approx(scores["accuracy"])


class WithAux(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = make_model(seed=1)

    def forward(self, x):
        return self.net(x), x.mean()


def test_a_model_returning_logits_and_aux_trains_evaluates_and_predicts():
    X, y = make_data()
    model = WithAux()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      metrics=["accuracy"], device="cpu", verbose=0)
    trainer.fit((X, y), (X, y), epochs=2, batch_size=16)
    assert trainer.predict(X).shape == (96, 3)  # the first element: the logits
    picked = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                     device="cpu", verbose=0, output_fn=lambda out: out[0].softmax(1))
    torch.testing.assert_close(picked.predict(X[:8]).sum(1), torch.ones(8))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_predict_under_a_mixed_precision_returns_float32(precision):
    X, _ = make_data()
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      precision=precision, device="cpu", verbose=0)
    predicted = trainer.predict(X[:8])
    assert predicted.dtype == torch.float32  # autocast computed it in 16 bits; .numpy() works
    with torch.no_grad(), torch.autocast("cpu", dtype=trainer.runner.autocast().fast_dtype):
        expected = model(X[:8]).float()
    torch.testing.assert_close(predicted, expected, rtol=0, atol=0)
    assert predicted.numpy().shape == (8, 3)


def test_augment_with_dict_batches_names_the_problem():
    model = HFStyle()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                      step=lambda model, batch: model(**batch), augment=lambda x, y: (x, y),
                      device="cpu", verbose=0)
    with pytest.raises(TypeError, match=r"augment=fn\(x, y\) needs \(inputs, targets\) batches, "
                                        r"but the data yields a dict with keys \['attention_mask'"):
        trainer.fit(DataLoader(Tokens(), batch_size=16), epochs=1)  # it was KeyError: 0
    assert trainer.global_step == 0


def _hand_written_accumulation(model, X, y, k, steps_per_epoch, epochs, batch_size, seed):
    """What a user writes: loss / window, step every k micro-batches, ragged tail averaged."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = TensorBatches(X, y, batch_size, shuffle=True, seed=seed)
    n = len(batches)
    full = n - n % k
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        for i, (xb, yb) in enumerate(batches, start=1):
            window = k if i <= full else n - full
            loss = nn.functional.cross_entropy(model(xb), yb)
            (loss * (1.0 / window) if window > 1 else loss).backward()
            if i % k == 0 or i == n:
                opt.step()
                opt.zero_grad(set_to_none=True)
    return model


def test_accumulation_equals_a_hand_written_loop_and_counts_optimizer_steps():
    X, y = make_data(n=100)  # 7 batches of 16: windows of 3, 3 and a ragged 1
    model = make_model(seed=2)
    ref = _hand_written_accumulation(copy.deepcopy(model), X, y, 3, None, 2, 16, 5)
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(1)
            return super().step(closure)

    trainer = Trainer(model, Spy(model.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss(),
                      device="cpu", verbose=0)
    history = trainer.fit((X, y), epochs=2, batch_size=16, accumulation_steps=3, seed=5)
    assert trainer.global_step == len(seen) == 2 * 3 == history.num_batches
    assert trainer.steps_per_epoch == 3
    assert [b["batch"] for b in history.batches][:3] == [1, 2, 3]
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same operations in the same order


def test_accumulation_over_data_of_unknown_length_steps_the_ragged_tail():
    X, y = make_data(n=64)

    class NoLen:
        def __iter__(self):
            return iter([(X[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)])

    model = make_model(seed=3)
    ref = copy.deepcopy(model)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      device="cpu", verbose=0)
    trainer.fit(NoLen(), epochs=1, accumulation_steps=3)
    assert trainer.global_step == 2  # 3 micro-batches, then the last one alone
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for window in ([0, 16, 32], [48]):
        for i in window:
            (nn.functional.cross_entropy(ref(X[i:i + 16]), y[i:i + 16]) / len(window)).backward()
        opt.step()
        opt.zero_grad()
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # rescaled: not the same ops


def _scheduled_run(tmp_path, make_schedule, crash_epoch=None, resume=None, epochs=4):
    X, y = make_data()
    model = make_model(seed=4, dropout=0.2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), schedules=make_schedule(opt),
                      callbacks=[Checkpoint(tmp_path / "ckpt")], device="cpu", verbose=0)
    torch.manual_seed(7)
    trainer.fit((X, y), (X, y), epochs=crash_epoch or epochs, batch_size=16, resume=resume)
    return trainer


SCHEDULERS = {
    "one_cycle_per_step": lambda opt: {
        "scheduler": torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=24),
        "interval": "step"},
    "step_lr_bare": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    "plateau_monitor": lambda opt: {
        "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", patience=0,
                                                                factor=0.5),
        "monitor": "valid_loss"},
    "lrtune_torch_scheduler": lambda opt: __import__("lrtune").TorchScheduler(
        opt, __import__("lrtune").schedules.linear(0.1, 0.01, steps=4)),
    "every_other_epoch": lambda opt: {
        "scheduler": torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5), "frequency": 2},
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_torch_schedulers_step_as_lightning_does_and_resume_exactly(tmp_path, name):
    straight = _scheduled_run(tmp_path / "a", SCHEDULERS[name])
    _scheduled_run(tmp_path / "b", SCHEDULERS[name], crash_epoch=2)
    resumed = _scheduled_run(tmp_path / "b", SCHEDULERS[name],
                             resume=tmp_path / "b" / "ckpt" / "last.pt")
    lrs = [r["lr"] for r in straight.history.epochs]
    assert len(set(lrs)) > 1, lrs  # the scheduler did change the rate
    assert [r["lr"] for r in resumed.history.epochs] == lrs
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_the_schedulers_rates_match_torch_driving_it_by_hand():
    X, y = make_data()
    model = make_model(seed=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                      schedules={"scheduler": torch.optim.lr_scheduler.OneCycleLR(
                          opt, max_lr=0.3, total_steps=12), "interval": "step"})
    history = trainer.fit((X, y), epochs=2, batch_size=16)
    ref_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.3, total_steps=12)
    expected = []
    for _ in range(12):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert [b["lr"] for b in history.batches] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("schedules", "message"), [
    ({"scheduler": "x"}, "must be a torch LRScheduler"),
    ({"sched": 1}, "needs a 'scheduler' entry"),
    (object(), "lacks interval"),
    (torch.optim.lr_scheduler.OneCycleLR, r"got the class OneCycleLR; pass an instance"),
])
def test_bad_schedulers_are_named(schedules, message):
    model = make_model()
    with pytest.raises((TypeError, ValueError), match=message):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                schedules=schedules, verbose=0)


@pytest.mark.parametrize("wrap", [lambda s: s, lambda s: {"scheduler": s, "interval": "step"}])
def test_a_scheduler_built_on_another_optimizer_is_refused(wrap):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(model.parameters(), lr=0.1)  # e.g. left over from a previous cell
    onecycle = torch.optim.lr_scheduler.OneCycleLR(other, max_lr=1.0, total_steps=10)
    with pytest.raises(ValueError, match="OneCycleLR in schedules= was built on another"):
        Trainer(model, opt, nn.CrossEntropyLoss(), verbose=0, schedules=wrap(onecycle))

    class Wrapper(torch.optim.Optimizer):  # shares the inner optimizer's groups (Accelerate)
        def __init__(self, inner):
            self.inner, self.defaults, self.state = inner, inner.defaults, inner.state

        param_groups = property(lambda self: self.inner.param_groups)

    inner_schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    Trainer(model, Wrapper(opt), nn.CrossEntropyLoss(), verbose=0, schedules=wrap(inner_schedule))


def test_a_one_cycle_sized_in_batches_but_stepped_per_epoch_is_warned_about():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    onecycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=12)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                      schedules=onecycle)  # bare: per epoch, as in Lightning
    with pytest.warns(UserWarning, match=r"OneCycleLR is sized for 12 steps but steps once per "
                      r"epoch here \(2 steps in 2 epochs\).*'interval': 'step'"):
        trainer.fit((X, y), epochs=2, batch_size=16)
    model = make_model()  # sized in epochs: no warning (warnings are errors in this suite)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
            schedules=torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.3, total_steps=2),
            ).fit((X, y), epochs=2, batch_size=16)


def test_plateau_with_strict_false_skips_a_missing_monitor_as_lightning_does():
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0, schedules={
        "scheduler": plateau, "monitor": "valid_loss", "strict": False})
    with pytest.warns(UserWarning, match="strict is False: this update is skipped") as caught:
        trainer.fit((X, y), epochs=2)  # no validation data: nothing to monitor
    assert len(caught) == 2 and trainer.epoch == 2
    assert opt.param_groups[0]["lr"] == 0.1 and plateau.last_epoch == 0
    with pytest.raises(ValueError, match="strict must be True or False"):
        Trainer(model, opt, nn.CrossEntropyLoss(), verbose=0,
                schedules={"scheduler": plateau, "strict": "no"})


@pytest.mark.parametrize("plateau", [
    lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0),
    lambda opt: {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
                 "monitor": "valid_accuracy"},
    lambda opt: ReduceLROnPlateau(opt, monitor="valid_loss")], ids=["torch", "dict", "lrtune"])
def test_a_plateau_on_a_valid_value_without_validation_data_fails_before_training(plateau):
    # it failed at the end of the first epoch, after that epoch's training
    X, y = make_data()
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(model, opt, nn.CrossEntropyLoss(), device="cpu", verbose=0,
                      schedules=plateau(opt))
    with pytest.raises(ValueError, match=r"ReduceLROnPlateau monitors 'valid_\w+', but fit\(\) "
                                         "got no validation data"):
        trainer.fit((X, y), epochs=2)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_plateau_on_steps_is_refused():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="use interval='epoch'"):
        Trainer(model, opt, nn.CrossEntropyLoss(), verbose=0, schedules={
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt), "interval": "step"})


def test_a_validation_set_that_does_not_fit_fails_before_training():
    X, y = make_data()
    model = make_model()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      device="cpu", verbose=0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="the validation data does not fit the model: mat1"):
        trainer.fit((X, y), (torch.randn(10, 5), y[:10]), epochs=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert trainer.global_step == 0


def test_a_validation_pair_shaped_like_the_training_pair_is_not_probed():
    X, y = make_data()
    model = make_model()
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      device="cpu", verbose=0)
    trainer.fit((X, y), (X[:10], y[:10]), epochs=1, batch_size=len(X))
    assert calls == [len(X), 10]  # one training batch, one validation batch, no probe
    calls.clear()  # a pair that differs (here its targets' dtype) is probed before training
    with pytest.raises(ValueError, match="does not fit the model: expected target dtype"):
        trainer.fit((X, y), (X[:10], y[:10].int()), epochs=1, batch_size=len(X))
    assert calls == [10]


@pytest.mark.parametrize("dict_batches", [True, False])
def test_metrics_with_a_step_that_gives_no_output_fail_before_training(dict_batches):
    if dict_batches:
        model = HFStyle()
        train = valid = DataLoader(Tokens(), batch_size=16)

        def step(model, batch):
            return model(**batch)["loss"]  # the loss alone: nothing for the metric to read
    else:
        model, (X, y) = make_model(), make_data()
        train = valid = (X, y)

        def step(model, batch):
            return nn.functional.cross_entropy(model(batch[0]), batch[1])
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step=step,
                      metrics=["accuracy"], device="cpu", verbose=0)
    with pytest.raises(ValueError, match="the step gave no output: make it return"):
        trainer.fit(train, valid, epochs=1)
    assert trainer.global_step == 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_gradients_never_finite_under_fp16_stop_training_as_a_nan_loss_does(tmp_path):
    X, y = make_data()
    model = make_model()

    def step(model, batch):
        h = model(batch[0])
        return nn.functional.cross_entropy(h + torch.sqrt(h - h.detach()), batch[1])  # grad inf

    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), step=step,
                      precision="16-mixed", callbacks=[Checkpoint(tmp_path)], device="cpu",
                      verbose=0)
    # it trained on silently, every step skipped, global_step 0
    with pytest.raises(NonFiniteLossError, match="at epoch 1, batch 64 of 96: the GradScaler "
                                                 "skipped 64 optimizer steps in a row"):
        trainer.fit((X, y), (X, y), epochs=3, batch_size=1)
    assert trainer.stop_reason == "non_finite" and trainer.epoch == 0
    assert trainer.global_step == 0 and not list(tmp_path.glob("*.pt"))


def test_fp16_with_clipping_checkpoints_the_scaler(tmp_path):
    X, y = make_data()
    model = make_model(seed=5)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                      precision="16-mixed", clip_grad_norm=0.5, device="cpu", verbose=0,
                      callbacks=[Checkpoint(tmp_path)])
    trainer.fit((X, y), (X, y), epochs=2, batch_size=16)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["scaler"]["scale"] == trainer.runner.scaler.get_scale()
    assert state["scaler"]["_growth_tracker"] == 12  # 12 steps, none skipped
