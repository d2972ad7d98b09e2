"""Plan -> rows for `ablate plan`: each cell's key, status in the store, and rough compute."""

from __future__ import annotations

from ablate.expand import Plan
from ablate.spec import Config
from ablate.store import Store

ASSUMED_FLOPS = 5e10  # useful FLOP/s of a 2-core CPU with this engine, for rough time estimates only


def training_flops(cfg: Config, tokens: int, masked: int, vocab: int) -> float:
    """Training FLOPs: 6 x non-embedding params and the attention scores (QK^T, AV; fwd + bwd) per token,
    plus the LM head (dense + decoder) per masked token."""
    m = cfg.model
    attn = 12 * m.num_layers * cfg.data.max_len * m.hidden_size
    head = 6 * (m.hidden_size * m.hidden_size + m.hidden_size * vocab)
    return float(tokens * (6 * m.non_embedding_params() + attn) + masked * head)


def pretrain_flops(cfg: Config) -> float:
    """Planned training FLOPs of a cell: every block full, mask_prob of its tokens masked."""
    tokens = cfg.pretrain.total_steps * cfg.pretrain.total_batch * cfg.data.max_len
    return training_flops(cfg, tokens, int(tokens * cfg.pretrain.mask_prob), cfg.data.vocab_size)


def _status(run) -> str:
    if run.is_done():
        return "done"
    if run.error() is not None:
        return "failed"
    return "pending"


def plan_rows(plan: Plan, store: Store) -> tuple[list[dict], str]:
    """One row per cell; status: done, failed, pending, `in <study>` (finished there: `run` copies it), or
    `weights lost` (finished, but a pending fine-tune needs its weights, which are gone: `run` pretrains it
    again)."""
    from ablate.pipeline import finished_elsewhere, weights_lost

    name = plan.study.name
    rows, pending_flops = [], 0.0

    def status_of(kind: str, cell) -> str:
        status = _status(store.pretrain(name, cell.key) if kind == "pretrain" else store.finetune(name, cell.key))
        if status != "done":
            source = finished_elsewhere(store, name, kind, cell)
            if source is not None:
                return f"in {source.path.parents[1].name}"
        return status

    for c in plan.pretrain:
        flops = pretrain_flops(c.config)
        status = status_of("pretrain", c)
        if status == "done" and weights_lost(plan, store, c.key):
            status = "weights lost"
        pending_flops += flops if status in ("pending", "failed", "weights lost") else 0
        rows.append({"stage": "pretrain", "cell": c.label, "key": c.key, "status": status,
                     "compute": f"{flops:.2e} FLOPs"})
    for c in plan.finetune:
        rows.append({"stage": "finetune", "cell": c.label, "key": c.key, "status": status_of("finetune", c),
                     "compute": ""})
    done = sum(r["status"] == "done" for r in rows)
    copied = sum(r["status"].startswith("in ") for r in rows)
    summary = (f"{len(rows)} cells: {done} done, {copied} to copy from other studies, "
               f"{len(rows) - done - copied} to run; pending pretraining "
               f"{pending_flops:.2e} FLOPs, roughly {pending_flops / ASSUMED_FLOPS / 60:.0f} min on a 2-core CPU "
               f"(fine-tuning extra)")
    return rows, summary


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
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0]), "free GPU memory"
    except ImportError:  # pragma: no cover
        pass
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "available memory"
    except OSError:
        pass
    return 1 << 62, "memory (unknown)"


def check_fits(plan: Plan) -> None:
    """A clear error before any work when a pretraining step of the plan cannot fit in memory."""
    from ablate.errors import UserError

    free, where = available_memory()
    for cell in plan.pretrain:
        need = memory_estimate(cell.config, cell.config.data.vocab_size)
        if need > 0.9 * free:
            raise UserError(
                f"variant {cell.variant!r} at scale {plan.study.scale} needs about {need / 2**30:.1f} GiB per step, "
                f"more than the {free / 2**30:.1f} GiB of {where}: set pretrain.micro_batch_size (gradient "
                f"accumulation) or use a smaller scale")
