"""lrtune.integrations.lightning: the range test on a LightningModule's own training_step.

Every curve is compared with :func:`lrtune.find_lr` on the equivalent plain PyTorch code (same
initial weights, data order and sweep), in float64, so "the same answer" is checked to ~1e-12.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import lrtune

pl = pytest.importorskip("lightning.pytorch")
from lightning_worker import (  # noqa: E402
    QUIET,
    SWEEP,
    Plain,
    ShardedOrder,
    loader,
    net,
)

from lrtune.integrations.lightning import LRFinder, find_lr, scale_lr  # noqa: E402

# Lightning 2.6's own code trips torch 2.13's pytree deprecation inside Trainer.fit
pytestmark = pytest.mark.filterwarnings(
    "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")
HERE = Path(__file__).parent
SRC = Path(lrtune.__file__).resolve().parents[1]


def plain_find_lr(data=None, smoothing: float = 0.0, head_ratio: float = 1.0, **kwargs):
    """lrtune.find_lr on the same network, optimizer and data, without Lightning."""
    model = net()
    optimizer = torch.optim.SGD([{"params": model[0].parameters()},
                                 {"params": model[2].parameters(), "lr": 0.1 * head_ratio}],
                                lr=0.1, momentum=0.9)
    return lrtune.find_lr(model, optimizer, nn.CrossEntropyLoss(label_smoothing=smoothing),
                          loader() if data is None else data, **SWEEP, **kwargs)


def assert_same_curve(result, reference) -> None:
    assert result.stop_reason == reference.stop_reason
    np.testing.assert_allclose(result.train_lrs, reference.train_lrs, rtol=1e-12)
    np.testing.assert_allclose(result.train_losses, reference.train_losses, rtol=1e-9)
    assert result.suggested_lr == pytest.approx(reference.suggested_lr, rel=1e-9)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, **QUIET, **kwargs)


@pytest.fixture(scope="module")
def reference():
    result = plain_find_lr()
    assert result.verdict == "ok" and result.stop_reason == "diverged"  # a curve worth comparing
    return result


# -- the module's own training_step, whatever the batch ----------------------------------------
def test_same_curve_as_plain_find_lr(reference):
    module = Plain()
    assert_same_curve(find_lr(module, train_dataloaders=loader(), **SWEEP), reference)


def test_training_step_is_what_runs_label_smoothing_kept(reference):
    result = find_lr(Plain(smoothing=0.2), train_dataloaders=loader(), **SWEEP)
    assert_same_curve(result, plain_find_lr(smoothing=0.2))
    # and it is not the unsmoothed loss a find_lr on the bare network would record
    n = min(len(result.train_losses), len(reference.train_losses))
    assert np.abs(np.subtract(result.train_losses[:n], reference.train_losses[:n])).max() > 0.05


class DictBatches(Plain):
    def training_step(self, batch, batch_idx):
        return {"loss": F.cross_entropy(self(batch["x"]), batch["y"]), "extra": 1}


def test_dict_batches_and_dict_output(reference):
    assert_same_curve(find_lr(DictBatches(), None, loader(dicts=True), **SWEEP), reference)


class Indexed(Plain):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch_idx)
        return super().training_step(batch, batch_idx)


class NoIndex(Plain):
    def training_step(self, batch):
        return F.cross_entropy(self(batch[0]), batch[1])


def test_batch_idx_restarts_each_pass_and_is_optional(reference):
    module = Indexed()
    result = find_lr(module, None, loader(), **SWEEP)
    assert module.seen == [i % 6 for i in range(len(result.train_losses))]  # 6 batches a pass
    assert_same_curve(find_lr(NoIndex(), None, loader(), **SWEEP), reference)


class Forms(Plain):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # ignored
        return {"optimizer": opt, "list": [opt], "dict": {"optimizer": opt, "lr_scheduler": sched},
                "tuple": ([opt], [sched]), "dicts": [{"optimizer": opt}]}[self.form]


@pytest.mark.parametrize("form", ["optimizer", "list", "dict", "tuple", "dicts"])
def test_every_configure_optimizers_form_scheduler_left_out(form, reference):
    assert_same_curve(find_lr(Forms(form), None, loader(), **SWEEP), reference)


class TwoOptimizers(Plain):
    def configure_optimizers(self):
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1),
                torch.optim.SGD(self.net[2].parameters(), lr=0.1)]


class Manual(Plain):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


def test_refusals_are_one_clear_line():
    with pytest.raises(ValueError, match=r"^configure_optimizers returned 2 optimizers; "):
        find_lr(TwoOptimizers(), None, loader())
    with pytest.raises(ValueError, match=r"^the module uses manual optimisation "
                                         r"\(automatic_optimization = False\)"):
        find_lr(Manual(), None, loader())
    with pytest.raises(ValueError, match=r"^no training data: pass train_dataloaders="):
        find_lr(Plain())
    with pytest.raises(TypeError, match=r"^module must be a lightning\.pytorch\.LightningModule"):
        find_lr(net(), None, loader())
    with pytest.raises(ValueError, match="needs one train dataloader, got 2"):
        find_lr(Plain(), None, {"a": loader(), "b": loader()})
    with pytest.raises(TypeError, match=r"^unknown range-test argument\(s\): num_iter, step \("):
        LRFinder(num_iter=10, step=None)


class NeedsTrainer(Plain):
    def configure_optimizers(self):
        opt = super().configure_optimizers()
        steps = self.trainer.estimated_stepping_batches  # common with OneCycleLR
        return [opt], [torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)]


def test_configure_optimizers_reading_the_trainer_says_to_pass_one():
    with pytest.raises(RuntimeError, match=r"not attached to a `Trainer`.*\(configure_optimizers "
                                           r"needs one: pass it, find_lr\(module, pl\.Trainer"):
        find_lr(NeedsTrainer(), None, loader())
    assert find_lr(NeedsTrainer(), trainer(max_epochs=1), loader(), **SWEEP).verdict == "ok"


def test_a_loader_given_as_the_trainer_is_named():
    # find_lr(module, loader): the order of trainer.fit(module, loader), not find_lr's
    with pytest.raises(TypeError, match=r"^trainer must be a lightning\.pytorch\.Trainer or None, "
                                        r"got DataLoader \(pass the data as train_dataloaders="):
        find_lr(Plain(), loader())


# -- groups, restore, update_attr ---------------------------------------------------------------
class Recording(Plain):
    """Records every param group's lr at each optimizer step."""

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        self.lrs: list[list[float]] = []
        step = opt.step

        def recording_step(*args, **kwargs):
            self.lrs.append([g["lr"] for g in opt.param_groups])
            return step(*args, **kwargs)

        opt.step = recording_step
        return opt


