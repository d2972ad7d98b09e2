"""One pretraining cell: packed corpus + masking -> RoBERTa checkpoint, loss curve, held-out perplexity.

Input: a PretrainCell (its Config and seed), the prepared corpus folder, the vocabulary size.
Output in the run directory: checkpoint/ (save_pretrained, safetensors; loads with
AutoModelForMaskedLM), loss.jsonl (one point per log interval), metrics.json (written by the runner).

Batches are pure functions of (seed, step) (ablate.data.batches), so a run resumed from a mid-run
checkpoint (ablate.train.checkpoint) seeks to its step and continues bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ablate.data.batches import BatchStream, make_batch
from ablate.data.corpus import load_corpus
from ablate.data.formats import Packed
from ablate.errors import CellFailed
from ablate.model import count_params, encoder_forward, masked_lm_loss_from_hidden
from ablate.store import RunDir, atomic_write_text, read_json
from ablate.study.cells import PretrainCell
from ablate.study.spec import Config, RuntimeSpec
from ablate.train import checkpoint
from ablate.train.trainer import Trainer, autocast, pick_device, set_threads

HELDOUT_SEED = 20190726  # one fixed set of held-out masks, shared by every variant
Progress = Callable[[int, int, Optional[float]], None]  # (step, total, loss)


@dataclass(frozen=True)
class ShortPhase:
    """The short blocks of a length schedule (pretrain.short_len): their packed corpus folder and the sequences per
    step that give the same tokens per step as the full-length batch."""

    corpus_dir: Path
    batch_size: int


@dataclass
class LoopState:
    """What the training loop carries from step to step; saved with every mid-run checkpoint (as a dict)."""

    step: int = 0  # optimizer steps done
    tokens: int = 0  # real (non-pad) tokens trained on
    masked: int = 0  # masked tokens, for the FLOP count (the LM head runs on these alone)
    window: dict[str, float] = field(default_factory=dict)  # loss sums since the last loss-curve point
    window_n: int = 0  # steps in that window
    last_loss: float = float("nan")  # the last loss-curve point's training loss
    wall: float = 0.0  # training seconds of earlier attempts (a resumed run adds up)

    def add(self, out: dict, tokens: int) -> None:
        """Count one step's output (ablate.model.pretrain_losses) into the totals and the current window."""
        self.tokens += tokens
        self.masked += out["masked"]
        for k in ("loss", "mlm", "nsp"):
            if k in out:
                self.window[k] = self.window.get(k, 0.0) + float(out[k])
        self.window_n += 1


