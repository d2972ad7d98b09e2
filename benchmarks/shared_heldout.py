"""Held-out MLM perplexity of every pretrained model of a study, on one shared set of held-out blocks.

A cell's own `heldout_ppl` scores its model on the held-out text packed in the cell's own input format, so
between input formats the blocks differ (pairs are truncated segments with a random B half the time,
FULL-SENTENCES whole sentences up to 128 tokens) and the report marks such rows "not like for like". This
scores every finished checkpoint of a study on the held-out blocks of one reference format (default
full_sentences: the same validation text, tokenizer and block length), with the same fixed masks
(ablate.pretrain.heldout_eval) and no NSP input, and gives each variant's paired difference from the
study's baseline with a 95% t interval over pretraining seeds.

    python benchmarks/shared_heldout.py input_format --results results --json benchmarks/results/shared_heldout_input_format.json

Needs ABLATE_DATA_DIR only if the reference format's blocks are not cached in results/_cache yet. Pretraining cells
now record the same score themselves (`shared_heldout_ppl`, FULL-SENTENCES' blocks); this rescores finished
checkpoints after the fact, on any reference format.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ablate.analysis.aggregate import mean_interval  # noqa: E402
from ablate.study.cells import expand  # noqa: E402
from ablate.study.identity import heldout_identity  # noqa: E402
from ablate.study.load import load_study  # noqa: E402
from ablate.store import Store, read_json  # noqa: E402


def reference_config(cfg, fmt: str):
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"format": fmt})})


def reference_blocks(store: Store, cfg):
    """(held-out blocks, unigram counts, vocabulary size) of the reference config, prepared if not cached."""
    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for
    from ablate.run.prepare import tokenizer_for

    with store.cache_lock():
        vocab = tokenizer_for(store, cfg).get_vocab_size()
        folder = corpus_for(store, cfg)
    return load_corpus(folder, "heldout"), np.load(folder / "unigram.npy"), vocab


def score(checkpoint: Path, cfg, blocks, batch_size: int) -> dict:
    """One finished checkpoint on the reference held-out blocks (cfg: the reference config)."""
    import torch
    from transformers import AutoModelForMaskedLM

    from ablate.train.pretrain import heldout_eval

    model = AutoModelForMaskedLM.from_pretrained(str(checkpoint))
    trainer = SimpleNamespace(model=model, device=torch.device("cpu"), nsp_head=None)
    ev = heldout_eval(trainer, blocks[0], blocks[1], cfg, blocks[2], batch_size)
    return {"shared_ppl": ev["heldout_ppl"], "shared_masked_tokens": ev["heldout_masked_tokens"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="a study folder name under --results (its study.yaml is read)")
    ap.add_argument("--results", default="results")
    ap.add_argument("--reference", default="full_sentences",
                    help="input format whose held-out blocks every model is scored on")
    ap.add_argument("--scale", help="default: the scale of the study's last run")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", help="also write the rows and differences here")
    args = ap.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    store = Store(Path(args.results))
    folder = store.study_dir(args.study)
    scale = args.scale or (read_json(folder / "last_run.json") or {}).get("scale")
    spec = load_study(folder / "study.yaml", scale)
    cells = [c for c in expand(spec).pretrain if store.pretrain(spec.name, c.key).is_done()]
    if not cells:
        sys.exit(f"no finished pretraining in {folder}")
    reference = [reference_config(c.config, args.reference) for c in cells]
    if len({heldout_identity(cfg) for cfg in reference}) > 1:  # other tokenizers, lengths or held-out budgets
        sys.exit("the study's variants differ in held-out text or tokenizer: no one set of blocks scores them all")
    blocks = reference_blocks(store, reference[0])
    rows = []
    for c in cells:
        run = store.pretrain(spec.name, c.key)
        rows.append({"variant": c.variant, "seed": c.seed, "key": c.key, "format": c.config.data.format,
                     "own_ppl": run.metrics()["heldout_ppl"],
                     **score(run.checkpoint, reference[0], blocks, args.batch_size)})
        print(f"{c.variant:24s} seed {c.seed}: own-format ppl {rows[-1]['own_ppl']:8.1f}   "
              f"{args.reference} ppl {rows[-1]['shared_ppl']:8.1f}", flush=True)
    by = {(r["variant"], r["seed"]): r["shared_ppl"] for r in rows}
    diffs = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        if variant == spec.baseline:
            continue
        seeds = sorted(s for v, s in by if v == variant and (spec.baseline, s) in by)
        d = [by[(variant, s)] - by[(spec.baseline, s)] for s in seeds]
        low, high = mean_interval(d)
        diffs.append({"a": variant, "b": spec.baseline, "seeds": seeds, "diff": float(np.mean(d)) if d else None,
                      "ci_low": low, "ci_high": high})
    print(f"\nheld-out MLM ppl on {args.reference} blocks, variant - {spec.baseline} (paired by seed, 95% t interval):")
    print("| variant | ppl by seed | a - b | 95% interval |\n|---|---|---|---|")
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vals = ", ".join(f"{by[(v, s)]:.0f}" for v, s in sorted(by) if v == variant)
        d = next((x for x in diffs if x["a"] == variant), None)
        interval = "—" if d is None or np.isnan(d["ci_low"]) else f"[{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"
        tail = "| (baseline) | |" if d is None else f"| {d['diff']:+.1f} | {interval} |"
        print(f"| {variant} | {vals} {tail}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        out = {"study": spec.name, "scale": scale, "reference": args.reference, "rows": rows, "differences": diffs}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
