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
