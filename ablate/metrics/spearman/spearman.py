"""Spearman rank correlation (STS-B) as an `evaluate` module shipped with ablate.

Input: float predictions and references. Output: {"spearman": rho in [-1, 1]} (ties get average ranks).
A constant side carries no rank signal: rho is then 0.0 (scipy would give NaN), like scikit-learn's MCC.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import spearmanr


class Spearman(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Spearman rank correlation between predictions and references.",
            citation="GLUE (Wang et al. 2019) for STS-B.",
            inputs_description="predictions, references: lists of floats (at least two)",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        if len(p) < 2:
            raise ValueError("spearman needs at least two pairs")
        if np.ptp(p) == 0 or np.ptp(r) == 0:
            return {"spearman": 0.0}
        return {"spearman": float(spearmanr(p, r)[0])}
