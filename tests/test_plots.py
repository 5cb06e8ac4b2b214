"""The range-test figure and the legend rules every figure follows."""

from __future__ import annotations

import numpy as np
import pytest

from lrtune.finder.result import FinderResult
from lrtune.plots import coinciding, pyplot

LRS = np.geomspace(1e-5, 1.0, 101)


def finder_result(**suggestions) -> FinderResult:
    """A range test's result with a U-shaped curve and the given suggestions."""
    x = np.log10(LRS)
    losses = (2.3 - 0.8 / (1 + np.exp(-3 * (x + 2.5))) + 4 * np.exp(3 * (x - 0.5))).tolist()
    return FinderResult(
        lrs=LRS.tolist(), losses=losses, smoothed_losses=losses, train_lrs=LRS.tolist(),
        train_losses=losses, stop_reason="diverged", stop_lr=1.0, suggestions=suggestions,
        rule="steepest", suggested_lr=suggestions.get("steepest"), verdict="ok")


def markers(ax):
    return [line for line in ax.get_lines() if line.get_marker() not in (None, "None", "")]


def test_the_checker_fails_on_a_legend_over_data(legends_clear, figures):
    fig, ax = pyplot().subplots()
    figures.append(fig)
    ax.plot([0, 1], [0, 1], label="data")
    ax.legend(loc="center")
    with pytest.raises(AssertionError, match="covers"):
        legends_clear(fig)


def test_coinciding_suggestions_share_one_marker_and_one_label(legends_clear, texts_of,
                                                               figures):
    result = finder_result(steepest=0.0262, valley=1e-3, min_div_10=None, half_turn=0.0264)
    fig = result.plot()
    figures.append(fig)
    ax = fig.axes[0]
    (legend,) = legends_clear(fig)
    labels = texts_of(legend)
    assert [t for t in labels if "steepest" in t or "half_turn" in t] == [
        "steepest = half_turn: 0.026 ← suggested"]
    assert "valley: 0.001" in labels and not any("min_div_10" in t for t in labels)
    assert sorted(line.get_xdata()[0] for line in markers(ax)) == [1e-3, 0.0262]
    assert ax.get_xlabel() == "learning rate (param group 0)"


def test_x_range_is_the_sweeps_and_an_outside_suggestion_is_in_the_legend_only(
        legends_clear, texts_of, figures):
    result = finder_result(steepest=0.02, valley=0.3, min_div_10=2.5e-8, half_turn=5.0)
    fig = result.plot()
    figures.append(fig)
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx((LRS[0], LRS[-1]))
    labels = texts_of(legends_clear(fig)[0])
    assert "min_div_10: 2.5e-08 (below the swept range)" in labels
    assert "half_turn: 5 (above the swept range)" in labels
    xs = [line.get_xdata()[0] for line in markers(ax)]
    assert sorted(xs) == [0.02, 0.3]  # nothing drawn outside the sweep


def test_the_confirmed_rate_is_drawn_and_labelled(legends_clear, texts_of, figures):
    result = finder_result(steepest=0.02, valley=0.003, min_div_10=None, half_turn=None)
    without = result.plot()
    fig = result.plot(confirmed_lr=0.0123)
    figures.extend([without, fig])
    confirmed = [line for line in fig.axes[0].get_lines()
                 if line.get_label() == "confirmed by training: 0.012"]
    assert len(confirmed) == 1 and list(confirmed[0].get_xdata()) == [0.0123, 0.0123]
    assert "confirmed by training: 0.012" in texts_of(legends_clear(fig)[0])
    assert not any(t.startswith("confirmed") for t in texts_of(legends_clear(without)[0]))
    far = result.plot(confirmed_lr=3.0)
    figures.append(far)
    assert "confirmed by training: 3 (above the swept range)" in texts_of(legends_clear(far)[0])
    assert far.axes[0].get_xlim() == pytest.approx((LRS[0], LRS[-1]))


def test_plot_draws_into_given_axes(figures):
    fig, (left, right) = pyplot().subplots(1, 2)
    figures.append(fig)
    assert finder_result(steepest=0.02).plot(ax=right) is fig
    assert right.get_xscale() == "log" and not left.get_lines()


def test_coinciding_groups_within_two_percent_of_the_lowest_and_keeps_rule_order():
    values = {"a": 1.0, "b": 1.015, "c": 1.03, "d": 2.0, "e": None}
    assert coinciding(values) == [(["a", "b"], 1.0), (["c"], 1.03), (["d"], 2.0)]
    assert coinciding({"late": 0.5, "early": 0.5}) == [(["late", "early"], 0.5)]
