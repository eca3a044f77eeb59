"""Buildings end to end (issue 20), on the session's stack: CRUD and its 409, and a walk of every
building-scoped route of the OpenAPI description: an unknown building is a 404
`building_not_found`, a Building.Admin of another building gets 403 (never 404: no existence leak),
and hostile ids in every path parameter are a clean 400 (or the router's 404), never 200 or 5xx.

How hostile ids reach the app on the local host (devstack/host/routes.py): the path is split at
`/` before it is percent-decoded, so `a%2Fb` arrives as the one segment `a/b` and `%00` as NUL; both
are refused by the id check. A literal `..` segment is resolved by HTTP clients (httpx, browsers)
before sending; sent raw, the host routes it as an id (`..`), refused too.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from devstack.stack import DEMO_BUILDING, DEMO_BUILDING_BODY, Stack
from shared.core.validate import ROUTE_IDS
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import functions_client

# As sent on the wire (percent-encoded where a client would have to encode).
HOSTILE = {
    "traversal": "%2e%2e",
    "dot": "%2E",
    "encoded slash": "a%2Fb",
    "backslash": "a%5Cb",
    "NUL": "%00",
    "quote": "a'b",
    "double quote": "a%22b",
    "non-ASCII": "%C3%A9",
    "overlong": "x" * 65,
    "space": "a%20b",
}
GOOD = {
    "resource": "r1",
    "company": "c1",
    "booking": "01abcdefghjkmnpqrstvwxyz00",
    "check": "0123456789abcdef01234",
    "webhook": "w1",
    "delivery": "d1",
    "record": "0998203579836265.7078c9fd",
    "email": "ann@example.com",
}


@pytest.fixture(scope="module")
def operations(api: httpx.Client) -> list[tuple[str, str, dict[str, Any]]]:
    document = api.get("openapi.json").json()
    return [
        (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if op["security"] and "{building}" in path
    ]


def concrete(path: str, building_id: str, **override: str) -> str:
    values = {**GOOD, "building": building_id, **override}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path).lstrip("/")


def send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    body = {} if method in ("PUT", "POST", "PATCH") else None
    return client.request(method, path, json=body, **kwargs)


def reason(response: httpx.Response) -> str | None:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return response.json().get("reason")


# ---------------------------------------------------------------- CRUD


def test_a_building_is_created_read_listed_replaced_and_deleted(api: httpx.Client) -> None:
    b = f"bld-{uuid.uuid4().hex[:8]}"
    body = {
        "name": "Amsterdam HQ",
        "timeZone": "Europe/Amsterdam",
        "businessHours": {"mon": [{"start": "09:00", "end": "17:00"}]},
        "address": "Herengracht 1",
    }
    created = api.put(f"buildings/{b}", json=body)
    assert created.status_code == 201, created.text
    shown = api.get(f"buildings/{b}").json()
    assert shown == created.json()
    assert shown["businessHours"]["mon"] == [{"start": "09:00", "end": "17:00"}]
    assert shown["businessHours"]["tue"] == []
    listed = api.get("buildings").json()
    assert listed["nextLink"] is None and b in [x["id"] for x in listed["value"]]
    # What GET returns goes back as is; a PUT replaces (hours back to the default).
    replaced = api.put(f"buildings/{b}", json={**shown, "businessHours": None, "name": "HQ"})
    assert replaced.status_code == 200 and replaced.json()["name"] == "HQ"
    assert replaced.json()["businessHours"]["tue"] == [{"start": "08:00", "end": "18:00"}]
    assert api.get(f"buildings/{b}/resources").status_code == 200
    assert api.delete(f"buildings/{b}").status_code == 204
    assert reason(api.get(f"buildings/{b}")) == "building_not_found"
    assert reason(api.get(f"buildings/{b}/resources")) == "building_not_found"
    assert api.delete(f"buildings/{b}").status_code == 204


def test_a_bad_building_body_names_every_field_and_changes_nothing(api: httpx.Client) -> None:
    b = f"bld-{uuid.uuid4().hex[:8]}"
    refused = api.put(
        f"buildings/{b}",
        json={"timeZone": "Mars/Olympus", "colour": "red", "businessHours": {"mon": "always"}},
    )
    assert refused.status_code == 400, refused.text
    assert {e["field"] for e in refused.json()["errors"]} == {
        "name",
        "timeZone",
        "colour",
        "businessHours.mon",
    }
    assert api.get(f"buildings/{b}").status_code == 404


def test_deleting_a_building_in_use_is_a_409_naming_what_to_remove(api: httpx.Client) -> None:
    b = f"bld-{uuid.uuid4().hex[:8]}"
    ensure_building(api, b)
    room = {"name": "R", "kind": "room", "timeZone": "UTC"}
    assert api.put(f"buildings/{b}/resources/r1", json=room).status_code == 201
    company = {"name": "C", "domains": ["contoso.com"]}
    assert api.put(f"buildings/{b}/companies/c1", json=company).status_code == 201
    refused = api.delete(f"buildings/{b}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["reason"] == "building_in_use"
    assert refused.json()["inUse"] == ["resources", "companies"]
    assert api.get(f"buildings/{b}/resources/r1").status_code == 200  # nothing removed
    assert api.delete(f"buildings/{b}/resources/r1").status_code == 204
    assert api.delete(f"buildings/{b}/companies/c1").status_code == 204
    assert api.delete(f"buildings/{b}").status_code == 204


def test_building_admins_reach_their_own_buildings_and_never_delete_one(
    endpoints: dict[str, Any], admin_token: str, other_admin_token: str
) -> None:
    with functions_client(endpoints, admin_token) as admin:
        assert [b["id"] for b in admin.get("buildings").json()["value"]] == [DEMO_BUILDING]
        again = admin.put(f"buildings/{DEMO_BUILDING}", json=DEMO_BUILDING_BODY)
        assert again.status_code == 200, again.text
        refused = admin.delete(f"buildings/{DEMO_BUILDING}")
        assert refused.status_code == 403 and reason(refused) == "service_only"
    with functions_client(endpoints, other_admin_token) as other:
        # Its claim names annex-building, which was never created: an empty list.
        assert other.get("buildings").json() == {"value": [], "nextLink": None}


def test_a_building_with_data_from_before_buildings_is_created_on_first_read(
    stack: Stack, api: httpx.Client
) -> None:
    b = f"old-{uuid.uuid4().hex[:8]}"
    with stack.app_environment():  # written as a release before issue 20 wrote it: no entity
        from shared import wiring
        from shared.directory import registry

        room = {"name": "R", "kind": "room", "timeZone": "Asia/Tokyo"}
        registry.put_resource(wiring.directory_tables(), b, "r1", room)
    listed = api.get(f"buildings/{b}/resources")
    assert listed.status_code == 200, listed.text
    migrated = api.get(f"buildings/{b}").json()
    assert (migrated["name"], migrated["timeZone"]) == (b, "Asia/Tokyo")


# ---------------------------------------------------------------- every building-scoped route


def test_every_route_of_an_unknown_building_is_a_404_after_authorisation(
    api: httpx.Client,
    endpoints: dict[str, Any],
    other_admin_token: str,
    operations: list[tuple[str, str, dict[str, Any]]],
) -> None:
    unknown = f"none-{uuid.uuid4().hex[:8]}"
    walked = 0
    with functions_client(endpoints, other_admin_token) as other:
        for method, path, _ in operations:
            where = f"{method} {path}"
            # Another building's admin: 403 whether the building exists or not.
            for building in (unknown, DEMO_BUILDING):
                refused = send(other, method, concrete(path, building))
                assert refused.status_code == 403, (where, building, refused.text)
                assert reason(refused) == "building_forbidden", where
            if path == "/buildings/{building}" and method in ("PUT", "DELETE"):
                continue  # creates it; deleting a missing one is a 204
            response = send(api, method, concrete(path, unknown))
            assert response.status_code == 404, (where, response.status_code, response.text)
            assert reason(response) == "building_not_found", where
            walked += 1
    assert walked >= 40
    assert api.get(f"buildings/{unknown}").status_code == 404  # the walk created nothing


def test_hostile_ids_in_every_path_parameter_are_a_clean_400(
    api: httpx.Client, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    failures = []
    sent = 0
    for method, path, _ in operations:
        for name in re.findall(r"\{(\w+)\}", path):
            for case, value in HOSTILE.items():
                response = send(api, method, concrete(path, DEMO_BUILDING, **{name: value}))
                sent += 1
                fields = (
                    [e["field"] for e in response.json().get("errors", [])]
                    if response.status_code == 400
                    else []
                )
                # 400 naming the parameter; a 404 only from a router that matched no route.
                routed_nowhere = response.status_code == 404 and "reason" not in response.text
                if fields != [ROUTE_IDS[name]] and not routed_nowhere:
                    failures.append((method, path, name, case, response.status_code, fields))
    assert sent > 500
    assert failures == []


def test_a_raw_dot_dot_segment_is_a_400_naming_the_building(
    endpoints: dict[str, Any], portal_token: str
) -> None:
    # Clients resolve `..` before sending; the local host does not, and routes it as an id.
    base = urlsplit(endpoints["functionsBaseUrl"])
    connection = http.client.HTTPConnection(base.hostname or "", base.port, timeout=30)
    try:
        connection.request(
            "GET",
            f"{base.path}/buildings/../resources",
            headers={"Authorization": f"Bearer {portal_token}"},
        )
        response = connection.getresponse()
        assert response.status == 400, response.status
        assert [e["field"] for e in json.loads(response.read())["errors"]] == ["building"]
    finally:
        connection.close()
