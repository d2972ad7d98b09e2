"""A zero-shot task on one model: BLiMP's minimal pairs scored by pseudo-log-likelihood, no training.

Input: a FinetuneCell of a zero-shot task, the pretraining checkpoint (None: a randomly initialised model of the
same shape, one per seed), the tokenizer, the pretraining corpus's token counts (the unigram baseline).
Output: the metrics record: accuracy overall, per phenomenon and per paradigm, the number of ties, and the same
for the unigram baseline, which scores each sentence by its tokens' corpus frequencies alone.

Pseudo-log-likelihood (Salazar et al. 2020): the sum over a sentence's tokens of log p(token | the sentence with
that token masked). PLL-word-l2r (Kauf & Ivanova 2023, the default) also masks the later tokens of the same word,
so a word split into several tokens is not scored from its own remaining pieces. Sentences are tokenized as the
pretraining text is (leading space, <s> ... </s>). Fast: the masked copies of every sentence of one length go
through the model together, and the LM head runs only at the masked position of each copy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from transformers import AutoModelForMaskedLM
from transformers.utils import logging as hf_logging

from ablate.data.vocab import MASK
from ablate.metrics.blimp import pair_accuracy
from ablate.model import build_mlm, encoder_forward
from ablate.study.cells import FinetuneCell
from ablate.study.spec import RuntimeSpec
from ablate.tasks import TASKS
from ablate.tasks.blimp import PARADIGM, PHENOMENON, PAIR_ID, pair_subset
from ablate.tasks.data import load_split
from ablate.train.trainer import autocast, pick_device, set_threads

COPIES_PER_FORWARD = 2048  # masked copies in one forward pass (memory grows with copies x length)


def masked_copies(ids: Sequence[int], words: Sequence[Optional[int]], word_l2r: bool) -> tuple[np.ndarray, np.ndarray]:
    """One copy of the sentence per scored token -> (copies [T, L], scored positions [T]). Special tokens (word
    None) are never scored. word_l2r: a copy also masks the later tokens of the scored token's word."""
    ids = np.asarray(ids, dtype=np.int64)
    scored = [i for i, w in enumerate(words) if w is not None]
    copies = np.repeat(ids[None, :], len(scored), axis=0)
    for row, i in enumerate(scored):
        copies[row, i] = MASK
        if word_l2r:
            for j in range(i + 1, len(ids)):
                if words[j] != words[i]:
                    break
                copies[row, j] = MASK
    return copies, np.asarray(scored, dtype=np.int64)


@torch.no_grad()
def pseudo_log_likelihoods(mlm, encodings: Sequence[tuple[Sequence[int], Sequence[Optional[int]]]], device,
                           word_l2r: bool = True, copies_per_forward: int = COPIES_PER_FORWARD) -> np.ndarray:
    """[(token ids, word ids)] per sentence -> PLL per sentence (natural log). Sentences of one length are
    scored together: their copies stacked, in chunks of copies_per_forward, each through one forward pass."""
    mlm.eval()
    out = np.zeros(len(encodings))
    by_length: dict[int, list[int]] = {}
    for s, (ids, _) in enumerate(encodings):
        by_length.setdefault(len(ids), []).append(s)
    for sentences in by_length.values():
        parts = [masked_copies(*encodings[s], word_l2r) for s in sentences]
        copies = np.concatenate([c for c, _ in parts])  # [C, L]
        positions = np.concatenate([p for _, p in parts])  # [C]
        owner = np.repeat(np.asarray(sentences), [len(p) for _, p in parts])  # [C] sentence of each copy
        targets = np.concatenate([np.asarray(encodings[s][0])[p] for s, (_, p) in zip(sentences, parts)])
        for start in range(0, len(copies), copies_per_forward):
            sl = slice(start, start + copies_per_forward)
            x = torch.from_numpy(copies[sl]).to(device)
            pos = torch.from_numpy(positions[sl]).to(device)
            with autocast(device):
                hidden = encoder_forward(mlm, x, None, None)  # [c, L, H]; no padding: one length
                rows = hidden[torch.arange(len(x), device=device), pos]  # [c, H] the masked positions only
                logp = torch.log_softmax(mlm.lm_head(rows).float(), dim=-1)  # [c, V]
            got = logp.gather(1, torch.from_numpy(targets[sl]).to(device)[:, None])[:, 0].double().cpu().numpy()
            np.add.at(out, owner[sl], got)
    return out


