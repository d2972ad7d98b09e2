"""StudySpec + StudyResults + provenance -> reports/<study>/index.html (+ CSV, Markdown, LaTeX tables beside it);
studies -> reports/index.html.

A view only: every number comes from ablate.analysis (checkable against summary.csv and comparisons.csv) or
from the paper's anchors. The HTML is self-contained: inline CSS, plots as inline SVG, no scripts, no network.
Jinja2 autoescaping is on, so study text (description, source, errors) can never inject markup.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import quote

import jinja2
import matplotlib
import pandas as pd
from markupsafe import Markup

from ablate.analysis import aggregate, verdicts
from ablate.analysis.anchors import (PRETRAINING_TASK, RELATION_TEXT, blimp_reference, load_anchors, study_anchor,
                                     table_ids)
from ablate.analysis.results import StudyResults
from ablate.report import plots
from ablate.report.tables import (margin_table, num, pretrain_frame, score_tables, study_comparisons,
                                  verdict_frame)
from ablate.store import atomic_write_text
from ablate.study.cells import controls_of, is_control
from ablate.study.spec import StudySpec
from ablate.tasks import split_note

TEMPLATES = Path(__file__).parent / "templates"
CELL = re.compile(r"^(\S+) \((.+)\)$")  # "median (details)", as aggregate.format_cell and the margin table write


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def figure_svg(fig, salt: str) -> Markup:
    """A Figure -> inline <svg> markup. Fixed hash salt and no date: the same figure gives the same bytes,
    and a salt per figure keeps element ids unique when several SVGs share one page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return Markup(svg[svg.find("<svg"):])  # drop the XML prolog and doctype; matplotlib escapes text itself


def to_markdown(df: pd.DataFrame) -> str:
    """A DataFrame of display strings -> a GitHub Markdown table, index as the first column."""
    flat = df.reset_index()

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    rows = [line(flat.columns), "|" + "---|" * len(flat.columns)]
    rows += [line(r) for r in flat.itertuples(index=False)]
    return "\n".join(rows) + "\n"


def export_table(df: pd.DataFrame, folder: Path, stem: str) -> list[str]:
    """Write <stem>.csv, <stem>.md and <stem>.tex (booktabs, escaped) into folder; return their names."""
    flat = df.reset_index()
    atomic_write_text(folder / f"{stem}.csv", flat.to_csv(index=False))
    atomic_write_text(folder / f"{stem}.md", to_markdown(df))
    atomic_write_text(folder / f"{stem}.tex", flat.to_latex(index=False, escape=True))
    return [f"{stem}.csv", f"{stem}.md", f"{stem}.tex"]


def _cell(text: str) -> dict[str, str]:
    """'83.0 (84.0 ± 4.3 [77.1, 90.9], n=4)' -> main '83.0' and a detail line that wraps only between its parts."""
    m = CELL.match(text)
    if not m:
        return {"main": text, "detail": ""}
    detail = m.group(2).replace(" ± ", "\u00a0±\u00a0").replace(", n=", " n=").replace(" vs ", "\u00a0vs\u00a0")
    return {"main": m.group(1), "detail": re.sub(r"\[(\S+), (\S+)\]", "[\\1,\u00a0\\2]", detail)}


