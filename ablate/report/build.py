"""Store -> reports: re-load each study as it was last run, collect its results, write every study's HTML, the
index, and the tables across studies (verdicts, compute).

The report is a view: it reads the store and computes nothing ablate.analysis does not.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.analysis.results import collect
from ablate.analysis.verdicts import adjusted, benjamini_hochberg, families, verdict_counts
from ablate.errors import UserError
from ablate.report.html import export_table, write_index, write_study_report
from ablate.report.tables import study_comparisons, verdict_frame
from ablate.run.status import study_plan
from ablate.store import RunDir, Store, read_json
from ablate.study.cells import Plan


REPORT_LIBRARIES = ("numpy", "pandas", "scipy", "matplotlib", "seaborn", "jinja2")


def _provenance(store: Store, plan: Plan, results) -> dict:
    """What ran, where: from the runs' own records (git commit, library versions, hardware), plus total wall time
    and the libraries that built this report."""
    prov: dict = {"scale": plan.study.scale, "study file": plan.study.path}
    for cell in plan.pretrain:
        spec = read_json(store.pretrain(plan.study.name, cell.key).path / "spec.json")
        if spec:
            labels = spec.get("labels", {})
            prov.update({k: labels.get(k) for k in ("git_commit", "python", "torch", "transformers", "machine",
                                                    "processor", "cpu_count", "cuda")})
            break
    report_libs = {}
    for lib in REPORT_LIBRARIES:
        try:
            report_libs[lib] = version(lib)
        except PackageNotFoundError:
            report_libs[lib] = None
    prov["report libraries"] = report_libs
    if len(results.pretrain):
        prov["pretraining wall time (s)"] = round(float(results.pretrain["wall_s"].sum()), 1)
        prov["pretraining FLOPs (est.)"] = f"{float(results.pretrain['flops'].sum()):.3g}"
    return prov


def cell_wall_s(metrics: dict):
    """A finished cell's wall time: a pretraining's `wall_s` adds up every attempt's training (resumes
    included), `wall_total_s` is the last attempt's, evaluation included; the larger is the better figure."""
    times = [float(metrics[k]) for k in ("wall_s", "wall_total_s") if metrics.get(k) is not None]
    return max(times) if times else None


def _cell_times(store: Store, plan: Plan):
    """Wall time of every finished cell, from its metrics.json: DataFrame (stage, cell, wall_s)."""
    rows = []
    stages = (("pretrain", plan.pretrain, store.pretrain), ("finetune", plan.finetune, store.finetune))
    for stage, cells, run_of in stages:
        for cell in cells:
            m = run_of(plan.study.name, cell.key).metrics()
            if m is not None:
                rows.append({"stage": stage, "cell": cell.label, "wall_s": cell_wall_s(m)})
    return pd.DataFrame(rows, columns=["stage", "cell", "wall_s"])


def build_reports(store: Store, out: Path) -> list[Path]:
    """`ablate report`: every study's report under `out`; a report directory that cannot be written is one line."""
    names = store.studies()
    if not names:
        raise UserError(f"no studies in {store.root}: run `ablate run STUDY` first")
    try:
        return _build(store, names, out)
    except OSError as e:
        where = e.filename or out
        raise UserError(f"cannot write the report to {where} ({e.strerror or e.__class__.__name__}): pass "
                        f"--out a writable directory") from None


def _build(store: Store, names: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)  # fails here, before any work, when out cannot be made
    written, entries, verdicts = [], [], []
    for name in names:
        plan = study_plan(store, name)
        results = collect(store, plan)
        written.append(write_study_report(plan.study, results, out, _provenance(store, plan, results),
                                          _cell_times(store, plan)))
        cmp = study_comparisons(plan.study, results)
        entries.append({"name": name, "description": plan.study.description, "scale": plan.study.scale,
                        "verdicts": verdict_counts(cmp), **results.counts})
        verdicts.append((name, cmp))
    written.append(write_index(entries, out))
    written.extend(write_all_verdicts(verdicts, out))
    written.extend(write_compute(store, names, out))
    return written


