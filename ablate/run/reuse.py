"""Reuse across studies: a cell pending here but finished in another study of the same results directory is
copied in (same key, same recorded identity) instead of run again. A pretraining cell comes with its weights, or
without them (weights are never committed) when every fine-tune of it is done here or can be copied too: its
results are all the study needs, and it pretrains again only when a pending fine-tune needs the weights.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional

from ablate.run.jobs import cell_identity, cell_labels
from ablate.store import RunDir, Store, atomic_write_bytes, atomic_write_json, read_json
from ablate.study.cells import FinetuneCell, Plan
from ablate.study.identity import pretrain_identity


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
        source = source_for(plan, store, kind, cell)
        if source is not None:
            copy_run(source, here, cell_labels(cell))
            n += 1
    return n


def finished_elsewhere_any(plan: Plan, store: Store):
    """Each cell of the plan not done here that reuse_finished would copy in (lazily: `any` stops at the first)."""
    cells = [("pretrain", c) for c in plan.pretrain] + [("finetune", c) for c in plan.finetune]
    for kind, cell in cells:
        here = store.pretrain(plan.study.name, cell.key) if kind == "pretrain" else store.finetune(plan.study.name, cell.key)
        if not here.is_done() and source_for(plan, store, kind, cell) is not None:
            yield cell


def source_for(plan: Plan, store: Store, kind: str, cell) -> Optional[RunDir]:
    """Where `run` copies this cell of the plan from: a finished run in another study, a pretraining cell's with
    its weights, or without them when none of the plan's fine-tunes of it will need them (each is done here or
    finished elsewhere)."""
    name = plan.study.name
    source = finished_elsewhere(store, name, kind, cell)
    if source is None and kind == "pretrain" and all(
            store.finetune(name, ft.key).is_done() or finished_elsewhere(store, name, "finetune", ft) is not None
            for ft in plan.finetunes_of(cell.key)):
        source = finished_elsewhere(store, name, kind, cell, need_weights=False)
    return source


def finished_elsewhere(store: Store, study: str, kind: str, cell, need_weights: bool = True) -> Optional[RunDir]:
    """A finished run of this cell (same key and recorded identity) in another study, that `run` can copy (a
    pretraining cell's with its weights, unless need_weights is False; then one with weights if there is one)."""
    if not store.root.is_dir():
        return None
    identity = _as_json(cell_identity(cell))
    weightless = None
    for other in sorted(p for p in store.root.iterdir() if p.is_dir() and p.name != study and not p.name.startswith("_")):
        run = RunDir(other / kind / cell.key)
        spec = read_json(run.path / "spec.json")
        if not isinstance(spec, dict) or spec.get("identity") != identity or not run.is_done():
            continue
        if kind == "pretrain" and not run.has_weights():
            weightless = weightless or run  # weights are not committed: a clone's other studies lend results only
            continue
        if kind == "finetune" and not _same_pretraining(other, cell):
            continue
        return run
    return None if need_weights else weightless


def _same_pretraining(other: Path, cell: FinetuneCell) -> bool:
    """A fine-tune is only as good as the checkpoint it started from: the other study's pretraining cell must
    record our pretraining identity (one made by benchmarks/snapshot_checkpoint.py, say, does not)."""
    if cell.pretrain_key is None:
        return True
    spec = read_json(other / "pretrain" / cell.pretrain_key / "spec.json")
    return isinstance(spec, dict) and spec.get("identity") == _as_json(pretrain_identity(cell.config, cell.pretrain_seed))


def _as_json(obj):
    """obj as spec.json stores it (tuples become lists, and so on), for comparing identities."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def copy_run(source: RunDir, target: RunDir, labels: dict) -> None:
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
