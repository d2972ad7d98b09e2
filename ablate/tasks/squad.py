"""SQuAD v1.1 and v2.0: task records, sliding windows over long contexts, and span decoding.

windows(tok, questions, contexts, answers, max_len, stride) -> Windows: each question paired with
overlapping windows of its context, `<s> question </s></s> context part </s>`, with every context token's
character offsets into the original context (so a span maps back to characters exactly) and, for
training, the gold start/end token of each window (0, the <s> token, when the answer is not wholly in
the window or the question has none).

decode(windows, start_logits, end_logits, contexts, n_best, max_answer_len, no_answer) -> predictions:
the best span over all windows of a question (start and end among each window's n_best most likely,
end >= start, at most max_answer_len tokens); for v2 the null score (start and end on <s>, lowest over
windows, as BERT's run_squad) is compared with the best span's score, and the difference is the
question's `no_answer_probability` for the official v2 threshold search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ablate.data.vocab import BOS, EOS
from ablate.tasks import TASKS, TaskSpec

QUESTION_SHARE = 3  # a question keeps at most max_len // 3 tokens (longer ones are cut), the rest is context
SPECIALS_IN_WINDOW = 4  # <s> question </s></s> context </s>
NO_SPAN = 1e9  # no_answer_probability when no valid span exists in any window


def _squad(name: str, hub: str, metrics: tuple[str, ...], no_answer: bool) -> TaskSpec:
    return TASKS.register(
        name,
        TaskSpec(
            name=name,
            hub_path=hub,
            hub_name=None,
            local_dir=name,
            train_split="train",
            eval_split="validation",
            text_columns=("question", "context"),
            num_labels=2,
            metrics=metrics,
            kind="span",
            no_answer=no_answer,
            label_column="answers",
            group_columns=("title",),  # split by article: questions on one article share its paragraphs
            id_column="id",
        ),
    )


SQUAD = _squad("squad", "rajpurkar/squad", ("squad_f1", "squad_exact_match"), no_answer=False)
SQUAD_V2 = _squad("squad_v2", "rajpurkar/squad_v2",
                  ("squad_v2_f1", "squad_v2_exact", "squad_v2_has_ans_f1", "squad_v2_has_ans_exact",
                   "squad_v2_no_ans_exact", "squad_v2_best_f1", "squad_v2_best_exact"), no_answer=True)


@dataclass
class Windows:
    ids: list[list[int]]  # per window: token ids, specials included
    example: np.ndarray  # [W] index of the question each window belongs to
    offsets: list[np.ndarray]  # per window: [L, 2] character offsets into the context; -1 outside the context
    start: np.ndarray  # [W] gold start token (0 = <s>: no answer in this window)
    end: np.ndarray  # [W] gold end token (inclusive)


def trimmed_offsets(text: str, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
    """Token character offsets without surrounding whitespace ([n, 2]); a whitespace token becomes empty."""
    out = np.asarray(offsets, dtype=np.int64).reshape(-1, 2).copy()
    for row in out:
        a, b = int(row[0]), int(row[1])
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        row[0], row[1] = a, b
    return out


def answer_tokens(offsets: np.ndarray, start_char: int, text: str) -> tuple[int, int]:
    """Gold answer characters -> (first, last) context token covering them."""
    start_char += len(text) - len(text.lstrip())  # a few gold answers carry spaces around them
    end_char = start_char + len(text.strip())
    first = int(np.searchsorted(offsets[:, 0], start_char, side="right")) - 1  # last token starting at or before it
    last = int(np.searchsorted(offsets[:, 1], end_char, side="left"))  # first token ending at or after it
    return max(first, 0), min(last, len(offsets) - 1)


def window_starts(n_context: int, room: int, stride: int) -> list[int]:
    """First context token of each window: `room` tokens per window, consecutive windows share `stride`."""
    if stride >= room:
        raise ValueError(f"doc_stride ({stride}) must be smaller than the context room in a window ({room} tokens)")
    starts = [0]
    while starts[-1] + room < n_context:
        starts.append(starts[-1] + room - stride)
    return starts


def windows(tok, questions: Sequence[str], contexts: Sequence[str], answers: Optional[Sequence[dict]],
            max_len: int, stride: int) -> Windows:
    """Questions and contexts -> windows (answers None at prediction time: targets are all 0)."""
    contexts, answers = list(contexts), None if answers is None else list(answers)
    q_max = max_len // QUESTION_SHARE
    q_ids = [e.ids[:q_max] for e in tok.encode_batch(list(questions), add_special_tokens=False)]
    unique = list(dict.fromkeys(contexts))
    encoded = {c: (e.ids, trimmed_offsets(c, e.offsets))  # each paragraph once: many questions share it
               for c, e in zip(unique, tok.encode_batch(unique, add_special_tokens=False))}
    ids, example, offsets, starts, ends = [], [], [], [], []
    for i, (q, ctx) in enumerate(zip(q_ids, contexts)):
        c_ids, c_off = encoded[ctx]
        gold = None
        if answers is not None and answers[i]["text"]:
            gold = answer_tokens(c_off, int(answers[i]["answer_start"][0]), answers[i]["text"][0])
        room = max_len - len(q) - SPECIALS_IN_WINDOW
        head = [BOS, *q, EOS, EOS]
        for s in window_starts(len(c_ids), room, stride):
            e = min(s + room, len(c_ids))
            ids.append(head + c_ids[s:e] + [EOS])
            off = np.full((len(ids[-1]), 2), -1, dtype=np.int64)
            off[len(head) : len(head) + e - s] = c_off[s:e]
            offsets.append(off)
            example.append(i)
            inside = gold is not None and s <= gold[0] and gold[1] < e
            starts.append(gold[0] - s + len(head) if inside else 0)
            ends.append(gold[1] - s + len(head) if inside else 0)
    return Windows(ids, np.asarray(example, dtype=np.int64), offsets, np.asarray(starts, dtype=np.int64),
                   np.asarray(ends, dtype=np.int64))


def best_span(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, n_best: int,
              max_answer_len: int) -> Optional[tuple[float, int, int]]:
    """One window's logits ([L] each) -> (score, start token, end token) of its best valid span, or None."""
    ctx = np.flatnonzero(offsets[:, 0] >= 0)
    if len(ctx) == 0:
        return None
    k = min(n_best, len(ctx))
    s_top = ctx[np.argsort(-start[ctx], kind="stable")[:k]]  # [k]
    e_top = ctx[np.argsort(-end[ctx], kind="stable")[:k]]  # [k]
    score = start[s_top][:, None] + end[e_top][None, :]  # [k, k]
    length = e_top[None, :] - s_top[:, None] + 1  # [k, k] tokens in the span
    nonempty = offsets[e_top, 1][None, :] > offsets[s_top, 0][:, None]  # at least one character
    score = np.where((length >= 1) & (length <= max_answer_len) & nonempty, score, -np.inf)
    flat = int(np.argmax(score))
    if not np.isfinite(score.flat[flat]):
        return None
    r, c = divmod(flat, k)
    return float(score[r, c]), int(s_top[r]), int(e_top[c])


