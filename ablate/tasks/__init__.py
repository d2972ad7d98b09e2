"""Downstream tasks as declarative records, in a registry keyed by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ablate.registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    hub_path: str  # hub dataset id used online, e.g. "nyu-mll/glue"
    hub_name: Optional[str]  # hub config name, e.g. "sst2"
    local_dir: str  # folder under the data root holding <split>.parquet
    train_split: str
    eval_split: str
    text_columns: tuple[str, ...]  # one column (single sentence) or two (a pair)
    num_labels: int
    metrics: tuple[str, ...]  # names in ablate.metrics.METRICS
    kind: Literal["classification", "regression", "span"] = "classification"
    label_column: str = "label"


TASKS: Registry[TaskSpec] = Registry("task")

from ablate.tasks import glue  # noqa: E402  (registers the GLUE tasks)

__all__ = ["TASKS", "TaskSpec", "glue"]
