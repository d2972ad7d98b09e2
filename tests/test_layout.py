"""The package's shape: layers that follow the data flow, no import circles, small files, few root modules, and
function-level imports only where they keep startup fast (each saying so)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ablate"
# A package whose __init__ imports its own submodules to fill a registry, which import it back for the registry:
# the one circle allowed (fairseq's register_task, without the import side effects elsewhere).
REGISTRY_PACKAGES = {"ablate.tasks"}
MAX_LINES = 400
MAX_ROOT_MODULES = 8


def _modules() -> list[Path]:
    """The package's Python files."""
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_contract_is_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    if not lint.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 kept, 0 broken" in out.stdout


def _cycles(graph: grimp.ImportGraph) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]; counter[0] += 1; stack.append(child); on.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                    break
                if child in on:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        m = stack.pop(); on.discard(m); comp.add(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(comp)
    return out


def test_no_import_circles_but_a_registrys():
    graph = grimp.build_graph("ablate", exclude_type_checking_imports=True)
    bad = [sorted(c) for c in _cycles(graph)
           if not any(all(m == pkg or m.startswith(pkg + ".") for m in c) and pkg in c for pkg in REGISTRY_PACKAGES)]
    assert not bad, f"import circles: {bad}"


def test_the_cycle_finder_finds_a_circle():
    graph = grimp.ImportGraph()
    for m in ("a", "b", "c"):
        graph.add_module(m)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    graph.add_import(importer="c", imported="a")
    assert _cycles(graph) == [{"a", "b", "c"}]


def test_no_file_over_400_lines():
    long = {str(p.relative_to(REPO)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_few_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def _function_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, import line, the comment that explains it) for every import inside a function; the comment may
    sit on the import's line or on the first line of the run of imports it belongs to."""
    lines = path.read_text().splitlines()
    out = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body_imports = [s for s in ast.walk(node) if isinstance(s, (ast.Import, ast.ImportFrom))]
        for imp in body_imports:
            first = imp.lineno
            while first - 2 >= 0 and lines[first - 2].strip().startswith(("from ", "import ")):
                first -= 1
            said = [lines[i - 1] for i in range(first, imp.end_lineno + 1) if "#" in lines[i - 1]]
            out.append((imp.lineno, lines[imp.lineno - 1].strip(), said[0].split("#", 1)[1] if said else ""))
    return out


def test_every_function_level_import_says_why():
    silent = [f"{p.relative_to(REPO)}:{n}: {line}" for p in _modules() for n, line, why in _function_imports(p)
              if not why.strip()]
    assert not silent, "function-level imports without a comment saying why:\n" + "\n".join(silent)


def test_the_import_check_sees_a_silent_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import json\n    return json\n\ndef g():\n    import os  # lazy: why\n    return os\n")
    assert [(why.strip() == "") for _, _, why in _function_imports(f)] == [True, False]


def test_help_does_not_import_the_heavy_libraries():
    code = ("import sys; from typer.testing import CliRunner; from ablate.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'datasets', 'evaluate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_readme_is_a_guide_of_at_most_12_kb_linking_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    for doc in ("docs/results.md", "docs/scale.md", "docs/ray.md", "docs/reliability.md", "docs/architecture.md"):
        assert f"]({doc})" in readme and (REPO / doc).exists(), doc


def test_every_relative_link_in_the_readme_and_docs_resolves():
    """Moving results or reports (an edition archived) must not leave a reader a dead link."""
    import re

    def anchors(md: Path) -> set[str]:  # GitHub's heading slugs: lower case, punctuation dropped, spaces to "-"
        heads = re.findall(r"^#+ (.+)$", md.read_text(encoding="utf-8"), flags=re.M)
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}

    dead = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", md.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = md.parent / path if path else md
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
                dead.append(f"{md.relative_to(REPO)}: {target}")
    assert not dead, dead
