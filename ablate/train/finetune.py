"""One fine-tuning run: checkpoint (or random init) + task + seed -> metrics on the task's scored examples.

Input: a FinetuneCell, the pretraining checkpoint folder (None for the random-init control), the
tokenizer. Output: the metrics record (every metric of the task, computed by the functions of
ablate.metrics) plus what was trained on and scored, which the pipeline writes to metrics.json.

Tasks: classification (RobertaForSequenceClassification, cross-entropy), regression (STS-B: one output,
mean squared error) and span extraction (SQuAD: RobertaForQuestionAnswering over sliding windows, see
ablate.tasks.squad). The data come from ablate.tasks.data (the official splits, or part of the
validation split where finetune.train_from_validation says so).

Recipe (the paper's, scaled down): AdamW (beta2 0.98, eps 1e-6), linear warmup over 6% of steps then
linear decay, dynamic padding with length-grouped batches, the lr from FinetuneSpec.lr_for (per task, and for the random-init control).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
from transformers.utils import logging as hf_logging

from ablate import metrics as metric_lib
from ablate.data.vocab import PAD
from ablate.errors import CellFailed, UserError
from ablate.model import roberta_config
from ablate.study.cells import FinetuneCell
from ablate.study.spec import RuntimeSpec
from ablate.tasks import TASKS, TaskSpec, squad
from ablate.tasks.data import task_data
from ablate.train.trainer import autocast, lr_schedule, pick_device, set_threads

Progress = Callable[[int, int, Optional[float]], None]


def encode(tok, task: TaskSpec, ds, max_len: int, strip: bool = False, pair_types: bool = False
           ) -> tuple[list[list[int]], Optional[list[list[int]]], np.ndarray]:
    """Texts -> token id lists (<s> A </s></s> B </s> for pairs, truncated to max_len), token type lists (pairs with
    pair_types: segment_types; else None) and labels. strip: outer whitespace removed before tokenizing."""
    tok = _truncating(tok, max_len)
    cols = [[x.strip() for x in ds[c]] if strip else list(ds[c]) for c in task.text_columns]
    inputs = list(zip(*cols)) if len(cols) == 2 else cols[0]
    encodings = tok.encode_batch(inputs)
    types = [segment_types(e.sequence_ids) for e in encodings] if pair_types and len(cols) == 2 else None
    dtype = np.float32 if task.kind == "regression" else np.int64
    return [e.ids for e in encodings], types, np.asarray(list(ds[task.label_column]), dtype=dtype)


def segment_types(sequence_ids: list[Optional[int]]) -> list[int]:
    """Token types of an encoded pair: 1 from segment B's first token to the end (its closing </s> included), 0
    before, the layout the pair formats pretrain with (ablate.data.formats.token_types)."""
    first = next((i for i, s in enumerate(sequence_ids) if s == 1), len(sequence_ids))
    return [0] * first + [1] * (len(sequence_ids) - first)


def _truncating(tok, max_len: int):
    t = Tokenizer.from_str(tok.to_str())  # a copy: truncation is tokenizer state
    t.enable_truncation(max_len, strategy="longest_first")
    t.no_padding()
    return t


def grouped_batches(lengths: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then sort by length inside chunks of 50 batches, so padding stays small."""
    order = rng.permutation(len(lengths))
    chunk = batch * 50
    batches = []
    for s in range(0, len(order), chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch] for i in range(0, len(part), batch))
    rng.shuffle(batches)
    return batches


