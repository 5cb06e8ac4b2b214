import json

import pytest

from lrtune.second_opinion import aggregate, verdict


def _run(tmp_path, name, seed, valid_loss, seconds, **summary):
    folder = tmp_path / f"{name}{seed}"
    folder.mkdir()
    epochs = [{"epoch": 1, "valid_loss": valid_loss + 1}, {"epoch": 2, "valid_loss": valid_loss}]
    (folder / "history.json").write_text(json.dumps({"epochs": epochs, "batches": []}))
    return {"name": name, "seed": seed, "dir": str(folder), "seconds_total": seconds,
            "summary": {"best_epoch": 2, "best_valid_loss": valid_loss, "test_loss": valid_loss,
                        "lr": 1.0, **summary}}


def test_regression_uses_the_best_valid_loss_and_says_when_seeds_cannot_tell(tmp_path):
    runs = [_run(tmp_path, "tuned", 0, 0.50, 10.0, seconds_lr_search=4.0),
            _run(tmp_path, "tuned", 1, 0.60, 12.0, seconds_lr_search=6.0),
            _run(tmp_path, "prodigy", 0, 0.52, 5.0, effective_lr=0.003),
            _run(tmp_path, "prodigy", 1, 0.56, 7.0, effective_lr=0.005)]
    tuned, prodigy = aggregate(runs)
    assert tuned["label"] == "best valid loss" and tuned["higher_is_better"] is False
    assert tuned["valid"] == pytest.approx((0.55, 0.0707107), rel=1e-5)
    assert tuned["seconds_lr_search"] == (5.0, pytest.approx(1.4142136))
    assert prodigy["lr"] == pytest.approx((0.004, 0.0014142136))  # d*lr, not lr
    assert prodigy["seconds_lr_search"] == (0.0, 0.0)
    best, other = verdict([tuned, prodigy])
    assert best == "- Winner by best valid loss: **prodigy**, 0.54 ± 0.028 over the seeds."
    assert other.startswith("- **tuned**: 0.55 ± 0.071, 0.01 worse than prodigy (within the "
                            "spread over the seeds); wall time 11 s vs 6 s")
