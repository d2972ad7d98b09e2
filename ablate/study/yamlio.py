"""Safe YAML loading that remembers where each key was written, for one-line errors with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ablate.errors import UserError

Path_ = tuple[str, ...]


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], where: str, seen: set[int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if id(node) in seen:  # an alias: walked once already (billion-laughs documents stay linear)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise UserError(f"{where}:{key_node.start_mark.line + 1}: duplicate key {'.'.join(path + (key,))!r}")
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (str(i),), lines, where, seen)


def load_yaml(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse `path` with the safe loader; return (data, {key path: line number})."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read study file ({e.__class__.__name__})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> tuple[Any, dict[Path_, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where}{line}: not valid YAML ({problem})") from None
    except RecursionError:
        raise UserError(f"{where}: YAML nested too deeply") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines, where, set())
    return data, lines
