"""`ablate gc` lists exactly what no study file produces any more (and removes it with --delete); `ablate ls`
shows a probe's snapshot cell as a snapshot, not as a finished cell. Hand-made stores, nothing trains."""

from __future__ import annotations

from typer.testing import CliRunner

from ablate.cli import app
from ablate.run.gc import orphans
from ablate.run.jobs import cell_identity, cell_labels
from ablate.store import Store, atomic_write_json, atomic_write_text
from ablate.study.cells import expand
from ablate.study.identity import data_cache
from ablate.study.load import load_study

STUDY = """\
name: {name}
description: a micro study
base:
  model: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}
  data: {{vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000,
         format: {fmt}}}
  pretrain: {{steps: 4, batch_size: 8}}
  finetune: {{tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32}}
variants:
  x: {{pretrain: {{mask_prob: 0.15}}}}
baseline: x
seeds: {{pretrain: [0], finetune: [0]}}
"""


def _study(tmp_path, name, fmt="full_sentences"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, fmt=fmt))
    return path


def _write(store: Store, study: str, plan, snapshot_step=None) -> None:
    atomic_write_text(store.study_dir(study) / "study.yaml", plan.study.source)
    atomic_write_json(store.study_dir(study) / "last_run.json", {"scale": plan.study.scale})
    for kind, cell in [("pretrain", c) for c in plan.pretrain] + [("finetune", c) for c in plan.finetune]:
        run = store.pretrain(study, cell.key) if kind == "pretrain" else store.finetune(study, cell.key)
        run.begin(cell_identity(cell), cell_labels(cell))
        if kind == "pretrain" and snapshot_step is not None:
            run.finish({"snapshot": True, "steps": snapshot_step})
        else:
            run.finish({"ok": 1} if kind == "pretrain" else {"metrics": {"accuracy": 0.5}})


def _cache_entry(path, size=100):
    path.mkdir(parents=True, exist_ok=True)
    (path / "data.bin").write_bytes(b"x" * size)


def test_gc_lists_exactly_the_orphans_and_deletes_only_with_delete(tmp_path, tiny_data_root):
    a, b = _study(tmp_path, "a"), _study(tmp_path, "b", fmt="sentence_pair")  # b's batch reads segment_pair's corpus
    store = Store(tmp_path / "results")
    pa, pb = expand(load_study(a, "tiny")), expand(load_study(b, "cpu"))
    _write(store, "a", pa)
    _write(store, "b", pb)
    live = []
    for plan in (pa, pb):
        cache = data_cache(store, plan.pretrain[0].config)
        live += [cache.tokenizer, cache.corpus, *cache.sentences.values()]
    ref_cfg = pb.pretrain[0].config
    ref_cfg = ref_cfg.model_copy(update={"data": ref_cfg.data.model_copy(update={"format": "segment_pair"})})
    live.append(data_cache(store, ref_cfg).corpus)
    for path in live:
        _cache_entry(path)
    expected = {
        store.pretrain("a", "0123456789abcdef").path,  # a key the study no longer has (a setting changed)
        store.finetune("b", "fedcba9876543210").path,
        store.study_dir("gone"),  # a study no file is
        store.cache("tokenizer", "stale0000000000a"),
        store.cache("corpus", "stale0000000000b"),
        store.cache("sentences", "stale0000000000c"),
    }
    for path in expected:
        _cache_entry(path, 1000)
    atomic_write_text(store.study_dir("gone") / "study.yaml", "name: gone\n")
    (store.cache_root / ".lock").touch()
    archive = Store(store.root / "_edition-1")  # an archived edition: a results directory inside, never garbage
    _write(archive, "a", expand(load_study(a, "paper")))
    live.append(archive.root)
    found = orphans(store, [a, b])
    assert {o.path for o in found} == expected
    assert all(o.bytes >= 1000 for o in found)
    before = sorted(p for p in store.root.rglob("*"))
    r = CliRunner().invoke(app, ["gc", str(a), str(b), "--results", str(store.root)])
    assert r.exit_code == 0, r.output
    assert sorted(p for p in store.root.rglob("*")) == before  # a dry run removes nothing
    assert "6 orphans" in r.output and "--delete" in r.output
    for path in expected:
        assert f"would remove {path} (" in r.output
    r = CliRunner().invoke(app, ["gc", str(a), str(b), "--results", str(store.root), "--delete"])
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in expected)
    assert all(p.exists() for p in live) and (store.cache_root / ".lock").exists()
    for plan, name in ((pa, "a"), (pb, "b")):
        assert all(store.pretrain(name, c.key).is_done() for c in plan.pretrain)
        assert all(store.finetune(name, c.key).is_done() for c in plan.finetune)
    assert not (store.root / ".lock").exists()  # the results lock was released
    assert "0 orphans" in CliRunner().invoke(app, ["gc", str(a), str(b), "--results", str(store.root)]).output


def test_gc_keeps_the_cells_of_every_scale(tmp_path, tiny_data_root):
    a = _study(tmp_path, "a")
    store = Store(tmp_path / "results")
    _write(store, "a", expand(load_study(a, "tiny")))
    _write(store, "a", expand(load_study(a, "paper")))
    assert orphans(store, [a]) == []


def test_gc_with_a_bad_study_file_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [\n")
    r = CliRunner().invoke(app, ["gc", str(bad), "--results", str(tmp_path / "results")])
    assert r.exit_code == 2 and r.output.startswith("error: ")


def test_ls_shows_a_snapshot_cell_as_a_snapshot(tmp_path, tiny_data_root):
    probe = _study(tmp_path, "probe")
    store = Store(tmp_path / "results")
    _write(store, "probe", expand(load_study(probe, "cpu")), snapshot_step=9400)
    r = CliRunner().invoke(app, ["ls", "--results", str(store.root)])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "probe (scale cpu): 2 done, 0 failed, 0 pending, 1 snapshots (probes of unfinished runs)"
    from ablate.run.status import plan_rows

    rows, _ = plan_rows(expand(load_study(probe, "cpu")), store)
    assert [r["status"] for r in rows] == ["snapshot (step 9400)", "done", "done"]
