"""One fine-tuning run: checkpoint (or random init) + task + seed -> metrics on the task's eval split.

Input: a FinetuneCell, the pretraining checkpoint folder (None for the random-init
control), the tokenizer. Output: metrics.json in the run directory with every metric of
the task, computed by the `evaluate` modules shipped in ablate.metrics.

Recipe (the paper's, scaled down): AdamW, linear warmup over 6% of steps then linear decay,
dynamic padding with length-grouped batches, the full eval split for scoring.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ablate import metrics as metric_lib
from ablate.data.tokenizer import PAD
from ablate.errors import CellFailed, UserError
from ablate.expand import FinetuneCell
from ablate.model import roberta_config
from ablate.paths import data_root, local_file
from ablate.engine import autocast, linear_schedule
from ablate.pretrain import pick_device, set_threads
from ablate.spec import RuntimeSpec
from ablate.tasks import TASKS, TaskSpec

SUBSET_SEED = 1234  # the train subset is the same for every variant and seed
Progress = Callable[[int, int, Optional[float]], None]


def load_split(task: TaskSpec, split: str):
    """A task split as a `datasets.Dataset`: local Parquet under the data root, else the hub."""
    import datasets

    if data_root() is not None:
        path = local_file(f"{task.local_dir}/{split}.parquet")
        return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
    try:
        return datasets.load_dataset(task.hub_path, task.hub_name, split=split)
    except Exception as e:  # offline without a data root, or a hub error
        raise UserError(f"cannot load {task.hub_path}/{task.hub_name} [{split}] from the hub ({e.__class__.__name__}); "
                        f"set ABLATE_DATA_DIR to use local files") from None


def encode(tok, task: TaskSpec, ds, max_len: int) -> tuple[list[list[int]], np.ndarray]:
    """Texts -> token id lists (<s> A </s></s> B </s> for pairs, truncated to max_len) and labels."""
    tok = _truncating(tok, max_len)
    cols = [ds[c] for c in task.text_columns]
    inputs = list(zip(*cols)) if len(cols) == 2 else cols[0]
    ids = [e.ids for e in tok.encode_batch(inputs)]
    return ids, np.asarray(ds[task.label_column])


def _truncating(tok, max_len: int):
    from tokenizers import Tokenizer

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


def collate(ids: list[list[int]], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids[i]) for i in idx)
    x = np.full((len(idx), width), PAD, dtype=np.int64)
    for r, i in enumerate(idx):
        x[r, : len(ids[i])] = ids[i]
    x_t = torch.from_numpy(x)
    return x_t, (x_t != PAD).long()


def build_classifier(task: TaskSpec, checkpoint: Optional[Path], cell: FinetuneCell, vocab: int):
    from transformers import RobertaForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the head is new by design: no load report
    hf_logging.disable_progress_bar()
    torch.manual_seed(cell.seed)  # classifier head (and the whole model for random init)
    if checkpoint is None:
        return RobertaForSequenceClassification(roberta_config(cell.config.model, cell.config.data, vocab,
                                                               num_labels=task.num_labels))
    return RobertaForSequenceClassification.from_pretrained(str(checkpoint), num_labels=task.num_labels)


def finetune(cell: FinetuneCell, checkpoint: Optional[Path], tok, runtime: RuntimeSpec,
             progress: Optional[Progress] = None) -> dict:
    """Fine-tune and score one (checkpoint, task, seed); return the metrics record."""
    ft = cell.config.finetune
    task = TASKS.get(cell.task)
    set_threads(runtime)
    device = pick_device(runtime)
    max_len = min(ft.max_len, cell.config.data.max_len)  # positions exist only up to the pretraining length
    train_ds, eval_ds = load_split(task, task.train_split), load_split(task, task.eval_split)
    if ft.train_size is not None and ft.train_size < len(train_ds):
        keep = np.random.default_rng(SUBSET_SEED).permutation(len(train_ds))[: ft.train_size]
        train_ds = train_ds.select(np.sort(keep))
    train_ids, train_y = encode(tok, task, train_ds, max_len)
    eval_ids, eval_y = encode(tok, task, eval_ds, max_len)
    model = build_classifier(task, checkpoint, cell, tok.get_vocab_size()).to(device)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ft.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=ft.lr, betas=(0.9, 0.98), eps=1e-6)
    rng = np.random.default_rng(cell.seed)
    lengths = np.array([len(x) for x in train_ids])
    steps_per_epoch = int(np.ceil(len(train_ids) / ft.batch_size))
    total = max(1, int(round(steps_per_epoch * ft.epochs)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(total, ft.warmup_ratio))
    t0 = time.perf_counter()
    step, batches = 0, []
    model.train()
    while step < total:
        if not batches:
            batches = grouped_batches(lengths, ft.batch_size, rng)
        idx = batches.pop()
        x, attn = (t.to(device) for t in collate(train_ids, idx))
        y = torch.as_tensor(train_y[idx]).to(device)
        with autocast(device):
            loss = model(input_ids=x, attention_mask=attn, labels=y).loss
        if not torch.isfinite(loss):
            raise CellFailed(f"fine-tuning diverged at step {step}: loss is {float(loss)}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if progress and (step % 10 == 0 or step == total):
            progress(step, total, loss.item())
    preds = predict(model, eval_ids, device, runtime.eval_batch_size)
    scores = {m: metric_lib.compute(m, preds.tolist(), eval_y.tolist()) for m in task.metrics}
    return {
        "metrics": scores,
        "task": task.name,
        "train_examples": len(train_ids),
        "eval_examples": len(eval_ids),
        "steps": total,
        "wall_s": time.perf_counter() - t0,
    }


@torch.no_grad()
def predict(model, ids: list[list[int]], device, batch: int) -> np.ndarray:
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.empty(len(ids), dtype=np.int64)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        x, attn = (t.to(device) for t in collate(ids, idx))
        with autocast(device):
            logits = model(input_ids=x, attention_mask=attn).logits
        out[idx] = logits.argmax(-1).cpu().numpy()
    return out
