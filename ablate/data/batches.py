"""Packed blocks -> training batches: which blocks a step takes, and their masked inputs as tensors.

The data order is a pure function of (seed, epoch): each epoch is a fixed permutation of the blocks, and
step s takes samples s*B .. (s+1)*B-1 of that endless stream. Masks are a pure function of (seed, mask
epoch, block index) (ablate.data.masking), so a batch never depends on what ran before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ablate.data.formats import Packed, token_types
from ablate.data.masking import mask_epoch, mask_tokens
from ablate.data.vocab import PAD

if TYPE_CHECKING:  # the data stages take the spec; they never import the study layer
    from ablate.study.spec import Config


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


@dataclass
class BatchStream:
    """Step -> (block indices, mask epoch) over an endless stream of epochs."""

    n_blocks: int
    batch_size: int
    seed: int
    masking: str
    static_copies: int

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, 7]).permutation(self.n_blocks)

    def indices(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Block indices of this step's batch, and each one's data epoch."""
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size, dtype=np.int64)
        epochs = pos // self.n_blocks
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[pos[sel] % self.n_blocks]
        return out, epochs


def _rows(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """arr[idx] reading a memory map in ascending order (then restoring idx's order)."""
    order = np.argsort(idx, kind="stable")
    out = np.asarray(arr[idx[order]])
    return out[np.argsort(order, kind="stable")]


def make_batch(data: Packed, idx: np.ndarray, epochs: np.ndarray, seed: int, cfg: Config, vocab: int,
               mask_epochs: Optional[np.ndarray] = None) -> Batch:
    """Blocks at idx, masked for their mask epochs (pure functions of seed, epoch and index) -> Batch."""
    p = cfg.pretrain
    width = int(data.lengths[idx].max())
    blocks = _rows(data.blocks, idx)[:, :width]
    inputs = np.empty(blocks.shape, dtype=np.int64)
    labels = np.empty(blocks.shape, dtype=np.int64)
    if mask_epochs is None:
        mask_epochs = np.array([mask_epoch(p.masking, int(e), p.static_copies) for e in epochs])
    for me in np.unique(mask_epochs):  # usually one epoch per batch
        sel = mask_epochs == me
        inputs[sel], labels[sel] = mask_tokens(
            blocks[sel], idx[sel], seed, int(me), vocab, p.mask_prob, p.mask_token_frac, p.random_token_frac
        )
    batch = Batch(torch.from_numpy(inputs), torch.from_numpy((blocks != PAD).astype(np.int64)),
                  torch.from_numpy(labels))
    if data.is_pair:
        batch.token_type_ids = torch.from_numpy(token_types(blocks, data.b_start[idx]))
        batch.nsp_labels = torch.from_numpy(data.nsp[idx].astype(np.int64))
    return batch


