"""The CLI: fast start-up without torch, one-line errors with exit code 2, nothing written on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from ablate.cli import app

runner = CliRunner()
MASKING = str(Path(__file__).resolve().parents[1] / "studies" / "masking.yaml")


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from ablate.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'pandas', 'datasets') if m in sys.modules]; "
            "print(heavy); assert not heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_validate_ok():
    r = runner.invoke(app, ["validate", MASKING])
    assert r.exit_code == 0, r.output
    assert "ok:" in r.output and "2 variants" in r.output


def test_bad_study_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(MASKING).read_text().replace("masking: dynamic", "masking: dinamic"))
    results = tmp_path / "results"
    for cmd in (["validate", str(bad)], ["plan", str(bad)], ["run", str(bad), "--results", str(results)]):
        r = runner.invoke(app, cmd)
        assert r.exit_code == 2, r.output
        lines = [x for x in r.output.splitlines() if x.strip()]
        assert len(lines) == 1 and "variants.dynamic.pretrain.masking" in lines[0], r.output
        assert "Traceback" not in r.output
    assert not results.exists()  # nothing written


def test_unknown_scale_exits_2(tmp_path):
    r = runner.invoke(app, ["plan", MASKING, "--scale", "huge", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "unknown scale" in r.output


def test_missing_data_exits_2_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_DATA_DIR", str(tmp_path / "nowhere"))
    results = tmp_path / "results"
    r = runner.invoke(app, ["run", MASKING, "--scale", "tiny", "--results", str(results), "--no-progress"])
    assert r.exit_code == 2 and "ABLATE_DATA_DIR" in r.output, r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("ABLATE_DATA_DIR", str(empty))
    r = runner.invoke(app, ["run", MASKING, "--scale", "tiny", "--results", str(results), "--no-progress"])
    assert r.exit_code == 2 and "missing corpus" in r.output, r.output
    assert not any(results.rglob("metrics.json"))


def test_plan_lists_cells(tmp_path):
    r = runner.invoke(app, ["plan", MASKING, "--scale", "tiny", "--results", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "pending" in r.output and "random-init" in r.output


def test_ls_and_report_on_empty_results(tmp_path):
    r = runner.invoke(app, ["ls", "--results", str(tmp_path)])
    assert r.exit_code == 0 and "no studies" in r.output
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 2 and "no studies" in r.output
