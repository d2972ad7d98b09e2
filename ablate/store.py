"""The run store: results/<study>/{pretrain,finetune}/<key>/, content-addressed, written atomically.

A run directory holds `spec.json` (its resolved identity), `log.txt`, and, once
finished, `metrics.json` (the done marker, written last by temp file + rename) carrying
the sha256 of its own canonical JSON, checked whenever the cell is read: a truncated,
edited or malformed metrics.json is reported (a warning line naming it) and the cell is
not done, so `ablate run` runs it again. Files written before the digest are read when
they parse and have the shape of a cell's metrics.
A failed run holds `error.json` instead; it is retried on the next `ablate run`.
Checkpoints live in `checkpoint/` (git-ignored). Prepared data and tokenizers are
shared by every study under results/_cache/. A top-level name starting with `_` or `.` is never a study
(results/_edition-1/ holds the first edition's results, itself a results directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from ablate.errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def swap_in(tmp: Path, folder: Path) -> None:
    """Replace folder by the complete folder tmp: every file synced, then renamed into place (a crash leaves
    the old folder, or none and a complete tmp, never a mix)."""
    for path in tmp.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Optional[Any]:
    """A JSON file's content; None when it is missing or unreadable (cut short, not UTF-8, not a file)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: JSONDecodeError and UnicodeDecodeError
        return None


DIGEST_KEY = "_sha256"  # in metrics.json: the sha256 of the canonical JSON of every other key
_warned: set[str] = set()


def metrics_digest(metrics: dict) -> str:
    return hashlib.sha256(json.dumps(metrics, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                                     default=str).encode("utf-8")).hexdigest()


def metrics_problem(obj: Any, kind: str) -> Optional[str]:
    """Why `obj`, read from a `kind` ("pretrain" or "finetune") cell's metrics.json, cannot be trusted; None if it can.
    A file with a digest must match it; one without (written before digests) must have a cell's shape."""
    if not isinstance(obj, dict) or not obj:
        return f"not a cell's metrics (a JSON {type(obj).__name__}{'' if obj else ', empty'})"
    if DIGEST_KEY in obj and obj[DIGEST_KEY] != metrics_digest({k: v for k, v in obj.items() if k != DIGEST_KEY}):
        return "its digest does not match its content (edited or damaged)"
    if kind == "finetune":
        scores = obj.get("metrics")
        if not isinstance(scores, dict) or not scores or not all(
                isinstance(k, str) and (v is None or isinstance(v, (int, float)) and not isinstance(v, bool))
                for k, v in scores.items()):
            return "no 'metrics' mapping of scores"
    return None


def warn_once(path: Path, why: str) -> None:
    """One warning line on stderr per damaged file and process: the cell is treated as not done."""
    if str(path) not in _warned:
        _warned.add(str(path))
        print(f"warning: {path}: {why}; the cell counts as not done (`ablate run` runs it again)", file=sys.stderr)


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    def is_done(self) -> bool:
        """Finished: metrics.json is there and can be trusted (see metrics)."""
        return self.metrics() is not None

    def has_weights(self) -> bool:
        """A pretraining run's weights are here (they are never committed: a clone has none)."""
        return (self.checkpoint / "model.safetensors").exists()

    def metrics(self) -> Optional[dict]:
        """The cell's metrics, its digest checked; None when it has none, or none to trust (a warning says which)."""
        try:
            obj = json.loads(self.metrics_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as e:  # cut short, not UTF-8, not a file
            warn_once(self.metrics_path, f"unreadable ({e.__class__.__name__})")
            return None
        problem = metrics_problem(obj, self.path.parent.name)
        if problem is not None:
            warn_once(self.metrics_path, problem)
            return None
        return {k: v for k, v in obj.items() if k != DIGEST_KEY}

    def error(self) -> Optional[dict]:
        err = read_json(self.path / "error.json")
        if err is None and (self.path / "error.json").exists():
            return {"error": "error.json is unreadable", "kind": "error"}
        return err if err is None or isinstance(err, dict) else {"error": str(err)[:200], "kind": "error"}

    def begin(self, identity: dict, labels: dict) -> None:
        """Create the directory, record the spec, clear a previous failure."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / "spec.json", {"identity": identity, "labels": labels})
        (self.path / "error.json").unlink(missing_ok=True)

    def finish(self, metrics: dict) -> None:
        """Mark the cell done: its metrics, and the digest of them as written (JSON types), written last."""
        plain = json.loads(json.dumps(metrics, default=str))
        atomic_write_json(self.metrics_path, {**plain, DIGEST_KEY: metrics_digest(plain)})

    def fail(self, message: str, kind: str) -> None:
        atomic_write_json(self.path / "error.json", {"error": message, "kind": kind, "time": time.time()})

    def reset(self) -> None:
        """For --force: forget the result (the spec stays)."""
        self.metrics_path.unlink(missing_ok=True)
        (self.path / "error.json").unlink(missing_ok=True)

    def log(self, line: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "log.txt", "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")


class Store:
    def __init__(self, root: Path, cache_root: Optional[Path] = None):
        """cache_root: where prepared data and tokenizers live (default root/_cache); a Ray worker keeps
        one per node while its run directories are private (ablate/run/ray.py). A root that exists but is not a
        directory is a user error here, before any command reads or writes under it."""
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"results directory {self.root} is not a directory (--results, or $ABLATE_RESULTS_DIR)")
        self.cache_root = Path(cache_root) if cache_root is not None else self.root / "_cache"

    def study_dir(self, study: str) -> Path:
        return self.root / study

    def pretrain(self, study: str, key: str) -> RunDir:
        return RunDir(self.root / study / "pretrain" / key)

    def finetune(self, study: str, key: str) -> RunDir:
        return RunDir(self.root / study / "finetune" / key)

    def cache(self, kind: str, key: str) -> Path:
        return self.cache_root / kind / key

    @contextmanager
    def cache_lock(self) -> Iterator[None]:
        """Held while a cell prepares (or finds) cache entries, so cells running at once (--jobs, Ray
        tasks on one node) never build the same tokenizer or corpus together."""
        import fcntl  # POSIX only: imported where it is used, so the store still imports on other systems

        self.cache_root.mkdir(parents=True, exist_ok=True)
        with open(self.cache_root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def studies(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "study.yaml").exists()
        )