def pretrain(cell: PretrainCell, run: RunDir, corpus_dir: Path, vocab: int, runtime: RuntimeSpec,
             progress: Optional[Progress] = None, batch_size: Optional[int] = None,
             token_chars: Optional[np.ndarray] = None, tokenizer=None, short: Optional[ShortPhase] = None,
             shared_heldout: Optional[tuple[Path, Config]] = None) -> dict:
    """Train one cell to the end and write its checkpoint; return its metrics.

    batch_size: sequences per step when the input format grows its batch to match a reference
    format's tokens per step (ablate.run.prepare.batch_size_for); default the spec's. tokenizer: the cell's
    `tokenizers.Tokenizer`, saved in the checkpoint beside the weights (with a model card).
    short: the short blocks the first pretrain.short_steps steps train on (a length schedule); needed exactly when
    the spec sets short_len. shared_heldout: (the folder, the config) of the FULL-SENTENCES blocks of the same
    text, when cfg packs another way: the model is also scored on their held-out blocks (`shared_heldout_ppl`), so
    input formats compare like for like; a FULL-SENTENCES cell's own held-out score is that score.
    """
    cfg, p = cell.config, cell.config.pretrain
    batch_size = batch_size or p.total_batch
    steps = p.total_steps
    set_threads(runtime)
    device = pick_device(runtime)
    train, heldout = load_corpus(corpus_dir, "train"), load_corpus(corpus_dir, "heldout")
    trainer = Trainer(cfg, vocab, device, cell.seed, compile=runtime.compile)
    stream = BatchStream(len(train.lengths), batch_size, cell.seed, p.masking, p.static_copies)
    if (short is None) != (p.short_steps == 0):
        raise ValueError("pretrain needs the short blocks exactly when the spec has a length schedule")
    short_train = None if short is None else load_corpus(short.corpus_dir, "train")
    short_stream = None if short is None else BatchStream(len(short_train.lengths), short.batch_size, cell.seed,
                                                          p.masking, p.static_copies)
    curve = run.path / "loss.jsonl"
    state = _resume_or_start(trainer, run, curve, runtime)
    t0 = time.perf_counter() - state.wall
    last_save = time.perf_counter()
    for step in range(state.step, steps):
        if step < p.short_steps:  # the length schedule's short phase: its own blocks and stream
            idx, epochs = short_stream.indices(step)
            batch = make_batch(short_train, idx, epochs, cell.seed, cfg, vocab).to(device)
        else:
            idx, epochs = stream.indices(step - p.short_steps)
            batch = make_batch(train, idx, epochs, cell.seed, cfg, vocab).to(device)
        out = trainer.step(batch)
        loss = out["loss"].item()
        if not math.isfinite(loss):
            raise CellFailed(f"diverged at step {step}: training loss is {loss}")
        state.add(out, int(batch.attention_mask.sum()))
        if (step + 1) % runtime.log_every == 0 or step + 1 == steps:
            _log_point(state, step + 1, trainer.lr(), _epoch(step + 1, p.short_steps, batch_size, len(train.lengths),
                                                          short_stream), curve)
            if progress:
                progress(step + 1, steps, state.last_loss)
        if _checkpoint_due(runtime, step + 1, time.perf_counter() - last_save) and step + 1 < steps:
            state.step, state.wall = step + 1, time.perf_counter() - t0
            checkpoint.save(trainer, run.path / "resume", asdict(state))
            last_save = time.perf_counter()
    wall = time.perf_counter() - t0
    unigram = np.load(corpus_dir / "unigram.npy")
    ev = heldout_eval(trainer, heldout, unigram, cfg, vocab, runtime.eval_batch_size, token_chars)
    if shared_heldout is None:
        shared = ev
    else:
        folder, shared_cfg = shared_heldout
        shared = heldout_eval(trainer, load_corpus(folder, "heldout"), np.load(folder / "unigram.npy"), shared_cfg,
                              vocab, runtime.eval_batch_size)
    ev.update(shared_heldout_loss=shared["heldout_loss"], shared_heldout_ppl=shared["heldout_ppl"])
    spec = read_json(run.path / "spec.json") or {}
    card = checkpoint.model_card(run.path.parents[1].name, cell.variant, cell.seed, cell.key, cfg, ev,
                                 spec.get("labels", {}).get("git_commit"))
    checkpoint.save_final(trainer, run.checkpoint, tokenizer, cfg.data.max_len, card)
    checkpoint.discard(run.path / "resume")  # the final checkpoint supersedes it
    return {
        **ev,
        **count_params(trainer.model),
        "steps": steps,
        "tokens_seen": state.tokens,
        "tokens_per_step": state.tokens / steps,
        "sequences_per_step": batch_size,
        "epochs": _epoch(steps, p.short_steps, batch_size, len(train.lengths), short_stream),
        "peak_lr": p.peak_lr,
        "peak_memory_mb": peak_memory_mb(device),
        "flops": cfg.training_flops(state.tokens, state.masked, vocab),
        "wall_s": wall,
        "tokens_per_s": state.tokens / wall,
        "final_train_loss": state.last_loss,
        "device": device.type,
        "threads": torch.get_num_threads(),
    }


def _epoch(steps_done: int, short_steps: int, batch_size: int, n_blocks: int,
           short_stream: Optional[BatchStream]) -> float:
    """Passes over the training text so far: blocks read / blocks in the corpus, the short phase's counted in its
    own (shorter, more numerous) blocks."""
    if short_stream is None:
        return steps_done * batch_size / n_blocks
    in_short = min(steps_done, short_steps)
    return (in_short * short_stream.batch_size / short_stream.n_blocks
            + max(0, steps_done - short_steps) * batch_size / n_blocks)


def _resume_or_start(trainer: Trainer, run: RunDir, curve: Path, runtime: RuntimeSpec) -> LoopState:
    """The loop state of the last mid-run checkpoint, restored into the trainer (its loss curve cut back to it);
    else a fresh state and a fresh curve. Batches are a function of the step: a resumed run seeks, never replays."""
    checkpointing = bool(runtime.checkpoint_every or runtime.checkpoint_minutes)
    restored = checkpoint.load(trainer, run.path / "resume") if checkpointing else None
    if restored is None:
        curve.unlink(missing_ok=True)
        return LoopState()
    state = LoopState(**restored)
    _truncate_curve(curve, state.step)
    return state


def _log_point(state: LoopState, step: int, lr: float, epoch: float, curve: Path) -> None:
    """Append the window's mean losses to the loss curve and start a new window."""
    point = {"step": step, **{k: v / state.window_n for k, v in state.window.items()}, "lr": lr,
             "tokens": state.tokens, "epoch": float(epoch)}
    with open(curve, "a", encoding="utf-8") as f:
        f.write(json.dumps(point) + "\n")
    state.last_loss = point["loss"]
    state.window, state.window_n = {}, 0


def _checkpoint_due(runtime: RuntimeSpec, steps_done: int, since_last_s: float) -> bool:
    """A mid-run checkpoint every checkpoint_every steps, and whenever checkpoint_minutes have passed."""
    by_steps = runtime.checkpoint_every and steps_done % runtime.checkpoint_every == 0
    by_time = runtime.checkpoint_minutes and since_last_s >= 60 * runtime.checkpoint_minutes
    return bool(by_steps or by_time)


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
    import resource  # POSIX only: imported where it is used, so training still imports on other systems

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
