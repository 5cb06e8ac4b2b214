"""sweep.png: three panels whose legends sit beside them, one legend of rates for both curves."""

from __future__ import annotations

import pytest

from lrtune.confirmation.result import SweepResult
from lrtune.plots import pyplot


def sweep_result() -> SweepResult:
    lrs = [0.01, 0.03, 0.1, 0.3]
    epochs = [1.0, 2.0, 3.0]
    valid = [[0.5, 0.6, 0.7], [0.6, 0.8, 0.9], [0.7, 0.85, 0.91], [None, None, None]]
    loss = [[1.5, 1.2, 1.0], [1.2, 0.6, 0.4], [1.0, 0.5, 0.3], [2.0, None, None]]
    return SweepResult(
        lrs=lrs, metric="accuracy", steps=[10, 20, 30], epochs=epochs, train_loss=loss,
        train_metric=valid, valid_loss=loss, valid_metric=valid,
        final_metric=[0.7, 0.9, 0.91, None], diverged_step=[None, None, None, 12],
        chosen_lr=0.03, chosen_index=1, reason="lowest rate within noise", tolerance=0.02,
        engine="batched")


@pytest.fixture
def fig():
    figure = sweep_result().plot()
    yield figure
    pyplot().close(figure)


def test_sweep_figure_has_three_panels_and_clear_legends(fig, legends_clear, texts_of):
    final_ax, metric_ax, loss_ax = fig.axes
    legends = legends_clear(fig)
    assert len(legends) == 2 and metric_ax.get_legend() is None  # the rates' legend serves both
    assert texts_of(final_ax.get_legend()) == [
        "final valid accuracy", "diverged", "chosen: 0.03", "within noise (0.02)"]
    rates = loss_ax.get_legend()
    assert rates.get_title().get_text() == "lr"
    assert texts_of(rates) == ["0.01", "0.03 (chosen)", "0.1", "0.3 (diverged)"]
    assert final_ax.get_xscale() == "log" and loss_ax.get_yscale() == "log"
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "valid accuracy (final)", "valid accuracy", "train loss"]


def test_each_rate_has_one_colour_in_both_curve_panels(fig):
    _, metric_ax, loss_ax = fig.axes
    assert [line.get_color() for line in metric_ax.get_lines()] == [
        line.get_color() for line in loss_ax.get_lines()]
    assert len({tuple(line.get_color()) for line in loss_ax.get_lines()}) == 4
    widths = [line.get_linewidth() for line in loss_ax.get_lines()]
    assert widths[1] > max(widths[0], widths[2], widths[3])  # the chosen rate stands out


def test_the_window_choice_and_stopped_rates_are_drawn(legends_clear, texts_of):
    res = sweep_result()
    res.valid_metric[0][2] = res.valid_loss[0][2] = None
    res.final_metric[0] = None
    res.stopped_step = [20, None, None, None]
    res.choice, res.score_name = "window", "valid loss, mean of the last 2 evaluations"
    res.scores, res.tolerance = [None, 0.5, 0.4, None], 0.004
    fig = res.plot()
    try:
        final_ax, _, loss_ax = fig.axes
        legends_clear(fig)
        assert texts_of(final_ax.get_legend()) == [
            "valid loss, mean of the last 2 evaluations", "diverged",
            "stopped early by halving\n(score at its rung)", "chosen: 0.03",
            "within noise (0.004)"]
        assert final_ax.get_ylabel() == "valid loss, mean of the last 2 evaluations"
        stopped = final_ax.get_lines()[2]
        assert list(stopped.get_ydata()) == [1.2]  # the loss at its rung (step 20)
        assert texts_of(loss_ax.get_legend())[0] == "0.01 (stopped at step 20)"
    finally:
        pyplot().close(fig)
