"""Plan + store -> the jobs to run: each pending cell once, in the order a sequential run takes them.

Also the plain records that travel between the driver and where cells run (Job, CellContext, Outcome), and
what a cell is (cell_identity, recorded in spec.json) and is called (cell_labels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

from ablate.store import Store
from ablate.study.cells import FinetuneCell, Plan, PretrainCell
from ablate.study.identity import finetune_identity, pretrain_identity
from ablate.study.spec import RuntimeSpec


@dataclass(frozen=True)
class CellContext:
    """What running a cell needs besides the cell: plain data, so it travels to worker processes."""

    study: str
    runtime: RuntimeSpec
    force: bool
    provenance: Optional[dict]  # None: the worker records its own machine's


@dataclass(frozen=True)
class Job:
    """One cell to run. `after`: the pretraining key whose checkpoint it needs, when that cell runs too. `ctx`:
    its study's context when several studies share one queue (None: the executor's); `tag` prefixes its label."""

    kind: str  # "pretrain" | "finetune"
    cell: Union[PretrainCell, FinetuneCell]
    order: int  # position in the sequential order: each pretraining cell, its fine-tunes, then random init
    after: Optional[str] = None
    ctx: Optional[CellContext] = None
    tag: str = ""
    study_index: int = 0  # its study's place in a queue of several (the order the files were given)

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def label(self) -> str:
        return f"{self.kind} {self.tag}{self.cell.label}"

    def context(self, default: CellContext) -> CellContext:
        """The context this job runs in: its own (a queue of several studies), else the executor's."""
        return self.ctx if self.ctx is not None else default


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


def cell_labels(cell: Union[PretrainCell, FinetuneCell]) -> dict:
    if isinstance(cell, PretrainCell):
        return {"variant": cell.variant, "seed": cell.seed}
    return {"variant": cell.variant, "pretrain_seed": cell.pretrain_seed, "task": cell.task, "seed": cell.seed}


def cell_identity(cell: Union[PretrainCell, FinetuneCell]) -> dict:
    if isinstance(cell, PretrainCell):
        return pretrain_identity(cell.config, cell.seed)
    return finetune_identity(cell.config, cell.pretrain_key, cell.task, cell.seed)
