"""Task data: TaskSpec + FinetuneSpec -> the examples to fine-tune on and the examples to score.

- load_split(task, split): one split as a `datasets.Dataset`, from <data root>/<local_dir>/<split>.parquet
  when ABLATE_DATA_DIR is set, else from the hub. A split with no local copy is a clear error that names
  the fix (finetune.train_from_validation) when one exists.
- split_by_group(columns, fraction): the reproducible validation split of train_from_validation. Examples
  that share a value in any group column (SQuAD: the article; MNLI: the premise; QNLI: the question or
  the sentence) form one group; groups are ordered by a hash of their content (not by seed or row order)
  and taken in that order until `fraction` of the examples are in the fine-tuning part.
- task_data(task, ft): (train, eval) for one task, the train part cut to ft.train_size.
- check_local_data(task, ft): what a preflight calls to fail before any compute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ablate.errors import UserError
from ablate.paths import DATA_ENV, data_root, local_file
from ablate.tasks import TaskSpec

if TYPE_CHECKING:
    from ablate.study.spec import FinetuneSpec

SUBSET_SEED = 1234  # the train subset is the same for every variant and seed
SPLIT_SALT = "ablate-validation-split-v1"  # changing it moves every validation split (bump HASH_VERSION too)


@dataclass
class TaskData:
    train: Any  # datasets.Dataset
    eval: Any  # datasets.Dataset
    train_split: str  # what the train examples are, for the record: "train" or "validation_matched[50% part]"
    eval_split: str
    from_validation: bool  # fine-tuned on part of the validation split, scored on the rest


def needed_splits(task: TaskSpec, ft: "FinetuneSpec") -> list[str]:
    """Splits a run of `task` reads under `ft`."""
    if task.name in ft.train_from_validation or task.kind == "zero-shot":
        return [task.eval_split]
    return [task.train_split, task.eval_split]


def _missing_message(task: TaskSpec, split: str) -> str:
    root = data_root()
    rel = f"{task.local_dir}/{split}.parquet"
    if not task.local:
        return (f"{task.name} has no local copy (online only, see the data README): run it without "
                f"{DATA_ENV} to load {task.hub_path} from the hub, or drop it from finetune.tasks")
    has_eval = root is not None and (root / task.local_dir / f"{task.eval_split}.parquet").exists()
    if split == task.train_split and has_eval:
        return (f"{task.name}: no local {split} split ({root / rel} is missing, see the data README); to fine-tune "
                f"on part of {task.eval_split} and score on the rest, set "
                f"finetune.train_from_validation: {{{task.name}: 0.5}}")
    return f"{task.name}: missing data file {root / rel if root else rel} (check {DATA_ENV}; see the data README)"


def check_local_data(task: TaskSpec, ft: "FinetuneSpec") -> None:
    """Raise UserError when a split the task needs under `ft` has no local file (no-op without a data root)."""
    root = data_root()
    if root is None:
        return
    for split in needed_splits(task, ft):
        if not (root / task.local_dir / f"{split}.parquet").exists():
            raise UserError(_missing_message(task, split))


def load_split(task: TaskSpec, split: str):
    """A task split as a `datasets.Dataset`: local Parquet under the data root, else the hub."""
    import datasets  # lazy: ~2 s to import; validate and plan never load a split

    root = data_root()
    if root is not None:
        if not (root / task.local_dir / f"{split}.parquet").exists():
            raise UserError(_missing_message(task, split))
        path = local_file(f"{task.local_dir}/{split}.parquet")
        return datasets.load_dataset("parquet", data_files={split: str(path)}, split=split)
    if task.kind == "zero-shot":  # the hub splits BLiMP into 67 configurations; ablate reads the one local file
        raise UserError(f"{task.name} is read from a local copy only ({task.local_dir}/{split}.parquet): set {DATA_ENV} "
                        f"to the data directory (see the data README)")
    try:
        return datasets.load_dataset(task.hub_path, task.hub_name, split=split)
    except Exception as e:  # offline without a data root, or a hub error
        raise UserError(f"cannot load {task.hub_path}/{task.hub_name} [{split}] from the hub ({e.__class__.__name__}); "
                        f"set {DATA_ENV} to use local files") from None


def split_by_group(columns: Sequence[Sequence[Any]], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Group columns (each one value per example) -> (fine-tune indices, score indices), both sorted.

    Groups are the connected components of "shares a value in some column"; whole groups go to the
    fine-tuning part, in the order of a hash of their content, until it holds `fraction` of the examples.
    """
    columns = [list(c) for c in columns]  # plain lists: a `datasets` column is slow to index one by one
    n = len(columns[0])
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for col in columns:
        first: dict[Any, int] = {}
        for i, v in enumerate(col):
            if v in first:
                parent[find(i)] = find(first[v])
            else:
                first[v] = i
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    groups = list(members.values())

    def content_hash(g: list[int]) -> str:  # independent of row order: the smallest member's values
        key = min(repr(tuple(str(col[i]) for col in columns)) for i in g)
        return hashlib.sha256(f"{SPLIT_SALT}\0{key}".encode()).hexdigest()

    groups.sort(key=content_hash)
    target, taken, train = fraction * n, 0, []
    for g in groups:
        if taken >= target:
            break
        train.extend(g)
        taken += len(g)
    train_idx = np.sort(np.asarray(train, dtype=np.int64))
    eval_idx = np.setdiff1d(np.arange(n), train_idx)
    return train_idx, eval_idx


def task_data(task: TaskSpec, ft: "FinetuneSpec") -> TaskData:
    """The examples to fine-tune on (at most ft.train_size) and the examples to score, for one task."""
    frac = ft.train_from_validation.get(task.name)
    if frac is None:
        train, evaluation = load_split(task, task.train_split), load_split(task, task.eval_split)
        train_name, eval_name = task.train_split, task.eval_split
    else:
        full = load_split(task, task.eval_split)
        train_idx, eval_idx = split_by_group([full[c] for c in task.groups], frac)
        if len(train_idx) == 0 or len(eval_idx) == 0:
            raise UserError(f"{task.name}: train_from_validation {frac} leaves one side of {task.eval_split} empty "
                            f"({len(full)} examples in whole groups of {' / '.join(task.groups)})")
        train, evaluation = full.select(train_idx), full.select(eval_idx)
        share = len(train_idx) / len(full)
        train_name = f"{task.eval_split}[{share:.1%} by {'/'.join(task.groups)}]"
        eval_name = f"{task.eval_split}[other {1 - share:.1%}]"
    order = np.random.default_rng(SUBSET_SEED).permutation(len(train))  # train_size takes its first examples
    if ft.tune_on_train is not None and frac is None:
        # its last tune_on_train examples are scored instead of the validation split, never fine-tuned on; the
        # fine-tuning subset stays the same wherever the split is large enough
        if ft.tune_on_train >= len(train):
            raise UserError(f"{task.name}: finetune.tune_on_train ({ft.tune_on_train}) leaves nothing of its "
                            f"{len(train)} train examples to fine-tune on")
        order, dev = order[: len(train) - ft.tune_on_train], order[len(train) - ft.tune_on_train:]
        evaluation, eval_name = train.select(np.sort(dev)), f"{train_name}[{len(dev)} held out for tuning]"
        train_name = f"{train_name}[{min(len(order), ft.train_size or len(order))}]"
    if ft.train_size is not None and ft.train_size < len(order) or len(order) < len(train):
        train = train.select(np.sort(order[: ft.train_size]))
    return TaskData(train, evaluation, train_name, eval_name, frac is not None)
