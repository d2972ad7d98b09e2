"""The only module that knows the stage order: tokenizer -> corpus -> pretrain -> finetune, per cell.

run(plan, store) lists the pending cells (jobs) and hands them to an executor (ablate/executors.py);
every stage is cached on disk, so a re-run skips what is done and a failed cell records its error while
the study goes on. run_cell runs one cell into a store, wherever the executor runs it.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Union

from ablate.errors import CellFailed, UserError
from ablate.expand import FinetuneCell, Plan, PretrainCell, finetune_identity, pretrain_identity
from ablate.paths import corpus_files
from ablate.planning import check_fits
from ablate.progress import Reporter
from ablate.spec import RuntimeSpec
from ablate.store import RunDir, Store, atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from ablate.tasks import TASKS
from ablate.tasks.data import check_local_data


def preflight(plan: Plan) -> None:
    """Fail before any compute when a data file the plan needs is missing."""
    corpora = {c.config.data.corpus for c in plan.pretrain}
    for corpus in corpora:
        corpus_files(corpus, "train")
        corpus_files(corpus, "validation")
    for cell in plan.finetune:  # the splits each task needs under its settings (e.g. train_from_validation)
        check_local_data(TASKS.get(cell.task), cell.config.finetune)
    check_fits(plan)


def provenance() -> dict:
    """Git commit, library versions and hardware, recorded with every run."""
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "git_commit": commit,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@contextmanager
def results_lock(root: Path, wait: bool = False, poll_s: float = 2.0) -> Iterator[None]:
    """One `ablate run` per results directory: a second one refuses at once naming the holder (or, with
    wait, polls until the holder is done); a lock left by a dead process is taken over."""
    root.mkdir(parents=True, exist_ok=True)
    lock = root / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            holder = _holder(lock)
            if holder is None:
                lock.unlink(missing_ok=True)  # stale: its holder is gone
                continue
            if not wait:
                raise UserError(f"{root} is in use by another `ablate run` ({holder}); wait for it to finish, "
                                f"or pass --wait") from None
            time.sleep(poll_s)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _holder(lock: Path) -> Optional[str]:
    """Who holds the lock ('pid N'), or None when the lock is stale."""
    try:
        text = lock.read_text().strip()
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return None
    if not text:  # created but its pid not yet written: a live holder, unless it has been so for long
        return "a process starting up" if age < 10 else None
    try:
        pid = int(text)
    except ValueError:
        return None
    return f"pid {pid}" if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _record_study(store: Store, plan: Plan) -> None:
    folder = store.study_dir(plan.study.name)
    atomic_write_text(folder / "study.yaml", plan.study.source)
    atomic_write_json(folder / "last_run.json", {"scale": plan.study.scale, "study_file": plan.study.path})


def run(plan: Plan, store: Store, force: bool = False, reporter: Optional[Reporter] = None, wait: bool = False,
        executor=None) -> dict:
    """Run every pending cell of the plan; return counts of done/skipped/failed cells.

    executor: where cells run (ablate.executors: LocalExecutor, the default, one after another in this
    process; JobsExecutor; RayExecutor). This process holds the results lock throughout, whichever it is.
    """
    from ablate.executors import LocalExecutor, drive

    preflight(plan)
    reporter = reporter or Reporter(enabled=False)
    executor = executor or LocalExecutor()
    with results_lock(store.root, wait=wait):
        _record_study(store, plan)
        ctx = CellContext(plan.study.name, plan.study.runtime, force, provenance())
        reused = 0 if force else reuse_finished(plan, store)
        counts = drive(jobs(plan, store, force), store, ctx, reporter, executor)
    counts["reused"] = reused
    counts["skipped"] = (len({c.key for c in plan.pretrain} | {c.key for c in plan.finetune})
                         - counts["ran"] - counts["failed"] - reused)
    return counts


def reuse_finished(plan: Plan, store: Store) -> int:
    """Copy in every cell of the plan that is not done here but finished in another study of the same
    results directory (same key, so the same settings that change results, and the same recorded identity);
    return how many. Pretraining cells are taken only with their checkpoint (its files hard-linked), so
    their pending fine-tunes can start from it. The copy's spec.json names this study's variant and seed
    and where it came from; metrics.json is written last, as for a run."""
    name, n, seen = plan.study.name, 0, set()
    cells = [("pretrain", c) for c in plan.pretrain] + [("finetune", c) for c in plan.finetune]
    for kind, cell in cells:
        if cell.key in seen:
            continue
        seen.add(cell.key)
        here = store.pretrain(name, cell.key) if kind == "pretrain" else store.finetune(name, cell.key)
        if here.is_done():
            continue
        source = finished_elsewhere(store, name, kind, cell)
        if source is not None:
            _copy_run(source, here, _labels(cell))
            n += 1
    return n


def _labels(cell: Union[PretrainCell, FinetuneCell]) -> dict:
    if isinstance(cell, PretrainCell):
        return {"variant": cell.variant, "seed": cell.seed}
    return {"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "task": cell.task, "seed": cell.seed}


def _identity(cell: Union[PretrainCell, FinetuneCell]) -> dict:
    if isinstance(cell, PretrainCell):
        return pretrain_identity(cell.config, cell.seed)
    return finetune_identity(cell.config, cell.pretrain_key, cell.task, cell.seed)


def finished_elsewhere(store: Store, study: str, kind: str, cell) -> Optional[RunDir]:
    """A finished run of this cell (same key and recorded identity) in another study, that `run` can copy."""
    if not store.root.is_dir():
        return None
    identity = _as_json(_identity(cell))
    for other in sorted(p for p in store.root.iterdir() if p.is_dir() and p.name != study and not p.name.startswith("_")):
        run = RunDir(other / kind / cell.key)
        spec = read_json(run.path / "spec.json")
        if not run.is_done() or spec is None or spec.get("identity") != identity:
            continue
        if kind == "pretrain" and not run.has_weights():
            continue  # weights are not committed: a clone's other studies cannot lend a checkpoint
        if kind == "finetune" and not _same_pretraining(other, cell):
            continue
        return run
    return None


def _same_pretraining(other: Path, cell: FinetuneCell) -> bool:
    """A fine-tune is only as good as the checkpoint it started from: the other study's pretraining cell must
    record our pretraining identity (one made by benchmarks/snapshot_checkpoint.py, say, does not)."""
    if cell.pretrain_key is None:
        return True
    spec = read_json(other / "pretrain" / cell.pretrain_key / "spec.json")
    return spec is not None and spec.get("identity") == _as_json(pretrain_identity(cell.config, cell.pretrain_seed))


def _as_json(obj):
    """obj as spec.json stores it (tuples become lists, and so on), for comparing identities."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _copy_run(source: RunDir, target: RunDir, labels: dict) -> None:
    target.reset()
    shutil.rmtree(target.path / "resume", ignore_errors=True)
    spec = read_json(source.path / "spec.json")
    for path in sorted(source.path.rglob("*")):
        rel = path.relative_to(source.path)
        if not path.is_file() or rel.parts[0] in ("resume", "metrics.json", "error.json", "spec.json", "log.txt"):
            continue
        dest = target.path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        if rel.parts[0] == "checkpoint":
            try:
                os.link(path, dest)  # weights are never rewritten in place, so sharing the inode is safe
                continue
            except OSError:
                pass
        atomic_write_bytes(dest, path.read_bytes())
    study = source.path.parents[1].name
    atomic_write_json(target.path / "spec.json", {"identity": spec["identity"],
                                                   "labels": {**spec["labels"], **labels, "copied_from": study}})
    target.log(f"copied from results/{study}/{source.path.parent.name}/{source.path.name}: the same cell, "
               f"finished there (its log follows)")
    if (source.path / "log.txt").exists():
        with open(target.path / "log.txt", "a", encoding="utf-8") as f:
            f.write((source.path / "log.txt").read_text(encoding="utf-8"))
    atomic_write_bytes(target.metrics_path, source.metrics_path.read_bytes())


