"""Cell identity: stable hashes that ignore runtime settings and move with any science setting."""

from __future__ import annotations

from ablate.study.cells import expand
from ablate.study.identity import stable_hash
from ablate.study.load import load_study

BASE = """\
name: demo
description: d
variants:
  a: {}
  b: {pretrain: {masking: static}}
  c: {finetune: {lr: 3.0e-4}}
baseline: a
seeds: {pretrain: [0], finetune: [0, 1]}
"""


def plan_of(tmp_path, text: str, name: str = "s.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return expand(load_study(p, "tiny"))


def keys(plan):
    return {c.label: c.key for c in plan.pretrain}, {c.label: c.key for c in plan.finetune}


def test_hash_is_stable_across_loads(tmp_path):
    assert keys(plan_of(tmp_path, BASE)) == keys(plan_of(tmp_path, BASE, "t.yaml"))


def test_hash_of_known_object_is_fixed():
    # A golden value: if this changes, every cached result would silently be orphaned.
    assert stable_hash({"a": 1, "b": [1, 2]}) == "8baa73198470c7bb"
    assert stable_hash({"b": [1, 2], "a": 1}) == "8baa73198470c7bb"  # key order does not matter
    assert len(stable_hash({"x": 1})) == 16


def test_runtime_settings_do_not_move_the_hash(tmp_path):
    a = keys(plan_of(tmp_path, BASE))
    b = keys(plan_of(tmp_path, BASE + "runtime: {threads: 1, log_every: 7, device: cpu, progress: false}\n", "r.yaml"))
    assert a == b


def test_science_settings_move_the_hash(tmp_path):
    pre, ft = keys(plan_of(tmp_path, BASE))
    assert pre["a/seed0"] != pre["b/seed0"]  # masking differs
    changed, _ = keys(plan_of(tmp_path, BASE.replace("d\n", "d\nbase: {model: {dropout: 0.2}}\n", 1), "m.yaml"))
    assert changed["a/seed0"] != pre["a/seed0"]
    seeds, _ = keys(plan_of(tmp_path, BASE.replace("pretrain: [0]", "pretrain: [1]"), "s2.yaml"))
    assert "a/seed1" in seeds and seeds["a/seed1"] != pre["a/seed0"]


def test_finetune_only_variants_share_the_checkpoint(tmp_path):
    plan = plan_of(tmp_path, BASE)
    pre, ft = keys(plan)
    assert pre["c/seed0"] == pre["a/seed0"]  # c differs only in fine-tuning
    assert ft["c/pt0/sst2/ft0"] != ft["a/pt0/sst2/ft0"]
    assert ft["a/pt0/sst2/ft0"] != ft["a/pt0/sst2/ft1"]


def test_description_does_not_move_the_hash(tmp_path):
    a = keys(plan_of(tmp_path, BASE))
    b = keys(plan_of(tmp_path, BASE.replace("description: d", "description: something else"), "d.yaml"))
    assert a == b


def test_a_corrected_measure_moves_only_its_tokenizers_keys():
    """METRIC_VERSIONS: WordPiece cells measured before bits per character stopped counting "##" get new keys,
    and byte-level BPE cells (every other study's) keep theirs."""
    from ablate.study.identity import METRIC_VERSIONS, pretrain_identity
    from ablate.study.spec import Config, DataSpec

    assert METRIC_VERSIONS["wordpiece"] >= 2
    bpe, wp = (pretrain_identity(Config(data=DataSpec(tokenizer=k)), 0) for k in ("byte_bpe", "wordpiece"))
    assert "metric_version" not in bpe  # unchanged keys: the byte-level measure did not change
    assert wp["metric_version"] == METRIC_VERSIONS["wordpiece"]
    old = {k: v for k, v in wp.items() if k != "metric_version"}
    assert stable_hash(old) != stable_hash(wp)
