"""Sentence splitting, the tokenizer, and the prepared-corpus caches."""

from __future__ import annotations

import numpy as np

from ablate.data.corpus import load_corpus
from ablate.run.prepare import batch_size_for, sentences_for, corpus_for
from ablate.data.sentences import split_sentences, tokenize_documents
from ablate.data.vocab import BOS, EOS, PAD, SPECIALS
from ablate.run.prepare import tokenizer_for, cache_for
from ablate.study.spec import Config, DataSpec
from ablate.store import Store


def test_split_sentences_keeps_abbreviations():
    para = 'He came home. "Was it late?" she asked. Mr. Smith of the U.S. Navy agreed! Then 3 dogs ran.'
    sents = split_sentences(para)
    assert sents[0] == "He came home."
    assert "Mr. Smith of the U.S. Navy agreed!" in sents
    assert sents[-1] == "Then 3 dogs ran."
    assert "".join(sents).replace(" ", "") == para.replace(" ", "")  # nothing lost


def tiny_cfg(**data) -> Config:
    return Config(data=DataSpec(**{"vocab_size": 400, "tokenizer_train_chars": 20_000, "max_len": 32,
                                   "heldout_tokens": 1000, **data}))


def test_tokenizer_specials_and_cache(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    cfg = tiny_cfg()
    tok = tokenizer_for(store, cfg)
    assert [tok.token_to_id(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    assert tok.get_vocab_size() <= 400
    text = "The cat sat by the river."
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids).strip() == text
    pair = tok.encode("a b", "c d").ids
    assert pair[0] == BOS and pair[-1] == EOS and pair.count(EOS) == 3  # <s> A </s></s> B </s>
    mtime = (cache_for(store, cfg).tokenizer / "tokenizer.json").stat().st_mtime
    tokenizer_for(store, cfg)
    assert (cache_for(store, cfg).tokenizer / "tokenizer.json").stat().st_mtime == mtime  # reused, not retrained
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(cache_for(store, cfg).tokenizer / "hf"))
    assert hf.mask_token_id == 4 and hf.pad_token_id == PAD


def test_data_sizes_nest_and_heldout_is_fixed(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    small = sentences_for(store, tiny_cfg(train_tokens=2000), "train")
    large = sentences_for(store, tiny_cfg(train_tokens=4000), "train")
    assert 2000 <= len(small.tokens) < 4000 <= len(large.tokens)
    n = len(small.tokens)
    assert np.array_equal(small.tokens, large.tokens[:n])  # more data only adds
    assert np.array_equal(small.doc_start, large.doc_start[: len(small.doc_start)])
    held_a = load_corpus(corpus_for(store, tiny_cfg(train_tokens=2000)), "heldout")
    held_b = load_corpus(corpus_for(store, tiny_cfg(train_tokens=4000)), "heldout")
    assert np.array_equal(np.asarray(held_a.blocks), np.asarray(held_b.blocks))


def test_prepared_blocks_and_cache(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    cfg = tiny_cfg(train_tokens=3000)
    folder = corpus_for(store, cfg)
    train = load_corpus(folder, "train")
    assert train.blocks.shape[1] == 32 and (train.lengths <= 32).all()
    assert (np.asarray(train.blocks[:, 0]) == BOS).all()
    assert not train.is_pair
    stamp = (folder / "meta.json").stat().st_mtime_ns
    assert corpus_for(store, cfg) == folder and (folder / "meta.json").stat().st_mtime_ns == stamp
    pairs = load_corpus(corpus_for(store, tiny_cfg(train_tokens=3000, format="segment_pair")), "train")
    assert pairs.is_pair and set(np.unique(pairs.nsp)) <= {0, 1}


def test_token_matched_batch_sizes(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    base = tiny_cfg(train_tokens=3000)
    assert batch_size_for(store, base) == base.pretrain.batch_size
    doc = tiny_cfg(train_tokens=3000, format="doc_sentences")
    sent = tiny_cfg(train_tokens=3000, format="sentence_pair")
    seg = tiny_cfg(train_tokens=3000, format="segment_pair")
    bs = base.pretrain.batch_size

    def mean_len(cfg):
        return float(load_corpus(corpus_for(store, cfg), "train").lengths.mean())

    for cfg, ref in ((doc, base), (sent, seg)):
        eff = batch_size_for(store, cfg)
        assert eff >= bs
        # tokens per step match the reference format's within one sequence
        assert abs(eff * mean_len(cfg) - bs * mean_len(ref)) <= mean_len(cfg)


def test_tokenize_documents_keeps_document_order(tiny_data_root, tmp_path):
    store = Store(tmp_path / "results")
    tok = tokenizer_for(store, tiny_cfg())
    s = tokenize_documents(iter(["One cat. Two dogs.", "Three birds."]), tok, None)
    assert s.n_docs == 2 and list(s.doc_start) == [0, 2, 3]
    assert tok.decode(s.sentence(2).tolist()).strip() == "Three birds."


def test_heldout_by_characters_is_the_same_text_for_every_tokenizer(tiny_data_root, tmp_path):
    """heldout_chars picks whole documents by characters, so every tokenizer and vocabulary scores the same text
    (bits per character then compare like with like); a budget in tokens does not promise that."""
    from ablate.data.documents import first_documents, iter_documents
    from ablate.study.identity import heldout_identity

    store = Store(tmp_path / "results")
    arms = [tiny_cfg(heldout_chars=3000), tiny_cfg(heldout_chars=3000, vocab_size=300),
            tiny_cfg(heldout_chars=3000, tokenizer="wordpiece")]
    docs = list(first_documents(iter_documents("corpus", "validation"), 3000))
    assert 3000 <= sum(map(len, docs)) and sum(map(len, docs[:-1])) < 3000  # whole documents, up to the limit
    held = [sentences_for(store, cfg, "heldout") for cfg in arms]
    assert len({len(s.doc_start) for s in held}) == 1 and len(held[0].doc_start) == len(docs) + 1  # offsets + end
    assert len({len(s.sent_start) for s in held}) == 1  # sentences are split on the text, before any tokenizer
    assert [len(s.tokens) for s in held] != [len(held[0].tokens)] * 3  # the units differ, the text does not
    assert len({heldout_identity(cfg)[0] for cfg in arms}) == 1
    assert len({heldout_identity(cfg)[0] for cfg in (tiny_cfg(), tiny_cfg(vocab_size=300))}) == 2
