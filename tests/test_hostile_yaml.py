"""Hostile study files at the YAML layer: alias bombs, self-referring aliases, deep nesting, tags a study does not
need, pipes, non-UTF-8 bytes and non-mappings are each one line naming the file (and the line), at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ablate.errors import UserError
from ablate.study.load import load_study

REPO = Path(__file__).resolve().parents[1]
HEAD = "name: demo\ndescription: a demo study\nvariants: {a: {}}\nbaseline: a\n"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """About 1 KB: each level a list of mappings aliasing the level above, width**levels nodes expanded."""
    out = [HEAD + "junk:", "  - &l0 {" + ", ".join(f"k{i}: lol" for i in range(width)) + "}"]
    for lv in range(1, levels):
        out.append(f"  - &l{lv} [" + ", ".join(f"{{k{i}: *l{lv - 1}}}" for i in range(width)) + "]")
    return "\n".join(out) + "\n"


def _validate(path: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "ablate", "validate", str(path)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _one_line_error(path: Path, fragments: list[str]) -> str:
    with pytest.raises(UserError) as info:
        load_study(path, "tiny")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


def test_the_alias_bomb_is_refused_at_once_naming_the_alias(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 1300
    t0 = time.monotonic()
    out = _validate(path)
    assert time.monotonic() - t0 < 5 + 3, "refused in well under a second after start-up"  # start-up included
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"{path}:" in lines[0] and "alias *l" in lines[0] and "expands" in lines[0], lines[0]
    t0 = time.monotonic()
    _one_line_error(path, ["alias", "(line "])  # in process too, timed without the start-up
    assert time.monotonic() - t0 < 1


def test_a_bomb_in_a_value_a_study_reads_is_refused_too(tmp_path):
    text = alias_bomb(levels=7, width=6).replace("description: a demo study", "description: *l6")
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("junk:", "junk:\n  - x"))
    _one_line_error(path, ["alias"])


def test_a_few_aliases_still_work(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: demo\ndescription: d\nbase: {pretrain: &p {steps: 10}}\n"
                    "variants: {a: {pretrain: *p}, b: {pretrain: {<<: *p, masking: static}}}\nbaseline: a\n")
    spec = load_study(path, "tiny")
    assert spec.variants["b"].pretrain.steps == 10 and spec.variants["b"].pretrain.masking == "static"


def test_an_alias_to_its_own_anchor_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "junk: &r [1, *r]\n")
    _one_line_error(path, [":5:", "refers to its own anchor &r"])


def test_deep_nesting_is_refused_with_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "junk: " + "[" * 500 + "]" * 500 + "\n")
    _one_line_error(path, [":5:", "nested deeper"])


@pytest.mark.parametrize("value", ["!!binary aGVsbG8=", "!!set {a, b}", "!!python/name:os.system ''",
                                   "!!omap [{a: 1}]", "!!timestamp 2024-01-01"])
def test_tags_a_study_does_not_need_are_refused(tmp_path, value):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.replace("a demo study", value))
    _one_line_error(path, [":2:", "not valid YAML", "is not allowed"])


def test_a_date_is_text(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.replace("a demo study", "2024-01-01"))
    assert load_study(path, "tiny").description == "2024-01-01"


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    out = _validate(fifo, timeout=20)  # the old code blocked here forever
    assert out.returncode == 2 and "regular file" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    _one_line_error(fifo, ["regular file"])


def test_a_directory_is_refused(tmp_path):
    _one_line_error(tmp_path, ["regular file", "directory"])


def test_non_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(HEAD.replace("a demo study", "caf\xe9").encode("latin-1"))
    _one_line_error(path, [":2:", "UTF-8", "0xe9"])


def test_a_control_character_is_refused_with_its_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD.replace("a demo study", "a\x00b"))
    _one_line_error(path, [":2:", "not valid YAML"])


@pytest.mark.parametrize("text,got", [("- a\n- b\n", "list"), ("", "empty"), ("just text\n", "str"),
                                      ("# nothing\n", "empty")])
def test_a_study_file_must_be_a_mapping(tmp_path, text, got):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    _one_line_error(path, [":1:", "mapping", got])


def test_a_huge_file_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "# " + "x" * (2 << 20) + "\n")
    _one_line_error(path, ["too large"])
