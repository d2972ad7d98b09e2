"""Corpus preparation: ablate's tokenize-and-pack vs `datasets.map` + run_mlm-style `group_texts`.

Both start from the same Parquet shard and the same trained byte-level BPE tokenizer and end with
token blocks of --max-len. Baseline: `datasets.load_dataset("parquet")`, `.map(tokenizer(...),
batched=True)` with the fast tokenizer, then `.map(group_texts, batched=True)` exactly as
transformers' examples/pytorch/language-modeling/run_mlm.py does. Ablate: ablate.data.corpus
(sentence split and byte-level BPE in `prep_workers()` processes, FULL-SENTENCES packing into a numpy
array). Runs alternate for --rounds rounds; we print seconds for each, the ratio of the medians with the
range of the per-round ratios, and how long a prepared cache takes to reload.

    python benchmarks/corpus_prep.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def baseline(shard: Path, hf_dir: Path, max_len: int, workdir: Path) -> int:
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    ds = datasets.load_dataset("parquet", data_files={"train": str(shard)}, split="train",
                               cache_dir=str(workdir / "hf"))

    def tokenize(batch):
        return tok(batch["text"], return_special_tokens_mask=True)

    tokenized = ds.map(tokenize, batched=True, remove_columns=ds.column_names)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total = len(concatenated[list(examples.keys())[0]])
        total = (total // max_len) * max_len
        return {k: [t[i: i + max_len] for i in range(0, total, max_len)] for k, t in concatenated.items()}

    grouped = tokenized.map(group_texts, batched=True)
    return len(grouped) * max_len


def ours(shard: Path, tok, max_len: int, workdir: Path) -> int:
    import numpy as np
    import pyarrow.parquet as pq

    from ablate.data.formats import FORMATS
    from ablate.data.sentences import tokenize_documents

    docs = pq.read_table(shard, columns=["text"]).column(0).to_pylist()
    packed = FORMATS.get("full_sentences").pack(tokenize_documents(iter(docs), tok, None), max_len)
    np.save(workdir / "blocks.npy", packed.blocks)
    np.save(workdir / "lengths.npy", packed.lengths)
    return packed.tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shard", default="train-00005-of-00006.parquet", help="corpus shard (10M characters)")
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--results", default=str(REPO / "results"))
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "corpus_prep.json"))
    args = ap.parse_args()
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import datasets
    import numpy as np

    from ablate.run.prepare import tokenizer_for, cache_for
    from ablate.paths import data_root
    from ablate.study.scales import SCALE_PRESETS
    from ablate.study.spec import Config
    from ablate.store import Store

    datasets.disable_progress_bars()
    store = Store(Path(args.results))
    cfg = Config.model_validate(SCALE_PRESETS["cpu"])
    tok = tokenizer_for(store, cfg)
    hf_dir = cache_for(store, cfg).tokenizer / "hf"
    shard = data_root() / "corpus" / args.shard
    times = {"baseline": [], "ablate": []}
    tokens = {}
    for _ in range(args.rounds):
        for name in ("baseline", "ablate"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                if name == "baseline":
                    tokens[name] = baseline(shard, hf_dir, args.max_len, Path(tmp))
                else:
                    tokens[name] = ours(shard, tok, args.max_len, Path(tmp))
                times[name].append(time.perf_counter() - t0)
    # Reloading a prepared cache entry, as every pretraining cell does (built here if missing).
    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for

    corpus_for(store, cfg)
    t0 = time.perf_counter()
    folder = corpus_for(store, cfg)
    train, held = load_corpus(folder, "train"), load_corpus(folder, "heldout")
    np.load(folder / "unigram.npy")
    int(train.blocks[-1, 0]) + int(held.blocks[-1, 0])
    reload_s = time.perf_counter() - t0
    from ablate.data.sentences import prep_workers

    ratio = statistics.median(times["baseline"]) / statistics.median(times["ablate"])
    per_round = [b / a for b, a in zip(times["baseline"], times["ablate"])]
    out = {"shard": args.shard, "max_len": args.max_len, "seconds": times, "tokens": tokens,
           "speedup_median": round(ratio, 2), "speedup_rounds": [round(r, 2) for r in per_round],
           "prep_workers": prep_workers(), "reload_s": round(reload_s, 4)}
    for k, v in times.items():
        print(f"{k:9s} {statistics.median(v):7.1f} s  ({tokens[k] / statistics.median(v) / 1e3:.0f}k tokens/s)")
    print(f"speed-up ablate vs datasets.map + group_texts: {ratio:.2f}x (rounds {min(per_round):.2f}-"
          f"{max(per_round):.2f}, {prep_workers()} workers); cached arrays reload in {reload_s:.3f} s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