def test_param_groups_keep_their_ratio():
    module = Recording(head_ratio=0.1)
    result = find_lr(module, None, loader(), **SWEEP)
    lrs = np.array(module.lrs)
    np.testing.assert_allclose(lrs[:, 0], result.train_lrs, rtol=1e-12)
    np.testing.assert_allclose(lrs[:, 1] / lrs[:, 0], 0.1, rtol=1e-12)
    assert_same_curve(result, plain_find_lr(head_ratio=0.1))


def test_everything_restored_and_log_unpatched():
    module = Plain()
    module.eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    find_lr(module, None, loader(), **SWEEP)  # training_step calls self.log: no warning, no error
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert not module.training and torch.equal(torch.get_rng_state(), rng)
    assert "log" not in vars(module) and "log_dict" not in vars(module)


class SlowBody(Plain):
    """Discriminative rates: the first group (the body) at a tenth of ``self.hparams.lr``."""

    def configure_optimizers(self):
        lr = self.hparams.lr
        return torch.optim.SGD([{"params": self.net[0].parameters(), "lr": lr / 10},
                                {"params": self.net[2].parameters()}], lr=lr, momentum=0.9)


def test_update_attr_gives_the_tested_rates_again():
    """The suggestion is the first group's rate; the attribute is written so that
    configure_optimizers builds that rate again (hparams.lr = 10x the suggestion), by find_lr
    and by the callback."""
    module = SlowBody()
    lr = find_lr(module, None, loader(), update_attr=True, **SWEEP).suggested_lr
    assert module.hparams.lr == pytest.approx(10 * lr, rel=1e-12)
    rates = [g["lr"] for g in module.configure_optimizers().param_groups]
    np.testing.assert_allclose(rates, [lr, 10 * lr], rtol=1e-12)
    finder, module = LRFinder(**SWEEP), SlowBody()
    fit = trainer(max_steps=1, callbacks=[finder])
    fit.fit(module, loader())
    lr = finder.result_.suggested_lr
    assert module.hparams.lr == pytest.approx(10 * lr, rel=1e-12)
    np.testing.assert_allclose([g["lr"] for g in fit.optimizers[0].param_groups], [lr, 10 * lr],
                               rtol=1e-12)


