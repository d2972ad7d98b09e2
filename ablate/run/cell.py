"""One cell into the store: its stages in order (tokenizer -> corpus -> pretrain, or checkpoint -> finetune),
its spec.json first, its metrics.json (or error.json) last, a line in its log.txt when an attempt starts and ends.

A UserError, Ctrl-C or a full disk raises (the study stops); any other failure is the cell's, recorded, and the
study goes on. Runs wherever an executor runs it (this process, a --jobs worker, a Ray task).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import subprocess
import time
import traceback
from pathlib import Path
from typing import Union

import numpy as np
import torch
import transformers

from ablate.data.tokenizer import token_char_lengths
from ablate.errors import CellFailed, UserError
from ablate.run.jobs import CellContext, Job, Outcome, cell_identity, cell_labels
from ablate.run.prepare import batch_size_for, corpus_for, tokenizer_for
from ablate.run.progress import Reporter
from ablate.store import RunDir, Store, read_json
from ablate.study.cells import FinetuneCell, PretrainCell
from ablate.tasks import TASKS
from ablate.train import checkpoint, zeroshot
from ablate.train.finetune import finetune
from ablate.train.pretrain import ShortPhase, pretrain


def provenance() -> dict:
    """Git commit, library versions and hardware, recorded with every run."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def run_cell(job: Job, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    """Run one cell into `store`, recording its metrics or its error there. A UserError, Ctrl-C or a full
    disk raises (the study stops); any other failure is the cell's, recorded, and the study goes on."""
    ctx = job.context(ctx)
    if job.kind == "pretrain":
        return _run_pretrain(job.cell, ctx, store, reporter)
    return _run_finetune(job.cell, ctx, store, reporter)


def skip_finetune(cell: FinetuneCell, ctx: CellContext, store: Store) -> None:
    """Record that a fine-tuning run cannot start because its pretraining cell failed."""
    record_failure(cell, ctx, store, "skipped: its pretraining cell failed", "skipped")


def record_failure(cell: Union[PretrainCell, FinetuneCell], ctx: CellContext, store: Store, message: str,
                   kind: str = "error") -> None:
    """Record a cell's failure that happened outside it (skipped, or its worker died) as the cell would."""
    run = _begin(cell, ctx, store)
    run.fail(message, kind)
    if kind != "skipped":
        run.log(message)


def _begin(cell: Union[PretrainCell, FinetuneCell], ctx: CellContext, store: Store) -> RunDir:
    prov = ctx.provenance if ctx.provenance is not None else provenance()
    run = store.pretrain(ctx.study, cell.key) if isinstance(cell, PretrainCell) else store.finetune(ctx.study, cell.key)
    run.reset()
    run.begin(cell_identity(cell), {**cell_labels(cell), **prov})
    return run


_SUMMARY_KEYS = ("steps", "tokens_seen", "heldout_ppl", "shared_heldout_ppl", "unigram_ppl", "final_train_loss",
                 "heldout_nsp_accuracy", "metrics", "threads", "device")


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _attempt(run: RunDir, work, label: str = "") -> Outcome:
    """Run `work()` and record its metrics, or its error (the study goes on). UserError, Ctrl-C and a
    full disk stop the study; what finished before stays finished. The run's log.txt gets a line when the
    attempt starts (with the resume step, if any) and when it ends."""
    t0 = time.time()
    state = run.path / "resume" / "state.json"  # a pretraining cell's last checkpoint (ablate/train/checkpoint.py)
    step = ((read_json(state) if state.exists() else None) or {}).get("counters", {}).get("step")
    where = f", resuming at step {step}" if step else ""
    run.log(f"[{_stamp()}] {label or run.path.name}: started (pid {os.getpid()}){where}")
    try:
        metrics = work()
        metrics["wall_total_s"] = time.time() - t0
        summary = {k: metrics[k] for k in _SUMMARY_KEYS if k in metrics}
        run.log(f"[{_stamp()}] finished in {metrics['wall_total_s']:.0f} s: {json.dumps(summary, default=str)}")
        run.finish(metrics)
    except (UserError, KeyboardInterrupt):
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # every later write would fail too
            raise UserError(f"the results disk is full ({e.filename or run.path}): free some space and run "
                            f"again; finished cells are kept") from None
        return _failed(run, e)
    except CellFailed as e:
        return _failed(run, e, kind="diverged")
    except Exception as e:  # one cell's crash must not stop the study
        return _failed(run, e)
    return Outcome("ok")


def _failed(run: RunDir, e: Exception, kind: str = "error") -> Outcome:
    msg = str(e) if kind == "diverged" else f"{e.__class__.__name__}: {e}".splitlines()[0]
    run.fail(msg, kind)
    run.log(msg if kind == "diverged" else traceback.format_exc())
    return Outcome("failed", msg)


def _run_pretrain(cell: PretrainCell, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    if ctx.force:  # --force starts the cell afresh
        checkpoint.discard(store.pretrain(ctx.study, cell.key).path / "resume")
    run = _begin(cell, ctx, store)
    label = f"pretrain {cell.label}"

    def work() -> dict:
        reporter.stage(f"{label}: tokenizer and corpus")
        with store.cache_lock():
            tok = tokenizer_for(store, cell.config)
            folder = corpus_for(store, cell.config)
            batch = batch_size_for(store, cell.config)
            short = cell.config.short_config()  # a length schedule's short blocks, same tokens per step
            short_phase = None if short is None else ShortPhase(
                corpus_for(store, short), batch_size_for(store, short) * (cell.config.data.max_len // short.data.max_len))
            shared = cell.config.shared_heldout_config()  # other formats: also scored on FULL-SENTENCES' held-out
            shared_heldout = None if shared is None else (corpus_for(store, shared), shared)
        reporter.stage(label, total=cell.config.pretrain.total_steps)
        return pretrain(cell, run, folder, tok.get_vocab_size(), ctx.runtime, reporter.step, batch,
                        token_char_lengths(tok), tok, short_phase, shared_heldout)

    return _attempt(run, work, label)


def _run_finetune(cell: FinetuneCell, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    run = _begin(cell, ctx, store)
    label = f"finetune {cell.label}"
    checkpoint = None if cell.pretrain_key is None else store.pretrain(ctx.study, cell.pretrain_key).checkpoint

    def work() -> dict:
        reporter.stage(label)
        if checkpoint is not None and not (checkpoint / "model.safetensors").exists():
            raise RuntimeError(f"the weights of pretraining cell {cell.pretrain_key} are missing "
                               f"({checkpoint}); `ablate run` pretrains it again")
        with store.cache_lock():
            tok = tokenizer_for(store, cell.config)
            corpus = corpus_for(store, cell.config) if TASKS.get(cell.task).kind == "zero-shot" else None
        if corpus is not None:  # nothing to train: score the model, and the corpus's unigram baseline beside it
            return zeroshot.score(cell, checkpoint, tok, np.load(corpus / "unigram.npy"), ctx.runtime)
        return finetune(cell, checkpoint, tok, ctx.runtime, reporter.step)

    return _attempt(run, work, label)
