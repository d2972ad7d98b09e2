"""The pretraining step, made fast without changing what is computed.

Input: a RobertaForMaskedLM (the parameters live there, so checkpoints stay plain
transformers checkpoints) and a batch (input_ids, attention_mask, labels) [B, L].
Output: the MLM loss over masked positions, the same number transformers computes.

What makes it fast on a CPU (benchmarks/pretrain_throughput.py measures each):
- the LM head runs only on the ~15% masked positions, not on every token;
- one fused QKV projection per layer instead of three;
- unpadded: projections, FFN, LayerNorm and dropout run on real tokens only (FULL-SENTENCES
  blocks end short of max_len; padding was ~15% of the work), attention on the padded layout, and
  the LM head reads the masked rows from the unpadded states;
- dropout masks from numpy's PCG64 bit stream (one 32-bit draw per element, compared with
  round(p * 2**32)) instead of torch's CPU bernoulli, which is several times slower; the rate is
  p to within 2**-32, applied as one multiply by a float 0/scale tensor. On CUDA, torch's own
  dropout is used;
- optional torch.compile of the whole step.
With dropout off (eval mode) the loss equals transformers' RobertaForMaskedLM loss on the same
inputs and labels (tests/test_engine.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ablate.data.tokenizer import PAD


class DropoutRNG:
    """Dropout masks from a seeded numpy PCG64 stream; its state is plain data, so resume can restore it."""

    def __init__(self, seed: int):
        self.gen = np.random.Generator(np.random.PCG64(seed))

    def _bits(self, shape: torch.Size) -> tuple[torch.Tensor, int]:
        """The next prod(shape) 32-bit draws as int32 (uniform on [-2**31, 2**31)), and the threshold below
        which a draw means drop."""
        n = math.prod(shape)
        raw = self.gen.bit_generator.random_raw((n + 1) // 2)  # uint64: two 32-bit draws each
        return torch.from_numpy(raw.view(np.int32)[:n]).view(shape), -(2**31)

    def drop_mask(self, shape: torch.Size, p: float) -> torch.Tensor:
        """A bool tensor, True (drop) with probability p to within 2**-32."""
        bits, low = self._bits(shape)
        return bits < low + round(p * 2**32)

    def keep_scale(self, shape: torch.Size, p: float, scale: float) -> torch.Tensor:
        """float32: 0 where drop_mask would drop, `scale` elsewhere (the same draws as drop_mask).

        x * keep_scale(.., 1 / (1 - p)) is one pass forward and one backward, where masked_fill and a
        multiply were two each; kept values are x * scale exactly as before, dropped ones are zero."""
        bits, low = self._bits(shape)
        keep = torch.empty(shape, dtype=torch.float32)
        torch.ge(bits, low + round(p * 2**32), out=keep)  # 1.0 kept, 0.0 dropped (3x faster than where)
        return keep if scale == 1.0 else keep.mul_(scale)

    def state(self) -> dict:
        return self.gen.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.gen.bit_generator.state = state


def dropout(x: torch.Tensor, p: float, training: bool, rng: Optional[DropoutRNG]) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.is_cuda or rng is None:
        return F.dropout(x, p, True)
    return x * rng.keep_scale(x.shape, p, 1.0 / (1.0 - p))


def encoder_forward(mlm, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                    rng: Optional[DropoutRNG], token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RobertaModel's forward, written out: input_ids [B, L] -> hidden states [B, L, H].

    Hidden states equal transformers' at real tokens; at padding they are zero (never used: pads
    carry no label and are masked out of attention)."""
    x, real = encoder_states(mlm, input_ids, attention_mask, rng, token_type_ids)
    if real is None:
        return x
    B, L = input_ids.shape
    return x.new_zeros(B * L, x.shape[-1]).index_copy(0, real, x).view(B, L, -1)  # pads: zeros


