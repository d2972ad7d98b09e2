"""The paper's numbers (analysis/paper.yaml) -> a dict, per-table DataFrames and per-study claims.

Read-only reference data: Tables 1-4 of Liu et al. 2019 (RoBERTa), section 4, in points,
with the directions the paper found, and which table and rows each study reproduces.
The report shows them beside our own results; ablate.analysis.verdicts.compare turns claims into verdicts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import yaml

from ablate.errors import UserError

ANCHOR_FILE = Path(__file__).parent / "paper.yaml"
BLIMP_REFERENCE_FILE = Path(__file__).parent / "blimp_reference.yaml"  # the BLiMP authors' model scores


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    with open(ANCHOR_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


@lru_cache(maxsize=1)
def _blimp() -> dict[str, Any]:
    with open(BLIMP_REFERENCE_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def blimp_reference() -> dict[str, dict[str, float]]:
    """The BLiMP authors' models -> {phenomenon or "overall": accuracy} (blimp_reference.yaml says where from)."""
    return copy.deepcopy(_blimp()["models"])


def load_anchors() -> dict[str, Any]:
    """The whole anchor file: {"citation": str, "tables": {table_id: {title, columns, row_titles, rows, comparisons}},
    "studies": {study: {table, rows, comparisons}}}."""
    return copy.deepcopy(_load())  # callers may mutate their copy; the cache stays clean


def table_ids() -> list[str]:
    """The anchor tables' ids (table1 ... table4)."""
    return list(_load()["tables"])


def table_spec(table_id: str) -> dict[str, Any]:
    """One table's record; a UserError naming the known ids when `table_id` is not one."""
    tables = _load()["tables"]
    if table_id not in tables:
        raise UserError(f"unknown paper table {table_id!r} (known: {', '.join(tables)})")
    return tables[table_id]


def paper_table(table_id: str, metric: Optional[str] = None) -> pd.DataFrame:
    """Rows = row keys (e.g. static, dynamic), columns = column keys (e.g. squad_v2, sst2), values as printed.

    With `metric` (e.g. "accuracy", "f1", "ppl"), only the columns that match it are kept.
    A cell the paper does not report is NaN.
    """
    spec = table_spec(table_id)
    cols = [c for c, info in spec["columns"].items() if metric is None or (info or {}).get("metric") == metric]
    df = pd.DataFrame.from_dict(spec["rows"], orient="index").reindex(columns=cols)
    df.index.name = "row"
    return df


# ---------------------------------------------------------------- studies and their claims

PRETRAINING_TASK = "pretraining"  # the `task` of pretraining metrics in aggregate's long tables
HELDOUT_PPL = "heldout_ppl"  # our metric for the paper's `ppl` column (held-out MLM perplexity)
HELDOUT_BPC = "heldout_bpc"  # held-out bits per character: what compares across tokenizers
SHARED_HELDOUT_PPL = "shared_heldout_ppl"  # held-out perplexity on FULL-SENTENCES' blocks, whatever the input format
PPL_COLUMN = "ppl"
SANITY = "sanity"  # source of the random-init check: expected everywhere, not a paper finding
EXPLORATORY = "exploratory"  # a variant vs the baseline with no stated direction


@dataclass(frozen=True)
class Claim:
    """One direction to check: `a <relation> b`, in our variant names.

    relation: ">", ">=", "<", "<=", "~" on the raw value, "better"/"worse" through higher_is_better,
    or None (no direction: the difference is reported, with no verdict).
    tasks: our task names it covers (PRETRAINING_TASK for perplexity); None = every downstream task.
    paper: (task, metric) -> the paper's a - b, in the paper's units (points for scores).
    margin: delta of a noninferior (">=", "<=") or equivalent ("~") claim, in points (scores shown x100);
    the anchors' `margins` give it, with the reason.
    """

    a: str
    b: str
    relation: Optional[str]
    tasks: Optional[tuple[str, ...]] = None
    note: str = ""
    source: str = ""  # a table id, a section of the paper's text, SANITY or EXPLORATORY
    paper: dict = field(default_factory=dict)
    margin: float = 0.0


def _column_key(column: str, info: Optional[dict]) -> Optional[tuple[str, str]]:
    """Anchor column -> our (task, metric); None for settings columns (bsz, steps)."""
    if column == PPL_COLUMN:
        return (PRETRAINING_TASK, HELDOUT_PPL)
    metric = (info or {}).get("metric")
    return (column, metric) if metric else None


RELATION_TEXT = {">": ">", ">=": "≥", "<": "<", "<=": "≤", "~": "≈", "better": "better than", "worse": "worse than"}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "~": "~", "better": "worse", "worse": "better"}


def study_anchor(study_name: str, table_id: Optional[str]) -> Optional[dict[str, Any]]:
    """{"table": id or None, "rows": {variant: paper row}, "comparisons": [...]} for a study; None if it has neither.

    The anchors' `studies` section wins; otherwise the study's own `paper_table`, with variants named as rows.
    """
    entry = copy.deepcopy(_load().get("studies", {}).get(study_name))
    if entry is None:
        if not table_id or table_id not in _load()["tables"]:
            return None
        entry = {"table": table_id, "rows": {r: r for r in _load()["tables"][table_id]["rows"]}}
    entry.setdefault("table", None)
    entry["rows"] = entry.get("rows") or {}
    entry["comparisons"] = entry.get("comparisons") or []
    return entry


