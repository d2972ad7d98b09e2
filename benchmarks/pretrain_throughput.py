"""Pretraining throughput: the ablate engine vs a plain Hugging Face setup, alternated in one run.

Baseline: RobertaForMaskedLM (full LM head over every token) + DataCollatorForLanguageModeling
+ torch.optim.AdamW with default settings. Ablate: ablate.model + ablate.train.trainer (masked-only LM head, fused QKV,
fast dropout masks, allocator tuning) + ablate's masking + ablate's AdamW. Same model config,
sequence length, batch, optimizer hyper-parameters and data (the packed corpus blocks).

After warm-up the two alternate for --rounds rounds of --steps steps each; we print tokens/s for
each, the ratio ablate/baseline (median and range over rounds), peak memory (RSS, each engine in
its own process), and model-FLOPs utilisation against the fp32 matmul peak this script measures.

    python benchmarks/pretrain_throughput.py                 # the `cpu` scale model
    python benchmarks/pretrain_throughput.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def matmul_peak(threads: int, seconds: float = 3.0) -> float:
    """Measured fp32 matmul FLOP/s (best of several square matmuls)."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def step_gemms(cfg, vocab: int, batch: int) -> list[tuple[int, int, int, int, int]]:
    """The matrix products of one ablate training step, as (count, batch, m, k, n): every layer's projections
    and attention products on unpadded full blocks, the LM head on the masked positions only, and for each
    forward product its two backward ones (input and weight gradients)."""
    m, L = cfg.model, cfg.data.max_len
    n_tok, h, f, heads = batch * L, m.hidden_size, m.intermediate_size, m.num_heads
    n_masked = max(1, round(cfg.pretrain.mask_prob * n_tok))
    fwd = [(m.num_layers, 1, n_tok, h, 3 * h), (m.num_layers, 1, n_tok, h, h), (m.num_layers, 1, n_tok, h, f),
           (m.num_layers, 1, n_tok, f, h), (m.num_layers, batch * heads, L, h // heads, L),
           (m.num_layers, batch * heads, L, L, h // heads), (1, 1, n_masked, h, h), (1, 1, n_masked, h, vocab)]
    return [g for c, b, r, k, n in fwd for g in ((c, b, r, k, n), (c, b, r, n, k), (c, b, k, r, n))]


def gemm_ceiling(cfg, vocab: int, batch: int, seconds: float = 3.0) -> float:
    """FLOP/s torch reaches on the step's own matrix products (step_gemms), timed one shape at a time: what
    the step could reach if everything but its matrix products took no time."""
    total_flops = total_s = 0.0
    gemms = step_gemms(cfg, vocab, batch)
    for count, b, r, k, n in gemms:
        x, w = torch.randn(b, r, k), torch.randn(b, k, n)
        torch.matmul(x, w)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / len(gemms):
            torch.matmul(x, w)
            reps += 1
        total_s += count * (time.perf_counter() - t0) / reps
        total_flops += count * 2.0 * b * r * k * n
    return total_flops / total_s


def make_config(args):
    from ablate.study.scales import SCALE_PRESETS
    from ablate.study.load import deep_merge
    from ablate.study.spec import Config

    over = {"model": {}, "data": {"train_tokens": args.train_tokens}, "pretrain": {"batch_size": args.batch}}
    if args.hidden:
        over["model"] = {"hidden_size": args.hidden, "num_layers": args.layers, "num_heads": args.heads,
                         "intermediate_size": 4 * args.hidden}
    return Config.model_validate(deep_merge(SCALE_PRESETS[args.scale], over))


def load_blocks(cfg, results: Path):
    from ablate.data.corpus import load_corpus
    from ablate.run.prepare import corpus_for
    from ablate.run.prepare import tokenizer_for, cache_for
    from ablate.store import Store

    store = Store(results)
    tok = tokenizer_for(store, cfg)
    return load_corpus(corpus_for(store, cfg), "train"), tok.get_vocab_size(), cache_for(store, cfg).tokenizer / "hf"


class Baseline:
    """The plain Hugging Face recipe (run_mlm.py style)."""

    def __init__(self, cfg, vocab, hf_dir, seed=0):
        from transformers import AutoTokenizer, DataCollatorForLanguageModeling, RobertaForMaskedLM

        from ablate.model import roberta_config

        torch.manual_seed(seed)
        self.model = RobertaForMaskedLM(roberta_config(cfg.model, cfg.data, vocab))
        self.model.train()
        p = cfg.pretrain
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=p.lr, betas=(p.beta1, p.beta2), eps=p.eps,
                                     weight_decay=p.weight_decay)
        tok = AutoTokenizer.from_pretrained(str(hf_dir))
        self.collator = DataCollatorForLanguageModeling(tokenizer=tok, mlm_probability=p.mask_prob)

    def step(self, blocks, lengths, idx, step):
        feats = [{"input_ids": blocks[i, : lengths[i]].tolist()} for i in idx]
        batch = self.collator(feats)
        loss = self.model(**batch).loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return int(batch["attention_mask"].sum())

    def flops_per_token(self, cfg, vocab):
        m = cfg.model
        return 6 * m.non_embedding_params() + 12 * m.num_layers * cfg.data.max_len * m.hidden_size + \
            6 * (m.hidden_size**2 + m.hidden_size * vocab)


class Ablate:
    """The ablate engine, as ablate.pretrain uses it."""

    def __init__(self, cfg, vocab, hf_dir, seed=0, compile=False):
        from ablate.train.trainer import Trainer

        self.cfg, self.vocab = cfg, vocab
        self.trainer = Trainer(cfg, vocab, torch.device("cpu"), seed=seed, compile=compile)

    def step(self, blocks, lengths, idx, step):
        batch = make_batch_from(blocks, lengths, idx, step, self.cfg, self.vocab)
        self.trainer.step(batch)
        return int(batch.attention_mask.sum())

    def flops_per_token(self, cfg, vocab):
        m = cfg.model
        return 6 * m.non_embedding_params() + 12 * m.num_layers * cfg.data.max_len * m.hidden_size + \
            6 * cfg.pretrain.mask_prob * (m.hidden_size**2 + m.hidden_size * vocab)


def make_batch_from(blocks, lengths, idx, step, cfg, vocab):
    from ablate.data.formats import Packed
    from ablate.data.batches import make_batch

    return make_batch(Packed(blocks, lengths), idx, np.zeros(len(idx), dtype=np.int64), 0, cfg, vocab)


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_rss(kind, args, q):
    """Peak resident memory of a few training steps, in a process of its own (Linux's VmHWM, reset first)."""
    torch.set_num_threads(args.threads)
    cfg = make_config(args)
    data, vocab, hf_dir = load_blocks(cfg, Path(args.results))
    eng = Baseline(cfg, vocab, hf_dir) if kind == "baseline" else Ablate(cfg, vocab, hf_dir, compile=args.compile)
    eng.step(data.blocks, data.lengths, np.arange(args.batch), 0)  # first step allocates optimizer state
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    except OSError:
        pass
    before = _vm_hwm_mb()
    for s in range(1, 4):
        eng.step(data.blocks, data.lengths, np.arange(s * args.batch, (s + 1) * args.batch) % len(data.lengths), s)
    q.put((kind, _vm_hwm_mb(), before))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--hidden", type=int, default=0, help="override the model width (layers/heads below)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-tokens", type=int, default=400_000)
    ap.add_argument("--steps", type=int, default=6, help="steps per engine per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", action="store_true", help="torch.compile the ablate step")
    ap.add_argument("--results", default=str(REPO / "results"), help="results root holding the data cache")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "pretrain_throughput.json"))
    args = ap.parse_args()
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))

    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    cfg = make_config(args)
    data, vocab, hf_dir = load_blocks(cfg, Path(args.results))
    ceiling = gemm_ceiling(cfg, vocab, args.batch)
    blocks, lengths = np.asarray(data.blocks), data.lengths
    engines = {"baseline": Baseline(cfg, vocab, hf_dir), "ablate": Ablate(cfg, vocab, hf_dir, compile=args.compile)}
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, len(lengths), args.batch) for _ in range(args.warmup + args.rounds * args.steps)]
    for name, eng in engines.items():  # warm-up (and compilation)
        for s in range(args.warmup):
            eng.step(blocks, lengths, batches[s], s)
    rates = {k: [] for k in engines}
    for r in range(args.rounds):
        chunk = batches[args.warmup + r * args.steps: args.warmup + (r + 1) * args.steps]
        for name, eng in engines.items():  # same batches for both, alternating
            tokens, t0 = 0, time.perf_counter()
            for s, idx in enumerate(chunk):
                tokens += eng.step(blocks, lengths, idx, s)
            rates[name].append(tokens / (time.perf_counter() - t0))
    ratios = [a / b for a, b in zip(rates["ablate"], rates["baseline"])]

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mem = {}
    for kind in engines:
        proc = ctx.Process(target=_peak_rss, args=(kind, args, q))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"the {kind} memory probe failed (exit code {proc.exitcode})")
        k, peak_mb, base_mb = q.get(timeout=60)
        mem[k] = {"peak_rss_mb": round(peak_mb, 1), "step_peak_over_resting_mb": round(peak_mb - base_mb, 1)}

    out = {
        "config": {"model": cfg.model.model_dump(), "max_len": cfg.data.max_len, "batch": args.batch,
                   "vocab": vocab, "threads": args.threads, "compile": args.compile},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "torch": torch.__version__},
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "step_gemm_gflops": round(ceiling / 1e9, 1),
        "mfu_ceiling": round(ceiling / peak, 3),
        "tokens_per_s": {k: round(statistics.median(v)) for k, v in rates.items()},
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "mfu": {k: round(statistics.median(rates[k]) * engines[k].flops_per_token(cfg, vocab) / peak, 3)
                for k in engines},
        "memory": mem,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    print(f"fp32 matmul peak: {out['matmul_peak_gflops']} GFLOP/s on {args.threads} threads; the step's own "
          f"matrix products alone reach {out['step_gemm_gflops']} GFLOP/s, an MFU ceiling of {out['mfu_ceiling']:.1%}")
    for k in engines:
        print(f"{k:9s} {out['tokens_per_s'][k]:>8} tokens/s  MFU {out['mfu'][k]:.1%}  "
              f"peak RSS {mem[k]['peak_rss_mb']} MB (a step adds {mem[k]['step_peak_over_resting_mb']} MB)")
    print(f"ratio ablate/baseline: {out['ratio_median']:.2f} (range {out['ratio_min']:.2f}-{out['ratio_max']:.2f} "
          f"over {args.rounds} rounds)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
