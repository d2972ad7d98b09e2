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
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ablate.data.corpus import load_corpus
from ablate.data.formats import Packed, token_types
from ablate.data.masking import mask_epoch, mask_tokens
from ablate.data.tokenizer import PAD
from ablate.errors import CellFailed
from ablate.expand import PretrainCell
from ablate.engine import Batch, Trainer, autocast, encoder_forward, masked_lm_loss_from_hidden
from ablate.model import count_params
from ablate.planning import training_flops
from ablate.spec import Config, RuntimeSpec
from ablate import resume
from ablate.store import RunDir, atomic_write_text

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


def _rows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """arr[idx] reading a memory map in ascending order (then restoring idx's order)."""
    order = np.argsort(idx, kind="stable")
    out = np.asarray(arr[idx[order]])
    return out[np.argsort(order, kind="stable")]


def make_batch(data: Packed, idx: np.ndarray, epochs: np.ndarray, seed: int, cfg: Config, vocab: int,
               mask_epochs: Optional[np.ndarray] = None) -> Batch:
    """Blocks at idx, masked for their mask epochs (pure functions of seed, epoch and index) -> Batch."""
    p = cfg.pretrain
    width = int(data.lengths[idx].max())
    blocks = _rows(data.blocks, idx)[:, :width]
    inputs = np.empty(blocks.shape, dtype=np.int64)
    labels = np.empty(blocks.shape, dtype=np.int64)
    if mask_epochs is None:
        mask_epochs = np.array([mask_epoch(p.masking, int(e), p.static_copies) for e in epochs])
    for me in np.unique(mask_epochs):  # usually one epoch per batch
        sel = mask_epochs == me
        inputs[sel], labels[sel] = mask_tokens(
            blocks[sel], idx[sel], seed, int(me), vocab, p.mask_prob, p.mask_token_frac, p.random_token_frac
        )
    batch = Batch(torch.from_numpy(inputs), torch.from_numpy((blocks != PAD).astype(np.int64)),
                  torch.from_numpy(labels))
    if data.is_pair:
        batch.token_type_ids = torch.from_numpy(token_types(blocks, data.b_start[idx]))
        batch.nsp_labels = torch.from_numpy(data.nsp[idx].astype(np.int64))
    return batch


@torch.no_grad()
def heldout_eval(trainer: Trainer, heldout: Packed, unigram: np.ndarray, cfg: Config, vocab: int,
                 batch_size: int, token_chars: Optional[np.ndarray] = None) -> dict:
    """MLM loss on the held-out blocks with one fixed set of masks (the same for every variant), the
    unigram model's loss on the same targets, NSP accuracy on held-out pairs when trained with NSP, and bits
    per (non-space) character of the masked tokens, which unlike perplexity compares across tokenizers."""
    model, device = trainer.model, trainer.device
    model.eval()
    if trainer.nsp_head is not None:
        trainer.nsp_head.eval()
    total, count, uni_total, nsp_right, nsp_n, chars = 0.0, 0, 0.0, 0, 0, 0
    logp_uni = np.log((unigram + 1.0) / (unigram.sum() + len(unigram)))  # add-one smoothed unigram
    n = len(heldout.lengths)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        batch = make_batch(heldout, idx, np.zeros(len(idx)), HELDOUT_SEED, cfg, vocab, mask_epochs=np.zeros(len(idx)))
        labels = batch.labels.numpy()
        with autocast(device):
            hidden = encoder_forward(model, *(t.to(device) if t is not None else None for t in
                                              (batch.input_ids, batch.attention_mask)), None,
                                     None if batch.token_type_ids is None else batch.token_type_ids.to(device))
            per_token, m = masked_lm_loss_from_hidden(model, hidden, batch.labels.to(device), "none")
            loss = per_token.sum()
            if trainer.nsp_head is not None and batch.nsp_labels is not None:
                pred = trainer.nsp_head(hidden[:, 0]).argmax(-1).cpu()
                nsp_right += int((pred == batch.nsp_labels).sum())
                nsp_n += len(idx)
        total += float(loss)
        count += m
        targets = labels[labels != -100]
        uni_total += float(-logp_uni[targets].sum())
        if token_chars is not None:
            chars += int(token_chars[targets].sum())
    model.train()
    out = {"heldout_loss": total / count, "heldout_ppl": math.exp(total / count),
           "unigram_ppl": math.exp(uni_total / count), "heldout_masked_tokens": count}
    if nsp_n:
        out["heldout_nsp_accuracy"] = nsp_right / nsp_n
    if chars:
        out["heldout_bpc"] = bits_per_character(total, chars)
    return out


def bits_per_character(nats: float, chars: int) -> float:
    """Total cross-entropy in nats over some tokens -> bits per character of the text they spell."""
    return nats / math.log(2) / chars


