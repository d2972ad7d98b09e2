"""BLiMP as a zero-shot task: pseudo-log-likelihood scoring, ties, the pair subset, the unigram baseline, and the
cells a study gets for it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import needs_real_data

from ablate.data.vocab import MASK
from ablate.metrics import compute_module
from ablate.model import build_mlm
from ablate.run.prepare import tokenizer_for
from ablate.store import Store
from ablate.study.cells import RANDOM_INIT, expand
from ablate.study.identity import finetune_identity
from ablate.study.load import load_study
from ablate.study.spec import Config, DataSpec, ModelSpec
from ablate.tasks.blimp import pair_subset
from ablate.train.zeroshot import masked_copies, pseudo_log_likelihoods, unigram_log_likelihoods

SENTENCES = ["The cat sat by the riverbank.", "Queens sang.", "A stonehouse stood on the hillside of the old city."]


@pytest.fixture
def tok(tiny_data_root, tmp_path):
    cfg = Config(data=DataSpec(vocab_size=300, tokenizer_train_chars=20_000, max_len=32, heldout_tokens=1000))
    return tokenizer_for(Store(tmp_path / "results"), cfg)


def direct_pll(mlm, ids: list[int], words: list, word_l2r: bool) -> float:
    """The straightforward computation: one masked copy per forward, transformers' own forward and head."""
    total = 0.0
    for i, w in enumerate(words):
        if w is None:
            continue
        x = torch.tensor([ids])
        x[0, i] = MASK
        if word_l2r:
            j = i + 1
            while j < len(ids) and words[j] == w:
                x[0, j] = MASK
                j += 1
        with torch.no_grad():
            total += float(torch.log_softmax(mlm(input_ids=x).logits[0, i].double(), -1)[ids[i]])
    return total


@pytest.mark.parametrize("word_l2r", [True, False])
def test_pll_equals_one_copy_per_forward(tok, word_l2r):
    torch.manual_seed(0)
    mlm = build_mlm(ModelSpec(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                    DataSpec(max_len=128), tok.get_vocab_size()).eval()
    encodings = [(e.ids, e.word_ids) for e in tok.encode_batch(SENTENCES + SENTENCES[:1])]
    assert any(len([w for w in e[1] if w == k]) > 1 for e in encodings for k in set(e[1]) - {None})  # split words
    ours = pseudo_log_likelihoods(mlm, encodings, torch.device("cpu"), word_l2r=word_l2r, copies_per_forward=5)
    want = [direct_pll(mlm, list(ids), list(words), word_l2r) for ids, words in encodings]
    assert ours == pytest.approx(want, abs=1e-3)
    assert ours[0] == pytest.approx(ours[-1], abs=1e-5)  # the same sentence twice, in different chunks


def test_word_l2r_masks_the_later_pieces_of_the_word():
    ids = [0, 10, 11, 12, 13, 2]  # <s> [w0: 10 11 12] [w1: 13] </s>
    words = [None, 0, 0, 0, 1, None]
    copies, positions = masked_copies(ids, words, word_l2r=True)
    assert positions.tolist() == [1, 2, 3, 4]
    M = MASK
    assert copies.tolist() == [[0, M, M, M, 13, 2], [0, 10, M, M, 13, 2], [0, 10, 11, M, 13, 2], [0, 10, 11, 12, M, 2]]
    plain, _ = masked_copies(ids, words, word_l2r=False)
    assert plain.tolist() == [[0, M, 11, 12, 13, 2], [0, 10, M, 12, 13, 2], [0, 10, 11, M, 13, 2], [0, 10, 11, 12, M, 2]]


def test_a_tie_counts_half_and_is_counted():
    got = compute_module("blimp", [(-1.0, -2.0), (-3.0, -3.0), (-5.0, -4.0), (-1.0, -1.5)], [])
    assert got == {"accuracy": pytest.approx((1 + 0.5 + 0 + 1) / 4), "ties": 1.0, "pairs": 4.0}


def test_pair_subset_is_deterministic_and_per_paradigm():
    rng = np.random.default_rng(0)
    paradigms = np.repeat(["a", "b", "c"], 50)
    ids = np.concatenate([rng.permutation(50) for _ in range(3)])
    keep = pair_subset(paradigms, ids, 5)
    assert len(keep) == 15 and (np.diff(keep) > 0).all()
    for p in "abc":
        assert sorted(ids[keep][paradigms[keep] == p].tolist()) == [0, 1, 2, 3, 4]
    assert np.array_equal(keep, pair_subset(paradigms, ids, 5))
    assert len(pair_subset(paradigms, ids, None)) == 150


def test_unigram_baseline_by_hand():
    counts = np.array([0, 0, 0, 0, 0, 9, 1, 0])  # token 5 common, 6 rare, 7 unseen (add-one smoothing)
    total = counts.sum() + len(counts)  # 18
    enc = [([0, 5, 6, 2], [None, 0, 1, None]), ([0, 5, 7, 2], [None, 0, 1, None])]
    got = unigram_log_likelihoods(enc, counts)
    assert got == pytest.approx([math.log(10 / total) + math.log(2 / total), math.log(10 / total) + math.log(1 / total)])


def test_zero_shot_cells_one_per_checkpoint_and_random_init_per_seed(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ndescription: d\nbase: {finetune: {tasks: [sst2, blimp]}}\nvariants: {a: {}, b: {}}\n"
                    "baseline: a\nseeds: {pretrain: [0, 1], finetune: [0, 1, 2]}\n")
    plan = expand(load_study(path, "tiny"))
    blimp = [c for c in plan.finetune if c.task == "blimp"]
    assert sorted((c.variant, c.pretrain_seed, c.seed) for c in blimp if c.variant != RANDOM_INIT) == \
        [("a", 0, 0), ("a", 1, 0), ("b", 0, 0), ("b", 1, 0)]
    assert sorted(c.seed for c in blimp if c.variant == RANDOM_INIT) == [0, 1, 2]
    assert len([c for c in plan.finetune if c.task == "sst2"]) == 2 * 2 * 3 + 3
    cfg = plan.pretrain[0].config
    other_lr = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"lr": 0.5, "epochs": 9})})
    assert finetune_identity(cfg, "k", "blimp", 0) == finetune_identity(other_lr, "k", "blimp", 0)  # nothing trains
    assert finetune_identity(cfg, "k", "sst2", 0) != finetune_identity(other_lr, "k", "sst2", 0)
    plain = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"pll": "plain"})})
    assert finetune_identity(cfg, "k", "blimp", 0) != finetune_identity(plain, "k", "blimp", 0)
    assert finetune_identity(cfg, "k", "sst2", 0) == finetune_identity(plain, "k", "sst2", 0)


