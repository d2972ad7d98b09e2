"""GLUE's metrics as plain functions: predictions, references -> {name: value}.

Classification metrics take integer class ids (cast to int64), correlations take floats (cast to float64),
as the `evaluate` modules they replace did through their feature schemas. Values are fractions (accuracy, F1)
or correlations in [-1, 1] (MCC, Pearson, Spearman).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _labels(predictions: Sequence, references: Sequence) -> tuple[np.ndarray, np.ndarray]:
    p, r = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
    if p.shape != r.shape:
        raise ValueError(f"{len(p)} predictions for {len(r)} references")
    return p, r


def accuracy(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Fraction of predictions equal to the reference label."""
    p, r = _labels(predictions, references)
    return {"accuracy": float(accuracy_score(r, p))}


def f1(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP; 0 with no positive prediction."""
    p, r = _labels(predictions, references)
    return {"f1": float(f1_score(r, p, pos_label=1, zero_division=0.0))}


def matthews_correlation(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Matthews correlation (CoLA); 0.0 where it is undefined (one side all one class), as scikit-learn defines it."""
    p, r = _labels(predictions, references)
    return {"matthews_correlation": float(matthews_corrcoef(r, p))}


def _correlation(name: str, fn: Callable) -> Callable[[Sequence[float], Sequence[float]], dict[str, float]]:
    """A correlation metric (STS-B): at least two pairs; 0.0 when a side is constant (no signal; scipy gives NaN)."""

    def metric(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
        p, r = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
        if len(p) < 2:
            raise ValueError(f"{name} needs at least two pairs")
        if np.ptp(p) == 0 or np.ptp(r) == 0:
            return {name: 0.0}
        return {name: float(fn(p, r)[0])}

    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = f"{name.capitalize()} correlation between predictions and references (STS-B)."
    return metric


pearson = _correlation("pearson", pearsonr)
spearman = _correlation("spearman", spearmanr)  # ties get average ranks