def compute_frame(store: Store, names: list[str]):
    """The compute each study's finished cells used, from their metrics.json and spec.json: a row per study and
    stage, cells run there vs copied in from another study (counted where they ran, so the total counts each
    computation once), the cells' summed wall time and estimated FLOPs, and the machines and commits they ran on."""
    rows, all_wall, all_flops = [], 0.0, 0.0
    for name in names:
        for stage in ("pretrain", "finetune"):
            ran = copied = 0
            wall = flops = 0.0
            machines, commits = set(), set()
            for path in sorted((store.study_dir(name) / stage).glob("*/metrics.json")):
                spec = read_json(path.parent / "spec.json")
                labels = (spec.get("labels") if isinstance(spec, dict) else None) or {}
                if labels.get("copied_from"):
                    copied += 1
                    continue
                m = RunDir(path.parent).metrics()
                if m is None:  # damaged: not done (a warning names it)
                    continue
                ran += 1
                wall += cell_wall_s(m) or 0.0
                flops += float(m.get("flops") or 0.0)
                gpu = f", {labels['cuda']}" if labels.get("cuda") else ""
                machines.add(f"{labels.get('processor') or labels.get('machine') or '?'} x{labels.get('cpu_count', '?')}{gpu}")
                commits.add(str(labels.get("git_commit") or "?")[:7])
            all_wall, all_flops = all_wall + wall, all_flops + flops
            rows.append({"study": name, "stage": stage, "cells run": ran, "cells copied": copied,
                         "cell hours": round(wall / 3600, 2), "FLOPs (est.)": f"{flops:.3g}" if flops else "",
                         "machines": "; ".join(sorted(machines)), "commits": " ".join(sorted(commits))})
    df = pd.DataFrame(rows, columns=["study", "stage", "cells run", "cells copied", "cell hours", "FLOPs (est.)",
                                     "machines", "commits"])
    if len(df):
        df.loc[len(df)] = {"study": "all", "stage": "", "cells run": int(df["cells run"].sum()),
                           "cells copied": int(df["cells copied"].sum()), "cell hours": round(all_wall / 3600, 2),
                           "FLOPs (est.)": f"{all_flops:.3g}" if all_flops else "", "machines": "", "commits": ""}
    return df.set_index("study")


def write_compute(store: Store, names: list[str], out: Path) -> list[Path]:
    """out/compute.{csv,md,tex}: compute_frame (docs/results.md's compute figures are this file)."""
    out = Path(out)
    return [out / name for name in export_table(compute_frame(store, names), out, "compute")]


def write_all_verdicts(studies: list, out: Path) -> list[Path]:
    """Every study's verdict rows in one table, a `study` column first: out/verdicts.{csv,md,tex}
    (docs/results.md's verdict tables are this file). Beside each study's Holm-adjusted verdict, the verdict
    adjusted across all studies' paper claims at once (Benjamini-Hochberg: the false discovery rate of the whole
    reproduction)."""
    frames = []
    for name, cmp in studies:
        df = verdict_frame(cmp)
        if df.empty:
            continue
        fam = families(cmp).to_numpy()
        frames.append(df.reset_index().assign(study=name, _p=cmp["p"].to_numpy(dtype=float),
                                              _raw=cmp["verdict"].to_numpy(), _paper=fam == "paper"))
    if not frames:
        return []
    table = pd.concat(frames, ignore_index=True)
    p = np.where(table["_paper"], table["_p"], np.nan)
    table["adjusted (BH, all studies)"] = [v if paper else verdict
                                           for v, paper, verdict in zip(adjusted(table["_raw"], benjamini_hochberg(p)),
                                                                        table["_paper"], table["adjusted (Holm)"])]
    table = table.drop(columns=["_p", "_raw", "_paper"])
    table = table[["study"] + [c for c in table.columns if c != "study"]].set_index("study")
    out = Path(out)
    return [out / name for name in export_table(table, out, "verdicts")]
