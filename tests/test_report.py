"""The run report against the paper's thresholds: met, missed, or within noise, by hand."""

import pytest

from dapter_tf.analysis import report


def _results(drop, low, high):
    return {"accuracy_drop_points": drop, "accuracy_drop_low_points": low, "accuracy_drop_high_points": high}


@pytest.mark.parametrize(
    "drop, low, high, verdict",
    [
        (1.0, 0.2, 1.8, "met"),
        (5.0, 4.1, 5.9, "missed"),
        (2.4, 1.2, 3.6, "met by the point figure, but its 95 % interval [1.20, 3.60] spans 3: within noise"),
        (3.4, 2.2, 4.6, "missed by the point figure, but its 95 % interval [2.20, 4.60] spans 3: within noise"),
    ],
)
def test_accuracy_verdict_by_hand(drop, low, high, verdict):
    assert report.accuracy_verdict(_results(drop, low, high)) == verdict
