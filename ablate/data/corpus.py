"""Corpus documents -> sentences -> token ids -> packed blocks, cached as numpy arrays.

Input: the corpus Parquet files under the data root (columns doc_id, source, title, text;
paragraphs separated by a blank line; no sentence crosses a paragraph break).
Output: results/_cache/corpus/<hash>/{train,heldout}.blocks.npy ([N, max_len] token ids,
padded with <pad>) and .lengths.npy ([N]), memory-mapped at training time so batches
are slices, with no Python work per token.

Blocks are FULL-SENTENCES (paper section 4.2): whole sentences packed contiguously, crossing
document boundaries, with an extra </s> at each boundary; every block is
<s> ... </s> and at most max_len tokens. A sentence longer than a block is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ablate.data.tokenizer import BOS, EOS, PAD, load_tokenizer
from ablate.expand import corpus_identity, stable_hash
from ablate.paths import corpus_files
from ablate.spec import Config
from ablate.store import Store, atomic_write_json, read_json

# A sentence ends at . ! ? (and closing quotes/brackets) followed by space and an
# upper-case letter, digit or opening quote. Good enough for packing; abbreviations
# such as "Mr. Smith" split wrongly, which only moves a packing boundary.
_SENT_END = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
HELDOUT_SPLIT = "validation"
ENCODE_BATCH = 4096


def split_sentences(paragraph: str) -> list[str]:
    return [s for s in _SENT_END.split(paragraph) if s.strip()]


def iter_documents(corpus: str, split: str) -> Iterator[str]:
    """Document texts of a corpus split, in the corpus's fixed file and row order."""
    import pyarrow.parquet as pq

    for path in corpus_files(corpus, split):
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=256, columns=["text"]):
            yield from batch.column(0).to_pylist()


@dataclass
class Packed:
    blocks: np.ndarray  # [N, max_len] token ids, <pad> after `lengths`
    lengths: np.ndarray  # [N] real tokens per block, specials included

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


class _Packer:
    """Greedy FULL-SENTENCES packing into blocks of at most max_len tokens."""

    def __init__(self, max_len: int):
        self.cap = max_len - 2  # room for <s> and </s>
        self.max_len = max_len
        self.flat: list[int] = []
        self.lengths: list[int] = []
        self.cur: list[int] = []

    def _close(self) -> None:
        if self.cur:
            self.flat.append(BOS)
            self.flat.extend(self.cur)
            self.flat.append(EOS)
            self.lengths.append(len(self.cur) + 2)
            self.cur = []

    def doc_boundary(self) -> None:
        # The extra separator marks a document boundary inside a block; a block
        # that would start with it (or cannot fit it) simply ends instead.
        if self.cur:
            if len(self.cur) + 1 >= self.cap:
                self._close()
            else:
                self.cur.append(EOS)

    def add(self, ids: list[int]) -> None:
        while len(ids) > self.cap:  # an over-long sentence fills blocks of its own
            self._close()
            self.cur = list(ids[: self.cap])
            self._close()
            ids = ids[self.cap :]
        if len(self.cur) + len(ids) > self.cap:
            self._close()
        self.cur.extend(ids)

    def content_tokens(self) -> int:
        return len(self.flat) - 2 * len(self.lengths) + len(self.cur)

    def result(self) -> Packed:
        self._close()
        lengths = np.asarray(self.lengths, dtype=np.int32)
        blocks = np.full((len(lengths), self.max_len), PAD, dtype=np.int32)
        flat = np.asarray(self.flat, dtype=np.int32)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = np.arange(len(flat)) - starts
        blocks[rows, cols] = flat
        return Packed(blocks, lengths)


def pack_documents(docs: Iterator[str], tok, max_len: int, max_tokens: int | None) -> Packed:
    """Tokenize documents sentence by sentence and pack them; stop after max_tokens content tokens."""
    packer = _Packer(max_len)
    pending: list[str] = []
    starts: list[bool] = []  # True where a sentence starts a new document

    def flush() -> bool:
        encodings = tok.encode_batch(pending, add_special_tokens=False)
        for enc, first in zip(encodings, starts):
            if first:
                packer.doc_boundary()
            packer.add(enc.ids)
            if max_tokens is not None and packer.content_tokens() >= max_tokens:
                return True
        pending.clear()
        starts.clear()
        return False

    for doc in docs:
        first = True
        for para in doc.split("\n\n"):
            for sent in split_sentences(para):
                pending.append(sent)
                starts.append(first)
                first = False
        if len(pending) >= ENCODE_BATCH and flush():
            return packer.result()
    if pending:
        flush()
    return packer.result()


def corpus_dir(store: Store, cfg: Config) -> Path:
    return store.cache("corpus", stable_hash(corpus_identity(cfg)))


def prepare_corpus(store: Store, cfg: Config) -> Path:
    """Build (or find) the packed train and held-out arrays for cfg.data; return their folder."""
    folder = corpus_dir(store, cfg)
    if (folder / "meta.json").exists():
        return folder
    tok = load_tokenizer(store, cfg)
    d = cfg.data
    train = pack_documents(iter_documents(d.corpus, "train"), tok, d.max_len, d.train_tokens)
    heldout = pack_documents(iter_documents(d.corpus, HELDOUT_SPLIT), tok, d.max_len, d.heldout_tokens)
    folder.mkdir(parents=True, exist_ok=True)
    for name, packed in (("train", train), ("heldout", heldout)):
        _save_npy(folder / f"{name}.blocks.npy", packed.blocks)
        _save_npy(folder / f"{name}.lengths.npy", packed.lengths)
    counts = np.bincount(train.blocks[train.blocks != PAD].ravel(), minlength=tok.get_vocab_size())
    _save_npy(folder / "unigram.npy", counts.astype(np.int64))
    atomic_write_json(
        folder / "meta.json",
        {"identity": corpus_identity(cfg), "train_blocks": len(train.lengths), "train_tokens": train.tokens,
         "heldout_blocks": len(heldout.lengths), "heldout_tokens": heldout.tokens,
         "vocab_size": tok.get_vocab_size()},
    )
    return folder


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)


def load_corpus(folder: Path, split: str) -> Packed:
    """Memory-mapped packed arrays for 'train' or 'heldout'."""
    return Packed(
        np.load(folder / f"{split}.blocks.npy", mmap_mode="r"),
        np.load(folder / f"{split}.lengths.npy"),
    )


def corpus_meta(folder: Path) -> dict:
    return read_json(folder / "meta.json") or {}
