"""SQuAD windows and span decoding: offsets map back to characters, gold logits give back the gold spans."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.tasks import TASKS
from ablate.tasks.squad import best_span, decode, window_starts, windows

from conftest import real_data_available


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A small byte-level BPE trained on the real corpus, exactly as ablate trains its tokenizers."""
    from ablate.run.prepare import tokenizer_for
    from ablate.study.spec import Config, DataSpec
    from ablate.store import Store

    if not real_data_available():
        pytest.skip("needs the real data")
    cfg = Config(data=DataSpec(vocab_size=1000, tokenizer_train_chars=300_000))
    return tokenizer_for(Store(tmp_path_factory.mktemp("results")), cfg)


def gold_logits(win):
    """Per window: start/end logits that put the gold tokens (or <s> where there is none) far ahead."""
    starts, ends = [], []
    for ids, s, e in zip(win.ids, win.start, win.end):
        a, b = np.full(len(ids), -10.0), np.full(len(ids), -10.0)
        a[s], b[e] = 10.0, 10.0
        starts.append(a)
        ends.append(b)
    return starts, ends


def answer(text: str, at: int) -> dict:
    return {"text": [text], "answer_start": [at]}


def test_window_starts():
    assert window_starts(10, 10, 3) == [0]  # fits in one window
    assert window_starts(25, 10, 3) == [0, 7, 14, 21]  # consecutive windows share 3 tokens; the last reaches 25
    with pytest.raises(ValueError, match="doc_stride"):
        window_starts(25, 10, 10)


def test_best_span_respects_order_and_length():
    off = np.array([[-1, -1], [0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])  # position 0 is <s>
    start = np.array([0.0, 1.0, 0.0, 0.0, 5.0, 0.0])
    end = np.array([0.0, 0.0, 4.0, 3.0, 0.0, 1.0])
    # best start 4 with best end 2 is backwards; the best valid pairs: (4, 5) = 6 and (1, 2) = 5
    assert best_span(start, end, off, n_best=5, max_answer_len=30) == (6.0, 4, 5)
    # a one-token cap leaves only spans of one token: (4, 4) = 5, (2, 2) = 4, ...
    assert best_span(start, end, off, n_best=5, max_answer_len=1) == (5.0, 4, 4)
    # the <s> position is never a span
    assert best_span(np.array([9.0, 0.0]), np.array([9.0, 0.0]), np.array([[-1, -1], [0, 2]]), 5, 5) == (0.0, 1, 1)


def test_offsets_map_back_to_characters_exactly(tok):
    ctx = "  Café  Zürich — 1,234 m² of ☃ snow; the Ünïcode  test 😀 ends here.  "
    q = "Where?"
    for text in ("Café", "Zürich", "1,234", "m²", "☃ snow", "Ünïcode  test", "😀 ends"):
        win = windows(tok, [q], [ctx], [answer(text, ctx.index(text))], max_len=40, stride=12)
        hits = [w for w in range(len(win.ids)) if win.start[w] > 0]
        assert hits, text
        for w in hits:
            off = win.offsets[w]
            assert ctx[off[win.start[w], 0] : off[win.end[w], 1]] == text


def test_gold_logits_recover_an_answer_split_across_windows(tok):
    ctx = " ".join(f"word{i}" for i in range(60))
    plain = windows(tok, ["Which word?"], [ctx], None, max_len=32, stride=6)
    assert len(plain.ids) >= 3
    off0 = plain.offsets[0]
    last = int(np.flatnonzero(off0[:, 0] >= 0)[-1])  # last context token of window 0
    first_char, last_char = off0[last - 1, 0], off0[last, 1] + 7  # runs two tokens past window 0's end
    last_char = ctx.index(" ", last_char) if " " in ctx[last_char:] else len(ctx)
    text = ctx[first_char:last_char]
    win = windows(tok, ["Which word?"], [ctx], [answer(text, first_char)], max_len=32, stride=6)
    assert win.start[0] == 0, "window 0 holds only the start of the answer"
    assert (win.start[1:] > 0).any(), "a later window holds all of it"
    s, e = gold_logits(win)
    pred = decode(win, s, e, [ctx], ["q"], n_best=20, max_answer_len=30, no_answer=False)
    assert pred[0]["prediction_text"] == text


def test_v2_null_score_beats_spans_for_unanswerable_questions(tok):
    ctx = "The Normans gave their name to Normandy, a region in France."
    answers = [answer("France", ctx.index("France")), {"text": [], "answer_start": []}]
    win = windows(tok, ["Where?", "Who won?"], [ctx, ctx], answers, max_len=64, stride=8)
    s, e = gold_logits(win)
    pred = decode(win, s, e, [ctx, ctx], ["a", "b"], n_best=20, max_answer_len=30, no_answer=True)
    assert pred[0]["prediction_text"] == "France" and pred[0]["no_answer_probability"] == pytest.approx(-40.0)
    assert pred[1]["prediction_text"] == "" and pred[1]["no_answer_probability"] > 0


@pytest.mark.parametrize("task", ["squad", "squad_v2"])
def test_gold_logits_recover_real_gold_spans(tok, task):
    """On 600 real questions (several articles), short windows: every answer that some window holds whole
    and that starts and ends on token boundaries comes back exactly, and those are nearly all of them."""
    from ablate.metrics import compute_many
    from ablate.tasks.data import load_split

    spec = TASKS.get(task)
    ds = load_split(spec, "validation")
    ds = ds.select(range(0, len(ds), len(ds) // 600)[:600])
    win = windows(tok, ds["question"], ds["context"], ds["answers"], max_len=96, stride=32)
    assert len(win.ids) > 2 * len(ds), "short windows: most contexts span several"
    held = np.zeros(len(ds), dtype=bool)
    held[win.example[win.start > 0]] = True  # some window holds the whole gold answer
    s, e = gold_logits(win)
    preds = decode(win, s, e, ds["context"], ds["id"], n_best=20, max_answer_len=96, no_answer=spec.no_answer)
    exact = checked = answerable = 0
    for i, (p, a, ctx) in enumerate(zip(preds, ds["answers"], ds["context"])):
        if not a["text"]:
            assert p["prediction_text"] == ""
            continue
        answerable += 1
        gold = a["text"][0].strip()
        exact += p["prediction_text"] == gold
        if held[i] and _on_token_boundaries(tok, ctx, a["answer_start"][0], gold):
            checked += 1
            assert p["prediction_text"] == gold
    assert checked >= 0.9 * answerable and exact >= checked
    refs = [{"id": i, "answers": a} for i, a in zip(ds["id"], ds["answers"])]
    if not spec.no_answer:
        preds = [{"id": p["id"], "prediction_text": p["prediction_text"]} for p in preds]
    scores = compute_many(spec.metrics[:2], preds, refs)
    assert min(scores.values()) >= 0.95  # the official normalisation forgives some of the rest


def _on_token_boundaries(tok, ctx: str, start: int, gold: str) -> bool:
    from ablate.tasks.squad import trimmed_offsets

    off = trimmed_offsets(ctx, tok.encode(ctx, add_special_tokens=False).offsets)
    start += len(ctx[start:]) - len(ctx[start:].lstrip())
    return start in set(off[:, 0]) and start + len(gold) in set(off[:, 1])
