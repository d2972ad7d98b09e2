"""Claims x values -> verdicts, with the pretraining seed as the unit.

For each claim of the paper (or each variant against the baseline) and each task both arms have: the difference
a - b, its 95% interval, a p-value, a verdict against the claim, the verdict adjusted for the number of claims a
study checks (Holm), and the pretraining seeds that would give 80% power at the paper's effect. Pure pandas +
scipy, no I/O.

The unit is the pretraining seed: fine-tunes of one checkpoint share it, so a pretrained arm contributes one
number per checkpoint (the mean over its fine-tuning seeds) and the interval is a paired t interval over the
pretraining seeds both arms share (n - 1 degrees of freedom). A random-init run is its own model, so the control
contributes one number per run, compared with Welch's t. Held-out perplexity is one number per checkpoint
already. How much fine-tuning alone moves a score is shown beside (`finetune_sd`).

Claim kinds (Claim.kind, from the paper's relation; margin delta in the claim's units, anchors' `margins`):
- better: a is better than b (or worse); a one-sided direction.
- noninferior: a >= b - delta ("comparable or better"); the paper's ">=" and "<=".
- equivalent: |a - b| <= delta ("about equal"), two one-sided tests; the paper's "~".
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ablate.analysis.aggregate import CONFIDENCE, higher_is_better, primary_columns, scale_of
from ablate.study.cells import RANDOM_INIT, is_control
from ablate.analysis.anchors import (EXPLORATORY, HELDOUT_BPC, HELDOUT_PPL, PRETRAINING_TASK, SANITY,
                                     SHARED_HELDOUT_PPL, Claim)

COMPARISON_COLUMNS = [
    "a", "b", "task", "metric", "relation", "kind", "margin", "source", "note", "expected", "n", "n_a", "n_b",
    "paired", "diff", "se", "df", "spread", "ci_low", "ci_high", "p", "paper_diff", "verdict", "p_holm",
    "verdict_holm", "finetune_sd", "seeds_needed", "seeds_needed_low", "seeds_needed_high", "caveat",
]
# Why a held-out comparison is not plain perplexity on the same blocks (heldout_metric)
OWN_BLOCKS = "each arm on its own input format's held-out blocks: not like for like"
OTHER_UNITS = "bits per character: perplexities over different vocabularies do not compare"
OTHER_TEXT = ("bits per character, but on different held-out text: each tokenizer's first heldout_tokens tokens "
              "cover a different number of documents")
AGREES, DISAGREES, INCONCLUSIVE, NO_CLAIM = "agrees", "disagrees", "inconclusive", "no claim"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE)
BETTER, NONINFERIOR, EQUIVALENT = "better", "noninferior", "equivalent"
KINDS = {">": BETTER, "<": BETTER, "better": BETTER, "worse": BETTER, ">=": NONINFERIOR, "<=": NONINFERIOR,
         "~": EQUIVALENT}
ALPHA = 1 - CONFIDENCE  # a verdict needs the 95% interval clear of its boundary: each one-sided test at ALPHA / 2
POWER = 0.8  # seeds_needed: pretraining seeds for this power at the paper's effect
# The rules, shown on every report page; `verdict` implements them. d = a - b, turned so the paper's side is +.
VERDICT_RULES = (
    (BETTER, "a better than b", "agrees when the 95% interval of d lies above 0, disagrees when below 0, "
                                "else inconclusive"),
    (NONINFERIOR, "a at least b - δ", "agrees when the interval lies above -δ, disagrees when it lies below -δ, "
                                      "else inconclusive"),
    (EQUIVALENT, "|a - b| at most δ", "agrees when the interval lies inside [-δ, δ] (two one-sided tests), "
                                      "disagrees when it lies wholly outside, else inconclusive"),
    ("adjusted", "Holm, per study", "a verdict stands only if its p-value, Holm-adjusted over the study's claims "
                                    "(random-init checks a family of their own), is below 0.05; else inconclusive"),
)


def kind_of(relation: Optional[str]) -> Optional[str]:
    """The claim kind of a paper relation (None: no direction, no verdict)."""
    return KINDS.get(relation) if relation is not None else None


def heldout_metric(a: str, b: str, heldout: Optional[Mapping[str, tuple[Hashable, Hashable]]]) -> tuple[str, str]:
    """(metric, caveat) on which two arms' held-out losses compare.

    heldout: variant -> (which held-out blocks, which token units), e.g. study.identity.heldout_identity.
    Perplexity when both are shared (or unknown); bits per character when the tokenizers differ, since a
    perplexity's unit is the token; a caveat when the text or blocks differ (another input format packs other text
    the other way; a token budget covers other text under another tokenizer).
    """
    if not heldout or a not in heldout or b not in heldout:
        return HELDOUT_PPL, ""
    (text_a, units_a), (text_b, units_b) = heldout[a], heldout[b]
    if units_a == units_b:
        return HELDOUT_PPL, OWN_BLOCKS if text_a != text_b else ""
    return HELDOUT_BPC, OTHER_TEXT if text_a != text_b else OTHER_UNITS


def _has(values: pd.DataFrame, metric: str, *variants: str) -> bool:
    """Whether every one of the variants has a value of the (pretraining) metric."""
    arms = set(values[(values["task"] == PRETRAINING_TASK) & (values["metric"] == metric)]["variant"])
    return all(v in arms for v in variants)


def unit_values(values: pd.DataFrame, variant: str, task: str, metric: str) -> pd.Series:
    """One value per independent model: a pretrained arm's checkpoint means over fine-tuning seeds (index: the
    pretraining seed), or the random-init control's runs (index: 'r<finetune seed>', each run its own model)."""
    sub = values[(values["variant"] == variant) & (values["task"] == task) & (values["metric"] == metric)]
    v = pd.to_numeric(sub["value"], errors="coerce").to_numpy(dtype=float)
    seeds = sub["pretrain_seed"].astype(object)
    if len(sub) and seeds.isna().all():
        keys = [f"r{f}" for f in sub["finetune_seed"].astype(object)]
    else:
        keys = [str(s) for s in seeds]
    return pd.Series(v, index=keys).dropna().groupby(level=0).mean()


