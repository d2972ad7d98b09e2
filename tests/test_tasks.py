"""Task records: each loads its local data, validation splits keep groups together, a tiny fine-tune runs on each."""

from __future__ import annotations

import math

import pytest

from ablate.errors import UserError
from ablate.study.cells import FinetuneCell
from ablate.study.identity import finetune_identity, stable_hash
from ablate.study.spec import Config, DataSpec, FinetuneSpec, ModelSpec, RuntimeSpec
from ablate.tasks import PART_MARK, TASKS, glue_average, split_note, task_title
from ablate.tasks.data import check_local_data, load_split, split_by_group, task_data

from conftest import real_data_available

needs_real_data = pytest.mark.skipif(not real_data_available(), reason="needs the real data")
NO_TRAIN_SPLIT = {"mnli": 0.5, "qnli": 0.5, "squad": 0.5, "squad_v2": 0.5}
LOCAL = [t for t in TASKS.names() if TASKS.get(t).local and TASKS.get(t).kind != "zero-shot"]  # fine-tuned tasks


def test_registry_covers_the_suite():
    assert set(TASKS.names()) == {"cola", "sst2", "mrpc", "stsb", "qnli", "rte", "mnli", "qqp", "squad", "squad_v2",
                                  "blimp"}
    assert TASKS.get("blimp").kind == "zero-shot"
    assert TASKS.get("stsb").kind == "regression" and TASKS.get("stsb").num_labels == 1
    assert TASKS.get("mnli").num_labels == 3 and TASKS.get("mnli").eval_split == "validation_matched"
    assert TASKS.get("squad_v2").no_answer and not TASKS.get("squad").no_answer
    assert not TASKS.get("qqp").local


@needs_real_data
@pytest.mark.parametrize("name", LOCAL)
def test_every_local_task_loads_its_data(name):
    task = TASKS.get(name)
    ft = FinetuneSpec(tasks=(name,), train_from_validation={k: v for k, v in NO_TRAIN_SPLIT.items() if k == name})
    check_local_data(task, ft)
    data = task_data(task, ft)
    for ds in (data.train, data.eval):
        assert len(ds) > 100
        for col in (*task.text_columns, task.label_column, *task.groups, task.id_column):
            assert col in ds.column_names, col
    labels = data.eval[task.label_column]
    if task.kind == "classification":
        assert set(labels) == set(range(task.num_labels))
    elif task.kind == "regression":
        assert 0.0 <= min(labels) < max(labels) <= 5.0
    else:
        assert all(ctx[a["answer_start"][0] :].startswith(a["text"][0]) for ctx, a in zip(data.eval["context"], labels)
                   if a["text"])
    assert data.from_validation == (name in NO_TRAIN_SPLIT)


@needs_real_data
@pytest.mark.parametrize("name", sorted(NO_TRAIN_SPLIT))
def test_missing_train_split_is_a_clear_error(name):
    with pytest.raises(UserError, match=rf"train_from_validation: \{{{name}: 0.5\}}"):
        check_local_data(TASKS.get(name), FinetuneSpec(tasks=(name,)))
    with pytest.raises(UserError, match="no local train split"):
        load_split(TASKS.get(name), "train")


@needs_real_data
def test_online_only_task_says_so():
    with pytest.raises(UserError, match="online only"):
        check_local_data(TASKS.get("qqp"), FinetuneSpec(tasks=("qqp",)))


def test_split_by_group_keeps_groups_whole_and_is_reproducible():
    # groups by shared values in either column: {0, 1, 4} (a shared, then x shared), {2}, {3, 5} (c shared)
    first = ["a", "a", "b", "c", "d", "c"]
    second = ["x", "y", "z", "w", "y", "v"]
    train, held = split_by_group([first, second], 0.5)
    assert sorted([*train, *held]) == list(range(6))
    for group in ({0, 1, 4}, {2}, {3, 5}):
        assert group <= set(train) or group <= set(held)
    again = split_by_group([first, second], 0.5)
    assert list(again[0]) == list(train)
    # row order does not matter: reversed rows give the same examples
    rtrain, _ = split_by_group([first[::-1], second[::-1]], 0.5)
    assert sorted(5 - i for i in rtrain) == list(train)


