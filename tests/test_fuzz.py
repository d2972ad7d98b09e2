"""Hostile study files: whatever the file holds, the CLI answers with success or one line and exit 2,
never a traceback, and never writes anything (hypothesis drives the mutations)."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ablate.cli import app

runner = CliRunner()

GOOD = {
    "name": "fuzz",
    "description": "a study to break",
    "base": {"model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
             "pretrain": {"steps": 10, "masking": "dynamic"}, "finetune": {"tasks": ["sst2"]}},
    "variants": {"a": {}, "b": {"pretrain": {"masking": "static"}}},
    "baseline": "a",
    "seeds": {"pretrain": [0], "finetune": [0, 1]},
    "scales": {"tiny": {"seeds": {"finetune": [0]}}},
    "runtime": {"threads": 1},
}

junk = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.text(min_size=5000, max_size=6000), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def paths(d, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from paths(v, prefix + (k,))


ALL_PATHS = list(paths(GOOD))


@st.composite
def mutated(draw):
    doc = copy.deepcopy(GOOD)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = doc
        for k in path[:-1]:
            if not isinstance(parent.get(k), dict):
                break
            parent = parent[k]
        else:
            action = draw(st.sampled_from(["replace", "delete", "unknown", "empty"]))
            if action == "replace":
                parent[path[-1]] = draw(junk)
            elif action == "delete":
                parent.pop(path[-1], None)
            elif action == "unknown":
                parent[draw(st.text(min_size=1, max_size=12))] = draw(junk)
            elif isinstance(parent.get(path[-1]), dict):
                parent[path[-1]] = {}
    return yaml.safe_dump(doc, allow_unicode=True)


def check(tmp_path, text: str) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(text, encoding="utf-8")
    results = tmp_path / "results"
    for cmd in (["validate", str(study)], ["plan", str(study), "--scale", "tiny", "--results", str(results)]):
        r = runner.invoke(app, cmd)
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        assert r.exit_code in (0, 2), (r.exit_code, r.output)
        if r.exit_code == 2:
            lines = [x for x in r.output.splitlines() if x.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), r.output
            assert "Traceback" not in r.output
    assert not results.exists()  # validate and plan never write


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@FUZZ
@given(mutated())
def test_mutated_study_files(tmp_path, text):
    check(tmp_path, text)


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(tmp_path, text):
    check(tmp_path, text)


@FUZZ
@given(st.sampled_from([
    "a: &x [1, 2]\nb: *x\n",
    "x: !!python/object/apply:os.system ['true']\n",
    "name: fuzz\nvariants: {a: {}}\nvariants: {b: {}}\n",
    "{{{{",
    "name: [unclosed\n",
    "\t- tab",
    "- just\n- a\n- list\n",
    "42\n",
    "",
]), st.integers(1, 9))
def test_hand_picked_hostile_documents(tmp_path, text, depth):
    check(tmp_path, text)
    check(tmp_path, "[" * depth * 120 + "]" * depth * 120)


def test_billion_laughs_stays_fast(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    doc = "\n".join(lines) + "\nname: laughs\ndescription: *a8\nvariants: {a: {data: *a8}}\nbaseline: a\n"
    check(tmp_path, doc)


def test_run_on_a_bad_file_writes_nothing(tmp_path):
    bad = copy.deepcopy(GOOD)
    bad["base"]["pretrain"]["steps"] = -5
    study = tmp_path / "bad.yaml"
    study.write_text(yaml.safe_dump(bad))
    results = tmp_path / "results"
    r = runner.invoke(app, ["run", str(study), "--scale", "tiny", "--results", str(results), "--no-progress"])
    assert r.exit_code == 2 and "base.pretrain.steps" in r.output
    assert not results.exists()
