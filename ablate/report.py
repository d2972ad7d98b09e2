"""StudySpec + StudyResults + provenance -> reports/<study>/index.html (+ CSV tables beside it); studies -> index.html.

A view only: every number comes from ablate.aggregate (checkable against summary.csv) or from the
paper's anchors. The HTML is self-contained: inline CSS, plots as inline SVG, no scripts, no network.
Jinja2 autoescaping is on, so study text (description, source, errors) can never inject markup.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import quote

import jinja2
import matplotlib
import pandas as pd
from markupsafe import Markup

from ablate import aggregate, plots
from ablate.anchors import load_anchors, paper_table, table_ids
from ablate.expand import RANDOM_INIT
from ablate.metrics import METRICS
from ablate.results import StudyResults
from ablate.spec import StudySpec

TEMPLATES = Path(__file__).parent / "templates"
RELATIONS = {">": ">", ">=": "≥", "<": "<", "<=": "≤", "~": "≈"}


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def figure_svg(fig, salt: str) -> Markup:
    """A Figure -> inline <svg> markup. Fixed hash salt and no date: the same figure gives the same bytes,
    and a salt per figure keeps element ids unique when several SVGs share one page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return Markup(svg[svg.find("<svg"):])  # drop the XML prolog and doctype; matplotlib escapes text itself


def _num(x: Any, like: Any = None) -> str:
    """Compact number with digits set by the size of `like` (default x): 3.99, 123.4, 12,345; '—' for missing."""
    if x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x)):
        return aggregate.MISSING
    ref = abs(float(x if like is None or pd.isna(like) else like))
    digits = 0 if ref >= 1000 else 1 if ref >= 100 else 2
    return f"{float(x):,.{digits}f}"


def _table(df: pd.DataFrame, titles: Optional[dict[str, str]] = None, baseline: str = "") -> dict[str, Any]:
    """DataFrame of display strings -> {"corner", "columns", "rows": [{"label", "cells", "cls"}]} for the template."""
    titles = titles or {}
    rows = []
    for label, cells in zip(df.index, df.itertuples(index=False)):
        cls = "control" if label == RANDOM_INIT else ("baseline" if label == baseline else "")
        shown = titles.get(label, str(label)) + (" (baseline)" if label == baseline else "")
        rows.append({"label": shown, "cells": [str(c) for c in cells], "cls": cls})
    return {"corner": df.index.name or "", "columns": [str(c) for c in df.columns], "rows": rows}


def _margin_table(margin: pd.DataFrame, variants: Sequence[str], baseline: str) -> Optional[dict[str, Any]]:
    """Long margin frame -> rows variants, columns tasks, cells '+11.0 (83.0 vs 72.0)' in points."""
    if margin.empty:
        return None
    rows = aggregate.variant_rows(variants, list(margin["variant"]))
    rows = [r for r in rows if r != RANDOM_INIT]
    tasks = list(dict.fromkeys(margin["task"]))
    df = pd.DataFrame(aggregate.MISSING, index=pd.Index(rows, name="variant"), columns=tasks, dtype=object)
    for r in margin.itertuples(index=False):
        df.loc[r.variant, r.task] = f"{r.margin:+.1f} ({r.median:.1f} vs {r.random_init_median:.1f})"
    return _table(df, baseline=baseline)


def _paper_view(table_id: Optional[str], metric: str) -> Optional[dict[str, Any]]:
    """The paper's columns for `metric` from anchor table `table_id`, formatted as printed; None if it has none."""
    if not table_id or table_id not in table_ids():  # an unknown id: the "paper" section says so once
        return None
    df = paper_table(table_id, metric)
    if df.columns.empty:
        return None
    spec = load_anchors()["tables"][table_id]
    digits = 2 if metric == "ppl" else 1
    shown = df.apply(lambda col: col.map(lambda v: aggregate.MISSING if pd.isna(v) else f"{v:.{digits}f}"))
    shown.columns = [spec["columns"][c]["label"] for c in df.columns]
    shown.index.name = ""
    return {"title": spec["title"], "table": _table(shown, spec.get("row_titles"))}


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
        findings.append(f"{titles.get(c['a'], c['a'])} {RELATIONS.get(c['relation'], c['relation'])} "
                        f"{titles.get(c['b'], c['b'])} on {cols}: {c.get('note', '')}")
    return {"title": spec["title"], "citation": anchors["citation"], "findings": findings}


