"""The other axes: equal-compute batch ladder, nested data sizes, longer training, tokenizers, bits per character."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ablate.run import pipeline
from ablate.data.documents import iter_documents
from ablate.run.prepare import sentences_for
from ablate.data.tokenizer import token_char_lengths
from ablate.run.prepare import tokenizer_for
from ablate.study.cells import expand
from ablate.train.pretrain import bits_per_character
from ablate.study.load import load_study
from ablate.study.spec import SCALES, Config, DataSpec
from ablate.store import Store

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.mark.parametrize("scale", SCALES)
def test_batch_ladder_is_equal_compute(scale):
    spec = load_study(STUDIES / "batch_size.yaml", scale)
    rungs = {name: cfg.pretrain for name, cfg in spec.variants.items()}
    sequences = {name: p.total_batch * p.total_steps for name, p in rungs.items()}
    biggest = max(p.total_batch for p in rungs.values())
    assert max(sequences.values()) - min(sequences.values()) < biggest  # equal within one batch
    assert len({p.total_batch for p in rungs.values()}) == len(rungs)  # the rungs differ in batch size
    assert len({p.peak_lr for p in rungs.values()}) == len(rungs)  # each rung has its own learning rate


def test_data_size_study_nests_and_trains_longer():
    spec = load_study(STUDIES / "data_size.yaml", "cpu")
    v = spec.variants
    budgets = [v[n].data.train_token_budget for n in ("data_25", "data_50", "data_100")]
    assert budgets == sorted(budgets) and budgets[0] < budgets[-1]
    assert v["data_100_steps_x2"].pretrain.total_steps == 2 * v["data_100"].pretrain.total_steps
    assert v["data_100_steps_x2"].data == v["data_100"].data  # same data, longer training


def small(**data) -> Config:
    return Config(data=DataSpec(vocab_size=400, tokenizer_train_chars=20_000, max_len=32, heldout_tokens=1000, **data))


def test_data_fractions_are_nested_prefixes(tiny_data_root, tmp_path):
    store = Store(tmp_path / "r")
    parts = [sentences_for(store, small(train_tokens=6000, data_fraction=f), "train") for f in (0.25, 0.5, 1.0)]
    sizes = [len(p.tokens) for p in parts]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for a, b in zip(parts, parts[1:]):
        assert np.array_equal(a.tokens, b.tokens[: len(a.tokens)])
    whole = sentences_for(store, small(train_tokens=None), "train")
    half = sentences_for(store, small(train_tokens=None, data_fraction=0.5), "train")
    assert len(half.tokens) < len(whole.tokens)
    assert np.array_equal(half.tokens, whole.tokens[: len(half.tokens)])


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece"])
def test_tokenizers_round_trip(tiny_data_root, tmp_path, kind):
    tok = tokenizer_for(Store(tmp_path / "r"), small(tokenizer=kind))
    text = "The old king rode to the city by the sea."
    ids = tok.encode(text, add_special_tokens=False).ids
    assert 3 not in ids  # no <unk> on text like the training text
    decoded = tok.decode(ids)
    assert decoded.replace(" ", "") == text.replace(" ", "")
    if kind == "byte_bpe":
        assert decoded.strip() == text  # byte-level BPE is lossless
    pair = tok.encode("a b", "c d").ids
    assert pair[0] == 0 and pair[-1] == 2 and pair.count(2) == 3  # same <s> A </s></s> B </s> layout


TRAIN_IN_SUBPROCESS = """
import sys
from pathlib import Path
from ablate.run.prepare import tokenizer_for
from ablate.study.spec import Config
from ablate.store import Store
tokenizer_for(Store(Path(sys.argv[2])), Config.model_validate_json(sys.argv[1]))
"""


@pytest.mark.parametrize("kind", ["byte_bpe", "wordpiece"])
def test_tokenizer_training_is_the_same_in_every_process(tiny_data_root, tmp_path, kind):
    # WordPiece's own trainer numbers (and on a small corpus picks) its pieces differently from one process to the
    # next; ablate trains it twice, the second time from a fixed continuation alphabet, and renumbers the result
    import os
    import subprocess
    import sys

    files = []
    for i in range(3):
        env = {**os.environ, "PYTHONHASHSEED": str(i)}
        subprocess.run([sys.executable, "-c", TRAIN_IN_SUBPROCESS, small(tokenizer=kind).model_dump_json(),
                        str(tmp_path / f"r{i}")], env=env, check=True, cwd=tmp_path)
        (path,) = (tmp_path / f"r{i}").glob("_cache/tokenizer/*/tokenizer.json")
        files.append(path.read_bytes())
    assert files[0] == files[1] == files[2]


def test_canonical_ids_keep_the_tokens_and_put_specials_first():
    from ablate.data.tokenizer import canonical_ids
    from ablate.data.vocab import SPECIALS

    vocab = {"##b": 0, "<pad>": 4, "a": 2, "<s>": 3, "</s>": 1, "<unk>": 5, "<mask>": 6, "##a": 7}
    ids = canonical_ids(vocab)
    assert set(ids) == set(vocab) and sorted(ids.values()) == list(range(len(vocab)))
    assert [ids[s] for s in SPECIALS] == list(range(len(SPECIALS)))
    assert canonical_ids(dict(reversed(list(vocab.items())))) == ids  # whatever order they came in


def test_token_char_lengths_count_non_space_characters(tiny_data_root, tmp_path):
    store = Store(tmp_path / "r")
    for kind in ("byte_bpe", "wordpiece"):
        tok = tokenizer_for(store, small(tokenizer=kind))
        lengths = token_char_lengths(tok)
        assert (lengths[:5] == 0).all()
        words = next(iter_documents(small().data.corpus, "train")).split()[:40]  # the training alphabet
        text = " ".join(words + ["".join(words[i:i + 3]) for i in range(0, 30, 3)])  # compounds split into pieces
        enc = tok.encode(text, add_special_tokens=False)
        pieces = [(i, text[a:b]) for i, (a, b) in zip(enc.ids, enc.offsets) if i != 3]  # <unk> counts 0
        assert len(pieces) > 50
        if kind == "wordpiece":
            assert any(tok.id_to_token(i).startswith("##") for i, _ in pieces)  # counted without their "##"
        assert [int(lengths[i]) for i, _ in pieces] == [len(p.replace(" ", "")) for _, p in pieces], kind


def test_bits_per_character_by_hand():
    # two tokens of 3 and 5 characters with probabilities 1/2 and 1/8: 1 + 3 bits over 8 characters
    nats = -math.log(0.5) - math.log(0.125)
    assert bits_per_character(nats, 8) == pytest.approx(0.5)


LADDER = """\
name: ladder
description: a micro batch-size ladder
base:
  model: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}
  data: {vocab_size: 400, tokenizer_train_chars: 20000, max_len: 32, train_tokens: 3000, heldout_tokens: 1000}
  pretrain: {steps: 16, batch_size: 4}
  finetune: {tasks: [sst2], train_size: 50, epochs: 1, random_init_control: false}
variants:
  x1: {pretrain: {batch_multiplier: 1}}
  x4: {pretrain: {batch_multiplier: 4, lr_multiplier: 2.0, micro_batch_size: 6}}
baseline: x1
seeds: {pretrain: [0], finetune: [0]}
runtime: {threads: 1, progress: false}
"""


def test_ladder_runs_with_accumulation_and_records_compute(tiny_data_root, tmp_path):
    path = tmp_path / "ladder.yaml"
    path.write_text(LADDER)
    plan = expand(load_study(path, "tiny"))
    store = Store(tmp_path / "r")
    assert pipeline.run(plan, store)["failed"] == 0
    m = {c.variant: store.pretrain("ladder", c.key).metrics() for c in plan.pretrain}
    assert m["x1"]["steps"] == 16 and m["x4"]["steps"] == 4
    assert m["x1"]["sequences_per_step"] == 4 and m["x4"]["sequences_per_step"] == 16
    assert abs(m["x1"]["tokens_seen"] - m["x4"]["tokens_seen"]) < 16 * 32  # within one batch
    for metrics in m.values():
        for key in ("flops", "wall_s", "tokens_per_s", "peak_memory_mb", "heldout_bpc"):
            assert metrics[key] > 0, key
