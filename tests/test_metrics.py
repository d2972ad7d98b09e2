"""The metric functions of the package (ablate.metrics.glue, ablate.metrics.squad) vs hand-computed values."""

from __future__ import annotations

import pytest

from ablate.errors import UserError
from ablate.metrics import METRICS, compute, compute_many


def test_accuracy():
    assert compute("accuracy", [1, 0, 1, 1], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert compute("accuracy", [0, 0, 0], [0, 0, 0]) == 1.0


def test_f1_positive_class():
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3
    assert compute("f1", [1, 1, 1, 0, 0], [1, 1, 0, 1, 0]) == pytest.approx(2 / 3)
    assert compute("f1", [0, 0], [1, 0]) == 0.0  # no positive predictions


def test_metric_metadata_and_unknown_name():
    assert METRICS.get("accuracy").higher_is_better
    assert METRICS.get("accuracy").function(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}
    with pytest.raises(UserError, match="did you mean 'accuracy'"):
        METRICS.get("acuracy")


# ---------------------------------------------------------------- GLUE metrics beyond accuracy and F1


def test_matthews_correlation():
    # tp=2, fp=1, tn=2, fn=0 -> (2*2 - 1*0) / sqrt(3*2*3*2) = 4/6
    assert compute("matthews_correlation", [1, 1, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(2 / 3)
    assert compute("matthews_correlation", [1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)


def test_matthews_correlation_all_one_class_is_zero():
    assert compute("matthews_correlation", [1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # predictions all one class
    assert compute("matthews_correlation", [1, 0, 1, 0], [1, 1, 1, 1]) == 0.0  # references all one class


def test_pearson_and_spearman():
    # dx = -1.5 -.5 .5 1.5, dy = -3 -1 0 4: r = 11 / sqrt(5 * 26)
    assert compute("pearson", [1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / 130**0.5)
    # ranks 1 3 2 4 vs 1 2 3 4: rho = 1 - 6 * 2 / (4 * 15)
    assert compute("spearman", [10, 30, 20, 40], [1, 2, 3, 4]) == pytest.approx(0.8)
    # ties take average ranks (1, 2.5, 2.5, 4): rho = 4.5 / sqrt(5 * 4.5)
    assert compute("spearman", [1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / 22.5**0.5)


def test_correlations_of_a_constant_are_zero():
    assert compute("pearson", [2.5, 2.5, 2.5], [1.0, 2.0, 4.0]) == 0.0
    assert compute("spearman", [1.0, 2.0, 4.0], [3.0, 3.0, 3.0]) == 0.0


# ---------------------------------------------------------------- SQuAD v1.1


def ref(qid, *golds):
    return {"id": qid, "answers": {"text": list(golds), "answer_start": [0] * len(golds)}}


def test_squad_normalisation_max_over_gold_and_empty_prediction():
    refs = [ref("q1", "the Eiffel Tower", "Eiffel Tower in Paris"), ref("q2", "Denver Broncos"),
            ref("q3", "1990", "in 1990s")]
    preds = [{"id": "q1", "prediction_text": "Eiffel tower!"},  # case, punctuation, article: exact
             {"id": "q2", "prediction_text": "the Broncos"},  # 1 of 2 gold tokens: P=1, R=1/2, F1=2/3
             {"id": "q3", "prediction_text": ""}]  # empty prediction: 0 and 0
    assert compute("squad_exact_match", preds, refs) == pytest.approx(1 / 3)
    assert compute("squad_f1", preds, refs) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_squad_f1_takes_the_best_gold_answer():
    # vs "red fox": P=2/3 R=1 F1=0.8; vs "quick red fox jumps": P=1 R=3/4 F1=6/7
    preds = [{"id": "q", "prediction_text": "quick red fox"}]
    assert compute("squad_f1", preds, [ref("q", "red fox", "quick red fox jumps")]) == pytest.approx(6 / 7)
    assert compute("squad_exact_match", preds, [ref("q", "red fox", "quick red fox jumps")]) == 0.0
    assert compute("squad_exact_match", preds, [ref("q", "red fox", "Quick  red fox.")]) == 1.0


# ---------------------------------------------------------------- SQuAD v2.0


V2_REFS = [ref("q1", "Paris"), ref("q2", "Denver Broncos"), ref("q3"), ref("q4")]  # q3, q4 unanswerable
V2_PREDS = [
    {"id": "q1", "prediction_text": "Paris", "no_answer_probability": 0.1},  # right
    {"id": "q2", "prediction_text": "Broncos", "no_answer_probability": 0.3},  # F1 2/3
    {"id": "q3", "prediction_text": "", "no_answer_probability": 2.0},  # right: no answer
    {"id": "q4", "prediction_text": "something", "no_answer_probability": 0.5},  # wrong: answered
]


def test_squad_v2_overall_has_ans_no_ans():
    names = ["squad_v2_exact", "squad_v2_f1", "squad_v2_has_ans_exact", "squad_v2_has_ans_f1", "squad_v2_no_ans_exact"]
    got = compute_many(names, V2_PREDS, V2_REFS)
    assert got["squad_v2_exact"] == pytest.approx(2 / 4)
    assert got["squad_v2_f1"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert got["squad_v2_has_ans_exact"] == pytest.approx(1 / 2)
    assert got["squad_v2_has_ans_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert got["squad_v2_no_ans_exact"] == pytest.approx(1 / 2)


def test_squad_v2_best_threshold_as_the_official_script():
    # Start with every question answered "no answer" (2 of 4 right), then answer them in order of
    # no_answer_probability: q1 (+1, 3/4 at 0.1), q2 (+0 EM / +2/3 F1 at 0.3), q4 (-1), q3 (0).
    got = compute_many(["squad_v2_best_exact", "squad_v2_best_f1"], V2_PREDS, V2_REFS)
    assert got["squad_v2_best_exact"] == pytest.approx(3 / 4)
    assert got["squad_v2_best_f1"] == pytest.approx((3 + 2 / 3) / 4)
    from ablate.metrics import compute_module

    full = compute_module("squad_v2", V2_PREDS, V2_REFS)
    assert full["best_exact_thresh"] == pytest.approx(0.1) and full["best_f1_thresh"] == pytest.approx(0.3)
    assert full["HasAns_total"] == 2 and full["NoAns_total"] == 2


def test_squad_v2_unanswerable_and_forced_no_answer():
    # an unanswerable question: only the empty prediction scores
    for text, score in (("", 1.0), ("x", 0.0)):
        pred = [{"id": "q", "prediction_text": text, "no_answer_probability": 0.0}]
        assert compute("squad_v2_f1", pred, [ref("q")]) == score
    # no_answer_probability above the official 1.0 threshold overrides a right answer
    right = [{"id": "q", "prediction_text": "Paris", "no_answer_probability": 1.5}]
    assert compute("squad_v2_exact", right, [ref("q", "Paris")]) == 0.0


# ---------------------------------------------------------------- the registry


def test_every_metric_has_a_function_that_gives_its_key():
    inputs = {"squad": (V2_PREDS[:2], V2_REFS[:2]), "squad_v2": (V2_PREDS, V2_REFS),
              "pearson": ([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]), "spearman": ([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]),
              "blimp": ([(-1.0, -2.0), (-3.0, -2.5)], [])}
    for name in METRICS.names():
        spec = METRICS.get(name)
        preds, refs = inputs.get(spec.module_name, ([1, 0, 1], [1, 1, 0]))
        assert spec.result_key in spec.function(preds, refs), name
        assert spec.higher_is_better and spec.display


def test_every_task_metric_is_registered():
    from ablate.tasks import TASKS

    for task in TASKS.names():
        for m in TASKS.get(task).metrics:
            METRICS.get(m)
