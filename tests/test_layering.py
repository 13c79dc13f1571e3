"""The layering of avdd: no import cycle between its packages (and top-level modules).

Every import counts, at module level or inside a function: a lazy import is still a dependency.
The nodes are avdd's top-level units (``avdd.data``, ``avdd.distill``, ``avdd.files``, ...), the
edges "some module of A imports some module of B".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import avdd

SRC = Path(avdd.__file__).parent


def unit_of(module: str) -> str:
    """``avdd.data.store`` -> ``avdd.data``; ``avdd`` stays ``avdd``."""
    return ".".join(module.split(".")[:2])


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The avdd modules ``path`` imports."""
    module = module_name(path)
    return imports_in(path.read_text(), module if path.name == "__init__.py" else module.rpartition(".")[0])


def imports_in(source: str, package: str) -> set[str]:
    """The avdd modules ``source`` (a module of ``package``) imports anywhere in it; ``from avdd import
    x`` names module ``avdd.x`` where x is one."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "avdd"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != "avdd":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (SRC.parent / sub.replace(".", "/")).with_suffix(".py").is_file() or (
                    SRC.parent / sub.replace(".", "/") / "__init__.py").is_file()
                found.add(sub if is_module else target)
    return found


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        unit = unit_of(module_name(path))
        edges = graph.setdefault(unit, set())
        edges |= {unit_of(m) for m in imported_modules(path)} - {unit}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, str] = {}  # "open" while on the DFS stack, "done" after
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_between_packages() -> None:
    graph = unit_graph()
    assert {"avdd.data", "avdd.training", "avdd.distill", "avdd.evaluate"} <= set(graph)  # the walk saw the tree
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


# README, Development: the layers, top first; a unit may import its own layer or lower ones
LAYERS = (
    {"avdd.cli", "avdd.__main__", "avdd"},  # avdd/__init__.py: the public façade (avdd.load); nothing imports it
    {"avdd.experiments", "avdd.report", "avdd.demo", "avdd.tracking"},
    {"avdd.distill", "avdd.evaluate"},
    {"avdd.training"},
    {"avdd.models", "avdd.data", "avdd.outputs", "avdd.files", "avdd.formats", "avdd.ranges", "avdd.registry",
     "avdd.distributed", "avdd.device", "avdd.seeding", "avdd.errors", "avdd.version", "avdd.allocator"},
)


def layer_of(unit: str) -> int:
    found = [i for i, layer in enumerate(LAYERS) if unit in layer]
    assert found, f"{unit} is in no layer: add it to LAYERS and to the README's table"
    return found[0]


def test_no_package_imports_a_higher_layer() -> None:
    upward = [f"{a} -> {b}" for a, edges in unit_graph().items() for b in edges if layer_of(b) < layer_of(a)]
    assert not upward, "imports of a higher layer: " + ", ".join(sorted(upward))


def test_training_sits_below_distillation_and_evaluation() -> None:
    graph = unit_graph()
    assert "avdd.training" in graph["avdd.distill"] and "avdd.training" in graph["avdd.evaluate"]
    assert not graph["avdd.training"] & {"avdd.distill", "avdd.evaluate", "avdd.experiments", "avdd.cli"}
    assert "avdd.distill" not in graph["avdd.evaluate"]


@pytest.mark.parametrize(("graph", "expected"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert find_cycle(graph) == expected


def test_lazy_relative_and_package_imports_count() -> None:
    source = """
import numpy
from avdd import distributed, __version__
from . import spec
def later():
    from ..data.store import open_store
"""
    assert imports_in(source, "avdd.distill") == {"avdd.distributed", "avdd", "avdd.distill.spec", "avdd.data.store"}
    assert imported_modules(SRC / "distill" / "__init__.py") >= {"avdd.distill.dm", "avdd.distill.mtt"}
