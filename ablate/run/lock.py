"""One `ablate run` per results directory: an exclusive lock file naming its holder's pid.

A second run refuses at once naming the holder (or, with --wait, polls until it is done); a lock left by a
dead process is taken over.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from ablate.errors import UserError


@contextmanager
def results_lock(root: Path, wait: bool = False, poll_s: float = 2.0) -> Iterator[None]:
    """One `ablate run` per results directory: a second one refuses at once naming the holder (or, with
    wait, polls until the holder is done); a lock left by a dead process is taken over."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the results directory {root} ({e.strerror or e.__class__.__name__})") from None
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
        except OSError as e:  # read-only, no permission: `run` has cells to write there
            raise UserError(f"cannot write to the results directory {root} ({e.strerror or e.__class__.__name__}); "
                            f"cells are pending, so `ablate run` needs it writable") from None
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
