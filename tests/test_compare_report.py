"""The comparison's overlay figure: every run's curves, the legend beside them."""

from __future__ import annotations

from lrtune.compare_report import plot_overlay
from lrtune.plots import pyplot


def test_overlay_labels_every_run_and_keeps_the_legend_off_the_curves(legends_clear, texts_of):
    runs = [{"name": "slow"}, {"name": "fast"}]
    histories = [[{"epoch": e, "train_loss": 2.0 / e, "valid_loss": 2.2 / e} for e in (1, 2, 3)],
                 [{"epoch": e, "train_loss": 1.0 / e, "valid_loss": 1.3 / e} for e in (1, 2, 3)]]
    fig = plot_overlay(runs, histories)
    try:
        (legend,) = legends_clear(fig)
        assert texts_of(legend) == ["slow train", "slow valid", "fast train", "fast valid"]
        assert fig.axes[0].get_yscale() == "log"
    finally:
        pyplot().close(fig)
