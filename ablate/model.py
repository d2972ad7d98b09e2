"""ModelSpec -> a scaled-down RoBERTa from transformers.

The network is transformers' RobertaForMaskedLM, unchanged, so checkpoints load with
AutoModelForMaskedLM.from_pretrained. The training step lives in ablate.engine.
"""

from __future__ import annotations

import torch

from ablate.data.tokenizer import BOS, EOS, PAD
from ablate.spec import DataSpec, ModelSpec


def roberta_config(model: ModelSpec, data: DataSpec, vocab_size: int, **extra):
    from transformers import RobertaConfig

    return RobertaConfig(
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
        attn_implementation="sdpa",
        **extra,
    )


def build_mlm(model: ModelSpec, data: DataSpec, vocab_size: int):
    """A freshly initialised RobertaForMaskedLM (seed torch before calling)."""
    from transformers import RobertaForMaskedLM

    return RobertaForMaskedLM(roberta_config(model, data, vocab_size))


def count_params(mlm) -> dict[str, int]:
    total = sum(p.numel() for p in mlm.parameters())
    emb = sum(p.numel() for p in mlm.roberta.embeddings.parameters())
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
        from ablate.engine import dropout

        return self.out(dropout(torch.tanh(self.dense(first)), self.dropout, self.training, rng))
