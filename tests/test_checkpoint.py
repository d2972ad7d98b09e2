"""The final checkpoint is complete as a hub model (weights, config, tokenizer, model card), written by rename so a
crash never leaves half of it, and `ablate export` copies it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.run.cell import run_cell
from ablate.run.jobs import CellContext, Job
from ablate.run.progress import Reporter
from ablate.store import Store, atomic_write_json
from ablate.study.cells import expand
from ablate.study.load import load_study
from ablate.train import checkpoint

STUDY = """\
name: card
description: one tiny pretraining cell
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 4, batch_size: 8}
  finetune: {tasks: [sst2], train_size: 100, epochs: 1, batch_size: 16, max_len: 32}
variants:
  only: {}
baseline: only
seeds: {pretrain: [3], finetune: [0]}
runtime: {threads: 1, log_every: 2, progress: false}
"""


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One finished tiny pretraining cell in a store (module-scoped: it trains once)."""
    from conftest import write_tiny_data

    tmp = tmp_path_factory.mktemp("ckpt")
    mp = pytest.MonkeyPatch()
    mp.setenv("ABLATE_DATA_DIR", str(write_tiny_data(tmp / "data")))
    path = tmp / "card.yaml"
    path.write_text(STUDY)
    plan = expand(load_study(path, "tiny"))
    store = Store(tmp / "results")
    cell = plan.pretrain[0]
    ctx = CellContext("card", plan.study.runtime, False, {"git_commit": "abc123"})
    assert run_cell(Job("pretrain", cell, 0), ctx, store, Reporter(enabled=False)).status == "ok"
    yield store, cell
    mp.undo()


