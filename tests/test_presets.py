"""The scale presets: the `gpu` preset smoke-tested on CPU at a few steps (its shape and recipe as they are, only the
number of steps and the data sizes cut), and the first edition's `cpu` preset kept whole under `cpu-v1`."""

from __future__ import annotations

import json

import pytest

from ablate.study.scales import SCALE_PRESETS

GPU_SMOKE = """
name: gpu-smoke
description: the gpu preset at a few steps
scale: gpu
base:
  finetune: {tasks: [sst2], random_init_control: false}
variants:
  dynamic: {pretrain: {masking: dynamic}}
baseline: dynamic
seeds: {pretrain: [0], finetune: [0]}
scales:
  gpu:
    data: {tokenizer_train_chars: 200000, heldout_tokens: 2000}
    pretrain: {steps: 4}
    finetune: {train_size: 64, epochs: 1}
runtime: {threads: 1, log_every: 1, checkpoint_every: 2, progress: false}
"""


@pytest.mark.slow
def test_gpu_preset_runs_on_cpu_at_a_few_steps(tmp_path, tiny_data_root):
    from ablate.analysis.results import collect
    from ablate.run import pipeline
    from ablate.run.budget import memory_estimate
    from ablate.store import Store
    from ablate.study.cells import expand
    from ablate.study.load import load_study

    path = tmp_path / "gpu.yaml"
    path.write_text(GPU_SMOKE)
    plan, store = expand(load_study(path, "gpu")), Store(tmp_path / "results")
    cfg = plan.pretrain[0].config
    preset = SCALE_PRESETS["gpu"]
    assert cfg.model.hidden_size == preset["model"]["hidden_size"] and cfg.pretrain.short_len == 32
    assert memory_estimate(cfg, cfg.data.vocab_size) < 16 * 2**30  # a pretraining step fits a 16 GiB GPU
    assert pipeline.run(plan, store)["failed"] == 0
    res = collect(store, plan)
    assert res.pretrain["heldout_ppl"].notna().all() and len(res.scores) == 1
    checkpoint = next(store.root.rglob("pretrain/*/checkpoint"))
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "roberta-prelayernorm"
    assert (config["hidden_size"], config["num_hidden_layers"]) == (256, 4)


def test_cpu_v1_is_the_first_editions_cpu_preset():
    """cpu-v1 keeps the recipe the first edition ran (RoBERTa's: post-LN, dropout 0.1, one length), and the new
    cpu preset differs from it only in the recipe and budget, never in the shape or the data."""
    v1, cpu = SCALE_PRESETS["cpu-v1"], SCALE_PRESETS["cpu"]
    assert "norm" not in v1["model"] and "short_len" not in v1["pretrain"] and v1["pretrain"]["steps"] == 4712
    shape = ("hidden_size", "num_layers", "num_heads", "intermediate_size")
    assert {k: cpu["model"][k] for k in shape} == {k: v1["model"][k] for k in shape}
    assert cpu["data"] == v1["data"]
