"""platform/ and codecs/ know no plugin, and platform/ has no import cycles (issue 15)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

CORE = {"platform": "veena.platform", "codecs": "veena.codecs"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in CORE.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(path: Path, module: str) -> set[str]:
    """Every module an import statement names, at any depth (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*module.split(".")[:-node.level], base]).rstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_platform_and_codecs_import_no_plugin():
    offenders = {module: sorted(n for n in _imports(path, module) if n.startswith("veena.plugins"))
                 for module, path in _modules().items()}
    assert {m: n for m, n in offenders.items() if n} == {}


def _top_level_graph() -> dict[str, set[str]]:
    """Imports at module level only (not inside functions or TYPE_CHECKING blocks)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
        graph[module] = {d for d in deps if d in modules and d != module}
    return graph


def test_platform_has_no_import_cycles():
    graph = _top_level_graph()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for dep in graph[node]:
            if dep in path:
                cycles.append(path[path.index(dep):] + [dep])
            elif not any(dep in c for c in cycles):
                visit(dep, path + [dep])

    for start in graph:
        visit(start, [start])
    assert cycles == []