@dataclass(frozen=True)
class Job:
    """One cell to run. `after`: the pretraining key whose checkpoint it needs, when that cell runs too."""

    kind: str  # "pretrain" | "finetune"
    cell: Union[PretrainCell, FinetuneCell]
    order: int  # position in the sequential order: each pretraining cell, its fine-tunes, then random init
    after: Optional[str] = None

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def label(self) -> str:
        return f"{self.kind} {self.cell.label}"


@dataclass(frozen=True)
class CellContext:
    """What running a cell needs besides the cell: plain data, so it travels to worker processes."""

    study: str
    runtime: RuntimeSpec
    force: bool
    provenance: Optional[dict]  # None: the worker records its own machine's


@dataclass(frozen=True)
class Outcome:
    status: str  # "ok" | "failed" | "user_error" (stops the study)
    message: str = ""


def jobs(plan: Plan, store: Store, force: bool) -> list[Job]:
    """The cells to run, each key once, in the order a sequential run takes them; finished cells are
    left out (all of them run again under force)."""
    name, out, seen = plan.study.name, [], set()

    def add(kind: str, cell, after: Optional[str] = None, again: bool = False) -> None:
        run = store.pretrain(name, cell.key) if kind == "pretrain" else store.finetune(name, cell.key)
        if cell.key in seen or (run.is_done() and not force and not again):
            return
        seen.add(cell.key)
        out.append(Job(kind, cell, len(out), after))

    for cell in plan.pretrain:
        add("pretrain", cell, again=weights_lost(plan, store, cell.key))
        for ft in plan.finetunes_of(cell.key):
            if ft.variant == cell.variant and ft.pretrain_seed == cell.seed:
                add("finetune", ft, after=cell.key)
    for ft in plan.finetunes_of(None):
        add("finetune", ft)
    pending = {j.key for j in out if j.kind == "pretrain"}
    return [j if j.after in pending else replace(j, after=None) for j in out]


