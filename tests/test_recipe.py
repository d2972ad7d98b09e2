"""The recipe settings (issue 26): pre-LayerNorm, initialisation scale, cosine schedule, sequence-length schedule.
Each computes what transformers computes, moves the cell key only when set, and runs end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ablate.data.masking import mask_tokens
from ablate.data.vocab import PAD
from ablate.model import build_mlm, encoder_forward, masked_lm_loss
from ablate.study.identity import finetune_identity, pretrain_identity, stable_hash
from ablate.study.spec import Config, DataSpec, ModelSpec, PretrainSpec
from ablate.train.trainer import lr_schedule

VOCAB = 500


def pre_ln_setup(seed=0, batch=6, length=24):
    model_spec = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, norm="pre")
    rng = np.random.default_rng(seed)
    x = rng.integers(5, VOCAB, (batch, length))
    x[:, 0], x[:, -1] = 0, 2
    x[1, 15:] = PAD  # a padded row: the unpadded path runs
    x[1, 14] = 2
    inputs, labels = mask_tokens(x, np.arange(batch), seed, 0, VOCAB)
    torch.manual_seed(seed)
    model = build_mlm(model_spec, DataSpec(vocab_size=VOCAB, max_len=length), VOCAB)
    # fresh LayerNorms are the identity: give them random gains and biases so a misplaced one shows
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("weight") else 0.0))
    return model, torch.from_numpy(inputs), torch.from_numpy((x != PAD).astype(np.int64)), torch.from_numpy(labels)


def test_pre_ln_builds_transformers_prelayernorm_model():
    model, *_ = pre_ln_setup()
    assert type(model).__name__ == "RobertaPreLayerNormForMaskedLM"
    assert model.config.model_type == "roberta-prelayernorm"


def test_pre_ln_loss_equals_transformers_loss():
    model, inputs, attn, labels = pre_ln_setup()
    model.eval()
    with torch.no_grad():
        ref = model(input_ids=inputs, attention_mask=attn, labels=labels).loss
        ours, _ = masked_lm_loss(model, inputs, attn, labels)
        hidden_ref = model.base_model(input_ids=inputs, attention_mask=attn).last_hidden_state
        hidden = encoder_forward(model, inputs, attn, None)
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5), (float(ours), float(ref))
    real = attn.bool()
    assert torch.allclose(hidden[real], hidden_ref[real], atol=1e-5)


def test_pre_ln_gradients_match_transformers():
    model, inputs, attn, labels = pre_ln_setup(seed=1)
    model.eval()
    masked_lm_loss(model, inputs, attn, labels)[0].backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(input_ids=inputs, attention_mask=attn, labels=labels).loss.backward()
    for n, p in model.named_parameters():
        if p.grad is not None and n in ours:
            assert torch.allclose(ours[n], p.grad, atol=1e-5), n
    assert any("encoder.layer.0.intermediate.LayerNorm" in n for n in ours)  # the pre-LN norms get gradients


def test_init_range_sets_the_weight_scale():
    spec = dict(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128)
    data = DataSpec(vocab_size=VOCAB, max_len=32)
    stds = {}
    for r in (0.02, 0.08):
        torch.manual_seed(0)
        stds[r] = float(build_mlm(ModelSpec(**spec, init_range=r), data, VOCAB).base_model.encoder.layer[0]
                        .intermediate.dense.weight.detach().std())
    assert stds[0.02] == pytest.approx(0.02, rel=0.1) and stds[0.08] == pytest.approx(0.08, rel=0.1)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_schedules_at_their_boundaries(shape):
    total, warmup = 100, 0.1  # 10 warmup steps
    f = lr_schedule(total, warmup, shape)
    assert f(0) == pytest.approx(0.1)  # first step: 1/10 of the peak
    assert f(9) == pytest.approx(1.0)  # last warmup step reaches the peak
    assert f(10) == pytest.approx(1.0)  # decay starts at the peak
    assert 0 < f(99) < 0.05  # the last step is just above zero
    assert f(100) == 0.0
    assert all(f(s) >= f(s + 1) for s in range(10, 100))  # never rises after warmup
    mid = f(55)  # halfway through the decay: linear 0.5, cosine 0.5 too (cos(pi/2) = 0)
    assert mid == pytest.approx(0.5)
    late = f(77)  # 23 of the 90 decay steps left
    if shape == "cosine":
        assert late == pytest.approx(0.5 * (1 - math.cos(math.pi * 23 / 90)))  # below linear after the midpoint
    else:
        assert late == pytest.approx(23 / 90)


def _cfg(**over) -> Config:
    sections = {"model": {}, "pretrain": {}}
    for key, value in over.items():
        section, name = key.split(".")
        sections[section][name] = value
    return Config(model=ModelSpec(**sections["model"]), pretrain=PretrainSpec(**sections["pretrain"]))


@pytest.mark.parametrize("setting", [
    {"model.norm": "pre"}, {"model.init_range": 0.05}, {"pretrain.schedule": "cosine"},
    {"pretrain.short_len": 32}, {"pretrain.short_len": 32, "pretrain.short_fraction": 0.5},
])
def test_each_recipe_setting_moves_the_key_and_defaults_keep_it(setting):
    base = _cfg()
    explicit_defaults = _cfg(**{"model.norm": "post", "model.init_range": 0.02, "pretrain.schedule": "linear"})
    assert pretrain_identity(explicit_defaults, 0) == pretrain_identity(base, 0)
    assert "norm" not in json.dumps(pretrain_identity(base, 0))  # an older key's dict, unchanged
    moved = _cfg(**setting)
    assert stable_hash(pretrain_identity(moved, 0)) != stable_hash(pretrain_identity(base, 0))
    if any(k.startswith("model.") for k in setting):  # the random-init control's architecture moves too
        assert finetune_identity(moved, None, "sst2", 0) != finetune_identity(base, None, "sst2", 0)


def test_short_len_fractions_give_different_keys_and_must_divide_max_len():
    a, b = _cfg(**{"pretrain.short_len": 32}), _cfg(**{"pretrain.short_len": 32, "pretrain.short_fraction": 0.5})
    assert pretrain_identity(a, 0) != pretrain_identity(b, 0)
    with pytest.raises(ValueError, match="short_len"):
        Config(data=DataSpec(max_len=128), pretrain=PretrainSpec(short_len=48))
    with pytest.raises(ValueError, match="short_fraction needs short_len"):
        PretrainSpec(short_fraction=0.5)
    assert Config.model_validate_json(Config().model_dump_json()) == Config()  # a dumped config loads back
    assert PretrainSpec(steps=100, short_len=32, short_fraction=0.9).short_steps == 90
    assert PretrainSpec(steps=100).short_steps == 0



def test_a_study_turns_the_cpu_presets_length_schedule_off(tmp_path):
    """`short_len: null` switches the preset's schedule off, its short_fraction with it; a short_fraction the study
    file writes itself without a short_len is still refused, naming the line."""
    from ablate.errors import UserError
    from ablate.study.load import load_study

    body = "name: s\ndescription: d\nscale: cpu\nbase:\n  pretrain: {{short_len: null{extra}}}\n" \
           "variants: {{a: {{}}}}\nbaseline: a\nseeds: {{pretrain: [0], finetune: [0]}}\n"
    path = tmp_path / "s.yaml"
    assert load_study(path_with(path, body.format(extra="")), "cpu").variants["a"].pretrain.short_steps == 0
    assert load_study(path, "cpu").variants["a"].pretrain.short_fraction == 0.9
    assert load_study(path, "cpu").variants["a"].model.norm == "pre"  # the preset's other recipe settings stay
    with pytest.raises(UserError, match=r"s.yaml:5: .*short_fraction needs short_len"):
        load_study(path_with(path, body.format(extra=", short_fraction: 0.5")), "cpu")
    # blocks no longer than the preset's short ones: the preset's schedule is off; one the file writes is refused
    short = "name: s\ndescription: d\nbase:\n  data: {{max_len: 32}}\n  pretrain: {{steps: 10{extra}}}\n" \
            "variants: {{a: {{}}}}\nbaseline: a\nseeds: {{pretrain: [0], finetune: [0]}}\n"
    cfg = load_study(path_with(path, short.format(extra="")), "cpu").variants["a"]
    assert cfg.pretrain.short_len is None and cfg.pretrain.short_steps == 0 and cfg.model.norm == "pre"
    assert load_study(path, "cpu-v1").variants["a"].pretrain.short_len is None
    with pytest.raises(UserError, match=r"short_len \(32\) must be under data.max_len \(32\).*short_len: null"):
        load_study(path_with(path, short.format(extra=", short_len: 32")), "cpu")


def path_with(path, text):
    path.write_text(text)
    return path

STUDY = """\
name: recipe
description: the recipe settings end to end
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64, norm: pre, dropout: 0.0,
          init_range: 0.05}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 12, batch_size: 8, lr: 3e-3, schedule: cosine, short_len: 16, short_fraction: 0.5}
  finetune: {tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32}
