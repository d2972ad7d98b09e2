"""Atomic writes, done markers, failures recorded and retried, locks."""

from __future__ import annotations

import os

import pytest

from ablate.errors import UserError
from ablate.run.lock import results_lock
from ablate.store import Store, atomic_write_json, read_json


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_json(path, {"a": 2})
    monkeypatch.undo()
    assert read_json(path) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_run_dir_lifecycle(tmp_path):
    run = Store(tmp_path).pretrain("s", "abc")
    assert not run.is_done()
    run.begin({"x": 1}, {"variant": "a"})
    run.fail("boom", "error")
    assert run.error()["error"] == "boom" and not run.is_done()
    run.begin({"x": 1}, {"variant": "a"})  # a retry clears the failure
    assert run.error() is None
    run.finish({"heldout_ppl": 3.0})
    assert run.is_done() and run.metrics() == {"heldout_ppl": 3.0}
    assert read_json(run.path / "spec.json")["identity"] == {"x": 1}
    run.reset()
    assert not run.is_done()


def test_store_lists_only_studies(tmp_path):
    store = Store(tmp_path)
    (tmp_path / "_cache").mkdir()
    (tmp_path / "masking").mkdir()
    (tmp_path / "masking" / "study.yaml").write_text("x")
    (tmp_path / "junk").mkdir()
    assert store.studies() == ["masking"]


def test_lock_refuses_a_second_holder_and_takes_over_stale(tmp_path):
    with results_lock(tmp_path):
        (tmp_path / ".lock").read_text() == str(os.getpid())
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            with results_lock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text("999999999")  # a dead process
    with results_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
