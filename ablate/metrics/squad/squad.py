"""SQuAD v1.1 EM and F1 as an `evaluate` module shipped with ablate: the official evaluation script's logic.

Input: predictions [{"id", "prediction_text"}], references [{"id", "answers": {"text": [...], "answer_start": [...]}}].
Output: {"exact_match": fraction, "f1": fraction} (the official script prints these x100).
Answers are normalised as the official script does (lower case, no punctuation, no articles a/an/the,
single spaces); each question scores the maximum over its gold answers.
"""

import collections
import re
import string

import datasets
import evaluate


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace (official v1.1 script)."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, gt) for gt in ground_truths)


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and token F1, max over gold answers (official script).",
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description="predictions: {id, prediction_text}; references: {id, answers: {text, answer_start}}",
            features=datasets.Features(
                {
                    "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references):
        pred = {p["id"]: p["prediction_text"] for p in predictions}
        if not references:
            raise ValueError("squad needs at least one question")
        em = f1 = 0.0
        for ref in references:
            golds = ref["answers"]["text"]
            if not golds:
                raise ValueError(f"question {ref['id']} has no gold answer (SQuAD v1.1 needs one)")
            if ref["id"] not in pred:
                raise ValueError(f"no prediction for question {ref['id']}")
            em += metric_max_over_ground_truths(exact_match_score, pred[ref["id"]], golds)
            f1 += metric_max_over_ground_truths(f1_score, pred[ref["id"]], golds)
        return {"exact_match": em / len(references), "f1": f1 / len(references)}
