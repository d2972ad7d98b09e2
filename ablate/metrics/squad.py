"""SQuAD's metrics as plain functions: the official v1.1 and v2.0 evaluation scripts' logic.

v1.1 (squad): predictions [{"id", "prediction_text"}], references [{"id", "answers": {"text": [...],
"answer_start": [...]}}] -> {"exact_match", "f1"} as fractions (the official script prints these x100). Answers
are normalised (lower case, no punctuation, no articles a/an/the, single spaces); each question scores the
maximum over its gold answers.

v2.0 (squad_v2): predictions also carry "no_answer_probability" (any score that grows with the model's belief in
"no answer", e.g. BERT's null-score difference); empty text = "no answer"; an empty answer list = unanswerable.
-> exact, f1, total, HasAns_exact, HasAns_f1, HasAns_total, NoAns_exact, NoAns_f1, NoAns_total, and best_exact /
best_f1 with their thresholds best_exact_thresh / best_f1_thresh, found as the official find_best_thresh does:
questions sorted by no_answer_probability, the threshold that scores best when every question above it is
answered "no answer". A subset with no questions (e.g. no unanswerable ones) scores NaN.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Sequence

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (both official scripts)."""
    exclude = set(string.punctuation)
    no_punc = "".join(ch for ch in s.lower() if ch not in exclude)
    return " ".join(ARTICLES.sub(" ", no_punc).split())


# ---------------------------------------------------------------- v1.1

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


def squad(predictions: Sequence[dict], references: Sequence[dict]) -> dict[str, float]:
    """SQuAD v1.1: exact match and token F1, each the maximum over a question's gold answers."""
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


# ---------------------------------------------------------------- v2.0

def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)  # either is no-answer: F1 is 1 if they agree, else 0
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def apply_no_ans_threshold(scores, na_probs, qid_to_has_ans, na_prob_thresh):
    new_scores = {}
    for qid, s in scores.items():
        pred_na = na_probs[qid] > na_prob_thresh
        new_scores[qid] = float(not qid_to_has_ans[qid]) if pred_na else s
    return new_scores


def mean_of(scores, qids):
    return sum(scores[k] for k in qids) / len(qids) if qids else float("nan")


def find_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = best_score = num_no_ans
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score, best_thresh = cur_score, na_probs[qid]
    return best_score / len(scores), best_thresh


def squad_v2(predictions: Sequence[dict], references: Sequence[dict], na_prob_thresh: float = 1.0) -> dict[str, float]:
    """SQuAD v2.0: exact and F1 overall, on answerable (HasAns) and unanswerable (NoAns) questions, and at the
    best no-answer threshold."""
    if not references:
        raise ValueError("squad_v2 needs at least one question")
    preds = {p["id"]: p["prediction_text"] for p in predictions}
    na_probs = {p["id"]: p["no_answer_probability"] for p in predictions}
    qid_to_has_ans, exact_raw, f1_raw = {}, {}, {}
    for ref in references:
        qid = ref["id"]
        if qid not in preds:
            raise ValueError(f"no prediction for question {qid}")
        qid_to_has_ans[qid] = bool(ref["answers"]["text"])
        gold = [a for a in ref["answers"]["text"] if normalize_answer(a)] or [""]
        exact_raw[qid] = max(compute_exact(a, preds[qid]) for a in gold)
        f1_raw[qid] = max(compute_f1(a, preds[qid]) for a in gold)
    na_probs = {k: na_probs[k] for k in qid_to_has_ans}
    exact = apply_no_ans_threshold(exact_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    f1 = apply_no_ans_threshold(f1_raw, na_probs, qid_to_has_ans, na_prob_thresh)
    has_ans = [k for k, v in qid_to_has_ans.items() if v]
    no_ans = [k for k, v in qid_to_has_ans.items() if not v]
    out = {"exact": mean_of(exact, list(exact)), "f1": mean_of(f1, list(f1)), "total": len(exact)}
    for prefix, qids in (("HasAns", has_ans), ("NoAns", no_ans)):
        out.update({f"{prefix}_exact": mean_of(exact, qids), f"{prefix}_f1": mean_of(f1, qids),
                    f"{prefix}_total": len(qids)})
    out["best_exact"], out["best_exact_thresh"] = find_best_thresh(preds, exact_raw, na_probs, qid_to_has_ans)
    out["best_f1"], out["best_f1_thresh"] = find_best_thresh(preds, f1_raw, na_probs, qid_to_has_ans)
    return out
