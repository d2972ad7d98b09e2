"""Plan -> rows for `ablate plan`: each cell's key, status in the store, and rough compute."""

from __future__ import annotations

from ablate.expand import Plan
from ablate.spec import Config
from ablate.store import Store

ASSUMED_FLOPS = 5e10  # useful FLOP/s of a 2-core CPU with this engine, for rough time estimates only


def pretrain_flops(cfg: Config) -> float:
    """6 x non-embedding params x tokens, plus attention and the masked-only LM head."""
    tokens = cfg.pretrain.total_steps * cfg.pretrain.total_batch * cfg.data.max_len
    m = cfg.model
    attn = 12 * m.num_layers * cfg.data.max_len * m.hidden_size
    head = 6 * cfg.pretrain.mask_prob * (m.hidden_size * m.hidden_size + m.hidden_size * cfg.data.vocab_size)
    return tokens * (6 * m.non_embedding_params() + attn + head)


def _status(run) -> str:
    if run.is_done():
        return "done"
    if run.error() is not None:
        return "failed"
    return "pending"


def plan_rows(plan: Plan, store: Store) -> tuple[list[dict], str]:
    name = plan.study.name
    rows, pending_flops = [], 0.0
    for c in plan.pretrain:
        flops = pretrain_flops(c.config)
        status = _status(store.pretrain(name, c.key))
        pending_flops += flops if status != "done" else 0
        rows.append({"stage": "pretrain", "cell": c.label, "key": c.key, "status": status,
                     "compute": f"{flops:.2e} FLOPs"})
    for c in plan.finetune:
        status = _status(store.finetune(name, c.key))
        rows.append({"stage": "finetune", "cell": c.label, "key": c.key, "status": status, "compute": ""})
    done = sum(r["status"] == "done" for r in rows)
    summary = (f"{len(rows)} cells: {done} done, {len(rows) - done} to run; pending pretraining "
               f"{pending_flops:.2e} FLOPs, roughly {pending_flops / ASSUMED_FLOPS / 60:.0f} min on a 2-core CPU "
               f"(fine-tuning extra)")
    return rows, summary
