"""The layering of genbench (``genbench.LAYERS``): every import runs downward, and no module imports itself back."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import genbench

PACKAGE = Path(genbench.__file__).resolve().parent


def imports(package: Path) -> list[tuple[str, str, bool]]:
    """(importing module, imported genbench module, at the module's top level) for every import in ``package``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found += [(module, t, id(node) in top) for t in targets if t.split(".")[0] == package.name]
    return found


def unit(module: str) -> str:
    """The package or top-level module of genbench that ``module`` belongs to (``genbench.runs.store`` → runs)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(package: Path, layers=genbench.LAYERS) -> list[str]:
    """Every import that runs upward or sideways, every module in no layer, and every cycle of top-level imports."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    edges = imports(package)
    problems = sorted({f"{unit(m)} ({m}) is in no layer of genbench.LAYERS" for m, _, _ in edges
                       if unit(m) and unit(m) not in rank})
    for importer, imported, _ in edges:
        a, b = unit(importer), unit(imported)
        if a and b and a != b and a in rank and b in rank and rank[b] >= rank[a]:
            way = "upward" if rank[b] > rank[a] else "sideways"
            problems.append(f"{importer} imports {imported}: {way} ({a} is in layer {rank[a]}, {b} in {rank[b]})")
    return problems + cycles({(m, t) for m, t, top in edges if top})


def cycles(edges: set[tuple[str, str]]) -> list[str]:
    """Import cycles among modules (Tarjan's strongly connected components of the top-level import graph)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append("import cycle: " + " -> ".join(sorted(component)))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_every_import_runs_downward_and_none_is_circular():
    assert layer_violations(PACKAGE) == []


def test_a_planted_upward_import_and_a_planted_cycle_are_caught(tmp_path):
    copy = tmp_path / "genbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    paths = copy / "core" / "paths.py"
    paths.write_text(paths.read_text() + "\nfrom ..runs import store  # planted\n")
    errors = copy / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom . import paths  # planted: paths imports errors\n")
    problems = layer_violations(copy)
    assert any("genbench.core.paths imports genbench.runs: upward" in p for p in problems), problems
    assert any(p.startswith("import cycle:") and "genbench.core.errors" in p for p in problems), problems


def test_a_module_in_no_layer_is_caught(tmp_path):
    copy = tmp_path / "genbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "stray.py").write_text("from .core import paths\n")
    assert any("stray" in p and "in no layer" in p for p in layer_violations(copy))