@needs_real_data
@pytest.mark.parametrize("name,column", [("squad", "title"), ("mnli", "premise"), ("qnli", "question")])
def test_real_validation_splits_share_no_text(name, column):
    task = TASKS.get(name)
    data = task_data(task, FinetuneSpec(tasks=(name,), train_from_validation={name: 0.5}))
    assert not set(data.train[column]) & set(data.eval[column])
    full = len(load_split(task, task.eval_split))
    assert len(data.train) + len(data.eval) == full
    assert 0.4 < len(data.train) / full < 0.65  # whole groups: close to the half asked for
    assert data.train_split.startswith(task.eval_split) and data.eval_split.startswith(task.eval_split)


def test_glue_average_uses_each_tasks_glue_score():
    scores = {
        "cola": {"matthews_correlation": 0.2},
        "mrpc": {"accuracy": 0.7, "f1": 0.8},  # -> 0.75
        "stsb": {"pearson": 0.5, "spearman": 0.3},  # -> 0.4
        "mnli": {"accuracy": 0.65},
        "squad": {"squad_f1": 0.9, "squad_exact_match": 0.8},  # not GLUE: ignored
    }
    assert glue_average(scores) == pytest.approx((0.2 + 0.75 + 0.4 + 0.65) / 4)
    assert glue_average({"squad": {"squad_f1": 0.9}}) is None
    assert math.isnan(glue_average({"sst2": {"accuracy": float("nan")}, "rte": {"accuracy": 0.6}}))
    with pytest.raises(UserError, match="f1"):
        glue_average({"mrpc": {"accuracy": 0.7}})


def test_marks_for_tasks_scored_on_part_of_validation():
    ft = FinetuneSpec(tasks=("sst2", "mnli"), train_from_validation={"mnli": 0.6})
    assert task_title("mnli", ft) == "mnli" + PART_MARK and task_title("sst2", ft) == "sst2"
    assert split_note("sst2", ft) is None
    assert "60% of validation_matched" in split_note("mnli", ft) and "40%" in split_note("mnli", ft)


@pytest.mark.parametrize("bad,match", [
    ({"train_from_validation": {"mnlii": 0.5}}, "did you mean 'mnli'"),
    ({"train_from_validation": {"mnli": 1.0}}, "0.95"),
    ({"lr_by_task": {"sst2": 0.0}}, "learning rate"),
    ({"doc_stride": 64, "max_len": 128}, "doc_stride"),
])
def test_new_settings_are_validated(bad, match):
    with pytest.raises((UserError, ValueError), match=match):
        FinetuneSpec(**bad)


def test_per_task_settings_move_only_their_own_key():
    base = Config(finetune=FinetuneSpec(strip_text=False, pair_token_types=False))  # as before the input fixes
    old_style = {"v": 2, "init": {"pretrain": "p"}, "task": "sst2", "seed": 0,
                 "finetune": {k: v for k, v in base.finetune.model_dump(mode="json").items()
                              if k in ("train_size", "epochs", "lr", "batch_size", "max_len", "warmup_ratio",
                                       "weight_decay")}}
    assert stable_hash(finetune_identity(base, "p", "sst2", 0)) == stable_hash(old_style), "old keys must not move"

    def key(task, **ft):
        return stable_hash(finetune_identity(Config(finetune=FinetuneSpec(**ft)), "p", task, 0))

    assert key("sst2", train_from_validation={"mnli": 0.5}, lr_by_task={"mrpc": 1e-5}) == key("sst2")
    assert key("sst2", doc_stride=8, n_best=5, max_answer_len=10) == key("sst2")
    assert key("mnli", train_from_validation={"mnli": 0.5}) != key("mnli", train_from_validation={"mnli": 0.6})
    assert key("sst2", lr_by_task={"sst2": 1e-5}) == key("sst2", lr=1e-5)
    assert key("squad", doc_stride=8) != key("squad")


