"""Results and report directories that cannot be used are one line and exit 2, never a traceback; a finished,
read-only results directory is plannable, listable, reportable and runnable (nothing to do) without the lock."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from typer.testing import CliRunner

from ablate.cli import app
from test_integrity import finished_store

MASKING = str(Path(__file__).resolve().parents[1] / "studies" / "masking.yaml")
runner = CliRunner()


def one_line_exit_2(args: list[str], *fragments: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def writes_refused(tmp_path: Path) -> bool:
    """chmod stops writes here (not root)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").write_text("x")
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)
    return False


def read_only(monkeypatch, tmp_path: Path, folder: Path) -> None:
    """Make `folder` read-only: by chmod where that stops writes, else (root) by refusing opens for writing under it."""
    if writes_refused(tmp_path):
        for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            d.chmod(0o555)
        return
    real_open, real_mkdir = os.open, os.mkdir
    inside = str(folder.resolve())

    def refuse(path, flags, *args, **kwargs):
        if str(Path(path).resolve()).startswith(inside) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    def refuse_mkdir(path, *args, **kwargs):
        if str(Path(path).resolve()).startswith(inside):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(os, "mkdir", refuse_mkdir)


def test_results_that_is_a_file(tmp_path):
    f = tmp_path / "results"
    f.write_text("not a directory")
    one_line_exit_2(["run", MASKING, "--scale", "tiny", "--results", str(f), "--no-progress"], "not a directory")
    for cmd in (["plan", MASKING, "--scale", "tiny"], ["ls"], ["report", "--out", str(tmp_path / "rep")]):
        one_line_exit_2(cmd + ["--results", str(f)], "not a directory")


def test_results_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_exit_2(["run", MASKING, "--scale", "tiny", "--results", str(tmp_path / "file" / "results"),
                     "--no-progress"], "cannot create the results directory")


def test_a_read_only_results_directory_with_pending_cells(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    read_only(monkeypatch, tmp_path, results)
    try:
        one_line_exit_2(["run", MASKING, "--scale", "tiny", "--results", str(results), "--no-progress"],
                        "cannot write to the results directory", "Permission denied")
    finally:
        results.chmod(0o755)


def test_a_read_only_finished_results_directory_is_read_without_the_lock(tmp_path, monkeypatch):
    results = tmp_path / "results"
    finished_store(results)
    study = results / "masking" / "study.yaml"

    def no_lock(*args, **kwargs):
        raise AssertionError("the lock was taken")

    monkeypatch.setattr("ablate.run.pipeline.results_lock", no_lock)
    read_only(monkeypatch, tmp_path, results)
    try:
        for cmd in (["plan", str(study), "--scale", "tiny"], ["ls"]):
            r = runner.invoke(app, cmd + ["--results", str(results)])
            assert r.exit_code == 0 and "pending" in r.stdout, r.output
        r = runner.invoke(app, ["run", str(study), "--scale", "tiny", "--results", str(results), "--no-progress"])
        assert r.exit_code == 0 and "0 ran" in r.stdout and "0 failed" in r.stdout, r.output
        r = runner.invoke(app, ["report", "--results", str(results), "--out", str(tmp_path / "rep")])
        assert r.exit_code == 0, r.output
    finally:
        for d in [results, *(p for p in results.rglob("*") if p.is_dir())]:
            d.chmod(0o755)


def test_report_into_a_read_only_directory(tmp_path, monkeypatch):
    results = tmp_path / "results"
    finished_store(results)
    out = tmp_path / "rep"
    out.mkdir()
    read_only(monkeypatch, tmp_path, out)
    try:
        one_line_exit_2(["report", "--results", str(results), "--out", str(out)], "cannot write the report",
                        "Permission denied")
    finally:
        out.chmod(0o755)