def decode(win: Windows, start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
           contexts: Sequence[str], ids: Sequence[str], n_best: int, max_answer_len: int,
           no_answer: bool) -> list[dict]:
    """Per-window logits -> one prediction per question: {id, prediction_text, no_answer_probability}."""
    best: dict[int, tuple[float, int, int, int]] = {}  # example -> (score, window, start, end)
    null = np.full(len(contexts), np.inf)
    for w in range(len(win.ids)):
        i = int(win.example[w])
        s, e = np.asarray(start_logits[w], dtype=np.float64), np.asarray(end_logits[w], dtype=np.float64)
        null[i] = min(null[i], s[0] + e[0])  # the null span: start and end on <s>
        found = best_span(s, e, win.offsets[w], n_best, max_answer_len)
        if found is not None and (i not in best or found[0] > best[i][0]):
            best[i] = (found[0], w, found[1], found[2])
    out = []
    for i, (ctx, qid) in enumerate(zip(contexts, ids)):
        text, diff = "", NO_SPAN
        if i in best:
            score, w, s, e = best[i]
            text = ctx[win.offsets[w][s, 0] : win.offsets[w][e, 1]]
            diff = float(null[i] - score)
        if no_answer and diff > 0.0:  # the null span beats the best span: answer "no answer"
            text = ""
        out.append({"id": qid, "prediction_text": text, "no_answer_probability": diff if no_answer else 0.0})
    return out
