"""The benchmark scripts still run against the current API (a smoke run at the tiny scale, numbers unchecked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import needs_real_data

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@needs_real_data
def test_pretrain_throughput_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "pretrain_throughput.py"), "--scale", "tiny",
                           "--batch", "8", "--rounds", "1", "--steps", "1", "--warmup", "1", "--train-tokens", "20000",
                           "--results", str(tmp_path / "results"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["ratio_median"] > 0 and set(data["tokens_per_s"]) == {"baseline", "ablate"}
    assert data["matmul_peak_gflops"] > 0 and data["memory"]["ablate"]["peak_rss_mb"] > 0


@pytest.mark.slow
@needs_real_data
def test_corpus_prep_benchmark_runs(tmp_path):
    out = tmp_path / "prep.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "corpus_prep.py"), "--shard", "test.parquet",
                           "--rounds", "1", "--results", str(REPO / "results"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["speedup_median"] > 0 and data["reload_s"] < 2 and len(data["speedup_rounds"]) == 1


@pytest.mark.slow
@needs_real_data
def test_jobs_throughput_benchmark_runs(tmp_path):
    out = tmp_path / "jobs.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "jobs_throughput.py"), "--scale", "tiny",
                           "--jobs", "2", "--seconds", "1", "--rounds", "1", "--results", str(tmp_path / "results"),
                           "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["jobs"] == 2 and data["threads_per_job"] >= 1
    assert all(x > 0 for x in data["sequential_tokens_per_s"] + data["parallel_tokens_per_s"])


@pytest.mark.slow
@needs_real_data
def test_nsp_cues_benchmark_runs(tmp_path):
    out = tmp_path / "cues.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "nsp_cues.py"), "--scale", "tiny",
                           "--results", str(tmp_path / "results"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    shares = [data["heldout"][label]["share"] for label in ("0", "1")]
    assert abs(sum(shares) - 1) < 1e-2 and 0 <= data["heldout_acc_lengths_only"] <= 1


FORMATS_STUDY = """\
name: formats
description: two input formats on a micro model, for the shared held-out benchmark
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 12, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 50, epochs: 1, random_init_control: false}
variants:
  full: {data: {format: full_sentences}}
  pairs: {data: {format: segment_pair}, pretrain: {nsp: true}}
baseline: full
seeds: {pretrain: [0, 1], finetune: [0]}
runtime: {threads: 1, progress: false}
"""


@pytest.mark.slow
def test_shared_heldout_rescores_every_model_on_one_format(tiny_data_root, tmp_path):
    """On the reference format's own models the benchmark must give back each cell's heldout_ppl (the same
    blocks and masks); the pair models get a different number from their own-format one."""
    study = tmp_path / "formats.yaml"
    study.write_text(FORMATS_STUDY)
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "ablate", "run", str(study), "--scale", "tiny", "--results", str(results),
                          "--no-progress"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "shared.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "shared_heldout.py"), "formats", "--results",
                           str(results), "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    rows = {(r["variant"], r["seed"]): r for r in data["rows"]}
    assert set(rows) == {("full", 0), ("full", 1), ("pairs", 0), ("pairs", 1)}
    for seed in (0, 1):
        assert rows[("full", seed)]["shared_ppl"] == pytest.approx(rows[("full", seed)]["own_ppl"], rel=1e-9)
        assert rows[("pairs", seed)]["shared_ppl"] != pytest.approx(rows[("pairs", seed)]["own_ppl"], rel=1e-6)
    (diff,) = data["differences"]
    assert (diff["a"], diff["b"], diff["seeds"]) == ("pairs", "full", [0, 1])
    assert diff["diff"] == pytest.approx(sum(rows[("pairs", s)]["shared_ppl"] - rows[("full", s)]["shared_ppl"]
                                             for s in (0, 1)) / 2)


@pytest.mark.slow
@needs_real_data
def test_onednn_cache_benchmark_runs_and_the_cap_changes_no_loss(tmp_path):
    out = tmp_path / "onednn.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "onednn_cache.py"), "--scale", "tiny",
                           "--batch", "8", "--steps", "6", "--every", "2", "--train-tokens", "20000",
                           "--results", str(tmp_path / "results"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["capacities"] == {"baseline": "1024", "ablate": "8"}
    assert data["losses_identical"] is True
    assert len(data["ablate"]["trace"]) == 3 and data["ablate"]["rss_end_mb"] > 0


def test_collapse_scores_tell_one_point_from_many():
    """benchmarks/collapse_probe.py's measure: identical states are one point (cos 1, spread 0), spread-out
    states are not, and the spread does not depend on the states' scale."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from collapse_probe import collapse_scores

    same = collapse_scores(np.tile(np.array([[1.0, 2.0, 3.0]]), (5, 1)))
    assert same["cos"] == pytest.approx(1.0) and same["spread"] == pytest.approx(0.0, abs=1e-12)
    orth = collapse_scores(np.eye(4))
    assert orth["cos"] == pytest.approx(0.0) and orth["spread"] > 1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    assert collapse_scores(10 * x)["spread"] == pytest.approx(collapse_scores(x)["spread"])


@pytest.mark.slow
@needs_real_data
def test_blimp_speed_benchmark_runs(tmp_path):
    out = tmp_path / "blimp.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "blimp_speed.py"), "--scale", "tiny",
                           "--sample", "3", "--results", str(tmp_path / "results"), "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["ratio"] > 0 and data["max_abs_diff"] < 1e-3 and data["subset_pairs"] == 67 * 10
