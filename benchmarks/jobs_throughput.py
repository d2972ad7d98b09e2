"""Cells in parallel or one at a time: total pretraining throughput of `--jobs N` vs one cell using every core.

`ablate run --jobs N` runs N cells at once with cores // N torch threads each; the default runs one cell
with every core. Small models parallelise poorly inside one step (short matmuls, a single-threaded
dropout-mask generator), so N cells at once may get more work done per second. This script measures it
on the study's own engine and model: the `cpu` preset's pretraining step, on its prepared corpus.

Rounds alternate the two set-ups (one process with all cores; N processes with cores // N threads each,
started together behind a barrier), so drift in machine speed hits both alike. Per round it prints total
tokens/s of each and the ratio parallel/sequential; the summary gives the median and range.

    python benchmarks/jobs_throughput.py                       # cpu preset, N = cores
    python benchmarks/jobs_throughput.py --jobs 2 --seconds 30 --rounds 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _config(scale: str, batch: int):
    from ablate.study.scales import SCALE_PRESETS
    from ablate.study.load import deep_merge
    from ablate.study.spec import Config

    return Config.model_validate(deep_merge(SCALE_PRESETS[scale], {"pretrain": {"batch_size": batch}}))


def _worker(threads: int, seconds: float, scale: str, batch: int, results: str, seed: int, barrier, q) -> None:
    """Pretrain for `seconds` after a barrier; put tokens/s on q."""
    import torch

    torch.set_num_threads(threads)
    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for
    from ablate.data.formats import Packed
    from ablate.run.prepare import tokenizer_for
    from ablate.train.trainer import Trainer
    from ablate.data.batches import make_batch
    from ablate.store import Store

    cfg = _config(scale, batch)
    store = Store(Path(results))
    vocab = tokenizer_for(store, cfg).get_vocab_size()
    data = load_corpus(corpus_for(store, cfg), "train")
    packed = Packed(np.asarray(data.blocks), data.lengths)
    trainer = Trainer(cfg, vocab, torch.device("cpu"), seed=seed)
    rng = np.random.default_rng(seed)

    def step(s: int) -> int:
        idx = rng.integers(0, len(data.lengths), batch)
        b = make_batch(packed, idx, np.zeros(batch, dtype=np.int64), s, cfg, vocab)
        trainer.step(b)
        return int(b.attention_mask.sum())

    for s in range(3):  # warm-up: allocator, optimizer state
        step(s)
    barrier.wait()
    tokens, s, t0 = 0, 3, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tokens += step(s)
        s += 1
    q.put(tokens / (time.perf_counter() - t0))


def _prepare(args) -> None:
    from ablate.run.prepare import corpus_for
    from ablate.run.prepare import tokenizer_for
    from ablate.store import Store

    cfg, store = _config(args.scale, args.batch), Store(Path(args.results))
    tokenizer_for(store, cfg)
    corpus_for(store, cfg)


def measure(procs: int, threads: int, args) -> float:
    """Total tokens/s of `procs` processes with `threads` threads each, running together."""
    ctx = mp.get_context("spawn")
    q, barrier = ctx.Queue(), ctx.Barrier(procs)
    ps = [ctx.Process(target=_worker, args=(threads, args.seconds, args.scale, args.batch, args.results, i,
                                            barrier, q)) for i in range(procs)]
    for p in ps:
        p.start()
    rates = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return float(sum(rates))


def main() -> None:
    cores = os.cpu_count() or 1
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--batch", type=int, default=0, help="sequences per step (default: the scale's)")
    ap.add_argument("--jobs", type=int, default=cores, help="cells at once in the parallel set-up")
    ap.add_argument("--cores", type=int, default=cores)
    ap.add_argument("--seconds", type=float, default=30.0, help="measured time per set-up per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", default=str(REPO / "results"), help="results root holding the data cache")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "jobs_throughput.json"))
    args = ap.parse_args()
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    from ablate.study.scales import SCALE_PRESETS

    args.batch = args.batch or SCALE_PRESETS[args.scale]["pretrain"]["batch_size"]
    threads = max(1, args.cores // args.jobs)
    _prepare(args)  # the data cache, once, before any worker starts
    seq, par = [], []
    for r in range(args.rounds):
        seq.append(measure(1, args.cores, args))
        par.append(measure(args.jobs, threads, args))
        print(f"round {r}: 1 cell x {args.cores} threads {seq[-1]:,.0f} tokens/s; {args.jobs} cells x {threads} "
              f"thread(s) {par[-1]:,.0f} tokens/s; ratio {par[-1] / seq[-1]:.2f}", flush=True)
    ratios = [p / s for p, s in zip(par, seq)]
    out = {"scale": args.scale, "batch": args.batch, "cores": args.cores, "jobs": args.jobs,
           "threads_per_job": threads, "seconds": args.seconds, "sequential_tokens_per_s": seq,
           "parallel_tokens_per_s": par, "ratio_median": statistics.median(ratios),
           "ratio_range": [min(ratios), max(ratios)]}
    print(f"parallel/sequential total throughput: median {out['ratio_median']:.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}, {args.rounds} rounds)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
