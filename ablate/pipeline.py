"""The only module that knows the stage order: tokenizer -> corpus -> pretrain -> finetune, per cell.

run(plan, store) walks the plan; every stage is cached on disk, so a re-run skips what is
done and a failed cell records its error while the study goes on.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
import subprocess
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ablate.errors import CellFailed, UserError
from ablate.expand import FinetuneCell, Plan, PretrainCell, finetune_identity, pretrain_identity
from ablate.paths import corpus_files
from ablate.planning import check_fits
from ablate.progress import Reporter
from ablate.store import RunDir, Store, atomic_write_json, atomic_write_text
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


def run(plan: Plan, store: Store, force: bool = False, reporter: Optional[Reporter] = None, wait: bool = False) -> dict:
    """Run every pending cell of the plan; return counts of done/skipped/failed cells."""
    preflight(plan)
    reporter = reporter or Reporter(enabled=False)
    counts = {"ran": 0, "skipped": 0, "failed": 0}
    with results_lock(store.root, wait=wait):
        _record_study(store, plan)
        prov = provenance()
        forced: set[str] = set()  # keys rerun under --force (shared keys run once)
        todo = _pending(plan, store, force)
        reporter.start(total=len(todo))
        for cell in plan.pretrain:
            ok = _run_pretrain(cell, plan, store, force, prov, reporter, counts, forced)
            for ft in plan.finetunes_of(cell.key):
                if ft.variant == cell.variant and ft.pretrain_seed == cell.seed:
                    _run_finetune(ft, plan, store, force, prov, reporter, counts, forced, pretrain_ok=ok)
        for ft in plan.finetunes_of(None):
            _run_finetune(ft, plan, store, force, prov, reporter, counts, forced, pretrain_ok=True)
        reporter.stop()
    counts["skipped"] = len({c.key for c in plan.pretrain} | {c.key for c in plan.finetune}) - counts["ran"] - counts["failed"]
    return counts


def _pending(plan: Plan, store: Store, force: bool) -> list:
    name = plan.study.name
    keys = {c.key for c in plan.pretrain if force or not store.pretrain(name, c.key).is_done()}
    keys |= {c.key for c in plan.finetune if force or not store.finetune(name, c.key).is_done()}
    return sorted(keys)


def _attempt(run: RunDir, label: str, reporter: Reporter, counts: dict, work) -> bool:
    """Run `work()` and record its metrics, or its error (the study goes on). UserError, Ctrl-C and a
    full disk stop the study; what finished before stays finished."""
    t0 = time.time()
    try:
        metrics = work()
        metrics["wall_total_s"] = time.time() - t0
        run.finish(metrics)
    except (UserError, KeyboardInterrupt):
        raise
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # every later write would fail too
            raise UserError(f"the results disk is full ({e.filename or run.path}): free some space and run "
                            f"again; finished cells are kept") from None
        return _failed(run, label, reporter, counts, e)
    except CellFailed as e:
        return _failed(run, label, reporter, counts, e, kind="diverged")
    except Exception as e:  # one cell's crash must not stop the study
        return _failed(run, label, reporter, counts, e)
    counts["ran"] += 1
    reporter.cell_done(label)
    return True


def _failed(run: RunDir, label: str, reporter: Reporter, counts: dict, e: Exception, kind: str = "error") -> bool:
    msg = str(e) if kind == "diverged" else f"{e.__class__.__name__}: {e}".splitlines()[0]
    run.fail(msg, kind)
    run.log(msg if kind == "diverged" else traceback.format_exc())
    reporter.cell_failed(label, msg)
    counts["failed"] += 1
    return False


def _run_pretrain(cell: PretrainCell, plan: Plan, store: Store, force: bool, prov: dict, reporter: Reporter,
                  counts: dict, forced: set) -> bool:
    from ablate.data.corpus import effective_batch_size, prepare_corpus
    from ablate.data.tokenizer import load_tokenizer, token_char_lengths
    from ablate.pretrain import pretrain

    run = store.pretrain(plan.study.name, cell.key)
    if run.is_done() and (not force or cell.key in forced):
        return True
    if force and cell.key not in forced:
        shutil.rmtree(run.path / "resume", ignore_errors=True)  # --force starts the cell afresh
    forced.add(cell.key)
    run.reset()
    run.begin(pretrain_identity(cell.config, cell.seed), {"variant": cell.variant, "seed": cell.seed, **prov})
    label = f"pretrain {cell.label}"

    def work() -> dict:
        reporter.stage(f"{label}: tokenizer and corpus")
        tok = load_tokenizer(store, cell.config)
        folder = prepare_corpus(store, cell.config)
        batch = effective_batch_size(store, cell.config)
        reporter.stage(label, total=cell.config.pretrain.total_steps)
        return pretrain(cell, run, folder, tok.get_vocab_size(), plan.study.runtime, reporter.step, batch,
                        token_char_lengths(tok))

    return _attempt(run, label, reporter, counts, work)


def _run_finetune(cell: FinetuneCell, plan: Plan, store: Store, force: bool, prov: dict, reporter: Reporter,
                  counts: dict, forced: set, pretrain_ok: bool) -> None:
    from ablate.data.tokenizer import load_tokenizer
    from ablate.finetune import finetune

    run = store.finetune(plan.study.name, cell.key)
    if run.is_done() and (not force or cell.key in forced):
        return
    forced.add(cell.key)
    run.reset()
    run.begin(finetune_identity(cell.config, cell.pretrain_key, cell.task, cell.seed),
              {"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "task": cell.task, "seed": cell.seed,
               **prov})
    label = f"finetune {cell.label}"
    if not pretrain_ok:
        run.fail("skipped: its pretraining cell failed", "skipped")
        reporter.cell_failed(label, "pretraining failed")
        counts["failed"] += 1
        return
    checkpoint = None if cell.pretrain_key is None else store.pretrain(plan.study.name, cell.pretrain_key).checkpoint

    def work() -> dict:
        reporter.stage(label)
        tok = load_tokenizer(store, cell.config)
        return finetune(cell, checkpoint, tok, plan.study.runtime, reporter.step)

    _attempt(run, label, reporter, counts, work)
