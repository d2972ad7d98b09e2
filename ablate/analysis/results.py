"""Read the store for one study -> tidy pandas tables (one row per cell x task x metric x seed).

Aggregation only reads these tables; the report only reads aggregates and plots.
Cells are labelled from the plan (the study file), not from what a run recorded,
so two variants that share a checkpoint both show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ablate.study.cells import Plan
from ablate.store import Store

SCORE_COLUMNS = ["variant", "pretrain_seed", "task", "metric", "finetune_seed", "value", "key"]
PRETRAIN_COLUMNS = [
    "variant", "seed", "key", "heldout_ppl", "heldout_loss", "shared_heldout_ppl", "unigram_ppl", "steps",
    "tokens_seen", "tokens_per_step", "flops", "wall_s", "tokens_per_s", "final_train_loss", "sequences_per_step", "epochs",
    "heldout_nsp_accuracy", "heldout_bpc", "peak_memory_mb",
]
CURVE_COLUMNS = ["variant", "seed", "step", "loss", "lr"]
# zero-shot (BLiMP) accuracy per phenomenon of every scored model, and the unigram baseline's ("overall" included)
BLIMP_COLUMNS = ["variant", "pretrain_seed", "finetune_seed", "phenomenon", "accuracy", "unigram_accuracy"]
# fine-tuning: the training loss every few steps, and each validation metric after every epoch
FT_CURVE_COLUMNS = ["variant", "pretrain_seed", "finetune_seed", "task", "step", "epoch", "loss"]
FT_EPOCH_COLUMNS = ["variant", "pretrain_seed", "finetune_seed", "task", "metric", "epoch", "value"]


@dataclass
class StudyResults:
    scores: pd.DataFrame  # SCORE_COLUMNS; value is a fraction in [0, 1] for accuracy-like metrics
    pretrain: pd.DataFrame  # PRETRAIN_COLUMNS
    curves: pd.DataFrame  # CURVE_COLUMNS
    failures: list[dict[str, Any]] = field(default_factory=list)  # {stage, label, error}
    counts: dict[str, int] = field(default_factory=dict)  # done / failed / pending cells
    blimp: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BLIMP_COLUMNS))  # BLIMP_COLUMNS
    majority: dict[tuple[str, str], float] = field(default_factory=dict)  # (task, metric) -> majority-class score
    ft_curves: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FT_CURVE_COLUMNS))
    ft_epochs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FT_EPOCH_COLUMNS))


def read_curve(path) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a crash: skip it
                    continue
    except FileNotFoundError:
        pass
    return rows


def collect(store: Store, plan: Plan) -> StudyResults:
    study = plan.study.name
    scores, pre, curves, failures, blimp, majority, ft_curves, ft_epochs = [], [], [], [], [], {}, [], []
    counts = {"done": 0, "failed": 0, "pending": 0}
    for cell in plan.pretrain:
        run = store.pretrain(study, cell.key)
        m = run.metrics()
        if m is not None:
            counts["done"] += 1
            pre.append({"variant": cell.variant, "seed": cell.seed, "key": cell.key,
                        **{c: m.get(c) for c in PRETRAIN_COLUMNS[3:]}})
            for r in read_curve(run.path / "loss.jsonl"):
                curves.append({"variant": cell.variant, "seed": cell.seed, "step": r["step"],
                               "loss": r["loss"], "lr": r.get("lr")})
        elif (err := run.error()) is not None:
            counts["failed"] += 1
            failures.append({"stage": "pretrain", "label": cell.label, "error": err.get("error", "")})
        else:
            counts["pending"] += 1
    for cell in plan.finetune:
        run = store.finetune(study, cell.key)
        m = run.metrics()
        if m is not None:
            counts["done"] += 1
            for metric, value in m["metrics"].items():
                scores.append({"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "task": cell.task,
                               "metric": metric, "finetune_seed": cell.seed, "value": value, "key": cell.key})
            blimp.extend(_blimp_rows(cell, m))
            for metric, value in (m.get("majority") or {}).items():  # the same scored examples for every cell
                majority[(cell.task, metric)] = value
            run_id = {"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "finetune_seed": cell.seed,
                      "task": cell.task}
            ft_curves += [{**run_id, "step": p["step"], "epoch": p.get("epoch"), "loss": p["loss"]}
                          for p in m.get("curve") or []]
            ft_epochs += [{**run_id, "metric": k, "epoch": e["epoch"], "value": v}
                          for e in m.get("epochs") or [] for k, v in e["metrics"].items()]
        elif (err := run.error()) is not None:
            counts["failed"] += 1
            failures.append({"stage": "finetune", "label": cell.label, "error": err.get("error", "")})
        else:
            counts["pending"] += 1
    scores_df = pd.DataFrame(scores, columns=SCORE_COLUMNS)
    scores_df["pretrain_seed"] = scores_df["pretrain_seed"].astype("Int64")
    return StudyResults(
        scores=scores_df,
        pretrain=pd.DataFrame(pre, columns=PRETRAIN_COLUMNS),
        curves=pd.DataFrame(curves, columns=CURVE_COLUMNS),
        failures=failures,
        counts=counts,
        blimp=pd.DataFrame(blimp, columns=BLIMP_COLUMNS),
        majority=majority,
        ft_curves=pd.DataFrame(ft_curves, columns=FT_CURVE_COLUMNS),
        ft_epochs=pd.DataFrame(ft_epochs, columns=FT_EPOCH_COLUMNS),
    )


def _blimp_rows(cell, m: dict) -> list[dict]:
    """A zero-shot cell's per-phenomenon accuracies (and the overall one) as BLIMP_COLUMNS rows; none otherwise."""
    phen = m.get("by_phenomenon")
    if not isinstance(phen, dict):
        return []
    uni = m.get("unigram_by_phenomenon") or {}
    overall = {"overall": (m["metrics"].get("blimp_accuracy"), m["metrics"].get("blimp_unigram_accuracy"))}
    both = {p: (a, uni.get(p)) for p, a in phen.items()} | overall
    return [{"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "finetune_seed": cell.seed,
             "phenomenon": p, "accuracy": a, "unigram_accuracy": u} for p, (a, u) in both.items()]