def _table(df: pd.DataFrame, titles: Optional[dict[str, str]] = None, baseline: str = "",
           classes: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """DataFrame of display strings -> {"corner", "columns", "col_classes", "rows": [{"label", "cells", "cls"}]}
    for the template; a cell is {"main", "detail"}, and "(paper)" columns get the class "paper"."""
    titles = titles or {}
    rows = []
    for i, (label, cells) in enumerate(zip(df.index, df.itertuples(index=False))):
        cls = "control" if is_control(label) else ("baseline" if label == baseline else "")
        if classes is not None:
            cls = classes[i]
        shown = titles.get(label, str(label)) + (" (baseline)" if label == baseline else "")
        rows.append({"label": shown, "cells": [_cell(str(c)) for c in cells], "cls": cls})
    columns = [str(c) for c in df.columns]
    return {"corner": df.index.name or "", "columns": columns, "rows": rows,
            "col_classes": ["paper" if c.endswith("(paper)") else "" for c in columns]}


def _paper_cell(value: Any, metric: Optional[str]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return aggregate.MISSING
    if metric is None:  # a setting, as printed
        return f"{value:g}" if isinstance(value, float) else str(value)
    return f"{float(value):.{2 if metric == 'ppl' else 1}f}"


def _paper_view(table_id: Optional[str], metric: Optional[str] = None) -> Optional[dict[str, Any]]:
    """Anchor table `table_id` as printed (only `metric`'s columns when given); None if it has none."""
    if not table_id or table_id not in table_ids():  # an unknown id: the "paper" section says so once
        return None
    spec = load_anchors()["tables"][table_id]
    cols = [c for c, info in spec["columns"].items() if metric is None or (info or {}).get("metric") == metric]
    if not cols:
        return None
    df = pd.DataFrame({spec["columns"][c]["label"]: [_paper_cell(spec["rows"][r].get(c), spec["columns"][c]["metric"])
                                                      for r in spec["rows"]] for c in cols},
                      index=pd.Index(list(spec["rows"]), name=""))
    return {"title": spec["title"], "table": _table(df, spec.get("row_titles")), "frame": df}


def _paper_header(table_id: Optional[str]) -> Optional[dict[str, Any]]:
    if not table_id:
        return None
    anchors = load_anchors()
    if table_id not in anchors["tables"]:
        known = ", ".join(anchors["tables"])
        return {"missing": f"paper table {table_id!r} is not in the anchors (known: {known})"}
    spec = anchors["tables"][table_id]
    titles = spec.get("row_titles", {})
    findings = []
    for c in spec.get("comparisons", []):
        cols = ", ".join(c.get("columns", [])) or "all columns"
        findings.append(f"{titles.get(c['a'], c['a'])} {RELATION_TEXT.get(c['relation'], c['relation'])} "
                        f"{titles.get(c['b'], c['b'])} on {cols}: {c.get('note', '')}")
    return {"title": spec["title"], "citation": anchors["citation"], "findings": findings,
            "full": _paper_view(table_id)}


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """{'versions': {'torch': '2.1'}} -> [('versions.torch', '2.1')]."""
    items: list[tuple[str, str]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            items += _flatten(v, key + ".")
        elif isinstance(v, (list, tuple)):
            items.append((key, ", ".join(map(str, v))))
        else:
            items.append((key, aggregate.MISSING if v is None else str(v)))
    return items


def _plots(results: StudyResults, summary: pd.DataFrame, cmp: pd.DataFrame, variants: Sequence[str],
           columns: Sequence[tuple[str, str]]) -> dict:
    """Every figure of a study page as inline SVG: each task's scores on its primary metric, forest plots,
    loss curves, metric against compute."""
    tasks = [{"title": f"{task}: {metric}", "svg": figure_svg(plots.task_scores(results.scores, task, metric, variants,
                                                                                summary), f"ablate-task-{i}")}
             for i, (task, metric) in enumerate(columns)]
    forests = []
    if not cmp.empty:
        points = cmp["metric"].map(aggregate.scale_of) == 100.0
        groups = [("points", cmp[points])]
        groups += [(m, cmp[cmp["metric"] == m]) for m in dict.fromkeys(cmp[~points]["metric"])]
        forests = [{"title": unit, "svg": figure_svg(plots.forest(g, unit), f"ablate-forest-{i}")}
                   for i, (unit, g) in enumerate(groups) if not g.empty]
    return {
        "tasks": tasks,
        "forests": forests,
        "loss": figure_svg(plots.loss_curves(results.curves, order=variants), "ablate-loss")
        if not results.curves.empty else None,
        "compute": figure_svg(plots.metric_vs_compute(results.pretrain, results.scores, columns, variants),
                              "ablate-compute") if not results.pretrain.empty else None,
        "blimp": figure_svg(plots.blimp_heatmap(results.blimp, order=variants), "ablate-blimp")
        if not results.blimp.empty else None,
        "finetune": figure_svg(plots.finetune_curves(results.ft_curves, results.ft_epochs, columns, variants),
                               "ablate-finetune") if not results.ft_curves.empty else None,
    }


def _cell_times(results: StudyResults, cell_times: Optional[pd.DataFrame]) -> Optional[pd.DataFrame]:
    """Wall time per finished cell: `cell_times` (stage, cell, wall_s) or, without it, the pretraining runs."""
    if cell_times is None:
        pre = results.pretrain
        cell_times = pd.DataFrame({"stage": "pretrain", "wall_s": pre["wall_s"],
                                   "cell": [f"{v}/seed{s}" for v, s in zip(pre["variant"], pre["seed"])]})
    if cell_times.empty:
        return None
    out = cell_times.set_index("cell")[["stage"]].copy()
    out["wall time (s)"] = [num(x) for x in cell_times["wall_s"]]
    return out


def write_study_report(study: StudySpec, results: StudyResults, out_dir: Path, provenance: dict,
                       cell_times: Optional[pd.DataFrame] = None) -> Path:
    """Write out_dir/<study.name>/index.html, the raw CSVs (scores, summary, comparisons, margin, pretrain) and
    every displayed table as CSV, Markdown and LaTeX (table_<name>.*) beside it."""
    folder = Path(out_dir) / study.name
    folder.mkdir(parents=True, exist_ok=True)
    variants = list(study.variants)
    summary = aggregate.summarize(results.scores)
    columns = aggregate.primary_columns(results.scores)
    margin = aggregate.pretraining_margin(summary, columns=columns, controls=controls_of(study))
    pre = aggregate.pretrain_table(results.pretrain)
    cmp = study_comparisons(study, results)
    for name, df in [("scores", results.scores), ("summary", summary), ("comparisons", cmp), ("margin", margin),
                     ("pretrain", pre)]:
        atomic_write_text(folder / f"{name}.csv", df.to_csv(index=False))

    anchor = study_anchor(study.name, study.paper_table)
    table_id = study.paper_table or (anchor or {}).get("table")  # a study may leave its table to the anchors
    header = _paper_header(table_id)
    ft = study.variants[study.baseline].finetune
    main, other, lower, floor = score_tables(summary, columns, variants, anchor, ft, results.majority)
    notes = [n for t in dict.fromkeys(summary["task"]) if (n := split_note(t, ft))]
    frames = {"verdicts": verdict_frame(cmp), "scores": main if columns else None, "other_metrics": other,
              "margin": margin_table(margin, variants), "pretrain": pretrain_frame(pre, variants),
              "blimp": aggregate.blimp_table(results.blimp, variants, study.baseline, blimp_reference()),
              "paper": header["full"]["frame"] if header and header.get("full") else None}
    frames = {k: df for k, df in frames.items() if df is not None and not df.empty}
    exports = {k: export_table(df, folder, f"table_{k}") for k, df in frames.items()}
    shown = {k: _table(df, baseline=study.baseline) for k, df in frames.items() if k not in ("verdicts", "paper")}
    if "verdicts" in frames:
        shown["verdicts"] = _table(frames["verdicts"], classes=[f"v-{v.replace(' ', '-')}"
                                                                for v in frames["verdicts"]["adjusted (Holm)"]])
    counts = {k: int(results.counts.get(k, 0)) for k in ("done", "failed", "pending")}
    has_results = not (results.scores.empty and results.pretrain.empty)
    times = _cell_times(results, cell_times)
    html = _env().get_template("study.html.j2").render(
        study=study, counts=counts, total=sum(counts.values()), has_results=has_results,
        random_init_control=study.variants[study.baseline].finetune.random_init_control,
        tables=shown, exports=exports, tally=verdicts.verdict_counts(cmp), citation=load_anchors()["citation"],
        rules=verdicts.VERDICT_RULES, margin_reason=load_anchors()["margins"]["points"]["reason"],
        lower_is_better=lower, split_notes=notes, has_majority=bool(results.majority), at_floor=floor, paper=header, paper_ppl=_paper_view(table_id, "ppl"),
        figures=_plots(results, summary, cmp, variants, columns) if has_results else None,
        failures=results.failures, provenance=_flatten(provenance or {}),
        cell_times=_table(times) if times is not None else None, pretraining_task=PRETRAINING_TASK,
    )
    path = folder / "index.html"
    atomic_write_text(path, html)
    return path


def write_index(studies: list[dict], out_dir: Path) -> Path:
    """Write out_dir/index.html listing studies.

    Each dict: name, description, scale, the cell counts either as `counts` {done, failed, pending} or as
    top-level done / failed / pending keys, and optionally `verdicts` (verdicts.verdict_counts).
    """
    rows = []
    for s in studies:
        counts = s.get("counts") or s
        rows.append({
            "name": str(s["name"]),
            "href": quote(str(s["name"])) + "/index.html",
            "description": str(s.get("description", "")),
            "scale": str(s.get("scale", "")),
            "done": int(counts.get("done", 0)),
            "failed": int(counts.get("failed", 0)),
            "pending": int(counts.get("pending", 0)),
            "verdicts": s.get("verdicts"),
        })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    atomic_write_text(path, _env().get_template("index.html.j2").render(studies=rows))
    return path
