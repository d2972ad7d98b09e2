"""The paper's numbers (anchors/paper.yaml) -> a dict and per-table DataFrames.

Read-only reference data: Tables 1-4 of Liu et al. 2019 (RoBERTa), section 4, in points,
with the directions the paper found. The report shows them beside our own results.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import yaml

from ablate.errors import UserError

ANCHOR_FILE = Path(__file__).parent / "paper.yaml"


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    with open(ANCHOR_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_anchors() -> dict[str, Any]:
    """The whole anchor file: {"citation": str, "tables": {table_id: {title, columns, row_titles, rows, comparisons}}}."""
    return copy.deepcopy(_load())  # callers may mutate their copy; the cache stays clean


def table_ids() -> list[str]:
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