def encoder_states(mlm, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor],
                   rng: Optional[DropoutRNG], token_type_ids: Optional[torch.Tensor] = None
                   ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The encoder on real tokens only -> (x, real): x [N, H] at the N real tokens, whose flat indices
    in [B * L] are `real`; or x [B, L, H] and real None when nothing is padded."""
    roberta, cfg = mlm.roberta, mlm.config
    training = mlm.training
    p_hidden, p_attn = cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob
    B, L = input_ids.shape
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    hd = H // nh
    emb = roberta.embeddings
    not_pad = (input_ids != PAD).long()  # RoBERTa numbers positions from PAD + 1, pads get PAD
    positions = torch.cumsum(not_pad, dim=1) * not_pad + PAD  # [B, L]
    types = emb.token_type_embeddings.weight[0] if token_type_ids is None else emb.token_type_embeddings(token_type_ids)
    x = emb.word_embeddings(input_ids) + emb.position_embeddings(positions) + types  # [B, L, H]
    bias, real = None, None
    if attention_mask is not None and not bool(attention_mask.all()):
        bias = torch.zeros(B, 1, 1, L, dtype=x.dtype, device=x.device)
        bias.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)  # [B, 1, 1, L]
        # Unpadded: every per-token op (projections, FFN, LayerNorm, dropout) runs on the N real
        # tokens only; attention alone sees the padded [B, L] layout, and pads are masked there.
        real = attention_mask.reshape(-1).nonzero().squeeze(1)  # [N]
        x = x.reshape(B * L, H).index_select(0, real)  # [N, H]
    x = dropout(emb.LayerNorm(x), p_hidden, training, rng)
    for layer in roberta.encoder.layer:
        sa, so = layer.attention.self, layer.attention.output
        w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight])  # [3H, H]
        b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias])  # [3H]
        qkv = F.linear(x, w, b)  # [N, 3H] (or [B, L, 3H])
        if real is not None:
            qkv = qkv.new_zeros(B * L, 3 * H).index_copy(0, real, qkv)  # [B * L, 3H], zeros at pads
        qkv = qkv.view(B, L, 3, nh, hd).permute(2, 0, 3, 1, 4)  # [3, B, nh, L, hd]
        q, k, v = qkv.unbind(0)  # (its backward stacks; indexing would zero-fill [3, B, nh, L, hd] thrice)
        if training and p_attn > 0 and rng is not None and not x.is_cuda:
            # Scaling q (L x hd) is cheaper than scaling the scores (L x L); likewise the
            # dropout's 1/(1-p) is applied to the context, not to the probabilities.
            scores = (q * (1.0 / math.sqrt(hd))) @ k.transpose(-1, -2)  # [B, nh, L, L]
            if bias is not None:
                scores = scores + bias
            probs = torch.softmax(scores, dim=-1) * rng.keep_scale(scores.shape, p_attn, 1.0)
            ctx = (probs @ v) * (1.0 / (1.0 - p_attn))  # [B, nh, L, hd]
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p_attn if training else 0.0)
        ctx = ctx.transpose(1, 2).reshape(B * L, H) if real is not None else ctx.transpose(1, 2).reshape(B, L, H)
        if real is not None:
            ctx = ctx.index_select(0, real)  # [N, H]
        x = so.LayerNorm(x + dropout(so.dense(ctx), p_hidden, training, rng))
        h = F.gelu(layer.intermediate.dense(x))  # [N, 4H]
        x = layer.output.LayerNorm(x + dropout(layer.output.dense(h), p_hidden, training, rng))
    return x, real


def _rows_of_real(attention_mask: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Flat positions `which` (bool [B, L], all at real tokens) -> their rows in encoder_states' [N, H]."""
    flat = attention_mask.reshape(-1)
    if bool((which.reshape(-1) & (flat == 0)).any()):
        raise ValueError("a position that needs a hidden state is padding")
    return (flat.cumsum(0) - 1)[which.reshape(-1)]


@dataclass
class Batch:
    """One step's inputs, all [B, L] except nsp_labels [B]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor  # -100 where no MLM loss is taken
    token_type_ids: Optional[torch.Tensor] = None  # pair formats: 1 on segment B
    nsp_labels: Optional[torch.Tensor] = None  # pair formats: 0 = B continues A, 1 = B is random

    def slice(self, start: int, stop: int) -> "Batch":
        return Batch(*(None if t is None else t[start:stop] for t in
                       (self.input_ids, self.attention_mask, self.labels, self.token_type_ids, self.nsp_labels)))

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(None if t is None else t.to(device) for t in
                       (self.input_ids, self.attention_mask, self.labels, self.token_type_ids, self.nsp_labels)))


def masked_lm_loss(mlm, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor], labels: torch.Tensor,
                   rng: Optional[DropoutRNG] = None, reduction: str = "mean",
                   token_type_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:
    """Cross-entropy over positions with a label (!= -100), the LM head run on those alone -> (loss, count)."""
    hidden = encoder_forward(mlm, input_ids, attention_mask, rng, token_type_ids)  # [B, L, H]
    return masked_lm_loss_from_hidden(mlm, hidden, labels, reduction)


def masked_lm_loss_from_hidden(mlm, hidden: torch.Tensor, labels: torch.Tensor, reduction: str) -> tuple[torch.Tensor, int]:
    selected = labels != -100
    return _lm_loss(mlm, hidden[selected], labels[selected], reduction)


def _lm_loss(mlm, rows: torch.Tensor, targets: torch.Tensor, reduction: str) -> tuple[torch.Tensor, int]:
    """The LM head on the masked positions' hidden states [M, H] alone -> (cross-entropy, M)."""
    return F.cross_entropy(mlm.lm_head(rows).float(), targets, reduction=reduction), int(targets.numel())


