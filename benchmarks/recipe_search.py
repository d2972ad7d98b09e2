"""Search the pretraining recipe at the `cpu` shape: which settings get a small model off the MLM plateau soonest.

Successive halving over recipe arms, every arm the `cpu` preset's model, data and objective (15% masking, 80/10/10,
dynamic) with some recipe settings changed (ablate's study schema: model.norm, model.dropout, model.init_range,
pretrain.lr, pretrain.schedule, pretrain.warmup_ratio, pretrain.short_len, ...):
- rung 1: every arm to 4M token slots (the schedule ends there), seed 0;
- rung 2: the best third (at least 3) to 8M tokens;
- rung 3: the best 2 and the current recipe to 16M tokens, seeds 0 and 1.
Budgets count token slots (steps x 32 sequences x 128 positions); about 83% are real tokens (FULL-SENTENCES blocks
end at document ends), which `tokens_seen` and the curve's token counts report. An arm is scored by held-out MLM
perplexity on the fixed held-out blocks and masks (the same text, tokenizer and masks for every arm, so perplexities
compare like for like), and by its training-loss curve: the loss at 2M, 4M, 8M and 16M real tokens, and where it
leaves the plateau (the first point whose perplexity is under a quarter of the unigram level). BLiMP (20 pairs per
paradigm) is scored on every checkpoint and on random init as a first look downstream.

Each rung is an ordinary study (benchmarks/results/recipe_search/rung-<tokens>.yaml, runs in --results) so a rerun
skips what is done and resumes a cell mid-run, and `ablate report --results benchmarks/runs` shows it.

    python benchmarks/recipe_search.py            # ~2.5 h on 2 cores; resumable
    python benchmarks/recipe_search.py --rungs 1  # rung 1 only (~50 min)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKENS_PER_STEP = 32 * 128  # the cpu preset's batch x max_len, kept by every arm (a length schedule too)
BEST = {"model": {"norm": "pre", "dropout": 0.0}, "pretrain": {"lr": 3e-3, "short_len": 32}}  # the pilot's best arm


def _with(base: dict, **changes) -> dict:
    """base with section.key changes, e.g. _with(BEST, model__norm="post")."""
    out = json.loads(json.dumps(base))
    for key, value in changes.items():
        section, name = key.split("__")
        out.setdefault(section, {})[name] = value
    return out


ARMS = {  # name: recipe overrides of the cpu preset (the objective never changes)
    "current": {},  # post-LN, lr 1e-3, dropout 0.1, length 128 throughout: the first edition's recipe
    "pre-lr3e-3": {"model": {"norm": "pre"}, "pretrain": {"lr": 3e-3}},
    "pre-lr3e-3-nodrop": {"model": {"norm": "pre", "dropout": 0.0}, "pretrain": {"lr": 3e-3}},
    "best": BEST,  # pre-LN, lr 3e-3, no dropout, 90% of the steps at length 32 x 4 sequences
    # leave one out of the best, to find which change carries it
    "best-post": _with(BEST, model__norm="post"),
    "best-lr1e-3": _with(BEST, pretrain__lr=1e-3),
    "best-dropout": _with(BEST, model__dropout=0.1),
    # and what the pilot did not try
    "best-len64": _with(BEST, pretrain__short_len=64),
    "best-cosine": _with(BEST, pretrain__schedule="cosine"),
    "best-init0.01": _with(BEST, model__init_range=0.01),
    "best-warmup0.02": _with(BEST, pretrain__warmup_ratio=0.02),
    # added to rung 2 after its first result: `best` left the plateau at length 32 (training loss 5.12 at step 1600)
    # but lost most of it at the switch to 128 (5.96 at the end: positions 33-128 had 10% of the steps to learn);
    # more steps at full length
    "best-frac0.7": _with(BEST, pretrain__short_fraction=0.7),
    "best-frac0.5": _with(BEST, pretrain__short_fraction=0.5),
}
LATE = {2: ["best-frac0.7", "best-frac0.5"]}  # arms that join at a rung (found by an earlier rung's curves)
RUNGS = (4_000_000, 8_000_000, 16_000_000)
SEEDS = {1: [0], 2: [0], 3: [0, 1]}


def study_for(rung: int, arms: list[str]) -> dict:
    tokens = RUNGS[rung - 1]
    return {
        "name": f"recipe-{tokens // 1_000_000}m",
        "description": f"Recipe search (benchmarks/recipe_search.py), rung {rung}: arms {', '.join(arms)} pretrained "
                       f"for {tokens / 1e6:g}M training tokens at the cpu shape; BLiMP on every checkpoint.",
        "scale": "cpu-v1",  # the first edition's recipe: every arm is an override of it
        "base": {"pretrain": {"steps": round(tokens / TOKENS_PER_STEP), "masking": "dynamic"},
                 "finetune": {"tasks": ["blimp"], "pairs_per_paradigm": 20}},
        "variants": {name: ARMS[name] for name in arms},
        "baseline": arms[0],
        "seeds": {"pretrain": SEEDS[rung], "finetune": [0]},
        "runtime": {"progress": False},
    }


def curve_stats(curve_path: Path, unigram_ppl: float) -> dict:
    """Training MLM loss at 2M, 4M, 8M, 16M tokens (the last point at or before), and the first token count whose
    training perplexity is under a quarter of the unigram level (the plateau exit; None if never)."""
    points = [json.loads(x) for x in curve_path.read_text().splitlines() if x.strip()]
    out: dict = {}
    for t in (2_000_000, 4_000_000, 8_000_000, 16_000_000):
        before = [p for p in points if p["tokens"] <= t * 1.01]
        out[f"loss_at_{t // 1_000_000}m"] = round(before[-1]["mlm"], 3) if before and points[-1]["tokens"] >= t else None
    exit_ = next((p["tokens"] for p in points if math.exp(p["mlm"]) < unigram_ppl / 4), None)
    out["plateau_exit_tokens"] = exit_
    return out


def rung_rows(store, plan) -> list[dict]:
    from ablate.analysis.results import collect
    from ablate.study.cells import RANDOM_INIT

    res = collect(store, plan)
    rows = []
    blimp = res.scores[(res.scores.task == "blimp") & (res.scores.metric == "blimp_accuracy")]
    for cell in plan.pretrain:
        run = store.pretrain(plan.study.name, cell.key)
        m = run.metrics()  # None when not done (or damaged)
        row = {"arm": cell.variant, "seed": cell.seed, "key": cell.key}
        if not m:
            rows.append({**row, "heldout_ppl": None, "failed": True})
            continue
        b = blimp[(blimp.variant == cell.variant) & (blimp.pretrain_seed == cell.seed)]
        row.update(heldout_ppl=round(m["heldout_ppl"], 2), unigram_ppl=round(m["unigram_ppl"], 1),
                   tokens_seen=m["tokens_seen"], wall_min=round(m["wall_s"] / 60, 1),
                   tokens_per_s=round(m["tokens_per_s"]), blimp=round(100 * float(b["value"].mean()), 1) if len(b) else None,
                   **curve_stats(run.path / "loss.jsonl", m["unigram_ppl"]))
        rows.append(row)
    rnd = blimp[blimp.variant == RANDOM_INIT]
    if len(rnd):
        rows.append({"arm": RANDOM_INIT, "seed": None, "blimp": round(100 * float(rnd["value"].mean()), 1)})
    return rows


def ranked(rows: list[dict]) -> list[str]:
    """Arms from best to worst by mean held-out perplexity over their seeds (failed arms last)."""
    by: dict[str, list[float]] = {}
    for r in rows:
        if r.get("seed") is not None or r.get("failed"):
            by.setdefault(r["arm"], []).append(r["heldout_ppl"] if r.get("heldout_ppl") else float("inf"))
    return sorted(by, key=lambda a: sum(by[a]) / len(by[a]))


def table(all_rows: dict[int, list[dict]]) -> str:
    cols = ["arm", "seed", "tokens_seen", "heldout_ppl", "unigram_ppl", "loss_at_2m", "loss_at_4m", "loss_at_8m", "loss_at_16m",
            "plateau_exit_tokens", "blimp", "wall_min", "tokens_per_s"]
    lines = []
    for rung, rows in all_rows.items():
        steps = round(RUNGS[rung - 1] / TOKENS_PER_STEP)
        lines += [f"\n### Rung {rung}: {RUNGS[rung - 1] / 1e6:g}M token slots ({steps} steps x 32 x 128; tokens_seen "
                  f"counts the real, non-padding ones)\n",
                  "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            cells = {**r, "tokens_seen": f"{r['tokens_seen'] / 1e6:.2f}M" if r.get("tokens_seen") else None}
            lines.append("| " + " | ".join("" if cells.get(c) is None else str(cells[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", type=int, default=3, help="run rungs 1..N")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "runs"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    args = ap.parse_args()
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    from ablate.run import pipeline
    from ablate.store import Store
    from ablate.study.cells import expand
    from ablate.study.load import load_study

    store = Store(Path(args.results))
    out = Path(args.out) / "recipe_search"
    out.mkdir(parents=True, exist_ok=True)
    arms = [a for a in ARMS if not any(a in late for late in LATE.values())]
    all_rows: dict[int, list[dict]] = {}
    for rung in range(1, args.rungs + 1):
        path = out / f"rung-{RUNGS[rung - 1] // 1_000_000}m.yaml"
        arms = arms + [a for a in LATE.get(rung, []) if a not in arms]
        text = "# Generated by benchmarks/recipe_search.py\n" + yaml.safe_dump(study_for(rung, arms), sort_keys=False,
                                                                              width=120)
        if not path.exists() or path.read_text() != text:  # the arms follow from the last rung's results
            path.write_text(text)
        plan = expand(load_study(path))
        print(f"[{time.strftime('%H:%M:%S')}] rung {rung}: {len(plan.pretrain)} pretrainings "
              f"({', '.join(plan.study.variants)})", flush=True)
        pipeline.run(plan, store)
        all_rows[rung] = rung_rows(store, plan)
        order = ranked(all_rows[rung])
        (out / "search.json").write_text(json.dumps({"rungs": {str(k): v for k, v in all_rows.items()},
                                                     "arms": ARMS, "tokens_per_step": TOKENS_PER_STEP}, indent=1) + "\n")
        (out / "search.md").write_text(table(all_rows))
        print(table({rung: all_rows[rung]}), flush=True)
        keep = max(3, math.ceil(len(order) / 3)) if rung == 1 else 2
        arms = order[:keep] + (["current"] if rung == 2 and "current" not in order[:keep] else [])


if __name__ == "__main__":
    main()
