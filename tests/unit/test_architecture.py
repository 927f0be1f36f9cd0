"""The shape of the package, read from its imports (grimp, function-level imports included):
no import circle anywhere, and dependencies point one way, from the outside in:

    entrypoints, bootstrap  ->  adapters  ->  service  ->  domain

The domain imports nothing but the domain and the standard library."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grimp
import pytest

PACKAGE = "campaign_worker"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, include_external_packages=True)


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to (domain, service, ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# what each part may import from the package (besides itself)
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "service": {"domain", "topics", "logs"},
    "adapters": {"service", "domain", "config", "topics", "logs"},
    "entrypoints": {
        "bootstrap",
        "adapters",
        "service",
        "domain",
        "config",
        "topics",
        "logs",
        "dev",
    },
    "bootstrap": {"entrypoints", "adapters", "service", "domain", "config", "topics", "logs"},
    "dev": {"config", "logs"},
    "config": set(),
    "topics": set(),
    "logs": set(),
}


def _internal(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m == PACKAGE or m.startswith(PACKAGE + "."))


def _cycles(graph: grimp.ImportGraph) -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or self-imports."""
    modules = _internal(graph)
    edges = {
        m: sorted(d for d in graph.find_modules_directly_imported_by(m) if d in modules)
        for m in modules
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> Iterator[list[str]]:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                yield from visit(w)
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
            if len(component) > 1 or v in edges[v]:
                yield sorted(component)

    for m in modules:
        if m not in index:
            yield from visit(m)


def test_no_import_circle_anywhere_in_the_package(graph: grimp.ImportGraph) -> None:
    circles = list(_cycles(graph))
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_dependencies_point_from_the_outside_in(graph: grimp.ImportGraph) -> None:
    wrong = []
    for m in _internal(graph):
        for d in graph.find_modules_directly_imported_by(m):
            if not d.startswith(PACKAGE + ".") or _part(d) == _part(m):
                continue
            if _part(d) not in ALLOWED.get(_part(m), set()):
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports against the layering:\n  " + "\n  ".join(sorted(wrong))


def test_the_domain_imports_only_the_domain_and_the_standard_library(
    graph: grimp.ImportGraph,
) -> None:
    wrong = []
    for m in _internal(graph):
        if _part(m) != "domain":
            continue
        for d in graph.find_modules_directly_imported_by(m):
            if d.startswith(PACKAGE + ".domain") or d.split(".")[0] in sys.stdlib_module_names:
                continue
            wrong.append(f"{m} -> {d}")
    assert not wrong, "the domain imports from outside: " + ", ".join(sorted(wrong))
