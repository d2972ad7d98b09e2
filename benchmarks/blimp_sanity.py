"""Is BLiMP at chance because the model knows nothing, or because the scoring is wrong? A coarser test with the same
scoring: each of N BLiMP good sentences against a shuffle of its own words, by the pseudo-log-likelihood that BLiMP's
pairs are scored with (ablate.train.zeroshot). A model that has learned word order prefers the sentence; random
init does not.

    python benchmarks/blimp_sanity.py CHECKPOINT... [--n 300] [--out benchmarks/results/blimp_sanity.json]

Prints, per checkpoint: the share of sentences scored above their shuffle, the mean PLL of each, and the
sentence-level pseudo-perplexity.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def shuffled(sentence: str, rng: random.Random) -> str:
    words = sentence.rstrip(".").split()
    rng.shuffle(words)
    return " ".join(words) + "."


def measure(checkpoint: str, n: int, seed: int = 0) -> dict:
    from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast

    from ablate.tasks import TASKS
    from ablate.tasks.data import load_split
    from ablate.train.zeroshot import pseudo_log_likelihoods

    tok = PreTrainedTokenizerFast.from_pretrained(checkpoint)
    model = AutoModelForMaskedLM.from_pretrained(checkpoint)
    task = TASKS.get("blimp")
    ds = load_split(task, task.eval_split)
    rng = random.Random(seed)
    good = [ds[i]["sentence_good"] for i in rng.sample(range(len(ds)), n)]
    bad = [shuffled(s, rng) for s in good]

    def encode(sentences):  # as the pretraining text and BLiMP's scoring: a leading space, <s> ... </s>
        out = []
        for s in sentences:
            e = tok(" " + s)
            out.append((e["input_ids"], e.word_ids()))
        return out

    device = torch.device("cpu")
    g, b = encode(good), encode(bad)
    pg, pb = pseudo_log_likelihoods(model, g, device), pseudo_log_likelihoods(model, b, device)
    tokens = sum(sum(w is not None for w in words) for _, words in g)
    return {"checkpoint": checkpoint, "sentences": n, "prefers_sentence": float(np.mean(pg > pb)),
            "mean_pll_sentence": float(pg.mean()), "mean_pll_shuffled": float(pb.mean()),
            "pseudo_ppl": float(np.exp(-pg.sum() / tokens))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    rows = [measure(c, args.n) for c in args.checkpoints]
    for r in rows:
        print(f"{r['checkpoint']}: prefers the sentence {100 * r['prefers_sentence']:.1f}% of {r['sentences']}, "
              f"PLL {r['mean_pll_sentence']:.1f} vs {r['mean_pll_shuffled']:.1f}, pseudo-ppl {r['pseudo_ppl']:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
