"""Executors: `--jobs N` and `--executor ray` (a real local Ray) leave the same results store as the local
executor, record a failing cell and its skipped fine-tune as a local run does, never resubmit finished cells,
and keep Ray optional.

The study is a micro one at the `tiny` scale on the synthetic corpus (tests/conftest.py): three variants, one
pretraining seed, one fine-tuning seed, SST-2, the random-init control, threads=1 per cell. Its `diverge`
variant really fails at run time: a peak learning rate of 1000 (lr 1.0 x lr_multiplier 1000, no clipping)
drives the training loss to NaN within a few steps, so the cell raises CellFailed inside the worker, exactly
as a diverging cell does in production; its fine-tune is then skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.run import pipeline
from ablate.cli import app
from ablate.study.cells import expand
from ablate.study.load import load_study
from ablate.store import Store
from conftest import write_tiny_data

try:
    import ray
except ImportError:  # CI installs the ray extra (.ci/run); without it only these tests are skipped
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason='Ray is not installed (pip install -e ".[ray]")')

STUDY = """\
name: micro
description: a micro study for the executors
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 12, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32, random_init_control: true}
variants:
  static: {pretrain: {masking: static}}
  dynamic: {pretrain: {masking: dynamic}}
  diverge: {pretrain: {lr: 1.0, lr_multiplier: 1000, warmup_ratio: 0, grad_clip: 0}}
