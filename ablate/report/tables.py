"""Analysis tables -> display frames: strings as the report shows them (verdicts, margins, scores beside the
paper's, the majority-class row, pretraining). Every number comes from ablate.analysis; these only format.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import pandas as pd

from ablate.analysis import aggregate, verdicts
from ablate.analysis.anchors import (BLIMP_TASK, EXPLORATORY, HELDOUT_BPC, HELDOUT_PPL, PRETRAINING_TASK,
                                     RELATION_TEXT, SANITY, SHARED_HELDOUT_PPL, paper_value, study_claims)
from ablate.analysis.results import StudyResults
from ablate.metrics import METRICS
from ablate.study.cells import RANDOM_INIT, control_variants, is_control
from ablate.study.identity import heldout_identity
from ablate.study.spec import StudySpec
from ablate.tasks import task_title


def num(x: Any, like: Any = None) -> str:
    """Compact number with digits set by the size of `like` (default x): 3.99, 123.4, 12,345; '—' for missing."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return aggregate.MISSING
    ref = abs(float(x if like is None or pd.isna(like) else like))
    if ref >= 1e7:  # FLOPs, tokens: scientific notation stays readable
        return f"{float(x):.3g}"
    digits = 0 if ref >= 1000 else 1 if ref >= 100 else 2
    return f"{float(x):,.{digits}f}"


def study_comparisons(study: StudySpec, results: StudyResults) -> pd.DataFrame:
    """The study's claims (anchors) checked on its results: verdicts.COMPARISON_COLUMNS."""
    # the baseline's control is RANDOM_INIT; another vocabulary's is checked against its first variant too
    others = [(c, v) for c, v in control_variants(study).items() if c != RANDOM_INIT]
    claims = study_claims(study.name, study.paper_table, list(study.variants), study.baseline, RANDOM_INIT,
                          other_controls=others)
    heldout = {name: heldout_identity(cfg) for name, cfg in study.variants.items()}
    return verdicts.compare(aggregate.values_long(results.scores, results.pretrain), claims, study.baseline, heldout)


# pretraining metrics -> their titles, in the order of the pretraining table
PRETRAIN_NAMES = {HELDOUT_PPL: "held-out MLM ppl", SHARED_HELDOUT_PPL: "held-out ppl, shared blocks",
                  "unigram_ppl": "unigram ppl", HELDOUT_BPC: "bits/char",
                  "heldout_nsp_accuracy": "held-out NSP acc.", "steps": "steps", "sequences_per_step": "sequences/step",
                  "tokens_per_step": "tokens/step", "tokens_seen": "tokens seen", "epochs": "epochs",
                  "flops": "FLOPs (est.)", "wall_s": "wall time (s)", "tokens_per_s": "tokens/s",
                  "peak_memory_mb": "peak memory (MB)"}


def _claim_text(r) -> str:
    """'a ≥ b (δ 1.0)': the claim of a comparison row, with its margin where its kind has one."""
    if not isinstance(r.relation, str):  # None (or NaN after a CSV round trip): no direction stated
        return f"{r.a} vs {r.b}"
    margin = f" (δ {r.margin:g})" if isinstance(r.kind, str) and r.kind != verdicts.BETTER and not pd.isna(r.margin) else ""
    return f"{r.a} {RELATION_TEXT.get(r.relation, r.relation)} {r.b}{margin}"


def _seeds_text(r) -> str:
    """'10 (4-200+)': pretraining seeds for 80% power, and the range over the seed-level SD's interval."""
    if pd.isna(r.seeds_needed):
        return aggregate.MISSING
    ends = ["?" if pd.isna(x) else f"{int(x)}" for x in (r.seeds_needed_low, r.seeds_needed_high)]
    ends[1] = "1000+" if ends[1] == "?" else ends[1]
    return f"{int(r.seeds_needed)} ({ends[0]}-{ends[1]})"


def _source_text(r, directed: bool) -> str:
    """Whose claim a row checks: the paper's (a table, or its text where it names the task), ours (an expected
    direction on held-out perplexity, after the paper's text; random init below pretraining), or nobody's."""
    if r.source == SANITY:
        return "expected"
    if r.source in ("", EXPLORATORY) or not isinstance(r.source, str):
        return ""
    if not directed:
        return f"paper, {r.source}: names no task"
    if r.task == BLIMP_TASK or (r.task == PRETRAINING_TASK and not r.source.startswith("table")):
        return f"expected, after {r.source}"  # the paper reports no such number there: the direction is ours
    return f"paper, {r.source}"


