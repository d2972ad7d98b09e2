"""`--executor ray`: each cell a Ray task with its resource request (runtime.cpus_per_cell, runtime.gpus_per_cell).

A task never touches the results store: it runs the cell in a private temporary store on its node and returns
the run directory's files as bytes (spec, log, loss curve, metrics or error; the checkpoint separately, as its
own object); the driver writes them into the store, each file by temp file + rename and the done marker last.
So a cluster with or without a shared file system ends up with the same results store as a local run. A
fine-tuning task gets its checkpoint as a Ray object (Ray moves it to the node). Tokenizers and prepared
corpora are cached per node under $ABLATE_RAY_SCRATCH. The driver (this process) holds the results lock
throughout, as with any executor (ablate.run.pipeline.drive).

`ray` is imported inside the functions that use it: it is an optional extra (pip install -e ".[ray]"), and
importing it costs seconds.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ablate.errors import UserError
from ablate.run.cell import record_failure
from ablate.run.executors import run_guarded, with_threads
from ablate.run.jobs import CellContext, Job, Outcome
from ablate.run.progress import Reporter
from ablate.store import RunDir, Store, atomic_write_bytes
from ablate.study.identity import stable_hash

RAY_INSTALL = 'pip install -e ".[ray]"'
FORWARDED_ENV = ("ABLATE_DATA_DIR", "ABLATE_RAY_SCRATCH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                 "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")


def ray_available() -> bool:
    try:
        import ray  # noqa: F401  (optional extra, imported on use: see the module docstring)
    except ImportError:
        return False
    return True


def pack_dir(folder: Path, skip: tuple[str, ...] = ("resume",)) -> dict[str, bytes]:
    """Every file under folder as {relative posix path: bytes}; top-level names in skip, and dot-named
    ones (what a kill mid-write leaves), are left out."""
    files = {}
    if not folder.is_dir():
        return files
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in skip and not rel.parts[0].startswith(".") \
                and not path.name.endswith(".tmp"):
            files[rel.as_posix()] = path.read_bytes()
    return files


def unpack_dir(files: dict[str, bytes], folder: Path) -> None:
    for rel, data in files.items():
        atomic_write_bytes(folder / rel, data)


MARKERS = ("error.json", "metrics.json")  # written last: their presence says how the cell ended


def install_run(run: RunDir, files: dict[str, bytes]) -> None:
    """Write a run directory that a Ray task returned into the store, as a local run would have left it:
    every file atomically, the log appended to an earlier attempt's, error.json or metrics.json last."""
    run.reset()
    for rel, data in files.items():
        if rel in MARKERS:
            continue
        if rel == "log.txt":
            run.path.mkdir(parents=True, exist_ok=True)
            with open(run.path / rel, "ab") as f:
                f.write(data)
        else:
            atomic_write_bytes(run.path / rel, data)
    for rel in MARKERS:
        if rel in files:
            atomic_write_bytes(run.path / rel, files[rel])


def scratch_root() -> Path:
    """A Ray worker's node-local folder: cached tokenizers and corpora (per data directory), and the private
    stores its cells run in."""
    base = Path(os.environ.get("ABLATE_RAY_SCRATCH") or Path(tempfile.gettempdir()) / f"ablate-ray-{os.getuid()}")
    return base / stable_hash({"data": os.environ.get("ABLATE_DATA_DIR", "")}, 12)


