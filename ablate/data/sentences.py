"""Documents -> sentences -> token ids, in flat arrays: the input every input format packs from.

Sentences come from blingfire (a compiled, offline splitter from PyPI) run paragraph by
paragraph (no sentence crosses a paragraph break in the corpus), with one repair: blingfire cuts
after common abbreviations ("Mr. Smith"), so a piece ending in one is joined to the next.

Output (`Sentences`): token ids of all sentences back to back, where each sentence starts, and
where each document starts (in sentences). Documents are kept whole and in corpus order, so a
smaller token budget is a prefix of a larger one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

ENCODE_BATCH = 4096
_ABBREV = re.compile(r"(?:^|\s)(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Gen|Col|Capt|Lt|Rev|Hon|No|vs|etc|Co|Inc|Ltd|"
                     r"[A-Z])\.$")


def split_sentences(paragraph: str) -> list[str]:
    """One paragraph -> its sentences (blingfire, with abbreviation repair)."""
    import blingfire

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


def tokenize_documents(docs: Iterable[str], tok, max_tokens: Optional[int]) -> Sentences:
    """Split and tokenize documents in order; stop after the document that reaches max_tokens."""
    chunks: list[np.ndarray] = []
    sent_lens: list[int] = []
    doc_sizes: list[int] = []
    pending: list[str] = []
    pending_docs: list[int] = []
    total = 0

    def flush() -> None:
        nonlocal total
        encodings = tok.encode_batch(pending, add_special_tokens=False)
        for enc in encodings:
            ids = np.asarray(enc.ids, dtype=np.int32)
            chunks.append(ids)
            sent_lens.append(len(ids))
            total += len(ids)
        doc_sizes.extend(pending_docs)
        pending.clear()
        pending_docs.clear()

    for doc in docs:
        sents = [s for para in doc.split("\n\n") for s in split_sentences(para)]
        if not sents:
            continue
        pending.extend(sents)
        pending_docs.append(len(sents))
        if len(pending) >= ENCODE_BATCH:
            flush()
            if max_tokens is not None and total >= max_tokens:
                break
    if pending:
        flush()
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
        chunks, sent_lens = chunks[:n], sent_lens[:n]
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    sent_start = np.concatenate([[0], np.cumsum(sent_lens)]).astype(np.int64)
    doc_start = np.concatenate([[0], np.cumsum(doc_sizes)]).astype(np.int64)
    return Sentences(tokens, sent_start, doc_start)
