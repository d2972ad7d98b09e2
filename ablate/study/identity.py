"""Config -> identities: every content hash in ablate, in one place.

A cell's or a cache entry's key is the hash of the canonical JSON of exactly the settings that change it.
Runtime settings are never hashed. Variants that differ only in fine-tuning share one pretraining key,
hence one checkpoint. Each data stage's cache folder is named here (data_cache), so no stage hashes its own
settings. Pure, no I/O beyond naming folders.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from ablate.data.corpus import DataCache
from ablate.data.formats import FORMATS
from ablate.store import Store
from ablate.study.spec import Config
from ablate.tasks import TASKS

HASH_VERSION = 2  # bump when the meaning of a hashed setting changes (2: blingfire sentences, type ids)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def stable_hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


# Versions of a tokenizer's training, hashed with its settings where above 1, so a changed tokenizer gets new
# caches and cells. wordpiece 2: ids in a canonical order (the trainer's own order varies between processes).
TOKENIZER_VERSIONS = {"wordpiece": 2}


def tokenizer_identity(cfg: Config) -> dict[str, Any]:
    d = cfg.data
    ident = {
        "v": HASH_VERSION,
        "corpus": d.corpus,
        "tokenizer": d.tokenizer,
        "vocab_size": d.vocab_size,
        "train_chars": d.tokenizer_train_chars,
    }
    if TOKENIZER_VERSIONS.get(d.tokenizer, 1) > 1:
        ident["tokenizer_version"] = TOKENIZER_VERSIONS[d.tokenizer]
    return ident


# Versions of a format's packing rule, hashed with the data settings where they are above 1, so a changed
# rule gets new cells and caches. segment_pair 2: blocks filled as BERT does, random B with the true B's length.
FORMAT_VERSIONS = {"segment_pair": 2}


# Settings added after results were committed, with their defaults: a section's setting is hashed only away from
# its default, so every key made before it stays the same (data: heldout_chars; model and pretrain: the recipe
# settings of issue 26). short_fraction means nothing without short_len.
ADDED_LATER = {"data": {"heldout_chars": None},
               "model": {"norm": "post", "init_range": 0.02},
               "pretrain": {"schedule": "linear", "short_len": None, "short_fraction": 0.9}}


def _section(cfg: Config, name: str) -> dict[str, Any]:
    """One hashed section of the config, the settings added later left out at their defaults."""
    out = getattr(cfg, name).model_dump(mode="json")
    for key, default in ADDED_LATER[name].items():
        if out.get(key) == default:
            out.pop(key)
    if name == "pretrain" and "short_len" not in out:
        out.pop("short_fraction", None)
    return out


def data_identity(cfg: Config) -> dict[str, Any]:
    """The data settings, plus the packing versions of the format and of the format whose tokens per step it
    matches (sentence_pair's batch follows segment_pair's block lengths)."""
    fmt = FORMATS.get(cfg.data.format)
    versions = {name: FORMAT_VERSIONS[name] for name in (fmt.name, fmt.token_reference)
                if name and FORMAT_VERSIONS.get(name, 1) > 1}
    data = _section(cfg, "data")
    return {**data, "format_versions": versions} if versions else data


def corpus_identity(cfg: Config) -> dict[str, Any]:
    """What determines the prepared token arrays (not the masks: those are drawn per step)."""
    return {"tokenizer": tokenizer_identity(cfg), **data_identity(cfg)}


def heldout_identity(cfg: Config) -> tuple[str, str]:
    """(which held-out text and blocks, which token units) a model of `cfg` is scored on: two variants' held-out
    perplexities compare like for like only when both hashes match (analysis.verdicts.heldout_metric). The blocks
    are the validation text's first heldout_tokens tokens packed in the input format; data_fraction and the
    training settings leave them alone. A budget in tokens covers different text under another tokenizer or
    vocabulary (fewer documents where tokens are shorter), so the tokenizer enters the text's identity too."""
    units = tokenizer_identity(cfg)
    text = {k: v for k, v in data_identity(cfg).items()
            if k not in ("data_fraction", "train_tokens", "tokenizer", "vocab_size", "tokenizer_train_chars")}
    if cfg.data.heldout_chars is None:
        text["units"] = units  # heldout_tokens counts tokens of this tokenizer
    else:
        text.pop("heldout_tokens")  # whole documents by characters: the same text for every tokenizer
    return stable_hash(text), stable_hash(units)


# Versions of how a pretraining cell measures itself, by tokenizer, hashed into its key where above 1, so a
# corrected measure gets new cells. wordpiece 2: bits per character no longer counts a continuation piece's
# "##" as text (data.tokenizer.token_char_lengths).
METRIC_VERSIONS = {"wordpiece": 2}


def model_identity(cfg: Config) -> dict[str, Any]:
    return _section(cfg, "model")


