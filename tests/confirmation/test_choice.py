"""The choice between confirmed rates: the windowed validation loss (default) and the final
metric, on constructed histories and in a sweep."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrtune.confirmation import sweep
from lrtune.confirmation.result import choose, tolerances, window_scores

LRS = [0.01, 0.03, 0.1]


def test_window_scores_average_the_last_quarter_and_skip_stopped_copies():
    curves = [[2.0, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
              [2.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
              [2.0, 1.0, None, None, None, None, None, None]]
    scores, name = window_scores(curves, [0.4, 0.5, None])
    assert scores == pytest.approx([0.45, 0.5, None]) and scores[2] is None
    assert name == "valid loss, mean of the last 2 evaluations"
    assert window_scores([[3.0, 1.0]], [1.0]) == ([1.0], "valid loss, the final evaluation")


def test_a_lucky_last_evaluation_does_not_decide():
    # rate 0 dips on its very last evaluation only; rate 1 is steadily better before that
    losses = [[1.0, 0.70, 0.70, 0.70, 0.70, 0.70, 0.70, 0.50],
              [1.0, 0.60, 0.55, 0.55, 0.55, 0.55, 0.55, 0.55],
              [1.0, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90, 0.90]]
    final = [row[-1] for row in losses]
    assert choose(LRS, final, mode="min", tolerance=tolerances("loss", final, None, 8))[0] == 0
    scores, name = window_scores(losses, final)
    index, reason = choose(LRS, scores, mode="min",
                           tolerance=tolerances("loss", scores, None, 8), name=name)
    assert index == 1
    assert reason == ("lowest rate within 0.0055 of the best valid loss, mean of the last 2 "
                      "evaluations: 0.55 at lr 0.03")


def test_the_lowest_rate_within_one_percent_of_the_best_window_wins():
    scores = [0.504, 0.50, 0.60]
    assert choose(LRS, scores, mode="min", tolerance=0.005)[0] == 0
    assert choose(LRS, scores, mode="min", tolerance=0.003)[0] == 1


def test_the_sweep_records_what_it_compared(data):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    kw = dict(lrs=LRS, epochs=8, batch_size=16, halving=False)
    window = sweep(net, "sgd", nn.CrossEntropyLoss(), data, data, **kw)
    assert window.choice == "window" and window.metric == "accuracy"
    expected = [sum(row[-2:]) / 2 for row in window.valid_loss]
    assert window.scores == pytest.approx(expected)
    best = min(expected)
    near = [i for i, v in enumerate(expected) if v - best <= 0.01 * best]
    assert window.chosen_index == min(near)
    assert window.tolerance == pytest.approx(0.01 * best)
    final = sweep(net, "sgd", nn.CrossEntropyLoss(), data, data, choice="final", **kw)
    assert final.choice == "final" and final.scores == final.final_metric
    assert isinstance(final.tolerance, list)  # paired standard errors of the accuracy
    with pytest.raises(ValueError, match="choice must be one of window, final, got 'best'"):
        sweep(net, "sgd", nn.CrossEntropyLoss(), data, data, choice="best", **kw)
