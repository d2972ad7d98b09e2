"""Masking: 15% selected, 80/10/10, specials never touched; static pinned across epochs, dynamic not."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.data.masking import IGNORE, mask_epoch, mask_tokens, uniforms
from ablate.data.vocab import BOS, EOS, MASK, NUM_SPECIAL, PAD

VOCAB = 1000


def batch(n=512, length=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(NUM_SPECIAL, VOCAB, (n, length))
    x[:, 0] = BOS
    x[:, 60] = EOS  # an in-block document separator
    x[:, -1] = EOS
    x[: n // 4, 100:] = PAD  # some padded rows
    x[: n // 4, 99] = EOS
    return x


def test_rates_over_a_large_sample():
    x = batch()
    inputs, labels = mask_tokens(x, np.arange(len(x)), seed=3, epoch=0, vocab_size=VOCAB)
    maskable = x >= NUM_SPECIAL
    selected = labels != IGNORE
    rate = selected.sum() / maskable.sum()
    assert abs(rate - 0.15) < 0.005
    sel_in = inputs[selected]
    sel_orig = x[selected]
    frac_mask = (sel_in == MASK).mean()
    frac_same = (sel_in == sel_orig).mean()  # kept, or a random token that happens to be the same
    frac_random = 1 - frac_mask - frac_same
    assert abs(frac_mask - 0.8) < 0.01
    assert abs(frac_random - 0.1) < 0.01
    assert abs(frac_same - 0.1) < 0.01
    # labels hold the original tokens at selected positions
    assert (labels[selected] == sel_orig).all()


def test_specials_never_selected_nor_used_as_replacements():
    x = batch()
    inputs, labels = mask_tokens(x, np.arange(len(x)), seed=1, epoch=5, vocab_size=VOCAB)
    special = x < NUM_SPECIAL
    assert (labels[special] == IGNORE).all()
    assert (inputs[special] == x[special]).all()
    changed = (inputs != x) & (inputs != MASK)
    assert changed.any()
    assert (inputs[changed] >= NUM_SPECIAL).all() and (inputs[changed] < VOCAB).all()


def test_static_masks_identical_across_epochs():
    x = batch(64)
    idx = np.arange(64)
    masks = [mask_tokens(x, idx, 7, mask_epoch("static", e, 1), VOCAB)[1] for e in range(4)]
    for m in masks[1:]:
        assert (m == masks[0]).all()


def test_static_with_k_copies_cycles():
    x = batch(64)
    idx = np.arange(64)
    m = [mask_tokens(x, idx, 7, mask_epoch("static", e, 3), VOCAB)[1] for e in range(6)]
    assert (m[0] == m[3]).all() and (m[1] == m[4]).all()
    assert not (m[0] == m[1]).all()


def test_dynamic_masks_change_but_are_reproducible():
    x = batch(64)
    idx = np.arange(64)
    e0 = mask_tokens(x, idx, 7, mask_epoch("dynamic", 0, 1), VOCAB)
    e1 = mask_tokens(x, idx, 7, mask_epoch("dynamic", 1, 1), VOCAB)
    again = mask_tokens(x, idx, 7, mask_epoch("dynamic", 1, 1), VOCAB)
    assert not (e0[1] == e1[1]).all()
    assert (again[0] == e1[0]).all() and (again[1] == e1[1]).all()
    other_seed = mask_tokens(x, idx, 8, 1, VOCAB)
    assert not (other_seed[1] == e1[1]).all()


def test_mask_depends_on_example_index_not_batch_position():
    x = batch(64)
    idx = np.arange(100, 164)
    full = mask_tokens(x, idx, 2, 0, VOCAB)[1]
    perm = np.random.default_rng(0).permutation(64)
    shuffled = mask_tokens(x[perm], idx[perm], 2, 0, VOCAB)[1]
    assert (shuffled == full[perm]).all()
    half = mask_tokens(x[10:20], idx[10:20], 2, 0, VOCAB)[1]
    assert (half == full[10:20]).all()


def test_uniforms_are_uniform():
    u = uniforms(0, 0, np.arange(1000), 100, 1)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01
    hist = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    assert np.abs(hist - 0.1).max() < 0.01


def test_unknown_masking():
    with pytest.raises(ValueError):
        mask_epoch("sometimes", 0, 1)
