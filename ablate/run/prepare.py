"""Config + store -> prepared data: each data stage called with the cache folder its identity names.

The data stages (ablate.data) never hash their own settings: the folders come from
ablate.study.identity.data_cache, and these helpers hand them over. Used by the runner (ablate.run.cell),
the benchmarks and the tests.
"""

from __future__ import annotations

from pathlib import Path

from ablate.data import corpus
from ablate.data.corpus import DataCache, corpus_meta
from ablate.data.formats import FORMATS
from ablate.data.sentences import Sentences
from ablate.store import Store
from ablate.study.identity import data_cache
from ablate.study.spec import Config


def cache_for(store: Store, cfg: Config) -> DataCache:
    """The cache folders of cfg's data stages in this store."""
    return data_cache(store, cfg)


def tokenizer_for(store: Store, cfg: Config):
    """cfg's tokenizer (`tokenizers.Tokenizer`), trained first if it is not cached."""
    return cache_for(store, cfg).tokenizer_of(cfg.data)


def sentences_for(store: Store, cfg: Config, split: str) -> Sentences:
    """cfg's tokenized sentences of 'train' or 'heldout', prepared first if they are not cached."""
    return corpus.load_sentences(cache_for(store, cfg), cfg.data, split)


def corpus_for(store: Store, cfg: Config) -> Path:
    """The folder of cfg's packed train and held-out blocks, prepared first if they are not cached."""
    return corpus.prepare_corpus(cache_for(store, cfg), cfg.data)


def batch_size_for(store: Store, cfg: Config) -> int:
    """Sequences per step. Formats with a token reference grow the batch so that tokens per step match
    the reference format's at the configured batch size (the paper's definition)."""
    fmt = FORMATS.get(cfg.data.format)
    if fmt.token_reference is None:
        return cfg.pretrain.total_batch
    ref_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"format": fmt.token_reference})})
    ref = corpus_meta(corpus_for(store, ref_cfg))["train_mean_length"]
    own = corpus_meta(corpus_for(store, cfg))["train_mean_length"]
    return max(1, int(round(cfg.pretrain.total_batch * ref / own)))
