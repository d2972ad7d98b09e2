"""Tidy result tables (ablate.analysis.results.StudyResults) -> summary tables. Pure pandas + scipy, no I/O.

- summarize: scores -> one row per (variant, task, metric): n, median, mean, std and a 95% t interval of the
  mean, in the metric's own scale (fractions for accuracy/F1). The median runs over every
  (pretrain_seed, finetune_seed) score, as the paper's tables report medians over fine-tuning seeds.
- primary_columns: each task's headline metric (the paper's column: SQuAD F1, accuracy elsewhere).
- task_table / paper_style_table: summary -> rows variants, columns tasks (the paper's number beside ours), in points.
- pretrain_table: pretraining metrics -> per variant n, median, mean, std of each column.
- pretraining_margin: summary -> median(variant) - median(random-init) per task, in points: what pretraining bought.
- values_long: scores and held-out perplexity in one long table, which ablate.analysis.verdicts compares.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ablate.analysis.anchors import HELDOUT_BPC, HELDOUT_PPL, PRETRAINING_TASK, SHARED_HELDOUT_PPL
from ablate.metrics import METRICS
from ablate.study.cells import RANDOM_INIT, is_control
from ablate.tasks import TASKS

CONFIDENCE = 0.95  # every interval in the report
SUMMARY_COLUMNS = ["variant", "task", "metric", "n", "median", "mean", "std", "ci_low", "ci_high"]
PRETRAIN_STATS = ["heldout_ppl", SHARED_HELDOUT_PPL, "unigram_ppl", "heldout_bpc", "heldout_nsp_accuracy", "steps",
                  "sequences_per_step", "tokens_per_step", "tokens_seen", "epochs", "flops", "wall_s", "tokens_per_s",
                  "peak_memory_mb"]
MARGIN_COLUMNS = ["variant", "task", "metric", "n", "median", "random_init_n", "random_init_median", "margin"]
MISSING = "—"  # shown for a cell with no finished runs
PRETRAIN_METRICS = {HELDOUT_PPL: False, HELDOUT_BPC: False, SHARED_HELDOUT_PPL: False}  # pretraining metrics in verdicts -> higher_is_better
VALUE_COLUMNS = ["variant", "pretrain_seed", "finetune_seed", "task", "metric", "value"]


def higher_is_better(metric: str) -> Optional[bool]:
    """From the metric registry (or PRETRAIN_METRICS); None for a name neither knows."""
    if metric in METRICS:
        return METRICS.get(metric).higher_is_better
    return PRETRAIN_METRICS.get(metric)


def primary_metric(task: str, present: Sequence[str]) -> Optional[str]:
    """The metric a task is judged on: its first registered metric that has results (SQuAD: F1, MRPC: accuracy,
    as in the paper's columns); for an unknown task the first present; held-out perplexity for pretraining."""
    if task == PRETRAINING_TASK:
        return HELDOUT_PPL
    if task in TASKS:
        for m in TASKS.get(task).metrics:
            if m in present:
                return m
    return present[0] if len(present) else None


def primary_columns(values: pd.DataFrame) -> list[tuple[str, str]]:
    """(task, primary metric) for every task with results, in order of first appearance."""
    out = []
    for task in dict.fromkeys(values["task"]):
        metric = primary_metric(task, list(dict.fromkeys(values[values["task"] == task]["metric"])))
        if metric is not None:
            out.append((task, metric))
    return out


def scale_of(metric: str) -> float:
    """100 for metrics shown in points (accuracy, F1), 1 otherwise (unknown names included)."""
    return 100.0 if metric in METRICS and METRICS.get(metric).percent else 1.0


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean over seeds; (nan, nan) below two values, (x, x) when all are equal."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return math.nan, math.nan
    sem = stats.sem(v)
    if sem == 0:  # scipy would give nan for a zero scale; the runs agree exactly
        return float(v[0]), float(v[0])
    low, high = stats.t.interval(confidence, len(v) - 1, loc=v.mean(), scale=sem)
    return float(low), float(high)


def _stats(values: pd.Series) -> dict[str, float]:
    v = pd.to_numeric(values, errors="coerce").dropna().astype(float)
    n = len(v)
    low, high = mean_interval(v)
    return {
        "n": n,
        "median": float(v.median()) if n else math.nan,
        "mean": float(v.mean()) if n else math.nan,
        "std": float(v.std(ddof=1)) if n >= 2 else math.nan,  # one seed says nothing about spread
        "ci_low": low,
        "ci_high": high,
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
    """The study's variants in file order, then any other variant that has results, the random-init controls last
    (the baseline vocabulary's first)."""
    order = [v for v in variants_order if not is_control(v)]
    order += [v for v in dict.fromkeys(present) if v not in order and not is_control(v)]
    if RANDOM_INIT in present or RANDOM_INIT in variants_order:
        order.append(RANDOM_INIT)
    order += [v for v in dict.fromkeys(list(variants_order) + list(present)) if is_control(v) and v not in order]
    return order


def format_cell(median: float, mean: float, std: float, n: int, scale: float = 1.0,
                ci: tuple[float, float] = (math.nan, math.nan)) -> str:
    """'83.0 (84.0 ± 4.3 [77.2, 90.8], n=4)': median (mean ± std [95% interval of the mean], runs).

    '81.0 (n=1)' for a single run; MISSING when n == 0.
    """
    if not n or math.isnan(median):
        return MISSING
    if n < 2 or math.isnan(std):
        return f"{median * scale:.1f} (n={n})"
    interval = "" if math.isnan(ci[0]) else f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]"
    return f"{median * scale:.1f} ({mean * scale:.1f} ± {std * scale:.1f}{interval}, n={n})"


def task_table(summary: pd.DataFrame, columns: Sequence[tuple[str, str]], variants_order: Sequence[str],
               paper: Optional[dict[tuple[str, str, str], float]] = None,
               labels: Optional[dict] = None) -> pd.DataFrame:
    """Summary -> DataFrame of strings in the paper's layout: index = variants (random-init last), one column per
    (task, metric) in `columns`, named by `labels` (default: the task). `paper` maps (variant, task, metric) to
    the paper's number in points; a column with any gets a "<label> (paper)" column right after ours.
    """
    paper, labels = paper or {}, labels or {}
    wanted = set(columns)
    sub = summary[pd.Series([(t, m) in wanted for t, m in zip(summary["task"], summary["metric"])],
                            index=summary.index, dtype=bool)]
    rows = variant_rows(variants_order, list(sub["variant"]))
    names, with_paper = [], {(t, m) for _, t, m in paper}
    for col in columns:
        names.append(labels.get(col, col[0]))
        if col in with_paper:
            names.append(f"{labels.get(col, col[0])} (paper)")
    table = pd.DataFrame(MISSING, index=pd.Index(rows, name="variant"), columns=pd.Index(names, name="task"),
                         dtype=object)
    for r in sub.itertuples(index=False):
        table.loc[r.variant, labels.get((r.task, r.metric), r.task)] = format_cell(
            r.median, r.mean, r.std, r.n, scale_of(r.metric), (r.ci_low, r.ci_high))
    for (variant, task, metric), value in paper.items():
        if variant in table.index and (task, metric) in set(columns):
            table.loc[variant, f"{labels.get((task, metric), task)} (paper)"] = f"{value:.1f}"
    return table


def paper_style_table(summary: pd.DataFrame, metric: str, variants_order: Sequence[str],
                      paper: Optional[dict[tuple[str, str], float]] = None) -> pd.DataFrame:
    """task_table for one metric: columns = the tasks that have it; `paper` maps (variant, task) to points."""
    tasks = list(dict.fromkeys(summary[summary["metric"] == metric]["task"]))
    return task_table(summary, [(t, metric) for t in tasks], variants_order,
                      {(v, t, metric): x for (v, t), x in (paper or {}).items()})


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


def pretraining_margin(summary: pd.DataFrame, metric: str = "accuracy",
                       columns: Optional[Sequence[tuple[str, str]]] = None,
                       controls: Optional[dict[str, str]] = None) -> pd.DataFrame:
    """Per (variant, task) with a result of its random-init control: median(variant) - median(control), in points.

    On `metric` for every task that has it, or on the (task, metric) pairs in `columns` (e.g. primary_columns).
    `controls`: variant -> its control (ablate.study.cells.controls_of: one per vocabulary); a variant not in it,
    and every variant without it, against RANDOM_INIT. Positive means pretraining helped (for a higher-is-better
    metric). Medians are shown in points too. Empty (MARGIN_COLUMNS) when there is no random-init result yet.
    """
    wanted = set(columns) if columns is not None else {(t, metric) for t in summary["task"]}
    sub = summary[pd.Series([(t, m) in wanted for t, m in zip(summary["task"], summary["metric"])],
                            index=summary.index, dtype=bool)]
    control = sub["variant"].map(is_control).astype(bool)
    ri = sub[control][["variant", "task", "metric", "n", "median"]]
    ri = ri.rename(columns={"variant": "control", "n": "random_init_n", "median": "random_init_median"})
    pre = sub[~control][["variant", "task", "metric", "n", "median"]]
    if ri.empty or pre.empty:
        return pd.DataFrame(columns=MARGIN_COLUMNS)
    pre = pre.assign(control=[(controls or {}).get(v, RANDOM_INIT) for v in pre["variant"]])
    out = pre.merge(ri, on=["control", "task", "metric"], how="inner")
    scale = out["metric"].map(scale_of)
    out["median"] = out["median"] * scale
    out["random_init_median"] = out["random_init_median"] * scale
    out["margin"] = out["median"] - out["random_init_median"]
    return out[MARGIN_COLUMNS].reset_index(drop=True)


# ---------------------------------------------------------------- differences and verdicts


def values_long(scores: pd.DataFrame, pretrain_df: pd.DataFrame) -> pd.DataFrame:
    """Fine-tuning scores plus held-out perplexity (on the format's own blocks and on the shared FULL-SENTENCES
    blocks) and bits per character (task PRETRAINING_TASK, no fine-tuning seed) -> VALUE_COLUMNS."""
    parts = [scores.reindex(columns=VALUE_COLUMNS)]
    for metric in (HELDOUT_PPL, HELDOUT_BPC, SHARED_HELDOUT_PPL):
        if not pretrain_df.empty and metric in pretrain_df:
            parts.append(pd.DataFrame({
                "variant": pretrain_df["variant"], "pretrain_seed": pretrain_df["seed"], "finetune_seed": pd.NA,
                "task": PRETRAINING_TASK, "metric": metric, "value": pretrain_df[metric],
            }).dropna(subset=["value"]))
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame(columns=VALUE_COLUMNS)
    return pd.concat(parts, ignore_index=True)[VALUE_COLUMNS]


def blimp_table(blimp: pd.DataFrame, variants_order: Sequence[str], baseline: str,
                reference: Optional[dict[str, dict[str, float]]] = None) -> pd.DataFrame:
    """Zero-shot BLiMP rows -> rows (variants, random init, the baseline's unigram baseline, reference models),
    columns (phenomena, then overall), cells "mean (n=k)" in points over the scored models (checkpoints, or
    random-init seeds); a reference model's cell is its published accuracy."""
    if blimp.empty:
        return pd.DataFrame()
    phenomena = sorted(set(blimp["phenomenon"]) - {"overall"}) + ["overall"]
    rows: dict[str, dict[str, str]] = {}

    def add(label: str, sub: pd.DataFrame, column: str) -> None:
        per = sub.groupby("phenomenon")[column]
        rows[label] = {p: (f"{100 * per.get_group(p).mean():.1f} (n={per.get_group(p).count()})"
                           if p in per.groups and per.get_group(p).count() else MISSING) for p in phenomena}

    for v in variant_rows(variants_order, list(dict.fromkeys(blimp["variant"]))):
        add(v, blimp[blimp["variant"] == v], "accuracy")
    base = blimp[blimp["variant"] == baseline]
    if len(base) and base["unigram_accuracy"].notna().any():
        add(f"unigram ({baseline}'s tokenizer)", base.drop_duplicates("phenomenon"), "unigram_accuracy")
    for model, scores in (reference or {}).items():
        rows[f"{model} (reference)"] = {p: f"{100 * scores[p]:.1f}" if p in scores else MISSING for p in phenomena}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=phenomena)
    out.index.name = "model"
    return out


MAJORITY_ROW = "majority class"


def with_majority(table: pd.DataFrame, summary: pd.DataFrame, majority: dict[tuple[str, str], float],
                  labels: Optional[dict] = None) -> tuple[pd.DataFrame, list[str]]:
    """A task table with a MAJORITY_ROW (the score of always answering the scored examples' most frequent label,
    in points) and the cells whose median is at or below it: [(variant, column)] as "variant: column" strings."""
    labels = labels or {}
    if not majority or table.empty:
        return table, []
    out = table.copy()
    out.loc[MAJORITY_ROW] = MISSING
    floor = []
    for (task, metric), value in majority.items():
        col = labels.get((task, metric), task)
        if col not in out.columns:
            continue
        out.loc[MAJORITY_ROW, col] = f"{scale_of(metric) * value:.1f}"
        sub = summary[(summary["task"] == task) & (summary["metric"] == metric)]
        floor += [f"{r.variant}: {col}" for r in sub.itertuples(index=False) if r.median <= value + 1e-12]
    return out, floor
