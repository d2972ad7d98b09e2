"""SQuAD v2.0 scores as an `evaluate` module shipped with ablate: the official v2.0 evaluation script's logic.

Input: predictions [{"id", "prediction_text", "no_answer_probability"}] (empty text = "no answer";
no_answer_probability is any score that grows with the model's belief in "no answer", e.g. BERT's
null-score difference), references [{"id", "answers": {"text": [...], "answer_start": [...]}}] (an
empty answer list = unanswerable).
Output (fractions; the official script prints x100): exact, f1, total, HasAns_exact, HasAns_f1,
HasAns_total, NoAns_exact, NoAns_f1, NoAns_total, and best_exact / best_f1 with their thresholds
best_exact_thresh / best_f1_thresh, found as the official script's find_best_thresh does: questions
sorted by no_answer_probability, the threshold that scores best when every question above it is
answered "no answer". A subset with no questions (e.g. no unanswerable ones) scores NaN.
"""

import collections
import re
import string

import datasets
import evaluate

ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace (official v2.0 script)."""

    def remove_articles(text):
        return re.sub(ARTICLES, " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


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


class SquadV2(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v2.0 exact match and F1 overall, on answerable (HasAns) and unanswerable "
            "(NoAns) questions, and at the best no-answer threshold (official v2.0 script).",
            citation="Rajpurkar et al. 2018, Know What You Don't Know: Unanswerable Questions for SQuAD.",
            inputs_description="predictions: {id, prediction_text, no_answer_probability}; "
            "references: {id, answers: {text, answer_start}}",
            features=datasets.Features(
                {
                    "predictions": {
                        "id": datasets.Value("string"),
                        "prediction_text": datasets.Value("string"),
                        "no_answer_probability": datasets.Value("float64"),
                    },
                    "references": {
                        "id": datasets.Value("string"),
                        "answers": datasets.Sequence(
                            {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}
                        ),
                    },
                }
            ),
        )

    def _compute(self, predictions, references, na_prob_thresh=1.0):
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