def _pretrain_view(pre: pd.DataFrame, variants: Sequence[str], baseline: str) -> Optional[dict[str, Any]]:
    """aggregate.pretrain_table -> display strings: 'median (mean ± std)' per column."""
    if pre.empty:
        return None
    order = [v for v in aggregate.variant_rows(variants, list(pre["variant"])) if v in set(pre["variant"])]
    pre = pre.set_index("variant").loc[order]
    out = pd.DataFrame(index=pd.Index(order, name="variant"))
    out["runs"] = pre["n"].astype(int).astype(str)
    names = {"heldout_ppl": "held-out MLM ppl", "unigram_ppl": "unigram ppl", "tokens_seen": "tokens seen",
             "wall_s": "wall time (s)", "tokens_per_s": "tokens/s"}
    for col, title in names.items():
        med, mean, std = pre[f"{col}_median"], pre[f"{col}_mean"], pre[f"{col}_std"]
        out[title] = [_num(m) if pd.isna(s) else f"{_num(m)} ({_num(a, m)} ± {_num(s, m)})"
                      for m, a, s in zip(med, mean, std)]
    return _table(out, baseline=baseline)


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


def _plots(results: StudyResults, summary: pd.DataFrame, variants: Sequence[str]) -> list[dict[str, Any]]:
    figs = []
    for i, (task, metric) in enumerate(dict.fromkeys(zip(summary["task"], summary["metric"]))):
        fig = plots.task_scores(results.scores, task, metric, order=variants)
        figs.append({"title": f"{task}: {metric}", "svg": figure_svg(fig, f"ablate-task-{i}")})
    return figs


def write_study_report(study: StudySpec, results: StudyResults, out_dir: Path, provenance: dict) -> Path:
    """Write out_dir/<study.name>/index.html and scores.csv, summary.csv, margin.csv, pretrain.csv beside it."""
    folder = Path(out_dir) / study.name
    folder.mkdir(parents=True, exist_ok=True)
    variants = list(study.variants)
    summary = aggregate.summarize(results.scores)
    margin = aggregate.pretraining_margin(summary)
    pre = aggregate.pretrain_table(results.pretrain)
    for name, df in [("scores", results.scores), ("summary", summary), ("margin", margin), ("pretrain", pre)]:
        buf = io.StringIO()
        df.to_csv(buf, index=False)
        _write(folder / f"{name}.csv", buf.getvalue())

    metric_sections = []
    for metric in dict.fromkeys(summary["metric"]):
        spec = METRICS.get(metric) if metric in METRICS else None
        metric_sections.append({
            "name": spec.display if spec else metric,
            "higher_is_better": spec.higher_is_better if spec else None,
            "points": aggregate.scale_of(metric) != 1,
            "table": _table(aggregate.paper_style_table(summary, metric, variants), baseline=study.baseline),
            "paper": _paper_view(study.paper_table, metric),
        })
    counts = {k: int(results.counts.get(k, 0)) for k in ("done", "failed", "pending")}
    has_results = not (results.scores.empty and results.pretrain.empty)
    html = _env().get_template("study.html.j2").render(
        study=study,
        counts=counts,
        total=sum(counts.values()),
        has_results=has_results,
        random_init_control=study.variants[study.baseline].finetune.random_init_control,
        margin=_margin_table(margin, variants, study.baseline),
        metrics=metric_sections,
        paper=_paper_header(study.paper_table),
        paper_ppl=_paper_view(study.paper_table, "ppl"),
        pretrain=_pretrain_view(pre, variants, study.baseline),
        task_plots=_plots(results, summary, variants) if has_results else [],
        loss_plot=figure_svg(plots.loss_curves(results.curves, order=variants), "ablate-loss")
        if not results.curves.empty else None,
        failures=results.failures,
        provenance=_flatten(provenance or {}),
    )
    path = folder / "index.html"
    _write(path, html)
    return path


def write_index(studies: list[dict], out_dir: Path) -> Path:
    """Write out_dir/index.html listing studies.

    Each dict: name, description, scale, and the cell counts either as `counts` {done, failed, pending}
    or as top-level done / failed / pending keys.
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
        })
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    _write(path, _env().get_template("index.html.j2").render(studies=rows))
    return path
