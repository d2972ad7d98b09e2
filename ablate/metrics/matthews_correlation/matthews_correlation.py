"""Matthews correlation (CoLA's GLUE metric) as an `evaluate` module shipped with ablate.

Input: integer predictions and references. Output: {"matthews_correlation": value in [-1, 1]}.
When it is undefined (all predictions or all references one class) it is 0.0, as scikit-learn defines it.
"""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Matthews correlation coefficient between predicted and reference labels.",
            citation="Matthews 1975; GLUE (Wang et al. 2019) for CoLA.",
            inputs_description="predictions, references: lists of integer class ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
