"""Progress on long work: a rich bar for the study (cells queued, running, done, failed) and one for the
current stage (steps), with ETA; when cells run at once (--jobs, Ray), one line per running cell instead."""

from __future__ import annotations

import sys
from typing import Optional

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class Reporter:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.per_cell = False
        self._progress = None
        self._study = None
        self._stage = None
        self._cells: dict[str, int] = {}

    def start(self, total: int, per_cell: bool = False) -> None:
        """per_cell: a line per running cell (cells run elsewhere at once; their steps are not seen here)."""
        self.per_cell = per_cell
        if not self.enabled:
            return
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=Console(stderr=True), transient=False, refresh_per_second=2,
        )
        self._progress.start()
        self._study = self._progress.add_task("study cells", total=total, info="")

    def stage(self, description: str, total: Optional[int] = None) -> None:
        if not self._progress:
            return
        if self._stage is not None:
            self._progress.remove_task(self._stage)
        self._stage = self._progress.add_task(description, total=total, info="")

    def step(self, step: int, total: int, loss: Optional[float] = None) -> None:
        if self._progress and self._stage is not None:
            info = f"loss {loss:.3f}" if loss is not None else ""
            self._progress.update(self._stage, completed=step, total=total, info=info)

    def status(self, queued: int, running: int, done: int, failed: int) -> None:
        if self._progress:
            self._progress.update(self._study, info=f"queued {queued}, running {running}, done {done}, "
                                                     f"failed {failed}")

    def cell_started(self, label: str) -> None:
        if self._progress and self.per_cell:
            self._cells[label] = self._progress.add_task(f"  {label}", total=None, info="running")

    def _cell_ended(self, label: str) -> None:
        task = self._cells.pop(label, None)
        if task is not None:
            self._progress.remove_task(task)

    def cell_done(self, label: str) -> None:
        if self._progress:
            self._cell_ended(label)
            self._progress.advance(self._study)

    def cell_failed(self, label: str, error: str) -> None:
        if self._progress:
            self._cell_ended(label)
            self._progress.advance(self._study)
            self._progress.console.print(f"[red]failed[/red] {label}: {error}")
        else:
            print(f"failed {label}: {error}", file=sys.stderr)

    def stop(self) -> None:
        if self._progress:
            if self._stage is not None:
                self._progress.remove_task(self._stage)
            for label in list(self._cells):
                self._cell_ended(label)
            self._progress.stop()
