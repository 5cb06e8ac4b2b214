"""The step protocol: device transfer of nested batches, outputs, results, precision, clipping."""

from __future__ import annotations

import copy
import dataclasses
from collections import namedtuple

import pytest
import torch
from torch import nn

from lrtune.steps import StepRunner, as_result, primary_output, run_step, target_of, to_device

Pair = namedtuple("Pair", "x y")


@dataclasses.dataclass
class Batch:
    pixels: torch.Tensor
    meta: dict
    name: str = "b"


def test_to_device_moves_tensors_nested_anywhere():
    batch = {"a": [torch.zeros(2), (torch.ones(1), 3)], "p": Pair(torch.ones(2), "keep"),
             "d": Batch(torch.zeros(1), {"m": torch.ones(3)})}
    out = to_device(batch, "meta")
    leaves = [out["a"][0], out["a"][1][0], out["p"].x, out["d"].pixels, out["d"].meta["m"]]
    assert all(t.device.type == "meta" for t in leaves)
    assert out["a"][1][1] == 3 and out["p"].y == "keep" and out["d"].name == "b"
    assert isinstance(out["p"], Pair) and isinstance(out["d"], Batch)
    assert batch["p"].x.device.type == "cpu"  # the input is not modified


def test_to_device_returns_an_on_device_pair_untouched():
    pair = (torch.zeros(2), torch.ones(2))
    assert to_device(pair, "cpu") is pair


@pytest.mark.parametrize(("output", "expected"), [
    (torch.ones(1), 1.0),
    ((torch.full((1,), 2.0), torch.zeros(1)), 2.0),
    ({"hidden": torch.zeros(1), "logits": torch.full((1,), 3.0)}, 3.0),
    (Pair(torch.full((1,), 4.0), None), 4.0),
])
def test_primary_output(output, expected):
    assert primary_output(output).item() == expected


def test_target_of_dicts_and_pairs():
    assert target_of({"input_ids": 1, "labels": 7}) == 7
    assert target_of((1, 2, 3)) == 2
    assert target_of(torch.zeros(3)) is None


def test_results_from_every_return_form():
    loss = torch.tensor(0.5)

    class Out:  # a Hugging Face ModelOutput-like object
        def __init__(self):
            self.loss, self.logits = loss, torch.zeros(2, 3)

    batch = {"x": torch.zeros(2), "labels": torch.tensor([0, 1])}
    assert as_result(loss, batch).target is batch["labels"]
    r = as_result({"loss": loss, "logits": torch.ones(2, 3)}, batch)
    assert r.output.shape == (2, 3) and r.target is batch["labels"]
    r = as_result(Out(), batch)
    assert r.loss is loss and r.output.shape == (2, 3)
    logits = torch.ones(2, 3)  # an "output" that is the whole model output: metrics read its
    for whole in ((logits, "aux"), {"loss": loss, "logits": logits}):  # primary output
        assert as_result({"loss": loss, "output": whole}, batch).output is logits
    with pytest.raises(TypeError, match="without a 'loss' entry"):
        as_result({"logits": 1}, batch)
    with pytest.raises(ValueError, match=r"0-d tensor .*\(2,\)"):
        as_result(torch.ones(2), batch)
    with pytest.raises(TypeError, match="got str"):
        as_result("loss", batch)


