"""Metric modules shipped in the package, loaded by path through `evaluate`, offline, vs hand-computed values."""

from __future__ import annotations

import pytest

from ablate.errors import UserError
from ablate.metrics import METRICS, compute


def test_accuracy():
    assert compute("accuracy", [1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert compute("accuracy", [0, 0, 0], [0, 0, 0]) == 1.0


def test_f1_positive_class():
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3
    assert compute("f1", [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert compute("f1", [0, 0], [1, 0]) == 0.0  # no positive predictions


def test_metric_metadata_and_unknown_name():
    assert METRICS.get("accuracy").higher_is_better
    assert METRICS.get("accuracy").module_path.exists()
    with pytest.raises(UserError, match="did you mean 'accuracy'"):
        METRICS.get("acuracy")