def pretrain(cell: PretrainCell, run: RunDir, corpus_dir: Path, vocab: int, runtime: RuntimeSpec,
             progress: Optional[Progress] = None, batch_size: Optional[int] = None,
             token_chars: Optional[np.ndarray] = None) -> dict:
    """Train one cell to the end and write its checkpoint and metrics; return the metrics.

    batch_size: sequences per step when the input format grows its batch to match a reference
    format's tokens per step (ablate.data.corpus.effective_batch_size); default the spec's.
    """
    cfg, p = cell.config, cell.config.pretrain
    batch_size = batch_size or p.total_batch
    steps = p.total_steps
    set_threads(runtime)
    device = pick_device(runtime)
    train, heldout = load_corpus(corpus_dir, "train"), load_corpus(corpus_dir, "heldout")
    unigram = np.load(corpus_dir / "unigram.npy")
    trainer = Trainer(cfg, vocab, device, cell.seed, compile=runtime.compile)
    stream = BatchStream(len(train.lengths), batch_size, cell.seed, p.masking, p.static_copies)
    curve_path = run.path / "loss.jsonl"
    c = {"step": 0, "tokens": 0, "masked": 0, "window": {}, "window_n": 0, "last_loss": float("nan"), "wall": 0.0}
    checkpointing = bool(runtime.checkpoint_every or runtime.checkpoint_minutes)
    restored = resume.load(trainer, run.path / "resume") if checkpointing else None
    if restored is not None:  # seek: batches are a function of the step, nothing is replayed
        c = restored
        _truncate_curve(curve_path, c["step"])
    else:
        curve_path.unlink(missing_ok=True)
    t0 = time.perf_counter() - c["wall"]
    last_save = time.perf_counter()
    for step in range(c["step"], steps):
        idx, epochs = stream.indices(step)
        batch = make_batch(train, idx, epochs, cell.seed, cfg, vocab).to(device)
        out = trainer.step(batch)
        loss_value = out["loss"].item()
        if not math.isfinite(loss_value):
            raise CellFailed(f"diverged at step {step}: training loss is {loss_value}")
        c["tokens"] += int(batch.attention_mask.sum())
        c["masked"] += out["masked"]
        for k in ("loss", "mlm", "nsp"):
            if k in out:
                c["window"][k] = c["window"].get(k, 0.0) + float(out[k])
        c["window_n"] += 1
        if (step + 1) % runtime.log_every == 0 or step + 1 == steps:
            point = {"step": step + 1, **{k: v / c["window_n"] for k, v in c["window"].items()}, "lr": trainer.lr(),
                     "tokens": c["tokens"], "epoch": float((step + 1) * batch_size / len(train.lengths))}
            with open(curve_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(point) + "\n")
            if progress:
                progress(step + 1, steps, point["loss"])
            c["last_loss"] = point["loss"]
            c["window"], c["window_n"] = {}, 0
        by_steps = runtime.checkpoint_every and (step + 1) % runtime.checkpoint_every == 0
        by_time = runtime.checkpoint_minutes and time.perf_counter() - last_save >= 60 * runtime.checkpoint_minutes
        if (by_steps or by_time) and step + 1 < steps:
            c["step"], c["wall"] = step + 1, time.perf_counter() - t0
            resume.save(trainer, run.path / "resume", c)
            last_save = time.perf_counter()
    tokens, masked_total, last_loss = c["tokens"], c["masked"], c["last_loss"]
    wall = time.perf_counter() - t0
    ev = heldout_eval(trainer, heldout, unigram, cfg, vocab, runtime.eval_batch_size, token_chars)
    save_checkpoint(trainer, run.checkpoint)
    shutil.rmtree(run.path / "resume", ignore_errors=True)  # the final checkpoint supersedes it
    params = count_params(trainer.model)
    return {
        **ev,
        **params,
        "steps": steps,
        "tokens_seen": tokens,
        "tokens_per_step": tokens / steps,
        "sequences_per_step": batch_size,
        "epochs": steps * batch_size / len(train.lengths),
        "peak_lr": p.peak_lr,
        "peak_memory_mb": peak_memory_mb(device),
        "flops": training_flops(cfg, tokens, masked_total, vocab),
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "final_train_loss": last_loss,
        "device": device.type,
        "threads": torch.get_num_threads(),
    }


def _truncate_curve(path: Path, step: int) -> None:
    """Drop loss-curve points written after the checkpoint being resumed (and any line cut by a crash)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    atomic_write_text(path, "".join(x + "\n" for x in keep))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA's allocator peak on GPU, else the resident-set high-water mark."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def save_checkpoint(trainer: Trainer, folder: Path) -> None:
    """save_pretrained (safetensors) for the encoder + MLM head; the NSP head beside it."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    trainer.model.save_pretrained(str(folder), safe_serialization=True)
    if trainer.nsp_head is not None:
        from safetensors.torch import save_file

        save_file(trainer.nsp_head.state_dict(), str(folder / "nsp_head.safetensors"))