def ray_cell(job: Job, ctx: CellContext, checkpoint: Optional[dict[str, bytes]]):
    """The Ray task: run one cell in a private store on this node; return (outcome, its run directory's
    files but the checkpoint) and, for a pretraining cell that finished, the checkpoint's files."""
    scratch = scratch_root()
    (scratch / "runs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch / "runs") as tmp:
        store = Store(Path(tmp), cache_root=scratch / "_cache")
        if checkpoint is not None:
            unpack_dir(checkpoint, store.pretrain(ctx.study, job.cell.pretrain_key).checkpoint)
        outcome = run_guarded(job, ctx, store)
        run = store.pretrain(ctx.study, job.key) if job.kind == "pretrain" else store.finetune(ctx.study, job.key)
        files = pack_dir(run.path)
    ckpt = {k[len("checkpoint/"):]: v for k, v in files.items() if k.startswith("checkpoint/")}
    small = {k: v for k, v in files.items() if not k.startswith("checkpoint/")}
    if outcome.status == "ok" and "metrics.json" not in small:
        outcome = Outcome("failed", "the Ray task ended without metrics")
    return (outcome, small), (ckpt if job.kind == "pretrain" and outcome.status == "ok" else None)


class RayExecutor:
    """Each cell a Ray task (see the module docstring); address: None (RAY_ADDRESS, else a Ray started on
    this machine), "auto" (a cluster started here with `ray start`), or "ray://host:port"."""

    name, concurrent = "ray", True

    def __init__(self, address: Optional[str] = None):
        if not ray_available():
            raise UserError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}")
        self.address = address
        self._owns = False
        self._inflight: dict = {}  # result ObjectRef -> job
        self._checkpoints: dict = {}  # pretraining key -> ObjectRef of its checkpoint files

    def start(self, store: Store, ctx: CellContext, reporter: Reporter) -> None:
        import ray  # optional extra, imported on use

        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False, include_dashboard=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise UserError(f"cannot reach the Ray cluster at {self.address or 'RAY_ADDRESS'}: "
                                f"{str(e).splitlines()[0] if str(e) else e.__class__.__name__}") from None
            self._owns = True
        rt = ctx.runtime
        self.cpus = rt.cpus_per_cell or rt.threads or 1
        self.gpus = rt.gpus_per_cell
        self.store, self.ctx = store, ctx
        # workers record their own machine in spec.json; torch threads follow the CPUs the cell asked for
        self.worker_ctx = self._worker_ctx(ctx)
        env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        for k in ("ABLATE_DATA_DIR", "ABLATE_RAY_SCRATCH", "HF_HOME"):  # a task's working directory is Ray's
            if k in env and "://" not in env[k]:
                env[k] = os.path.abspath(env[k])
        self.task = ray.remote(ray_cell).options(num_cpus=self.cpus, num_gpus=self.gpus, num_returns=2,
                                                 runtime_env={"env_vars": env} if env else None)

    def slots(self) -> int:
        """Cells the cluster fits at once (so 'running' on the progress bar means placed, not queued)."""
        import ray  # optional extra, imported on use

        total = ray.cluster_resources()
        n = total.get("CPU", 0) // self.cpus
        if self.gpus:
            n = min(n, total.get("GPU", 0) // self.gpus)
        return max(1, int(n))

    def _worker_ctx(self, ctx: CellContext) -> CellContext:
        """A job's context on a worker: it records its own machine; torch threads follow the CPUs asked for."""
        return replace(with_threads(ctx, int(self.cpus)), provenance=None)

    def _checkpoint_ref(self, study: str, pretrain_key: str):
        import ray  # optional extra, imported on use

        if pretrain_key not in self._checkpoints:  # finished in an earlier run: ship it from the store
            folder = self.store.pretrain(study, pretrain_key).checkpoint
            self._checkpoints[pretrain_key] = ray.put(pack_dir(folder))
        return self._checkpoints[pretrain_key]

    def submit(self, job: Job) -> None:
        ckpt = None
        if job.kind == "finetune" and job.cell.pretrain_key is not None:
            ckpt = self._checkpoint_ref(job.context(self.ctx).study, job.cell.pretrain_key)
        sent = replace(job, ctx=self._worker_ctx(job.ctx)) if job.ctx is not None else job
        result, checkpoint = self.task.remote(sent, sent.context(self.worker_ctx), ckpt)
        self._inflight[result] = (job, checkpoint)

    def wait(self) -> list[tuple[Job, Outcome]]:
        import ray  # optional extra, imported on use

        done, _ = ray.wait(list(self._inflight), num_returns=1)
        out = []
        for ref in done:
            job, ckpt_ref = self._inflight.pop(ref)
            try:
                outcome, files = ray.get(ref)
                checkpoint = ray.get(ckpt_ref) if outcome.status == "ok" and job.kind == "pretrain" else None
            except ray.exceptions.RayError as e:  # the task itself died (node lost, out of memory, ...)
                outcome = Outcome("failed", f"Ray task failed: {str(e).strip().splitlines()[0] if str(e) else e}")
                record_failure(job.cell, job.context(self.ctx), self.store, outcome.message)
                out.append((job, outcome))
                continue
            if outcome.status == "user_error":
                outcome = replace(outcome, message=f"on a Ray worker: {outcome.message}")
            else:
                self._install(job, files, checkpoint)
                if checkpoint is not None:
                    self._checkpoints[job.key] = ckpt_ref
            out.append((job, outcome))
        return out

    def _install(self, job: Job, files: dict[str, bytes], checkpoint: Optional[dict[str, bytes]]) -> None:
        ctx = job.context(self.ctx)
        run = self.store.pretrain(ctx.study, job.key) if job.kind == "pretrain" else \
            self.store.finetune(ctx.study, job.key)
        try:
            if ctx.force or checkpoint is not None:
                shutil.rmtree(run.path / "resume", ignore_errors=True)  # superseded, as in a local run
            if checkpoint is not None:
                run.metrics_path.unlink(missing_ok=True)  # not done while its checkpoint is half replaced
                unpack_dir(checkpoint, run.checkpoint)
            install_run(run, files)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"the results disk is full ({e.filename or run.path}): free some space and run "
                                f"again; finished cells are kept") from None
            raise

    def close(self) -> None:
        import ray  # optional extra, imported on use

        for ref in self._inflight:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        self._inflight.clear()
        self._checkpoints.clear()
        if self._owns:
            ray.shutdown()
