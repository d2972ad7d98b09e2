"""The pipeline on a synthetic corpus: pretrain -> checkpoint -> fine-tune -> metrics; reruns skip; failures recorded."""

from __future__ import annotations

import json
import math

import pytest

from ablate.run import pipeline
from ablate.run.cell import run_cell
from ablate.run.jobs import CellContext, Job
from ablate.errors import CellFailed
from ablate.study.cells import expand
from ablate.run.progress import Reporter
from ablate.analysis.results import collect
from ablate.study.load import load_study
from ablate.store import Store

STUDY = """\
name: micro
description: a micro study on synthetic data
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 12, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32}
variants:
  static: {pretrain: {masking: static}}
  dynamic: {pretrain: {masking: dynamic}}
baseline: static
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, log_every: 4, progress: false}
"""


@pytest.fixture
def micro(tmp_path, tiny_data_root):
    path = tmp_path / "micro.yaml"
    path.write_text(STUDY)
    return expand(load_study(path, "tiny")), Store(tmp_path / "results")


def test_run_then_rerun_skips(micro):
    plan, store = micro
    counts = pipeline.run(plan, store)
    assert counts == {"ran": 5, "skipped": 0, "failed": 0, "reused": 0}  # 2 pretrain + 2 finetune + 1 random-init
    res = collect(store, plan)
    assert set(res.scores["variant"]) == {"static", "dynamic", "random-init"}
    assert res.scores["value"].between(0, 1).all()
    pre = res.pretrain.set_index("variant")
    assert (pre["heldout_ppl"] > 1).all() and (pre["tokens_seen"] > 0).all()
    assert len(res.curves) == 2 * 3  # 12 steps, a point every 4
    for run_dir in [p.parent for p in store.root.rglob("metrics.json")]:  # every cell keeps a log
        log = (run_dir / "log.txt").read_text(encoding="utf-8").splitlines()
        assert "started" in log[0] and "finished in" in log[-1], log
    pre_log = next(store.root.rglob("pretrain/*/log.txt")).read_text(encoding="utf-8")
    assert '"heldout_ppl"' in pre_log and '"steps": 12' in pre_log
    assert '"metrics": {"accuracy"' in next(store.root.rglob("finetune/*/log.txt")).read_text(encoding="utf-8")
    stamps = {p: p.stat().st_mtime_ns for p in store.root.rglob("metrics.json")}
    counts = pipeline.run(plan, store)
    assert counts == {"ran": 0, "skipped": 5, "failed": 0, "reused": 0}
    assert stamps == {p: p.stat().st_mtime_ns for p in store.root.rglob("metrics.json")}


def test_checkpoint_loads_with_auto_class(micro):
    plan, store = micro
    pipeline.run(plan, store)
    from transformers import AutoModelForMaskedLM

    ckpt = store.pretrain(plan.study.name, plan.pretrain[0].key).checkpoint
    assert (ckpt / "model.safetensors").exists()
    model = AutoModelForMaskedLM.from_pretrained(str(ckpt))
    assert model.config.hidden_size == 32


