"""Strict study files: no boolean or text where a number is meant, names matched in full, corpus names confined to
the data root, the memory check in `ablate validate`, and every error at the key path and line that wrote it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ablate.cli import app
from ablate.errors import UserError
from ablate.study.load import load_study

GOOD = """\
name: demo
description: a demo study
base:
  data: {format: full_sentences}
  pretrain: {steps: 10}
  finetune:
    tasks: [sst2]
    lr_by_task: {sst2: 0.1}
scales:
  tiny: {pretrain: {steps: 12}}
variants:
  a: {pretrain: {masking: static}}
  b: {}
baseline: a
seeds: {pretrain: [0], finetune: [0, 1]}
"""


def error_of(tmp_path, old: str, new: str) -> str:
    assert old in GOOD, old
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(UserError) as info:
        load_study(path, "tiny")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}:"), msg
    return msg[len(f"{path}:"):]  # "line: key.path: message"


def test_the_good_study_loads(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD)
    spec = load_study(path, "tiny")
    assert spec.seeds.finetune == (0, 1) and spec.variants["b"].pretrain.steps == 12


STRICT = [
    ("finetune: [0, 1]", "finetune: [true]", "seeds.finetune: must be an integer, not a boolean"),
    ("steps: 10}", "steps: 10, static_copies: true}", "base.pretrain.static_copies: must be an integer, not a boolean"),
    ("steps: 12}", "steps: '12'}", "scales.tiny.pretrain.steps: must be an integer, not text"),
    ("b: {}", "b: {pretrain: {batch_size: false}}", "variants.b.pretrain.batch_size: must be an integer"),
    ("b: {}", "b: {finetune: {epochs: true}}", "variants.b.finetune.epochs: must be a number, not a boolean"),
    ("lr_by_task: {sst2: 0.1}", "lr_by_task: {sst2: true}", "base.finetune.lr_by_task: must be a number"),
    ("b: {}", "b: {pretrain: {nsp: 1}}", "variants.b.pretrain.nsp: must be true or false"),
    ("b: {}", "\"b\\n\": {}", "variants.b\\n: variant name 'b\\n' must match"),
    ("name: demo", "name: \"demo\\n\"", "name: study name 'demo\\n' must match"),
]


@pytest.mark.parametrize("old,new,expected", STRICT, ids=[s[1] for s in STRICT])
def test_no_lax_types_or_names(tmp_path, old, new, expected):
    assert expected in error_of(tmp_path, old, new).split(": ", 1)[1]


@pytest.mark.parametrize("corpus", ["/etc", "'../../../../../etc'", "''", "a/../../b", "'./corpus'", "'c\\\\d'"])
def test_corpus_names_are_confined_to_the_data_root(tmp_path, corpus):
    msg = error_of(tmp_path, "{format: full_sentences}", f"{{format: full_sentences, corpus: {corpus}}}")
    assert msg.startswith("4: base.data.corpus: must name a folder under the data root"), msg


@pytest.mark.parametrize("corpus", ["corpus", "more/corpus_2", "c.v1"])
def test_plain_corpus_names_pass(tmp_path, corpus):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.replace("{format: full_sentences}", f"{{format: full_sentences, corpus: {corpus}}}"))
    assert load_study(path, "tiny").variants["a"].data.corpus == corpus


WHERE = [  # an error names the layer and line that wrote the key: base, scale override or variant
    ("{format: full_sentences}", "{format: full_sentencez}", "4: base.data.format: unknown input format"),
    ("tasks: [sst2]", "tasks: [sst2, mrpx]", "7: base.finetune.tasks.1: unknown task 'mrpx'"),
    ("lr_by_task: {sst2: 0.1}", "lr_by_task: {sst3: 0.1}", "8: base.finetune.lr_by_task.sst3: unknown task"),
    ("lr_by_task: {sst2: 0.1}", "lr_by_task: {sst2: 5}", "8: base.finetune.lr_by_task.sst2: learning rate"),
    ("lr_by_task: {sst2: 0.1}", "train_from_validation: {sst2: 0.99}", "8: base.finetune.train_from_validation.sst2"),
    ("steps: 10}", "steps: 10, mask_prob: 2}", "5: base.pretrain.mask_prob: Input should be less than 1"),
    ("tiny: {pretrain: {steps: 12}}", "tiny: {pretrain: {steps: 0}}", "10: scales.tiny.pretrain.steps"),
    ("b: {}", "b: {pretrain: {nsp: true}}", "13: variants.b.pretrain.nsp: pretrain.nsp needs a pair input format"),
    ("{format: full_sentences}", "{format: full_sentences}\n  model: {num_heads: 3}", "5: base.model.num_heads: "),
    ("baseline: a", "baseline: c", "14: baseline: baseline 'c' is not a variant"),
]


@pytest.mark.parametrize("old,new,expected", WHERE, ids=[w[2].split(":")[1].strip() for w in WHERE])
def test_errors_name_the_key_and_line_where_it_was_written(tmp_path, old, new, expected):
    msg = error_of(tmp_path, old, new)
    assert msg.startswith(expected), msg


def test_validate_checks_the_memory_a_step_needs_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr("ablate.run.budget.host_memory", lambda: (16 * 2**30, "available memory"))
    path = tmp_path / "study.yaml"
    path.write_text(GOOD.replace("b: {}", "b: {pretrain: {batch_size: 1000000}}"))
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and f"{path}:13: variants.b.pretrain.batch_size: variant 'b'" in lines[0], r.output
    assert "GiB" in lines[0]
    path.write_text(GOOD)
    assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0


def test_exponents_without_a_dot_are_numbers_not_text():
    """YAML 1.1 reads 3e-3 as text; a study file means the number (YAML 1.2, JSON), and strict types must not refuse it."""
    from ablate.study.yamlio import parse_yaml

    data, _ = parse_yaml("lr: 3e-3\nsteps: 12\nexact: 1.5e-3\nword: 3e\nbig: -2E+2\n", "x.yaml")
    assert data == {"lr": 0.003, "steps": 12, "exact": 0.0015, "word": "3e", "big": -200.0}
