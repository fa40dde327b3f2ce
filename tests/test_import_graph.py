"""The library's module-level imports form no circle (each family builds on the ones below)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "incremental"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports at module level (imports inside functions are
    deliberate late imports and do not count)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                target = node.module
                if target.startswith("incremental"):
                    for alias in node.names:  # "from package import submodule"
                        sub = f"{target}.{alias.name}"
                        edges.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("incremental")}
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle():
    graph = _graph()
    # A package's __init__ re-exports its modules: edges from a module to its own package's
    # __init__ would be circles of re-export, which the rule below forbids too.
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


@pytest.mark.parametrize("family", ["fashion", "paper", "folders"])
def test_data_families_build_on_core_not_on_each_other(family):
    graph = _graph()
    others = {"fashion", "paper", "folders"} - {family}
    for module, edges in graph.items():
        if module.startswith(f"incremental.data.{family}"):
            crossing = [
                e for e in edges if any(e.startswith(f"incremental.data.{o}") for o in others)
            ]
            assert not crossing, (module, crossing)
