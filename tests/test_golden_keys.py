"""Cell and cache keys are the identity of every committed result: a refactor must never move one.

tests/golden/cache_keys.json was written by the code before the package moved into its stage folders (commit
3346032), and so was cell_keys.json, whose fine-tuning keys were then moved on purpose, once: by the fine-tuning
input fixes and the second edition's tasks (SST-2, CoLA, STS-B, BLiMP) in the study files; and the `cpu` keys moved
once more, on purpose, when the `cpu` preset took the recipe search's best (issue 26), the first edition's preset
keeping its keys as `cpu-v1` (and `gpu` was added). The tokenizer study then gained a random-init control per
vocabulary (`random-init:<variant>`): cells added, no key moved; and the `cpu` preset's fine-tuning took dropout 0.1
and the lrs tuned at it (fine-tuning keys of `cpu` only, BLiMP's and every pretraining key kept). Every study file at every
scale must expand to exactly those cells and keys. Every cell of the first edition, expanded from the study file
recorded with it (results/_edition-1/<study>/study.yaml, `cpu-v1`), must find its finished run there; and every
study of the second edition in results/ must be the current study file, every cell of it done, so that
`ablate run studies/<study>.yaml` on a fresh clone does no work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablate.run.status import plan_rows, study_plan
from ablate.store import Store
from ablate.study.cells import expand
from ablate.study.identity import corpus_identity, sentences_identity, stable_hash, tokenizer_identity
from ablate.study.load import load_study
from ablate.study.spec import SCALES

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
STUDIES = sorted((REPO / "studies").glob("*.yaml"))
COMMITTED = ("masking", "input_format", "batch_size", "data_size", "tokenizer")


def test_golden_files_cover_every_study_at_every_scale():
    golden = json.loads((GOLDEN / "cell_keys.json").read_text())
    assert set(golden) == {f"{p.stem}@{s}" for p in STUDIES for s in SCALES}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
@pytest.mark.parametrize("scale", SCALES)
def test_cell_keys_unchanged(path, scale):
    golden = json.loads((GOLDEN / "cell_keys.json").read_text())[f"{path.stem}@{scale}"]
    plan = expand(load_study(path, scale))
    assert {c.label: c.key for c in plan.pretrain} == golden["pretrain"]
    assert {c.label: c.key for c in plan.finetune} == golden["finetune"]


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_cache_keys_unchanged(path):
    golden = json.loads((GOLDEN / "cache_keys.json").read_text())
    for scale in SCALES:
        for variant, cfg in load_study(path, scale).variants.items():
            want = golden[f"{path.stem}@{scale}/{variant}"]
            assert stable_hash(tokenizer_identity(cfg)) == want["tokenizer"]
            assert stable_hash(corpus_identity(cfg)) == want["corpus"]
            assert {s: stable_hash(sentences_identity(cfg, s)) for s in ("train", "heldout")} == want["sentences"]


@pytest.mark.parametrize("study", COMMITTED)
def test_every_first_edition_cell_is_done(study):
    store = Store(REPO / "results" / "_edition-1")
    if not store.study_dir(study).is_dir():
        pytest.skip(f"results/_edition-1/{study} is not in this checkout")
    plan = study_plan(store, study)  # the study file as recorded with its results
    rows, _ = plan_rows(plan, store)
    assert rows and {r["status"] for r in rows} == {"done"}, [r for r in rows if r["status"] != "done"][:3]
    # the pretraining of the current study file at the first edition's preset is the same: only its fine-tuning
    # tasks and inputs moved on
    current = expand(load_study(REPO / "studies" / f"{study}.yaml", "cpu-v1"))
    assert {c.key for c in current.pretrain} == {c.key for c in plan.pretrain}


@pytest.mark.parametrize("study", COMMITTED)
def test_every_second_edition_study_is_the_current_file_and_done(study):
    store = Store(REPO / "results")
    if not store.study_dir(study).is_dir():
        pytest.skip(f"results/{study}: its second edition is not committed yet")
    recorded = (store.study_dir(study) / "study.yaml").read_text(encoding="utf-8")
    assert recorded == (REPO / "studies" / f"{study}.yaml").read_text(encoding="utf-8"), \
        f"results/{study}/study.yaml is not studies/{study}.yaml: rerun the study, or restore the file"
    plan = expand(load_study(REPO / "studies" / f"{study}.yaml"))
    assert plan.study.scale == "cpu"
    rows, _ = plan_rows(plan, store)
    assert rows and {r["status"] for r in rows} == {"done"}, [r for r in rows if r["status"] != "done"][:3]