baseline: dynamic
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, log_every: 4, progress: false}
"""
TIMING = {"wall_s", "wall_total_s", "tokens_per_s", "peak_memory_mb", "time",
          "_sha256"}  # may differ between runs (the digest covers the timings)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Synthetic data, the study file and a Ray scratch folder, for the whole module."""
    base = tmp_path_factory.mktemp("executors")
    data = write_tiny_data(base / "data")
    study = base / "micro.yaml"
    study.write_text(STUDY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ABLATE_DATA_DIR", str(data))
        mp.setenv("ABLATE_RAY_SCRATCH", str(base / "ray-scratch"))  # forwarded to the Ray workers
        yield {"base": base, "study": study, "scratch": base / "ray-scratch"}


@pytest.fixture(scope="module")
def local_results(env):
    """The reference: the default local executor, in this process."""
    plan = expand(load_study(env["study"], "tiny"))
    root = env["base"] / "local"
    counts = pipeline.run(plan, Store(root))
    assert counts == {"ran": 5, "skipped": 0, "failed": 2, "reused": 0}  # diverge, its fine-tune, nothing else
    return root


@pytest.fixture(scope="module")
def ray_local():
    """A real Ray instance on this machine (not a mock), two CPUs."""
    if ray is None:
        pytest.skip('Ray is not installed (pip install -e ".[ray]")')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_results(env, ray_local):
    """The study run through the CLI with every cell a task on the real local Ray."""
    root = env["base"] / "ray"
    out = run_cli(env["study"], "--scale", "tiny", "--results", root, "--executor", "ray", "--cpus-per-cell", 1)
    assert "micro: 5 ran, 0 already done, 2 failed" in out
    return root


def run_cli(*args: str) -> str:
    r = CliRunner().invoke(app, ["run", *map(str, args), "--no-progress"])
    assert r.exit_code == 0, r.output
    return r.output


def snapshot(root: Path) -> dict:
    """Every file of the study's run directories (and its study records), content made comparable: JSON
    without timing fields, logs without clock times, pids and durations, other files as bytes (loss
    curves, checkpoints)."""
    out = {}
    for path in sorted((root / "micro").rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(root).as_posix()
        if path.suffix == ".json":
            out[rel] = strip_timing(json.loads(path.read_text()))
        elif path.name == "log.txt":  # its clock times, pids and durations are timing too
            text = re.sub(r"^\[[\d: -]+\] ", "", path.read_text(), flags=re.M)
            out[rel] = re.sub(r"finished in \d+ s", "finished", re.sub(r"\(pid \d+\)", "", text))
        else:
            out[rel] = path.read_bytes()
    return out


def strip_timing(obj):
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k not in TIMING}
    return obj


def assert_same_store(actual: Path, expected: Path, skip: frozenset = frozenset()) -> None:
    a, e = snapshot(actual), snapshot(expected)
    assert sorted(set(a) - skip) == sorted(set(e) - skip)  # the same run directories (keys), the same files
    for rel in set(e) - skip:
        assert a[rel] == e[rel], rel
    metrics = [rel for rel in e if rel.endswith("metrics.json")]
    assert len(metrics) == 5
    # the science, spelled out: bit-for-bit equal (same seeds, threads=1, CPU: the computation is deterministic)
    for rel in metrics:
        if "/pretrain/" in rel:
            assert a[rel]["heldout_ppl"] == e[rel]["heldout_ppl"] and a[rel]["threads"] == 1
        else:
            assert a[rel]["metrics"] == e[rel]["metrics"] and "accuracy" in json.dumps(e[rel]["metrics"])


def errors(root: Path) -> dict:
    return {json.loads((p.parent / "spec.json").read_text())["labels"]["variant"] + "/" + p.parent.parent.name:
            json.loads(p.read_text()) for p in (root / "micro").rglob("error.json")}


@pytest.mark.slow
def test_jobs_2_gives_the_same_store_as_local(env, local_results, monkeypatch):
    from ablate.run.executors import JobsExecutor

    locks = []
    real_wait = JobsExecutor.wait

    def wait(self):  # the driver holds the results lock while the workers run
        locks.append((self.store.root / ".lock").read_text())
        return real_wait(self)

    monkeypatch.setattr(JobsExecutor, "wait", wait)
    root = env["base"] / "jobs"
    out = run_cli(env["study"], "--scale", "tiny", "--results", root, "--jobs", 2)
    assert "micro: 5 ran, 0 already done, 2 failed" in out
    assert locks and set(locks) == {str(os.getpid())}
    assert not (root / ".lock").exists()
    assert_same_store(root, local_results)


def test_jobs_divide_the_cores_unless_threads_are_set(tmp_path):
    from ablate.paths import available_cores
    from ablate.run.executors import JobsExecutor
    from ablate.run.jobs import CellContext
    from ablate.study.spec import RuntimeSpec

    for n in (1, 2, 3, 64):
        ex = JobsExecutor(n)
        ex.start(Store(tmp_path), CellContext("s", RuntimeSpec(), False, {}), None)
        assert ex.ctx.runtime.threads == max(1, available_cores() // n)
    ex.start(Store(tmp_path), CellContext("s", RuntimeSpec(threads=3), False, {}), None)
    assert ex.ctx.runtime.threads == 3  # runtime.threads / --threads win


@pytest.mark.slow
@needs_ray
def test_ray_gives_the_same_store_as_local(env, local_results, ray_results):
    root = ray_results
    assert_same_store(root, local_results)
    # the workers never wrote into the results store: they ran in their node's scratch and shipped the files
    assert not (root / "_cache").exists()
    assert list((env["scratch"]).glob("*/_cache/tokenizer/*/tokenizer.json"))
    assert not any((env["scratch"]).glob("*/runs/*"))  # private run stores are cleaned up
    assert not (root / ".lock").exists()


@pytest.mark.slow
@needs_ray
def test_ray_failing_cell_is_recorded_and_the_others_finish(local_results, ray_results):
    root = ray_results  # ran 5 and failed 2 (the diverging pretraining and its skipped fine-tune)
    errs = errors(root)
    assert set(errs) == {"diverge/pretrain", "diverge/finetune"}
    assert errs["diverge/pretrain"]["kind"] == "diverged" and "training loss is nan" in errs["diverge/pretrain"]["error"]
    assert errs["diverge/finetune"]["kind"] == "skipped"
    assert errs["diverge/finetune"]["error"] == "skipped: its pretraining cell failed"
    # the same records as the local executor writes
    assert {k: strip_timing(v) for k, v in errs.items()} == {k: strip_timing(v) for k, v in errors(local_results).items()}
    assert "diverged at step" in next((root / "micro" / "pretrain").rglob("log.txt")).read_text()
    done = sorted(p.parent.parent.name + "/" + json.loads((p.parent / "spec.json").read_text())["labels"]["variant"]
                  for p in (root / "micro").rglob("metrics.json"))
    assert done == ["finetune/dynamic", "finetune/random-init", "finetune/static", "pretrain/dynamic",
                    "pretrain/static"]


@pytest.mark.slow
@needs_ray
def test_ray_resume_never_resubmits_finished_cells(env, local_results, ray_results, monkeypatch):
    from ablate.run.ray import RayExecutor

    root = env["base"] / "ray-resume"
    shutil.copytree(ray_results, root)
    plan = expand(load_study(env["study"], "tiny"))
    static_ft = next(c for c in plan.finetune if c.variant == "static")
    Store(root).finetune("micro", static_ft.key).metrics_path.unlink()  # as if that run had been killed
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("metrics.json")}
    submitted = []
    real_submit = RayExecutor.submit

    def submit(self, job):
        submitted.append(job.key)
        return real_submit(self, job)

    monkeypatch.setattr(RayExecutor, "submit", submit)
    out = run_cli(env["study"], "--scale", "tiny", "--results", root, "--executor", "ray")
    diverge = next(c for c in plan.pretrain if c.variant == "diverge")
    # only the unfinished fine-tune (its checkpoint shipped from the store) and the failed cell, retried
    assert sorted(submitted) == sorted([static_ft.key, diverge.key])
    assert "1 ran, 4 already done, 2 failed" in out
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}  # finished cells untouched
    log = Store(root).pretrain("micro", diverge.key).path / "log.txt"
    assert log.read_text().count("diverged at step") == 2  # the retry's log appended, as a local rerun does
    ft_log = Store(root).finetune("micro", static_ft.key).path / "log.txt"
    assert ft_log.read_text().count("started") == 2 and ft_log.read_text().count("finished") == 2  # killed, rerun
    assert_same_store(root, local_results, skip=frozenset({p.relative_to(root).as_posix() for p in (log, ft_log)}))


