"""Tidy result tables (ablate.results.StudyResults) -> summary tables. Pure pandas, no I/O.

- summarize: scores -> one row per (variant, task, metric): n, median, mean, std, in the metric's own scale
  (fractions for accuracy/F1). The median runs over every (pretrain_seed, finetune_seed) score, as the
  paper's tables report medians over fine-tuning seeds.
- paper_style_table: summary -> rows variants, columns tasks, "median (mean ± std, n=N)" in points.
- pretrain_table: pretraining metrics -> per variant n, median, mean, std of each column.
- pretraining_margin: summary -> median(variant) - median(random-init) per task, in points: what pretraining bought.
"""

from __future__ import annotations

import math
from typing import Sequence

import pandas as pd

from ablate.expand import RANDOM_INIT
from ablate.metrics import METRICS

SUMMARY_COLUMNS = ["variant", "task", "metric", "n", "median", "mean", "std"]
PRETRAIN_STATS = ["heldout_ppl", "unigram_ppl", "tokens_seen", "wall_s", "tokens_per_s"]
MARGIN_COLUMNS = ["variant", "task", "metric", "n", "median", "random_init_n", "random_init_median", "margin"]
MISSING = "—"  # shown for a cell with no finished runs


def scale_of(metric: str) -> float:
    """100 for metrics shown in points (accuracy, F1), 1 otherwise (unknown names included)."""
    return 100.0 if metric in METRICS and METRICS.get(metric).percent else 1.0


def _stats(values: pd.Series) -> dict[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    n = len(v)
    return {
        "n": n,
        "median": float(v.median()) if n else math.nan,
        "mean": float(v.mean()) if n else math.nan,
        "std": float(v.std(ddof=1)) if n >= 2 else math.nan,  # one seed says nothing about spread
    }


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores (SCORE_COLUMNS) -> SUMMARY_COLUMNS, groups in order of first appearance."""
    if scores.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = [
        {"variant": variant, "task": task, "metric": metric, **_stats(g["value"])}
        for (variant, task, metric), g in scores.groupby(["variant", "task", "metric"], sort=False)
    ]
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["n"] = out["n"].astype(int)
    return out


def variant_rows(variants_order: Sequence[str], present: Sequence[str] = ()) -> list[str]:
    """The study's variants in file order, then any other variant that has results, random-init last."""
    order = [v for v in variants_order if v != RANDOM_INIT]
    order += [v for v in dict.fromkeys(present) if v not in order and v != RANDOM_INIT]
    if RANDOM_INIT in present or RANDOM_INIT in variants_order:
        order.append(RANDOM_INIT)
    return order


def format_cell(median: float, mean: float, std: float, n: int, scale: float = 1.0) -> str:
    """'83.0 (84.0 ± 4.3, n=4)'; '81.0 (n=1)' for a single run; MISSING when n == 0."""
    if not n or math.isnan(median):
        return MISSING
    if n < 2 or math.isnan(std):
        return f"{median * scale:.1f} (n={n})"
    return f"{median * scale:.1f} ({mean * scale:.1f} ± {std * scale:.1f}, n={n})"


def paper_style_table(summary: pd.DataFrame, metric: str, variants_order: Sequence[str]) -> pd.DataFrame:
    """Summary -> DataFrame of strings: index = variants (random-init last), columns = tasks with `metric`."""
    sub = summary[summary["metric"] == metric]
    tasks = list(dict.fromkeys(sub["task"]))
    rows = variant_rows(variants_order, list(sub["variant"]))
    scale = scale_of(metric)
    table = pd.DataFrame(MISSING, index=pd.Index(rows, name="variant"), columns=pd.Index(tasks, name="task"),
                         dtype=object)
    for r in sub.itertuples(index=False):
        table.loc[r.variant, r.task] = format_cell(r.median, r.mean, r.std, r.n, scale)
    return table


def pretrain_table(pretrain_df: pd.DataFrame) -> pd.DataFrame:
    """Pretraining metrics (PRETRAIN_COLUMNS) -> per variant: n, then <col>_median, <col>_mean, <col>_std."""
    cols = ["variant", "n"] + [f"{c}_{s}" for c in PRETRAIN_STATS for s in ("median", "mean", "std")]
    if pretrain_df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for variant, g in pretrain_df.groupby("variant", sort=False):
        row: dict[str, object] = {"variant": variant, "n": len(g)}
        for c in PRETRAIN_STATS:
            st = _stats(g[c]) if c in g else _stats(pd.Series(dtype=float))
            row.update({f"{c}_median": st["median"], f"{c}_mean": st["mean"], f"{c}_std": st["std"]})
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def pretraining_margin(summary: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per (variant, task) with a random-init result: median(variant) - median(random-init), in points.

    Positive means pretraining helped (for a higher-is-better metric). Medians are shown in points too.
    Empty (MARGIN_COLUMNS) when there is no random-init result for `metric` yet.
    """
    sub = summary[summary["metric"] == metric]
    ri = sub[sub["variant"] == RANDOM_INIT][["task", "n", "median"]]
    ri = ri.rename(columns={"n": "random_init_n", "median": "random_init_median"})
    pre = sub[sub["variant"] != RANDOM_INIT][["variant", "task", "metric", "n", "median"]]
    if ri.empty or pre.empty:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    out = pre.merge(ri, on="task", how="inner")
    scale = scale_of(metric)
    out["median"] = out["median"] * scale
    out["random_init_median"] = out["random_init_median"] * scale
    out["margin"] = out["median"] - out["random_init_median"]
    return out[MARGIN_COLUMNS].reset_index(drop=True)