def paper_value(anchor: Optional[dict], variant: str, task: str, metric: str) -> Optional[float]:
    """The paper's number for our (variant, task, metric), or None where the table has no such cell."""
    if not anchor or not anchor["table"] or variant not in anchor["rows"]:
        return None
    spec = table_spec(anchor["table"])
    for col, info in spec["columns"].items():
        if _column_key(col, info) == (task, metric):
            value = spec["rows"].get(anchor["rows"][variant], {}).get(col)
            return float(value) if isinstance(value, (int, float)) else None
    return None


def margin_points() -> float:
    """delta of the paper's "comparable" claims, in points, from the anchors' `margins` (the reason is there)."""
    return float(_load()["margins"]["points"]["value"])


def reported_tasks(table_id: Optional[str]) -> tuple[str, ...]:
    """The downstream tasks a paper table reports (its columns with a score metric; not ppl, not settings)."""
    if not table_id:
        return ()
    return tuple(c for c, info in table_spec(table_id)["columns"].items()
                 if c != PPL_COLUMN and (info or {}).get("metric"))


def _claim(raw: dict, a: str, b: str, anchor: dict, source: str, baseline: str) -> Claim:
    """A comparison record -> Claim with the paper's differences, turned round when `a` is the baseline
    so that every difference against the baseline reads variant - baseline.

    A claim covers only tasks the paper reports: its `columns`, else the study table's downstream columns. A claim
    that names no task we could check (section 4.4: "some end tasks") stays a row without a verdict (relation
    None), its note saying why."""
    wanted = raw.get("columns")
    paper = {}
    columns = table_spec(anchor["table"])["columns"].items() if anchor["table"] else ()
    for col, info in columns:
        key = _column_key(col, info)
        if key is None or (wanted is not None and col not in wanted):
            continue
        va, vb = paper_value(anchor, a, *key), paper_value(anchor, b, *key)
        if va is not None and vb is not None:
            paper[key] = round(va - vb, 6)  # 78.7 - 78.3 -> 0.4, not 0.4000000000000057
    if wanted is not None:
        tasks = tuple(PRETRAINING_TASK if c == PPL_COLUMN else c for c in wanted)
    else:
        tasks = reported_tasks(anchor["table"])
    relation, note = raw["relation"], raw.get("note", "")
    if not tasks:  # the paper names no task: what it says is shown, every downstream task compared, no verdict
        tasks, relation = None, None
        note = f"{note} (the paper names no task or number: shown, not judged)"
    if a == baseline:
        a, b, relation = b, a, FLIPPED.get(relation)
        paper = {k: -v for k, v in paper.items()}
    return Claim(a, b, relation, tasks, note, source, paper, margin_points())


BLIMP_TASK = "blimp"  # zero-shot grammatical knowledge: not in the paper, so only ever an expected direction


def with_blimp(claims: list[Claim]) -> list[Claim]:
    """Each downstream claim of the paper followed by the same direction on BLiMP: not the paper's claim (BLiMP is
    not in the paper) but what it leads one to expect, as held-out perplexity is (the report labels it so)."""
    out = []
    for c in claims:
        out.append(c)
        if c.relation is not None and c.tasks and PRETRAINING_TASK not in c.tasks and BLIMP_TASK not in c.tasks:
            out.append(Claim(c.a, c.b, c.relation, (BLIMP_TASK,), c.note, c.source, {}, c.margin))
    return out


def study_claims(study_name: str, table_id: Optional[str], variants: Sequence[str], baseline: str,
                 random_init: str = "random-init", other_controls: Sequence[tuple[str, str]] = ()) -> list[Claim]:
    """Every direction the report checks for a study, in this order: the table's findings whose two rows
    are both variants of the study, the study's findings from the paper's text, then random-init worse
    than the baseline (SANITY), and each (control, variant) of other_controls (another vocabulary's control
    and the first variant with that vocabulary) likewise. Differences without a stated direction are added by
    aggregate.compare.
    """
    anchor = study_anchor(study_name, table_id)
    claims: list[Claim] = []
    if anchor is not None:
        row_to_variant = {row: v for v, row in anchor["rows"].items() if v in variants}
        for raw in table_spec(anchor["table"]).get("comparisons", []) if anchor["table"] else []:
            if raw["a"] in row_to_variant and raw["b"] in row_to_variant:
                a, b = row_to_variant[raw["a"]], row_to_variant[raw["b"]]
                claims.append(_claim(raw, a, b, anchor, anchor["table"], baseline))
        for raw in anchor["comparisons"]:
            if raw["a"] in variants and raw["b"] in variants:
                claims.append(_claim(raw, raw["a"], raw["b"], anchor, raw.get("source", "text"), baseline))
    claims = with_blimp(claims)
    for control, variant in [(random_init, baseline), *other_controls]:
        claims.append(Claim(control, variant, "worse", None,
                            "pretraining should beat random init (a check of the scale, not a paper finding)", SANITY,
                            margin=margin_points()))
    return claims
