"""What a plan costs and whether it fits: planned FLOPs per pretraining cell, and a memory check before any work
(and in `ablate validate`).

torch is imported only where a GPU's free memory is asked for: `ablate plan` and `validate` never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ablate.errors import UserError
from ablate.study.cells import Plan, validate_study
from ablate.study.load import written_at
from ablate.study.spec import Config, StudySpec

ASSUMED_FLOPS = 5e10  # useful FLOP/s of a 2-core CPU with this engine, for rough time estimates only


def pretrain_flops(cfg: Config) -> float:
    """Planned training FLOPs of a cell: every block full, mask_prob of its tokens masked."""
    tokens = cfg.pretrain.total_steps * cfg.pretrain.total_batch * cfg.data.max_len
    return cfg.training_flops(tokens, int(tokens * cfg.pretrain.mask_prob), cfg.data.vocab_size)


def memory_estimate(cfg: Config, vocab: int) -> int:
    """Rough peak bytes of one pretraining step in fp32: weights, gradients and two Adam moments, plus the
    activations autograd keeps for one (micro-)batch (projections, feed-forward, attention maps)."""
    m, d, p = cfg.model, cfg.data, cfg.pretrain
    params = m.non_embedding_params() + vocab * m.hidden_size + (d.max_len + 4) * m.hidden_size
    batch = p.micro_batch_size or p.total_batch
    tokens = batch * d.max_len
    per_layer = tokens * (18 * m.hidden_size + 2 * m.intermediate_size) + 3 * batch * m.num_heads * d.max_len**2
    head = int(tokens * p.mask_prob) * 2 * vocab
    return 16 * params + 4 * (m.num_layers * per_layer + tokens * m.hidden_size * 4 + head)


def available_memory() -> tuple[int, str]:
    """Bytes this process can still use, and where: the GPU's free memory, else Linux's MemAvailable."""
    try:
        import torch  # imported on use: planning a study must not pay for torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0]), "free GPU memory"
    except ImportError:  # pragma: no cover
        pass
    return host_memory()


def host_memory() -> tuple[int, str]:
    """Bytes of main memory still available (Linux's MemAvailable), and where; no torch."""
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available memory"
    except OSError:
        pass
    return 1 << 62, "memory (unknown)"


def check_fits(plan: Plan, memory: Optional[tuple[int, str]] = None) -> None:
    """A clear error before any work when a pretraining step of the plan cannot fit in memory (default: this
    process's, a GPU's where there is one), naming the study file's line and the batch key that sets the size."""
    free, where = memory or available_memory()
    for cell in plan.pretrain:
        need = memory_estimate(cell.config, cell.config.data.vocab_size)
        if need > 0.9 * free:
            p = cell.config.pretrain
            keys = ([("pretrain", "micro_batch_size")] if p.micro_batch_size else
                    [("pretrain", "batch_size"), ("pretrain", "batch_multiplier"), ("data", "max_len")])
            raise UserError(
                f"{written_at(plan.study, cell.variant, keys)}: variant {cell.variant!r} at scale {plan.study.scale} "
                f"needs about {need / 2**30:.1f} GiB per step, more than the {free / 2**30:.1f} GiB of {where}: set "
                f"pretrain.micro_batch_size (gradient accumulation), a smaller batch, or use a smaller scale")


def validate(path: Path) -> tuple[StudySpec, Plan]:
    """`ablate validate`: the study file loads and expands at every scale, and a pretraining step at its own scale
    fits this machine's main memory (a GPU's is checked by `ablate run`: validate stays fast, without torch)."""
    spec, plan = validate_study(path)
    check_fits(plan, host_memory())
    return spec, plan
