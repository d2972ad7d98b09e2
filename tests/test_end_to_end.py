"""The masking study at `tiny` scale on the real data, through the CLI: run, report, rerun does no work."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from conftest import needs_real_data

MASKING = str(Path(__file__).resolve().parents[1] / "studies" / "masking.yaml")


@pytest.mark.slow
@needs_real_data
def test_masking_study_tiny_end_to_end(tmp_path):
    runner = CliRunner()
    results, reports = tmp_path / "results", tmp_path / "reports"
    r = runner.invoke(app, ["run", MASKING, "--scale", "tiny", "--results", str(results), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output
    assert not list(results.rglob("error.json"))
    r = runner.invoke(app, ["report", "--results", str(results), "--out", str(reports)])
    assert r.exit_code == 0, r.output
    html = (reports / "masking" / "index.html").read_text()
    assert "static" in html and "dynamic" in html and "random-init" in html
    assert "<svg" in html
    assert (reports / "index.html").exists()
    # the numbers in the report are the stored ones
    scores = (reports / "masking" / "scores.csv").read_text()
    assert all(task in scores for task in ("sst2", "cola", "stsb", "blimp"))
    # static and dynamic really differ after the first epoch: different held-out perplexities
    pre = (reports / "masking" / "pretrain.csv").read_text()
    assert len(set(re.findall(r"\b\d+\.\d+\b", pre))) > 2
    t0 = time.perf_counter()
    r = runner.invoke(app, ["run", MASKING, "--scale", "tiny", "--results", str(results), "--no-progress"])
    assert r.exit_code == 0 and "0 ran" in r.output, r.output
    assert time.perf_counter() - t0 < 30
    r = runner.invoke(app, ["ls", "--results", str(results)])
    # 2 pretrainings; per checkpoint 3 tasks x 2 fine-tuning seeds and BLiMP once; random init: 3 x 2 and BLiMP x 2
    assert "masking (scale tiny): 24 done, 0 failed, 0 pending" in r.output

    # A fresh clone has what git keeps (.gitignore): no checkpoints, resume states or data caches.
    clone = tmp_path / "clone"
    shutil.copytree(results, clone, ignore=shutil.ignore_patterns("checkpoint", "resume", "_cache", ".lock", "*.npy",
                                                                  "*.safetensors"))
    assert not list(clone.rglob("checkpoint"))
    r = runner.invoke(app, ["run", MASKING, "--scale", "tiny", "--results", str(clone), "--no-progress"])
    assert r.exit_code == 0 and "0 ran" in r.output, r.output
    assert not (clone / "_cache").exists()  # nothing was prepared: no work at all
    # and the report regenerates from the kept files alone, byte for byte
    r = runner.invoke(app, ["report", "--results", str(clone), "--out", str(tmp_path / "reports2")])
    assert r.exit_code == 0, r.output
    files = sorted(f.relative_to(reports) for f in reports.rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(tmp_path / "reports2") for f in (tmp_path / "reports2").rglob("*")
                           if f.is_file())
    assert [str(f) for f in files if (reports / f).read_bytes() != (tmp_path / "reports2" / f).read_bytes()] == []
