"""lrtune.integrations.transformers on a tiny randomly initialised BERT and synthetic tokens.

Nothing is downloaded (HF_HUB_OFFLINE). Dropout is off so that every loss is a deterministic
function of the weights and the batch; each batch (per_device_train_batch_size *
gradient_accumulation_steps) is the whole data set, so a step's loss does not depend on the
shuffled order either.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys

import pytest
import torch
from torch.nn import functional as F

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="the Trainer needs accelerate (lrtune[transformers])")

from lrtune.integrations.transformers import LRFinderCallback, find_lr  # noqa: E402

transformers.logging.set_verbosity_error()

N, SEQ, VOCAB = 8, 8, 100


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is fastest, and other threads only contend on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Tokens(torch.utils.data.Dataset):
    """N sequences of SEQ random token ids; the label says whether the first token is high."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, VOCAB, (N, SEQ), generator=gen)
        self.labels = (self.ids[:, 0] >= VOCAB // 2).long()

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(SEQ, dtype=torch.long),
                "labels": self.labels[i]}


def tiny_bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB, max_position_embeddings=SEQ, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


def make_trainer(tmp_path, cls=None, callbacks=None, **overrides):
    settings = dict(output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
                    logging_strategy="no", disable_tqdm=True, per_device_train_batch_size=N,
                    learning_rate=1e-3, seed=0)
    settings.update(overrides)
    args = transformers.TrainingArguments(**settings)
    return (cls or transformers.Trainer)(model=tiny_bert(), args=args, train_dataset=Tokens(),
                                         callbacks=callbacks)


def full_batch_loss(model, label_smoothing=0.0) -> float:
    """Cross-entropy of the model over the whole data set, in float64, by torch's own loss."""
    data = Tokens()
    with torch.no_grad():
        logits = model(input_ids=data.ids, attention_mask=torch.ones_like(data.ids)).logits
    return F.cross_entropy(logits.double(), data.labels, label_smoothing=label_smoothing).item()


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


SWEEP = dict(start_lr=1e-5, end_lr=10.0, num_iters=40)


def test_find_lr_gives_a_curve_and_a_verdict(tmp_path):
    trainer = make_trainer(tmp_path, weight_decay=0.01)
    result = find_lr(trainer, **SWEEP)
    assert result.verdict == "ok", result.reason
    assert SWEEP["start_lr"] < result.suggested_lr < result.stop_lr
    assert len(result.train_losses) >= 10 and all(map(torch.isfinite, torch.tensor(result.losses)))
    assert result.settings["optimizer"] == "AdamW"  # the optimizer TrainingArguments configure
    assert result.settings["step"] == "custom" and result.settings["accumulation_steps"] == 1
    assert result.settings["batch_size"] == N
    # the first point is the untrained model's loss on the (whole-data-set) batch
    assert result.train_losses[0] == pytest.approx(full_batch_loss(trainer.model), rel=1e-5)


@pytest.mark.parametrize("factor", [0.0, 0.2])
def test_label_smoothing_is_the_trainers(tmp_path, factor):
    trainer = make_trainer(tmp_path, label_smoothing_factor=factor)
    with torch.no_grad():  # confident predictions, so that smoothing changes the loss a lot
        trainer.model.classifier.weight.mul_(30)
    result = find_lr(trainer, start_lr=1e-6, end_lr=1e-5, num_iters=2)
    expected = full_batch_loss(trainer.model, label_smoothing=factor)
    assert result.train_losses[0] == pytest.approx(expected, rel=1e-5)
    if factor:
        assert abs(expected - full_batch_loss(trainer.model)) > 1e-3  # the check can tell