def weights_lost(plan: Plan, store: Store, pretrain_key: str) -> bool:
    """A finished pretraining cell whose weights are gone (weights are never committed, so a clone or a
    wiped machine has its metrics but no checkpoint) while a fine-tune of it is still pending: it must
    pretrain again, or that fine-tune has nothing to start from."""
    run = store.pretrain(plan.study.name, pretrain_key)
    if not run.is_done() or run.has_weights():
        return False
    return any(not store.finetune(plan.study.name, ft.key).is_done() for ft in plan.finetunes_of(pretrain_key))


def run_cell(job: Job, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    """Run one cell into `store`, recording its metrics or its error there. A UserError, Ctrl-C or a full
    disk raises (the study stops); any other failure is the cell's, recorded, and the study goes on."""
    if job.kind == "pretrain":
        return _run_pretrain(job.cell, ctx, store, reporter)
    return _run_finetune(job.cell, ctx, store, reporter)


def skip_finetune(cell: FinetuneCell, ctx: CellContext, store: Store) -> None:
    """Record that a fine-tuning run cannot start because its pretraining cell failed."""
    record_failure(cell, ctx, store, "skipped: its pretraining cell failed", "skipped")


def record_failure(cell: Union[PretrainCell, FinetuneCell], ctx: CellContext, store: Store, message: str,
                   kind: str = "error") -> None:
    """Record a cell's failure that happened outside it (skipped, or its worker died) as the cell would."""
    run = _begin(cell, ctx, store)
    run.fail(message, kind)
    if kind != "skipped":
        run.log(message)


def _begin(cell: Union[PretrainCell, FinetuneCell], ctx: CellContext, store: Store) -> RunDir:
    prov = ctx.provenance if ctx.provenance is not None else provenance()
    run = store.pretrain(ctx.study, cell.key) if isinstance(cell, PretrainCell) else store.finetune(ctx.study, cell.key)
    run.reset()
    run.begin(_identity(cell), {**_labels(cell), **prov})
    return run


_SUMMARY_KEYS = ("steps", "tokens_seen", "heldout_ppl", "unigram_ppl", "final_train_loss", "heldout_nsp_accuracy",
                 "metrics", "threads", "device")


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _attempt(run: RunDir, work, label: str = "") -> Outcome:
    """Run `work()` and record its metrics, or its error (the study goes on). UserError, Ctrl-C and a
    full disk stop the study; what finished before stays finished. The run's log.txt gets a line when the
    attempt starts (with the resume step, if any) and when it ends."""
    t0 = time.time()
    state = run.path / "resume" / "state.json"  # a pretraining cell's last checkpoint (ablate/resume.py)
    step = ((read_json(state) if state.exists() else None) or {}).get("counters", {}).get("step")
    where = f", resuming at step {step}" if step else ""
    run.log(f"[{_stamp()}] {label or run.path.name}: started (pid {os.getpid()}){where}")
    try:
        metrics = work()
        metrics["wall_total_s"] = time.time() - t0
        summary = {k: metrics[k] for k in _SUMMARY_KEYS if k in metrics}
        run.log(f"[{_stamp()}] finished in {metrics['wall_total_s']:.0f} s: {json.dumps(summary, default=str)}")
        run.finish(metrics)
    except (UserError, KeyboardInterrupt):
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # every later write would fail too
            raise UserError(f"the results disk is full ({e.filename or run.path}): free some space and run "
                            f"again; finished cells are kept") from None
        return _failed(run, e)
    except CellFailed as e:
        return _failed(run, e, kind="diverged")
    except Exception as e:  # one cell's crash must not stop the study
        return _failed(run, e)
    return Outcome("ok")


def _failed(run: RunDir, e: Exception, kind: str = "error") -> Outcome:
    msg = str(e) if kind == "diverged" else f"{e.__class__.__name__}: {e}".splitlines()[0]
    run.fail(msg, kind)
    run.log(msg if kind == "diverged" else traceback.format_exc())
    return Outcome("failed", msg)


def _run_pretrain(cell: PretrainCell, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    from ablate.data.corpus import effective_batch_size, prepare_corpus
    from ablate.data.tokenizer import load_tokenizer, token_char_lengths
    from ablate.pretrain import pretrain

    if ctx.force:  # --force starts the cell afresh
        shutil.rmtree(store.pretrain(ctx.study, cell.key).path / "resume", ignore_errors=True)
    run = _begin(cell, ctx, store)
    label = f"pretrain {cell.label}"

    def work() -> dict:
        reporter.stage(f"{label}: tokenizer and corpus")
        with store.cache_lock():
            tok = load_tokenizer(store, cell.config)
            folder = prepare_corpus(store, cell.config)
            batch = effective_batch_size(store, cell.config)
        reporter.stage(label, total=cell.config.pretrain.total_steps)
        return pretrain(cell, run, folder, tok.get_vocab_size(), ctx.runtime, reporter.step, batch,
                        token_char_lengths(tok))

    return _attempt(run, work, label)


def _run_finetune(cell: FinetuneCell, ctx: CellContext, store: Store, reporter: Reporter) -> Outcome:
    from ablate.data.tokenizer import load_tokenizer
    from ablate.finetune import finetune

    run = _begin(cell, ctx, store)
    label = f"finetune {cell.label}"
    checkpoint = None if cell.pretrain_key is None else store.pretrain(ctx.study, cell.pretrain_key).checkpoint

    def work() -> dict:
        reporter.stage(label)
        if checkpoint is not None and not (checkpoint / "model.safetensors").exists():
            raise RuntimeError(f"the weights of pretraining cell {cell.pretrain_key} are missing "
                               f"({checkpoint}); `ablate run` pretrains it again")
        with store.cache_lock():
            tok = load_tokenizer(store, cell.config)
        return finetune(cell, checkpoint, tok, ctx.runtime, reporter.step)

    return _attempt(run, work, label)
