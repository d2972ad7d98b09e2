"""One pretraining cell: packed corpus + masking -> RoBERTa checkpoint, loss curve, held-out perplexity.

Input: a PretrainCell (its Config and seed), the prepared corpus folder, the tokenizer.
Output in the run directory: checkpoint/ (save_pretrained, safetensors; loads with
AutoModelForMaskedLM), loss.jsonl (one point per log interval), metrics.json.

The data order is a pure function of (seed, epoch): each epoch is a fixed permutation of the
blocks, and step s takes samples s*B .. (s+1)*B-1 of that endless stream. Masks are a
pure function of (seed, mask epoch, block index) (ablate.data.masking).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ablate.data.corpus import Packed, load_corpus
from ablate.data.masking import mask_epoch, mask_tokens
from ablate.data.tokenizer import PAD
from ablate.errors import CellFailed
from ablate.expand import PretrainCell
from ablate.engine import Trainer, autocast, masked_lm_loss
from ablate.model import count_params
from ablate.spec import Config, RuntimeSpec
from ablate.store import RunDir

HELDOUT_SEED = 20190726  # one fixed set of held-out masks, shared by every variant
Progress = Callable[[int, int, Optional[float]], None]  # (step, total, loss)


def pick_device(runtime: RuntimeSpec) -> torch.device:
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(runtime: RuntimeSpec) -> None:
    torch.set_num_threads(runtime.threads or os.cpu_count() or 1)


@dataclass
class BatchStream:
    """Step -> (block indices, mask epoch) over an endless stream of epochs."""

    n_blocks: int
    batch_size: int
    seed: int
    masking: str
    static_copies: int

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.n_blocks)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Block indices of this step's batch, and each one's data epoch."""
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs = pos // self.n_blocks
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[pos[sel] % self.n_blocks]
        return out, epochs


def make_batch(data: Packed, idx: np.ndarray, epochs: np.ndarray, seed: int, cfg: Config, vocab: int):
    """Blocks at idx, masked for their mask epochs -> (input_ids, attention_mask, labels) tensors."""
    p = cfg.pretrain
    blocks = np.asarray(data.blocks[np.sort(idx)])[np.argsort(np.argsort(idx))]  # mmap reads in order
    width = int(data.lengths[idx].max())
    blocks = blocks[:, :width]
    inputs = np.empty(blocks.shape, dtype=np.int64)
    labels = np.empty(blocks.shape, dtype=np.int64)
    for e in np.unique(epochs):  # usually one epoch per batch
        sel = epochs == e
        me = mask_epoch(p.masking, int(e), p.static_copies)
        inputs[sel], labels[sel] = mask_tokens(
            blocks[sel], idx[sel], seed, me, vocab, p.mask_prob, p.mask_token_frac, p.random_token_frac
        )
    attn = (blocks != PAD).astype(np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(attn), torch.from_numpy(labels)


@torch.no_grad()
def heldout_eval(model, heldout: Packed, unigram: np.ndarray, cfg: Config, vocab: int, device, batch: int) -> dict:
    """MLM loss on the held-out blocks with fixed masks, and the unigram model's loss on the same targets."""
    model.eval()
    total, count, uni_total = 0.0, 0, 0.0
    logp_uni = np.log((unigram + 1.0) / (unigram.sum() + len(unigram)))  # add-one smoothed unigram
    p = cfg.pretrain
    for start in range(0, len(heldout.lengths), batch):
        idx = np.arange(start, min(start + batch, len(heldout.lengths)))
        blocks = np.asarray(heldout.blocks[idx])
        inputs, labels = mask_tokens(blocks, idx, HELDOUT_SEED, 0, vocab, p.mask_prob, p.mask_token_frac,
                                     p.random_token_frac)
        attn = (blocks != PAD).astype(np.int64)
        with autocast(device):
            loss, n = masked_lm_loss(model, torch.from_numpy(inputs).to(device), torch.from_numpy(attn).to(device),
                                     torch.from_numpy(labels).to(device), reduction="sum")
        total += float(loss)
        count += n
        uni_total += float(-logp_uni[labels[labels != -100]].sum())
    model.train()
    return {
        "heldout_loss": total / count,
        "heldout_ppl": math.exp(total / count),
        "unigram_ppl": math.exp(uni_total / count),
        "heldout_masked_tokens": count,
    }


def flops_estimate(cfg: Config, params: dict, tokens: int, masked: int, vocab: int) -> float:
    """Training FLOPs: 6 x (non-embedding params) per token, attention scores, the LM head on masked tokens."""
    m = cfg.model
    attn = 6 * 2 * m.num_layers * cfg.data.max_len * m.hidden_size  # QK^T and AV, fwd+bwd, per token
    head = 6 * (m.hidden_size * m.hidden_size + m.hidden_size * vocab)  # dense + decoder, per masked token
    return float(6 * params["non_embedding_params"] * tokens + attn * tokens + head * masked)


def pretrain(cell: PretrainCell, run: RunDir, corpus_dir: Path, vocab: int, runtime: RuntimeSpec,
             progress: Optional[Progress] = None) -> dict:
    """Train one cell to the end and write its checkpoint and metrics; return the metrics."""
    cfg, p = cell.config, cell.config.pretrain
    set_threads(runtime)
    device = pick_device(runtime)
    train, heldout = load_corpus(corpus_dir, "train"), load_corpus(corpus_dir, "heldout")
    unigram = np.load(corpus_dir / "unigram.npy")
    trainer = Trainer(cfg, vocab, device, cell.seed, compile=runtime.compile)
    stream = BatchStream(len(train.lengths), p.batch_size, cell.seed, p.masking, p.static_copies)
    curve_path = run.path / "loss.jsonl"
    curve_path.unlink(missing_ok=True)
    tokens = masked_total = 0
    window, window_n, last_loss = 0.0, 0, float("nan")
    t0 = time.perf_counter()
    for step in range(p.steps):
        idx, epochs = stream.indices(step)
        inputs, attn, labels = (t.to(device) for t in make_batch(train, idx, epochs, cell.seed, cfg, vocab))
        loss, n_masked = trainer.step(inputs, attn, labels)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise CellFailed(f"diverged at step {step}: training loss is {loss_value}")
        tokens += int(attn.sum())
        masked_total += n_masked
        window += loss_value
        window_n += 1
        if (step + 1) % runtime.log_every == 0 or step + 1 == p.steps:
            point = {"step": step + 1, "loss": window / window_n, "lr": trainer.lr(), "tokens": tokens,
                     "epoch": float((step + 1) * p.batch_size / len(train.lengths))}
            with open(curve_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(point) + "\n")
            if progress:
                progress(step + 1, p.steps, point["loss"])
            last_loss = point["loss"]
            window, window_n = 0.0, 0
    model = trainer.model
    wall = time.perf_counter() - t0
    ev = heldout_eval(model, heldout, unigram, cfg, vocab, device, runtime.eval_batch_size)
    model.save_pretrained(str(run.checkpoint), safe_serialization=True)
    params = count_params(model)
    return {
        **ev,
        **params,
        "steps": p.steps,
        "tokens_seen": tokens,
        "tokens_per_step": tokens / p.steps,
        "sequences_per_step": p.batch_size,
        "epochs": p.steps * p.batch_size / len(train.lengths),
        "flops": flops_estimate(cfg, params, tokens, masked_total, vocab),
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "final_train_loss": last_loss,
        "device": device.type,
        "threads": torch.get_num_threads(),
    }
