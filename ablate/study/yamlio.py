"""Safe YAML loading that remembers where each key was written, for one-line errors with line numbers.

Bounded by construction, whatever the file holds: only a regular file is opened (never a pipe or a device), at
most MAX_BYTES of it; aliases are counted as they are composed, so a document whose aliases would expand past
MAX_NODES nodes or MAX_DEPTH levels (a billion-laughs bomb), or refer to themselves, is refused before anything
is expanded; only the tags a study needs (strings, numbers, booleans, null, lists and mappings) are allowed.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from ablate.errors import UserError

Path_ = tuple[str, ...]

MAX_BYTES = 1 << 20  # a study file is a few KB
MAX_NODES = 20_000  # nodes of the document with every alias expanded (the committed studies have a few hundred)
MAX_DEPTH = 32  # nesting, aliases expanded (a study's deepest key is 5 levels down)
_YAML = "tag:yaml.org,2002:"
ALLOWED_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class _Refused(Exception):
    """A document over a limit, or with a tag a study does not need: (line, message)."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting every node as if its aliases were expanded, while it composes."""

    def __init__(self, stream):
        super().__init__(stream)
        self._expanded = 0  # nodes so far, aliases expanded
        self._depth = 0
        self._size: dict[int, int] = {}  # id(node) -> expanded nodes of a finished node
        self._height: dict[int, int] = {}  # id(node) -> expanded levels of a finished node

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:
                line = event.start_mark.line + 1
                anchor = f"&{event.anchor} (line {node.start_mark.line + 1})"
                if id(node) not in self._size:
                    raise _Refused(line, f"alias *{event.anchor} refers to its own anchor {anchor}")
                self._expanded += self._size[id(node)]
                if self._expanded > MAX_NODES:
                    raise _Refused(line, f"alias *{event.anchor} of {anchor} expands the document past {MAX_NODES} "
                                         f"nodes (aliases are for sharing a few settings, not for generating them)")
                if self._depth + self._height[id(node)] > MAX_DEPTH:
                    raise _Refused(line, f"alias *{event.anchor} of {anchor} nests the document deeper than "
                                         f"{MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        start_mark = self.peek_event().start_mark
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        self._expanded += 1
        if self._expanded > MAX_NODES:
            raise _Refused(start_mark.line + 1, f"more than {MAX_NODES} nodes")
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        if node.tag not in ALLOWED_TAGS:
            tag = node.tag.replace(_YAML, "!!")
            raise _Refused(node.start_mark.line + 1, f"not valid YAML for a study file (tag {tag} is not allowed: "
                                                     f"only strings, numbers, booleans, null, lists and mappings)")
        children = node.value if isinstance(node.value, list) else []
        flat = [c for item in children for c in (item if isinstance(item, tuple) else (item,))]
        self._size[id(node)] = 1 + self._expanded - before
        self._height[id(node)] = 1 + max((self._height.get(id(c), 1) for c in flat), default=0)
        return node


# Dates stay strings (a study has no date field, and a description such as 2024-01-01 is text).
_BoundedLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _YAML + "timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# Exponents without a dot (lr: 3e-3) are floats, as in YAML 1.2 and JSON; YAML 1.1 would read them as text.
_BoundedLoader.add_implicit_resolver(_YAML + "float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                     list("-+0123456789"))


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], where: str) -> None:
    """Record the line of every key path (through aliases too: the loader bounded their expansion)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                raise UserError(f"{where}:{key_node.start_mark.line + 1}: duplicate key {'.'.join(path + (key,))!r}")
            keys.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (str(i),), lines, where)


def read_study_text(path: Path) -> str:
    """A study file's text: a regular file (checked before anything could block on it), UTF-8, at most MAX_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: no such study file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read study file ({e.strerror or e.__class__.__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UserError(f"{path}: a study file must be a regular file ({kind})")
        if st.st_size > MAX_BYTES:
            raise UserError(f"{path}: study file too large ({st.st_size} bytes; at most {MAX_BYTES})")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read study file ({e.strerror or e.__class__.__name__})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UserError(f"{path}: study file too large (over {MAX_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: a study file must be UTF-8 text (byte {data[e.start]:#04x} at offset "
                        f"{e.start} is not)") from None


def load_yaml(path: Path) -> tuple[Any, dict[Path_, int]]:
    """Parse `path` with the safe loader; return (data, {key path: line number})."""
    return parse_yaml(read_study_text(path), str(path))


def parse_yaml(text: str, where: str) -> tuple[Any, dict[Path_, int]]:
    """(data, {key path: line number}; the empty path is the document's first line) of a YAML text, bounded."""
    loader = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as e:
        raise UserError(f"{where}:{e.line}: {e.message}") from None
    except yaml.reader.ReaderError as e:
        line = text[: e.position].count("\n") + 1
        raise UserError(f"{where}:{line}: not valid YAML (character {e.character:#x} is not allowed)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{where}{line}: not valid YAML ({problem})") from None
    except RecursionError:
        raise UserError(f"{where}: YAML nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines, where)
    return data, lines
