"""The fast training step: model + NSP head + AdamW + schedule + dropout RNG; `Trainer.step(batch)` is one update.

Input: a Config (model shape, optimizer settings), the vocabulary size, a device and a seed.
Output: per step, the detached losses and counts (ablate.model.pretrain_losses). Optional torch.compile of the
loss function (measured: does not pay on CPU; benchmarks/compile_probe.py).
"""

from __future__ import annotations

import ctypes
import math
import os

import torch

from ablate.data.batches import Batch
from ablate.model import DropoutRNG, NSPHead, build_mlm, pretrain_losses
from ablate.study.spec import Config, RuntimeSpec


def pick_device(runtime: RuntimeSpec) -> torch.device:
    """cuda when asked for, or on auto when one exists; else the CPU."""
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def set_threads(runtime: RuntimeSpec) -> None:
    torch.set_num_threads(runtime.threads or os.cpu_count() or 1)


def tune_allocator() -> None:
    """Keep freed memory in glibc's heap instead of returning it to the OS on every step.

    A training step allocates and frees the same large buffers each time; with glibc's defaults
    each one is a fresh mmap whose pages fault in again. Does nothing off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def make_optimizer(model, cfg):
    """AdamW as RoBERTa: (0.9, 0.98), eps 1e-6, decay on weight matrices only; multi-tensor (foreach)."""
    p = cfg.pretrain
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=p.peak_lr, betas=(p.beta1, p.beta2), eps=p.eps, foreach=True)


class Trainer:
    """Model (+ NSP head) + optimizer + schedule + dropout RNG: `step(batch)` is one optimizer step."""

    def __init__(self, cfg: Config, vocab: int, device: torch.device, seed: int, compile: bool = False):
        tune_allocator()
        self.cfg, self.device = cfg, device
        torch.manual_seed(seed)
        self.model = build_mlm(cfg.model, cfg.data, vocab).to(device)
        self.nsp_head = NSPHead(cfg.model).to(device) if cfg.pretrain.nsp else None
        modules = torch.nn.ModuleDict({"mlm": self.model, **({"nsp": self.nsp_head} if self.nsp_head else {})})
        modules.train()
        self.params = list(modules.parameters())
        self.opt = make_optimizer(modules, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_schedule(cfg.pretrain.total_steps,
                                                                             cfg.pretrain.warmup_ratio,
                                                                             cfg.pretrain.schedule))
        self.rng = DropoutRNG(seed)
        self.loss_fn = torch.compile(pretrain_losses, dynamic=True) if compile else pretrain_losses

    def step(self, batch: Batch) -> dict:
        """Forward, backward (in micro-batches if configured), clip, update; returns detached losses and counts."""
        micro = self.cfg.pretrain.micro_batch_size
        size = len(batch.input_ids)
        chunks = [batch] if not micro or micro >= size else [batch.slice(i, i + micro) for i in range(0, size, micro)]
        mlm_count, nsp_count = max(1, int((batch.labels != -100).sum())), size
        self.opt.zero_grad(set_to_none=True)
        total: dict = {}
        for chunk in chunks:
            with autocast(self.device):
                out = self.loss_fn(self.model, self.nsp_head, chunk, self.rng, mlm_count, nsp_count)
            if not torch.isfinite(out["loss"]):
                return {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
            out["loss"].backward()
            for k, v in out.items():
                total[k] = total.get(k, 0) + (v.detach() if torch.is_tensor(v) else v)
        if self.cfg.pretrain.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.pretrain.grad_clip, foreach=True)
        self.opt.step()
        self.sched.step()
        return total

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]


def lr_schedule(total: int, warmup_ratio: float, shape: str = "linear"):
    """The learning rate as a fraction of its peak at each step (0-based): linear warmup over warmup_ratio of the
    steps to 1.0, then a linear or cosine decay that reaches 0 one step after the last."""
    warm = max(1, int(round(total * warmup_ratio)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        left = max(0.0, (total - step) / max(1, total - warm))  # 1.0 at the end of warmup, 0 after the last step
        return left if shape == "linear" else 0.5 * (1.0 - math.cos(math.pi * left))

    return f


def autocast(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
