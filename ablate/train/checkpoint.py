"""Checkpoints of a pretraining run: the mid-run state it resumes from, and the final model.

Mid-run (save, load): everything a pretraining run needs to continue bit for bit after a crash.
Input: a Trainer (model, NSP head, optimizer, schedule, dropout RNG) and the loop's state.
Output: <run>/resume/ with tensors.safetensors (weights, optimizer moments, torch RNG) and
state.json (step, counters, schedule, numpy RNG state, optimizer hyper-parameters). No pickle:
nothing here runs code when loaded. The folder is written beside the old one and swapped in by
rename, so a crash while saving leaves the previous checkpoint intact.

Because batches and masks are pure functions of (seed, step), a resumed run seeks to its step
instead of replaying data.

Final (save_final): <run>/checkpoint/, complete as a hub model: the model's own save_pretrained (config.json,
model.safetensors; AutoModelForMaskedLM), the tokenizer as a transformers fast tokenizer (AutoTokenizer), a
model card (README.md) and the NSP head, when there is one, beside them. It is written to a temporary folder
and renamed into place, so a crash never leaves a half-written checkpoint/ (and files hard-linked into
another study by ablate.run.reuse are never rewritten in place).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from ablate.store import swap_in

STATE_VERSION = 1


def _tensors(trainer) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    for name, t in trainer.model.state_dict().items():
        tensors[f"model.{name}"] = t
    if trainer.nsp_head is not None:
        for name, t in trainer.nsp_head.state_dict().items():
            tensors[f"nsp.{name}"] = t
    opt = trainer.opt.state_dict()
    for idx, state in opt["state"].items():
        for name, t in state.items():
            tensors[f"opt.{idx}.{name}"] = t if torch.is_tensor(t) else torch.tensor(t)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    # safetensors refuses tensors that share memory (tied embeddings): store contiguous copies
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, opt["param_groups"]


def save(trainer, folder: Path, counters: dict) -> None:
    """Write the trainer's full state and the loop counters to folder, atomically."""
    tensors, groups = _tensors(trainer)
    # a dot-name: a kill mid-write leaves a half-written folder that no reader of the run directory opens
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(folder.with_name(folder.name + ".tmp"), ignore_errors=True)  # the name before 2026-12-04
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "tensors.safetensors"))
    state = {
        "version": STATE_VERSION,
        "counters": counters,
        "param_groups": groups,
        "scheduler": {k: v for k, v in trainer.sched.state_dict().items() if k != "lr_lambdas"},
        "dropout_rng": trainer.rng.state(),
    }
    with open(tmp / "state.json", "w", encoding="utf-8") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def discard(folder: Path) -> None:
    """Remove the resumable state in folder and what a kill mid-save may have left beside it."""
    for path in (folder, folder.with_name(f".{folder.name}.tmp"), folder.with_name(folder.name + ".tmp"),
                 folder.with_name(folder.name + ".old")):
        shutil.rmtree(path, ignore_errors=True)


def load(trainer, folder: Path) -> Optional[dict]:
    """Restore the trainer from folder (or from the copy a crash left mid-swap); return the counters, or None."""
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        state_path, tensor_path = candidate / "state.json", candidate / "tensors.safetensors"
        if not (state_path.exists() and tensor_path.exists()):
            continue
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            tensors = load_file(str(tensor_path))
        except (OSError, ValueError):
            continue  # unreadable: fall back to the older copy, or to a fresh start
        if state.get("version") != STATE_VERSION:
            continue
        _restore(trainer, state, tensors)
        return state["counters"]
    return None


def _restore(trainer, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    trainer.model.load_state_dict(part("model."), strict=True)
    if trainer.nsp_head is not None:
        trainer.nsp_head.load_state_dict(part("nsp."), strict=True)
    opt_state: dict[int, dict] = {}
    for key, t in part("opt.").items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = t
    trainer.opt.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    trainer.sched.load_state_dict({**trainer.sched.state_dict(), **state["scheduler"]})
    trainer.rng.set_state(state["dropout_rng"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def save_final(trainer, folder: Path, tokenizer=None, max_len: Optional[int] = None, card: Optional[str] = None) -> None:
    """The final checkpoint, complete, swapped in by rename: the model's own save_pretrained (safetensors; any
    model class), the NSP head beside it, the tokenizer (a `tokenizers.Tokenizer`; max_len: the longest input)
    as a transformers fast tokenizer, and the model card `card` as README.md."""
    hf_logging.disable_progress_bar()
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainer.model.save_pretrained(str(tmp), safe_serialization=True)
    if trainer.nsp_head is not None:
        save_file(trainer.nsp_head.state_dict(), str(tmp / "nsp_head.safetensors"))
    if tokenizer is not None:
        save_tokenizer(tokenizer, tmp, max_len)
    if card is not None:
        (tmp / "README.md").write_text(card, encoding="utf-8")
    swap_in(tmp, folder)


def save_tokenizer(tokenizer, folder: Path, max_len: Optional[int] = None) -> None:
    """A `tokenizers.Tokenizer` as a transformers fast tokenizer with RoBERTa's special tokens (ablate.data.vocab),
    so AutoTokenizer and pipeline("fill-mask") load it from the checkpoint."""
    extra = {"model_max_length": max_len} if max_len else {}
    hf = PreTrainedTokenizerFast(  # on a copy: the caller's tokenizer keeps its truncation and padding state
        tokenizer_object=Tokenizer.from_str(tokenizer.to_str()), bos_token="<s>", eos_token="</s>",
        sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>", **extra)
    hf.save_pretrained(str(folder))


def model_card(study: str, variant: str, seed: int, key: str, cfg, metrics: dict, commit: Optional[str]) -> str:
    """README.md of a final checkpoint: what it is, how it was trained, how well, and how to load it."""
    m, d, p = cfg.model, cfg.data, cfg.pretrain
    ppl = metrics.get("heldout_ppl")
    nsp = " + NSP" if p.nsp else ""
    return "\n".join([
        "---", "library_name: transformers", "pipeline_tag: fill-mask", "tags: [roberta, ablate]", "---", "",
        f"# {study} / {variant} / seed {seed}", "",
        f"A small RoBERTa pretrained by ablate (study `{study}`, variant `{variant}`, "
        f"pretraining seed {seed}, cell `{key}`).", "",
        "| | |", "|---|---|",
        f"| model | hidden {m.hidden_size}, {m.num_layers} layers, {m.num_heads} heads, FFN {m.intermediate_size}, "
        f"dropout {m.dropout} |",
        f"| data | corpus `{d.corpus}`, {d.tokenizer} tokenizer ({d.vocab_size} tokens), format {d.format}, "
        f"max_len {d.max_len}, data fraction {d.data_fraction} |",
        f"| pretraining | {p.masking} masking ({p.mask_prob:g}){nsp}, {p.total_steps} steps of {p.total_batch} "
        f"sequences, peak lr {p.peak_lr:g} |",
        f"| held-out MLM perplexity | {ppl:.2f} |" if ppl is not None else "| held-out MLM perplexity | n/a |",
        f"| git commit | {commit or 'unknown'} |", "",
        "```python",
        "from transformers import pipeline",
        "fill = pipeline(\"fill-mask\", model=\"path/to/this/folder\")",
        "fill(\"The cat sat on the <mask>.\")",
        "```", ""])
