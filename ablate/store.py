"""The run store: results/<study>/{pretrain,finetune}/<key>/, content-addressed, written atomically.

A run directory holds `spec.json` (its resolved identity), `log.txt`, and, once
finished, `metrics.json` (the done marker, written last by temp file + rename).
A failed run holds `error.json` instead; it is retried on the next `ablate run`.
Checkpoints live in `checkpoint/` (git-ignored). Prepared data and tokenizers are
shared by every study under results/_cache/.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional


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


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes for text (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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
        return self.metrics_path.exists()

    def has_weights(self) -> bool:
        """A pretraining run's weights are here (they are never committed: a clone has none)."""
        return (self.checkpoint / "model.safetensors").exists()

    def metrics(self) -> Optional[dict]:
        return read_json(self.metrics_path)

    def error(self) -> Optional[dict]:
        return read_json(self.path / "error.json")

    def begin(self, identity: dict, labels: dict) -> None:
        """Create the directory, record the spec, clear a previous failure."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / "spec.json", {"identity": identity, "labels": labels})
        (self.path / "error.json").unlink(missing_ok=True)

    def finish(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_path, metrics)

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
        one per node while its run directories are private (ablate/run/ray.py)."""
        self.root = Path(root)
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
