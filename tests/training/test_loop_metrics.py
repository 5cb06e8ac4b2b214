"""Trainer metrics are exact over the whole validation set: equal to scikit-learn's."""

import pytest
import torch
from conftest import make_model
from sklearn import metrics as skm
from torch import nn

from lrtune.training import Trainer


def _classification(n=150):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    y = (x @ torch.randn(6, 3, generator=g, dtype=torch.float64)
         + 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)).argmax(1)
    return x, y


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_evaluate_and_history_f1_auroc_equal_scikit_learn(batch_size):
    (x, y), valid = _classification(), _classification(97)
    model = make_model().double()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(),
                      metrics=["f1", "auroc"], device="cpu", verbose=0)
    trainer.fit((x, y), valid, epochs=1, batch_size=batch_size)
    with torch.no_grad():
        logits = model(valid[0])
    expected = {"f1": skm.f1_score(valid[1], logits.argmax(1), average="macro"),
                "auroc": skm.roc_auc_score(valid[1], logits.softmax(1), multi_class="ovr")}
    scores = trainer.evaluate(valid, batch_size=batch_size)
    record = trainer.history.epochs[-1]
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-6), name
        assert record[f"valid_{name}"] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_evaluate_and_history_r2_equal_scikit_learn(batch_size):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(150, 6, generator=g, dtype=torch.float64)
    y = x @ torch.randn(6, generator=g, dtype=torch.float64) + torch.randn(150, generator=g,
                                                                         dtype=torch.float64)
    train, valid = (x[:100], y[:100, None]), (x[100:], y[100:, None])
    model = nn.Linear(6, 1).double()
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), nn.MSELoss(),
                      metrics=["r2"], device="cpu", verbose=0)
    trainer.fit(train, valid, epochs=1, batch_size=batch_size)
    with torch.no_grad():
        expected = skm.r2_score(valid[1], model(valid[0]))
    assert trainer.evaluate(valid, batch_size=batch_size)["r2"] == pytest.approx(expected, abs=1e-6)
    assert trainer.history.epochs[-1]["valid_r2"] == pytest.approx(expected, abs=1e-6)
