"""The only module that knows the stage order: Plan -> pending cells -> an executor -> the store.

run(plan, store) checks the plan's data and memory before any compute, takes the results lock, copies in
cells finished in other studies (ablate.run.reuse), lists the pending cells (ablate.run.jobs) and drives them
through an executor (drive): every pretraining cell before its fine-tunes, a fine-tune whose pretraining failed
recorded as skipped. Several studies run as one queue (run_plans): one lock, a cell they share computed once. Every stage is cached on disk, so a re-run skips what is done, and a failed cell records
its error while the study goes on. run_study is `ablate run`: a study file and the command's options.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from pydantic import ValidationError

from ablate.errors import UserError
from ablate.paths import corpus_files, results_root
from ablate.run.budget import check_fits
from ablate.run.cell import provenance, record_failure, skip_finetune
from ablate.run.executors import JobsExecutor, LocalExecutor
from ablate.run.jobs import CellContext, Job, cell_labels, jobs
from ablate.run.lock import results_lock
from ablate.run.progress import Reporter
from ablate.run.ray import RAY_INSTALL, RayExecutor, ray_available
from ablate.run.reuse import copy_run, finished_elsewhere_any, reuse_finished
from ablate.store import Store, atomic_write_json, atomic_write_text, read_json
from ablate.study.cells import Plan, expand
from ablate.study.load import load_study
from ablate.study.spec import StudySpec
from ablate.tasks import TASKS
from ablate.tasks.data import check_local_data


@dataclass(frozen=True)
class RunOptions:
    """`ablate run`'s options beyond the study file (None: the study file's runtime setting)."""

    scale: Optional[str] = None
    results: Optional[Path] = None  # default: $ABLATE_RESULTS_DIR or ./results
    force: bool = False  # rerun cells that are already done
    wait: bool = False  # wait for another run that holds the results directory
    progress: bool = True
    jobs: int = 1  # cells at once on this machine (local executor)
    executor: str = "local"  # local | ray
    address: Optional[str] = None  # Ray cluster
    threads: Optional[int] = None
    device: Optional[str] = None
    cpus_per_cell: Optional[float] = None
    gpus_per_cell: Optional[float] = None


def run_study(path: Path, opts: RunOptions) -> tuple[StudySpec, dict]:
    """`ablate run` with one study file: (spec, counts)."""
    return run_studies([path], opts)[0]


def run_studies(paths: list[Path], opts: RunOptions) -> list[tuple[StudySpec, dict]]:
    """`ablate run`: check the options, load every study (any error stops before work), apply the runtime
    options, run them as one queue; return (spec, counts) per study, in the order given (each study once)."""
    executor = make_executor(opts)
    specs = [with_runtime(load_study(path, opts.scale), opts) for path in paths]
    counts = run_plans([expand(s) for s in specs], Store(results_root(opts.results)), force=opts.force,
                       reporter=Reporter(enabled=opts.progress), wait=opts.wait, executor=executor)
    seen: dict[str, StudySpec] = {}
    for spec in specs:
        seen.setdefault(spec.name, spec)
    return [(spec, counts[name]) for name, spec in seen.items()]


def make_executor(opts: RunOptions):
    """The executor the options ask for; a UserError for options that do not go together."""
    if opts.executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, not {opts.executor!r}")
    if opts.executor == "local" and (opts.address is not None or opts.cpus_per_cell is not None
                                     or opts.gpus_per_cell is not None):
        raise UserError("--address, --cpus-per-cell and --gpus-per-cell need --executor ray")
    if opts.executor == "ray":
        if opts.jobs > 1:
            raise UserError("--jobs is for the local executor; on Ray, as many cells run at once as the cluster fits")
        if not ray_available():
            raise UserError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL}")
        return RayExecutor(opts.address)
    return JobsExecutor(opts.jobs) if opts.jobs > 1 else LocalExecutor()


def with_runtime(spec: StudySpec, opts: RunOptions) -> StudySpec:
    """spec with the command line's runtime options over the study file's (checked like the file's)."""
    over = {k: v for k, v in {"threads": opts.threads, "device": opts.device, "cpus_per_cell": opts.cpus_per_cell,
                              "gpus_per_cell": opts.gpus_per_cell}.items() if v is not None}
    if not over:
        return spec
    try:
        runtime = spec.runtime.model_validate({**spec.runtime.model_dump(), **over})
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(f"bad runtime option {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return spec.model_copy(update={"runtime": runtime})


def preflight(plan: Plan) -> None:
    """Fail before any compute when a data file the plan needs is missing."""
    corpora = {c.config.data.corpus for c in plan.pretrain}
    for corpus in corpora:
        corpus_files(corpus, "train")
        corpus_files(corpus, "validation")
    for cell in plan.finetune:  # the splits each task needs under its settings (e.g. train_from_validation)
        check_local_data(TASKS.get(cell.task), cell.config.finetune)
    check_fits(plan)


def _record_study(store: Store, plan: Plan) -> None:
    folder = store.study_dir(plan.study.name)
    atomic_write_text(folder / "study.yaml", plan.study.source)
    atomic_write_json(folder / "last_run.json", {"scale": plan.study.scale, "study_file": plan.study.path})


def _nothing_to_do(plan: Plan, store: Store, force: bool) -> bool:
    """Every cell finished here and the study recorded as it is: `run` writes nothing, so it needs no lock (a
    finished results directory may be read-only)."""
    if force or jobs(plan, store, force) or any(finished_elsewhere_any(plan, store)):
        return False
    folder = store.study_dir(plan.study.name)
    last = read_json(folder / "last_run.json")
    try:
        recorded = (folder / "study.yaml").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    return recorded == plan.study.source and isinstance(last, dict) and last.get("scale") == plan.study.scale


def run(plan: Plan, store: Store, force: bool = False, reporter: Optional[Reporter] = None, wait: bool = False,
        executor=None) -> dict:
    """Run every pending cell of the plan; return counts of done/skipped/failed cells.

    executor: where cells run (ablate.run.executors: LocalExecutor, the default, one after another in this
    process; JobsExecutor; ablate.run.ray.RayExecutor). This process holds the results lock throughout, whichever it is.
    """
    return run_plans([plan], store, force, reporter, wait, executor)[plan.study.name]


def run_plans(plans: list[Plan], store: Store, force: bool = False, reporter: Optional[Reporter] = None,
              wait: bool = False, executor=None) -> dict[str, dict]:
    """Run the pending cells of several studies as one queue under one lock; return each study's counts.

    A cell pending in several of them (the same key) runs once, in the first study that lists it, and is copied
    into the others when it finishes (before their fine-tunes of it start)."""
    plans = _distinct(plans)
    for plan in plans:
        preflight(plan)
    if all(_nothing_to_do(plan, store, force) for plan in plans):  # no lock: a finished directory may be read-only
        return {plan.study.name: {"ran": 0, "skipped": len({c.key for c in plan.pretrain} | {c.key for c in plan.finetune}),
                                  "failed": 0, "reused": 0} for plan in plans}
    reporter = reporter or Reporter(enabled=False)
    executor = executor or LocalExecutor()
    prov = provenance()
    with results_lock(store.root, wait=wait):
        counts, queue, followers, owners = {}, [], {}, {}
        ctxs = {p.study.name: CellContext(p.study.name, p.study.runtime, force, prov) for p in plans}
        for plan in plans:
            _record_study(store, plan)
        for index, plan in enumerate(plans):
            name = plan.study.name
            ctx = ctxs[name]
            counts[name] = {"ran": 0, "skipped": 0, "failed": 0, "reused": 0 if force else reuse_finished(plan, store)}
            tag = f"{name}:" if len(plans) > 1 else ""
            for job in jobs(plan, store, force):
                job = replace(job, order=len(queue) + sum(map(len, followers.values())), ctx=ctx, tag=tag,
                              study_index=index)
                if (job.kind, job.key) in owners:
                    followers.setdefault((job.kind, job.key), []).append(job)
                else:
                    owners[(job.kind, job.key)] = job
                    queue.append(job)
        drive(queue, store, ctxs[plans[0].study.name], reporter, executor, counts, followers)
    for plan in plans:
        c = counts[plan.study.name]
        c["skipped"] = (len({x.key for x in plan.pretrain} | {x.key for x in plan.finetune})
                        - c["ran"] - c["failed"] - c["reused"])
    return counts


def _distinct(plans: list[Plan]) -> list[Plan]:
    """Each study once (a file named twice runs once); two different files with one name would share a folder."""
    out: dict[str, Plan] = {}
    for plan in plans:
        name = plan.study.name
        if name in out and out[name].study.source != plan.study.source:
            raise UserError(f"{out[name].study.path} and {plan.study.path} are both study {name!r}: each study "
                            f"writes results/{name}/, so give them different names")
        out.setdefault(name, plan)
    return list(out.values())


def priority(job: Job, concurrent: bool) -> tuple[int, int, int]:
    """The order ready jobs start in. One at a time: the sequential order (each pretraining cell, then its
    fine-tunes). Several at once: the studies in the order given, and within a study pretraining first, since it
    takes longest and fine-tunes wait on it, so no worker is left idle at the end while one long pretraining cell
    holds up its fine-tunes. A later study's ready cells fill any worker the earlier ones leave free, so studying
    in order costs no idle time, and each study finishes (and can be reported) as early as it can, not all at the
    end of a long queue."""
    if not concurrent:
        return (0, 0, job.order)
    return (job.study_index, 0 if job.kind == "pretrain" else 1, job.order)


def drive(jobs: list[Job], store: Store, ctx: CellContext, reporter: Reporter, executor,
          counts: Optional[dict[str, dict]] = None, followers: Optional[dict] = None) -> dict:
    """Run the jobs on the executor, fine-tunes after their pretraining; count each job's outcome under its
    study in `counts` (returned; by default {ctx.study: {ran, skipped, failed}}). followers: (kind, key) -> the
    same cell's jobs in other studies, copied in when it finishes (recorded as failed when it fails)."""
    counts = counts if counts is not None else {ctx.study: {"ran": 0, "skipped": 0, "failed": 0}}
    followers = followers or {}
    waiting: dict[str, list[Job]] = {}
    ready: list[tuple[tuple[int, int, int], Job]] = []
    total = len(jobs)
    for job in jobs:
        if job.after is None:
            heapq.heappush(ready, (priority(job, executor.concurrent), job))
        else:
            waiting.setdefault(job.after, []).append(job)
    running, done, failed = 0, 0, 0

    def settle(job: Job, ok: bool, message: str) -> None:
        nonlocal done, failed
        source = job.context(ctx)
        for other in [job] + followers.get((job.kind, job.key), []):
            octx = other.context(ctx)
            c = counts[octx.study]
            if other is not job and ok:
                src = store.pretrain(source.study, job.key) if job.kind == "pretrain" else store.finetune(source.study, job.key)
                dst = store.pretrain(octx.study, job.key) if job.kind == "pretrain" else store.finetune(octx.study, job.key)
                copy_run(src, dst, cell_labels(other.cell))
                c["reused"] = c.get("reused", 0) + 1
            elif other is not job:
                record_failure(other.cell, octx, store, f"{message} (in study {source.study})", "skipped")
                c["failed"] += 1
            else:
                c["ran" if ok else "failed"] += 1
        done, failed = done + ok, failed + (not ok)

    reporter.start(total=total, per_cell=executor.concurrent)
    executor.start(store, ctx, reporter)
    try:
        while ready or running:
            slots = executor.slots()
            while ready and running < slots:
                _, job = heapq.heappop(ready)
                executor.submit(job)
                running += 1
                reporter.cell_started(job.label)
            reporter.status(queued=len(ready) + sum(map(len, waiting.values())), running=running,
                            done=done, failed=failed)
            for job, outcome in executor.wait():
                running -= 1
                if outcome.status == "user_error":
                    raise UserError(outcome.message)
                ok = outcome.status == "ok"
                settle(job, ok, outcome.message)
                if ok:
                    reporter.cell_done(job.label)
                else:
                    reporter.cell_failed(job.label, outcome.message)
                for dep in waiting.pop(job.key, []) if job.kind == "pretrain" else []:
                    if ok:
                        heapq.heappush(ready, (priority(dep, executor.concurrent), dep))
                    else:
                        skip_finetune(dep.cell, dep.context(ctx), store)
                        settle(dep, False, "skipped: its pretraining cell failed")
                        reporter.cell_failed(dep.label, "pretraining failed")
            reporter.status(queued=len(ready) + sum(map(len, waiting.values())), running=running,
                            done=done, failed=failed)
    finally:
        executor.close()
        reporter.stop()
    return counts
