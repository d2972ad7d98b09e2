"""BLiMP (Warstadt et al. 2020) as a zero-shot task: 67 paradigms x 1,000 minimal pairs, no training.

Local data: <data root>/blimp/blimp.parquet (columns UID (paradigm), linguistics_term (phenomenon), pairID,
sentence_good, sentence_bad; see the data README); online: the hub's nyu-mll/blimp. A pair is right when the
model scores the acceptable sentence higher (ablate.train.zeroshot scores them). `pairs_per_paradigm` keeps the
pairs with the smallest pairIDs of every paradigm: the same subset for every model, cheap at small scales.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ablate.tasks import TASKS, TaskSpec

BLIMP = TASKS.register("blimp", TaskSpec(
    name="blimp",
    hub_path="nyu-mll/blimp",
    hub_name=None,
    local_dir="blimp",
    train_split="",  # none: nothing is trained
    eval_split="blimp",
    text_columns=("sentence_good", "sentence_bad"),
    num_labels=0,
    metrics=("blimp_accuracy", "blimp_unigram_accuracy"),
    kind="zero-shot",
    label_column="",
    group_columns=("UID",),
    id_column="pairID",
))
PARADIGM, PHENOMENON, PAIR_ID = "UID", "linguistics_term", "pairID"


def pair_subset(paradigms: np.ndarray, pair_ids: np.ndarray, per_paradigm: Optional[int]) -> np.ndarray:
    """Row indices of the pairs kept: in every paradigm those with the `per_paradigm` smallest pairIDs (all when
    None), in row order. Deterministic: it depends on the data alone."""
    if per_paradigm is None:
        return np.arange(len(pair_ids))
    keep = np.zeros(len(pair_ids), dtype=bool)
    for uid in np.unique(paradigms):
        rows = np.flatnonzero(paradigms == uid)
        keep[rows[np.argsort(pair_ids[rows], kind="stable")[:per_paradigm]]] = True
    return np.flatnonzero(keep)
