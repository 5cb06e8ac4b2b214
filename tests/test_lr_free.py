import importlib
import inspect

import dadaptation
import prodigyopt
import pytest
import schedulefree
import torch

import lrtune
from lrtune import lr_free
from lrtune.training.metrics import read_hyperparams
from lrtune.training.setup import OPTIMIZERS, make_optimizer

CLASSES = {"prodigy": prodigyopt.Prodigy, "schedulefree-adamw": schedulefree.AdamWScheduleFree,
           "schedulefree-sgd": schedulefree.SGDScheduleFree, "dadapt-adam": dadaptation.DAdaptAdam}


def _params():
    return [torch.nn.Parameter(torch.ones(3))]


@pytest.mark.parametrize("name", list(CLASSES))
def test_each_name_builds_its_package_class_with_the_documented_lr(name):
    assert name in OPTIMIZERS
    opt = make_optimizer(name, _params(), lr=None)
    assert type(opt) is CLASSES[name]
    signature_lr = inspect.signature(CLASSES[name]).parameters["lr"].default
    assert opt.param_groups[0]["lr"] == signature_lr
    assert lr_free.is_lr_free(opt)
    assert lr_free.is_schedule_free(opt) == name.startswith("schedulefree")


def test_documented_defaults_are_the_ones_the_authors_give():
    # Prodigy and D-Adaptation README: lr=1.0; Schedule-Free: 0.0025 (AdamW) and 1.0 (SGD)
    assert [lr_free.default_lr(n) for n in CLASSES] == [1.0, 0.0025, 1.0, 1.0]


def test_momentum_sets_beta1_or_schedule_free_sgds_momentum():
    assert make_optimizer("prodigy", _params(), lr=None, momentum=0.8).param_groups[0][
        "betas"] == (0.8, 0.999)
    assert make_optimizer("schedulefree-sgd", _params(), lr=None, momentum=0.95).param_groups[0][
        "momentum"] == 0.95
    assert make_optimizer("schedulefree-sgd", _params(), lr=None).param_groups[0][
        "momentum"] == 0.9  # 0 means "the package's default", as for Adam's beta1
    with pytest.raises(ValueError, match="nesterov applies to sgd only"):
        make_optimizer("prodigy", _params(), lr=None, nesterov=True)
    with pytest.raises(ValueError, match="sgd needs a learning rate"):
        make_optimizer("sgd", _params(), lr=None)


def test_a_missing_package_is_one_line_naming_the_extra(monkeypatch):
    real = importlib.import_module

    def fake(name, *args):
        if name == "prodigyopt":
            raise ModuleNotFoundError("No module named 'prodigyopt'")
        return real(name, *args)

    monkeypatch.setattr(lr_free.importlib, "import_module", fake)
    with pytest.raises(ImportError) as info:
        make_optimizer("prodigy", _params(), lr=None)
    assert str(info.value) == ("--optimizer prodigy needs the prodigyopt package: "
                               "pip install 'lrtune[lrfree]'")


@pytest.mark.parametrize("name", ["prodigy", "dadapt-adam"])
def test_effective_lr_is_d_times_lr_and_is_recorded_like_a_learning_rate(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = make_optimizer(name, model.parameters(), lr=0.5)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    d = opt.param_groups[0]["d"]
    assert d > 1e-6  # it grew from d0
    assert lr_free.effective_lrs(opt) == [d * 0.5]
    assert read_hyperparams(opt)["effective_lr"] == [d * 0.5]
    assert lr_free.effective_lrs(torch.optim.SGD(_params(), lr=0.1)) is None
    assert "effective_lr" not in read_hyperparams(torch.optim.SGD(_params(), lr=0.1))


def test_schedule_free_warmup_is_two_percent_of_the_run():
    opt = make_optimizer("schedulefree-sgd", _params(), lr=None)
    lr_free.set_run_length(opt, 450)
    assert opt.param_groups[0]["warmup_steps"] == 9
    sgd = torch.optim.SGD(_params(), lr=0.1)
    lr_free.set_run_length(sgd, 450)
    assert "warmup_steps" not in sgd.param_groups[0]


@pytest.mark.parametrize("name", list(CLASSES))
def test_the_range_test_refuses_them_in_one_line(name):
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(name, model.parameters(), lr=None)
    data = (torch.randn(16, 2), torch.randint(0, 2, (16,)))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError) as info:
        lrtune.find_lr(model, opt, torch.nn.CrossEntropyLoss(), data)
    assert str(info.value) == (
        f"the learning-rate range test does not apply to {type(opt).__name__}: it sets its own "
        "step size; train it with its default lr instead of searching one")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
