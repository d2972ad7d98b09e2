"""Store -> reports: re-load each study as it was last run, collect its results, write HTML.

The report is a view: it reads the store and computes nothing the aggregate module does not.
"""

from __future__ import annotations

from pathlib import Path

from ablate.errors import UserError
from ablate.expand import Plan, expand
from ablate.spec import load_study
from ablate.store import Store, read_json


def study_plan(store: Store, name: str) -> Plan:
    """The plan of a study as last run: its recorded study file at its recorded scale."""
    folder = store.study_dir(name)
    last = read_json(folder / "last_run.json") or {}
    try:
        spec = load_study(folder / "study.yaml", last.get("scale"))
    except UserError as e:
        raise UserError(f"results/{name} holds a study file that no longer loads: {e}") from None
    return expand(spec)


def study_status(store: Store, name: str) -> dict:
    from ablate.planning import plan_rows

    plan = study_plan(store, name)
    rows, _ = plan_rows(plan, store)
    out = {"scale": plan.study.scale, "done": 0, "failed": 0, "pending": 0}
    for r in rows:
        out[r["status"]] += 1
    return out


def _provenance(store: Store, plan: Plan, results) -> dict:
    """What ran, where: from the runs' own records, plus total wall time."""
    prov: dict = {"scale": plan.study.scale, "study file": plan.study.path}
    for cell in plan.pretrain:
        spec = read_json(store.pretrain(plan.study.name, cell.key).path / "spec.json")
        if spec:
            labels = spec.get("labels", {})
            prov.update({k: labels.get(k) for k in ("git_commit", "python", "torch", "transformers", "processor",
                                                    "cpu_count", "cuda")})
            break
    if len(results.pretrain):
        prov["pretraining wall time (s)"] = round(float(results.pretrain["wall_s"].sum()), 1)
        prov["pretraining FLOPs (est.)"] = f"{float(results.pretrain['flops'].sum()):.3g}"
    return prov


def build_reports(store: Store, out: Path) -> list[Path]:
    from ablate.report import write_index, write_study_report
    from ablate.results import collect

    names = store.studies()
    if not names:
        raise UserError(f"no studies in {store.root}: run `ablate run STUDY` first")
    written, entries = [], []
    for name in names:
        plan = study_plan(store, name)
        results = collect(store, plan)
        written.append(write_study_report(plan.study, results, out, _provenance(store, plan, results)))
        entries.append({"name": name, "description": plan.study.description, "scale": plan.study.scale,
                        **results.counts})
    written.append(write_index(entries, out))
    return written
