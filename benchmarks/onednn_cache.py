"""Memory over a pretraining cell: oneDNN's primitive cache at torch's default (1024) vs ablate's (8).

oneDNN, behind torch's CPU kernels, keeps one compiled primitive per operation and shape. ablate's
engine changes shapes at every step (the LM head runs on the masked rows only, whose count varies;
unpadded blocks vary the token count), so at the default capacity the cache fills with primitives
that are never used again and the process grows by megabytes a step. `import ablate` sets
ONEDNN_PRIMITIVE_CACHE_CAPACITY=8 unless the user set it.

Both arms run the same steps of the `cpu` scale model (batch 128 by default: the batch_size study's
x4 cell, where the growth was first seen, ~10 GB) on the real corpus, each in its own process, at
the same time, one thread each, so they share the machine's noise. Printed: resident memory every
--every steps, the growth per step over the second half, seconds per step, the ratios, and whether the
two arms' losses are bit-identical (the cache holds compiled kernels, not results).

    python benchmarks/onednn_cache.py                       # 160 steps at batch 128, ~4 min
    python benchmarks/onednn_cache.py --batch 32 --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH_DEFAULT = "1024"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def arm(args) -> None:
    """One arm, in this process: train --steps steps, print one JSON line with its trace."""
    sys.path.insert(0, str(REPO))
    import ablate  # noqa: F401  (sets the cache capacity unless the environment did)
    import torch

    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for
    from ablate.run.prepare import tokenizer_for
    from ablate.train.trainer import Trainer
    from ablate.data.batches import BatchStream, make_batch

    torch.set_num_threads(1)
    cfg, store = config(args)
    vocab = tokenizer_for(store, cfg).get_vocab_size()
    train = load_corpus(corpus_for(store, cfg), "train")
    trainer = Trainer(cfg, vocab, torch.device("cpu"), seed=0)
    stream = BatchStream(len(train.lengths), cfg.pretrain.total_batch, 0, "dynamic", 1)
    trace, losses, times = [], [], []
    for step in range(args.steps):
        idx, epochs = stream.indices(step)
        t0 = time.perf_counter()
        out = trainer.step(make_batch(train, idx, epochs, 0, cfg, vocab))
        times.append(time.perf_counter() - t0)
        losses.append(out["loss"].item())
        if (step + 1) % args.every == 0:
            trace.append([step + 1, round(rss_mb(), 1)])
    print(json.dumps({"capacity": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY"), "trace": trace,
                      "losses": losses, "times": times, "batch": cfg.pretrain.total_batch}))


def config(args):
    from ablate.study.scales import SCALE_PRESETS
    from ablate.study.load import deep_merge
    from ablate.study.spec import Config
    from ablate.store import Store

    over = {"pretrain": {"batch_size": args.batch, "batch_multiplier": 1, "micro_batch_size": args.batch}}
    if args.train_tokens:
        over["data"] = {"train_tokens": args.train_tokens}
    return Config.model_validate(deep_merge(SCALE_PRESETS[args.scale], over)), Store(Path(args.results))


def prepare(args) -> None:
    """Train the tokenizer and pack the corpus once, before the two arms start at the same time (each would
    otherwise write the same cache entry at once)."""
    sys.path.insert(0, str(REPO))
    from ablate.run.prepare import corpus_for
    from ablate.run.prepare import tokenizer_for

    cfg, store = config(args)
    tokenizer_for(store, cfg)
    corpus_for(store, cfg)


def summary(r: dict) -> dict:
    trace, times = r["trace"], r["times"]
    half = [p for p in trace if p[0] > trace[-1][0] / 2]
    growth = (half[-1][1] - half[0][1]) / max(1, half[-1][0] - half[0][0])
    tail = sorted(times[len(times) // 2:])
    return {"capacity": r["capacity"], "rss_end_mb": trace[-1][1], "rss_peak_mb": max(p[1] for p in trace),
            "growth_mb_per_step_second_half": round(growth, 2), "s_per_step_median_second_half": tail[len(tail) // 2],
            "trace": trace}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=160)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--train-tokens", type=int, default=0, help="override the scale's corpus size (smoke runs)")
    ap.add_argument("--results", default=str(REPO / "results"), help="results root holding the data cache")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "onednn_cache.json"))
    ap.add_argument("--arm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        return arm(args)
    prepare(args)
    cmd = [sys.executable, __file__, "--arm", "--scale", args.scale, "--batch", str(args.batch), "--steps",
           str(args.steps), "--every", str(args.every), "--results", args.results, "--train-tokens", str(args.train_tokens)]
    env_base = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    procs = {"baseline (torch default, 1024)": subprocess.Popen(
                 cmd, env={**env_base, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": TORCH_DEFAULT}, stdout=subprocess.PIPE, text=True),
             "ablate": subprocess.Popen(cmd, env=env_base, stdout=subprocess.PIPE, text=True)}
    runs = {}
    for name, p in procs.items():
        out, _ = p.communicate()
        if p.returncode != 0:
            sys.exit(f"the {name} arm failed (exit {p.returncode})")
        runs[name] = json.loads(out.strip().splitlines()[-1])
    base, ours = (summary(runs[k]) for k in procs)
    same = runs["ablate"]["losses"] == runs["baseline (torch default, 1024)"]["losses"]
    print(f"{args.steps} steps of the {args.scale} model at batch {args.batch}, both arms at once, one thread each")
    print(f"{'':34s} {'baseline (1024)':>16s} {'ablate (' + str(ours['capacity']) + ')':>16s} {'ratio':>8s}")
    for key, label in (("rss_end_mb", "resident memory at the end (MB)"),
                       ("growth_mb_per_step_second_half", "growth per step, 2nd half (MB)"),
                       ("s_per_step_median_second_half", "seconds per step (median, 2nd half)")):
        ratio = base[key] / ours[key] if ours[key] else float("inf")
        print(f"{label:34s} {base[key]:16.3f} {ours[key]:16.3f} {ratio:8.2f}")
    print(f"losses bit-identical over {args.steps} steps: {same}")
    result = {"machine": {"processor": platform.processor(), "cpu_count": os.cpu_count()},
              "args": {k: v for k, v in vars(args).items() if k not in ("arm", "json", "results")},
              "capacities": {"baseline": base["capacity"], "ablate": ours["capacity"]},
              "baseline": base, "ablate": ours, "memory_ratio_end": base["rss_end_mb"] / ours["rss_end_mb"],
              "speed_ratio": base["s_per_step_median_second_half"] / ours["s_per_step_median_second_half"],
              "losses_identical": same}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
