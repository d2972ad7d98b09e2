"""Concurrent runs, a full disk, a scale that cannot fit, and offline operation with the network blocked."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ablate.run import pipeline
from ablate.run.budget import check_fits
from ablate.errors import UserError
from ablate.study.cells import expand
from ablate.run.lock import results_lock
from ablate.study.load import load_study
from ablate.store import RunDir, Store

STUDIES = Path(__file__).resolve().parents[1] / "studies"
MICRO = """\
name: micro
description: micro
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 6, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 40, epochs: 1}
variants:
  a: {}
baseline: a
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, progress: false}
"""


def micro_plan(tmp_path):
    path = tmp_path / "micro.yaml"
    path.write_text(MICRO)
    return expand(load_study(path, "tiny"))


def test_second_run_refuses_naming_the_holder_or_waits(tmp_path):
    released = threading.Event()

    def hold():
        with results_lock(tmp_path):
            released.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.2)
    with pytest.raises(UserError, match=f"pid {os.getpid()}.*--wait"):
        with results_lock(tmp_path):
            pass
    threading.Timer(0.5, released.set).start()
    t0 = time.monotonic()
    with results_lock(tmp_path, wait=True, poll_s=0.1):  # waits for the holder, then takes the lock
        assert time.monotonic() - t0 >= 0.3
    t.join()


def test_lock_being_written_is_not_taken_as_stale(tmp_path):
    (tmp_path / ".lock").write_text("")  # created, pid not yet written
    with pytest.raises(UserError, match="starting up"):
        with results_lock(tmp_path):
            pass


def test_full_disk_stops_with_a_clear_error_and_keeps_finished_cells(tmp_path, tiny_data_root, monkeypatch):
    plan = micro_plan(tmp_path)
    store = Store(tmp_path / "results")
    real = RunDir.finish
    calls = {"n": 0}

    def finish(self, metrics):
        calls["n"] += 1
        if calls["n"] == 2:  # the pretraining cell finishes, then the disk fills up
            raise OSError(errno.ENOSPC, "No space left on device", str(self.metrics_path))
        return real(self, metrics)

    monkeypatch.setattr(RunDir, "finish", finish)
    with pytest.raises(UserError, match="results disk is full.*finished cells are kept"):
        pipeline.run(plan, store)
    assert store.pretrain("micro", plan.pretrain[0].key).is_done()
    monkeypatch.setattr(RunDir, "finish", real)
    assert pipeline.run(plan, store)["ran"] == 2  # the rest, once there is space


def test_paper_scale_on_this_machine_says_it_cannot_fit(monkeypatch):
    monkeypatch.setattr("ablate.run.budget.available_memory", lambda: (24 * 2**30, "available memory"))
    plan = expand(load_study(STUDIES / "masking.yaml", "paper"))
    with pytest.raises(UserError, match="needs about .* GiB per step.*micro_batch_size"):
        check_fits(plan)
    check_fits(expand(load_study(STUDIES / "masking.yaml", "cpu")))  # the cpu scale fits


def test_offline_run_makes_no_network_call(tmp_path, tiny_data_root, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    plan = micro_plan(tmp_path)
    counts = pipeline.run(plan, Store(tmp_path / "results"))
    assert counts["failed"] == 0 and counts["ran"] == 3
    assert attempts == []
