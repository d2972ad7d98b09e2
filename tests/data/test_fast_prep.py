"""The fast corpus preparation path gives exactly what the plain one gives: the byte-level encoder's ids equal
`Tokenizer.encode`'s, and any number of worker processes yields the same arrays as one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.data import sentences as sentences_mod
from ablate.data.fastbpe import FastByteLevelEncoder, fast_encoder
from ablate.data.sentences import tokenize_documents
from ablate.run.prepare import tokenizer_for
from ablate.study.spec import Config, DataSpec
from ablate.store import Store

from conftest import make_docs, needs_real_data, write_tiny_data
from test_corpus import tiny_cfg


@pytest.fixture(scope="module")
def byte_tok(tmp_path_factory):
    """A byte-level BPE trained on the tiny synthetic corpus (module-scoped: training takes a second)."""
    import os

    root = write_tiny_data(tmp_path_factory.mktemp("data"))
    old = os.environ.get("ABLATE_DATA_DIR")
    os.environ["ABLATE_DATA_DIR"] = str(root)
    try:
        return tokenizer_for(Store(tmp_path_factory.mktemp("results")), tiny_cfg())
    finally:
        os.environ["ABLATE_DATA_DIR"] = old


TRICKY = ["Don't stop, it's 3.14 o'clock!", "naïve café — déjà vu… 東京 😀 emoji", "tabs\tand  double  spaces ",
          "'s 've 're 'll 'd 'm 't", "<mask> inside <s> text </s>", "trailing space ", "x" * 300, "1234567 89",
          "A\u00a0non-breaking space", "line\nbreak", "¿Qué? ¡Sí!"]


def test_fast_encoder_applies_to_byte_bpe_only(byte_tok, tiny_data_root, tmp_path):
    assert FastByteLevelEncoder.supports(byte_tok)
    wp = tokenizer_for(Store(tmp_path / "r"), Config(data=DataSpec(tokenizer="wordpiece", vocab_size=400,
                                                                    tokenizer_train_chars=20_000)))
    assert not FastByteLevelEncoder.supports(wp) and fast_encoder(wp) is None


def test_fast_encoder_matches_tokenizer_on_tricky_text(byte_tok):
    enc = FastByteLevelEncoder(byte_tok, check_every=10**9)  # no self-check: compare here
    for text in TRICKY:
        assert enc.encode(text) == byte_tok.encode(text, add_special_tokens=False).ids, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=60))
def test_fast_encoder_matches_tokenizer_on_any_text(byte_tok, text):
    enc = FastByteLevelEncoder(byte_tok, check_every=10**9)
    assert enc.encode(text) == byte_tok.encode(text, add_special_tokens=False).ids


def test_fast_encoder_self_check_raises_on_disagreement(byte_tok):
    enc = FastByteLevelEncoder(byte_tok, check_every=1)
    enc.encode("The cat sat.")  # caches the words' ids
    enc._cache[" cat"] = [0]  # corrupt one word's ids
    with pytest.raises(RuntimeError, match="disagrees"):
        enc.encode("The cat sat.")


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) and getattr(a, k).dtype == getattr(b, k).dtype
               for k in ("tokens", "sent_start", "doc_start"))


@pytest.mark.parametrize("budget", [None, 1500])
def test_workers_and_fast_path_give_identical_arrays(byte_tok, monkeypatch, budget):
    docs = make_docs(200, seed=5)
    monkeypatch.setenv("ABLATE_FAST_BPE", "0")
    plain = tokenize_documents(iter(docs), byte_tok, budget, workers=1)
    monkeypatch.setenv("ABLATE_FAST_BPE", "1")
    monkeypatch.setattr(sentences_mod, "CHUNK_CHARS", 2000)  # many chunks, so the pool really runs
    fast = tokenize_documents(iter(docs), byte_tok, budget, workers=1)
    pooled = tokenize_documents(iter(docs), byte_tok, budget, workers=2)
    assert _same(plain, fast) and _same(plain, pooled)
    assert plain.n_docs == (200 if budget is None else plain.n_docs) and len(plain.tokens) >= (budget or 0)


@needs_real_data
def test_fast_path_matches_on_real_corpus(tmp_path, monkeypatch):
    """A slice of the real corpus (Wikipedia and books: unicode, numbers, quotes) through both paths."""
    import pyarrow.parquet as pq

    from ablate.paths import data_root

    shard = data_root() / "corpus" / "validation.parquet"
    docs = pq.read_table(shard, columns=["text"]).column(0).to_pylist()[:40]
    store = Store(tmp_path / "results")
    cfg = Config(data=DataSpec(vocab_size=2000, tokenizer_train_chars=300_000))
    tok = tokenizer_for(store, cfg)
    monkeypatch.setenv("ABLATE_FAST_BPE", "0")
    plain = tokenize_documents(iter(docs), tok, None, workers=1)
    monkeypatch.setenv("ABLATE_FAST_BPE", "1")
    monkeypatch.setattr(sentences_mod, "CHUNK_CHARS", 50_000)
    assert _same(plain, tokenize_documents(iter(docs), tok, None, workers=2))
