"""Input formats (RoBERTa paper, section 4.2): Sentences -> packed blocks, as a registry by name.

- full_sentences: whole sentences packed contiguously up to max_len, crossing document
  boundaries, with an extra </s> at each boundary inside a block. No NSP.
- doc_sentences: the same, but a block never crosses a document boundary. Blocks at document ends
  are shorter; the batch grows so tokens per step match full_sentences.
- segment_pair: <s> A </s></s> B </s>, A and B each any number of sentences filling max_len (as BERT:
  whole sentences gathered until the block is full, the over-long pair trimmed). With p=0.5 B is the
  true continuation of A, otherwise it comes from another document, with the same lengths.
- sentence_pair: the same with A and B single sentences; the batch grows so tokens per step match
  segment_pair.
Every block is at most max_len tokens, specials included. Pair formats record where B starts
(token type 1 from there) and the NSP label (0: B continues A, 1: B is from another document, as
transformers' next_sentence_label). Pairing draws come from a fixed seed, so they are part of the
prepared data (BERT made its pairs in preprocessing too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ablate.data.sentences import Sentences
from ablate.data.vocab import BOS, EOS, PAD
from ablate.registry import Registry

PAIR_SEED = 20190726


@dataclass
class Packed:
    blocks: np.ndarray  # [N, max_len] token ids, <pad> after `lengths`
    lengths: np.ndarray  # [N] real tokens per block, specials included
    b_start: Optional[np.ndarray] = None  # [N] index where segment B starts (pair formats)
    nsp: Optional[np.ndarray] = None  # [N] 0 = B continues A, 1 = B from another document

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())

    @property
    def is_pair(self) -> bool:
        return self.b_start is not None


@dataclass(frozen=True)
class Format:
    name: str
    pack: Callable[[Sentences, int], Packed]
    pair: bool  # inputs are (A, B) pairs, usable with NSP
    token_reference: Optional[str] = None  # batches grow so tokens/step match this format's


FORMATS: Registry[Format] = Registry("input format")


class _Rows:
    """Accumulates blocks as flat token lists, then lays them out in a padded array."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.flat: list[np.ndarray] = []
        self.lengths: list[int] = []
        self.b_start: list[int] = []
        self.nsp: list[int] = []

    def add(self, parts: list, b_start: int = 0, nsp: int = -1) -> None:
        row = np.concatenate([np.asarray(p, dtype=np.int32) for p in parts])
        assert len(row) <= self.max_len
        self.flat.append(row)
        self.lengths.append(len(row))
        self.b_start.append(b_start)
        self.nsp.append(nsp)

    def result(self, pair: bool) -> Packed:
        lengths = np.asarray(self.lengths, dtype=np.int32)
        blocks = np.full((len(lengths), self.max_len), PAD, dtype=np.int32)
        if len(lengths):
            flat = np.concatenate(self.flat)
            rows = np.repeat(np.arange(len(lengths)), lengths)
            cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            blocks[rows, cols] = flat
        if not pair:
            return Packed(blocks, lengths)
        return Packed(blocks, lengths, np.asarray(self.b_start, dtype=np.int32), np.asarray(self.nsp, dtype=np.int8))


def _pack_contiguous(s: Sentences, max_len: int, cross_documents: bool) -> Packed:
    """Greedy packing, planned on sentence lengths in Python and laid out with one numpy gather."""
    cap = max_len - 2  # room for <s> and </s>
    sent_len = np.diff(s.sent_start).tolist()
    starts = s.sent_start.tolist()
    src: list[int] = []  # per content piece: where its tokens start in s.tokens (-1: a </s> separator)
    n_tok: list[int] = []  # its length
    row_pieces: list[int] = []  # pieces per block
    lengths: list[int] = []  # content tokens per block
    cur_pieces = 0
    size = 0
    boundary = False  # a document ended inside the current block

    def close() -> None:
        nonlocal cur_pieces, size, boundary
        if cur_pieces:
            row_pieces.append(cur_pieces)
            lengths.append(size)
        cur_pieces, size, boundary = 0, 0, False

    doc_start = s.doc_start.tolist()
    for d in range(s.n_docs):
        if cur_pieces:
            if cross_documents:
                boundary = True  # the separator goes in only if the next sentence joins this block
            else:
                close()
        for i in range(doc_start[d], doc_start[d + 1]):
            at, n = starts[i], sent_len[i]
            while n > cap:  # an over-long sentence fills blocks of its own
                close()
                src.append(at)
                n_tok.append(cap)
                row_pieces.append(1)
                lengths.append(cap)
                at, n = at + cap, n - cap
            if not n:
                continue
            if size + boundary + n > cap:
                close()
            if boundary:
                src.append(-1)
                n_tok.append(1)
                cur_pieces += 1
                size += 1
                boundary = False
            src.append(at)
            n_tok.append(n)
            cur_pieces += 1
            size += n
    close()
    return _layout(s.tokens, max_len, np.asarray(src, dtype=np.int64), np.asarray(n_tok, dtype=np.int64),
                   np.asarray(row_pieces, dtype=np.int64), np.asarray(lengths, dtype=np.int64))