variants:
  static: {pretrain: {masking: static}}
  dynamic: {}
baseline: static
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, log_every: 2, checkpoint_every: 3, progress: false}
"""


def test_recipe_study_end_to_end_and_checkpoint_loads_with_auto_classes(tmp_path, tiny_data_root, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    from ablate.analysis.results import collect
    from ablate.run import pipeline
    from ablate.study.cells import expand
    from ablate.study.load import load_study
    from ablate.store import Store
    from ablate.train import pretrain as pretrain_module

    path = tmp_path / "recipe.yaml"
    path.write_text(STUDY)
    plan, store = expand(load_study(path, "tiny")), Store(tmp_path / "results")
    widths = []
    real_make_batch = pretrain_module.make_batch

    def spy(data, idx, *args, **kwargs):
        batch = real_make_batch(data, idx, *args, **kwargs)
        widths.append((len(idx), int(data.blocks.shape[1])))
        return batch

    monkeypatch.setattr(pretrain_module, "make_batch", spy)
    assert pipeline.run(plan, store)["failed"] == 0
    # per pretraining: 6 short steps of 16 x 16-token blocks, then 6 of 8 x 32 (then the held-out batches)
    assert widths[:12] == [(16, 16)] * 6 + [(8, 32)] * 6
    res = collect(store, plan)
    assert res.pretrain["heldout_ppl"].between(1, 1e4).all()
    curve = [json.loads(x) for x in next(store.root.rglob("pretrain/*/loss.jsonl")).read_text().splitlines()]
    lrs = [p["lr"] for p in curve]
    assert lrs[-1] < lrs[len(lrs) // 2] and math.isfinite(curve[-1]["loss"])
    checkpoint = next(store.root.rglob("pretrain/*/checkpoint"))
    assert json.loads((checkpoint / "config.json").read_text())["model_type"] == "roberta-prelayernorm"
    mlm = AutoModelForMaskedLM.from_pretrained(str(checkpoint))
    assert type(mlm).__name__ == "RobertaPreLayerNormForMaskedLM"
    clf = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=2)
    enc_mlm = mlm.base_model.encoder.layer[0].intermediate.LayerNorm.weight
    assert torch.equal(clf.base_model.encoder.layer[0].intermediate.LayerNorm.weight, enc_mlm)  # encoder carried over
    assert res.scores["value"].between(0, 1).all() and len(res.scores) >= 3  # the fine-tunes (and random init) ran


def test_finetune_dropout_moves_trained_keys_only_when_set():
    from ablate.study.spec import FinetuneSpec

    base = Config(finetune=FinetuneSpec(tasks=("sst2", "blimp")))
    drop = Config(finetune=FinetuneSpec(tasks=("sst2", "blimp"), dropout=0.1))
    assert "dropout" not in json.dumps(finetune_identity(base, "p", "sst2", 0)["finetune"])  # older keys stay
    for pretrain_key in ("p", None):  # the checkpoints' fine-tunes and the random-init control's
        assert finetune_identity(drop, pretrain_key, "sst2", 0) != finetune_identity(base, pretrain_key, "sst2", 0)
    assert finetune_identity(drop, "p", "blimp", 0) == finetune_identity(base, "p", "blimp", 0)  # nothing trained
    assert pretrain_identity(drop, 0) == pretrain_identity(base, 0)  # pretraining does not see it


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_finetune_dropout_reaches_the_model_from_a_checkpoint_and_from_random_init(tmp_path, norm):
    from ablate.study.cells import FinetuneCell
    from ablate.study.spec import FinetuneSpec
    from ablate.tasks import TASKS
    from ablate.train.finetune import build_model

    model_spec = ModelSpec(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, norm=norm, dropout=0.0)
    data = DataSpec(vocab_size=VOCAB, max_len=32)
    build_mlm(model_spec, data, VOCAB).save_pretrained(tmp_path / "ckpt")  # pretrained without dropout

    def dropouts(ft_dropout, checkpoint):
        cfg = Config(model=model_spec, data=data, finetune=FinetuneSpec(tasks=("sst2",), dropout=ft_dropout))
        cell = FinetuneCell("v", 0, "sst2", 0, cfg, "k", "p" if checkpoint else None)
        model = build_model(TASKS.get("sst2"), checkpoint, cell, VOCAB)
        return {m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and ".encoder." in
                f".{name}."} | {model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob}

    for checkpoint in (tmp_path / "ckpt", None):
        assert dropouts(None, checkpoint) == {0.0}  # the model's own: none, as pretrained
        assert dropouts(0.1, checkpoint) == {0.1}  # every encoder dropout, hidden and attention alike
