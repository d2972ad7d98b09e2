"""Does torch.compile pay for the ablate step once graph breaks are gone? A probe, not a target.

The engine draws dropout masks with numpy (a graph break each); here the masks are drawn first, in
eager mode, and only the encoder layer body (QKV, attention, LayerNorms, GELU, dropout multiplies,
residuals) is compiled with dynamic shapes. Three trainers on the same batches, alternating: the
engine as is ("eager"), the same computation with masks drawn up front ("same_eager": must give
bit-identical losses, which checks the probe computes what the engine does), and the compiled body.

    python benchmarks/compile_probe.py      # ~3 min, most of it compiling
"""

import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO)); sys.path.insert(0, str(REPO / "benchmarks"))
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from pretrain_throughput import make_config, load_blocks, make_batch_from
import ablate.model as E
from ablate.train.trainer import Trainer

def layer_body(layer, x, real, bias, k_attn, k_o, k_f, B: int, L: int, nh: int, p_attn: float):
    H = x.shape[-1]; hd = H // nh
    sa, so = layer.attention.self, layer.attention.output
    w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight]); b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])
    qkv = F.linear(x, w, b)
    qkv = qkv.new_zeros(B * L, 3 * H).index_copy(0, real, qkv)
    q, k, v = qkv.view(B, L, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
    scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(-1, -2) + bias
    probs = torch.softmax(scores, dim=-1) * k_attn
    ctx = (probs @ v) * (1.0 / (1.0 - p_attn))
    ctx = ctx.transpose(1, 2).reshape(B * L, H).index_select(0, real)
    x = so.LayerNorm(x + so.dense(ctx) * k_o)
    h = F.gelu(layer.intermediate.dense(x))
    return layer.output.LayerNorm(x + layer.output.dense(h) * k_f)


def fast_losses(mlm, nsp_head, batch, rng, mlm_count=None, nsp_count=None, body=layer_body):
    roberta, c = mlm.roberta, mlm.config
    p_h, p_a = c.hidden_dropout_prob, c.attention_probs_dropout_prob
    ids, am = batch.input_ids, batch.attention_mask
    B, L = ids.shape; H, nh = c.hidden_size, c.num_attention_heads
    emb = roberta.embeddings
    not_pad = (ids != 1).long(); positions = torch.cumsum(not_pad, 1) * not_pad + 1
    x = emb.word_embeddings(ids) + emb.position_embeddings(positions) + emb.token_type_embeddings.weight[0]
    bias = torch.zeros(B, 1, 1, L); bias.masked_fill_(am[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    real = am.reshape(-1).nonzero().squeeze(1); N = len(real)
    x = x.reshape(B * L, H).index_select(0, real)
    x = emb.LayerNorm(x) * rng.keep_scale((N, H), p_h, 1 / (1 - p_h))
    for layer in roberta.encoder.layer:
        ka = rng.keep_scale((B, nh, L, L), p_a, 1.0); ko = rng.keep_scale((N, H), p_h, 1 / (1 - p_h)); kf = rng.keep_scale((N, H), p_h, 1 / (1 - p_h))
        x = body(layer, x, real, bias, ka, ko, kf, B, L, nh, p_a)
    selected = batch.labels != -100; targets = batch.labels[selected]
    picked = x.index_select(0, E._rows_of_real(am, selected))
    s = F.cross_entropy(mlm.lm_head(picked).float(), targets, reduction="sum")
    n = int(targets.numel()); loss = s / (mlm_count or n)
    return {"loss": loss, "mlm": loss, "masked": n}


def main() -> None:
    torch.set_num_threads(2)
    args = argparse.Namespace(scale="cpu", hidden=0, layers=4, heads=4, batch=32, train_tokens=400_000)
    cfg = make_config(args)
    os.environ.setdefault("ABLATE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    data, vocab, hf_dir = load_blocks(cfg, REPO / "results")
    blocks, lengths = np.asarray(data.blocks), data.lengths

    compiled_body = torch.compile(layer_body, dynamic=True)
    rng = np.random.default_rng(0)
    bs = [make_batch_from(blocks, lengths, rng.integers(0, len(lengths), 32), 0, cfg, vocab) for _ in range(60)]
    trs = {"eager": Trainer(cfg, vocab, torch.device("cpu"), seed=0), "same_eager": Trainer(cfg, vocab, torch.device("cpu"), seed=0), "compiled": Trainer(cfg, vocab, torch.device("cpu"), seed=0)}
    trs["same_eager"].loss_fn = fast_losses
    trs["compiled"].loss_fn = lambda *a, **k: fast_losses(*a, **k, body=compiled_body)
    t = time.perf_counter()
    for b in bs[:3]:
        for k in trs: trs[k].step(b)
    compile_s = time.perf_counter() - t
    print(f"warm-up (incl. compilation): {compile_s:.0f} s", flush=True)
    rates = {k: [] for k in trs}; losses = {k: [] for k in trs}
    for r in range(5):
        for k in trs:
            t = time.perf_counter()
            for b in bs[3 + r*8: 3 + (r+1)*8]: losses[k].append(float(trs[k].step(b)["loss"]))
            rates[k].append(8 / (time.perf_counter() - t))
    print({k: [round(x, 2) for x in v] for k, v in rates.items()})
    print("compiled/eager", statistics.median(a / b for a, b in zip(rates["compiled"], rates["eager"])))
    print("same_eager == eager losses:", losses["same_eager"] == losses["eager"], "max |compiled-eager|", max(abs(a-b) for a, b in zip(losses["compiled"], losses["eager"])))
    out = {"steps_per_s": rates, "compiled_over_eager_median": round(statistics.median(a / b for a, b in zip(rates["compiled"], rates["eager"])), 3),
           "same_eager_bit_identical": losses["same_eager"] == losses["eager"],
           "max_abs_loss_diff_compiled": max(abs(a - b) for a, b in zip(losses["compiled"], losses["eager"])), "warmup_s": round(compile_s, 1)}
    (REPO / "benchmarks" / "results" / "compile_probe.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