def test_the_checkpoint_is_complete_and_loads_as_a_hub_model(pretrained):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    store, cell = pretrained
    ckpt = store.pretrain("card", cell.key).checkpoint
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= names
    assert not list(ckpt.parent.glob(".checkpoint*")), "the temporary folder was left behind"
    tok = AutoTokenizer.from_pretrained(str(ckpt))
    assert (tok.mask_token, tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == \
        ("<mask>", "<pad>", "<s>", "</s>", "<unk>")
    assert (tok.mask_token_id, tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (4, 1, 0, 2)
    assert tok.model_max_length == 32
    assert AutoModelForMaskedLM.from_pretrained(str(ckpt)).config.hidden_size == 32
    fill = pipeline("fill-mask", model=str(ckpt))
    out = fill("The cat sat on the <mask>.")
    assert len(out) == 5 and all(isinstance(r["token_str"], str) for r in out)
    assert all(r["token_str"].strip() for r in out), out  # real tokens, not empty strings
    card = (ckpt / "README.md").read_text(encoding="utf-8")
    ppl = json.loads((ckpt.parent / "metrics.json").read_text())["heldout_ppl"]
    for text in ("card", "only", "seed 3", cell.key, f"{ppl:.2f}", "abc123", "dynamic masking", "fill-mask"):
        assert text in card, text


class _Model:
    """A stand-in for any model class: save_pretrained writes part of its files, then the machine 'crashes'."""

    def save_pretrained(self, folder, safe_serialization=True):
        (Path(folder) / "config.json").write_text("{}")
        raise OSError("killed while writing the weights")


class _Trainer:
    model, nsp_head = _Model(), None


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text('{"old": true}')
    (folder / "model.safetensors").write_bytes(b"old weights")
    with pytest.raises(OSError, match="killed"):
        checkpoint.save_final(_Trainer(), folder)
    assert (folder / "config.json").read_text() == '{"old": true}'
    assert (folder / "model.safetensors").read_bytes() == b"old weights"


def test_save_final_replaces_the_folder_without_touching_hard_linked_copies(tmp_path):
    """A copied cell hard-links the checkpoint's files (ablate.run.reuse): rewriting them in place would change
    the other study's weights too."""
    import os

    class Model:
        def save_pretrained(self, folder, safe_serialization=True):
            (Path(folder) / "model.safetensors").write_bytes(b"new")

    class Trainer:
        model, nsp_head = Model(), None

    folder, other = tmp_path / "checkpoint", tmp_path / "other"
    folder.mkdir(), other.mkdir()
    (folder / "model.safetensors").write_bytes(b"old")
    os.link(folder / "model.safetensors", other / "model.safetensors")
    checkpoint.save_final(Trainer(), folder, card="# card\n")
    assert (folder / "model.safetensors").read_bytes() == b"new" and (folder / "README.md").exists()
    assert (other / "model.safetensors").read_bytes() == b"old"


def _cli(*args):
    return CliRunner().invoke(app, list(args))


def test_export_copies_the_complete_checkpoint(pretrained, tmp_path):
    from transformers import AutoTokenizer

    store, cell = pretrained
    out = tmp_path / "exported"
    r = _cli("export", cell.key[:6], str(out), "--results", str(store.root))
    assert r.exit_code == 0, r.output
    assert cell.key in r.output
    src = store.pretrain("card", cell.key).checkpoint
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    assert (out / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert AutoTokenizer.from_pretrained(str(out)).mask_token == "<mask>"
    r = _cli("export", cell.key, str(out), "--results", str(store.root))  # never over a folder with files
    assert r.exit_code == 2 and "not an empty folder" in r.output


def test_export_errors_exit_2_with_one_line(tmp_path):
    store = Store(tmp_path / "results")
    for study, key, weights in (("a", "abc111", True), ("a", "abc222", True), ("b", "fff000", False)):
        run = store.pretrain(study, key)
        run.path.mkdir(parents=True)
        atomic_write_json(run.metrics_path, {"heldout_ppl": 9.0})
        if weights:
            run.checkpoint.mkdir()
            (run.checkpoint / "model.safetensors").write_bytes(b"w")
    ft = store.finetune("a", "ddd999").path
    ft.mkdir(parents=True)
    pending = store.pretrain("a", "eee000").path
    pending.mkdir(parents=True)
    root = str(store.root)
    for cell, message in (("zzz", "no pretraining cell 'zzz'"), ("abc", "matches 2 pretraining cells"),
                          ("fff", "has no weights here"), ("ddd", "fine-tuning cell"), ("eee", "not finished")):
        r = _cli("export", cell, str(tmp_path / f"out-{cell}"), "--results", root)
        assert r.exit_code == 2, (cell, r.output)
        assert message in r.output and len(r.output.strip().splitlines()) == 1, r.output
        assert not (tmp_path / f"out-{cell}").exists()
    assert _cli("export", "abc1", str(tmp_path / "ok"), "--results", root).exit_code == 0
    assert (tmp_path / "ok" / "model.safetensors").read_bytes() == b"w"


def test_a_kill_while_saving_the_resumable_state_leaves_no_half_file_a_reader_opens(tmp_path, monkeypatch):
    """The resumable state is written into a dot-named folder and renamed in: a kill mid-write leaves the previous
    state whole under resume/ and the half-written one only under a dot-name, which nothing reading a run opens
    (CI once read a kill's empty resume.tmp/state.json); discard removes both."""
    import torch

    class _Sched:
        def state_dict(self):
            return {"last_epoch": 1}

    class _Rng:
        def state(self):
            return [1, 2]

    class Trainer:
        sched, rng = _Sched(), _Rng()

    monkeypatch.setattr(checkpoint, "_tensors", lambda trainer: ({"model.w": torch.zeros(2)}, []))
    folder = tmp_path / "run" / "resume"
    folder.parent.mkdir()
    checkpoint.save(Trainer(), folder, {"step": 10})

    def killed(obj, f):
        f.write('{"version": ')
        raise KeyboardInterrupt("killed while writing the state")

    monkeypatch.setattr(checkpoint.json, "dump", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(Trainer(), folder, {"step": 20})
    readable = [p for p in folder.parent.rglob("*.json") if not any(
        part.startswith(".") for part in p.relative_to(folder.parent).parts)]
    assert readable == [folder / "state.json"]
    assert json.loads((folder / "state.json").read_text())["counters"] == {"step": 10}
    assert (folder.parent / ".resume.tmp" / "state.json").exists()  # the half-written one, under a dot-name
    checkpoint.discard(folder)
    assert list(folder.parent.iterdir()) == []


def test_the_tokenizer_cache_never_holds_a_half_written_hf_copy(tmp_path, monkeypatch):
    """A kill while the transformers copy is written leaves it under a dot-name only, and no tokenizer.json (the
    entry is not complete, so the next run trains it again)."""
    from conftest import write_tiny_data
    from transformers import PreTrainedTokenizerFast

    from ablate.data.tokenizer import load_tokenizer
    from ablate.study.spec import DataSpec

    monkeypatch.setenv("ABLATE_DATA_DIR", str(write_tiny_data(tmp_path / "data")))
    data = DataSpec(vocab_size=400, tokenizer_train_chars=20000)
    real = PreTrainedTokenizerFast.save_pretrained

    def killed(self, folder, *args, **kwargs):
        (Path(folder)).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "tokenizer_config.json").write_text("")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", killed)
    folder = tmp_path / "tok"
    with pytest.raises(KeyboardInterrupt):
        load_tokenizer(folder, data, {"what": "test"})
    assert not (folder / "hf").exists() and not (folder / "tokenizer.json").exists()
    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", real)
    load_tokenizer(folder, data, {"what": "test"})
    assert json.loads((folder / "hf" / "tokenizer_config.json").read_text())
    assert not (folder / ".hf.tmp").exists()