class LearningRate(Plain):
    """The rate as a plain ``learning_rate`` attribute, no ``lr`` anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.learning_rate = self.hparams.pop("lr")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate, momentum=0.9)


def test_update_attr_like_lightning(reference):
    module = Plain()
    find_lr(module, None, loader(), update_attr=True, **SWEEP)
    assert module.hparams.lr == pytest.approx(reference.suggested_lr, rel=1e-9)
    other = LearningRate()
    find_lr(other, None, loader(), update_attr=True, **SWEEP)
    assert other.learning_rate == pytest.approx(reference.suggested_lr, rel=1e-9)
    untouched = Plain()
    find_lr(untouched, None, loader(), **SWEEP)
    assert untouched.hparams.lr == 0.1
    with pytest.raises(AttributeError, match="no learning-rate attribute 'base_lr'"):
        find_lr(Plain(), None, loader(), update_attr=True, attr_name="base_lr")


def test_scale_lr_follows_the_scheduler():
    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.2},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.02}])
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    assert scale_lr(opt, 1.0, [sched]) == pytest.approx(5.0)  # initial_lr 0.2 -> 1.0
    np.testing.assert_allclose(sched.base_lrs, [1.0, 0.1])
    for _ in range(2):
        opt.step()
        sched.step()
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], [1.0, 0.1])


def scheduled_rates(build, lr: float, steps: int, scale_to: float | None = None):
    """The rates ``build(optimizer, lr)``'s scheduler gives two groups (the second at a tenth)
    over ``steps`` steps, after ``scale_lr(optimizer, scale_to, [scheduler])`` when given."""
    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": lr},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": lr / 10}], lr=lr)
    sched = build(opt, lr)
    if scale_to is not None:
        scale_lr(opt, scale_to, [sched])
    rates = []
    for _ in range(steps):
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return np.array(rates)


def warmup_cosine(opt, lr):
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=3)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    return torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[3])


def one_cycle(opt, lr):
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[lr, lr / 10], total_steps=10)


def chained(opt, lr):
    return torch.optim.lr_scheduler.ChainedScheduler(
        [torch.optim.lr_scheduler.StepLR(opt, 2, 0.5),
         torch.optim.lr_scheduler.ExponentialLR(opt, 0.9)])


@pytest.mark.parametrize("build", [warmup_cosine, one_cycle, chained])
def test_scale_lr_is_the_schedule_built_at_the_suggestion(build):
    """Scaling to 0.5 gives the rates of the same schedule built with lr=0.5 at every step:
    after SequentialLR's milestone too (its cosine restarts from its own base_lrs), and with
    OneCycleLR's peak (max_lr, not its start) at the suggestion."""
    np.testing.assert_allclose(scheduled_rates(build, 0.02, 10, scale_to=0.5),
                               scheduled_rates(build, 0.5, 10), rtol=1e-12)


def test_scale_lr_with_a_frozen_first_group():
    opt = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.0},
                           {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.02}])
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    assert scale_lr(opt, 0.1, [sched]) == pytest.approx(5.0)  # no ZeroDivisionError
    np.testing.assert_allclose(sched.base_lrs, [0.0, 0.1])
    np.testing.assert_allclose([g["lr"] for g in opt.param_groups], [0.0, 0.05])


