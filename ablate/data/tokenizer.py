"""Train or load the tokenizer (RoBERTa's byte-level BPE, or BERT's WordPiece), cached by the hash of what determines it.

Input: the corpus train split (first `tokenizer_train_chars` characters, in file order) and the folder the
caller names for it (ablate.study.identity.data_cache: results/_cache/tokenizer/<hash>/).
Output: <folder>/tokenizer.json, plus a transformers-format copy (`PreTrainedTokenizerFast.save_pretrained`)
so checkpoints load with AutoTokenizer. Special tokens follow RoBERTa (ablate.data.vocab).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from tokenizers import (ByteLevelBPETokenizer, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors,
                        trainers)
from tokenizers.processors import RobertaProcessing

from ablate.data.documents import iter_documents
from ablate.data.vocab import BOS, EOS, NUM_SPECIAL, SPECIALS
from ablate.store import atomic_write_json, atomic_write_text, swap_in

if TYPE_CHECKING:  # the data stages take the spec's data slice; they never import the study layer
    from ablate.study.spec import DataSpec



def _train_texts(data: DataSpec, limit_chars: int) -> Iterator[str]:
    used = 0
    for doc in iter_documents(data.corpus, "train"):
        for para in doc.split("\n\n"):
            yield para
            used += len(para)
            if used >= limit_chars:
                return


def _set_roberta_processing(tok) -> None:
    tok.post_processor = RobertaProcessing(("</s>", EOS), ("<s>", BOS), trim_offsets=True, add_prefix_space=True)


def load_tokenizer(folder: Path, data: DataSpec, identity: dict[str, Any]):
    """The `tokenizers.Tokenizer` cached in folder, trained there first if needed (identity: what it is, written
    beside it)."""
    path = folder / "tokenizer.json"
    if not path.exists():
        train_tokenizer(data, folder, identity)
    return Tokenizer.from_file(str(path))


def _byte_bpe(data: DataSpec):
    """RoBERTa's byte-level BPE: any text encodes, no <unk>."""
    bpe = ByteLevelBPETokenizer(add_prefix_space=True, trim_offsets=True)
    bpe.train_from_iterator(_train_texts(data, data.tokenizer_train_chars), vocab_size=data.vocab_size,
                            min_frequency=2, special_tokens=SPECIALS, show_progress=False)
    tok = bpe._tokenizer
    _set_roberta_processing(tok)
    return tok


def canonical_ids(vocab: dict[str, int]) -> dict[str, int]:
    """The same tokens with ids in a fixed order: the specials first, then the rest sorted by their text.
    WordPiece splits text by longest match over the vocabulary, which ids do not enter."""
    rest = sorted(t for t in vocab if t not in SPECIALS)
    return {t: i for i, t in enumerate(SPECIALS + rest)}


def _wordpiece(data: DataSpec):
    """BERT's cased WordPiece over BERT's pre-tokenisation, with RoBERTa's special tokens and pair layout,
    so the input format and everything downstream stay the same.

    The WordPiece trainer of `tokenizers` is not deterministic on its own: it numbers the continuation alphabet
    ("##e", "##s", ...) in the order words come out of a hash map, which differs from process to process, and
    breaks ties between equally frequent merges by those numbers, so two trainings on the same text could learn
    different pieces (and did, on small corpora; on the studies' corpus the same pieces, numbered differently).
    The fix: a first training finds the continuation alphabet, a second one starts from it in sorted order
    (passed ahead of the alphabet, as the trainer's special tokens are, so their ids no longer depend on the
    hash map), and the final vocabulary is renumbered canonically."""
    def bert(vocab=None):
        tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                    strip_accents=False, lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        return tok

    def train(first: list[str]):
        tok = bert()
        trainer = trainers.WordPieceTrainer(vocab_size=data.vocab_size, min_frequency=2,
                                            special_tokens=SPECIALS + first, show_progress=False)
        tok.train_from_iterator(_train_texts(data, data.tokenizer_train_chars), trainer=trainer)
        return tok

    continuation = sorted(t for t in train([]).get_vocab() if t.startswith("##") and len(t) == 3)
    vocab = canonical_ids(train(continuation).get_vocab())
    tok = bert(vocab)
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", BOS), ("</s>", EOS)])
    return tok


TRAINERS = {"byte_bpe": _byte_bpe, "wordpiece": _wordpiece}


def train_tokenizer(data: DataSpec, folder: Path, identity: dict[str, Any]) -> None:
    """Train data.tokenizer on the corpus and write it to folder; tokenizer.json last (the entry is complete)."""
    from transformers import PreTrainedTokenizerFast  # lazy: transformers takes ~1.3 s to import

    tok = TRAINERS[data.tokenizer](data)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, f"special token {s} got id {tok.token_to_id(s)}"
    folder.mkdir(parents=True, exist_ok=True)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )
    # built aside under a dot-name and swapped in: a kill mid-write never leaves a half-written hf/
    tmp = folder / ".hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    hf.save_pretrained(str(tmp))
    swap_in(tmp, folder / "hf")
    atomic_write_json(folder / "identity.json", identity)
    # last: its presence means the cache entry is complete
    atomic_write_text(folder / "tokenizer.json", tok.to_str(pretty=True))


def token_char_lengths(tok) -> np.ndarray:
    """[vocab] non-space characters each token stands for (specials: 0): the denominator of bits per character.

    Counting non-space characters makes the figure comparable across tokenizers, whichever of them
    carries the space (byte-level BPE puts it in the token, WordPiece between words). A WordPiece
    continuation piece ("##ing") stands for its text without the prefix: decoding it alone keeps the "##"
    (the decoder strips it only after another token), which had counted 18% too many characters on the
    held-out blocks (bits per character 15% too low)."""
    prefix = tok.model.continuing_subword_prefix if isinstance(tok.model, models.WordPiece) else None
    out = np.zeros(tok.get_vocab_size(), dtype=np.int64)
    for i in range(NUM_SPECIAL, len(out)):
        if prefix is None:
            text = tok.decode([i])
        else:
            text = tok.id_to_token(i)
            text = text[len(prefix):] if text.startswith(prefix) else text
        out[i] = len(text.replace(" ", ""))
    return out