def unigram_log_likelihoods(encodings: Sequence[tuple[Sequence[int], Sequence[Optional[int]]]],
                            counts: np.ndarray) -> np.ndarray:
    """Each sentence's tokens scored by their add-one smoothed corpus frequency alone (specials left out): the
    baseline a model must beat to show it knows more than word frequency."""
    logp = np.log((counts + 1.0) / (counts.sum() + len(counts)))
    return np.array([sum(float(logp[t]) for t, w in zip(ids, words) if w is not None) for ids, words in encodings])


def _grouped(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """[(good, bad)] scores and a label per pair -> accuracy per label."""
    return {str(k): pair_accuracy(scores[labels == k])["accuracy"] for k in sorted(set(labels.tolist()))}


def load_model(checkpoint: Optional[Path], cell: FinetuneCell, vocab: int):
    """The checkpoint's masked LM, or (None) a fresh one of the same shape seeded by the cell's seed."""
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if checkpoint is None:
        torch.manual_seed(cell.seed)
        return build_mlm(cell.config.model, cell.config.data, vocab)
    return AutoModelForMaskedLM.from_pretrained(str(checkpoint))


def score(cell: FinetuneCell, checkpoint: Optional[Path], tok, unigram_counts: np.ndarray,
          runtime: RuntimeSpec) -> dict:
    """Score every kept pair of the zero-shot task with the model and with the unigram baseline; the metrics."""
    ft = cell.config.finetune
    task = TASKS.get(cell.task)
    set_threads(runtime)
    device = pick_device(runtime)
    ds = load_split(task, task.eval_split)
    keep = pair_subset(np.asarray(ds[PARADIGM]), np.asarray(ds[PAIR_ID]), ft.pairs_per_paradigm)
    ds = ds.select(keep)
    sentences = [s for pair in zip(ds["sentence_good"], ds["sentence_bad"]) for s in pair]  # good, bad, good, ...
    encodings = [(e.ids, e.word_ids) for e in tok.encode_batch(sentences)]
    longest = max(len(ids) for ids, _ in encodings)
    if longest > cell.config.data.max_len:
        raise ValueError(f"a {task.name} sentence has {longest} tokens, more than max_len {cell.config.data.max_len}")
    model = load_model(checkpoint, cell, tok.get_vocab_size()).to(device)
    t0 = time.perf_counter()
    pll = pseudo_log_likelihoods(model, encodings, device, word_l2r=ft.pll == "word_l2r").reshape(-1, 2)
    uni = unigram_log_likelihoods(encodings, unigram_counts).reshape(-1, 2)
    ours, base = pair_accuracy(pll), pair_accuracy(uni)
    phenomena, paradigms = np.asarray(ds[PHENOMENON]), np.asarray(ds[PARADIGM])
    return {
        "metrics": {"blimp_accuracy": ours["accuracy"], "blimp_unigram_accuracy": base["accuracy"]},
        "task": task.name,
        "pll": ft.pll,
        "eval_split": task.eval_split,
        "eval_examples": len(ds),
        "ties": int(ours["ties"]),
        "unigram_ties": int(base["ties"]),
        "by_phenomenon": _grouped(pll, phenomena),
        "unigram_by_phenomenon": _grouped(uni, phenomena),
        "by_paradigm": _grouped(pll, paradigms),
        "wall_s": time.perf_counter() - t0,
    }