def finetune_sd(values: pd.DataFrame, variants: Sequence[str], task: str, metric: str) -> float:
    """Pooled SD of fine-tuning seeds within a checkpoint, over the given arms' checkpoints (nan where no checkpoint
    has two fine-tunes): how much fine-tuning alone moves a score."""
    sub = values[values["variant"].isin(list(variants)) & (values["task"] == task) & (values["metric"] == metric)
                 & values["pretrain_seed"].notna() & values["finetune_seed"].notna()]
    if sub.empty:
        return math.nan
    x = pd.to_numeric(sub["value"], errors="coerce")
    groups = x.groupby([sub["variant"], sub["pretrain_seed"].astype(object)])
    ss = float(groups.apply(lambda g: ((g - g.mean()) ** 2).sum()).sum())
    dof = int((groups.size() - 1).clip(lower=0).sum())
    return math.sqrt(ss / dof) if dof else math.nan


def paired_interval(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paired differences [..., n] (one per pretraining seed) -> (mean, se, ci_low, ci_high) over the last axis, a
    Student-t interval with n - 1 degrees of freedom; vectorised, so a simulation can check its coverage."""
    d = np.asarray(diffs, dtype=float)
    n = d.shape[-1]
    mean = d.mean(-1)
    se = d.std(-1, ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * se
    return mean, se, mean - half, mean + half


def _t_interval(est: float, se: float, df: float) -> tuple[float, float]:
    if math.isnan(se) or math.isnan(df):
        return math.nan, math.nan
    if se == 0:
        return est, est
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se
    return est - half, est + half


def difference(values: pd.DataFrame, a: str, b: str, task: str, metric: str) -> dict:
    """a - b on (task, metric) with the pretraining seed as the unit: paired over the pretraining seeds both arms
    share (two or more), else Welch's unpaired difference of the arms' unit means (random init against a
    pretrained arm). Returns n (pairs, or the smaller arm's units), n_a, n_b, paired, diff, se, df, spread (SD of
    one seed's difference), ci_low, ci_high, in the metric's own scale; nan interval below two units per arm.
    """
    xa, xb = unit_values(values, a, task, metric), unit_values(values, b, task, metric)
    shared = xa.index.intersection(xb.index)
    nan = math.nan
    out = {"n_a": len(xa), "n_b": len(xb)}
    if len(shared) >= 2 or (len(shared) == 1 and min(len(xa), len(xb)) < 2):
        d = xa[shared] - xb[shared]
        n, diff = len(d), float(d.mean())
        if n < 2:
            return {**out, "n": n, "paired": True, "diff": diff, "se": nan, "df": nan, "spread": nan,
                    "ci_low": nan, "ci_high": nan}
        _, se, low, high = paired_interval(d.to_numpy())
        if se == 0:
            low = high = diff
        return {**out, "n": n, "paired": True, "diff": diff, "se": float(se), "df": float(n - 1),
                "spread": float(d.std(ddof=1)), "ci_low": float(low), "ci_high": float(high)}
    n = min(len(xa), len(xb))
    diff = float(xa.mean() - xb.mean()) if n else nan
    if n < 2:
        return {**out, "n": n, "paired": False, "diff": diff, "se": nan, "df": nan, "spread": nan,
                "ci_low": nan, "ci_high": nan}
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1)) if se > 0 else float(len(xa) + len(xb) - 2)
    low, high = _t_interval(diff, se, df)
    return {**out, "n": n, "paired": False, "diff": diff, "se": se, "df": float(df),
            "spread": math.sqrt(xa.var(ddof=1) + xb.var(ddof=1)), "ci_low": low, "ci_high": high}


def expected_sign(relation: Optional[str], higher_better: Optional[bool]) -> Optional[int]:
    """The sign the paper found for a - b on the raw value: +1, -1, 0 (about equal), None (no direction known)."""
    if relation in (">", ">="):
        return 1
    if relation in ("<", "<="):
        return -1
    if relation == "~":
        return 0
    if relation in ("better", "worse") and higher_better is not None:
        return (1 if higher_better else -1) * (1 if relation == "better" else -1)
    return None


def verdict(ci_low: float, ci_high: float, expected: Optional[int], kind: Optional[str] = None,
            margin: float = 0.0) -> str:
    """The verdict of one row by VERDICT_RULES: the claim's kind (default: `better`, or `equivalent` when
    expected is 0), the paper's side `expected` (+1: a above b), the margin delta, the 95% interval of a - b.
    An `equivalent` claim with no margin can never agree (nothing is exactly equal)."""
    if expected is None:
        return NO_CLAIM
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INCONCLUSIVE
    kind = kind or (EQUIVALENT if expected == 0 else BETTER)
    margin = abs(margin or 0.0)
    if kind == EQUIVALENT:
        if -margin < ci_low and ci_high < margin:
            return AGREES
        return DISAGREES if ci_low > margin or ci_high < -margin else INCONCLUSIVE
    lo, hi = (ci_low, ci_high) if expected > 0 else (-ci_high, -ci_low)  # turned so the paper's side is +
    bound = 0.0 if kind == BETTER else -margin
    if lo > bound:
        return AGREES
    return DISAGREES if hi < bound else INCONCLUSIVE


def p_value(diff: float, se: float, df: float, expected: Optional[int], kind: Optional[str] = None,
            margin: float = 0.0) -> float:
    """The p-value behind the row's verdict: twice the smaller of the one-sided p-values for "agrees" and for
    "disagrees" (capped at 1), so p < 0.05 exactly when the 95% interval gives a verdict. nan without a claim or
    an interval."""
    if expected is None or any(math.isnan(x) for x in (diff, se, df)):
        return math.nan
    kind = kind or (EQUIVALENT if expected == 0 else BETTER)
    margin = abs(margin or 0.0)

    def above(bound: float, x: float) -> float:  # one-sided p that the true d exceeds `bound`, having seen x
        if se == 0:
            return 0.0 if x > bound else 1.0
        return float(stats.t.sf((x - bound) / se, df))

    if kind == EQUIVALENT:
        agree = max(above(-margin, diff), above(-margin, -diff))  # TOST: d > -delta and d < delta
        disagree = min(above(margin, diff), above(margin, -diff))
    else:
        x = diff if expected > 0 else -diff
        bound = 0.0 if kind == BETTER else -margin
        agree, disagree = above(bound, x), above(-bound, -x)
    return min(1.0, 2 * min(agree, disagree))


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error); nan stays nan and is not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); nan stays nan and is not counted."""
    p = np.asarray(p, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 1.0
    for i in range(m - 1, -1, -1):
        idx = order[i]
        running = min(running, p[idx] * m / (i + 1))
        out[idx] = min(1.0, running)
    return out


def adjusted(verdicts: Sequence[str], p_adjusted: Sequence[float]) -> list[str]:
    """A raw verdict stands where its adjusted p-value is below 0.05; agrees/disagrees become inconclusive else."""
    return [v if v not in (AGREES, DISAGREES) or (not math.isnan(p) and p < ALPHA) else INCONCLUSIVE
            for v, p in zip(verdicts, p_adjusted)]


def families(comparisons: pd.DataFrame) -> pd.Series:
    """Each row's multiplicity family: 'paper' (the paper's claims and our expected directions), 'sanity'
    (random init against the baseline), or None (exploratory rows carry no claim and no test)."""
    return comparisons["source"].map(lambda s: None if s == EXPLORATORY else "sanity" if s == SANITY else "paper")


def seeds_needed(spread: float, effect: Optional[float], power: float = POWER, max_n: int = 1000) -> Optional[int]:
    """Smallest number of pretraining seeds whose paired t-test (two-sided, 5%) has `power` against a true
    difference `effect` when one seed's difference has SD `spread`; None when either is unknown, the effect is 0,
    or more than max_n would be needed."""
    if effect is None or spread is None or math.isnan(effect) or math.isnan(spread) or effect == 0:
        return None
    if spread == 0:
        return 2
    n = np.arange(2, max_n + 1)
    crit = stats.t.ppf(1 - ALPHA / 2, n - 1)
    nc = abs(effect) / spread * np.sqrt(n)
    got = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)
    ok = np.nonzero(got >= power)[0]
    return int(n[ok[0]]) if len(ok) else None


def spread_range(spread: float, n: int) -> tuple[float, float]:
    """95% interval of a standard deviation estimated from n values (chi-square): how unsure an SD from 3 seeds is."""
    if n < 2 or spread is None or math.isnan(spread):
        return math.nan, math.nan
    df = n - 1
    return (spread * math.sqrt(df / stats.chi2.ppf(1 - ALPHA / 2, df)),
            spread * math.sqrt(df / stats.chi2.ppf(ALPHA / 2, df)))


def _claim_rows(values: pd.DataFrame, claim: Claim, columns: Sequence[tuple[str, str]],
                heldout: Optional[Mapping[str, tuple[Hashable, Hashable]]] = None) -> list[dict]:
    rows = []
    for task, metric in columns:
        if (claim.tasks is None and task == PRETRAINING_TASK) or (claim.tasks is not None and task not in claim.tasks):
            continue
        caveat = ""
        if task == PRETRAINING_TASK:
            metric, caveat = heldout_metric(claim.a, claim.b, heldout)
            if caveat == OWN_BLOCKS and _has(values, SHARED_HELDOUT_PPL, claim.a, claim.b):
                metric, caveat = SHARED_HELDOUT_PPL, ""  # both also scored on the same FULL-SENTENCES blocks
        arms = set(values[(values["task"] == task) & (values["metric"] == metric)]["variant"])
        if claim.a not in arms or claim.b not in arms:
            continue
        d = difference(values, claim.a, claim.b, task, metric)
        scale = scale_of(metric)
        expected = expected_sign(claim.relation, higher_is_better(metric))
        kind = kind_of(claim.relation) if expected is not None else None
        margin = claim.margin if kind in (NONINFERIOR, EQUIVALENT) and scale == 100.0 else 0.0
        paper = claim.paper.get((task, metric))
        d.update({k: d[k] * scale for k in ("diff", "se", "spread", "ci_low", "ci_high")})
        ft_sd = finetune_sd(values, [claim.a, claim.b], task, metric) * scale
        needed = low = high = None
        if scale == 100.0 and d["paired"]:  # the paper's effect is in points; seeds pair only between checkpoints
            needed = seeds_needed(d["spread"], paper)
            sd_low, sd_high = spread_range(d["spread"], d["n"])
            low, high = seeds_needed(sd_low, paper), seeds_needed(sd_high, paper)
        rows.append({
            "a": claim.a, "b": claim.b, "task": task, "metric": metric, "relation": claim.relation, "kind": kind,
            "margin": margin if kind in (NONINFERIOR, EQUIVALENT) else None, "source": claim.source,
            "note": claim.note, "expected": expected, **d,
            "p": p_value(d["diff"], d["se"], d["df"], expected, kind, margin), "paper_diff": paper,
            "verdict": verdict(d["ci_low"], d["ci_high"], expected, kind, margin),
            "finetune_sd": ft_sd, "seeds_needed": needed, "seeds_needed_low": low, "seeds_needed_high": high,
            "caveat": caveat,
        })
    return rows


def compare(values: pd.DataFrame, claims: Sequence[Claim], baseline: Optional[str] = None,
            heldout: Optional[Mapping[str, tuple[Hashable, Hashable]]] = None) -> pd.DataFrame:
    """values_long x claims -> COMPARISON_COLUMNS, one row per claim and task both arms have, on the task's
    primary metric (primary_columns; held-out perplexity for PRETRAINING_TASK).

    With `baseline`, every other variant also gets a row against it (relation None, verdict NO_CLAIM,
    source EXPLORATORY) on each (task, metric) no claim covers, perplexity included.
    Held-out rows compare on heldout_metric(a, b, heldout) (`caveat` says when that is not plain perplexity).
    diff, spread and the interval are in display units (points for percent metrics), paper_diff in the
    paper's (points; raw perplexity), seeds_needed counts pretraining seeds per arm (80% power at the paper's
    effect; _low and _high at the ends of the seed-level SD's 95% interval). p_holm and verdict_holm adjust for
    the number of claims in the row's family (families).
    """
    claims = list(claims)
    if baseline is not None:
        for variant in dict.fromkeys(values["variant"]):
            if variant == baseline or (is_control(variant) and variant != RANDOM_INIT):
                continue  # another vocabulary's control is checked against its own variant (SANITY) alone
            covered = [c for c in claims if c.a == variant and c.b == baseline]
            if not any(c.tasks is None for c in covered):  # downstream tasks not all claimed yet
                done = {t for c in covered for t in c.tasks or ()}
                tasks = set(values["task"]) - done - {PRETRAINING_TASK}
                claims.append(Claim(variant, baseline, None, tuple(sorted(tasks)), "", EXPLORATORY))
            if not any(c.tasks and PRETRAINING_TASK in c.tasks for c in covered):
                claims.append(Claim(variant, baseline, None, (PRETRAINING_TASK,), "", EXPLORATORY))
    columns = primary_columns(values)
    rows = [r for c in claims for r in _claim_rows(values, c, columns, heldout)]
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS).astype({"relation": object})
    out["relation"] = out["relation"].where(out["relation"].notna(), None)  # "no direction" stays None, not NaN
    for col in ("seeds_needed", "seeds_needed_low", "seeds_needed_high", "expected", "n", "n_a", "n_b"):
        out[col] = out[col].astype("Int64")
    out["p_holm"] = np.nan
    fam = families(out)
    for name in ("paper", "sanity"):
        mask = (fam == name).to_numpy()
        out.loc[mask, "p_holm"] = holm(out.loc[mask, "p"].to_numpy(dtype=float))
    out["verdict_holm"] = adjusted(out["verdict"], out["p_holm"].to_numpy(dtype=float))
    return out


def verdict_counts(comparisons: pd.DataFrame, column: str = "verdict_holm") -> dict[str, dict[str, int]]:
    """{"paper": {agrees, disagrees, inconclusive}, "sanity": {...}}: paper claims vs the random-init check, by the
    adjusted verdicts (column="verdict" for the raw ones)."""
    out = {}
    fam = families(comparisons)
    for group in ("paper", "sanity"):
        counts = comparisons[fam == group][column].value_counts()
        out[group] = {v: int(counts.get(v, 0)) for v in VERDICTS}
    return out