def verdict_frame(cmp: pd.DataFrame) -> pd.DataFrame:
    """Comparisons -> display strings: one row per (claim, task, metric), the verdict table of a study page."""
    rows = []
    for r in cmp.itertuples(index=False):
        directed = isinstance(r.relation, str)
        interval = (aggregate.MISSING if pd.isna(r.ci_low)
                    else f"[{num(r.ci_low, r.spread)}, {num(r.ci_high, r.spread)}]")
        unit = "run" if is_control(r.a) or is_control(r.b) else "seed"
        rows.append({
            "claim": _claim_text(r),
            "source": _source_text(r, directed),
            "task": r.task,
            "metric": (METRICS.get(r.metric).display if r.metric in METRICS else PRETRAIN_NAMES.get(r.metric, r.metric))
            + (f" ({r.caveat})" if isinstance(r.caveat, str) and r.caveat else ""),
            "ours a - b": num(r.diff, r.spread),
            "95% interval": interval,
            "units": (f"{r.n} seeds paired" if r.paired else f"{r.n_a} vs {r.n_b} {unit}s"),
            "fine-tuning SD": aggregate.MISSING if pd.isna(r.finetune_sd) else f"{r.finetune_sd:.2f}",
            "paper a - b": aggregate.MISSING if pd.isna(r.paper_diff)
            else f"{r.paper_diff:+.{1 if aggregate.scale_of(r.metric) == 100.0 else 2}f}",
            "p": aggregate.MISSING if pd.isna(r.p) else f"{r.p:.3f}",
            "verdict": r.verdict,
            "adjusted (Holm)": r.verdict_holm,
            "seeds for 80% power": _seeds_text(r),
        })
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def margin_table(margin: pd.DataFrame, variants: Sequence[str]) -> Optional[pd.DataFrame]:
    """Long margin frame -> rows variants, columns tasks, cells '+11.0 (83.0 vs 72.0)' in points."""
    if margin.empty:
        return None
    rows = [r for r in aggregate.variant_rows(variants, list(margin["variant"])) if not is_control(r)]
    tasks = list(dict.fromkeys(margin["task"]))
    df = pd.DataFrame(aggregate.MISSING, index=pd.Index(rows, name="variant"), columns=tasks, dtype=object)
    for r in margin.itertuples(index=False):
        df.loc[r.variant, r.task] = f"{r.margin:+.1f} ({r.median:.1f} vs {r.random_init_median:.1f})"
    return df


def pretrain_frame(pre: pd.DataFrame, variants: Sequence[str]) -> Optional[pd.DataFrame]:
    """aggregate.pretrain_table -> display strings: 'median (mean ± std)' per column."""
    if pre.empty:
        return None
    order = [v for v in aggregate.variant_rows(variants, list(pre["variant"])) if v in set(pre["variant"])]
    pre = pre.set_index("variant").loc[order]
    out = pd.DataFrame(index=pd.Index(order, name="variant"))
    out["runs"] = pre["n"].astype(int).astype(str)
    for col, title in PRETRAIN_NAMES.items():
        if f"{col}_median" not in pre or pre[f"{col}_median"].isna().all():
            continue  # e.g. NSP accuracy in a study without NSP
        med, mean, std = pre[f"{col}_median"], pre[f"{col}_mean"], pre[f"{col}_std"]
        out[title] = [num(m) if pd.isna(s) else f"{num(m)} ({num(a, m)} ± {num(s, m)})"
                      for m, a, s in zip(med, mean, std)]
    return out


def score_tables(summary: pd.DataFrame, columns: Sequence[tuple[str, str]], variants: Sequence[str],
                  anchor: Optional[dict], ft=None, majority: Optional[dict] = None
                  ) -> tuple[pd.DataFrame, Optional[pd.DataFrame], list[str], list[str]]:
    """The paper-style table (each task on its primary metric, the paper's number beside ours, the majority-class
    score below), the table of every other metric (None without any), the metrics where lower is better, and the
    cells whose median is at or below the majority class."""
    def label(metric: str) -> str:
        return METRICS.get(metric).display if metric in METRICS else metric

    every = list(dict.fromkeys(zip(summary["task"], summary["metric"])))
    labels = {(t, m): f"{task_title(t, ft) if ft is not None else t} {label(m)}" for t, m in every}
    paper = {(v, t, m): p for v in variants for t, m in columns if (p := paper_value(anchor, v, t, m)) is not None}
    main = aggregate.task_table(summary, columns, variants, paper, labels)
    main, floor = aggregate.with_majority(main, summary, {k: v for k, v in (majority or {}).items() if k in columns},
                                          labels)
    others = [c for c in every if c not in set(columns)]
    other = aggregate.task_table(summary, others, variants, None, labels) if others else None
    if other is not None:
        other, more = aggregate.with_majority(other, summary, {k: v for k, v in (majority or {}).items()
                                                               if k in set(others)}, labels)
        floor += more
    lower = sorted({label(m) for _, m in every if aggregate.higher_is_better(m) is False})
    return main, other, lower, floor
