"""learning_curves.png: one panel per scale, each line in a legend beside its panel."""

from __future__ import annotations

from lrtune.training.curves import plot_history
from lrtune.training.history import History


def history(momentum: float | None = 0.9, metrics=("valid_accuracy", "valid_f1")) -> History:
    h = History()
    for epoch, (train, valid) in enumerate([(2.0, 1.5), (1.0, 0.9), (0.5, 0.95)], start=1):
        record = {"epoch": epoch, "train_loss": train, "valid_loss": valid}
        record.update({key: 0.5 + 0.1 * epoch + 0.01 * i for i, key in enumerate(metrics)})
        h.add_epoch(record)
        for batch in range(1, 5):
            step = 4 * (epoch - 1) + batch
            # a constant lr and a constant momentum: on shared axes these lines coincided
            h.add_batch(step, epoch, batch, train, 0.1, momentum)
    return h


def test_every_scale_has_its_own_panel_and_legend(figures, legends_clear, texts_of):
    fig = plot_history(history())
    figures.append(fig)
    loss_ax, metric_ax, lr_ax, momentum_ax = fig.axes
    assert len(legends_clear(fig)) == 4
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "valid metric", "lr", "momentum"]
    assert texts_of(loss_ax.get_legend()) == ["train loss", "valid loss", "best epoch 2"]
    assert texts_of(metric_ax.get_legend()) == ["valid accuracy", "valid f1", "best epoch 2"]
    assert texts_of(lr_ax.get_legend()) == ["learning rate (param group 0)"]
    assert texts_of(momentum_ax.get_legend()) == ["momentum / beta1 (param group 0)"]
    assert list(lr_ax.get_lines()[0].get_ydata()) == [0.1] * 12
    assert list(momentum_ax.get_lines()[0].get_ydata()) == [0.9] * 12
    colors = [line.get_color() for line in metric_ax.get_lines()[:2]]
    assert colors[0] != colors[1]
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch", "epoch", "optimizer step",
                                                    "optimizer step"]


def test_panels_without_momentum_or_metrics_are_left_out(figures, legends_clear):
    fig = plot_history(history(momentum=None, metrics=()))
    figures.append(fig)
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "lr"]
    assert len(legends_clear(fig)) == 2
