"""The network: a scaled-down RoBERTa (transformers' RobertaForMaskedLM, unchanged, so checkpoints load with
AutoModelForMaskedLM.from_pretrained), its forward pass made fast, and the NSP head. (The FLOP count is Config.training_flops, so planning never imports torch.)

Input: the spec's ModelSpec and DataSpec (shape, max_len), a batch (input_ids, attention_mask, labels) [B, L].
Output: the MLM loss over masked positions, the same number transformers computes.

What makes the forward pass fast on a CPU (benchmarks/pretrain_throughput.py measures each):
- the LM head runs only on the ~15% masked positions, not on every token;
- one fused QKV projection per layer instead of three;
- unpadded: projections, FFN, LayerNorm and dropout run on real tokens only (FULL-SENTENCES
  blocks end short of max_len; padding was ~15% of the work), attention on the padded layout, and
  the LM head reads the masked rows from the unpadded states;
- dropout masks from numpy's PCG64 bit stream (one 32-bit draw per element, compared with
  round(p * 2**32)) instead of torch's CPU bernoulli, which is several times slower; the rate is
  p to within 2**-32, applied as one multiply by a float 0/scale tensor. On CUDA, torch's own
  dropout is used.
With dropout off (eval mode) the loss equals transformers' RobertaForMaskedLM loss on the same
inputs and labels (tests/test_engine.py), and for `norm: pre` RobertaPreLayerNormForMaskedLM's (tests/test_recipe.py). The optimizer step lives in ablate.train.trainer.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ablate.data.batches import Batch
from ablate.data.vocab import BOS, EOS, PAD
from ablate.study.spec import DataSpec, ModelSpec


def roberta_config(model: ModelSpec, data: DataSpec, vocab_size: int, **extra):
    """transformers' config for the spec: RobertaConfig, or RobertaPreLayerNormConfig for norm: pre (its own model
    type, so the Auto classes load either kind of checkpoint with the right layer order)."""
    from transformers import RobertaConfig, RobertaPreLayerNormConfig  # lazy: ~1.3 s; the forward pass needs neither

    config_class = RobertaPreLayerNormConfig if model.norm == "pre" else RobertaConfig
    return config_class(
        vocab_size=vocab_size,
        hidden_size=model.hidden_size,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.num_heads,
        intermediate_size=model.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=model.dropout,
        attention_probs_dropout_prob=model.dropout,
        # RoBERTa numbers positions from padding_idx + 1, so it needs max_len + 2 slots.
        max_position_embeddings=data.max_len + 2,
        type_vocab_size=2,  # every variant: pair formats use type 1 for segment B
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        initializer_range=model.init_range,
        attn_implementation="sdpa",
        **extra,
    )


def build_mlm(model: ModelSpec, data: DataSpec, vocab_size: int):
    """A freshly initialised RobertaForMaskedLM, or RobertaPreLayerNormForMaskedLM (seed torch before calling)."""
    from transformers import AutoModelForMaskedLM  # lazy, as above

    return AutoModelForMaskedLM.from_config(roberta_config(model, data, vocab_size))


def is_pre_ln(mlm) -> bool:
    return mlm.config.model_type == "roberta-prelayernorm"


def count_params(mlm) -> dict[str, int]:
    total = sum(p.numel() for p in mlm.parameters())
    emb = sum(p.numel() for p in mlm.base_model.embeddings.parameters())
    return {"params": total, "non_embedding_params": total - emb}


class NSPHead(torch.nn.Module):
    """Next-sentence prediction on the first token: dense + tanh (BERT's pooler), then 2 classes."""

    def __init__(self, model: ModelSpec):
        super().__init__()
        self.dense = torch.nn.Linear(model.hidden_size, model.hidden_size)
        self.out = torch.nn.Linear(model.hidden_size, 2)
        self.dropout = model.dropout

    def forward(self, first: torch.Tensor, rng=None) -> torch.Tensor:
        """first: [B, H] hidden state of <s> -> logits [B, 2]."""
        return self.out(dropout(torch.tanh(self.dense(first)), self.dropout, self.training, rng))


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
    roberta, cfg, pre = mlm.base_model, mlm.config, is_pre_ln(mlm)
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
        qkv = F.linear(layer.attention.LayerNorm(x) if pre else x, w, b)  # [N, 3H] (or [B, L, 3H])
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
        if pre:  # x + sublayer(LayerNorm(x)) twice; one LayerNorm after the last block (below)
            x = x + dropout(so.dense(ctx), p_hidden, training, rng)
            h = F.gelu(layer.intermediate.dense(layer.intermediate.LayerNorm(x)))  # [N, 4H]
            x = x + dropout(layer.output.dense(h), p_hidden, training, rng)
        else:  # LayerNorm(x + sublayer(x)) twice
            x = so.LayerNorm(x + dropout(so.dense(ctx), p_hidden, training, rng))
            h = F.gelu(layer.intermediate.dense(x))  # [N, 4H]
            x = layer.output.LayerNorm(x + dropout(layer.output.dense(h), p_hidden, training, rng))
    if pre:
        x = roberta.LayerNorm(x)
    return x, real


def _rows_of_real(attention_mask: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Flat positions `which` (bool [B, L], all at real tokens) -> their rows in encoder_states' [N, H]."""
    flat = attention_mask.reshape(-1)
    if bool((which.reshape(-1) & (flat == 0)).any()):
        raise ValueError("a position that needs a hidden state is padding")
    return (flat.cumsum(0) - 1)[which.reshape(-1)]


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
