"""Finished cells are checked whenever they are read: a truncated, edited or malformed metrics.json is named in a
warning and counts as not done (plan, ls, report, run), never trusted and never crashed on; a file from before
digests is read when it has a cell's shape. `ablate ls` counts every status `ablate plan` shows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.analysis.results import collect
from ablate.cli import app
from ablate.run.jobs import cell_identity, jobs
from ablate.run.status import plan_rows, study_plan, study_status
from ablate.store import DIGEST_KEY, Store, atomic_write_json, read_json
from ablate.study.cells import expand
from ablate.study.load import load_study
from ablate.tasks import TASKS

MASKING = Path(__file__).resolve().parents[1] / "studies" / "masking.yaml"
runner = CliRunner()


def finished_store(root: Path, name: str = "masking") -> Store:
    """The masking study at tiny scale, every cell finished with made-up metrics (and no weights, as in a clone)."""
    store = Store(root)
    folder = store.study_dir(name)
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(MASKING.read_text().replace("name: masking", f"name: {name}"))
    atomic_write_json(folder / "last_run.json", {"scale": "tiny", "study_file": "studies/masking.yaml"})
    plan = expand(load_study(folder / "study.yaml", "tiny"))
    for cell in plan.pretrain:
        run = store.pretrain(name, cell.key)
        run.begin(cell_identity(cell), {"variant": cell.variant})
        run.finish({"heldout_ppl": 300.0, "steps": 50, "wall_s": 30.0, "flops": 1e12})
    for cell in plan.finetune:
        run = store.finetune(name, cell.key)
        run.begin(cell_identity(cell), {"variant": cell.variant})
        run.finish({"metrics": {m: 0.7 for m in TASKS.get(cell.task).metrics}, "wall_s": 5.0})
    return store


def statuses(store: Store, name: str = "masking") -> dict[str, str]:
    rows, _ = plan_rows(study_plan(store, name), store)
    return {r["key"]: r["status"] for r in rows}


def test_a_finished_cell_carries_a_digest_of_its_metrics(tmp_path):
    store = finished_store(tmp_path)
    plan = study_plan(store, "masking")
    run = store.pretrain("masking", plan.pretrain[0].key)
    assert DIGEST_KEY in read_json(run.metrics_path)
    assert run.metrics() == {"heldout_ppl": 300.0, "steps": 50, "wall_s": 30.0, "flops": 1e12}
    assert set(statuses(store).values()) == {"done"}


DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "edited": lambda text: text.replace("0.7", "0.9", 1).replace("300.0", "3.0", 1),
    "empty object": lambda text: "{}",
    "a list": lambda text: "[1, 2]",
    "not UTF-8": lambda text: "\udcff",
    "no scores": lambda text: json.dumps({"wall_s": 1.0}),
}


CASES = [(stage, d) for stage in ("pretrain", "finetune") for d in DAMAGE if (stage, d) != ("pretrain", "no scores")]


@pytest.mark.parametrize("stage,damage", CASES, ids=[f"{s}-{d}" for s, d in CASES])
def test_a_damaged_cell_is_named_and_not_done_everywhere(tmp_path, capsys, damage, stage):
    store = finished_store(tmp_path)
    plan = study_plan(store, "masking")
    cell = plan.pretrain[0] if stage == "pretrain" else plan.finetune[-1]
    run = store.pretrain("masking", cell.key) if stage == "pretrain" else store.finetune("masking", cell.key)
    text = DAMAGE[damage](run.metrics_path.read_text())
    if damage == "not UTF-8":
        run.metrics_path.write_bytes(b"{\"metrics\": \"caf\xe9\"}")
    else:
        run.metrics_path.write_text(text)
    assert not run.is_done() and run.metrics() is None
    assert str(run.metrics_path) in capsys.readouterr().err  # a warning line names the file
    assert statuses(store)[cell.key] != "done"  # plan
    results = collect(store, plan)  # report: pending, the right n, no crash
    assert results.counts["pending"] >= 1
    assert results.counts["done"] == len(plan.pretrain) + len(plan.finetune) - 1
    assert cell.key in {j.key for j in jobs(plan, store, force=False)}  # run runs it again
    r = runner.invoke(app, ["ls", "--results", str(tmp_path)])
    assert r.exit_code == 0 and "1 pending" in r.stdout, r.output
    if damage in ("truncated", "empty object", "a list"):  # a report takes seconds: the ones that crashed it
        r = runner.invoke(app, ["report", "--results", str(tmp_path), "--out", str(tmp_path / "rep")])
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output


def test_a_cell_without_a_digest_of_the_right_shape_is_done(tmp_path):
    """Results committed before digests (results/) read as they did."""
    store = finished_store(tmp_path)
    plan = study_plan(store, "masking")
    for cell, run in ((plan.pretrain[0], store.pretrain("masking", plan.pretrain[0].key)),
                      (plan.finetune[0], store.finetune("masking", plan.finetune[0].key))):
        legacy = {k: v for k, v in read_json(run.metrics_path).items() if k != DIGEST_KEY}
        run.metrics_path.write_text(json.dumps(legacy))
        assert run.is_done() and run.metrics() == legacy
    assert set(statuses(store).values()) == {"done"}


def test_ls_counts_weights_lost_and_cells_to_copy(tmp_path):
    store = finished_store(tmp_path)
    plan = study_plan(store, "masking")
    ft = plan.finetunes_of(plan.pretrain[0].key)[0]
    store.finetune("masking", ft.key).reset()  # a fine-tune pending, its checkpoint's weights gone
    assert statuses(store)[plan.pretrain[0].key] == "weights lost"
    other = finished_store(tmp_path / "more", name="other")
    shutil.copytree(other.study_dir("other"), tmp_path / "other")
    store.finetune("masking", ft.key).reset()
    assert statuses(store)[ft.key] == "in other"  # finished there, with the same identity
    counts = study_status(store, "masking")
    assert counts["weights lost"] == 1 and counts["to copy"] == 1
    r = runner.invoke(app, ["ls", "--results", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "masking (scale tiny):" in r.stdout and "1 weights lost, 1 to copy" in r.stdout, r.stdout
