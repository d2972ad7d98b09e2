"""Property tests of the four input formats over random small corpora (hypothesis).

Token ids encode where they came from: 1000*(doc+1) + 10*sentence + position, so a block tells
which documents and sentences it holds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ablate.data.formats import FORMATS, token_types
from ablate.data.sentences import Sentences
from ablate.data.vocab import BOS, EOS, NUM_SPECIAL, PAD

corpora = st.lists(st.lists(st.integers(1, 30), min_size=1, max_size=12), min_size=2, max_size=12)
max_lens = st.integers(12, 64)


def make_sentences(docs: list[list[int]]) -> Sentences:
    tokens, sent_lens, doc_sizes = [], [], []
    for d, sents in enumerate(docs):
        for j, n in enumerate(sents):
            tokens.extend(1000 * (d + 1) + 10 * j + (k % 10) for k in range(n))
            sent_lens.append(n)
        doc_sizes.append(len(sents))
    return Sentences(np.asarray(tokens, dtype=np.int32), np.concatenate([[0], np.cumsum(sent_lens)]),
                     np.concatenate([[0], np.cumsum(doc_sizes)]))


def doc_of(t) -> int:
    return int(t) // 1000 - 1


def sent_of(t) -> tuple[int, int]:
    return doc_of(t), (int(t) % 1000) // 10


def rows(packed):
    return [packed.blocks[i, : packed.lengths[i]] for i in range(len(packed.lengths))]


@settings(max_examples=60, deadline=None)
@given(corpora, max_lens)
def test_every_block_fits_and_is_framed(docs, max_len):
    s = make_sentences(docs)
    for name in FORMATS:
        packed = FORMATS.get(name).pack(s, max_len)
        assert (packed.lengths <= max_len).all(), name
        for r in rows(packed):
            assert r[0] == BOS and r[-1] == EOS, name
        assert (packed.blocks[np.arange(packed.blocks.shape[1])[None, :] >= packed.lengths[:, None]] == PAD).all()


@settings(max_examples=60, deadline=None)
@given(corpora, max_lens)
def test_doc_sentences_never_cross_documents(docs, max_len):
    for r in rows(FORMATS.get("doc_sentences").pack(make_sentences(docs), max_len)):
        content = r[(r >= NUM_SPECIAL)]
        assert len({doc_of(t) for t in content}) == 1
        assert not (r[1:-1] == EOS).any()  # no boundary separator inside


@settings(max_examples=60, deadline=None)
@given(corpora, max_lens)
def test_full_sentences_separator_exactly_at_boundaries(docs, max_len):
    s = make_sentences(docs)
    packed = FORMATS.get("full_sentences").pack(s, max_len)
    seen = []
    for r in rows(packed):
        inner = r[1:-1]
        for a, b in zip(inner[:-1], inner[1:]):
            if a >= NUM_SPECIAL and b >= NUM_SPECIAL:
                assert doc_of(a) == doc_of(b)  # a change of document always has a separator between
        for k, t in enumerate(inner):
            if t == EOS:  # a separator sits between two documents
                assert 0 < k < len(inner) - 1 and doc_of(inner[k - 1]) != doc_of(inner[k + 1])
        seen.extend(int(t) for t in inner if t >= NUM_SPECIAL)
    assert seen == [int(t) for t in s.tokens]  # every token, in order, nothing lost


@settings(max_examples=60, deadline=None)
@given(corpora, max_lens)
def test_pairs_segments_and_nsp_labels(docs, max_len):
    s = make_sentences(docs)
    for name in ("segment_pair", "sentence_pair"):
        packed = FORMATS.get(name).pack(s, max_len)
        assert packed.is_pair
        for r, b_start, label in zip(rows(packed), packed.b_start, packed.nsp):
            assert r[b_start - 2] == EOS and r[b_start - 1] == EOS  # <s> A </s></s> B </s>
            a, b = r[1: b_start - 2], r[b_start:-1]
            assert len(a) and len(b)
            a_docs, b_docs = {doc_of(t) for t in a}, {doc_of(t) for t in b}
            assert len(a_docs) == 1 and len(b_docs) == 1
            if label == 1:  # a negative comes from another document
                assert a_docs != b_docs
            else:  # a positive is the true continuation: B starts at the sentence after A's last
                assert a_docs == b_docs
                assert sent_of(b[0])[1] == sent_of(a[-1])[1] + 1
            if name == "sentence_pair":
                assert len({sent_of(t) for t in a}) == 1 and len({sent_of(t) for t in b}) == 1
            types = token_types(r[None, :], np.array([b_start]))[0]
            assert (types[:b_start] == 0).all() and (types[b_start:] == 1).all()


def test_nsp_labels_are_a_fair_coin():
    rng = np.random.default_rng(0)
    docs = [list(rng.integers(3, 20, rng.integers(5, 40))) for _ in range(60)]
    for name in ("segment_pair", "sentence_pair"):
        labels = FORMATS.get(name).pack(make_sentences(docs), 64).nsp
        assert len(labels) > 200
        assert abs(labels.mean() - 0.5) < 0.08, (name, labels.mean())


def test_format_registry_names_and_references():
    assert FORMATS.names() == ["doc_sentences", "full_sentences", "segment_pair", "sentence_pair"]
    assert FORMATS.get("doc_sentences").token_reference == "full_sentences"
    assert FORMATS.get("sentence_pair").token_reference == "segment_pair"
    assert FORMATS.get("segment_pair").pair and not FORMATS.get("full_sentences").pair


def test_segment_pair_lengths_say_nothing_of_the_label():
    """SEGMENT-PAIR fixes a pair's lengths before the coin: random and true B have the same length
    distribution, blocks are filled as in BERT, and a lengths-only guess does no better than chance."""
    rng = np.random.default_rng(1)
    docs = [list(rng.integers(3, 40, rng.integers(2, 40))) for _ in range(150)]
    packed = FORMATS.get("segment_pair").pack(make_sentences(docs), 64)
    y = packed.nsp
    len_a, len_b = packed.b_start - 3, packed.lengths - packed.b_start - 1
    assert len(y) > 500 and abs(y.mean() - 0.5) < 0.05
    for arr in (len_a, len_b, packed.lengths == 64):
        assert abs(arr[y == 0].mean() - arr[y == 1].mean()) <= 0.05 * max(1.0, arr.mean()), arr
    assert (packed.lengths == 64).mean() > 0.8  # filled, as BERT's pairs are


def test_format_versions_change_only_their_cells():
    """A packing rule's version is hashed only into the cells of the formats it feeds (segment_pair, and
    sentence_pair whose batch matches segment_pair's tokens); the others keep their keys."""
    from ablate.study import identity
    from ablate.study.spec import Config, DataSpec, PretrainSpec

    def key(fmt):
        return identity.stable_hash(identity.pretrain_identity(
            Config(data=DataSpec(format=fmt), pretrain=PretrainSpec(nsp=fmt.endswith("pair"))), 0))

    before = {f: key(f) for f in FORMATS.names()}
    old = dict(identity.FORMAT_VERSIONS)
    try:
        identity.FORMAT_VERSIONS["segment_pair"] = old["segment_pair"] + 1
        after = {f: key(f) for f in FORMATS.names()}
    finally:
        identity.FORMAT_VERSIONS.clear()
        identity.FORMAT_VERSIONS.update(old)
    assert {f for f in before if before[f] != after[f]} == {"segment_pair", "sentence_pair"}