def test_blimp_table_rows_and_references():
    import pandas as pd

    from ablate.analysis.aggregate import blimp_table
    from ablate.analysis.results import BLIMP_COLUMNS

    rows = [(v, ps, fs, p, a, u) for v, ps, fs, a0 in (("base", 0, 0, 0.6), ("base", 1, 0, 0.7),
                                                      (RANDOM_INIT, None, 0, 0.5), (RANDOM_INIT, None, 1, 0.4))
            for p, a, u in (("binding", a0, 0.55), ("overall", a0 + 0.01, 0.52))]
    df = pd.DataFrame(rows, columns=BLIMP_COLUMNS)
    t = blimp_table(df, ["base"], "base", {"GPT-2": {"binding": 0.809, "overall": 0.83}})
    assert list(t.columns) == ["binding", "overall"]
    assert t.loc["base", "binding"] == "65.0 (n=2)" and t.loc[RANDOM_INIT, "overall"] == "46.0 (n=2)"
    assert t.loc["unigram (base's tokenizer)", "binding"] == "55.0 (n=1)"
    assert t.loc["GPT-2 (reference)", "overall"] == "83.0"
    assert blimp_table(df.iloc[:0], ["base"], "base").empty


@pytest.mark.slow
@needs_real_data
def test_tiny_study_with_blimp_cola_stsb_end_to_end(tmp_path):
    """A tiny study listing blimp, cola and stsb runs, and its report shows BLiMP (with its reference rows), CoLA
    (MCC) and STS-B (Spearman), each with its margin over random init."""
    from typer.testing import CliRunner

    from ablate.cli import app

    study = tmp_path / "eval.yaml"
    study.write_text("name: evalsuite\ndescription: the evaluation suite\nscale: tiny\n"
                     "base: {finetune: {tasks: [sst2, cola, stsb, blimp], train_size: 200, epochs: 1}}\n"
                     "variants: {a: {}}\nbaseline: a\nseeds: {pretrain: [0], finetune: [0]}\n")
    runner = CliRunner()
    r = runner.invoke(app, ["run", str(study), "--results", str(tmp_path / "r"), "--no-progress"])
    assert r.exit_code == 0 and "0 failed" in r.output, r.output
    r = runner.invoke(app, ["report", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "rep" / "evalsuite" / "index.html").read_text(encoding="utf-8")
    for text in ("BLiMP (zero-shot)", "GPT-2 (reference)", "unigram (a&#39;s tokenizer)", "cola MCC", "stsb Spearman",
                 "blimp acc.", "Fine-tuning curves", "majority class"):
        assert text in html, text
    margin = (tmp_path / "rep" / "evalsuite" / "table_margin.md").read_text(encoding="utf-8")
    assert margin.splitlines()[0] == "| variant | sst2 | cola | stsb | blimp |"


@needs_real_data
def test_blimp_loads_67_paradigms_of_1000_pairs():
    from ablate.tasks import TASKS
    from ablate.tasks.blimp import PARADIGM, PHENOMENON
    from ablate.tasks.data import check_local_data, load_split
    from ablate.study.spec import FinetuneSpec

    task = TASKS.get("blimp")
    check_local_data(task, FinetuneSpec(tasks=("blimp",)))
    ds = load_split(task, task.eval_split)
    assert len(ds) == 67_000 and len(set(ds[PARADIGM])) == 67 and len(set(ds[PHENOMENON])) == 13
    for col in ("sentence_good", "sentence_bad", "pairID"):
        assert col in ds.column_names


def test_every_downstream_claim_gets_an_expected_direction_on_blimp():
    from ablate.analysis.anchors import study_claims

    claims = study_claims("masking", "table1", ["static", "dynamic"], "static")
    blimp = [c for c in claims if c.tasks == ("blimp",)]
    assert [(c.a, c.b, c.relation, c.source) for c in blimp] == [("dynamic", "static", ">=", "table1")]
    assert len([c for c in claims if c.tasks == ("pretraining",)]) == 1  # the perplexity claim gets no BLiMP twin
    tok = study_claims("tokenizer", None, ["byte_bpe", "wordpiece"], "byte_bpe")
    assert not [c for c in tok if c.tasks == ("blimp",)]  # no direction stated, none expected
