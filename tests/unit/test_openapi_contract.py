"""The OpenAPI description's own structure (issue 20): what the contract test relies on.

Every operation that takes input or a token can refuse (a 4xx), every error is problem+json, every request body
has an example that its schema accepts, every link leads to a described operation with the
parameters it needs. The description against the running server: tests/e2e/test_schemathesis.py.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from shared.api.openapi import openapi_document
from shared.core.errors import BookingBridgeError

DOC = openapi_document()
OPERATIONS = [
    (method, path, operation)
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
]
IDS = [f"{method.upper()} {path}" for method, path, _ in OPERATIONS]


def _response(response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        return dict(DOC["components"]["responses"][response["$ref"].rsplit("/", 1)[1]])
    return response


def _validator(schema: dict[str, Any]) -> Any:
    # The document's components at the root, so `#/components/schemas/...` resolves.
    return jsonschema_rs.validator_for({**schema, "components": DOC["components"]})


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_operation_can_refuse_in_problem_json(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    errors = {s: _response(r) for s, r in operation["responses"].items() if s[0] in "45"}
    takes_input = operation.get("parameters") or "requestBody" in operation or operation["security"]
    if takes_input:  # /health, /openapi.json, /console/config.json take nothing to refuse
        assert any(s.startswith("4") for s in errors), "no 4xx described"
    for status, response in errors.items():
        assert list(response.get("content", {})) == ["application/problem+json"], status


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_request_body_has_an_example_its_schema_accepts(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    body = operation.get("requestBody")
    if body is None:
        return
    for media, content in body["content"].items():
        assert "example" in content, f"{media}: no example"
        problems = [
            e.message for e in _validator(content["schema"]).iter_errors(content["example"])
        ]
        assert problems == [], f"{media}: {problems}"


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=IDS)
def test_every_link_leads_to_a_described_operation_with_its_path_parameters(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    for response in operation["responses"].values():
        for name, link in _response(response).get("links", {}).items():
            pointer = link["operationRef"].removeprefix("#/paths/")
            target_path, target_method = pointer.rsplit("/", 1)
            target_path = target_path.replace("~1", "/").replace("~0", "~")
            assert target_method in DOC["paths"].get(target_path, {}), name
            needed = set(re.findall(r"{(\w+)}", target_path))
            assert needed <= set(link["parameters"]), f"{name}: {needed - set(link['parameters'])}"


def test_the_resources_of_the_api_are_linked_create_to_read_update_delete() -> None:
    linked = {
        (method, path)
        for method, path, operation in OPERATIONS
        for response in operation["responses"].values()
        if _response(response).get("links")
    }
    for created in (
        ("put", "/buildings/{building}/resources/{resource}"),
        ("put", "/buildings/{building}/companies/{company}"),
        ("put", "/buildings/{building}/users/{email}"),
        ("post", "/buildings/{building}/bookings"),
        ("post", "/buildings/{building}/webhooks"),
    ):
        assert created in linked, created


# ---------------------------------------------------------------- reason codes

SHARED = Path(__file__).resolve().parents[2] / "shared"
# 4xx reasons raised inside a worker or a store and handled there: never an HTTP answer.
INTERNAL_REASONS = {
    "lease_lost": "shared/sync/deltastate.py: a sync round lost its lease; the round stops",
    "sync_contended": "shared/sync/deltastate.py: another round holds the lease; retried",
    "exists": "shared/storage/tablestore.py: an insert raced; callers turn it into their own",
    "modified": "shared/storage/tablestore.py: an ETag race; callers turn it into their own",
}


def _client_error_classes() -> set[str]:
    for module in pkgutil.walk_packages([str(SHARED)], "shared."):
        importlib.import_module(module.name)
    found: set[str] = set()
    todo: list[type[BookingBridgeError]] = [BookingBridgeError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if 400 <= cls.status < 500:
            found.add(cls.__name__)
    return found


def _raised_reasons() -> dict[str, str]:
    """Every constant `reason=` given to a 4xx error (a call, or inside the class itself)."""
    classes = _client_error_classes()
    reasons: dict[str, str] = {}
    for path in sorted(SHARED.rglob("*.py")):
        tree = ast.parse(path.read_text())
        scopes: list[ast.AST] = [
            n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name in classes
        ]
        scopes += [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) in classes
        ]
        for scope in scopes:
            for node in ast.walk(scope):
                for keyword in getattr(node, "keywords", []):
                    value = keyword.value
                    if keyword.arg == "reason" and isinstance(value, ast.Constant):
                        reasons.setdefault(str(value.value), f"{path.relative_to(SHARED)}")
    return reasons


def _declared_reasons() -> set[str]:
    declared: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            reason = node.get("properties", {}).get("reason") if "properties" in node else None
            if isinstance(reason, dict) and isinstance(reason.get("enum"), list):
                declared.update(reason["enum"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOC["paths"])
    return declared


def test_every_reason_the_code_answers_with_is_declared() -> None:
    raised = _raised_reasons()
    assert len(raised) > 30, raised  # the scan finds the code's reasons at all
    missing = {r: where for r, where in raised.items() if r not in INTERNAL_REASONS}
    missing = {r: where for r, where in missing.items() if r not in _declared_reasons()}
    assert missing == {}, f"reason codes raised but declared on no operation: {missing}"


def test_the_description_is_the_same_however_often_it_is_built() -> None:
    # Each call builds from the surfaces' module constants: none may be changed by a call.
    assert openapi_document() == openapi_document() == DOC
