"""The report's downstream verdicts again, with the pretraining seed as the unit of replication.

The report pairs a - b run by run: 3 pretraining seeds x 3 fine-tuning seeds give 9 paired differences,
and its t interval treats them as 9 independent draws. They are not: the three fine-tunes of one
checkpoint share that checkpoint, so when checkpoints differ more than fine-tunes do the 9-run interval
is too narrow. This averages each checkpoint's fine-tunes first and takes the t interval over the
pretraining seeds (n=3, 2 degrees of freedom): a stricter check of every verdict with a direction.

    python benchmarks/seed_level_intervals.py --reports reports --json benchmarks/results/seed_level_intervals.json

Reads only the committed reports (`reports/<study>/comparisons.csv` and `scores.csv`), so it needs no data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ablate.analysis.aggregate import mean_interval, scale_of  # noqa: E402
from ablate.analysis.verdicts import verdict  # noqa: E402


def seed_level(scores: pd.DataFrame, a: str, b: str, task: str, metric: str) -> dict:
    """a - b per pretraining seed (each checkpoint's fine-tunes averaged), its mean and 95% t interval."""
    sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
    means = {v: sub[sub["variant"] == v].groupby("pretrain_seed")["value"].mean() * scale_of(metric) for v in (a, b)}
    d = (means[a] - means[b]).dropna()
    low, high = mean_interval(d.to_numpy())
    return {"n": int(len(d)), "diff": float(d.mean()) if len(d) else float("nan"), "ci_low": low, "ci_high": high}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = []
    for comp in sorted(Path(args.reports).glob("*/comparisons.csv")):
        study = comp.parent.name
        cmp = pd.read_csv(comp)
        scores = pd.read_csv(comp.parent / "scores.csv")
        rows = cmp[(cmp["task"] != "pretraining") & cmp["paired"].astype(bool) & cmp["expected"].notna()]
        for r in rows.itertuples():
            s = seed_level(scores, r.a, r.b, r.task, r.metric)
            out.append({"study": study, "a": r.a, "b": r.b, "task": r.task, "metric": r.metric,
                        "report_n": int(r.n), "report_diff": r.diff, "report_ci": [r.ci_low, r.ci_high],
                        "report_verdict": r.verdict, "seed_n": s["n"], "seed_diff": s["diff"],
                        "seed_ci": [s["ci_low"], s["ci_high"]],
                        "seed_verdict": verdict(s["ci_low"], s["ci_high"], int(r.expected))})
    for o in out:
        flag = "" if o["seed_verdict"] == o["report_verdict"] else "   <- changes"
        print(f"{o['study']:12s} {o['a']:>20s} - {o['b']:<20s} {o['task']:5s} "
              f"{o['report_n']} runs {o['report_diff']:+6.2f} [{o['report_ci'][0]:+6.2f}, {o['report_ci'][1]:+6.2f}] "
              f"{o['report_verdict']:12s} | {o['seed_n']} seeds {o['seed_diff']:+6.2f} "
              f"[{o['seed_ci'][0]:+6.2f}, {o['seed_ci'][1]:+6.2f}] {o['seed_verdict']}{flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
