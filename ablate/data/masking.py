"""MLM masking as a pure function of (seed, epoch, example index): BERT's 15% with 80/10/10.

Every random number is a counter-based hash (splitmix64) of (seed, mask epoch, example
index, position, stream), so a mask does not depend on batch composition, data-loader
workers or where a run resumed (fairseq's mask_tokens_dataset idea, vectorised).

- dynamic: mask epoch = the epoch in which the example is fed, so every pass has a new mask.
- static:  mask epoch = epoch % k (k = static_copies): BERT's k masked copies drawn once;
           k=1 gives the same mask in every epoch.
Special tokens (ids below NUM_SPECIAL, the in-block document separator included) are never
selected and never used as random replacements.
"""

from __future__ import annotations

import numpy as np

from ablate.data.vocab import MASK, NUM_SPECIAL

IGNORE = -100  # label of positions that carry no loss
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
STREAM_SELECT, STREAM_ACTION, STREAM_RANDOM = 1, 2, 3


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, index: np.ndarray, length: int, stream: int) -> np.ndarray:
    """[B, length] floats in [0, 1), a pure function of the arguments."""
    head = np.array([seed, epoch, stream], dtype=np.uint64)
    key = _mix(_mix(_mix(head[0:1] + _GOLDEN) ^ head[1:2]) ^ head[2:3])  # [1]
    rows = _mix(key ^ (np.asarray(index, dtype=np.uint64)[:, None] * _GOLDEN))  # [B, 1]
    pos = np.arange(length, dtype=np.uint64)[None, :]
    bits = _mix(rows + pos * np.uint64(0xD6E8FEB86659FD93))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def mask_epoch(masking: str, epoch: int, static_copies: int) -> int:
    """The epoch a mask is drawn for: pinned to epoch % k when static."""
    if masking == "static":
        return epoch % static_copies
    if masking == "dynamic":
        return epoch
    raise ValueError(f"unknown masking {masking!r}")


def mask_tokens(
    tokens: np.ndarray,
    index: np.ndarray,
    seed: int,
    epoch: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    mask_token_frac: float = 0.8,
    random_token_frac: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Mask a batch of blocks [B, L] -> (input_ids [B, L], labels [B, L] with IGNORE off-mask).

    `index` [B] are the examples' positions in the dataset; `epoch` is the mask epoch.
    """
    tokens = np.asarray(tokens)
    B, L = tokens.shape
    maskable = tokens >= NUM_SPECIAL  # specials (and <pad>) are never selected
    selected = maskable & (uniforms(seed, epoch, index, L, STREAM_SELECT) < mask_prob)
    action = uniforms(seed, epoch, index, L, STREAM_ACTION)
    to_mask = selected & (action < mask_token_frac)
    to_random = selected & (action >= mask_token_frac) & (action < mask_token_frac + random_token_frac)
    rand_u = uniforms(seed, epoch, index, L, STREAM_RANDOM)
    random_ids = NUM_SPECIAL + np.floor(rand_u * (vocab_size - NUM_SPECIAL)).astype(np.int64)
    inputs = tokens.astype(np.int64, copy=True)
    inputs[to_mask] = MASK
    inputs[to_random] = random_ids[to_random]
    labels = np.where(selected, tokens, IGNORE).astype(np.int64)
    return inputs, labels
