"""Claims x values -> verdicts: for each claim of the paper (or each variant against the baseline), the
difference a - b on every task both arms have, paired by seed, its 95% interval, a verdict against the paper's
direction, and the seeds that would resolve an effect of the paper's size. Pure pandas + scipy, no I/O.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ablate.analysis.aggregate import CONFIDENCE, higher_is_better, primary_columns, scale_of
from ablate.analysis.anchors import EXPLORATORY, HELDOUT_BPC, HELDOUT_PPL, PRETRAINING_TASK, SANITY, Claim

COMPARISON_COLUMNS = [
    "a", "b", "task", "metric", "relation", "source", "note", "expected", "n", "paired", "diff", "spread",
    "ci_low", "ci_high", "paper_diff", "verdict", "seeds_needed", "caveat",
]
# Why a held-out comparison is not plain perplexity on the same blocks (heldout_metric)
OWN_BLOCKS = "each arm on its own input format's held-out blocks: not like for like"
OTHER_UNITS = "bits per character: perplexities over different vocabularies do not compare"
AGREES, DISAGREES, INCONCLUSIVE, NO_CLAIM = "agrees", "disagrees", "inconclusive", "no claim"
VERDICTS = (AGREES, DISAGREES, INCONCLUSIVE)


def heldout_metric(a: str, b: str, heldout: Optional[Mapping[str, tuple[Hashable, Hashable]]]) -> tuple[str, str]:
    """(metric, caveat) on which two arms' held-out losses compare.

    heldout: variant -> (which held-out blocks, which token units), e.g. study.identity.heldout_identity. Perplexity when
    both are shared (or unknown); bits per character when the tokenizers differ, since a perplexity's unit is the
    token; a caveat when the blocks themselves differ (another input format packs other text the other way).
    """
    if not heldout or a not in heldout or b not in heldout:
        return HELDOUT_PPL, ""
    (text_a, units_a), (text_b, units_b) = heldout[a], heldout[b]
    metric = HELDOUT_PPL if units_a == units_b else HELDOUT_BPC
    caveat = OWN_BLOCKS if text_a != text_b else "" if units_a == units_b else OTHER_UNITS
    return metric, caveat


def _by_seed(values: pd.DataFrame, variant: str, task: str, metric: str) -> pd.Series:
    """One arm's values indexed by 'pretrain_seed/finetune_seed' (random-init: '<NA>/s', so it pairs with nothing)."""
    sub = values[(values["variant"] == variant) & (values["task"] == task) & (values["metric"] == metric)]
    keys = [f"{p}/{f}" for p, f in zip(sub["pretrain_seed"].astype(object), sub["finetune_seed"].astype(object))]
    v = pd.Series(pd.to_numeric(sub["value"], errors="coerce").to_numpy(dtype=float), index=keys)
    return v.dropna().groupby(level=0).mean()


def _interval(result, diff: float) -> tuple[float, float]:
    """A scipy t-test result's interval; (diff, diff) when every difference is the same (scipy gives nan)."""
    ci = result.confidence_interval(CONFIDENCE)
    if math.isnan(ci.low) and not math.isnan(diff):
        return diff, diff
    return float(ci.low), float(ci.high)


def difference(values: pd.DataFrame, a: str, b: str, task: str, metric: str) -> dict:
    """a - b on (task, metric): paired by (pretrain_seed, finetune_seed) where two or more pairs are shared,
    else Welch's unpaired difference of means. Returns n, paired, diff, spread (std of one a - b difference),
    ci_low, ci_high, in the metric's own scale; nan interval below two runs per arm.
    """
    xa, xb = _by_seed(values, a, task, metric), _by_seed(values, b, task, metric)
    shared = xa.index.intersection(xb.index)
    nan = math.nan
    if len(shared) >= 2 or (len(shared) == 1 and min(len(xa), len(xb)) < 2):
        d = xa[shared] - xb[shared]
        diff = float(d.mean())
        if len(d) < 2:
            return {"n": 1, "paired": True, "diff": diff, "spread": nan, "ci_low": nan, "ci_high": nan}
        low, high = _interval(stats.ttest_1samp(d, 0.0), diff)
        return {"n": len(d), "paired": True, "diff": diff, "spread": float(d.std(ddof=1)),
                "ci_low": low, "ci_high": high}
    n = min(len(xa), len(xb))
    diff = float(xa.mean() - xb.mean()) if n else nan
    if n < 2:
        return {"n": n, "paired": False, "diff": diff, "spread": nan, "ci_low": nan, "ci_high": nan}
    low, high = _interval(stats.ttest_ind(xa, xb, equal_var=False), diff)
    spread = math.sqrt(xa.var(ddof=1) + xb.var(ddof=1))
    return {"n": n, "paired": False, "diff": diff, "spread": spread, "ci_low": low, "ci_high": high}


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


