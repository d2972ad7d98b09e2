"""Kill test: `ablate run` is SIGKILLed at random moments, resumed each time, and must end with exactly the
results of an uninterrupted run, no half-written file, and no finished cell computed twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STUDY = """\
name: killme
description: kill test
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 400, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 60, epochs: 1, batch_size: 16, max_len: 32}
variants:
  static: {pretrain: {masking: static}}
  dynamic: {pretrain: {masking: dynamic}}
baseline: static
seeds: {pretrain: [0], finetune: [0, 1]}
runtime: {threads: 1, log_every: 5, checkpoint_every: 5, progress: false}
"""

MIN_KILLS, TIME_LIMIT_S = 10, 400


def ablate_run(study: Path, results: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ablate", "run", str(study), "--results", str(results),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": "0"}, start_new_session=True)


def wait_group_dead(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no live process is left in the killed driver's process group: its cell workers die by
    PR_SET_PDEATHSIG a moment after it, and may still rename a folder while the files are checked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in "ZX":  # state, ppid, pgrp; zombies write nothing
                alive = True
                break
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"processes of group {pgid} still alive {timeout} s after the driver was killed")


def outcomes(results: Path) -> dict[str, dict]:
    """Every finished cell's metrics, minus timings (which differ between runs by nature)."""
    out = {}
    for m in results.rglob("metrics.json"):
        data = json.loads(m.read_text())
        out[m.parent.name] = {k: v for k, v in data.items() if "wall" not in k and "per_s" not in k
                              and "memory" not in k and k != "_sha256"}  # the digest covers the timings
    return out


def progress(results: Path) -> tuple[int, int]:
    """(bytes of loss lines, finished cells): grows only when a run does real work, never at start-up. Read while
    the run writes, so a folder or file removed mid-walk (a resume folder cleared when its cell ends) is skipped:
    os.walk ignores a folder that vanished and a file that vanished counts as nothing."""
    loss_bytes, cells = 0, 0
    for folder, _, files in os.walk(results):
        if "loss.jsonl" in files:
            try:
                loss_bytes += os.stat(os.path.join(folder, "loss.jsonl")).st_size
            except FileNotFoundError:
                pass
        cells += "metrics.json" in files
    return loss_bytes, cells


def check_files_whole(results: Path) -> None:
    """Every file a reader may open parses. Dot-folders are excluded: a final checkpoint is written whole into
    `.checkpoint.tmp` and renamed into place, so a kill may leave that folder half-written, never `checkpoint/`."""
    for path in results.rglob("*.json"):
        if any(part.startswith(".") for part in path.relative_to(results).parts):
            continue
        json.loads(path.read_text())  # a truncated file would not parse
    for path in results.rglob("loss.jsonl"):
        lines = path.read_text().splitlines()
        for line in lines[:-1]:  # only the line being appended at the kill may be cut
            json.loads(line)


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path, tiny_data_root):
    study = tmp_path / "killme.yaml"
    study.write_text(STUDY)
    reference = tmp_path / "reference"
    t0 = time.monotonic()
    assert ablate_run(study, reference).wait(timeout=600) == 0
    work = time.monotonic() - t0
    expected = outcomes(reference)
    assert len(expected) == 2 + 4 + 2  # 2 pretrainings, 4 fine-tunes, 2 random-init fine-tunes

    results = tmp_path / "killed"
    rng = random.Random(0)
    finished: dict[Path, int] = {}
    kills, start = 0, time.monotonic()
    while kills < MIN_KILLS:  # kill at random moments; each run resumes where the last checkpoint left it
        assert time.monotonic() - start < TIME_LIMIT_S, f"only {kills} kills in {TIME_LIMIT_S} s"
        before = progress(results)
        proc = ablate_run(study, results)
        # wait until this run has done some real work (a loss line or a finished cell: a machine of any speed
        # gets there), then let it run a random slice of at most 1/40 of the work more and kill it there
        while proc.poll() is None and progress(results) == before:
            time.sleep(0.02)
        try:
            proc.wait(timeout=rng.uniform(0.0, work / 40))
            break  # the study finished between kills: nothing left to kill
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)  # the driver only: its workers must die with it (PR_SET_PDEATHSIG)
            proc.wait()
            wait_group_dead(proc.pid)
            kills += 1
        check_files_whole(results)
        for m in results.rglob("metrics.json"):
            stamp = m.stat().st_mtime_ns
            assert finished.setdefault(m, stamp) == stamp, f"{m} was recomputed"
    assert kills >= MIN_KILLS, f"the study finished after {kills} kills: make it longer"
    assert ablate_run(study, results).wait(timeout=900) == 0  # the last run completes what is left
    check_files_whole(results)
    for m, stamp in finished.items():
        assert m.stat().st_mtime_ns == stamp, f"{m} was recomputed"
    assert outcomes(results) == expected


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_jobs_workers_die_with_their_driver(tiny_data_root, tmp_path):
    """SIGKILL the driver of `ablate run --jobs 2`: its workers must go too, so a resumed run never races an
    orphan writing the same cell."""
    study = tmp_path / "killme.yaml"
    study.write_text(STUDY.replace("steps: 400", "steps: 4000"))
    proc = subprocess.Popen([sys.executable, "-m", "ablate", "run", str(study), "--results", str(tmp_path / "r"),
                             "--no-progress", "--jobs", "2", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 2:
        assert proc.poll() is None, "the run ended before its workers started"
        workers = {c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()}
        time.sleep(0.2)
    assert len(workers) == 2
    time.sleep(3)  # into their cells
    proc.kill()
    proc.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:  # never leave them running
        os.kill(w, signal.SIGKILL)
    assert not orphans, "a worker outlived its driver"
