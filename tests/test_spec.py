"""Study files: every shipped study loads at every scale; bad input is one line naming file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import UserError
from ablate.study.cells import RANDOM_INIT, expand
from ablate.study.load import load_study
from ablate.study.spec import SCALES

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))

GOOD = """\
name: demo
description: a demo study
base:
  pretrain: {steps: 10}
variants:
  a: {}
  b:
    pretrain: {masking: static}
baseline: a
seeds: {pretrain: [0, 1], finetune: [0]}
"""


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
@pytest.mark.parametrize("scale", SCALES)
def test_shipped_studies_load_and_expand(path, scale):
    spec = load_study(path, scale)
    plan = expand(spec)
    assert spec.scale == scale
    assert len(plan.pretrain) == len(spec.variants) * len(spec.seeds.pretrain)
    assert plan.finetune, "every study fine-tunes"
    assert spec.baseline in spec.variants


def test_there_are_studies():
    assert any(p.stem == "masking" for p in STUDIES)


def test_merge_order_variant_wins(tmp_path):
    spec = load_study(write(tmp_path, GOOD), "tiny")
    assert spec.variants["a"].pretrain.steps == 10  # base beats the scale preset
    assert spec.variants["b"].pretrain.masking == "static"
    assert spec.variants["a"].pretrain.masking == "dynamic"
    assert spec.variants["a"].model.hidden_size == 64  # from the tiny preset


def test_specs_are_frozen(tmp_path):
    spec = load_study(write(tmp_path, GOOD), "tiny")
    with pytest.raises(Exception):
        spec.variants["a"].pretrain.steps = 5


def test_random_init_control_uses_baseline(tmp_path):
    plan = expand(load_study(write(tmp_path, GOOD), "tiny"))
    ctrl = [c for c in plan.finetune if c.variant == RANDOM_INIT]
    assert ctrl and all(c.pretrain_key is None for c in ctrl)
    assert len(ctrl) == len(plan.study.variants["a"].finetune.tasks) * 1


def test_a_random_init_control_per_vocabulary_and_the_baselines_keys_stay(tmp_path):
    from ablate.study.cells import control_variants, controls_of

    vocabularies = GOOD.replace("  b:\n    pretrain: {masking: static}\n", (
        "  b:\n    data: {tokenizer: wordpiece}\n"
        "  c:\n    data: {vocab_size: 512}\n"
        "  d:\n    data: {tokenizer: wordpiece}\n    pretrain: {masking: static}\n"))
    assert vocabularies != GOOD
    spec = load_study(write(tmp_path, vocabularies), "tiny")
    assert list(spec.variants) == ["a", "b", "c", "d"]  # b and d: wordpiece; c: byte BPE at another size
    assert controls_of(spec) == {"a": RANDOM_INIT, "b": f"{RANDOM_INIT}:b", "c": f"{RANDOM_INIT}:c",
                                 "d": f"{RANDOM_INIT}:b"}
    assert control_variants(spec) == {RANDOM_INIT: "a", f"{RANDOM_INIT}:b": "b", f"{RANDOM_INIT}:c": "c"}
    plan = expand(spec)
    random = [c for c in plan.finetune if c.pretrain_key is None]
    assert sorted({c.variant for c in random}) == [RANDOM_INIT, f"{RANDOM_INIT}:b", f"{RANDOM_INIT}:c"]
    assert len(random) == 3 * len(spec.variants["a"].finetune.tasks)  # one seed each
    by_name = {c.variant: c for c in random}
    assert by_name[f"{RANDOM_INIT}:b"].config.data.tokenizer == "wordpiece"
    assert by_name[f"{RANDOM_INIT}:c"].config.data.vocab_size == 512
    assert len({c.key for c in random}) == len(random)  # each vocabulary its own model
    one_vocabulary = expand(load_study(write(tmp_path, GOOD), "tiny"))  # the baseline's control: the same cells
    assert {c.key for c in random if c.variant == RANDOM_INIT} == \
        {c.key for c in one_vocabulary.finetune if c.pretrain_key is None}


BAD = [
    # (replace this, with this, expected fragments of the one-line error)
    ("  pretrain: {steps: 10}", "  pretrain: {stepz: 10}", ["base", "stepz", "unknown key", ":4"]),
    ("  pretrain: {steps: 10}", "  pretrain: {steps: ten}", ["pretrain.steps", "integer"]),
    ("  pretrain: {steps: 10}", "  pretrain: {steps: -3}", ["pretrain.steps", "greater than or equal"]),
    ("    pretrain: {masking: static}", "    pretrain: {masking: sometimes}", ["variants.b.pretrain.masking", "static", ":8"]),
    ("baseline: a", "baseline: c", ["baseline", "'c'"]),
    ("name: demo", "name: 'bad name!'", ["name"]),
    ("seeds: {pretrain: [0, 1], finetune: [0]}", "seeds: {pretrain: [], finetune: [0]}", ["seeds.pretrain", "at least one"]),
    ("  pretrain: {steps: 10}", "  finetune: {tasks: [sst3]}", ["sst3", "did you mean 'sst2'"]),
    ("  pretrain: {steps: 10}", "  model: {hidden_size: 30, num_heads: 4}", ["num_heads", "divide"]),
    ("variants:", "surprise: 1\nvariants:", ["surprise", "unknown key"]),
    ("  a: {}", "  a: {}\n  a: {}", ["duplicate key", "variants.a"]),
    ("  pretrain: {steps: 10}", "  pretrain: {steps: [10", ["not valid YAML"]),
    ("  pretrain: {steps: 10}", "  pretrain: {nsp: true}", ["nsp", "pair input format"]),
]


@pytest.mark.parametrize("old,new,fragments", BAD, ids=[b[1].strip()[:30] for b in BAD])
def test_bad_input_is_one_clear_line(tmp_path, old, new, fragments):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(UserError) as info:
        load_study(path, "tiny")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    for f in fragments:
        assert f in msg, (f, msg)


def test_unknown_scale(tmp_path):
    with pytest.raises(UserError, match="unknown scale 'huge'"):
        load_study(write(tmp_path, GOOD), "huge")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such study file"):
        load_study(tmp_path / "nope.yaml")


def test_top_level_must_be_mapping(tmp_path):
    with pytest.raises(UserError, match="mapping"):
        load_study(write(tmp_path, "- a\n- b\n"))


def test_yaml_tags_are_refused(tmp_path):
    """Only the safe loader: a python tag is a YAML error, never executed."""
    with pytest.raises(UserError, match="not valid YAML"):
        load_study(write(tmp_path, GOOD + "x: !!python/object/apply:os.system ['echo hi']\n"))
