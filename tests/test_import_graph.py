"""Layers point down: no module of ``arbitrage``, ``routers`` or ``reward`` imports,
directly or through others, a module that imports it.

Every import of those packages counts, at module level and inside functions (a
function-level import is a cycle waiting for its first call), except under
``if TYPE_CHECKING:``, which never runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("arbitrage", "routers", "reward")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)  # the ``else`` of ``if TYPE_CHECKING`` does run
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The project modules an import statement in module ``name`` loads: the module
    named, and the packages above it, whose ``__init__`` runs first (except the packages
    of ``name`` itself, which are loaded, or being loaded, already)."""
    if isinstance(node, ast.Import):
        named = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        # ``from pkg import module`` loads pkg.module; ``from module import name``, module
        named = {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names}
    own = _packages(name) | {name}
    loaded = set()
    for module in named:
        loaded |= {m for m in _packages(module) | {module} if m in known and m not in own}
    return loaded


def _packages(module: str) -> set[str]:
    """``"a.b.c"`` -> ``{"a", "a.b"}``."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def import_graph() -> dict[str, set[str]]:
    """Module name -> the project modules it imports."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(name, path, node, known)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path back to its start) per strongly connected component."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_back(graph, sorted(c)[0], c) for c in components]


def _path_back(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """A shortest path from ``start`` back to itself inside its component (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & within):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a component but on no cycle")


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_sees_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_the_checker_reads_function_level_imports_but_not_type_checking_ones() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from arbitrage.commands.run import RunDir\n"
        "def f():\n    from arbitrage.factories import preflight\n"
    )
    known = {"arbitrage", "arbitrage.commands.run", "arbitrage.factories"}
    path = ROOT / "arbitrage" / "x.py"
    targets = set().union(*(_targets("arbitrage.x", path, n, known) for n in _imports(tree)))
    assert targets == {"arbitrage.factories"}


def test_the_checker_counts_the_packages_an_import_initialises() -> None:
    known = {
        "arbitrage",
        "arbitrage.executors.ray",
        "arbitrage.executors.ray.session",
        "arbitrage.executors.ray.stream",
    }

    def targets(name: str, code: str) -> set[str]:
        path = ROOT / Path(*name.split(".")).with_suffix(".py")
        return set().union(*(_targets(name, path, n, known) for n in _imports(ast.parse(code))))

    # from outside: arbitrage/executors/ray/__init__.py runs first
    code = "from arbitrage.executors.ray.session import require_ray"
    assert targets("arbitrage.factories", code) == {
        "arbitrage.executors.ray",
        "arbitrage.executors.ray.session",
    }
    # from inside: that package is loaded already
    code += "\nfrom . import stream"
    assert targets("arbitrage.executors.ray.driver", code) == {
        "arbitrage.executors.ray.session",
        "arbitrage.executors.ray.stream",
    }
