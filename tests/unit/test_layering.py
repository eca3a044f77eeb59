"""The architecture as a test: import direction between the layers of shared/, no import cycles in
shared/ or devstack/, and no `default_*` builders outside the composition root.

Every `import` and `from ... import` counts, wherever it is written (module level, inside a function,
under `if TYPE_CHECKING:`): a function-local import hides a cycle from Python, not from the design.
The rules are data (LAYERS, FUNCTIONS_MAY_IMPORT) so that changing the architecture is a visible
edit here; the checker is tested on made-up graphs below, so it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

DOMAINS = frozenset(
    {
        "connect",
        "directory",
        "mapping",
        "availability",
        "bookings",
        "subscriptions",
        "sync",
        "api",
        "checks",
        "webhooks",
        "attendance",
        "analytics",
    }
)
# Layer of shared/ -> the layers it may import (besides itself). Read "<-" in ARCHITECTURE as
# "is imported by": core <- storage, graph <- domains <- wiring <- functions.
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "storage": frozenset({"core", "graph"}),
    "graph": frozenset({"core", "storage"}),
    **{
        domain: frozenset({"core", "storage", "graph"}) | (DOMAINS - {domain}) for domain in DOMAINS
    },
    "wiring": frozenset({"core", "storage", "graph"}) | DOMAINS,
}
# functions/ gets its collaborators from the wiring and calls the domain services; it never builds
# storage or Graph clients itself.
FUNCTIONS_MAY_IMPORT = frozenset({"wiring", "core"}) | DOMAINS
# Between these, imports may go both ways, but never in a cycle (of modules, nor of packages).
ACYCLIC = frozenset(LAYERS)
# Names nothing in shared/ may import: the Functions host's SDK and the triggers.
SHARED_NEVER_IMPORTS = ("azure.functions", "functions")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written in `module` at `line`."""

    module: str
    target: str
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool) -> list[Import]:
    """Every import in `source`, anywhere in the tree, as absolute dotted names.

    `from x import y` yields `x.y` (a submodule or a name; `resolve` tells them apart) and `x`.
    """
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(Import(module, base, node.lineno))
            found += [Import(module, f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def resolve(imp: Import, known: Iterable[str]) -> set[str]:
    """The known modules an import runs: the target (or the package it names a member of) and the
    target's packages that are not already the importer's own (those are initialised first)."""
    known = set(known)
    target = imp.target
    while target and target not in known:
        target = target.rpartition(".")[0]
    if not target:
        return set()
    own = {imp.module.rsplit(".", depth)[0] for depth in range(imp.module.count(".") + 1)}
    parts = target.split(".")
    runs = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return {name for name in runs if name in known and name not in own and name != imp.module}


Graph = Mapping[str, Mapping[str, int]]  # module -> {imported module: first line}


def build_graph(imports: Iterable[Import], known: Iterable[str]) -> dict[str, dict[str, int]]:
    known = set(known)
    graph: dict[str, dict[str, int]] = {name: {} for name in known}
    for imp in imports:
        for target in resolve(imp, known):
            graph[imp.module].setdefault(target, imp.line)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle per tangle (`tangles`): fixing it may reveal the next one in the same tangle."""
    return [cycle_through(graph, tangle) for tangle in tangles(graph)]


def tangles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return sorted(components)


def cycle_through(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle from the component's first node back to itself (breadth first)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def describe_cycle(graph: Graph, cycle: list[str]) -> str:
    steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in itertools.pairwise(cycle)]
    return "import cycle: " + "; ".join(steps)


def cycle_problems(graph: Graph) -> list[str]:
    """Each tangle's shortest cycle, and the tangle's other members (also in some cycle)."""
    problems = []
    for tangle in tangles(graph):
        cycle = cycle_through(graph, tangle)
        others = sorted(set(tangle) - set(cycle))
        tail = f" (tangled with it: {', '.join(others)})" if others else ""
        problems.append(describe_cycle(graph, cycle) + tail)
    return problems


def layer_of(module: str) -> str | None:
    """shared.X.y -> X (a package of shared/), shared.wiring -> wiring, functions.* -> functions."""
    parts = module.split(".")
    if parts[0] == "functions":
        return "functions"
    if parts[0] != "shared" or len(parts) == 1:
        return None
    return parts[1]


def direction_problems(graph: Graph, externals: Iterable[Import]) -> list[str]:
    """Imports against LAYERS / FUNCTIONS_MAY_IMPORT / SHARED_NEVER_IMPORTS, one line each."""
    problems: list[str] = []
    for module in sorted(graph):
        here = layer_of(module)
        if here is None:
            continue
        allowed = FUNCTIONS_MAY_IMPORT if here == "functions" else LAYERS.get(here)
        if allowed is None:
            problems.append(f"{module}: shared/{here} is not a declared layer (add it to LAYERS)")
            continue
        targets = graph[module]
        for target, line in sorted(targets.items()):
            there = layer_of(target)
            if there is None or there == here or there in allowed:
                continue
            if any(t.startswith(target + ".") and targets[t] == line for t in targets):
                continue  # the package of a module this line imports: that one is reported
            problems.append(
                f"{module} (line {line}) imports {target}: {here} may not import {there}"
            )
    for imp in externals:
        if layer_of(imp.module) in (None, "functions"):
            continue
        for name in SHARED_NEVER_IMPORTS:
            if imp.target == name or imp.target.startswith(name + "."):
                problems.append(f"{imp.module} (line {imp.line}) imports {imp.target}")
    return sorted(set(problems))


def package_graph(graph: Graph) -> dict[str, dict[str, int]]:
    """The module graph collapsed to the ACYCLIC layers of shared/ (first line of any edge)."""
    packages: dict[str, dict[str, int]] = {name: {} for name in ACYCLIC}
    for module, targets in graph.items():
        here = layer_of(module)
        for target, line in targets.items():
            there = layer_of(target)
            if here in ACYCLIC and there in ACYCLIC and here != there:
                packages[here].setdefault(there, line)  # type: ignore[index]
    return packages


def default_builders(source: str, module: str) -> list[str]:
    tree = ast.parse(source)
    return [
        f"{module} (line {node.lineno}) defines {node.name}: builders live in shared/wiring.py"
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("default_")
    ]


# ---------------------------------------------------------------- the real tree


@dataclass(frozen=True)
class Tree:
    sources: dict[str, str]  # module -> source
    packages: frozenset[str]

    @property
    def imports(self) -> list[Import]:
        return [
            imp
            for module, source in self.sources.items()
            for imp in imports_of(source, module, module in self.packages)
        ]

    def graph(self, prefix: str) -> dict[str, dict[str, int]]:
        """Imports among the modules named `prefix` or `prefix.*`."""
        inside = {m for m in self.sources if m == prefix or m.startswith(prefix + ".")}
        return build_graph((i for i in self.imports if i.module in inside), inside)


def read_tree(*top: str) -> Tree:
    sources: dict[str, str] = {}
    packages: set[str] = set()
    for name in top:
        for path in sorted((ROOT / name).rglob("*.py")):
            module = module_name(path, ROOT)
            sources[module] = path.read_text(encoding="utf-8")
            if path.name == "__init__.py":
                packages.add(module)
    return Tree(sources, frozenset(packages))


@pytest.fixture(scope="module")
def tree() -> Tree:
    return read_tree("shared", "devstack", "functions")


def report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("top", ["shared", "devstack"])
def test_no_import_cycles(tree: Tree, top: str) -> None:
    graph = tree.graph(top)
    assert len(graph) > 10, f"found only {sorted(graph)} under {top}/"
    problems = cycle_problems(graph)
    assert problems == [], report(problems)


def test_shared_packages_import_each_other_without_cycles(tree: Tree) -> None:
    graph = package_graph(tree.graph("shared"))
    problems = cycle_problems(graph)
    assert problems == [], report(problems)


def test_imports_follow_the_declared_direction(tree: Tree) -> None:
    inside = {m for m in tree.sources if m.split(".")[0] in ("shared", "functions")}
    imports = [i for i in tree.imports if i.module in inside]
    graph = build_graph(imports, inside)
    assert {layer_of(m) for m in graph} >= {"core", "storage", "graph", "wiring", "functions"}
    problems = direction_problems(graph, imports)
    assert problems == [], report(problems)


def test_no_default_builders_outside_the_wiring(tree: Tree) -> None:
    problems = [
        problem
        for module, source in sorted(tree.sources.items())
        if module.startswith("shared.") and module != "shared.wiring"
        for problem in default_builders(source, module)
    ]
    assert problems == [], report(problems)


# ---------------------------------------------------------------- the checker on made-up trees


def fake_graph(edges: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    names = set(edges) | {t for targets in edges.values() for t in targets}
    return {name: {t: n + 1 for n, t in enumerate(edges.get(name, []))} for name in names}


def test_imports_are_read_everywhere_and_made_absolute() -> None:
    source = """
from __future__ import annotations
import json, shared.core.errors
from typing import TYPE_CHECKING
from . import sibling
from .. import uncle
from ..core.settings import Settings
if TYPE_CHECKING:
    from shared.graph.client import GraphClient
def later():
    import shared.storage.clients as clients
    from azure import functions
"""
    targets = {imp.target for imp in imports_of(source, "shared.sync.worker", is_package=False)}
    assert targets >= {
        "json",
        "shared.core.errors",
        "shared.sync.sibling",
        "shared.uncle",
        "shared.core.settings.Settings",
        "shared.graph.client.GraphClient",
        "shared.storage.clients",
        "azure.functions",
    }
    in_package = {imp.target for imp in imports_of("from . import a\n", "pkg.sub", is_package=True)}
    assert in_package == {"pkg.sub", "pkg.sub.a"}


def test_resolve_finds_the_module_and_its_packages_but_not_the_importers_own() -> None:
    known = {"shared", "shared.core", "shared.core.settings", "shared.sync", "shared.sync.plan"}
    assert resolve(Import("shared.sync.plan", "shared.core.settings.Settings", 1), known) == {
        "shared.core",
        "shared.core.settings",
    }
    assert resolve(Import("shared.sync.plan", "shared.sync", 1), known) == set()
    assert resolve(Import("shared.sync.plan", "json", 1), known) == set()


def test_cycles_are_found_and_named_with_lines() -> None:
    graph = fake_graph(
        {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["f"], "f": ["e"], "g": ["a"]}
    )
    assert cycles(graph) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert (
        describe_cycle(graph, ["e", "f", "e"]) == "import cycle: e (line 1) -> f; f (line 1) -> e"
    )
    assert cycles(fake_graph({"a": ["b"], "b": ["c"], "c": []})) == []


def test_a_cycle_is_reported_as_its_shortest_loop_with_the_rest_of_its_tangle() -> None:
    graph = fake_graph({"a": ["b", "c"], "b": ["c"], "c": ["a"]})
    assert cycles(graph) == [["a", "c", "a"]]
    assert cycle_problems(graph) == [
        "import cycle: a (line 2) -> c; c (line 1) -> a (tangled with it: b)"
    ]


def test_wrong_direction_imports_are_reported() -> None:
    graph = fake_graph(
        {
            "shared.core.errors": ["shared.storage.tablestore"],
            "shared.storage.tablestore": ["shared.core.errors"],
            "shared.bookings.service": ["shared.wiring", "shared.availability.busy"],
            "shared.graph.client": ["shared.connect.tokens"],
            "shared.wiring": ["shared.bookings.service"],
            "functions.bookings": [
                "shared.wiring",
                "shared.storage.clients",
                "shared.bookings.service",
            ],
            "shared.newthing.x": [],
        }
    )
    externals = [
        Import("shared.api.auth", "azure.functions", 3),
        Import("shared.api.auth", "azure.functionsx", 4),
        Import("functions.http", "azure.functions", 5),
    ]
    assert direction_problems(graph, externals) == [
        "functions.bookings (line 2) imports shared.storage.clients: functions may not import storage",
        "shared.api.auth (line 3) imports azure.functions",
        "shared.bookings.service (line 1) imports shared.wiring: bookings may not import wiring",
        "shared.core.errors (line 1) imports shared.storage.tablestore: core may not import storage",
        "shared.graph.client (line 1) imports shared.connect.tokens: graph may not import connect",
        "shared.newthing.x: shared/newthing is not a declared layer (add it to LAYERS)",
    ]


def test_package_cycles_are_found_across_modules() -> None:
    graph = fake_graph(
        {
            "shared.mapping.service": ["shared.directory.registry"],
            "shared.directory.people": ["shared.mapping.service"],
        }
    )
    assert cycles(package_graph(graph)) == [["directory", "mapping", "directory"]]


def test_default_builders_are_found_only_at_module_level() -> None:
    source = "def default_store(): ...\nasync def default_x(): ...\ndef f():\n    def default_inner(): ...\n"
    assert default_builders(source, "shared.m") == [
        "shared.m (line 1) defines default_store: builders live in shared/wiring.py",
        "shared.m (line 2) defines default_x: builders live in shared/wiring.py",
    ]