class DoubledLoss(transformers.Trainer):
    """A custom loss in a Trainer subclass, the way the Transformers docs show it: a mean
    over the micro-batch, which the Trainer divides by the accumulation steps."""

    calls = 0
    loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        DoubledLoss.calls += 1
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = 2 * F.cross_entropy(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def test_a_subclass_compute_loss_is_used(tmp_path):
    trainer = make_trainer(tmp_path, cls=DoubledLoss)
    result = find_lr(trainer, start_lr=1e-6, end_lr=1e-5, num_iters=2)
    assert result.train_losses[0] == pytest.approx(2 * full_batch_loss(trainer.model), rel=1e-5)


def test_gradient_accumulation_matches_the_trainers_own_step(tmp_path):
    """Half-size micro-batches, two per step: the recorded step loss is the one trainer.train()
    logs for its first step (Transformers counts BERT's loss, whose forward takes **kwargs, as
    already scaled for accumulation: it sums the micro-batch means, and so does the range test)."""
    DoubledLoss.calls = 0
    trainer = make_trainer(tmp_path, cls=DoubledLoss, per_device_train_batch_size=N // 2,
                           gradient_accumulation_steps=2)
    result = find_lr(trainer, start_lr=1e-6, end_lr=1e-4, num_iters=5)
    assert result.settings["accumulation_steps"] == 2
    assert DoubledLoss.calls == 2 * 5  # two micro-batches per optimizer step
    mean = 2 * full_batch_loss(trainer.model)
    assert result.train_losses[0] == pytest.approx(mean, rel=1e-5)  # per-micro-batch means

    bert = make_trainer(tmp_path, per_device_train_batch_size=N // 2,
                        gradient_accumulation_steps=2, max_steps=1, logging_steps=1,
                        logging_strategy="steps")
    assert bert.model_accepts_loss_kwargs  # so Transformers does not divide by 2
    curve = find_lr(bert, start_lr=1e-6, end_lr=1e-4, num_iters=2)
    bert.train()
    logged = bert.state.log_history[0]["loss"]
    assert curve.train_losses[0] == pytest.approx(logged, rel=1e-5)
    assert logged == pytest.approx(2 * full_batch_loss(tiny_bert()), rel=1e-5)


class Text(torch.utils.data.Dataset):
    """Token sequences for a causal LM whose rows have different numbers of labelled tokens."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, VOCAB, (N, SEQ), generator=gen)
        self.labels = self.ids.clone()
        for i in range(N):
            self.labels[i, SEQ - i % 4 * 2:] = -100  # 0, 2, 4 or 6 padded positions

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def test_token_losses_are_weighted_over_the_accumulated_batch(tmp_path):
    """A causal LM with padded labels and 2 micro-batches per step: the step's loss is the mean
    over every labelled token of the step (``num_items_in_batch``), as ``trainer.train()`` logs."""

    def trainer(**overrides):
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB,
                                         n_positions=SEQ, resid_pdrop=0.0, embd_pdrop=0.0,
                                         attn_pdrop=0.0)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path), report_to=[], use_cpu=True, save_strategy="no",
            disable_tqdm=True, per_device_train_batch_size=N // 2,
            gradient_accumulation_steps=2, seed=0, **overrides)
        return transformers.Trainer(model=transformers.GPT2LMHeadModel(config), args=args,
                                    train_dataset=Text())

    lm = trainer(logging_strategy="no")
    result = find_lr(lm, start_lr=1e-6, end_lr=1e-5, num_iters=2)
    data = Text()
    with torch.no_grad():
        logits = lm.model(input_ids=data.ids).logits[:, :-1].double()
    token_sum = F.cross_entropy(logits.reshape(-1, VOCAB), data.labels[:, 1:].reshape(-1),
                                reduction="sum")
    # the Trainer's count: over labels[:, 1:] when it knows the loss shifts them; Transformers
    # 5.24 does not know it for GPT-2 (loss_type None) and also counts each row's first label
    counted = data.labels[:, 1:] if lm._loss_shifts_labels else data.labels
    expected = token_sum / (counted != -100).sum()
    assert result.train_losses[0] == pytest.approx(expected.item(), rel=1e-5)

    hf = trainer(max_steps=1, logging_steps=1, logging_strategy="steps")
    hf.train()
    assert result.train_losses[0] == pytest.approx(hf.state.log_history[0]["loss"], rel=1e-5)


def test_model_optimizer_and_trainer_state_are_restored(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.train()  # the trainer now holds an optimizer with Adam state (and lr 0 at the end)
    optimizer = trainer.optimizer
    before_model = weights(trainer.model)
    dataloaders = list(trainer.accelerator.gradient_state.dataloader_references)
    before_opt = copy.deepcopy(optimizer.state_dict())  # state_dict() shares the tensors
    find_lr(trainer, **SWEEP)
    assert trainer.optimizer is optimizer
    for k, v in weights(trainer.model).items():
        assert torch.equal(v, before_model[k]), k
    after_opt = optimizer.state_dict()
    assert after_opt["param_groups"] == before_opt["param_groups"]
    for i, state in before_opt["state"].items():
        for k, v in state.items():
            assert torch.equal(after_opt["state"][i][k], v), (i, k)
    assert all(p.grad is None for p in trainer.model.parameters())
    # the abandoned pass over accelerate's dataloader is closed: its gradient state is as it was
    assert trainer.accelerator.gradient_state.dataloader_references == dataloaders


def test_train_after_find_lr_trains_at_the_suggestion(tmp_path):
    trainer = make_trainer(tmp_path / "a", max_steps=4)
    result = find_lr(trainer, **SWEEP)
    assert result.verdict == "ok", result.reason
    assert trainer.optimizer is None  # train() builds a fresh one from the arguments
    trainer.args.learning_rate = result.suggested_lr
    trainer.train()
    assert trainer.lr_scheduler.base_lrs[0] == result.suggested_lr

    fresh = make_trainer(tmp_path / "b", max_steps=4, learning_rate=result.suggested_lr)
    fresh.train()  # what the user gets passing the suggestion to TrainingArguments
    for k, v in weights(fresh.model).items():
        torch.testing.assert_close(trainer.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


class FirstStepGrads(transformers.TrainerCallback):
    """Records whether the model holds gradients when the first training step begins."""

    clear = None

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self.clear = all(p.grad is None for p in model.parameters())


def test_callback_trains_at_the_suggestion_through_the_warmup(tmp_path):
    schedule = dict(max_steps=5, warmup_steps=2, lr_scheduler_type="linear")
    trainer = make_trainer(tmp_path / "a", **schedule)
    callback, grads = LRFinderCallback(trainer, **SWEEP), FirstStepGrads()
    trainer.add_callback(callback)
    trainer.add_callback(grads)  # runs after the range test
    trainer.train()
    assert grads.clear  # the range test's last gradients do not reach the first step
    result = callback.result
    assert result is not None and result.verdict == "ok", result and result.reason
    assert trainer.lr_scheduler.base_lrs == pytest.approx([result.suggested_lr] * 2)

    plain = make_trainer(tmp_path / "b", learning_rate=result.suggested_lr, **schedule)
    plain.train()
    for k, v in weights(plain.model).items():
        torch.testing.assert_close(trainer.model.state_dict()[k], v, rtol=1e-5, atol=1e-6)


def test_callback_keeps_learning_rate_when_inconclusive(tmp_path, caplog):
    trainer = make_trainer(tmp_path / "a", max_steps=2)
    # a sweep far too low to see anything: the curve is flat
    callback = LRFinderCallback(trainer, start_lr=1e-9, end_lr=2e-9, num_iters=5)
    trainer.add_callback(callback)
    with caplog.at_level(logging.WARNING, logger="lrtune.integrations.transformers"):
        trainer.train()
    assert callback.result.verdict == "inconclusive"
    assert "training at learning_rate=0.001" in caplog.text
    assert trainer.lr_scheduler.base_lrs == [1e-3, 1e-3]


class StepRates(transformers.TrainerCallback):
    """Records the optimizer's rate at the start of every step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def warmup_cosine(optimizer):
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=2)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[2])


