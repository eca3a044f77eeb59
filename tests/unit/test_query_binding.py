"""Every Table Storage filter is built with parameter binding, never by pasting values (issue 20).

A filter such as f"PartitionKey eq '{building}'" breaks on a quote in the value and is an OData
injection; azure-data-tables binds values instead (`query_entities(filter, parameters={...})`,
with `@name` in the filter). This test reads the source (ast) of shared/, functions/, devstack/ and
bench/ and fails on:

- a string built from pieces (f-string, `+`, `%`, `.format`) whose literal text compares against a
  quoted value (`eq '`, `lt datetime'`, ...): a value pasted into a filter;
- a `query_entities` call without `parameters=`, or whose filter is built from pieces that are not
  only `@name` placeholders.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TREES = ("shared", "functions", "devstack", "bench")
# An OData comparison with a quoted literal right after it: `eq '`, `ge datetime'`, `ne guid'`.
QUOTED_COMPARISON = re.compile(r"\b(eq|ne|gt|ge|lt|le)\s+(datetime|guid|X)?'", re.IGNORECASE)
QUERY_METHODS = frozenset({"query_entities"})
# Our helpers that take a filter (shared/storage/tablestore.py), filter as the second argument.
HELPERS = frozenset({"query_all", "query_first", "query_page"})
# Table filters name these; Graph's $filter (shared/bookings/outlook.py, checks/steps.py) has no
# binding and is not a table query: its values are our own server ids.
TABLE_WORDS = re.compile(r"\b(PartitionKey|RowKey|Timestamp)\b")


def sources() -> Iterator[tuple[Path, ast.Module]]:
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            yield path, ast.parse(path.read_text(), str(path))


def literal_text(node: ast.AST) -> str | None:
    """The literal text of a string built from pieces, or None when `node` builds no string."""
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        parts = [literal_text(side) or _constant(side) for side in (node.left, node.right)]
        if any(p is not None for p in parts):
            return "".join(p or "" for p in parts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and isinstance(node.func.value, ast.Constant)
        and isinstance(node.func.value.value, str)
    ):
        return node.func.value.value
    return None


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def filter_arguments(module: ast.Module) -> set[int]:
    """ids of the nodes passed as the filter of a table query."""
    found: set[int] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            position = 0 if name in QUERY_METHODS else 1 if name in HELPERS else None
            if position is not None and len(node.args) > position:
                found.add(id(node.args[position]))
            found.update(id(k.value) for k in node.keywords if k.arg == "query_filter")
    return found


def pasted_values(module: ast.Module) -> list[tuple[int, str]]:
    filters = filter_arguments(module)
    found = []
    for node in ast.walk(module):
        text = literal_text(node)
        if text is None or not QUOTED_COMPARISON.search(text):
            continue
        if id(node) in filters or TABLE_WORDS.search(text):
            found.append((getattr(node, "lineno", 0), text[:80]))
    return found


def unbound_queries(module: ast.Module) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(module):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in QUERY_METHODS:
            continue
        keywords = {k.arg for k in node.keywords}
        if "parameters" not in keywords:
            found.append((node.lineno, "query_entities without parameters="))
        query = node.args[0] if node.args else None
        if isinstance(query, ast.JoinedStr) and any(
            isinstance(v, ast.FormattedValue) for v in query.values
        ):
            found.append((node.lineno, "query_entities with an f-string filter"))
    return found


def test_no_filter_pastes_a_value_into_its_text() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {text}"
        for path, module in sources()
        for line, text in pasted_values(module)
    ]
    assert offenders == []


def test_every_query_binds_its_values() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, module in sources()
        for line, what in unbound_queries(module)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "t.query_entities(f\"PartitionKey eq '{b}'\")",
        't.query_entities("PartitionKey eq \'" + b + "\'")',
        "q = \"RowKey lt datetime'%s'\" % stamp",
        'tablestore.query_all(t, "expiresAt lt datetime\'" + stamp + "\'", {})',
        "q = \"PartitionKey eq '{}'\".format(b)",
        "t.query_entities(\"RowKey eq 'current'\")",  # no values bound: a constant today, a paste tomorrow
        't.query_entities(f"PartitionKey eq @{name}", parameters=p)',
    ],
)
def test_the_scan_catches_each_way_of_pasting(source: str) -> None:
    module = ast.parse(source)
    assert pasted_values(module) or unbound_queries(module)


def test_the_scan_lets_bound_filters_through() -> None:
    module = ast.parse(
        'clauses.append(f"( RowKey ge @lo{n} and RowKey lt @hi{n} )")\n'
        't.query_entities("PartitionKey eq @b", parameters={"b": b})\n'
        'tablestore.query_all(t, f"PartitionKey eq @pk and ( {joined} )", params)\n'
    )
    assert pasted_values(module) == [] and unbound_queries(module) == []
