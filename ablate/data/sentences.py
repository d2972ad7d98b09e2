"""Documents -> sentences -> token ids, in flat arrays: the input every input format packs from.

Sentences come from blingfire (a compiled, offline splitter from PyPI) run paragraph by
paragraph (no sentence crosses a paragraph break in the corpus), with one repair: blingfire cuts
after common abbreviations ("Mr. Smith"), so a piece ending in one is joined to the next.

Output (`Sentences`): token ids of all sentences back to back, where each sentence starts, and
where each document starts (in sentences). Documents are kept whole and in corpus order, so a
smaller token budget is a prefix of a larger one.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from typing import Iterable, Iterator, Optional

import numpy as np

from ablate.data.fastbpe import fast_encoder
from ablate.paths import available_cores

ENCODE_BATCH = 4096
_ABBREV = re.compile(r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|Hon|No|vs|etc|Co|Inc|Ltd|"
                     r"[A-Z])\.$")


def split_sentences(paragraph: str) -> list[str]:
    """One paragraph -> its sentences (blingfire, with abbreviation repair)."""
    import blingfire  # lazy: loads a native library; validate and plan never split text

    pieces = [p.strip() for p in blingfire.text_to_sentences(paragraph).split("\n") if p.strip()]
    out: list[str] = []
    for piece in pieces:
        if out and _ABBREV.search(out[-1]):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


@dataclass
class Sentences:
    tokens: np.ndarray  # [T] int32 token ids of every sentence, back to back
    sent_start: np.ndarray  # [S + 1] sentence i is tokens[sent_start[i]:sent_start[i + 1]]
    doc_start: np.ndarray  # [D + 1] document d is sentences doc_start[d] .. doc_start[d + 1] - 1

    @property
    def n_docs(self) -> int:
        return len(self.doc_start) - 1

    def sentence(self, i: int) -> np.ndarray:
        return self.tokens[self.sent_start[i]: self.sent_start[i + 1]]

    def doc_sentences(self, d: int) -> range:
        return range(int(self.doc_start[d]), int(self.doc_start[d + 1]))

    def prefix(self, max_tokens: int) -> "Sentences":
        """The leading whole documents up to (and including) the one that reaches max_tokens."""
        doc_end_tokens = self.sent_start[self.doc_start[1:]]  # [D] tokens up to each document's end
        n_docs = min(int(np.searchsorted(doc_end_tokens, max_tokens)) + 1, self.n_docs)
        n_sents = int(self.doc_start[n_docs])
        return Sentences(self.tokens[: self.sent_start[n_sents]], self.sent_start[: n_sents + 1],
                         self.doc_start[: n_docs + 1])


CHUNK_CHARS = 400_000  # documents go to the workers in chunks of about this many characters


class _LibraryEncoder:
    def __init__(self, tok):
        self.tok = tok

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]


def _encoder(tok):
    """What encodes sentences: the fast byte-level path where it gives the same ids, else the tokenizer itself."""
    return fast_encoder(tok) or _LibraryEncoder(tok)


def _encode_chunk(docs: list[str], tok) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Documents -> (token ids of all their sentences, each sentence's length, each kept document's sentence count)."""
    sents: list[str] = []
    doc_sizes: list[int] = []
    for doc in docs:
        found = [s for para in doc.split("\n\n") for s in split_sentences(para)]
        if found:
            sents.extend(found)
            doc_sizes.append(len(found))
    ids: list[list[int]] = []
    for i in range(0, len(sents), ENCODE_BATCH):
        ids.extend(tok.encode_batch(sents[i: i + ENCODE_BATCH]))
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    tokens = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lens.sum()))
    return tokens, lens, doc_sizes


_WORKER_TOK = None


def _worker_init(tokenizer_json: str) -> None:
    global _WORKER_TOK
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker; the workers are the parallelism
    from tokenizers import Tokenizer  # after TOKENIZERS_PARALLELISM is set, in the worker process

    _WORKER_TOK = _encoder(Tokenizer.from_str(tokenizer_json))


def _worker_encode(docs: list[str]):
    return _encode_chunk(docs, _WORKER_TOK)


def _chunks(docs: Iterable[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for doc in docs:
        chunk.append(doc)
        size += len(doc)
        if size >= CHUNK_CHARS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def prep_workers() -> int:
    """Processes for sentence splitting and tokenization: ABLATE_PREP_WORKERS, else the usable cores (at most 8)."""
    if os.environ.get("ABLATE_PREP_WORKERS"):
        return max(1, int(os.environ["ABLATE_PREP_WORKERS"]))
    return min(available_cores(), 8)


def _encoded_chunks(docs: Iterable[str], tok, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[int]]]:
    """Encoded chunks in document order. Splitting and encoding are per sentence and deterministic, so the
    result is the same for any number of workers; more than one worker starts only when there is a second chunk."""
    chunks = _chunks(docs)
    head = list(islice(chunks, 2))
    if len(head) < 2 or workers <= 1:
        enc = _encoder(tok)
        for chunk in chain(head, chunks):
            yield _encode_chunk(chunk, enc)
        return
    # spawn, never fork: the caller may hold torch or tokenizer threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                             initargs=(tok.to_str(),)) as pool:
        pending = deque(pool.submit(_worker_encode, chunk) for chunk in head)
        try:
            for chunk in chunks:  # keep a bounded number of chunks in flight, so a token budget stops early
                pending.append(pool.submit(_worker_encode, chunk))
                while len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def tokenize_documents(docs: Iterable[str], tok, max_tokens: Optional[int],
                       workers: Optional[int] = None) -> Sentences:
    """Split and tokenize documents in order; stop after the document that reaches max_tokens.

    The work runs in `workers` processes (default `prep_workers()`), chunks of documents at a time."""
    token_chunks: list[np.ndarray] = []
    len_chunks: list[np.ndarray] = []
    doc_sizes: list[int] = []
    total = 0
    gen = _encoded_chunks(docs, tok, prep_workers() if workers is None else workers)
    try:
        for tokens, lens, sizes in gen:
            token_chunks.append(tokens)
            len_chunks.append(lens)
            doc_sizes.extend(sizes)
            total += len(tokens)
            if max_tokens is not None and total >= max_tokens:
                break
    finally:
        gen.close()
    sent_lens = np.concatenate(len_chunks) if len_chunks else np.zeros(0, dtype=np.int64)
    tokens = np.concatenate(token_chunks) if token_chunks else np.zeros(0, dtype=np.int32)
    if max_tokens is not None:  # trim whole documents beyond the budget (keep the one that crosses it)
        ends = np.cumsum(sent_lens)
        keep_docs, seen = 0, 0
        for size in doc_sizes:
            keep_docs += 1
            seen += size
            if ends[seen - 1] >= max_tokens:
                break
        doc_sizes = doc_sizes[:keep_docs]
        n = sum(doc_sizes)
        sent_lens = sent_lens[:n]
        tokens = tokens[: int(sent_lens.sum())]
    sent_start = np.concatenate([[0], np.cumsum(sent_lens)]).astype(np.int64)
    doc_start = np.concatenate([[0], np.cumsum(doc_sizes)]).astype(np.int64)
    return Sentences(tokens, sent_start, doc_start)
