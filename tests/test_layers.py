"""The package's shape: no import cycles, no import from a lower layer to a higher one, files one can read.

Every `import spanqa...` counts, at module level or inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "spanqa"

# Lower numbers are lower layers; a module may import its own layer and the ones below, never above.
LAYERS = {
    "spanqa.errors": 0,
    "spanqa.prediction": 0,
    "spanqa.backends": 1,
    "spanqa.retrieval": 1,
    "spanqa.reading": 2,
    "spanqa": 2,  # the public API (__init__): Reader, Answer, Prediction, Retrieval and the errors
    "spanqa.evaluation": 3,
    "spanqa.training": 4,
    "spanqa.service": 5,
    "spanqa.cluster": 5,  # batch answering on Ray: above reading, evaluation and training, below the CLI
    "spanqa.cli": 6,
}
MAX_LINES = 400
# the subpackages, __init__.py, errors.py, prediction.py and the default model; 12 since cluster/ (Ray)
MAX_TOP_LEVEL = 12


def module_name(file: Path, root: Path = PACKAGE) -> str:
    parts = list(file.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool = False) -> set[str]:
    """The spanqa modules a module's source imports (absolute or relative, anywhere in the file)."""
    found = set()
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from spanqa.x import module`
    return {m for m in found if m == "spanqa" or m.startswith("spanqa.")}


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(f, root): f for f in root.rglob("*.py")}
    graph = {}
    for name, file in files.items():
        raw = imports_of(file.read_text(encoding="utf-8"), name, file.name == "__init__.py")
        graph[name] = {m for m in raw if m in files and m != name}
    return graph


def room(module: str) -> str:
    """The most specific entry of LAYERS that holds the module ("spanqa" only for the package itself)."""
    return max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)


def layer(module: str) -> int:
    return LAYERS[room(module)]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps if layer(b) > layer(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    assert upward_imports(import_graph()) == []


def test_every_module_has_a_layer():
    """A new top-level module or subpackage must be placed in LAYERS, not fall back to the package's layer."""
    unplaced = [name for name in import_graph() if room(name) == "spanqa" and name != "spanqa"]
    assert unplaced == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "spanqa"
    (pkg / "reading").mkdir(parents=True)
    (pkg / "cli").mkdir()
    for d in (pkg, pkg / "reading", pkg / "cli"):
        (d / "__init__.py").write_text("")
    (pkg / "reading" / "a.py").write_text("def f():\n    from spanqa.reading import b\n")
    (pkg / "reading" / "b.py").write_text("from . import a\nfrom spanqa.cli.main import run\n")
    (pkg / "cli" / "main.py").write_text("run = 1\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["spanqa.reading.a", "spanqa.reading.b"]]
    assert upward_imports(graph) == ["spanqa.reading.b -> spanqa.cli.main"]


def test_top_level_shows_the_rooms():
    entries = [p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    assert len(entries) <= MAX_TOP_LEVEL, sorted(entries)


@pytest.mark.parametrize("file", sorted(PACKAGE.rglob("*.py")), ids=lambda f: str(f.relative_to(PACKAGE)))
def test_modules_are_readable_in_one_sitting(file):
    assert len(file.read_text(encoding="utf-8").splitlines()) <= MAX_LINES
