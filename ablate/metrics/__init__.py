"""METRICS: metric name -> record with `higher_is_better`, computed through `evaluate` offline.

Each metric is an `evaluate` module shipped inside this package and loaded by path,
so `HF_EVALUATE_OFFLINE=1` works and the hub is never asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from ablate.registry import Registry

HERE = Path(__file__).parent


@dataclass(frozen=True)
class MetricSpec:
    name: str
    higher_is_better: bool
    display: str  # column title in reports
    percent: bool = True  # shown x100 in tables

    @property
    def module_path(self) -> Path:
        return HERE / self.name / f"{self.name}.py"


METRICS: Registry[MetricSpec] = Registry("metric")
METRICS.register("accuracy", MetricSpec("accuracy", True, "acc."))
METRICS.register("f1", MetricSpec("f1", True, "F1"))


@lru_cache(maxsize=None)
def _module(name: str):
    import evaluate

    return evaluate.load(str(METRICS.get(name).module_path))


def compute(name: str, predictions: Sequence[Any], references: Sequence[Any]) -> float:
    """Score predictions with the shipped `evaluate` module `name`."""
    result = _module(name).compute(predictions=list(predictions), references=list(references))
    return float(result[name])
