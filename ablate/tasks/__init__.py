"""Downstream tasks as declarative records, in a registry keyed by name, and what reports need about them.

A TaskSpec says where a task's data lives (hub id for online use, a folder of <split>.parquet under the
data root for offline use), its official splits, text columns, label, metrics and kind. The records
are registered by ablate.tasks.glue (cola, sst2, mrpc, stsb, qnli, rte, mnli, qqp) and
ablate.tasks.squad (squad, squad_v2).

For reports:
- glue_average(scores by task) -> the GLUE average over the GLUE tasks given;
- scored_on_validation_part / split_note / task_title(task, finetune spec): the mark for a task that
  fine-tunes on part of its validation split and is scored on the rest (finetune.train_from_validation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Mapping, Optional

from ablate.errors import UserError
from ablate.registry import Registry

if TYPE_CHECKING:
    from ablate.study.spec import FinetuneSpec

PART_MARK = "†"  # appended to a task's name wherever it is scored on part of its validation split


@dataclass(frozen=True)
class TaskSpec:
    name: str
    hub_path: str  # hub dataset id used online, e.g. "nyu-mll/glue"
    hub_name: Optional[str]  # hub config name, e.g. "sst2"
    local_dir: str  # folder under the data root holding <split>.parquet
    train_split: str  # official split names (as on the hub), kept even where no local copy exists
    eval_split: str
    text_columns: tuple[str, ...]  # one column (single sentence) or two (a pair; span tasks: question, context)
    num_labels: int  # classes; 1 for regression; 2 for span tasks (start and end logits)
    metrics: tuple[str, ...]  # names in ablate.metrics.METRICS, the headline metric first
    kind: Literal["classification", "regression", "span", "zero-shot"] = "classification"  # zero-shot: scored
    #                                                                          with no training (BLiMP), once per model
    label_column: str = "label"  # span tasks: the SQuAD "answers" struct {text: [...], answer_start: [...]}
    group_columns: tuple[str, ...] = ()  # examples sharing a value in any of these stay on one side of a
    #                                      validation split; () = the text columns (MNLI premises, QNLI questions)
    score_metrics: tuple[str, ...] = ()  # metrics averaged into the task's one number (GLUE); () = the first metric
    benchmark: Optional[Literal["glue"]] = None  # the benchmark average this task joins
    local: bool = True  # False: no local copy exists (QQP), the task runs only from the hub
    id_column: str = "idx"  # unique example id (span tasks: the SQuAD question id)
    no_answer: bool = False  # span tasks: some questions have no answer in the context (SQuAD v2)

    @property
    def groups(self) -> tuple[str, ...]:
        return self.group_columns or self.text_columns

    @property
    def score(self) -> tuple[str, ...]:
        return self.score_metrics or self.metrics[:1]


TASKS: Registry[TaskSpec] = Registry("task")


def task_score(task: str, scores: Mapping[str, float]) -> float:
    """One number for a task: the mean of its score metrics (MRPC: acc and F1; STS-B: Pearson and Spearman)."""
    spec = TASKS.get(task)
    missing = [m for m in spec.score if m not in scores]
    if missing:
        raise UserError(f"{task}: no {', '.join(missing)} score to average")
    return sum(scores[m] for m in spec.score) / len(spec.score)


def glue_average(scores_by_task: Mapping[str, Mapping[str, float]]) -> Optional[float]:
    """Mean over the GLUE tasks present of each task's score; None when there is none.

    Per task, as the GLUE benchmark scores it: cola Matthews corr.; sst2 acc.; mrpc mean of acc. and F1;
    stsb mean of Pearson and Spearman; qqp mean of acc. and F1; mnli matched acc.; qnli acc.; rte acc.
    Other tasks (SQuAD) are ignored. Input: {task: {metric: value}} in the metrics' own scale (fractions,
    correlations); output in the same scale (x100 for display, like every percent metric). It averages
    whichever GLUE tasks a study ran, so compare it only between rows over the same tasks; a NaN score
    gives NaN.
    """
    per_task = [task_score(t, s) for t, s in scores_by_task.items() if TASKS.get(t).benchmark == "glue"]
    if not per_task:
        return None
    return math.fsum(per_task) / len(per_task)


def scored_on_validation_part(task: str, ft: "FinetuneSpec") -> bool:
    """True when the task fine-tunes on part of its validation split and is scored on the rest."""
    return task in ft.train_from_validation


def split_note(task: str, ft: "FinetuneSpec") -> Optional[str]:
    """A footnote for tables and plots: how a task scored on part of its validation split was split."""
    if not scored_on_validation_part(task, ft):
        return None
    spec = TASKS.get(task)
    frac = ft.train_from_validation[task]
    return (f"{task}{PART_MARK}: fine-tuned on {frac:.0%} of {spec.eval_split} (split by "
            f"{' / '.join(spec.groups)}, never its {spec.train_split} split) and scored on the other {1 - frac:.0%}; "
            f"not comparable with scores on the full {spec.eval_split} split")


def task_title(task: str, ft: "FinetuneSpec") -> str:
    """The task's name as tables and plots show it: with PART_MARK when scored on part of its validation split."""
    return task + (PART_MARK if scored_on_validation_part(task, ft) else "")


from ablate.tasks import blimp, glue, squad  # noqa: E402  (registers the tasks)

__all__ = ["PART_MARK", "TASKS", "TaskSpec", "blimp", "glue", "glue_average", "scored_on_validation_part", "split_note",
           "squad", "task_score", "task_title"]