def pretrain_identity(cfg: Config, seed: int) -> dict[str, Any]:
    ident = {
        "v": HASH_VERSION,
        "model": model_identity(cfg),
        "data": data_identity(cfg),
        "pretrain": _section(cfg, "pretrain"),
        "seed": seed,
    }
    if METRIC_VERSIONS.get(cfg.data.tokenizer, 1) > 1:
        ident["metric_version"] = METRIC_VERSIONS[cfg.data.tokenizer]
    if TOKENIZER_VERSIONS.get(cfg.data.tokenizer, 1) > 1:
        ident["tokenizer_version"] = TOKENIZER_VERSIONS[cfg.data.tokenizer]
    return ident


SPAN_SETTINGS = ("doc_stride", "max_answer_len", "n_best")  # hashed for span tasks (SQuAD) only
ZERO_SHOT_SETTINGS = ("pll", "pairs_per_paradigm")  # hashed for zero-shot tasks (BLiMP) only


def finetune_identity(cfg: Config, pretrain_key: Optional[str], task: str, seed: int) -> dict[str, Any]:
    """What decides one fine-tuning result: the init, the task, the settings that apply to this task, the seed.

    Per-task settings enter only as this task's value (lr_by_task replaces lr; train_from_validation adds
    its fraction), and span settings only for span tasks, so another task's setting never moves this key,
    and keys made before these settings existed stay the same.
    """
    ft = cfg.finetune.model_dump(mode="json")
    ft.pop("tasks")  # which other tasks run does not change this one
    ft.pop("random_init_control")
    ft.pop("lr_by_task"), ft.pop("random_init_lr_by_task")
    from_validation = ft.pop("train_from_validation")
    ft["lr"] = cfg.finetune.lr_for(task, random_init=pretrain_key is None)
    if task in from_validation:
        ft["train_from_validation"] = from_validation[task]
    span = {k: ft.pop(k) for k in SPAN_SETTINGS}
    zero_shot = {k: ft.pop(k) for k in ZERO_SHOT_SETTINGS}
    strip, types = ft.pop("strip_text"), ft.pop("pair_token_types")
    tune, dropout = ft.pop("tune_on_train"), ft.pop("dropout")
    spec = TASKS.get(task)
    kind = spec.kind
    if kind in ("classification", "regression"):  # the input fixes, hashed only when on (cells before them: off)
        if strip:
            ft["strip_text"] = True
        if types and len(spec.text_columns) == 2:
            ft["pair_token_types"] = True
    if tune is not None and kind != "zero-shot":  # scored on held-out train examples (hashed only when set)
        ft["tune_on_train"] = tune
    if dropout is not None and kind != "zero-shot":  # fine-tuning dropout of its own (hashed only when set)
        ft["dropout"] = dropout
    if kind == "span":
        ft.update(span)
    if kind == "zero-shot":  # nothing is trained: only how sentences are scored decides the result
        ft = zero_shot
    init: dict[str, Any]
    if pretrain_key is None:  # random init: architecture and tokenizer decide it
        init = {"random": model_identity(cfg), "tokenizer": tokenizer_identity(cfg),
                "max_len": cfg.data.max_len}  # positions, and so the fine-tuning length, follow max_len
    else:
        init = {"pretrain": pretrain_key}
    return {"v": HASH_VERSION, "init": init, "task": task, "finetune": ft, "seed": seed}




SENTENCE_SPLITTER = "blingfire-1"  # hashed into the sentence caches: a new splitter re-tokenizes


def sentences_identity(cfg: Config, split: str) -> dict[str, Any]:
    """What determines a split's tokenized sentences: the tokenizer, the corpus, the token budget (train: the data
    size's, or None for the whole corpus, whose prefix a data_fraction then takes; heldout: heldout_tokens)."""
    d = cfg.data
    if split == "heldout" and d.heldout_chars is not None:
        return {"tokenizer": tokenizer_identity(cfg), "corpus": d.corpus, "split": split, "chars": d.heldout_chars,
                "splitter": SENTENCE_SPLITTER}
    budget = d.train_token_budget if split == "train" else d.heldout_tokens
    return {"tokenizer": tokenizer_identity(cfg), "corpus": d.corpus, "split": split, "tokens": budget,
            "splitter": SENTENCE_SPLITTER}


def data_cache(store: Store, cfg: Config) -> DataCache:
    """The cache folders of cfg's data stages under the store, each named by the hash of its identity."""
    return DataCache(
        tokenizer=store.cache("tokenizer", stable_hash(tokenizer_identity(cfg))),
        sentences={split: store.cache("sentences", stable_hash(sentences_identity(cfg, split)))
                   for split in ("train", "heldout")},
        corpus=store.cache("corpus", stable_hash(corpus_identity(cfg))),
        tokenizer_identity=tokenizer_identity(cfg),
        corpus_identity=corpus_identity(cfg),
    )
