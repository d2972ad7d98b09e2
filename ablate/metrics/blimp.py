"""BLiMP's metric as a plain function: (acceptable score, unacceptable score) per pair -> accuracy and ties.

A pair is right when the acceptable sentence scores strictly higher; a tie counts half (a model that gives both
sentences the same score must not look good), and the number of ties is reported beside the accuracy.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def pair_accuracy(predictions: Sequence[Sequence[float]], references: Sequence[Any] = ()) -> dict[str, float]:
    """predictions: [(good, bad)] log-likelihood-like scores per pair (references are not needed: the acceptable
    sentence is always the first) -> {"accuracy": fraction, "ties": count, "pairs": count}."""
    s = np.asarray(predictions, dtype=np.float64).reshape(-1, 2)
    if not len(s):
        raise ValueError("blimp needs at least one pair")
    right, ties = s[:, 0] > s[:, 1], s[:, 0] == s[:, 1]
    return {"accuracy": float((right.sum() + 0.5 * ties.sum()) / len(s)), "ties": float(ties.sum()),
            "pairs": float(len(s))}