def _layout(tokens: np.ndarray, max_len: int, src: np.ndarray, n_tok: np.ndarray, row_pieces: np.ndarray,
            content: np.ndarray) -> Packed:
    """Blocks <s> piece piece ... </s> from pieces of `tokens` (src -1: a </s>), row_pieces pieces per block."""
    n_rows = len(content)
    lengths = (content + 2).astype(np.int32)
    blocks = np.full((n_rows, max_len), PAD, dtype=np.int32)
    if not n_rows:
        return Packed(blocks, lengths)
    ext = np.concatenate([tokens.astype(np.int32, copy=False), np.array([EOS], dtype=np.int32)])
    piece_src = np.where(src < 0, len(tokens), src)  # a separator reads the EOS appended at the end
    total = int(n_tok.sum())
    offset_in_piece = np.arange(total) - np.repeat(np.cumsum(n_tok) - n_tok, n_tok)
    gather = np.repeat(piece_src, n_tok) + offset_in_piece
    rows = np.repeat(np.arange(n_rows), content)
    cols = 1 + np.arange(total) - np.repeat(np.cumsum(content) - content, content)
    blocks[rows, cols] = ext[gather]
    blocks[:, 0] = BOS
    blocks[np.arange(n_rows), lengths - 1] = EOS
    return Packed(blocks, lengths)


def pack_full_sentences(s: Sentences, max_len: int) -> Packed:
    return _pack_contiguous(s, max_len, cross_documents=True)


def pack_doc_sentences(s: Sentences, max_len: int) -> Packed:
    return _pack_contiguous(s, max_len, cross_documents=False)


def _random_start(s: Sentences, rng: np.random.Generator, avoid_doc: int) -> tuple[int, int]:
    """A random sentence of a random document other than avoid_doc -> (that sentence, its document's end)."""
    d = int(rng.integers(0, s.n_docs - 1))
    d = d + 1 if d >= avoid_doc else d  # any document but avoid_doc
    sents = s.doc_sentences(d)
    return int(rng.integers(sents.start, sents.stop)), sents.stop


def _add_pair(rows: _Rows, a: list, b: list, nsp: int, max_len: int) -> None:
    """<s> A </s></s> B </s>, trimming the longer segment's end until the pair fits."""
    a_tok = np.concatenate(a)
    b_tok = np.concatenate(b)
    room = max_len - 4
    while len(a_tok) + len(b_tok) > room:
        if len(a_tok) >= len(b_tok):
            a_tok = a_tok[:-1]
        else:
            b_tok = b_tok[:-1]
    rows.add([[BOS], a_tok, [EOS, EOS], b_tok, [EOS]], b_start=len(a_tok) + 3, nsp=nsp)


def _pack_sentence_pairs(s: Sentences, max_len: int) -> Packed:
    """SENTENCE-PAIR: A one sentence, B the next one or, with p = 0.5, a random sentence of another document.
    A document's last sentence has no continuation: BERT forced such pairs to "random"; skipping them keeps
    the NSP labels a fair coin."""
    rng = np.random.default_rng(PAIR_SEED)
    rows = _Rows(max_len)
    for d in range(s.n_docs):
        sents = s.doc_sentences(d)
        for i in range(sents.start, sents.stop - 1):
            is_random = s.n_docs > 1 and rng.random() < 0.5
            b = s.sentence(_random_start(s, rng, d)[0] if is_random else i + 1)
            a = s.sentence(i)
            if len(a) and len(b):
                _add_pair(rows, [a], [b], int(is_random), max_len)
    return rows.result(pair=True)


