"""How much the NSP label of a prepared pair corpus can be read from lengths alone (a check of the input formats).

Loads the packed train/held-out arrays of a pair format (prepared at the `cpu` scale if missing) and
prints, per label (0: B continues A, 1: B from another document), the share of pairs, the mean
lengths of A and B, and how many blocks are exactly max_len long; then the held-out accuracy of a
classifier that sees only the lengths (majority label per bucket of A length, B length and
fullness, fitted on train) beside always guessing the majority label. A large gap would mean the
model could solve NSP without reading the text.

    python benchmarks/nsp_cues.py                      # segment_pair
    python benchmarks/nsp_cues.py --format sentence_pair
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def length_features(lengths: np.ndarray, b_start: np.ndarray, max_len: int) -> np.ndarray:
    len_a, len_b = b_start - 3, lengths - b_start - 1  # <s> A </s></s> B </s>
    return (np.minimum(len_a // 8, 16) * 100 + np.minimum(len_b // 8, 16)) * 2 + (lengths == max_len)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", default="segment_pair", choices=["segment_pair", "sentence_pair"])
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--results", default=str(REPO / "results"), help="results root holding the data cache")
    ap.add_argument("--json", default=None, help="default: benchmarks/results/nsp_cues_<format>.json")
    args = ap.parse_args()
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for
    from ablate.study.scales import SCALE_PRESETS
    from ablate.study.load import deep_merge
    from ablate.study.spec import Config
    from ablate.store import Store

    cfg = Config.model_validate(deep_merge(SCALE_PRESETS[args.scale], {"data": {"format": args.format},
                                                                       "pretrain": {"nsp": True}}))
    folder = corpus_for(Store(Path(args.results)), cfg)
    max_len = cfg.data.max_len
    out = {"format": args.format, "scale": args.scale, "corpus": folder.name}
    data = {split: load_corpus(folder, split) for split in ("train", "heldout")}
    for split, p in data.items():
        rows = {}
        for label in (0, 1):
            sel = p.nsp == label
            rows[str(label)] = {"pairs": int(sel.sum()), "share": round(float(sel.mean()), 3),
                                "mean_len_a": round(float((p.b_start[sel] - 3).mean()), 1),
                                "mean_len_b": round(float((p.lengths[sel] - p.b_start[sel] - 1).mean()), 1),
                                "full_blocks": round(float((p.lengths[sel] == max_len).mean()), 3)}
        out[split] = rows
    train, held = data["train"], data["heldout"]
    kt, kh = length_features(train.lengths, train.b_start, max_len), length_features(held.lengths, held.b_start, max_len)
    majority = int(train.nsp.mean() > 0.5)
    guess = {k: int(train.nsp[kt == k].mean() > 0.5) for k in np.unique(kt)}
    pred = np.array([guess.get(k, majority) for k in kh])
    out["heldout_acc_lengths_only"] = round(float((pred == held.nsp).mean()), 3)
    out["heldout_acc_majority"] = round(float((held.nsp == majority).mean()), 3)
    for split in ("train", "heldout"):
        for label, r in out[split].items():
            print(f"{split:8s} nsp={label}: {r['pairs']:6d} pairs ({r['share']:.1%}), A {r['mean_len_a']:.1f} "
                  f"B {r['mean_len_b']:.1f} tokens, {r['full_blocks']:.1%} blocks full")
    print(f"held-out NSP accuracy from lengths alone: {out['heldout_acc_lengths_only']:.1%} "
          f"(always the majority label: {out['heldout_acc_majority']:.1%})")
    path = Path(args.json or REPO / "benchmarks" / "results" / f"nsp_cues_{args.format}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
