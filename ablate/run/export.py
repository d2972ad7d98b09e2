"""`ablate export CELL DIR`: one finished pretraining cell's complete checkpoint copied out of the results store.

CELL is a pretraining cell's key or a unique prefix of it (`ablate plan` lists the keys). The checkpoint folder
(ablate.train.checkpoint.save_final: weights, config, tokenizer, model card) is copied to DIR through a temporary
folder renamed into place, so DIR is complete or absent. A checkpoint written before tokenizers were saved beside
the weights gets its tokenizer from the results' cache, where its study's plan names it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ablate.errors import UserError
from ablate.run.status import study_plan
from ablate.store import RunDir, Store
from ablate.study.identity import data_cache


def pretrain_runs(store: Store) -> dict[str, list[RunDir]]:
    """Every pretraining run directory in the store, by key (a cell copied into several studies has several)."""
    out: dict[str, list[RunDir]] = {}
    if not store.root.is_dir():
        return out
    for study in sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        folder = study / "pretrain"
        for run in sorted(folder.iterdir()) if folder.is_dir() else []:
            if run.is_dir() and not run.name.startswith("."):
                out.setdefault(run.name, []).append(RunDir(run))
    return out


def find_pretrain_cell(store: Store, prefix: str) -> tuple[str, list[RunDir]]:
    """The key matching `prefix` and its run directories; a UserError when none or several match."""
    prefix = prefix.strip()
    if not prefix:
        raise UserError("CELL is empty: give a pretraining cell's key or a unique prefix (see `ablate plan`)")
    runs = pretrain_runs(store)
    keys = sorted(k for k in runs if k.startswith(prefix))
    if not keys:
        finetunes = [p for p in store.root.glob(f"*/finetune/{prefix}*") if p.is_dir()] if store.root.is_dir() else []
        what = " (it is a fine-tuning cell's; export takes a pretraining cell)" if finetunes else ""
        raise UserError(f"no pretraining cell {prefix!r} in {store.root}{what}")
    if len(keys) > 1:
        shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
        raise UserError(f"{prefix!r} matches {len(keys)} pretraining cells ({shown}): give more of the key")
    return keys[0], runs[keys[0]]


def export_cell(store: Store, prefix: str, out: Path) -> tuple[str, Path, list[str]]:
    """Copy the cell's checkpoint to `out` (which must not exist, or be an empty folder); return (key, the run
    directory it came from, notes)."""
    key, runs = find_pretrain_cell(store, prefix)
    done = [r for r in runs if r.is_done()]
    if not done:
        raise UserError(f"pretraining cell {key} is not finished (run its study first)")
    source = next((r for r in done if r.has_weights()), None)
    if source is None:
        raise UserError(f"pretraining cell {key} has no weights here ({done[0].checkpoint}): weights are never "
                        f"committed; run its study on this machine to pretrain it")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not an empty folder: export needs a new folder")
    tmp = out.with_name(f".{out.name}.export.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source.checkpoint, tmp)
    notes = []
    if not (tmp / "tokenizer.json").exists():
        notes.append(_add_cached_tokenizer(store, source, tmp))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return key, source.path, [n for n in notes if n]


def _add_cached_tokenizer(store: Store, run: RunDir, folder: Path) -> str:
    """An old checkpoint (weights and config only): copy its tokenizer in from the cache; return a note."""
    study = run.path.parents[1].name
    try:
        plan = study_plan(store, study)
    except UserError:
        plan = None
    cell = next((c for c in plan.pretrain if c.key == run.path.name), None) if plan is not None else None
    hf = data_cache(store, cell.config).tokenizer / "hf" if cell is not None else None
    if hf is None or not (hf / "tokenizer.json").exists():
        return "no tokenizer: the checkpoint predates saved tokenizers and its tokenizer is not in the cache"
    for path in hf.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    return f"tokenizer added from {hf}"
