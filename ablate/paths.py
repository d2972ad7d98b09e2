"""Where data, results and reports live.

Data: with `ABLATE_DATA_DIR` set (e.g. ../shared/data), dataset names map to local
Parquet files under it; without it, GLUE and SQuAD names resolve to their hub ids
for users who are online. The pretraining corpus is always local.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ablate.errors import UserError

DATA_ENV = "ABLATE_DATA_DIR"
RESULTS_ENV = "ABLATE_RESULTS_DIR"


def data_root() -> Optional[Path]:
    """The local data root, or None when datasets should come from the hub."""
    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise UserError(f"{DATA_ENV}={value}: no such directory")
    return root


def results_root(override: Optional[str | Path] = None) -> Path:
    return Path(override or os.environ.get(RESULTS_ENV) or "results")


def local_file(relative: str) -> Path:
    """A file under the data root; a clear error when it is not there."""
    root = data_root()
    if root is None:
        raise UserError(f"{relative}: no local copy configured; set {DATA_ENV} to the data directory")
    path = root / relative
    if not path.exists():
        raise UserError(f"missing data file {path} (check {DATA_ENV}; see the data README)")
    return path


def corpus_files(corpus: str, split: str) -> list[Path]:
    """Parquet files of a corpus split, in their fixed order."""
    root = data_root()
    if root is None:
        raise UserError(f"corpus {corpus!r} is local only: set {DATA_ENV} to the data directory")
    if not corpus or Path(corpus).is_absolute() or ".." in Path(corpus).parts:  # the schema refuses these too
        raise UserError(f"corpus {corpus!r} must name a folder under the data root {root}")
    folder = root / corpus
    if not folder.is_dir():
        raise UserError(f"missing corpus directory {folder} (check {DATA_ENV})")
    files = sorted(folder.glob(f"{split}-*.parquet")) or sorted(folder.glob(f"{split}.parquet"))
    if not files:
        raise UserError(f"corpus {corpus!r} has no {split!r} split under {folder}")
    return files


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