# ---------------------------------------------------------------- a tiny fine-tune on every task


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from ablate.run.prepare import tokenizer_for
    from ablate.store import Store

    if not real_data_available():
        pytest.skip("needs the real data")
    return tokenizer_for(Store(tmp_path_factory.mktemp("results")),
                          Config(data=DataSpec(vocab_size=500, tokenizer_train_chars=100_000)))


@needs_real_data
@pytest.mark.parametrize("name", LOCAL)
def test_tiny_finetune_runs_on_every_task(name, tok, tmp_path, monkeypatch):
    from ablate.train import finetune as ft_module

    real = ft_module.task_data

    def small_eval(task, ft):  # score 40 examples only: this checks that it runs, not how well
        data = real(task, ft)
        data.eval = data.eval.select(range(40))
        return data

    monkeypatch.setattr(ft_module, "task_data", small_eval)
    cfg = Config(model=ModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
                 data=DataSpec(vocab_size=500, max_len=64),
                 finetune=FinetuneSpec(tasks=(name,), train_size=24, epochs=1, batch_size=8, max_len=64,
                                       train_from_validation={k: v for k, v in NO_TRAIN_SPLIT.items() if k == name}))
    checkpoint = None
    if name == "squad_v2":  # also the path from a pretrained checkpoint (an untrained MLM, saved)
        from ablate.model import build_mlm

        checkpoint = tmp_path / "ckpt"
        build_mlm(cfg.model, cfg.data, tok.get_vocab_size()).save_pretrained(str(checkpoint))
    cell = FinetuneCell("v", 0, name, 0, cfg, "k", "p")
    out = ft_module.finetune(cell, checkpoint, tok, RuntimeSpec(device="cpu", threads=1, progress=False))
    task = TASKS.get(name)
    assert set(out["metrics"]) == set(task.metrics)
    for m, v in out["metrics"].items():
        assert -1.0 <= v <= 1.0 or (math.isnan(v) and m.startswith("squad_v2")), (m, v)
    assert out["train_examples"] == 24 and out["eval_examples"] == 40 and out["steps"] >= 3
    assert out["scored_on_validation_part"] == (name in NO_TRAIN_SPLIT)
    if task.kind == "span":
        assert out["train_windows"] > 24 and out["doc_stride"] == 16


def test_majority_class_scores_and_the_floor_mark():
    import pandas as pd

    from ablate.analysis.aggregate import MAJORITY_ROW, summarize, task_table, with_majority
    from ablate.train.finetune import majority_scores

    mrpc = TASKS.get("mrpc")
    refs = [1] * 684 + [0] * 316  # MRPC's validation split: 68.4% "paraphrase"
    got = majority_scores(mrpc, refs)
    assert got["accuracy"] == pytest.approx(0.684) and got["f1"] == pytest.approx(2 * 0.684 / (1 + 0.684))
    assert majority_scores(TASKS.get("cola"), [0, 1, 1])["matthews_correlation"] == 0.0
    scores = pd.DataFrame({"variant": ["a", "a", "b", "b"], "pretrain_seed": [0, 1, 0, 1], "task": "mrpc",
                           "metric": "accuracy", "finetune_seed": 0, "value": [0.70, 0.72, 0.684, 0.66], "key": "k"})
    summary = summarize(scores)
    table = task_table(summary, [("mrpc", "accuracy")], ["a", "b"])
    out, floor = with_majority(table, summary, {("mrpc", "accuracy"): 0.684})
    assert out.loc[MAJORITY_ROW, "mrpc"] == "68.4" and floor == ["b: mrpc"]  # b's median 67.2 <= 68.4; a's 71.0


