"""Where cells run, on this machine: one small interface, two executors (Ray's is in ablate.run.ray).

- LocalExecutor (default): one cell after another, in this process.
- JobsExecutor (`--jobs N`): N cells at once on this machine, in N worker processes writing straight into
  the results store; torch threads per cell = runtime.threads, else max(1, cores // N).

An executor has: start(store, ctx, reporter), slots() (cells it runs at once), submit(job), wait() (blocks
until at least one submitted cell has ended; returns (job, outcome) pairs, the cell's result already in the
store), close(). The driver loop that feeds them is ablate.run.pipeline.drive.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from dataclasses import replace
from multiprocessing.connection import wait as wait_any
from pathlib import Path

from ablate.errors import UserError
from ablate.paths import available_cores
from ablate.run.cell import record_failure, run_cell
from ablate.run.jobs import CellContext, Job, Outcome
from ablate.run.progress import Reporter
from ablate.store import Store


def with_threads(ctx: CellContext, threads: int) -> CellContext:
    """ctx with runtime.threads set, unless the study or --threads already set it."""
    if ctx.runtime.threads is not None:
        return ctx
    return replace(ctx, runtime=ctx.runtime.model_copy(update={"threads": max(1, int(threads))}))


def run_guarded(job: Job, ctx: CellContext, store: Store) -> Outcome:
    """run_cell in a worker: what would stop the study comes back as a 'user_error' outcome, and an error
    outside the cell's own work (it is recorded there when it happens inside) as a 'failed' one."""
    try:
        return run_cell(job, ctx, store, Reporter(enabled=False))
    except UserError as e:
        return Outcome("user_error", str(e))
    except Exception as e:  # noqa: BLE001 - the driver records it
        return Outcome("failed", f"{e.__class__.__name__}: {e}".splitlines()[0])


class LocalExecutor:
    """One cell after another in this process (the stage bar shows its steps)."""

    name, concurrent = "local", False

    def __init__(self):
        self._queue: list[Job] = []

    def start(self, store: Store, ctx: CellContext, reporter: Reporter) -> None:
        self.store, self.ctx, self.reporter = store, ctx, reporter

    def slots(self) -> int:
        return 1

    def submit(self, job: Job) -> None:
        self._queue.append(job)

    def wait(self) -> list[tuple[Job, Outcome]]:
        job = self._queue.pop(0)
        return [(job, run_cell(job, self.ctx, self.store, self.reporter))]

    def close(self) -> None:
        self._queue.clear()


def _die_with_parent() -> None:
    """A worker must not outlive its driver (killed, or stopped with SIGTERM): an orphan would go on writing
    its cell while a resumed run, which takes the dead driver's lock over, starts the same cell. Linux:
    the kernel sends SIGKILL when the parent dies (the cell resumes from its last checkpoint)."""
    parent = multiprocessing.parent_process()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the worker notices at its next send to the driver
    if parent is not None and os.getppid() != parent.pid:  # the driver died before prctl took effect
        os._exit(1)


def _worker_main(ctx: CellContext, root: str, cache_root: str, conn) -> None:
    """A --jobs worker process: run the cells it is sent into the shared store, answer each with its outcome;
    None means stop. Heavy imports happen once per worker, not once per cell."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops the workers
    _die_with_parent()
    store = Store(Path(root), Path(cache_root))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(run_guarded(job, ctx, store))


class JobsExecutor:
    """N cells at once on this machine, in N worker processes (started on demand, each running one cell at a
    time; a worker that dies costs only its cell and is replaced), all writing into the same results store."""

    name, concurrent = "jobs", True

    def __init__(self, n: int):
        if n < 1:
            raise UserError(f"--jobs must be at least 1, not {n}")
        self.n = n
        self._idle: list = []  # (process, connection)
        self._busy: dict = {}  # connection -> (process, job)

    def start(self, store: Store, ctx: CellContext, reporter: Reporter) -> None:
        self.mp = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        self.store, self.ctx = store, with_threads(ctx, available_cores() // self.n)

    def slots(self) -> int:
        return self.n

    def submit(self, job: Job) -> None:
        sent = job  # a queue of several studies: each job's own context, threads divided as above
        if job.ctx is not None:
            sent = replace(job, ctx=with_threads(job.ctx, available_cores() // self.n))
        if self._idle:
            proc, conn = self._idle.pop()
        else:
            conn, child = self.mp.Pipe()
            proc = self.mp.Process(target=_worker_main, name="ablate worker",
                                   args=(self.ctx, str(self.store.root), str(self.store.cache_root), child))
            proc.start()
            child.close()  # so the driver sees EOF when the worker dies
        conn.send(sent)
        self._busy[conn] = (proc, job)

    def wait(self) -> list[tuple[Job, Outcome]]:
        out = []
        for conn in wait_any(list(self._busy)):
            proc, job = self._busy.pop(conn)
            try:
                outcome = conn.recv()
                self._idle.append((proc, conn))
            except (EOFError, OSError):  # killed (out of memory, a signal) in the middle of the cell
                conn.close()
                proc.join()
                outcome = Outcome("failed", f"its worker process died (exit code {proc.exitcode})")
                record_failure(job.cell, job.context(self.ctx), self.store, outcome.message)
            out.append((job, outcome))
        return out

    def close(self) -> None:
        for proc, conn in self._idle:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc, job in self._busy.values():
            proc.terminate()  # an unfinished cell leaves no metrics.json: the next run redoes (resumes) it
        for proc, conn in self._idle + [(p, c) for c, (p, _) in self._busy.items()]:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
            conn.close()
        self._idle, self._busy = [], {}