def test_callback_scales_a_sequential_schedule_past_its_warmup(tmp_path):
    """A user's SequentialLR (warmup, then cosine): every step, the warmup's and the cosine's
    (which restarts from its own base_lrs), runs at the rate the same schedule built at the
    suggestion gives."""
    trainer = make_trainer(tmp_path, max_steps=6)
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1e-3)
    trainer.optimizer, trainer.lr_scheduler = optimizer, warmup_cosine(optimizer)
    callback, rates = LRFinderCallback(trainer, **SWEEP), StepRates()
    trainer.add_callback(callback)
    trainer.add_callback(rates)
    trainer.train()
    lr = callback.result.suggested_lr
    assert lr is not None, callback.result.reason
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    schedule, expected = warmup_cosine(reference), []
    for _ in range(6):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    assert rates.lrs == pytest.approx(expected, rel=1e-9)


def test_a_callback_made_for_another_trainer_is_refused(tmp_path):
    # it would sweep the training trainer's optimizer while the other one's model computes
    # the losses: nothing the sweep steps would move, and the curve would be flat
    other = make_trainer(tmp_path / "a")
    trainer = make_trainer(tmp_path / "b", max_steps=2,
                           callbacks=[LRFinderCallback(other, **SWEEP)])
    with pytest.raises(ValueError, match=r"^this LRFinderCallback was made for another trainer"):
        trainer.train()


def test_keywords_the_trainer_decides_are_refused(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(TypeError, match=r"^trainer must be a transformers\.Trainer, got Bert"):
        find_lr(trainer.model)
    with pytest.raises(ValueError, match=r"^accumulation_steps is set by the trainer"):
        find_lr(trainer, accumulation_steps=2)
    with pytest.raises(ValueError, match=r"^batch_size is set by the trainer"):
        LRFinderCallback(trainer, batch_size=4)


def test_import_without_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now fails
    monkeypatch.delitem(sys.modules, "lrtune.integrations.transformers")
    with pytest.raises(ImportError) as info:
        importlib.import_module("lrtune.integrations.transformers")
    message = str(info.value)
    assert "pip install 'lrtune[transformers]'" in message and "\n" not in message