def test_pair_tasks_pass_token_types_and_text_is_stripped(tiny_data_root, tmp_path):
    """Pair tasks give the model token_type_ids (1 from segment B, as the pair formats pretrain); single sentences
    do not; outer whitespace is stripped before tokenizing (SST-2's trailing space no longer becomes a token)."""
    import datasets
    import numpy as np
    import torch

    from ablate.run.prepare import tokenizer_for
    from ablate.store import Store
    from ablate.study.spec import Config, DataSpec, FinetuneSpec
    from ablate.train.finetune import collate, encode, predict, prepare, segment_types

    tok = tokenizer_for(Store(tmp_path / "r"), Config(data=DataSpec(vocab_size=300, tokenizer_train_chars=20_000,
                                                                    max_len=32, heldout_tokens=1000)))
    pair = datasets.Dataset.from_dict({"sentence1": ["The cat sat.", "A dog ran "], "sentence2": ["It slept.", "Far."],
                                       "label": [1, 0]})
    single = datasets.Dataset.from_dict({"sentence": ["The cat sat. ", "A dog ran."], "label": [1, 0]})
    on, off = FinetuneSpec(), FinetuneSpec(strip_text=False, pair_token_types=False)
    ex, _ = prepare(TASKS.get("mrpc"), tok, pair, 32, 8, ft=on)
    enc = tok.encode("The cat sat.", "It slept.")
    assert ex.types[0] == segment_types(enc.sequence_ids)
    b = enc.sequence_ids.index(1)
    assert ex.types[0] == [0] * b + [1] * (len(enc.ids) - b) and enc.ids[b - 1] == enc.ids[-1]  # after </s></s>
    assert prepare(TASKS.get("mrpc"), tok, pair, 32, 8, ft=off)[0].types is None
    assert prepare(TASKS.get("sst2"), tok, single, 32, 8, ft=on)[0].types is None
    x, attn, extra = collate(ex.ids, np.array([0, 1]), ex.types)
    assert extra["token_type_ids"].shape == x.shape and int(extra["token_type_ids"][0].sum()) == len(enc.ids) - b
    assert collate(ex.ids, np.array([0, 1]))[2] == {}
    stripped, _, _ = encode(tok, TASKS.get("sst2"), single, 32, strip=True)
    raw, _, _ = encode(tok, TASKS.get("sst2"), single, 32, strip=False)
    assert stripped[0] == tok.encode("The cat sat.").ids and len(raw[0]) == len(stripped[0]) + 1

    seen = []

    class Model:  # records what predict hands the model
        def eval(self):
            return self

        def __call__(self, **kw):
            seen.append(sorted(kw))
            return type("Out", (), {"logits": torch.zeros(len(kw["input_ids"]), 2)})()

    predict(Model(), ex.ids, torch.device("cpu"), 8, ex.types)
    predict(Model(), ex.ids, torch.device("cpu"), 8)
    assert seen == [["attention_mask", "input_ids", "token_type_ids"], ["attention_mask", "input_ids"]]


def test_input_fixes_move_only_the_keys_they_change():
    from ablate.study.identity import finetune_identity
    from ablate.study.spec import Config, FinetuneSpec

    def key(task, **ft):
        return finetune_identity(Config(finetune=FinetuneSpec(**ft)), "k", task, 0)

    off = {"strip_text": False, "pair_token_types": False}
    assert key("sst2", **off) != key("sst2") == key("sst2", pair_token_types=False)  # a single sentence: strip only
    assert key("mrpc", **off) != key("mrpc", strip_text=True, pair_token_types=False) != key("mrpc")
    assert key("squad", **off) == key("squad") and key("blimp", **off) == key("blimp")  # text used as it is
    assert "strip_text" not in key("sst2", **off)["finetune"]  # off: as before the fixes existed


