"""Store + plan -> status: each cell's key, whether it is done, failed, pending, finished in another study or
lost its weights, and rough compute (`ablate plan`); per-study counts (`ablate ls`); a study's plan as last run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ablate.errors import UserError
from ablate.run.budget import ASSUMED_FLOPS, pretrain_flops
from ablate.run.jobs import weights_lost
from ablate.run.reuse import source_for
from ablate.store import Store, read_json
from ablate.study.cells import Plan, expand
from ablate.study.load import load_study
from ablate.study.spec import StudySpec


def _status(run) -> str:
    metrics = run.metrics()  # read once: None when not done (or not to be trusted)
    if metrics is not None:
        if metrics.get("snapshot"):  # benchmarks/snapshot_checkpoint.py: weights of an unfinished run, a probe
            return f"snapshot (step {metrics.get('steps', '?')})"
        return "done"
    if run.error() is not None:
        return "failed"
    return "pending"


def plan_rows(plan: Plan, store: Store) -> tuple[list[dict], str]:
    """One row per cell; status: done, failed, pending, `in <study>` (finished there: `run` copies it),
    `weights lost` (finished, but a pending fine-tune needs its weights, which are gone: `run` pretrains it
    again), or `snapshot (step N)` (a probe's weights of an unfinished run: benchmarks/snapshot_checkpoint.py)."""
    name = plan.study.name
    rows, pending_flops = [], 0.0

    def status_of(kind: str, cell) -> str:
        status = _status(store.pretrain(name, cell.key) if kind == "pretrain" else store.finetune(name, cell.key))
        if status in ("pending", "failed"):
            source = source_for(plan, store, kind, cell)
            if source is not None:
                return f"in {source.path.parents[1].name}"
        return status

    for c in plan.pretrain:
        flops = pretrain_flops(c.config)
        status = status_of("pretrain", c)
        if status == "done" and weights_lost(plan, store, c.key):
            status = "weights lost"
        pending_flops += flops if status in ("pending", "failed", "weights lost") else 0
        rows.append({"stage": "pretrain", "cell": c.label, "key": c.key, "status": status,
                     "compute": f"{flops:.2e} FLOPs"})
    for c in plan.finetune:
        rows.append({"stage": "finetune", "cell": c.label, "key": c.key, "status": status_of("finetune", c),
                     "compute": ""})
    done = sum(r["status"] == "done" or r["status"].startswith("snapshot") for r in rows)
    copied = sum(r["status"].startswith("in ") for r in rows)
    summary = (f"{len(rows)} cells: {done} done, {copied} to copy from other studies, "
               f"{len(rows) - done - copied} to run; pending pretraining "
               f"{pending_flops:.2e} FLOPs, roughly {pending_flops / ASSUMED_FLOPS / 60:.0f} min on a 2-core CPU "
               f"(fine-tuning extra)")
    return rows, summary


def study_plan(store: Store, name: str) -> Plan:
    """The plan of a study as last run: its recorded study file at its recorded scale."""
    folder = store.study_dir(name)
    last = read_json(folder / "last_run.json")
    last = last if isinstance(last, dict) else {}
    try:
        spec = load_study(folder / "study.yaml", last.get("scale"))
    except UserError as e:
        raise UserError(f"results/{name} holds a study file that no longer loads: {e}") from None
    # shown as the file the study was run from, not this copy's absolute path (reports must not depend on
    # where the results directory sits)
    return expand(spec.model_copy(update={"path": str(last.get("study_file") or f"{name}/study.yaml")}))


def study_status(store: Store, name: str) -> dict:
    """`ablate ls`: a study's cells by status: done, failed, pending, weights lost (to pretrain again) and
    to copy (finished in another study: `in <study>` in `ablate plan`)."""
    plan = study_plan(store, name)
    rows, _ = plan_rows(plan, store)
    out = {"scale": plan.study.scale, "done": 0, "failed": 0, "pending": 0, "weights lost": 0, "to copy": 0,
           "snapshot": 0}
    for r in rows:
        status = r["status"]
        if status.startswith("snapshot"):
            out["snapshot"] += 1
        elif status.startswith("in "):  # finished in another study: the next run copies it
            out["to copy"] += 1
        else:
            out[status if status in out else "pending"] += 1
    return out


def study_names(store: Store, wanted: list[str]) -> list[str]:
    """The studies `ablate ls` shows: every one in the store, or those named (by study file or by name)."""
    have = store.studies()
    if not wanted:
        return have
    out = []
    for arg in wanted:
        name = load_study(Path(arg)).name if Path(arg).is_file() else arg
        if name not in have:
            raise UserError(f"no study {name!r} in {store.root} (there: {', '.join(have) or 'none'})")
        if name not in out:
            out.append(name)
    return out


def study_rows(path: Path, scale: Optional[str], store: Store) -> tuple[StudySpec, list[dict], str]:
    """`ablate plan`: the study file's cells at `scale` with their status in the store, and a summary line."""
    spec = load_study(path, scale)
    rows, summary = plan_rows(expand(spec), store)
    return spec, rows, summary