def test_executor_ray_without_ray_exits_2_with_one_line(env, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    r = CliRunner().invoke(app, ["run", str(env["study"]), "--scale", "tiny", "--results", str(tmp_path / "r"),
                                 "--executor", "ray", "--no-progress"])
    assert r.exit_code == 2
    assert r.output.count("\n") == 1 and 'pip install -e ".[ray]"' in r.output, r.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["--executor", "ray", "--jobs", "2"], "--jobs is for the local executor"),
    (["--gpus-per-cell", "1"], "need --executor ray"),
    (["--address", "auto"], "need --executor ray"),
    (["--executor", "dask"], "--executor must be local or ray"),
])
def test_bad_executor_options_exit_2(env, tmp_path, args, message):
    r = CliRunner().invoke(app, ["run", str(env["study"]), "--results", str(tmp_path / "r"), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_run_help_imports_no_torch_nor_ray():
    code = ("import sys; from typer.testing import CliRunner; from ablate.cli import app; "
            "r = CliRunner().invoke(app, ['run', '--help']); assert r.exit_code == 0, r.output; "
            "assert '--executor' in r.output and '--jobs' in r.output, r.output; "
            "heavy = [m for m in ('torch', 'transformers', 'ray') if m in sys.modules]; assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_progress_shows_queued_running_done_failed():
    from ablate.run.progress import Reporter

    rep = Reporter(enabled=True)  # draws on stderr, which pytest captures
    rep.start(total=3, per_cell=True)
    rep.cell_started("pretrain a/seed0")
    rep.cell_started("pretrain b/seed0")
    rep.status(queued=1, running=2, done=0, failed=0)
    lines = {t.description.strip() for t in rep._progress.tasks}
    assert {"pretrain a/seed0", "pretrain b/seed0"} <= lines
    rep.cell_done("pretrain a/seed0")
    rep.cell_failed("pretrain b/seed0", "diverged")
    rep.status(queued=0, running=1, done=1, failed=1)
    study = rep._progress.tasks[0]
    assert study.completed == 2 and study.fields["info"] == "queued 0, running 1, done 1, failed 1"
    assert {t.description.strip() for t in rep._progress.tasks} == {"study cells"}
    rep.stop()


def test_resource_requests_are_runtime_settings_never_hashed(env, tmp_path):
    plain = expand(load_study(env["study"], "tiny"))
    other = tmp_path / "micro.yaml"
    other.write_text(STUDY.replace("runtime: {threads: 1,", "runtime: {threads: 1, cpus_per_cell: 4, gpus_per_cell: 0.5,"))
    asked = expand(load_study(other, "tiny"))
    assert asked.study.runtime.cpus_per_cell == 4 and asked.study.runtime.gpus_per_cell == 0.5
    assert [c.key for c in asked.pretrain + asked.finetune] == [c.key for c in plain.pretrain + plain.finetune]


@pytest.mark.slow
def test_jobs_worker_killed_costs_only_its_cell(env, local_results, monkeypatch):
    """A worker that dies (SIGKILL, as the out-of-memory killer sends) fails its cell, not the study: the cell
    and its fine-tune are recorded, a fresh worker takes the next cells, and the next run retries them."""
    import signal

    from ablate.run.executors import JobsExecutor

    real_submit = JobsExecutor.submit

    def submit(self, job):
        real_submit(self, job)
        if job.kind == "pretrain" and job.cell.variant == "static":
            proc = next(p for p, j in self._busy.values() if j is job)
            os.kill(proc.pid, signal.SIGKILL)

    monkeypatch.setattr(JobsExecutor, "submit", submit)
    root = env["base"] / "jobs-kill"
    out = run_cli(env["study"], "--scale", "tiny", "--results", root, "--jobs", 2)
    assert "micro: 3 ran, 0 already done, 4 failed" in out
    errs = errors(root)
    assert errs["static/pretrain"]["error"] == "its worker process died (exit code -9)"
    assert errs["static/finetune"]["error"] == "skipped: its pretraining cell failed"
    monkeypatch.setattr(JobsExecutor, "submit", real_submit)
    out = run_cli(env["study"], "--scale", "tiny", "--results", root, "--jobs", 2)
    assert "micro: 2 ran, 3 already done, 2 failed" in out  # static and its fine-tune; diverge fails again
    log = next(p for p in (root / "micro" / "pretrain").rglob("log.txt") if "diverged" in p.read_text())
    static_log = next(p for p in (root / "micro" / "pretrain").rglob("log.txt") if "worker process died" in p.read_text())
    assert_same_store(root, local_results, skip=frozenset(p.relative_to(root).as_posix() for p in (log, static_log)))