def test_default_step_explains_other_batches():
    runner = StepRunner(nn.Linear(2, 2), None, loss_fn=nn.MSELoss())
    with pytest.raises(TypeError, match=r"dict with keys \['x'\]; pass step=fn"):
        runner.forward({"x": torch.zeros(1, 2)})
    with pytest.raises(TypeError, match="yields a Tensor"):
        runner.forward(torch.zeros(1, 2))
    with pytest.raises(TypeError, match="give loss_fn"):
        StepRunner(nn.Linear(2, 2), None)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": "fp8"}, "precision must be one of 32, bf16-mixed, 16-mixed"),
    ({"clip_grad_norm": 0}, "clip_grad_norm must be a finite number > 0"),
    ({"clip_grad_value": float("nan")}, "clip_grad_value must be"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StepRunner(nn.Linear(2, 2), None, loss_fn=nn.MSELoss(), **kwargs)


@pytest.mark.parametrize(("kwargs", "message"), [
    # Python's "takes 1 positional argument but 2 were given", from inside the loop, before
    ({"step": lambda batch: batch}, r"step must be callable as step\(model, batch\), but "
                                    r"step\(batch\) cannot"),
    ({"loss_fn": lambda out: out.sum()}, r"loss_fn must be callable as loss_fn\(output, target"),
    # nn.CrossEntropyLoss(output, y) built a module: "Boolean value of Tensor ... is ambiguous"
    ({"loss_fn": nn.CrossEntropyLoss}, r"loss_fn is the class CrossEntropyLoss; pass an "
                                       r"instance: CrossEntropyLoss\(\)"),
])
def test_steps_and_losses_that_cannot_be_called_so_are_named_up_front(kwargs, message):
    with pytest.raises(TypeError, match=message):
        StepRunner(nn.Linear(2, 2), None, **kwargs)
    StepRunner(nn.Linear(2, 2), None, loss_fn=nn.MSELoss(reduction="sum"))  # modules are fine
    StepRunner(nn.Linear(2, 2), None, step=lambda model, batch, *rest: batch)


@pytest.mark.parametrize("step", [
    lambda model, batch: nn.functional.mse_loss(model(batch[0]), batch[1]).detach(),
    lambda model, batch: torch.tensor(3.0),
])
def test_a_loss_without_grad_is_named(step):
    model = nn.Linear(2, 2)
    runner = StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.1), step)
    result = runner.forward((torch.zeros(4, 2), torch.zeros(4, 2)))
    with pytest.raises(ValueError, match="the loss does not require grad: the step detached it"):
        runner.backward(result.loss)  # torch: "element 0 of tensors does not require grad"


def _manual_clipped_step(model, x, y, max_norm):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    nn.functional.mse_loss(model(x), y).backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    opt.step()


def test_clipping_equals_torch_clip_grad_norm():
    torch.manual_seed(0)
    model, x, y = nn.Linear(3, 2), torch.randn(8, 3) * 10, torch.randn(8, 2)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    runner = StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.5),
                        loss_fn=nn.functional.mse_loss, clip_grad_norm=0.1)
    runner.backward(runner.forward((x, y)).loss)
    assert runner.optimizer_step()
    _manual_clipped_step(ref, x, y, 0.1)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)  # same operations in the same order


def test_clipping_covers_a_param_group_added_after_the_first_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    ref = copy.deepcopy(model)
    x, y = torch.randn(8, 3) * 10, torch.randn(8, 2)
    runner = StepRunner(model, torch.optim.SGD(model[1].parameters(), lr=0.5),
                        loss_fn=nn.functional.mse_loss, clip_grad_norm=0.1)
    runner.backward(runner.forward((x, y)).loss)
    runner.optimizer_step()  # the head alone, then the backbone is unfrozen (fastai-style)
    runner.optimizer.zero_grad()
    runner.optimizer.add_param_group({"params": model[0].parameters()})
    runner.backward(runner.forward((x, y)).loss)
    runner.optimizer_step()
    ref_opt = torch.optim.SGD(ref[1].parameters(), lr=0.5)
    for step in range(2):
        ref_opt.zero_grad()
        nn.functional.mse_loss(ref(x), y).backward()
        if step:
            ref_opt.add_param_group({"params": ref[0].parameters()})
        nn.utils.clip_grad_norm_([p for g in ref_opt.param_groups for p in g["params"]], 0.1)
        ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)  # the new group was clipped with the others


def test_fp16_scaler_skips_a_step_with_overflowing_gradients():
    model = nn.Linear(2, 1)
    runner = StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.1),
                        step=lambda m, b: m(b[0]).sum() * b[1], precision="16-mixed")
    before = [p.detach().clone() for p in model.parameters()]
    runner.backward(runner.forward((torch.ones(1, 2), torch.tensor(float("inf")))).loss)
    assert runner.optimizer_step() is False
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    runner.optimizer.zero_grad()
    runner.backward(runner.forward((torch.ones(1, 2), torch.tensor(1.0))).loss)
    assert runner.optimizer_step() is True
    state = runner.state_dict()
    assert state["scale"] < 65536.0  # backed off once
    other = StepRunner(model, runner.optimizer, step=runner.step_fn, precision="16-mixed")
    other.load_state_dict(state)
    assert other.scaler.get_scale() == runner.scaler.get_scale()


def test_run_step_passes_the_batch_as_is():
    seen = []
    run_step(lambda m, b: seen.append(b) or torch.tensor(0.0), nn.Identity(), {"k": 1})
    assert seen == [{"k": 1}]
