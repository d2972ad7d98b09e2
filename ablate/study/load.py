"""A study file -> a StudySpec for one scale: YAML read, layers merged, every error one line.

The resolved config of a variant is

    defaults <- built-in scale preset <- study base <- study scales[scale] <- variant

merged key by key. A validation error becomes `file:line: key.path: message`, naming the layer
(variant, scale override or base) that set the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError

from ablate.errors import UserError
from ablate.study.scales import SCALE_PRESETS
from ablate.study.spec import SCALES, AtKeys, Config, Seeds, StudyFile, StudySpec
from ablate.study.yamlio import parse_yaml, read_study_text


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Return base updated by over, recursing into dicts (over wins)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    """A key path as text, control characters escaped (a key may be "a\\n"): errors stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in ".".join(str(p) for p in loc))


Loc = tuple[str, ...]


def locate(lines: dict[Loc, int], layers: list[Loc], candidates: list[Loc]) -> tuple[Loc, Optional[int]]:
    """Where a setting was written: the first layer (most specific first) that writes one of `candidates` (key
    paths below a layer), as (full key path, line). Written nowhere (a preset or a default set it): the first
    candidate under the first layer, at the line of the longest part of that path the file has."""
    for layer in layers:
        for cand in candidates:
            if layer + cand in lines:
                return layer + cand, lines[layer + cand]
    path = layers[0] + candidates[0]
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return path, lines[path[:n]]
    return path, None


def variant_layers(name: str, scale: str) -> list[Loc]:
    """The layers of the file that make up a variant's config, the one that wins first."""
    return [("variants", name), ("scales", scale), ("base",)]


def _one_line(err: ValidationError, where: str, lines: dict, layers: list[Loc]) -> UserError:
    """Turn the first pydantic error into `file:line: key.path: message`, at the layer that wrote the key."""
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"] if p != "[key]")
    cause = (e.get("ctx") or {}).get("error")
    candidates = [loc + k for k in cause.keys] if isinstance(cause, AtKeys) else [loc]
    path, line = locate(lines, layers, candidates)
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        parent = _fmt_loc(path[:-1]) or "top level"
        msg = f"unknown key (not allowed under {parent})"
    elif e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"].startswith("literal_error"):
        msg = msg.replace("Input should be", "must be one of:")
    elif isinstance(e.get("input"), (int, float, str)) and len(str(e.get("input"))) < 60 and repr(e["input"]) not in msg:
        msg = f"{msg} (got {e['input']!r})"
    msg = msg.replace("Value error, ", "")
    where_line = f"{where}:{line}" if line else where
    key = _fmt_loc(path) or "top level"
    return UserError(f"{where_line}: {key}: {msg}")


def written_at(spec: StudySpec, variant: str, candidates: list[Loc]) -> str:
    """`file:line: key.path` of the first of `candidates` (key paths in a variant's config) that the study file
    writes for `variant` (in the variant, the scale override, or the base), for errors found after loading."""
    _, lines = parse_yaml(spec.source, spec.path)
    path, line = locate(lines, variant_layers(variant, spec.scale), candidates)
    return f"{spec.path}{f':{line}' if line else ''}: {_fmt_loc(path)}"


def _preset_schedule_off(merged: dict, written: list) -> None:
    """A scale preset's sequence-length schedule yields to the study: it is off where the study turns it off
    (`pretrain.short_len: null`) or where the study's blocks are no longer than the preset's short ones (a
    `data.max_len` of 32 at the `cpu` preset), its short_fraction with it. What the study file writes itself is
    checked as written: a short_fraction without a short_len, or a short_len that does not divide max_len, is refused."""
    pre, data = merged.get("pretrain"), merged.get("data")
    if not isinstance(pre, dict):
        return

    def wrote(key: str) -> bool:
        return any(isinstance(w.get("pretrain"), dict) and key in w["pretrain"] for w in written)

    short, length = pre.get("short_len"), data.get("max_len") if isinstance(data, dict) else None
    if (isinstance(short, int) and isinstance(length, int) and short >= length and not wrote("short_len")
            and not wrote("short_fraction")):
        pre["short_len"] = short = None
    if short is None and not wrote("short_fraction"):
        pre.pop("short_fraction", None)


def load_study(path: str | Path, scale: Optional[str] = None) -> StudySpec:
    """Load, merge and validate a study file for `scale` (default: the file's own)."""
    path = Path(path)
    where = str(path)
    source = read_study_text(path)
    data, lines = parse_yaml(source, where)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise UserError(f"{where}:{lines.get((), 1)}: a study file must be a YAML mapping at the top level (got {got})")
    try:
        raw = StudyFile.model_validate(data)
    except ValidationError as err:
        raise _one_line(err, where, lines, [()]) from None
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    if scale is not None and scale not in SCALES:
        raise UserError(f"unknown scale {scale!r} (allowed: {', '.join(SCALES)})")
    scale = scale or raw.scale
    preset = SCALE_PRESETS[scale]
    scale_over = dict(raw.scales.get(scale, {}))
    seeds = raw.seeds
    if "seeds" in scale_over:
        if not isinstance(scale_over["seeds"], dict):
            line = lines.get(("scales", scale, "seeds"))
            raise UserError(f"{where}{f':{line}' if line else ''}: scales.{scale}.seeds: must be a mapping "
                            f"(pretrain: [...], finetune: [...])")
        try:
            seeds = Seeds.model_validate(deep_merge(raw.seeds.model_dump(), scale_over.pop("seeds")))
        except ValidationError as err:
            raise _one_line(err, where, lines, [("scales", scale, "seeds"), ("seeds",)]) from None
    variants: dict[str, Config] = {}
    for name, over in raw.variants.items():
        merged = deep_merge(deep_merge(deep_merge(preset, raw.base), scale_over), over or {})
        _preset_schedule_off(merged, [raw.base, scale_over, over or {}])
        try:
            variants[name] = Config.model_validate(merged)
        except ValidationError as err:
            raise _one_line(err, where, lines, variant_layers(name, scale)) from None
        except UserError as err:
            raise UserError(f"{where}: variants.{name}: {err}") from None
    return StudySpec(
        name=raw.name,
        description=raw.description,
        paper_table=raw.paper_table,
        scale=scale,
        baseline=raw.baseline,
        seeds=seeds,
        variants=variants,
        runtime=raw.runtime,
        source=source,
        path=str(path),
    )
