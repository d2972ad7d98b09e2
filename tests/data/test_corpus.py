"""Sentence splitting and FULL-SENTENCES packing; tokenizer and corpus caches."""

from __future__ import annotations

import numpy as np

from ablate.data.corpus import _Packer, load_corpus, pack_documents, prepare_corpus, split_sentences
from ablate.data.tokenizer import BOS, EOS, PAD, SPECIALS, load_tokenizer, tokenizer_dir
from ablate.spec import Config, DataSpec
from ablate.store import Store


def test_split_sentences():
    para = 'He came home. "Was it late?" she asked! Then 3 dogs ran. end of text'
    assert split_sentences(para) == ["He came home.", '"Was it late?" she asked!', "Then 3 dogs ran. end of text"]


def test_packer_blocks_respect_max_len_and_mark_boundaries():
    p = _Packer(max_len=10)  # room for 8 tokens
    for doc in ([[10, 11, 12], [13, 14]], [[20, 21]], [[30] * 20], [[40, 41]]):
        p.doc_boundary()
        for sent in doc:
            p.add(sent)
    out = p.result()
    rows = [list(out.blocks[i, : out.lengths[i]]) for i in range(len(out.lengths))]
    assert all(len(r) <= 10 for r in rows)
    assert all(r[0] == BOS and r[-1] == EOS for r in rows)
    # first block: doc 1 (5 tokens) + separator + doc 2 (2 tokens) = 8 content tokens
    assert rows[0] == [BOS, 10, 11, 12, 13, 14, EOS, 20, 21, EOS]
    # the over-long sentence is cut into full blocks of its own
    assert rows[1] == [BOS] + [30] * 8 + [EOS]
    assert (out.blocks[0, out.lengths[0]:] == PAD).all()
    # every content token survives packing, in order
    content = [t for r in rows for t in r[1:-1] if t != EOS]
    assert content == [10, 11, 12, 13, 14, 20, 21] + [30] * 20 + [40, 41]


def tiny_cfg(**data) -> Config:
    return Config(data=DataSpec(vocab_size=400, tokenizer_train_chars=20_000, max_len=32, heldout_tokens=1000, **data))


def test_tokenizer_specials_and_cache(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    cfg = tiny_cfg()
    tok = load_tokenizer(store, cfg)
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    assert tok.get_vocab_size() <= 400
    text = "The cat sat by the river."
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids).strip() == text
    pair = tok.encode("a b", "c d").ids
    assert pair[0] == BOS and pair[-1] == EOS and pair.count(EOS) == 3  # <s> A </s></s> B </s>
    mtime = (tokenizer_dir(store, cfg) / "tokenizer.json").stat().st_mtime
    load_tokenizer(store, cfg)
    assert (tokenizer_dir(store, cfg) / "tokenizer.json").stat().st_mtime == mtime  # reused, not retrained
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir(store, cfg) / "hf"))
    assert hf.mask_token_id == 4 and hf.pad_token_id == PAD


def test_prepare_corpus_caps_tokens_and_nests(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    small = load_corpus(prepare_corpus(store, tiny_cfg(train_tokens=2000)), "train")
    large = load_corpus(prepare_corpus(store, tiny_cfg(train_tokens=4000)), "train")
    assert 2000 <= small.tokens - 2 * len(small.lengths) < 2000 + 32
    assert small.blocks.shape[1] == 32
    # a smaller data size is a prefix of a larger one (all but the last, partly filled block)
    n = len(small.lengths) - 1
    assert np.array_equal(np.asarray(small.blocks[:n]), np.asarray(large.blocks[:n]))
    held_a = load_corpus(prepare_corpus(store, tiny_cfg(train_tokens=2000)), "heldout")
    held_b = load_corpus(prepare_corpus(store, tiny_cfg(train_tokens=4000)), "heldout")
    assert np.array_equal(np.asarray(held_a.blocks), np.asarray(held_b.blocks))


def test_pack_documents_uses_whole_corpus_without_cap(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    cfg = tiny_cfg()
    tok = load_tokenizer(store, cfg)
    docs = ["One. Two.", "Three."]
    packed = pack_documents(iter(docs), tok, 32, None)
    assert len(packed.lengths) == 1
    row = list(packed.blocks[0, : packed.lengths[0]])
    assert row.count(EOS) == 2  # the boundary separator and the block end
