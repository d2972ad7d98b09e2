"""Corpus documents -> sentences -> packed blocks of the study's input format, cached as numpy arrays.

Input: the corpus Parquet files under the data root (ablate.data.documents) and the cache folders the caller
names for this data spec (DataCache, from ablate.study.identity.data_cache).
Output:
- sentences/<hash>/{train,heldout}.npz: token ids of every sentence, sentence and document offsets
  (shared by every input format and every cell with the same tokenizer and data size);
- corpus/<hash>/{train,heldout}.*.npy: the packed blocks ([N, max_len], padded with <pad>), their
  lengths, and for pair formats where segment B starts and the NSP label; memory-mapped at training
  time, so a batch is a slice, with no Python work per token.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ablate.data.documents import first_documents, iter_documents
from ablate.data.formats import FORMATS, Packed
from ablate.data.sentences import Sentences, tokenize_documents
from ablate.data.tokenizer import load_tokenizer
from ablate.data.vocab import PAD
from ablate.store import atomic_write_bytes, atomic_write_json, read_json

if TYPE_CHECKING:  # the data stages take the spec's data slice; they never import the study layer
    from ablate.study.spec import DataSpec

HELDOUT_SPLIT = "validation"
ARRAYS = ("blocks", "lengths", "b_start", "nsp")


@dataclass(frozen=True)
class DataCache:
    """Where one data spec's prepared stages live, and what each is: named by the caller from their identities
    (ablate.study.identity.data_cache), so a stage never hashes its own settings."""

    tokenizer: Path  # the trained tokenizer
    sentences: dict[str, Path]  # "train" | "heldout" -> tokenized sentences of that split
    corpus: Path  # packed blocks in the input format
    tokenizer_identity: dict[str, Any]  # written beside the tokenizer
    corpus_identity: dict[str, Any]  # recorded in the corpus's meta.json

    def tokenizer_of(self, data: DataSpec):
        return load_tokenizer(self.tokenizer, data, self.tokenizer_identity)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())  # a temp file of its own: two preparing one entry never collide


def load_sentences(cache: DataCache, data: DataSpec, split: str) -> Sentences:
    """Sentence-split, tokenized text of 'train' (up to the data size's tokens) or 'heldout' (up to heldout_tokens,
    or whole documents up to heldout_chars characters). A data_fraction of the whole corpus (no train_tokens) is a
    prefix of the whole corpus's sentences."""
    budget = data.train_token_budget if split == "train" else data.heldout_tokens
    path = cache.sentences[split] / f"{split}.npz"
    if not path.exists():
        tok = cache.tokenizer_of(data)
        docs = iter_documents(data.corpus, "train" if split == "train" else HELDOUT_SPLIT)
        if split == "heldout" and data.heldout_chars is not None:  # by characters: the same text for any tokenizer
            docs, budget = first_documents(docs, data.heldout_chars), None
        s = tokenize_documents(docs, tok, budget)
        buf = io.BytesIO()
        np.savez(buf, tokens=s.tokens, sent_start=s.sent_start, doc_start=s.doc_start)
        atomic_write_bytes(path, buf.getvalue())
    with np.load(path) as z:
        sentences = Sentences(z["tokens"], z["sent_start"], z["doc_start"])
    if split == "train" and data.train_tokens is None and data.data_fraction < 1:
        return sentences.prefix(int(len(sentences.tokens) * data.data_fraction))
    return sentences


def prepare_corpus(cache: DataCache, data: DataSpec) -> Path:
    """Build (or find) the packed train and held-out arrays for data in cache.corpus; return that folder."""
    folder = cache.corpus
    if (folder / "meta.json").exists():
        return folder
    fmt = FORMATS.get(data.format)
    tok = cache.tokenizer_of(data)
    meta = {"identity": cache.corpus_identity, "format": fmt.name, "vocab_size": tok.get_vocab_size()}
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "heldout"):
        packed = fmt.pack(load_sentences(cache, data, split), data.max_len)
        for name in ARRAYS:
            arr = getattr(packed, name)
            if arr is not None:
                _save_npy(folder / f"{split}.{name}.npy", arr)
        meta[f"{split}_blocks"] = len(packed.lengths)
        meta[f"{split}_tokens"] = packed.tokens
        meta[f"{split}_mean_length"] = float(packed.lengths.mean()) if len(packed.lengths) else 0.0
        if split == "train":
            counts = np.bincount(packed.blocks[packed.blocks != PAD].ravel(), minlength=tok.get_vocab_size())
            _save_npy(folder / "unigram.npy", counts.astype(np.int64))
    atomic_write_json(folder / "meta.json", meta)  # last: its presence means the entry is complete
    return folder


def load_corpus(folder: Path, split: str) -> Packed:
    """Memory-mapped packed arrays for 'train' or 'heldout'."""
    def opt(name):
        path = folder / f"{split}.{name}.npy"
        return np.load(path) if path.exists() else None

    return Packed(np.load(folder / f"{split}.blocks.npy", mmap_mode="r"), np.load(folder / f"{split}.lengths.npy"),
                  opt("b_start"), opt("nsp"))


def corpus_meta(folder: Path) -> dict:
    return read_json(folder / "meta.json") or {}