def test_scoring_after_each_epoch_changes_no_result():
    """The per-epoch validation scores come free: the weights after training are the same with and without them."""
    import numpy as np
    import torch
    from transformers import RobertaForSequenceClassification

    from ablate.model import roberta_config
    from ablate.train.finetune import Examples, predict, train_loop

    rng = np.random.default_rng(0)
    ids = [[0] + rng.integers(5, 60, int(rng.integers(3, 12))).tolist() + [2] for _ in range(40)]
    ex = Examples(ids, {"labels": rng.integers(0, 2, 40)})
    ft = FinetuneSpec(epochs=3, batch_size=8, lr=1e-3)
    cfg = roberta_config(ModelSpec(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
                         DataSpec(max_len=16), 64, num_labels=2)
    weights, seen = [], []
    for score in (False, True):
        torch.manual_seed(0)
        model = RobertaForSequenceClassification(cfg)
        hook = (lambda e: seen.append((e, predict(model, ids, torch.device("cpu"), 16)))) if score else None
        steps, curve = train_loop(model, ex, ft, 1e-3, 0, torch.device("cpu"), None, on_epoch=hook)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert [e for e, _ in seen] == [1, 2] and steps == 15  # 5 steps an epoch; no score after the last (the final)
    assert [p["step"] for p in curve] == [10, 15] and all(p["loss"] > 0 for p in curve)


def test_tune_on_train_scores_held_out_train_examples_and_keeps_the_fine_tuning_subset(tiny_data_root):
    task = TASKS.get("sst2")
    plain = task_data(task, FinetuneSpec(tasks=("sst2",), train_size=100))
    tuned = task_data(task, FinetuneSpec(tasks=("sst2",), train_size=100, tune_on_train=50))
    assert tuned.train["idx"] == plain.train["idx"]  # the same 100 examples are fine-tuned on
    assert len(tuned.eval) == 50 and not set(tuned.eval["idx"]) & set(tuned.train["idx"])
    assert set(tuned.eval["idx"]) <= set(load_split(task, "train")["idx"])  # scored on train examples, not validation
    with pytest.raises(UserError, match="tune_on_train"):
        task_data(task, FinetuneSpec(tasks=("sst2",), tune_on_train=200))  # the whole split (200 examples)


def test_tune_on_train_moves_fine_tuning_keys_only_when_set():
    base = Config(finetune=FinetuneSpec(tasks=("sst2", "blimp")))
    tuned = Config(finetune=FinetuneSpec(tasks=("sst2", "blimp"), tune_on_train=500))
    assert "tune_on_train" not in str(finetune_identity(base, "p", "sst2", 0))
    assert finetune_identity(tuned, "p", "sst2", 0) != finetune_identity(base, "p", "sst2", 0)
    assert finetune_identity(tuned, "p", "blimp", 0) == finetune_identity(base, "p", "blimp", 0)  # nothing trained


def test_random_init_lr_by_task_moves_only_the_controls_keys():
    plain = Config(finetune=FinetuneSpec(tasks=("sst2", "cola"), lr=1e-3))
    tuned = Config(finetune=FinetuneSpec(tasks=("sst2", "cola"), lr=1e-3, random_init_lr_by_task={"sst2": 3e-4}))
    assert tuned.finetune.lr_for("sst2", random_init=True) == 3e-4 and tuned.finetune.lr_for("sst2") == 1e-3
    assert tuned.finetune.lr_for("cola", random_init=True) == 1e-3
    assert finetune_identity(tuned, "p", "sst2", 0) == finetune_identity(plain, "p", "sst2", 0)  # checkpoints: same
    assert finetune_identity(tuned, None, "cola", 0) == finetune_identity(plain, None, "cola", 0)  # other task: same
    assert finetune_identity(tuned, None, "sst2", 0)["finetune"]["lr"] == 3e-4
    assert finetune_identity(plain, None, "sst2", 0)["finetune"]["lr"] == 1e-3
