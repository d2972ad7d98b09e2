"""Resume a cell, not only a study: a crash mid-pretraining loses at most one checkpoint interval,
and the resumed run ends exactly where an uninterrupted one does (bitwise on CPU)."""

from __future__ import annotations

import json

import pytest

from ablate.run import pipeline
from ablate.train.trainer import Trainer
from ablate.study.cells import expand
from ablate.study.load import load_study
from ablate.store import Store

STUDY = """\
name: resumable
description: resume test
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 30, batch_size: 8, FORMAT}
  finetune: {tasks: [sst2], train_size: 40, epochs: 1, random_init_control: false}
variants:
  a: {}
baseline: a
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, log_every: 4, checkpoint_every: 10, progress: false}
"""


class Crash(BaseException):  # like a kill: not caught as a cell failure
    pass


def run_study(tmp_path, name, text, crash_at=None, monkeypatch=None):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    plan = expand(load_study(path, "tiny"))
    store = Store(tmp_path / name)
    if crash_at is not None:
        real = Trainer.step
        calls = {"n": 0}

        def crashing(self, batch):
            calls["n"] += 1
            if calls["n"] > crash_at:
                raise Crash("killed")
            return real(self, batch)

        monkeypatch.setattr(Trainer, "step", crashing)
        with pytest.raises(Crash):
            pipeline.run(plan, store)
        monkeypatch.setattr(Trainer, "step", real)
    pipeline.run(plan, store)
    run = store.pretrain(plan.study.name, plan.pretrain[0].key)
    return run


@pytest.mark.parametrize("fmt", ["masking: dynamic", "masking: static", "nsp: false",
                                 # a length schedule, resumed in its full-length phase (15 short steps, then 15)
                                 # and in its short phase (27 short steps); cosine along
                                 "short_len: 16, short_fraction: 0.5, schedule: cosine",
                                 "short_len: 16, short_fraction: 0.9"])
def test_resumed_run_equals_uninterrupted(tmp_path, tiny_data_root, monkeypatch, fmt):
    text = STUDY.replace("FORMAT", fmt)
    ref = run_study(tmp_path, "ref", text)
    resumed = run_study(tmp_path, "crashed", text, crash_at=23, monkeypatch=monkeypatch)
    a, b = ref.metrics(), resumed.metrics()
    for key in ("heldout_loss", "heldout_ppl", "final_train_loss", "tokens_seen", "steps"):
        assert a[key] == b[key], key  # bitwise: same threads, same CPU
    curve_a = [json.loads(x) for x in (ref.path / "loss.jsonl").read_text().splitlines()]
    curve_b = [json.loads(x) for x in (resumed.path / "loss.jsonl").read_text().splitlines()]
    assert curve_a == curve_b  # no duplicated or missing points
    wa = (ref.checkpoint / "model.safetensors").read_bytes()
    wb = (resumed.checkpoint / "model.safetensors").read_bytes()
    assert wa == wb
    assert not (resumed.path / "resume").exists()  # cleaned up once the cell is done
    log = (resumed.path / "log.txt").read_text(encoding="utf-8")
    assert "resuming at step 20" in log and log.count("started") == 2  # the killed attempt, then the resumed one


def test_nsp_run_resumes_exactly(tmp_path, tiny_data_root, monkeypatch):
    text = STUDY.replace("FORMAT", "nsp: true").replace("train_tokens: 3000,", "train_tokens: 3000, format: segment_pair,")
    ref = run_study(tmp_path, "ref", text)
    resumed = run_study(tmp_path, "crashed", text, crash_at=15, monkeypatch=monkeypatch)
    assert ref.metrics()["heldout_loss"] == resumed.metrics()["heldout_loss"]
    assert ref.metrics()["heldout_nsp_accuracy"] == resumed.metrics()["heldout_nsp_accuracy"]


def test_time_based_checkpoints_resume_exactly(tmp_path, tiny_data_root, monkeypatch):
    """Slow steps checkpoint by the clock too (runtime.checkpoint_minutes), so a kill loses minutes, not a
    step interval: with steps off and a clock interval under one step, the run resumes at the step it died."""
    text = STUDY.replace("FORMAT", "masking: dynamic").replace(
        "checkpoint_every: 10,", "checkpoint_every: 0, checkpoint_minutes: 0.000001,")
    ref = run_study(tmp_path, "ref", text)
    resumed = run_study(tmp_path, "crashed", text, crash_at=23, monkeypatch=monkeypatch)
    assert ref.metrics()["heldout_loss"] == resumed.metrics()["heldout_loss"]
    curve_a = (ref.path / "loss.jsonl").read_text()
    assert curve_a == (resumed.path / "loss.jsonl").read_text()
    assert "resuming at step 23" in (resumed.path / "log.txt").read_text(encoding="utf-8")


def test_no_checkpoints_restarts_from_scratch(tmp_path, tiny_data_root, monkeypatch):
    text = STUDY.replace("FORMAT", "masking: dynamic").replace(
        "checkpoint_every: 10,", "checkpoint_every: 0, checkpoint_minutes: 0,")
    ref = run_study(tmp_path, "ref", text)
    resumed = run_study(tmp_path, "crashed", text, crash_at=23, monkeypatch=monkeypatch)
    assert ref.metrics()["heldout_loss"] == resumed.metrics()["heldout_loss"]
    log = (resumed.path / "log.txt").read_text(encoding="utf-8")
    assert "resuming" not in log and log.count("started") == 2