def _trim_lengths(a: int, b: int, room: int) -> tuple[int, int]:
    """_add_pair's rule on lengths alone: shorten the longer segment, one token at a time, until a + b <= room."""
    excess = a + b - room
    if excess <= 0:
        return a, b
    d = min(abs(a - b), excess)
    if a >= b:
        a -= d
    else:
        b -= d
    excess -= d
    return a - (excess + 1) // 2, b - excess // 2


def _random_tokens(s: Sentences, rng: np.random.Generator, avoid_doc: int, n: int, tries: int = 10) -> np.ndarray:
    """n tokens of whole sentences from a random other document, from a random sentence on (the first draw
    that has n tokens left; after `tries` draws, the longest found)."""
    best = np.zeros(0, dtype=s.tokens.dtype)
    for _ in range(tries):
        start, stop = _random_start(s, rng, avoid_doc)
        seg = s.tokens[s.sent_start[start]: s.sent_start[min(stop, start + n + 1)]][:n]
        if len(seg) > len(best):
            best = seg
        if len(best) >= n:
            break
    return best


def _pack_segment_pairs(s: Sentences, max_len: int) -> Packed:
    """BERT's create_instances_from_document for SEGMENT-PAIR: whole sentences are gathered until they fill
    the block (the last one may run over), A is a random number of them, B the rest (true continuation)
    or, with p = 0.5, text from another document. The pair's lengths are fixed before the coin: a random B
    gets exactly the tokens the true B would keep, and A the same trimming, so lengths say nothing of the
    label. Over-long pairs lose A's start and B's end (the A|B boundary stays intact)."""
    rng = np.random.default_rng(PAIR_SEED)
    rows = _Rows(max_len)
    room = max_len - 4
    lens = np.diff(s.sent_start)
    for d in range(s.n_docs):
        sents = list(s.doc_sentences(d))
        i = 0
        while i < len(sents):
            chunk, size, j = [], 0, i
            while j < len(sents) and size < room:  # fill the block, the last sentence may run over
                chunk.append(sents[j])
                size += int(lens[sents[j]])
                j += 1
            a_end = 1 if len(chunk) < 2 else int(rng.integers(1, len(chunk)))
            a_tok = np.concatenate([s.sentence(k) for k in chunk[:a_end]])
            rest = chunk[a_end:]
            if not rest:  # one sentence filled the block
                if j >= len(sents):
                    # The document's last sentence has no continuation. BERT forced such pairs to
                    # "random"; skipping them keeps the NSP labels a fair coin.
                    i = j
                    continue
                rest, j = [sents[j]], j + 1  # B is the next sentence (BERT made these always random: a cue)
            b_true = np.concatenate([s.sentence(k) for k in rest])
            a_len, b_len = _trim_lengths(len(a_tok), len(b_true), room)
            is_random = s.n_docs > 1 and rng.random() < 0.5
            if is_random:
                b_tok = _random_tokens(s, rng, d, b_len)
                i += a_end  # the unused sentences of the chunk are read again (BERT "puts them back")
            else:
                b_tok = b_true[:b_len]
                i = j
            a_tok = a_tok[len(a_tok) - a_len:]  # A keeps its end, next to B
            if len(a_tok) and len(b_tok):
                rows.add([[BOS], a_tok, [EOS, EOS], b_tok, [EOS]], b_start=len(a_tok) + 3, nsp=int(is_random))
    return rows.result(pair=True)


def pack_segment_pair(s: Sentences, max_len: int) -> Packed:
    return _pack_segment_pairs(s, max_len)


def pack_sentence_pair(s: Sentences, max_len: int) -> Packed:
    return _pack_sentence_pairs(s, max_len)


FORMATS.register("full_sentences", Format("full_sentences", pack_full_sentences, pair=False))
FORMATS.register("doc_sentences", Format("doc_sentences", pack_doc_sentences, pair=False,
                                         token_reference="full_sentences"))
FORMATS.register("segment_pair", Format("segment_pair", pack_segment_pair, pair=True))
FORMATS.register("sentence_pair", Format("sentence_pair", pack_sentence_pair, pair=True,
                                         token_reference="segment_pair"))


def token_types(blocks: np.ndarray, b_start: np.ndarray) -> np.ndarray:
    """[B, L] token type ids: 1 from B's first token to the end of the block (pads stay 0)."""
    pos = np.arange(blocks.shape[1])[None, :]
    return ((pos >= b_start[:, None]) & (b_start[:, None] > 0) & (blocks != PAD)).astype(np.int64)
