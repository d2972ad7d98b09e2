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
from ablate.study.spec import SCALES, Config, Seeds, StudyFile, StudySpec
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
    return ".".join(str(p) for p in loc)


def _one_line(err: ValidationError, where: str, prefix: tuple[str, ...], lines: dict, layers=None) -> UserError:
    """Turn the first pydantic error into `file:line: key.path: message`."""
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    path = prefix + loc
    # Which layer of the file set this key? Search the latest override first.
    if layers:
        for layer_prefix in layers:
            cand = layer_prefix + loc
            for n in range(len(cand), len(layer_prefix), -1):
                if cand[:n] in lines:
                    path = cand
                    break
            else:
                continue
            break
    line = None
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            line = lines[path[:n]]
            break
    msg = e["msg"]
    if e["type"] == "extra_forbidden":
        parent = _fmt_loc(path[:-1]) or "top level"
        msg = f"unknown key (not allowed under {parent})"
    elif e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"].startswith("literal_error"):
        msg = msg.replace("Input should be", "must be one of:")
    elif isinstance(e.get("input"), (int, float, str)) and len(str(e.get("input"))) < 60:
        msg = f"{msg} (got {e['input']!r})"
    msg = msg.replace("Value error, ", "")
    where_line = f"{where}:{line}" if line else where
    key = _fmt_loc(path) or "top level"
    return UserError(f"{where_line}: {key}: {msg}")


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
        raise _one_line(err, where, (), lines) from None
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
            raise _one_line(err, where, ("scales", scale, "seeds"), lines) from None
    variants: dict[str, Config] = {}
    for name, over in raw.variants.items():
        merged = deep_merge(deep_merge(deep_merge(preset, raw.base), scale_over), over or {})
        try:
            variants[name] = Config.model_validate(merged)
        except ValidationError as err:
            layers = [("variants", name), ("scales", scale), ("base",)]
            raise _one_line(err, where, ("variants", name), lines, layers) from None
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
