"""`ablate gc STUDY...`: the cells and caches in a results directory that none of the given study files produces.

A study file produces, at any scale, its pretraining and fine-tuning cells (results/<study>/{pretrain,finetune}/<key>/)
and the cache entries they read (results/_cache/{tokenizer,sentences,corpus}/<key>/, named by
ablate.study.identity.data_cache, with the corpus of the format whose tokens per step a format matches). Everything
else is an orphan: a cell whose settings changed (its key moved), a study folder no given file names, a cache no
cell reads. A dry run lists them with their size; delete removes them, holding the results lock (so never while
`ablate run` writes there).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ablate.data.formats import FORMATS
from ablate.run.lock import results_lock
from ablate.store import Store
from ablate.study.cells import expand
from ablate.study.identity import data_cache
from ablate.study.load import load_study
from ablate.study.spec import SCALES, Config

CACHE_KINDS = ("tokenizer", "sentences", "corpus")


@dataclass(frozen=True)
class Orphan:
    path: Path
    bytes: int
    why: str


def _size(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _cache_dirs(store: Store, cfg: Config) -> set[Path]:
    """The cache folders a cell of cfg reads: its tokenizer, sentences and corpus, and the reference format's."""
    configs = [cfg]
    ref = FORMATS.get(cfg.data.format).token_reference
    if ref is not None:
        configs.append(cfg.model_copy(update={"data": cfg.data.model_copy(update={"format": ref})}))
    out = set()
    for c in configs:
        cache = data_cache(store, c)
        out |= {cache.tokenizer, cache.corpus, *cache.sentences.values()}
    return out


def live_set(store: Store, studies: list[Path]) -> tuple[dict[str, set[tuple[str, str]]], set[Path]]:
    """({study name: its (stage, key) cells at every scale}, the cache folders they read)."""
    cells: dict[str, set[tuple[str, str]]] = {}
    caches: set[Path] = set()
    configs: dict[str, Config] = {}
    for path in studies:
        for scale in SCALES:
            plan = expand(load_study(path, scale))
            mine = cells.setdefault(plan.study.name, set())
            for c in plan.pretrain:
                mine.add(("pretrain", c.key))
                configs.setdefault(c.key, c.config)
            for c in plan.finetune:
                mine.add(("finetune", c.key))
                configs.setdefault(c.key, c.config)
    for cfg in {id(c): c for c in configs.values()}.values():
        caches |= _cache_dirs(store, cfg)
    return cells, caches


def orphans(store: Store, studies: list[Path]) -> list[Orphan]:
    """Every cell folder, study folder and cache entry in the store that none of the study files produces."""
    cells, caches = live_set(store, studies)
    out: list[Orphan] = []
    if not store.root.is_dir():
        return out
    for folder in sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        if folder.name not in cells:
            out.append(Orphan(folder, _size(folder), "a study none of the files is"))
            continue
        for stage in ("pretrain", "finetune"):
            for run in sorted((folder / stage).iterdir()) if (folder / stage).is_dir() else []:
                if run.is_dir() and (stage, run.name) not in cells[folder.name]:
                    out.append(Orphan(run, _size(run), f"a {stage} cell the study no longer has"))
    for kind in CACHE_KINDS:
        kind_dir = store.cache_root / kind
        for entry in sorted(kind_dir.iterdir()) if kind_dir.is_dir() else []:
            if entry.is_dir() and entry not in caches:
                out.append(Orphan(entry, _size(entry), f"a {kind} cache no cell reads"))
    return out


def collect_garbage(store: Store, studies: list[Path], delete: bool = False, wait: bool = False) -> list[Orphan]:
    """The orphans; removed when delete (under the results lock)."""
    found = orphans(store, studies)
    if delete and found:
        with results_lock(store.root, wait=wait):
            for o in found:
                shutil.rmtree(o.path, ignore_errors=True)
    return found
