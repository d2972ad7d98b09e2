"""Binary F1 of the positive class (label 1) as an `evaluate` module shipped with ablate."""

import datasets
import evaluate
from sklearn.metrics import f1_score


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="F1 score of the positive class (label 1), as GLUE reports for MRPC and QQP.",
            citation="",
            inputs_description="predictions, references: lists of 0/1 labels",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        return {"f1": float(f1_score(references, predictions, pos_label=1, zero_division=0.0))}