def test_finetune_model_takes_the_checkpoints_encoder(micro, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from ablate.train.finetune import build_model
    from ablate.tasks import TASKS

    plan, store = micro
    pipeline.run(plan, store)
    cell = next(c for c in plan.finetune if c.pretrain_key == plan.pretrain[0].key)
    ckpt = store.pretrain(plan.study.name, plan.pretrain[0].key).checkpoint
    saved = load_file(str(ckpt / "model.safetensors"))
    model = build_model(TASKS.get("sst2"), ckpt, cell, 400)
    state = model.state_dict()
    enc = [k for k in saved if k.startswith("roberta.")]
    assert enc and all(torch.equal(saved[k], state[k]) for k in enc)
    # A checkpoint whose encoder keys do not match must fail loudly, never fine-tune a fresh encoder.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((ckpt / "config.json").read_text())
    save_file({k.replace("roberta.", "encoder_x."): v for k, v in saved.items()}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match="did not fill the encoder"):
        build_model(TASKS.get("sst2"), broken, cell, 400)


def test_failed_cell_is_recorded_and_study_goes_on(micro, monkeypatch):
    plan, store = micro
    real = pipeline_pretrain = __import__("ablate.run.cell", fromlist=["pretrain"]).pretrain

    def flaky(cell, *a, **k):
        if cell.variant == "static":
            raise CellFailed("diverged at step 3: training loss is nan")
        return real(cell, *a, **k)

    monkeypatch.setattr("ablate.run.cell.pretrain", flaky)
    counts = pipeline.run(plan, store)
    assert counts["failed"] == 2  # the static pretraining and its fine-tune (skipped)
    assert counts["ran"] == 3
    res = collect(store, plan)
    errors = {f["label"]: f["error"] for f in res.failures}
    assert "diverged" in errors["static/seed0"]
    assert "pretraining cell failed" in errors["static/pt0/sst2/ft0"]
    monkeypatch.setattr("ablate.run.cell.pretrain", pipeline_pretrain)
    counts = pipeline.run(plan, store)  # the failed cells are retried, the rest skipped
    assert counts == {"ran": 2, "skipped": 3, "failed": 0, "reused": 0}


def test_a_finished_pretraining_cell_without_weights_runs_again_only_for_a_pending_fine_tune(micro):
    """Weights are never committed: on a clone (or a wiped machine) a finished pretraining cell has its
    metrics but no checkpoint. Nothing reruns while its fine-tunes are done; a pending fine-tune makes the
    cell pretrain again (same numbers: it is deterministic) instead of failing on a missing checkpoint."""
    from ablate.run.status import plan_rows

    plan, store = micro
    pipeline.run(plan, store)
    static = next(c for c in plan.pretrain if c.variant == "static")
    run = store.pretrain("micro", static.key)
    before = run.metrics()
    for f in run.checkpoint.iterdir():
        f.unlink()
    assert not run.has_weights()
    assert pipeline.run(plan, store)["ran"] == 0  # its fine-tunes are done: the weights are not needed

    ft = next(c for c in plan.finetunes_of(static.key))
    store.finetune("micro", ft.key).metrics_path.unlink()  # a fine-tune pending (a new task, say)
    rows, summary = plan_rows(plan, store)
    assert {r["key"]: r["status"] for r in rows}[static.key] == "weights lost"
    assert "2 to run" in summary
    counts = pipeline.run(plan, store)
    assert counts == {"ran": 2, "skipped": 3, "failed": 0, "reused": 0}
    assert run.has_weights() and store.finetune("micro", ft.key).is_done()
    after = run.metrics()
    assert after["heldout_ppl"] == pytest.approx(before["heldout_ppl"], rel=1e-6)


def test_a_fine_tune_whose_checkpoint_is_missing_fails_with_a_clear_error(micro):
    plan, store = micro
    static = next(c for c in plan.pretrain if c.variant == "static")
    ft = next(c for c in plan.finetunes_of(static.key))
    ctx = CellContext("micro", plan.study.runtime, False, None)
    outcome = run_cell(Job("finetune", ft, 0), ctx, store, Reporter(enabled=False))
    assert outcome.status == "failed"
    assert f"weights of pretraining cell {static.key} are missing" in store.finetune("micro", ft.key).error()["error"]


def test_force_reruns(micro):
    plan, store = micro
    pipeline.run(plan, store)
    counts = pipeline.run(plan, store, force=True)
    assert counts["ran"] == 5


def test_cells_finished_in_another_study_are_copied_not_rerun(micro, tmp_path):
    """Studies share cells (every paper study has the dynamic FULL-SENTENCES arm): a cell with the same key
    and identity, finished in another study of the same results directory, is copied in, not recomputed."""
    plan, store = micro
    pipeline.run(plan, store)
    other = tmp_path / "other.yaml"
    other.write_text(STUDY.replace("name: micro", "name: other").replace(
        "static: {pretrain: {masking: static}}", "faster: {pretrain: {masking: dynamic, lr: 0.002}}").replace(
        "baseline: static", "baseline: faster"))
    plan_b = expand(load_study(other, "tiny"))
    from ablate.run.status import plan_rows

    rows, summary = plan_rows(plan_b, store)
    assert sorted(r["status"] for r in rows) == ["in micro"] * 3 + ["pending"] * 2
    assert "3 to copy from other studies, 2 to run" in summary
    counts = pipeline.run(plan_b, store)
    assert counts == {"ran": 2, "skipped": 0, "failed": 0, "reused": 3}  # dynamic, its fine-tune, random init
    shared = next(c for c in plan_b.pretrain if c.variant == "dynamic")
    a, b = store.pretrain("micro", shared.key), store.pretrain("other", shared.key)
    assert b.metrics_path.read_bytes() == a.metrics_path.read_bytes()
    assert (b.path / "loss.jsonl").read_bytes() == (a.path / "loss.jsonl").read_bytes()
    assert (b.checkpoint / "model.safetensors").read_bytes() == (a.checkpoint / "model.safetensors").read_bytes()
    spec_a, spec_b = (json.loads((r.path / "spec.json").read_text()) for r in (a, b))
    assert spec_b["identity"] == spec_a["identity"] and spec_b["labels"]["copied_from"] == "micro"
    assert "copied from results/micro/pretrain/" in (b.path / "log.txt").read_text()
    res = collect(store, plan_b)
    assert set(res.scores["variant"]) == {"faster", "dynamic", "random-init"}
    assert pipeline.run(plan_b, store) == {"ran": 0, "skipped": 5, "failed": 0, "reused": 0}
    assert pipeline.run(plan_b, store, force=True)["ran"] == 5  # --force computes, never copies


def test_a_cell_is_not_copied_when_the_recorded_identity_differs(micro, tmp_path):
    plan, store = micro
    pipeline.run(plan, store)
    for spec_path in (store.root / "micro").rglob("spec.json"):  # as if written by other code under the same key
        spec = json.loads(spec_path.read_text())
        spec["identity"]["v"] = -1
        spec_path.write_text(json.dumps(spec))
    other = tmp_path / "other.yaml"
    other.write_text(STUDY.replace("name: micro", "name: other"))
    assert pipeline.run(expand(load_study(other, "tiny")), store)["ran"] == 5


def test_fine_tunes_of_a_different_checkpoint_under_the_same_key_are_not_copied(micro, tmp_path):
    """A snapshot probe (benchmarks/snapshot_checkpoint.py) shares the run's keys but not its weights: neither
    it nor the fine-tunes made from it may stand in for the real cells; random init still may."""
    plan, store = micro
    pipeline.run(plan, store)
    for spec_path in (store.root / "micro" / "pretrain").glob("*/spec.json"):
        spec = json.loads(spec_path.read_text())
        spec["identity"]["snapshot_step"] = 6
        spec_path.write_text(json.dumps(spec))
    other = tmp_path / "other.yaml"
    other.write_text(STUDY.replace("name: micro", "name: other"))
    counts = pipeline.run(expand(load_study(other, "tiny")), store)
    assert (counts["ran"], counts["reused"]) == (4, 1)


def test_loss_curve_lines_are_json(micro):
    plan, store = micro
    pipeline.run(plan, store)
    lines = (store.pretrain(plan.study.name, plan.pretrain[0].key).path / "loss.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [4, 8, 12]


FORMATS_STUDY = """\
name: formats
description: every input format on synthetic data
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 48, train_tokens: 4000, heldout_tokens: 1500}
  pretrain: {steps: 6, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 50, epochs: 1, batch_size: 16, max_len: 32, random_init_control: false}
variants:
  segment_pair: {data: {format: segment_pair}, pretrain: {nsp: true}}
  sentence_pair: {data: {format: sentence_pair}, pretrain: {nsp: true}}
  full_sentences: {data: {format: full_sentences}}
  doc_sentences: {data: {format: doc_sentences}}
  segment_pair_no_nsp: {data: {format: segment_pair}}
baseline: segment_pair
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, log_every: 3, progress: false}
"""


def test_input_formats_and_nsp(tmp_path, tiny_data_root):
    path = tmp_path / "formats.yaml"
    path.write_text(FORMATS_STUDY)
    plan = expand(load_study(path, "tiny"))
    store = Store(tmp_path / "results")
    counts = pipeline.run(plan, store)
    assert counts["failed"] == 0, collect(store, plan).failures
    m = {c.variant: store.pretrain("formats", c.key).metrics() for c in plan.pretrain}
    assert "heldout_nsp_accuracy" in m["segment_pair"] and "heldout_nsp_accuracy" in m["sentence_pair"]
    assert "heldout_nsp_accuracy" not in m["segment_pair_no_nsp"]
    # every format is also scored on FULL-SENTENCES' held-out blocks: the same masked tokens for all
    assert m["full_sentences"]["shared_heldout_ppl"] == m["full_sentences"]["heldout_ppl"]
    for fmt in ("segment_pair", "sentence_pair", "doc_sentences"):
        assert math.isfinite(m[fmt]["shared_heldout_ppl"]) and m[fmt]["shared_heldout_ppl"] != m[fmt]["heldout_ppl"]
    assert m["full_sentences"]["sequences_per_step"] == 8
    # token-matched formats grow their batch, and their tokens per step match the reference's
    assert m["sentence_pair"]["sequences_per_step"] > 8
    assert m["doc_sentences"]["sequences_per_step"] >= 8
    for fmt, ref in (("sentence_pair", "segment_pair"), ("doc_sentences", "full_sentences")):
        ratio = m[fmt]["tokens_per_step"] / m[ref]["tokens_per_step"]
        assert 0.75 < ratio < 1.33, (fmt, ratio)
    curve = (store.pretrain("formats", plan.pretrain[0].key).path / "loss.jsonl").read_text()
    assert '"nsp"' in curve
    ckpt = store.pretrain("formats", plan.pretrain[0].key).checkpoint
    assert (ckpt / "nsp_head.safetensors").exists()