# -- inside Trainer.fit -----------------------------------------------------------------------
class Scheduled(Plain):
    def configure_optimizers(self):
        opt = super().configure_optimizers()
        return {"optimizer": opt,
                "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)}


def test_callback_runs_at_fit_start_and_applies_the_suggestion():
    reference = plain_find_lr(loader(shuffle=False), head_ratio=0.1)
    finder = LRFinder(**SWEEP)
    module = Scheduled(head_ratio=0.1)
    fit = trainer(max_steps=2, callbacks=[finder])
    fit.fit(module, loader(shuffle=False))
    assert fit.global_step == 2
    assert_same_curve(finder.result_, reference)
    lr = reference.suggested_lr
    assert module.hparams.lr == pytest.approx(lr, rel=1e-9)
    # the schedule starts from the suggestion, the head keeps its tenth
    np.testing.assert_allclose(fit.lr_scheduler_configs[0].scheduler.base_lrs, [lr, lr / 10])
    np.testing.assert_allclose([g["initial_lr"] for g in fit.optimizers[0].param_groups],
                               [lr, lr / 10])


def test_a_resumed_fit_keeps_the_checkpoints_rates(tmp_path):
    first = trainer(max_steps=2)
    first.fit(Scheduled(), loader())
    path = tmp_path / "two.ckpt"
    first.save_checkpoint(path)
    saved = [g["lr"] for g in first.optimizers[0].param_groups]
    finder = LRFinder(**SWEEP)
    resumed = trainer(max_steps=2, callbacks=[finder])
    resumed.fit(Scheduled(), loader(), ckpt_path=path)  # already at step 2: trains no more
    assert finder.result_ is None  # no test on the trained weights, no rescaled schedule
    assert [g["lr"] for g in resumed.optimizers[0].param_groups] == saved


def test_find_lr_with_a_trainer_trains_nothing_then_fit_works(reference):
    module = Plain()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    fit = trainer(max_steps=2)
    result = find_lr(module, fit, loader(shuffle=False), update_attr=True, **SWEEP)
    assert_same_curve(result, plain_find_lr(loader(shuffle=False)))
    assert fit.global_step == 0 and fit.callbacks == [c for c in fit.callbacks
                                                      if not isinstance(c, LRFinder)]
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert module.hparams.lr == pytest.approx(result.suggested_lr)
    fit.fit(module, loader())
    assert fit.global_step == 2 and fit.optimizers[0].param_groups[0]["lr"] == module.hparams.lr


# -- the framework is optional ------------------------------------------------------------------
def test_import_without_lightning_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "lrtune.integrations.lightning")
    with pytest.raises(ImportError, match=r"pip install 'lrtune\[lightning\]'") as info:
        importlib.import_module("lrtune.integrations.lightning")
    assert "\n" not in str(info.value)


# -- two processes, Lightning's own ddp strategy ------------------------------------------------
def test_ddp_two_ranks_same_curve_and_suggestion(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo",
               PYTHONPATH=os.pathsep.join(p for p in (str(SRC), str(HERE),
                                                      os.environ.get("PYTHONPATH")) if p))
    env.pop("LOCAL_RANK", None)
    # its own session: on a timeout the rank Lightning launched goes down with rank 0
    proc = subprocess.Popen([sys.executable, str(HERE / "lightning_worker.py"), str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        printed = proc.communicate(timeout=240)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the two-rank Lightning run hung (killed after 240 s)")
    assert proc.returncode == 0, printed
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["world_size"] == 2 and ranks[0] == ranks[1]
    reference = plain_find_lr(ShardedOrder())  # the same global batches in one process
    for run in ("find_lr", "callback"):
        np.testing.assert_allclose(ranks[0][run]["losses"], reference.train_losses, rtol=1e-9)
        assert ranks[0][run]["suggested_lr"] == pytest.approx(reference.suggested_lr, rel=1e-9)
    assert ranks[0]["find_lr"]["hparams_lr"] == ranks[0]["find_lr"]["suggested_lr"]
    assert ranks[0]["callback"]["optimizer_lr"] == ranks[0]["callback"]["suggested_lr"]


def test_trainer_settings_reach_the_core():
    from lrtune.integrations.lightning import _trainer_settings

    settings = _trainer_settings(trainer(precision="bf16-mixed", gradient_clip_val=0.5,
                                         gradient_clip_algorithm="value",
                                         accumulate_grad_batches=3))
    assert settings == {"precision": "bf16-mixed", "accumulation_steps": 3,
                        "device": torch.device("cpu"), "clip_grad_value": 0.5}
    assert _trainer_settings(trainer(precision="64-true", gradient_clip_val=2)) == {
        "precision": "32", "accumulation_steps": 1, "device": torch.device("cpu"),
        "clip_grad_norm": 2.0}


def test_trainer_accumulation_is_the_cores():
    fit = trainer(max_steps=1, accumulate_grad_batches=2)
    result = find_lr(Plain(), fit, loader(shuffle=False), **SWEEP)
    assert result.settings["accumulation_steps"] == 2
    assert_same_curve(result, plain_find_lr(loader(shuffle=False), accumulation_steps=2))
