"""Deep nesting, oversized bodies and odd tokens never give a 5xx, on every route (issue 21).

About 1,000 levels of nesting (2 KB) made Python's JSON parser raise `RecursionError`, which
escaped every handler as a 500. This walks the running app's own OpenAPI description, so a route
added later is covered without editing this file: every operation with a JSON body gets the
nesting and size cases (400 naming `body`, 413), every operation gets odd query values, and
nothing any of them sends changes anything.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client

pytestmark = pytest.mark.timeout(300)

DEPTH = 1000
NESTED = {
    "arrays": b"[" * DEPTH + b"]" * DEPTH,
    "objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "inside a field": b'{"name": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "unclosed": b"[" * DEPTH,
}
OVERSIZED = json.dumps({"name": "x" * (9 * 1024 * 1024)}).encode()  # over every body limit


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


ODD_QUERY = [
    b64(b"[" * DEPTH),  # a continuationToken of nested JSON
    b64(json.dumps({"pk": "b" * 5000, "rk": None}).encode()),  # an overlong key inside one
    b64(json.dumps({"pk": "b1", "rk": "r\u0000"}).encode()),
    "[" * DEPTH,
    "x" * 4000,
    "%00",
]


@pytest.fixture(scope="module")
def bstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("bounds-stack"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def bapi(bstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(bstack.endpoints, client_token(bstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def operations(bapi: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    document = bapi.get("openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


def new_building(api: httpx.Client) -> str:
    building = f"b-{uuid.uuid4().hex[:8]}"
    ensure_building(api, building)
    return building


def concrete(path: str, building: str) -> str:
    values = {"building": building, "email": "ann@example.com"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x1"), path).lstrip("/")


def json_body_operations(ops: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str]]:
    return [
        (method, path)
        for method, path, op in ops
        if "application/json" in op.get("requestBody", {}).get("content", {})
    ]


def test_every_json_route_answers_deep_nesting_with_a_400_naming_the_body(
    bapi: httpx.Client, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    building = new_building(bapi)
    routes = json_body_operations(operations)
    assert len(routes) >= 10  # PUT x4, POST connection/bookings/import, PATCH, webhook x2, ...
    for method, path in routes:
        for case, body in NESTED.items():
            response = bapi.request(
                method, concrete(path, building), content=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            where = f"{method} {path} ({case})"
            assert response.status_code == 400, (where, response.status_code, response.text[:300])
            assert response.headers["content-type"] == "application/problem+json", where
            assert [e["field"] for e in response.json()["errors"]] == ["body"], where
    assert_nothing_changed(bapi, building)


def test_every_json_route_answers_an_oversized_body_with_a_413(
    bapi: httpx.Client, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    building = new_building(bapi)
    for method, path in json_body_operations(operations):
        response = bapi.request(
            method, concrete(path, building), content=OVERSIZED,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 413, (method, path, response.status_code)
        assert response.headers["content-type"] == "application/problem+json"
    assert_nothing_changed(bapi, building)


def test_odd_query_values_and_bodies_on_every_route_never_give_a_5xx(
    bapi: httpx.Client, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    building = new_building(bapi)
    failures = []
    sent = 0
    for method, path, op in operations:
        if (method, path) == ("DELETE", "/buildings/{building}"):
            continue  # it would delete this test's (empty) building: its job, not a change here
        names = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
        names = names or ["continuationToken"]  # an unknown parameter must be harmless too
        for name in names:
            for value in ODD_QUERY:
                response = bapi.request(method, concrete(path, building), params={name: value})
                sent += 1
                if response.status_code >= 500:
                    failures.append((method, path, name, value[:40], response.status_code))
        for body in (b"\xff\xfe", b'"' + b"\\" * 3000, b"{" * 100_000, b"1e999999"):
            response = bapi.request(
                method, concrete(path, building), content=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            sent += 1
            if response.status_code >= 500:
                failures.append((method, path, "body", body[:20], response.status_code))
    assert sent > 200
    # The webhook may answer 503 by design (a genuine batch on a cold cache); nothing here is
    # genuine, so it must not.
    assert failures == []
    assert_nothing_changed(bapi, building)


def test_continuation_tokens_with_bad_contents_are_a_400(bapi: httpx.Client) -> None:
    building = new_building(bapi)
    for token in ODD_QUERY[:3]:
        response = bapi.get(f"buildings/{building}/users", params={"continuationToken": token})
        assert response.status_code == 400, (token[:40], response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["continuationToken"]


def assert_nothing_changed(api: httpx.Client, building: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    window = {
        "from": (now - timedelta(days=7)).isoformat(),
        "to": (now + timedelta(days=7)).isoformat(),
    }
    for path in ("resources", "companies", "users", "bookings"):
        response = api.get(
            f"buildings/{building}/{path}", params=window if path == "bookings" else None
        )
        assert response.status_code == 200, (path, response.text)
        assert response.json() == {"value": [], "nextLink": None}, path
    assert api.get(f"buildings/{building}/connection").json()["status"] == "disconnected"
