"""The fast engine computes what transformers computes: same loss on the same inputs and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.data.masking import mask_tokens
from ablate.data.vocab import PAD
from ablate.data.batches import Batch
from ablate.model import DropoutRNG, encoder_forward, masked_lm_loss
from ablate.train.trainer import Trainer
from ablate.model import build_mlm
from ablate.study.spec import Config, DataSpec, ModelSpec, PretrainSpec

VOCAB = 500


def setup(batch=6, length=24, seed=0):
    cfg = Config(model=ModelSpec(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64),
                 data=DataSpec(vocab_size=VOCAB, max_len=length), pretrain=PretrainSpec(steps=20, batch_size=batch, lr=5e-3))
    rng = np.random.default_rng(seed)
    x = rng.integers(5, VOCAB, (batch, length))
    x[:, 0], x[:, -1] = 0, 2
    x[1, 15:] = PAD  # a padded row
    x[1, 14] = 2
    inputs, labels = mask_tokens(x, np.arange(batch), seed, 0, VOCAB)
    attn = (x != PAD).astype(np.int64)
    torch.manual_seed(seed)
    model = build_mlm(cfg.model, cfg.data, VOCAB)
    return cfg, model, torch.from_numpy(inputs), torch.from_numpy(attn), torch.from_numpy(labels)


def test_loss_equals_transformers_loss():
    _, model, inputs, attn, labels = setup()
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=inputs, attention_mask=attn, labels=labels).loss
        ours, n = masked_lm_loss(model, inputs, attn, labels)
    assert n == int((labels != -100).sum())
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5), (float(ours), float(ref))


def test_hidden_states_equal_transformers():
    _, model, inputs, attn, _ = setup()
    model.eval()
    with torch.no_grad():
        ref = model.roberta(input_ids=inputs, attention_mask=attn).last_hidden_state
        ours = encoder_forward(model, inputs, attn, None)
    real = attn.bool()
    assert not real.all()  # the padded row is there: the unpadded path runs
    assert torch.allclose(ours[real], ref[real], atol=1e-5)
    assert torch.count_nonzero(ours[~real]) == 0  # pads carry nothing (they are never read)


def test_gradients_match_transformers_without_dropout():
    _, model, inputs, attn, labels = setup()
    model.eval()  # no dropout, so both paths are deterministic
    masked_lm_loss(model, inputs, attn, labels)[0].backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(input_ids=inputs, attention_mask=attn, labels=labels).loss.backward()
    for n, p in model.named_parameters():
        if n in ours:
            assert torch.allclose(ours[n], p.grad, atol=1e-5), n


def test_dropout_rate_and_reproducibility():
    a, b = DropoutRNG(3), DropoutRNG(3)
    m1 = a.drop_mask(torch.Size([200, 500]), 0.1)
    assert abs(m1.float().mean().item() - 0.1) < 0.005
    assert torch.equal(m1, b.drop_mask(torch.Size([200, 500]), 0.1))
    state = a.state()
    nxt = a.drop_mask(torch.Size([100]), 0.1)
    a.set_state(state)
    assert torch.equal(nxt, a.drop_mask(torch.Size([100]), 0.1))
    assert not torch.equal(nxt, DropoutRNG(4).drop_mask(torch.Size([100]), 0.1))


def test_trainer_learns_a_fixed_batch():
    cfg, _, inputs, attn, labels = setup()
    trainer = Trainer(cfg, VOCAB, torch.device("cpu"), seed=0)
    batch = Batch(inputs, attn, labels)
    first = trainer.step(batch)["loss"].item()
    for _ in range(15):
        last = trainer.step(batch)["loss"].item()
    assert last < first - 0.5


def test_nsp_head_trains_with_pairs():
    cfg, _, inputs, attn, labels = setup()
    cfg = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"nsp": True})})
    types = torch.zeros_like(inputs)
    types[:, 12:] = 1
    nsp = torch.tensor([0, 1, 0, 1, 1, 0])
    trainer = Trainer(cfg, VOCAB, torch.device("cpu"), seed=0)
    out = trainer.step(Batch(inputs, attn, labels, types, nsp))
    assert out["loss"].item() == pytest.approx(out["mlm"].item() + out["nsp"].item(), rel=1e-5)
    assert 0 <= out["nsp_correct"] <= 6
    assert any(p is q for p in trainer.params for q in trainer.nsp_head.parameters())


def test_accumulation_gives_the_gradients_of_one_big_batch():
    cfg, model, inputs, attn, labels = setup(batch=6)
    model.eval()  # no dropout: both ways must agree up to float rounding
    from ablate.model import pretrain_losses

    batch = Batch(inputs, attn, labels)
    whole = pretrain_losses(model, None, batch, None)
    whole["loss"].backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    count = int((labels != -100).sum())
    summed = 0.0
    for i in range(0, 6, 4):  # chunks of 4 and 2
        out = pretrain_losses(model, None, batch.slice(i, i + 4), None, mlm_count=count, nsp_count=6)
        out["loss"].backward()
        summed += out["loss"].item()
    assert summed == pytest.approx(whole["loss"].item(), rel=1e-5)
    for n, p in model.named_parameters():
        if n in ref:
            assert torch.allclose(p.grad, ref[n], atol=1e-6), n


def test_trainer_with_micro_batches_matches_whole_batch_step():
    cfg, _, inputs, attn, labels = setup(batch=6)
    zero_dropout = cfg.model.model_copy(update={"dropout": 0.0})
    whole_cfg = cfg.model_copy(update={"model": zero_dropout})
    micro_cfg = whole_cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"micro_batch_size": 2})})
    a = Trainer(whole_cfg, VOCAB, torch.device("cpu"), seed=0)
    b = Trainer(micro_cfg, VOCAB, torch.device("cpu"), seed=0)
    batch = Batch(inputs, attn, labels)
    la, lb = a.step(batch)["loss"].item(), b.step(batch)["loss"].item()
    assert la == pytest.approx(lb, rel=1e-5)
    for pa, pb in zip(a.params, b.params):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_keep_scale_is_the_drop_mask_as_a_multiplier():
    """Dropout as x * keep_scale draws the same bits as drop_mask and keeps x * (1 / (1 - p)) exactly."""
    a, b = DropoutRNG(7), DropoutRNG(7)
    x = torch.randn(37, 19)
    mask = a.drop_mask(x.shape, 0.1)
    keep = b.keep_scale(x.shape, 0.1, 1.0 / 0.9)
    assert torch.equal(x * keep, x.masked_fill(mask, 0.0) * (1.0 / 0.9))
    assert torch.equal(keep == 0, mask) and a.state() == b.state()
    assert set(b.keep_scale((50, 3), 0.5, 1.0).unique().tolist()) == {0.0, 1.0}


def test_unpadded_loss_path_equals_the_padded_one_bit_for_bit():
    """pretrain_losses reads the masked rows (and NSP's first tokens) from the unpadded states; with
    dropout on, it must give exactly the loss and gradients of encoder_forward + the [B, L, H] gather."""
    from ablate.model import masked_lm_loss_from_hidden, pretrain_losses
    from ablate.model import NSPHead

    cfg, model, inputs, attn, labels = setup()
    model.train()
    torch.manual_seed(1)
    head = NSPHead(cfg.model)
    nsp = torch.tensor([0, 1, 0, 1, 1, 0])
    out = pretrain_losses(model, head, Batch(inputs, attn, labels, None, nsp), DropoutRNG(3))
    out["loss"].backward()
    fast = [p.grad.clone() for p in [*model.parameters(), *head.parameters()]]
    for p in [*model.parameters(), *head.parameters()]:
        p.grad = None
    rng = DropoutRNG(3)
    hidden = encoder_forward(model, inputs, attn, rng)
    mlm_sum, n = masked_lm_loss_from_hidden(model, hidden, labels, "sum")
    logits = head(hidden[:, 0], rng)
    ref = mlm_sum / n + torch.nn.functional.cross_entropy(logits, nsp, reduction="sum") / 6
    ref.backward()
    assert bool(~attn.bool().all()) and torch.equal(out["loss"].detach(), ref.detach())
    for g, p in zip(fast, [*model.parameters(), *head.parameters()]):
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)


@pytest.mark.parametrize("user_value, expected", [(None, "8"), ("100", "100")])
def test_importing_ablate_caps_the_onednn_primitive_cache_unless_the_user_set_it(user_value, expected):
    """oneDNN's default cache (1024 primitives) grew a batch-128 cell to ~10 GB (benchmarks/onednn_cache.py)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if user_value is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = user_value
    code = "import os, ablate; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