def collate(ids: list[list[int]], idx: np.ndarray, types: Optional[list[list[int]]] = None
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Inputs idx -> padded input_ids [B, L], attention_mask [B, L], and {"token_type_ids": [B, L]} when types are
    given (pads: type 0), else {} (the model's default: type 0 everywhere)."""
    width = max(len(ids[i]) for i in idx)
    x = np.full((len(idx), width), PAD, dtype=np.int64)
    tt = np.zeros((len(idx), width), dtype=np.int64) if types is not None else None
    for r, i in enumerate(idx):
        x[r, : len(ids[i])] = ids[i]
        if tt is not None:
            tt[r, : len(types[i])] = types[i]
    x_t = torch.from_numpy(x)
    return x_t, (x_t != PAD).long(), {} if tt is None else {"token_type_ids": torch.from_numpy(tt)}


def build_model(task: TaskSpec, checkpoint: Optional[Path], cell: FinetuneCell, vocab: int):
    """A sequence classifier (regression: one output) or a span extractor, from the checkpoint or random init."""
    hf_logging.set_verbosity_error()  # the head is new by design: no load report
    hf_logging.disable_progress_bar()
    torch.manual_seed(cell.seed)  # the head (and the whole model for random init)
    # the Auto classes pick the post- or pre-LayerNorm model from the config's model type
    cls = AutoModelForQuestionAnswering if task.kind == "span" else AutoModelForSequenceClassification
    extra = {"num_labels": task.num_labels}
    if task.kind == "regression":
        extra["problem_type"] = "regression"
    dropout = cell.config.finetune.dropout  # None: the model's own (model.dropout, as pretrained)
    if checkpoint is None:
        model_spec = cell.config.model if dropout is None else cell.config.model.model_copy(update={"dropout": dropout})
        return cls.from_config(roberta_config(model_spec, cell.config.data, vocab, **extra))
    if dropout is not None:
        extra.update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model, info = cls.from_pretrained(str(checkpoint), output_loading_info=True, **extra)
    lost = sorted(k for k in info["missing_keys"] if k.startswith(model.base_model_prefix + "."))
    if lost or info["mismatched_keys"]:  # the encoder must come from the checkpoint, never silently fresh
        raise RuntimeError(f"checkpoint {checkpoint} did not fill the encoder: missing {lost[:3]}, "
                           f"mismatched {sorted(info['mismatched_keys'])[:3]}")
    return model


@dataclass
class Examples:
    """A task's examples as model inputs: token ids per input and the targets the model's loss takes."""

    ids: list[list[int]]  # per input (a sentence, a pair, or a SQuAD window)
    targets: dict[str, np.ndarray]  # model keyword -> [N] array: labels, or start_positions and end_positions
    types: Optional[list[list[int]]] = None  # token types per input (pair tasks with pair_token_types), else None


def prepare(task: TaskSpec, tok, ds, max_len: int, stride: int, with_targets: bool = True, ft=None):
    """Dataset -> (Examples, windows or None). Span tasks become sliding windows over each context (their text is
    used as it is: answers are character offsets into it)."""
    if task.kind != "span":
        ids, types, y = encode(tok, task, ds, max_len, strip=bool(ft and ft.strip_text),
                               pair_types=bool(ft and ft.pair_token_types))
        return Examples(ids, {"labels": y}, types), None
    try:
        win = squad.windows(tok, list(ds["question"]), list(ds["context"]),
                            list(ds["answers"]) if with_targets else None, max_len, stride)
    except ValueError as e:  # doc_stride does not fit the window: a settings error
        raise UserError(f"{task.name}: {e} (max_len {max_len})") from None
    return Examples(win.ids, {"start_positions": win.start, "end_positions": win.end}), win


def finetune(cell: FinetuneCell, checkpoint: Optional[Path], tok, runtime: RuntimeSpec,
             progress: Optional[Progress] = None) -> dict:
    """Fine-tune and score one (checkpoint, task, seed); return the metrics record."""
    ft = cell.config.finetune
    task = TASKS.get(cell.task)
    set_threads(runtime)
    device = pick_device(runtime)
    max_len = min(ft.max_len, cell.config.data.max_len)  # positions exist only up to the pretraining length
    stride = ft.doc_stride or max_len // 4
    lr = ft.lr_for(task.name, random_init=cell.pretrain_key is None)
    data = task_data(task, ft)
    train, _ = prepare(task, tok, data.train, max_len, stride, ft=ft)
    scored, windows = prepare(task, tok, data.eval, max_len, stride, with_targets=False, ft=ft)
    model = build_model(task, checkpoint, cell, tok.get_vocab_size()).to(device)
    def evaluate() -> tuple[dict[str, float], list]:
        outputs = predict(model, scored.ids, device, runtime.eval_batch_size, scored.types)
        predictions, references = _predictions(task, ft, data.eval, outputs, windows)
        return metric_lib.compute_many(task.metrics, predictions, references), references

    epochs: list[dict] = []  # the validation metrics after each epoch but the last (the final ones are that)
    t0 = time.perf_counter()
    steps, curve = train_loop(model, train, ft, lr, cell.seed, device, progress,
                              on_epoch=lambda e: epochs.append({"epoch": e, "metrics": evaluate()[0]}))
    final, references = evaluate()
    epochs.append({"epoch": round(ft.epochs, 6), "metrics": final})
    record = {
        "metrics": final,
        "curve": curve,
        "epochs": epochs,
        "task": task.name,
        "train_split": data.train_split,
        "eval_split": data.eval_split,
        "scored_on_validation_part": data.from_validation,
        "train_examples": len(data.train),
        "eval_examples": len(data.eval),
        "lr": lr,
        "steps": steps,
        "wall_s": time.perf_counter() - t0,
    }
    if windows is not None:
        record.update(train_windows=len(train.ids), eval_windows=len(scored.ids), doc_stride=stride)
    if task.kind in ("classification", "regression"):
        record["inputs"] = {"strip_text": ft.strip_text, "pair_token_types": ft.pair_token_types and
                            len(task.text_columns) == 2}
    if task.kind == "classification":
        record["majority"] = majority_scores(task, references)
    return record


def majority_scores(task: TaskSpec, references: list) -> dict[str, float]:
    """Every metric of the task for a model that always answers the scored examples' most frequent label: the
    floor a classifier must clear (MRPC's validation split is 68.4% "paraphrase")."""
    labels, counts = np.unique(np.asarray(references), return_counts=True)
    most = int(labels[np.argmax(counts)])
    return metric_lib.compute_many(task.metrics, [most] * len(references), references)


CURVE_EVERY = 10  # steps per point of a fine-tune's loss curve


def train_loop(model, train: Examples, ft, lr: float, seed: int, device, progress: Optional[Progress],
               on_epoch: Optional[Callable[[float], None]] = None) -> tuple[int, list[dict]]:
    """AdamW with warmup and linear decay over ft.epochs of length-grouped batches; returns the steps taken and
    the loss curve (mean training loss per CURVE_EVERY steps). on_epoch(epoch) is called at the end of every whole
    epoch before the last (to score the validation split; it changes no random state, so the result is the same)."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ft.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-6)
    rng = np.random.default_rng(seed)
    lengths = np.array([len(x) for x in train.ids])
    steps_per_epoch = int(np.ceil(len(train.ids) / ft.batch_size))
    total = max(1, int(round(steps_per_epoch * ft.epochs)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_schedule(total, ft.warmup_ratio))
    step, batches, curve, window = 0, [], [], []
    model.train()
    while step < total:
        if not batches:
            batches = grouped_batches(lengths, ft.batch_size, rng)
        idx = batches.pop()
        x, attn, extra = collate(train.ids, idx, train.types)
        x, attn = x.to(device), attn.to(device)
        targets = {k: torch.as_tensor(v[idx]).to(device) for k, v in train.targets.items()}
        targets.update({k: v.to(device) for k, v in extra.items()})
        with autocast(device):
            loss = model(input_ids=x, attention_mask=attn, **targets).loss
        if not torch.isfinite(loss):
            raise CellFailed(f"fine-tuning diverged at step {step}: loss is {float(loss)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        window.append(loss.detach())  # read back every CURVE_EVERY steps, not every step (a GPU sync each)
        if step % CURVE_EVERY == 0 or step == total:
            curve.append({"step": step, "epoch": round(step / steps_per_epoch, 4),
                          "loss": float(torch.stack(window).float().mean())})
            window = []
            if progress:
                progress(step, total, curve[-1]["loss"])
        if on_epoch is not None and step % steps_per_epoch == 0 and step < total:
            on_epoch(step // steps_per_epoch)
            model.train()
    return total, curve


@torch.no_grad()
def predict(model, ids: list[list[int]], device, batch: int, types: Optional[list[list[int]]] = None
            ) -> list[np.ndarray]:
    """Model outputs per input: [C] logits for a classifier, [2, L] start/end logits for a span model."""
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out: list[np.ndarray] = [np.empty(0)] * len(ids)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        x, attn, extra = collate(ids, idx, types)
        with autocast(device):
            res = model(input_ids=x.to(device), attention_mask=attn.to(device),
                        **{k: v.to(device) for k, v in extra.items()})
        if hasattr(res, "start_logits"):
            both = torch.stack([res.start_logits, res.end_logits], 1).float().cpu().numpy()  # [B, 2, L]
            for r, i in enumerate(idx):
                out[i] = both[r, :, : len(ids[i])]
        else:
            logits = res.logits.float().cpu().numpy()  # [B, C]
            for r, i in enumerate(idx):
                out[i] = logits[r]
    return out


def _predictions(task: TaskSpec, ft, ds, outputs: list[np.ndarray], windows) -> tuple[list, list]:
    """Model outputs -> (predictions, references) in the form the task's metric modules take."""
    if task.kind == "span":
        preds = squad.decode(windows, [o[0] for o in outputs], [o[1] for o in outputs], list(ds["context"]),
                             list(ds["id"]), ft.n_best, ft.max_answer_len, task.no_answer)
        if not task.no_answer:
            preds = [{"id": p["id"], "prediction_text": p["prediction_text"]} for p in preds]
        refs = [{"id": i, "answers": a} for i, a in zip(ds["id"], ds["answers"])]
        return preds, refs
    logits = np.stack(outputs)  # [N, C]
    if task.kind == "regression":
        return logits[:, 0].astype(float).tolist(), [float(v) for v in ds[task.label_column]]
    return logits.argmax(-1).tolist(), [int(v) for v in ds[task.label_column]]
