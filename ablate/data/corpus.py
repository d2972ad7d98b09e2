"""Corpus documents -> sentences -> packed blocks of the study's input format, cached as numpy arrays.

Input: the corpus Parquet files under the data root (columns doc_id, source, title, text;
paragraphs separated by a blank line), streamed through `datasets`.
Output, cached by hash under results/_cache/:
- sentences/<hash>/{train,heldout}.npz: token ids of every sentence, sentence and document offsets
  (shared by every input format and every cell with the same tokenizer and data size);
- corpus/<hash>/{train,heldout}.*.npy: the packed blocks ([N, max_len], padded with <pad>), their
  lengths, and for pair formats where segment B starts and the NSP label; memory-mapped at training
  time, so a batch is a slice, with no Python work per token.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import numpy as np

from ablate.data.formats import FORMATS, Packed
from ablate.data.sentences import Sentences, tokenize_documents
from ablate.data.tokenizer import PAD, load_tokenizer
from ablate.expand import corpus_identity, stable_hash, tokenizer_identity
from ablate.paths import corpus_files
from ablate.spec import Config
from ablate.store import Store, atomic_write_bytes, atomic_write_json, read_json

HELDOUT_SPLIT = "validation"
ARRAYS = ("blocks", "lengths", "b_start", "nsp")


def iter_documents(corpus: str, split: str) -> Iterator[str]:
    """Document texts of a corpus split, in the corpus's fixed file and row order (streamed by `datasets`)."""
    import datasets

    datasets.disable_progress_bars()
    files = [str(p) for p in corpus_files(corpus, split)]
    ds = datasets.load_dataset("parquet", data_files={split: files}, split=split, streaming=True)
    for row in ds.select_columns(["text"]):
        yield row["text"]


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())  # a temp file of its own: two preparing one entry never collide


def load_sentences(store: Store, cfg: Config, split: str) -> Sentences:
    """Sentence-split, tokenized text of 'train' (up to train_tokens) or 'heldout' (up to heldout_tokens)."""
    d = cfg.data
    if split == "train" and d.train_tokens is None and d.data_fraction < 1:  # a fraction of the whole corpus
        whole = load_sentences(store, cfg.model_copy(update={"data": d.model_copy(update={"data_fraction": 1.0})}),
                               split)
        return whole.prefix(int(len(whole.tokens) * d.data_fraction))
    budget = d.train_token_budget if split == "train" else d.heldout_tokens
    key = stable_hash({"tokenizer": tokenizer_identity(cfg), "corpus": d.corpus, "split": split, "tokens": budget,
                       "splitter": "blingfire-1"})
    path = store.cache("sentences", key) / f"{split}.npz"
    if not path.exists():
        tok = load_tokenizer(store, cfg)
        s = tokenize_documents(iter_documents(d.corpus, "train" if split == "train" else HELDOUT_SPLIT), tok, budget)
        buf = io.BytesIO()
        np.savez(buf, tokens=s.tokens, sent_start=s.sent_start, doc_start=s.doc_start)
        atomic_write_bytes(path, buf.getvalue())
    with np.load(path) as z:
        return Sentences(z["tokens"], z["sent_start"], z["doc_start"])


def corpus_dir(store: Store, cfg: Config) -> Path:
    return store.cache("corpus", stable_hash(corpus_identity(cfg)))


def prepare_corpus(store: Store, cfg: Config) -> Path:
    """Build (or find) the packed train and held-out arrays for cfg.data; return their folder."""
    folder = corpus_dir(store, cfg)
    if (folder / "meta.json").exists():
        return folder
    fmt = FORMATS.get(cfg.data.format)
    tok = load_tokenizer(store, cfg)
    meta = {"identity": corpus_identity(cfg), "format": fmt.name, "vocab_size": tok.get_vocab_size()}
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "heldout"):
        packed = fmt.pack(load_sentences(store, cfg, split), cfg.data.max_len)
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


def effective_batch_size(store: Store, cfg: Config) -> int:
    """Sequences per step. Formats with a token reference grow the batch so that tokens per step match
    the reference format's at the configured batch size (the paper's definition)."""
    fmt = FORMATS.get(cfg.data.format)
    if fmt.token_reference is None:
        return cfg.pretrain.total_batch
    ref_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"format": fmt.token_reference})})
    ref = corpus_meta(prepare_corpus(store, ref_cfg))["train_mean_length"]
    own = corpus_meta(prepare_corpus(store, cfg))["train_mean_length"]
    return max(1, int(round(cfg.pretrain.total_batch * ref / own)))
