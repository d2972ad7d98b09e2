"""Pearson correlation (STS-B) as an `evaluate` module shipped with ablate.

Input: float predictions and references. Output: {"pearson": r in [-1, 1]}.
A constant side carries no linear signal: r is then 0.0 (scipy would give NaN), like scikit-learn's MCC.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr


class Pearson(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Pearson correlation coefficient between predictions and references.",
            citation="GLUE (Wang et al. 2019) for STS-B.",
            inputs_description="predictions, references: lists of floats (at least two)",
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references):
        p, r = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        if len(p) < 2:
            raise ValueError("pearson needs at least two pairs")
        if np.ptp(p) == 0 or np.ptp(r) == 0:
            return {"pearson": 0.0}
        return {"pearson": float(pearsonr(p, r)[0])}