def verdict(ci_low: float, ci_high: float, expected: Optional[int]) -> str:
    """AGREES when the interval excludes zero on the paper's side, DISAGREES on the other, else INCONCLUSIVE.

    For an "about equal" claim (expected 0) an interval away from zero disagrees; one spanning zero stays
    inconclusive (that needs an equivalence margin, which the paper does not give). NO_CLAIM without a direction.
    """
    if expected is None:
        return NO_CLAIM
    if math.isnan(ci_low) or math.isnan(ci_high):
        return INCONCLUSIVE
    side = 1 if ci_low > 0 else -1 if ci_high < 0 else 0
    if side == 0:
        return INCONCLUSIVE
    if expected == 0:
        return DISAGREES
    return AGREES if side == expected else DISAGREES


def seeds_needed(spread: float, effect: Optional[float], confidence: float = CONFIDENCE,
                 max_n: int = 10_000) -> Optional[int]:
    """Smallest n whose t interval of a mean difference (std `spread`) has half-width below |effect|.

    None when the effect or the spread is unknown, the effect is zero, or more than `max_n` would be needed.
    """
    if effect is None or spread is None or math.isnan(effect) or math.isnan(spread) or effect == 0:
        return None
    if spread == 0:
        return 2
    n = np.arange(2, max_n + 1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * spread / np.sqrt(n)
    ok = np.nonzero(half < abs(effect))[0]
    return int(n[ok[0]]) if len(ok) else None


def _claim_rows(values: pd.DataFrame, claim: Claim, columns: Sequence[tuple[str, str]],
                heldout: Optional[Mapping[str, tuple[Hashable, Hashable]]] = None) -> list[dict]:
    rows = []
    for task, metric in columns:
        if (claim.tasks is None and task == PRETRAINING_TASK) or (claim.tasks is not None and task not in claim.tasks):
            continue
        caveat = ""
        if task == PRETRAINING_TASK:
            metric, caveat = heldout_metric(claim.a, claim.b, heldout)
        arms = set(values[(values["task"] == task) & (values["metric"] == metric)]["variant"])
        if claim.a not in arms or claim.b not in arms:
            continue
        d = difference(values, claim.a, claim.b, task, metric)
        scale = scale_of(metric)
        expected = expected_sign(claim.relation, higher_is_better(metric))
        paper = claim.paper.get((task, metric))
        d.update({k: d[k] * scale for k in ("diff", "spread", "ci_low", "ci_high")})
        rows.append({
            "a": claim.a, "b": claim.b, "task": task, "metric": metric, "relation": claim.relation,
            "source": claim.source, "note": claim.note, "expected": expected, **d, "paper_diff": paper,
            "verdict": verdict(d["ci_low"], d["ci_high"], expected),
            # the paper's effect is in points; a perplexity difference at its scale says nothing about ours
            "seeds_needed": seeds_needed(d["spread"], paper) if scale == 100.0 else None,
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
    paper's (points; raw perplexity), seeds_needed counts paired runs of each arm.
    """
    claims = list(claims)
    if baseline is not None:
        for variant in dict.fromkeys(values["variant"]):
            if variant == baseline:
                continue
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
    out["seeds_needed"] = out["seeds_needed"].astype("Int64")
    out["expected"] = out["expected"].astype("Int64")
    return out


def verdict_counts(comparisons: pd.DataFrame) -> dict[str, dict[str, int]]:
    """{"paper": {agrees, disagrees, inconclusive}, "sanity": {...}}: paper claims vs the random-init check."""
    out = {}
    for group, mask in (("paper", ~comparisons["source"].isin([SANITY, EXPLORATORY])),
                        ("sanity", comparisons["source"] == SANITY)):
        counts = comparisons[mask]["verdict"].value_counts()
        out[group] = {v: int(counts.get(v, 0)) for v in VERDICTS}
    return out
