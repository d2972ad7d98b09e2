"""BLiMP scoring speed: ablate's batched pseudo-log-likelihood vs a straightforward transformers loop.

Both arms score the same pairs with the same model (the scale preset's shape, random weights: speed does not
depend on what the weights learned) and must give the same scores. The baseline runs RobertaForMaskedLM once per
masked copy and reads the masked position's log-probability, as a first implementation would; ablate stacks the
copies of every sentence of one length into one forward and runs the LM head at the masked positions only. The
ratio is measured on a sample of pairs (the baseline is slow); ablate's time for the scale's whole BLiMP subset
(pairs_per_paradigm of every paradigm) is measured too, against the target of 2 minutes for the `cpu` preset.

    python benchmarks/blimp_speed.py                 # cpu preset: ~3 min (trains the tokenizer once if needed)
    python benchmarks/blimp_speed.py --scale tiny --sample 20 --json out.json   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ablate.model import build_mlm  # noqa: E402
from ablate.paths import results_root  # noqa: E402
from ablate.run.prepare import tokenizer_for  # noqa: E402
from ablate.store import Store  # noqa: E402
from ablate.study.load import load_study  # noqa: E402
from ablate.tasks import TASKS  # noqa: E402
from ablate.tasks.blimp import PAIR_ID, PARADIGM, pair_subset  # noqa: E402
from ablate.tasks.data import load_split  # noqa: E402
from ablate.train.zeroshot import masked_copies, pseudo_log_likelihoods  # noqa: E402


@torch.no_grad()
def baseline_pll(mlm, encodings) -> np.ndarray:
    """One masked copy per forward through transformers' own model and head."""
    out = []
    for ids, words in encodings:
        copies, positions = masked_copies(ids, words, word_l2r=True)
        total = 0.0
        for copy, pos in zip(copies, positions):
            logits = mlm(input_ids=torch.from_numpy(copy[None])).logits[0, pos]
            total += float(torch.log_softmax(logits.float(), -1)[ids[pos]])
        out.append(total)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu", help="scale preset whose model shape and BLiMP subset are timed")
    ap.add_argument("--sample", type=int, default=100, help="pairs both arms score for the ratio")
    ap.add_argument("--results", default=None, help="results directory whose tokenizer cache is used")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()

    cfg = load_study(REPO / "studies" / "masking.yaml", args.scale).variants["dynamic"]
    tok = tokenizer_for(Store(results_root(args.results)), cfg)
    torch.manual_seed(0)
    mlm = build_mlm(cfg.model, cfg.data, tok.get_vocab_size()).eval()
    task = TASKS.get("blimp")
    ds = load_split(task, task.eval_split)
    keep = pair_subset(np.asarray(ds[PARADIGM]), np.asarray(ds[PAIR_ID]), cfg.finetune.pairs_per_paradigm)
    ds = ds.select(keep)
    sentences = [s for pair in zip(ds["sentence_good"], ds["sentence_bad"]) for s in pair]
    encodings = [(e.ids, e.word_ids) for e in tok.encode_batch(sentences)]
    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(encodings) // 2, size=min(args.sample, len(encodings) // 2), replace=False))
    sample_enc = [encodings[2 * p + k] for p in sample for k in (0, 1)]
    cpu = torch.device("cpu")

    t0 = time.perf_counter()
    base = baseline_pll(mlm, sample_enc)
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = pseudo_log_likelihoods(mlm, sample_enc, cpu)
    ours_s = time.perf_counter() - t0
    err = float(np.max(np.abs(ours - base)))
    t0 = time.perf_counter()
    pseudo_log_likelihoods(mlm, encodings, cpu)
    whole_s = time.perf_counter() - t0

    out = {"scale": args.scale, "threads": torch.get_num_threads(), "sample_pairs": len(sample),
           "baseline_s": base_s, "ablate_s": ours_s, "ratio": base_s / ours_s, "max_abs_diff": err,
           "subset_pairs": len(ds), "subset_s": whole_s, "pairs_per_paradigm": cfg.finetune.pairs_per_paradigm}
    print(f"BLiMP PLL-word-l2r, {args.scale} shape, {out['threads']} threads: {len(sample)} pairs, baseline "
          f"{base_s:.1f} s, ablate {ours_s:.2f} s: {out['ratio']:.1f}x (scores equal to {err:.1e}); the whole "
          f"{args.scale} subset ({len(ds)} pairs) in {whole_s:.1f} s")
    if err > 1e-3:
        raise SystemExit(f"the two arms disagree: max |difference| {err}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