def pretrain_losses(mlm, nsp_head, batch: Batch, rng: Optional[DropoutRNG], mlm_count: Optional[int] = None,
                    nsp_count: Optional[int] = None) -> dict:
    """MLM loss (+ NSP loss on the first token when nsp_head is given) -> {loss, mlm, nsp, masked, nsp_correct}.

    Losses are sums divided by mlm_count / nsp_count (default: this batch's masked tokens / sequences),
    so micro-batches of one batch add up to exactly the whole batch's mean.
    """
    x, real = encoder_states(mlm, batch.input_ids, batch.attention_mask, rng, batch.token_type_ids)
    selected = batch.labels != -100
    # the LM head reads the masked rows straight from the unpadded states (no [B, L, H] scatter)
    picked = x[selected] if real is None else x.index_select(0, _rows_of_real(batch.attention_mask, selected))
    mlm_sum, n = _lm_loss(mlm, picked, batch.labels[selected], "sum")
    mlm_loss = mlm_sum / (mlm_count or max(n, 1))
    out = {"loss": mlm_loss, "mlm": mlm_loss, "masked": n}
    if nsp_head is not None and batch.nsp_labels is not None:
        if real is None:
            first = x[:, 0]
        else:
            at_first = torch.zeros_like(selected)
            at_first[:, 0] = True
            first = x.index_select(0, _rows_of_real(batch.attention_mask, at_first))
        logits = nsp_head(first, rng)  # [B, 2]
        nsp = F.cross_entropy(logits.float(), batch.nsp_labels, reduction="sum") / (nsp_count or len(logits))
        out.update(loss=mlm_loss + nsp, nsp=nsp, nsp_correct=int((logits.argmax(-1) == batch.nsp_labels).sum()))
    return out


def tune_allocator() -> None:
    """Keep freed memory in glibc's heap instead of returning it to the OS on every step.

    A training step allocates and frees the same large buffers each time; with glibc's defaults
    each one is a fresh mmap whose pages fault in again. Does nothing off glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def make_optimizer(model, cfg):
    """AdamW as RoBERTa: (0.9, 0.98), eps 1e-6, decay on weight matrices only; multi-tensor (foreach)."""
    p = cfg.pretrain
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": p.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=p.peak_lr, betas=(p.beta1, p.beta2), eps=p.eps, foreach=True)


class Trainer:
    """Model (+ NSP head) + optimizer + schedule + dropout RNG: `step(batch)` is one optimizer step."""

    def __init__(self, cfg, vocab: int, device: torch.device, seed: int, compile: bool = False):
        from ablate.model import NSPHead, build_mlm

        tune_allocator()
        self.cfg, self.device = cfg, device
        torch.manual_seed(seed)
        self.model = build_mlm(cfg.model, cfg.data, vocab).to(device)
        self.nsp_head = NSPHead(cfg.model).to(device) if cfg.pretrain.nsp else None
        modules = torch.nn.ModuleDict({"mlm": self.model, **({"nsp": self.nsp_head} if self.nsp_head else {})})
        modules.train()
        self.params = list(modules.parameters())
        self.opt = make_optimizer(modules, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, linear_schedule(cfg.pretrain.total_steps,
                                                                                 cfg.pretrain.warmup_ratio))
        self.rng = DropoutRNG(seed)
        self.loss_fn = torch.compile(pretrain_losses, dynamic=True) if compile else pretrain_losses

    def step(self, batch: Batch) -> dict:
        """Forward, backward (in micro-batches if configured), clip, update; returns detached losses and counts."""
        micro = self.cfg.pretrain.micro_batch_size
        size = len(batch.input_ids)
        chunks = [batch] if not micro or micro >= size else [batch.slice(i, i + micro) for i in range(0, size, micro)]
        mlm_count, nsp_count = max(1, int((batch.labels != -100).sum())), size
        self.opt.zero_grad(set_to_none=True)
        total: dict = {}
        for chunk in chunks:
            with autocast(self.device):
                out = self.loss_fn(self.model, self.nsp_head, chunk, self.rng, mlm_count, nsp_count)
            if not torch.isfinite(out["loss"]):
                return {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
            out["loss"].backward()
            for k, v in out.items():
                total[k] = total.get(k, 0) + (v.detach() if torch.is_tensor(v) else v)
        if self.cfg.pretrain.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.pretrain.grad_clip, foreach=True)
        self.opt.step()
        self.sched.step()
        return total

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]


def linear_schedule(total: int, warmup_ratio: float):
    """Linear warmup over warmup_ratio of the steps, then linear decay to 0."""
    warm = max(1, int(round(total * warmup_ratio)))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return f


def autocast(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
