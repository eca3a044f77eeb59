"""Resources, companies, users, settings and bulk import against a real Azurite, through the HTTP
handlers (called with `func.HttpRequest`, STYLE.md §14 "functions" tier) and the services.

Every test uses its own building ids, so tests share the session's Azurite without cross-talk.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import azure.functions as func
import pytest
from azure.data.tables import TableClient, UpdateMode

from functions import admin
from shared.core.errors import Conflict, StorageError
from shared.directory import companies, people, registry
from shared.directory.attribution import attribute
from shared.directory.buildings import Buildings
from shared.storage import clients, tablestore
from tests.integration import auth_fixtures
from tests.integration.auth_fixtures import ApiTokens

# The fixture shared with other API tests (the name is what tests ask for).
api_tokens = auth_fixtures.api_tokens

ENV = {
    "BB_KEY_VAULT_URL": "https://vault.test.invalid/",
    "BB_CLIENT_ID": "0a0a0a0a-0000-4000-8000-000000000002",
    "BB_PUBLIC_BASE_URL": "http://127.0.0.1:7071/api",
    "BB_API_AUDIENCE": "api://bookingbridge",
    "BB_API_TENANT_ID": "0a0a0a0a-0000-4000-8000-000000000001",
}

# function name → (method, route template below /api)
ROUTES = {
    "resource_put": ("PUT", admin.RESOURCE),
    "resources_list": ("GET", "buildings/{building}/resources"),
    "resource_get": ("GET", admin.RESOURCE),
    "resource_delete": ("DELETE", admin.RESOURCE),
    "company_put": ("PUT", admin.COMPANY),
    "companies_list": ("GET", "buildings/{building}/companies"),
    "company_get": ("GET", "buildings/{building}/companies/{company}"),
    "company_delete": ("DELETE", admin.COMPANY),
    "user_put": ("PUT", admin.USER),
    "user_get": ("GET", admin.USER),
    "user_delete": ("DELETE", admin.USER),
    "users_list": ("GET", "buildings/{building}/users"),
    "users_import": ("POST", "buildings/{building}/users:import"),
    "settings_put": ("PUT", "buildings/{building}/settings"),
    "settings_get": ("GET", "buildings/{building}/settings"),
}
SAMPLE_BODIES: dict[str, Any] = {
    "resource_put": {"name": "Room", "kind": "room", "timeZone": "UTC"},
    "company_put": {"name": "Contoso", "domains": ["contoso.com"]},
    "user_put": {"name": "Ann", "companyId": "contoso"},
    "users_import": [],
    "settings_put": {},
}
ROOM = {
    "name": "Board Room 4A",
    "kind": "room",
    "paid": False,
    "timeZone": "Europe/Amsterdam",
    "capacity": 8,
}


@pytest.fixture(scope="module")
def tables(azurite: str) -> Iterator[tablestore.TableSource]:
    """App settings pointing at the session's Azurite; the app's own cached table clients."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AzureWebJobsStorage", azurite)
        for name, value in ENV.items():
            mp.setenv(name, value)
        clients.reset_clients()
        try:
            yield clients.table
        finally:
            clients.reset_clients()


@pytest.fixture(scope="module")
def handlers() -> dict[str, Callable[[func.HttpRequest], func.HttpResponse]]:
    """The admin blueprint's handlers as the Functions worker indexes them."""
    app = func.FunctionApp()
    app.register_functions(admin.bp)
    found = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
    assert set(found) == set(ROUTES)
    return found


@pytest.fixture
def call(
    tables: tablestore.TableSource,
    handlers: dict[str, Callable[[func.HttpRequest], func.HttpResponse]],
) -> Callable[..., func.HttpResponse]:
    def call(
        name: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        **route: str,
    ) -> func.HttpResponse:
        method, template = ROUTES[name]
        path = template.format(**{k: quote(v, safe="") for k, v in route.items()})
        all_headers = dict(headers or {})
        if raw is None and body is not None:
            raw = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if content_type:
            all_headers["Content-Type"] = content_type
        request = func.HttpRequest(
            method,
            # As the host gives it: the full URL, query included.
            f"http://127.0.0.1:7071/api/{path}" + (f"?{urlencode(params)}" if params else ""),
            headers=all_headers,
            params=params or {},
            route_params=route,
            body=raw or b"",
        )
        return handlers[name](request)

    return call


def _json(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def _building() -> str:
    """A new building, created (the routes answer 404 `building_not_found` for any other)."""
    building = f"b-{uuid.uuid4().hex[:12]}"
    Buildings(clients.table).put(building, {"name": building, "timeZone": "UTC"})
    return building


def _fields(response: func.HttpResponse) -> set[str]:
    assert response.status_code == 400, response.get_body()
    return {e["field"] for e in _json(response)["errors"]}


# --- resources --------------------------------------------------------------------------------


def test_resource_crud(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b = _building()
    auth = api_tokens.admin(b)
    first = call("resource_put", auth, ROOM, building=b, resource="room-4a")
    assert first.status_code == 201
    view = _json(first)
    assert view == {
        "id": "room-4a",
        **ROOM,
        "floor": None,  # optional labels (issue 19), not given
        "section": None,
        "autoRelease": None,  # the building's applies (issue 15)
        "sync": {
            "status": "not_synced",
            "reason": "not_mapped",
            "calendar": None,
            "lastSyncAt": None,
            "lagSeconds": None,
        },
    }
    again = call("resource_put", auth, {**ROOM, "capacity": None}, building=b, resource="room-4a")
    assert again.status_code == 200 and _json(again)["capacity"] is None
    # What GET returns can be sent back as is (id and sync are read-only, not refused).
    round_trip = call("resource_put", auth, _json(again), building=b, resource="room-4a")
    assert round_trip.status_code == 200
    call(
        "resource_put",
        auth,
        {**ROOM, "kind": "desk", "name": "Desk 1"},
        building=b,
        resource="desk.1",
    )

    listed = _json(call("resources_list", auth, building=b))["value"]
    assert [r["id"] for r in listed] == ["desk.1", "room-4a"]
    one = call("resource_get", auth, building=b, resource="desk.1")
    assert one.status_code == 200 and _json(one)["kind"] == "desk"

    assert call("resource_delete", auth, building=b, resource="desk.1").status_code == 204
    missing = call("resource_get", auth, building=b, resource="desk.1")
    assert missing.status_code == 404 and _json(missing)["reason"] == "resource_not_found"
    assert call("resource_delete", auth, building=b, resource="desk.1").status_code == 204
    assert [r["id"] for r in _json(call("resources_list", auth, building=b))["value"]] == [
        "room-4a"
    ]


def test_resource_overrides_the_buildings_auto_release(
    call: Callable[..., func.HttpResponse],
    api_tokens: ApiTokens,
    tables: tablestore.TableSource,
) -> None:
    """A resource's own `autoRelease` (issue 15) wins over the building's; null gives it back;
    its bad parts are named as `autoRelease.<part>`."""
    b = _building()
    auth = api_tokens.admin(b)
    call("settings_put", auth, {"autoRelease": {"enabled": True, "graceMinutes": 5}}, building=b)
    own = {"enabled": False, "graceMinutes": 20, "earlyMinutes": 0, "recurringStrikes": 2}
    put = call("resource_put", auth, {**ROOM, "autoRelease": own}, building=b, resource="r1")
    assert put.status_code == 201 and _json(put)["autoRelease"] == own
    assert _json(call("resource_get", auth, building=b, resource="r1"))["autoRelease"] == own
    building = people.load_building_settings(tables, b).auto_release
    entity = tablestore.get_entity(tables(tablestore.RESOURCES), b, "r1")
    assert registry.effective_auto_release(entity, building) == people.AutoRelease(
        enabled=False, grace_minutes=20, early_minutes=0, recurring_strikes=2
    )
    bad = call(
        "resource_put", auth, {**ROOM, "autoRelease": {"graceMinutes": 0, "typo": 1}},
        building=b, resource="r1",
    )  # fmt: skip
    assert _fields(bad) == {"autoRelease.graceMinutes", "autoRelease.typo"}
    cleared = call("resource_put", auth, {**ROOM, "autoRelease": None}, building=b, resource="r1")
    assert _json(cleared)["autoRelease"] is None
    entity = tablestore.get_entity(tables(tablestore.RESOURCES), b, "r1")
    assert registry.effective_auto_release(entity, building) == people.AutoRelease(
        enabled=True, grace_minutes=5
    )


def test_paid_resource_is_not_supported(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens
) -> None:
    b = _building()
    body = {**ROOM, "paid": True}
    sync = _json(call("resource_put", api_tokens.service(), body, building=b, resource="r1"))[
        "sync"
    ]
    assert sync["status"] == "not_supported" and sync["reason"] == "paid_resource"


def test_resource_validation_names_every_field_and_changes_nothing(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens
) -> None:
    b = _building()
    auth = api_tokens.admin(b)
    assert call("resource_put", auth, ROOM, building=b, resource="r1").status_code == 201
    bad = {
        "name": "",
        "kind": "sofa",
        "paid": "no",
        "timeZone": "Mars/Olympus_Mons",
        "capacity": -1,
        "colour": "red",
    }
    assert _fields(call("resource_put", auth, bad, building=b, resource="r1")) == {
        "name",
        "kind",
        "paid",
        "timeZone",
        "capacity",
        "colour",
    }
    more = {"name": "x" * 201, "kind": "room", "timeZone": "localtime", "capacity": 2.5}
    assert _fields(call("resource_put", auth, more, building=b, resource="r1")) == {
        "name",
        "timeZone",
        "capacity",
    }
    # The path's ids are checked before anything else (functions/http.py caller_for), the body
    # only once they are good.
    assert _fields(call("resource_put", auth, more, building=b, resource="bad id!")) == {
        "resourceId"
    }
    assert _fields(
        call("resource_put", auth, {**ROOM, "capacity": True}, building=b, resource="r1")
    ) == {"capacity"}
    assert _fields(call("resource_put", auth, {**ROOM}, building=b, resource="..")) == {
        "resourceId"
    }
    assert _fields(call("resource_put", auth, raw=b"{not json", building=b, resource="r1")) == {
        "body"
    }
    assert _fields(call("resource_put", auth, ["a"], building=b, resource="r1")) == {"body"}
    # Nothing changed, nothing created.
    assert [
        (r["id"], r["name"]) for r in _json(call("resources_list", auth, building=b))["value"]
    ] == [("r1", ROOM["name"])]


def _map(tables: tablestore.TableSource, b: str, r: str, index_key: str, **extra: Any) -> None:
    """Stand in for the mapping feature: write mapping fields and the calendar index entry."""
    tables(tablestore.RESOURCES).update_entity(
        {
            "PartitionKey": b,
            "RowKey": r,
            "calendarId": "AAMk-cal-1",
            "calendarName": "Board Room 4A",
            "mailbox": "boardroom4a@contoso.com",
            "calendarIndexKey": index_key,
            **extra,
        },
        mode=UpdateMode.MERGE,
    )
    tables(tablestore.CALENDAR_INDEX).upsert_entity(
        {"PartitionKey": index_key, "RowKey": "map", "buildingId": b, "resourceId": r}
    )


def test_mapping_survives_put_and_delete_unmaps(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens, tables: tablestore.TableSource
) -> None:
    b, auth = _building(), api_tokens.service()
    call("resource_put", auth, ROOM, building=b, resource="r1")
    index_key = uuid.uuid4().hex
    _map(tables, b, "r1", index_key)
    sync = _json(call("resource_get", auth, building=b, resource="r1"))["sync"]
    assert sync["status"] == "pending"
    assert sync["calendar"] == {
        "id": "AAMk-cal-1",
        "name": "Board Room 4A",
        "mailbox": "boardroom4a@contoso.com",
    }
    _map(
        tables,
        b,
        "r1",
        index_key,
        syncStatus="error",
        syncReason="access_denied",
        lastSyncAt=tablestore.utc_now().replace(microsecond=0),
        lagSeconds=3,
    )
    renamed = _json(call("resource_put", auth, {**ROOM, "name": "4A"}, building=b, resource="r1"))
    assert renamed["name"] == "4A"
    assert renamed["sync"]["status"] == "error" and renamed["sync"]["reason"] == "access_denied"
    assert renamed["sync"]["lastSyncAt"].endswith("Z") and renamed["sync"]["lagSeconds"] == 3

    paid = call("resource_put", auth, {**ROOM, "paid": True}, building=b, resource="r1")
    assert paid.status_code == 422 and _json(paid)["reason"] == "resource_mapped"

    assert call("resource_delete", auth, building=b, resource="r1").status_code == 204
    assert tablestore.get_entity(tables(tablestore.RESOURCES), b, "r1") is None
    assert tablestore.get_entity(tables(tablestore.CALENDAR_INDEX), index_key, "map") is None


def test_unmap_releases_only_an_index_entry_that_points_back(
    tables: tablestore.TableSource,
) -> None:
    b = _building()
    registry.put_resource(tables, b, "r1", ROOM)
    index_key = uuid.uuid4().hex
    _map(tables, b, "r1", index_key)
    # The calendar has meanwhile been taken over by another resource: its entry must stay.
    tables(tablestore.CALENDAR_INDEX).upsert_entity(
        {"PartitionKey": index_key, "RowKey": "map", "buildingId": b, "resourceId": "r2"}
    )
    assert registry.unmap_resource(tables, b, "r1") is True
    assert registry.get_resource(tables, b, "r1")["sync"]["status"] == "not_synced"
    assert tablestore.get_entity(tables(tablestore.CALENDAR_INDEX), index_key, "map") is not None
    assert registry.unmap_resource(tables, b, "r1") is False
    assert registry.unmap_resource(tables, b, "never-existed") is False


# --- companies --------------------------------------------------------------------------------


def test_companies(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b = _building()
    auth = api_tokens.admin(b, "other")
    created = call(
        "company_put",
        auth,
        {"name": "Contoso", "domains": ["Contoso.COM", "contoso.nl.", "münchen.de"]},
        building=b,
        company="contoso",
    )
    assert created.status_code == 201
    assert _json(created) == {
        "id": "contoso",
        "name": "Contoso",
        "domains": ["contoso.com", "contoso.nl", "xn--mnchen-3ya.de"],
    }
    updated = call(
        "company_put",
        auth,
        {"name": "Contoso BV", "domains": ["contoso.com"]},
        building=b,
        company="contoso",
    )
    assert updated.status_code == 200
    call(
        "company_put",
        auth,
        {"name": "Fabrikam", "domains": ["fabrikam.com"]},
        building=b,
        company="fabrikam",
    )
    listed = _json(call("companies_list", auth, building=b))["value"]
    assert [(c["id"], c["domains"]) for c in listed] == [
        ("contoso", ["contoso.com"]),
        ("fabrikam", ["fabrikam.com"]),
    ]
    assert call("company_delete", auth, building=b, company="fabrikam").status_code == 204
    assert call("company_delete", auth, building=b, company="fabrikam").status_code == 204
    assert [c["id"] for c in _json(call("companies_list", auth, building=b))["value"]] == [
        "contoso"
    ]


def test_company_validation(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b, auth = _building(), api_tokens.service()
    bad = {"name": " ", "domains": ["contoso.com", "not a domain", "CONTOSO.com", 7, "localhost"]}
    # The path's ids first (caller_for), then every bad field of the body at once.
    assert _fields(call("company_put", auth, bad, building=b, company="c/1")) == {"companyId"}
    assert _fields(call("company_put", auth, bad, building=b, company="c1")) == {
        "name",
        "domains[1]",
        "domains[2]",
        "domains[3]",
        "domains[4]",
    }
    assert _fields(
        call("company_put", auth, {"name": "C", "domains": []}, building=b, company="c")
    ) == {"domains"}
    assert _fields(call("company_put", auth, {"name": "C"}, building=b, company="c")) == {"domains"}
    assert _json(call("companies_list", auth, building=b))["value"] == []


def test_company_in_use_cannot_be_deleted(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens
) -> None:
    b, auth = _building(), api_tokens.service()
    call(
        "company_put",
        auth,
        {"name": "C", "domains": ["contoso.com"]},
        building=b,
        company="contoso",
    )
    call(
        "user_put",
        auth,
        {"name": "Ann", "companyId": "contoso"},
        building=b,
        email="ann@contoso.com",
    )
    refused = call("company_delete", auth, building=b, company="contoso")
    assert refused.status_code == 409 and _json(refused)["reason"] == "company_in_use"
    assert call("user_delete", auth, building=b, email="ann@contoso.com").status_code == 204
    assert call("company_delete", auth, building=b, company="contoso").status_code == 204


# --- users ------------------------------------------------------------------------------------


def _company(
    call: Callable[..., func.HttpResponse], auth: dict[str, str], b: str, c: str = "contoso"
) -> None:
    response = call(
        "company_put", auth, {"name": c.title(), "domains": [f"{c}.com"]}, building=b, company=c
    )
    assert response.status_code in (200, 201)


def test_users(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b = _building()
    auth = api_tokens.admin(b)
    _company(call, auth, b)
    unknown = call(
        "user_put", auth, {"name": "Ann", "companyId": "nope"}, building=b, email="ann@contoso.com"
    )
    assert unknown.status_code == 422 and _json(unknown)["reason"] == "unknown_company"

    created = call(
        "user_put",
        auth,
        {"name": "Ann", "companyId": "contoso"},
        building=b,
        email="Ann+Desk@Contoso.COM",
    )
    assert created.status_code == 201
    assert _json(created) == {
        "email": "ann+desk@contoso.com",
        "name": "Ann",
        "companyId": "contoso",
    }
    again = call(
        "user_put",
        auth,
        {"name": "Ann B", "companyId": "contoso"},
        building=b,
        email="ann+desk@contoso.com",
    )
    assert again.status_code == 200

    # Characters Azure forbids in keys are legal in addresses: escaped in storage, intact here.
    odd = "o'brien#1/x?%@contoso.com"
    assert (
        call(
            "user_put", auth, {"name": "O", "companyId": "contoso"}, building=b, email=odd
        ).status_code
        == 201
    )
    got = call("user_get", auth, building=b, email=odd)
    assert got.status_code == 200 and _json(got)["email"] == odd
    listed = _json(call("users_list", auth, building=b))
    assert [u["email"] for u in listed["value"]] == ["ann+desk@contoso.com", odd]
    assert listed["nextLink"] is None and set(listed) == {"value", "nextLink"}

    assert call("user_delete", auth, building=b, email=odd).status_code == 204
    assert call("user_get", auth, building=b, email=odd).status_code == 404
    assert call("user_delete", auth, building=b, email=odd).status_code == 204


def test_user_validation(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b, auth = _building(), api_tokens.service()
    _company(call, auth, b)
    bad = {"companyId": "bad id", "x": 1}
    assert _fields(call("user_put", auth, bad, building=b, email="not-an-address")) == {"email"}
    assert _fields(call("user_put", auth, bad, building=b, email="ann@contoso.com")) == {
        "name",
        "companyId",
        "x",
    }
    assert _fields(call("user_get", auth, building=b, email="nope")) == {"email"}
    assert _json(call("users_list", auth, building=b))["value"] == []


def test_users_are_paged(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b, auth = _building(), api_tokens.service()
    _company(call, auth, b)
    rows = [
        {"email": f"u{i:02d}@contoso.com", "name": f"U{i}", "companyId": "contoso"}
        for i in range(25)
    ]
    assert _json(call("users_import", auth, rows, building=b))["imported"] == 25

    seen: list[str] = []
    params = {"top": "10"}
    pages = 0
    while True:
        page = _json(call("users_list", auth, params=params, building=b))
        pages += 1
        seen += [u["email"] for u in page["value"]]
        if page["nextLink"] is None:
            break
        query = parse_qs(urlsplit(page["nextLink"]).query)
        assert set(query) == {"top", "continuationToken"} and query["top"] == ["10"]
        params = {k: v[0] for k, v in query.items()}
    assert seen == [r["email"] for r in rows] and pages == 3

    assert _fields(call("users_list", auth, params={"top": "1001"}, building=b)) == {"top"}
    assert _fields(call("users_list", auth, params={"top": "0"}, building=b)) == {"top"}
    assert _fields(
        call("users_list", auth, params={"continuationToken": "garbage!"}, building=b)
    ) == {"continuationToken"}


# --- bulk import ------------------------------------------------------------------------------


def _csv(rows: int, bad: dict[int, str] | None = None) -> bytes:
    bad = bad or {}
    lines = ["Email,Name,CompanyId"]  # any case (other columns are refused)
    for i in range(1, rows + 1):
        lines.append(bad.get(i, f'user{i:05d}@contoso.com,"User {i}, Contoso",contoso'))
    return ("\r\n".join(lines) + "\r\n").encode()


def _all_users(b: str, tables: tablestore.TableSource) -> list[dict[str, Any]]:
    return tablestore.query_all(tables(tablestore.USERS), "PartitionKey eq @b", {"b": b})


def test_import_10000_users(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens, tables: tablestore.TableSource
) -> None:
    b = _building()
    auth = api_tokens.admin(b)
    _company(call, auth, b)
    started = time.perf_counter()
    response = call(
        "users_import", auth, raw=_csv(10_000), content_type="text/csv; charset=utf-8", building=b
    )
    elapsed = time.perf_counter() - started
    print(f"\nimported 10,000 users in {elapsed:.1f} s ({10_000 / elapsed:,.0f} rows/s)")
    assert response.status_code == 200, response.get_body()[:500]
    assert _json(response) == {"imported": 10_000, "rejected": []}
    stored = _all_users(b, tables)
    assert len(stored) == 10_000
    assert {e["name"] for e in stored[:1]} == {"User 1, Contoso"}  # RFC 4180 quoting


def test_import_with_bad_rows_writes_nothing(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens, tables: tablestore.TableSource
) -> None:
    b, auth = _building(), api_tokens.service()
    _company(call, auth, b)
    existing = {"name": "Old name", "companyId": "contoso"}
    call("user_put", auth, existing, building=b, email="user00001@contoso.com")
    bad = {
        7: "not-an-address,Seven,contoso",
        250: "user00250@contoso.com,,contoso",
        4000: "user04000@contoso.com,Four,nope",
        9000: "USER00001@Contoso.com,Dup,contoso",
        9999: "user09999@contoso.com,Bad,bad id",
    }
    started = time.perf_counter()
    response = call(
        "users_import", auth, raw=_csv(10_000, bad), content_type="text/csv", building=b
    )
    print(f"\nrejected a 10,000-row file in {time.perf_counter() - started:.2f} s")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    body = _json(response)
    assert body["reason"] == "rows_rejected" and body["imported"] == 0
    assert {r["row"]: r["error"] for r in body["rejected"]} == {
        7: "email: must be an email address",
        250: "name: is required",
        4000: "companyId: names no company of this building: nope",
        9000: "email: duplicates row 1",
        9999: "companyId: must be 1–64 characters of A-Z a-z 0-9 . _ -",
    }
    # Nothing written: only the user that existed before, unchanged.
    stored = _all_users(b, tables)
    assert [(e["RowKey"], e["name"]) for e in stored] == [("user00001@contoso.com", "Old name")]


def test_import_json_and_malformed_bodies(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens
) -> None:
    b, auth = _building(), api_tokens.service()
    _company(call, auth, b)
    rows = [
        {"email": "ann@contoso.com", "name": "Ann", "companyId": "contoso"},
        "not an object",
        {"email": "bob@contoso.com", "name": "Bob"},
    ]
    response = call("users_import", auth, rows, building=b)
    assert response.status_code == 422
    assert _json(response)["rejected"] == [
        {"row": 2, "error": "must be an object with email, name, companyId"},
        {"row": 3, "error": "companyId: is required"},
    ]
    ok = call("users_import", auth, rows[:1], building=b)
    assert ok.status_code == 200 and _json(ok) == {"imported": 1, "rejected": []}
    assert _json(call("users_import", auth, [], building=b)) == {"imported": 0, "rejected": []}

    assert _fields(call("users_import", auth, {"email": "x"}, building=b)) == {"body"}
    assert _fields(
        call("users_import", auth, raw=b"a,b", content_type="text/plain", building=b)
    ) == {"Content-Type"}
    assert _fields(
        call("users_import", auth, raw=b"mail,name\nx,y\n", content_type="text/csv", building=b)
    ) == {"header"}
    assert _fields(call("users_import", auth, raw=b"", content_type="text/csv", building=b)) == {
        "header"
    }
    assert _fields(
        call("users_import", auth, raw=b"\xff\xfe", content_type="text/csv", building=b)
    ) == {"body"}
    broken = b'email,name,companyId\n"ann@contoso.com"x,Ann,contoso\n'
    assert _fields(call("users_import", auth, raw=broken, content_type="text/csv", building=b)) == {
        "body"
    }
    bom = "\ufeffemail,name,companyId\n\nzoe@contoso.com,Zoe,contoso\n".encode()
    assert (
        _json(call("users_import", auth, raw=bom, content_type="text/csv", building=b))["imported"]
        == 1
    )


# --- settings ---------------------------------------------------------------------------------


def test_settings(call: Callable[..., func.HttpResponse], api_tokens: ApiTokens) -> None:
    b = _building()
    auth = api_tokens.admin(b)
    release_defaults = {
        "enabled": False,
        "graceMinutes": 10,
        "earlyMinutes": 15,
        "recurringStrikes": None,
    }
    defaults = {
        "defaultUserEmail": None,
        "storeExternalSubjects": False,
        "autoRelease": release_defaults,
        "adHocMinutes": 15,
    }
    assert _json(call("settings_get", auth, building=b)) == defaults

    unregistered = call("settings_put", auth, {"defaultUserEmail": "desk@contoso.com"}, building=b)
    assert unregistered.status_code == 422 and _json(unregistered)["reason"] == "unknown_user"
    assert _fields(
        call(
            "settings_put",
            auth,
            {"defaultUserEmail": "nope", "storeExternalSubjects": "yes", "typo": 1},
            building=b,
        )
    ) == {"defaultUserEmail", "storeExternalSubjects", "typo"}
    bad_release = {"enabled": "on", "graceMinutes": 0, "recurringStrikes": 1.5, "x": 1}
    assert _fields(
        call("settings_put", auth, {"autoRelease": bad_release, "adHocMinutes": -1}, building=b)
    ) == {
        "autoRelease.enabled",
        "autoRelease.graceMinutes",
        "autoRelease.recurringStrikes",
        "autoRelease.x",
        "adHocMinutes",
    }
    assert _fields(call("settings_put", auth, {"autoRelease": [1]}, building=b)) == {"autoRelease"}
    assert _json(call("settings_get", auth, building=b)) == defaults

    _company(call, auth, b)
    call(
        "user_put",
        auth,
        {"name": "Desk", "companyId": "contoso"},
        building=b,
        email="desk@contoso.com",
    )
    stored = call(
        "settings_put",
        auth,
        {
            "defaultUserEmail": "Desk@Contoso.com",
            "storeExternalSubjects": True,
            "autoRelease": {"enabled": True, "recurringStrikes": 3},
            "adHocMinutes": 0,
        },
        building=b,
    )
    assert stored.status_code == 200
    expected = {
        "defaultUserEmail": "desk@contoso.com",
        "storeExternalSubjects": True,
        "autoRelease": {**release_defaults, "enabled": True, "recurringStrikes": 3},
        "adHocMinutes": 0,
    }
    assert _json(stored) == expected and _json(call("settings_get", auth, building=b)) == expected

    refused = call("user_delete", auth, building=b, email="desk@contoso.com")
    assert refused.status_code == 409 and _json(refused)["reason"] == "user_is_default"
    # PUT replaces: omitted fields go back to their defaults.
    assert _json(call("settings_put", auth, {}, building=b)) == defaults


# --- attribution over stored data -------------------------------------------------------------


def test_attribution_from_stored_companies_users_and_settings(
    tables: tablestore.TableSource,
) -> None:
    b = _building()
    for company, domains in (
        ("north", ["woodgrove.com"]),
        ("south", ["woodgrove.com"]),
        ("contoso", ["contoso.com"]),
    ):
        companies.put_company(tables, b, company, {"name": company, "domains": domains})
    people.put_user(tables, b, "desk@woodgrove.com", {"name": "Desk", "companyId": "north"})
    people.put_building_settings(tables, b, {"defaultUserEmail": "desk@woodgrove.com"})
    known = companies.load_companies(tables, b)
    settings = people.load_building_settings(tables, b)

    class StoredUsers(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:  # point reads, as bookings will do
            return people.load_user(tables, b, key) or default

    def who(email: str) -> tuple[str, str | None, str]:
        a = attribute(
            email,
            users=StoredUsers(),
            companies=known,
            default_user_email=settings.default_user_email,
        )
        return a.kind, a.company_id, a.reason

    assert who("zoe@contoso.com") == ("company", "contoso", "domain_match")
    assert who("zoe@woodgrove.com") == ("default_user", "north", "ambiguous_domain")
    assert who("desk+x@woodgrove.com") == ("user", "north", "registered_user_subaddress")


# --- storage base against the real service -----------------------------------------------------


def test_a_failed_transaction_is_atomic_and_says_where(tables: tablestore.TableSource) -> None:
    b = _building()
    table = tables(tablestore.USERS)
    table.create_entity({"PartitionKey": b, "RowKey": "r150", "name": "there"})
    ops: list[tablestore.Operation] = [
        ("create", {"PartitionKey": b, "RowKey": f"r{i:03d}", "name": "new"}) for i in range(200)
    ]
    with pytest.raises(Conflict) as err:
        tablestore.submit_in_chunks(table, ops)
    assert err.value.reason == "exists"
    assert "chunk 2 of 2" in err.value.log_detail
    # Chunk 1 (r000-r099) committed; chunk 2 rolled back entirely (r100-r199 except r150 absent).
    rows = {e["RowKey"] for e in _all_users(b, tables)}
    assert rows == {f"r{i:03d}" for i in range(100)} | {"r150"}


def test_optimistic_replace_retries_after_a_concurrent_write(
    tables: tablestore.TableSource,
) -> None:
    b = _building()
    table = tables(tablestore.SETTINGS)
    calls = 0

    def build(current: dict[str, Any] | None) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:  # another writer sneaks in between our read and our write
            table.upsert_entity({"PartitionKey": b, "RowKey": "x", "n": 100})
        return {"n": (current or {}).get("n", 0) + 1}

    entity, created = tablestore.replace_optimistic(table, b, "x", build)
    assert calls == 2 and created is False and entity is not None and entity["n"] == 101


def test_unreachable_storage_is_a_transient_storage_error() -> None:
    from devstack.procs import free_port

    port = free_port()
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    table = TableClient.from_connection_string(conn, "users", retry_total=0)
    with pytest.raises(StorageError) as err:
        tablestore.get_entity(table, "b", "r")
    assert err.value.transient is True


# --- auth ---------------------------------------------------------------------------------------


def _sample_route(name: str, b: str) -> dict[str, str]:
    template = ROUTES[name][1]
    route = {"building": b}
    if "{resource}" in template:
        route["resource"] = "r1"
    if "{company}" in template:
        route["company"] = "contoso"
    if "{email}" in template:
        route["email"] = "ann@contoso.com"
    return route


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_route_checks_the_caller_first(
    name: str,
    call: Callable[..., func.HttpResponse],
    api_tokens: ApiTokens,
    tables: tablestore.TableSource,
) -> None:
    a, b = _building(), _building()
    body = SAMPLE_BODIES.get(name)
    route = _sample_route(name, b)
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer not-a-jwt"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        (api_tokens.no_role(), 403),
        (api_tokens.admin(a), 403),  # an admin of building A, on building B
        (api_tokens.admin(), 403),
    ):
        response = call(name, headers, body, **route)
        assert response.status_code == status, (name, headers, response.get_body())
        assert response.mimetype == "application/problem+json"
    # Refused callers changed nothing in building B.
    for table in (
        tablestore.RESOURCES,
        tablestore.COMPANIES,
        tablestore.USERS,
        tablestore.SETTINGS,
    ):
        assert tablestore.query_all(tables(table), "PartitionKey eq @b", {"b": b}) == []
    # Portal.Service and B's own admin get past auth (whatever the route then answers).
    for headers in (api_tokens.service(), api_tokens.admin(a, b)):
        response = call(name, headers, body, **route)
        assert response.status_code not in (401, 403), (name, response.get_body())


def test_bad_path_ids_are_a_400_after_auth(
    call: Callable[..., func.HttpResponse], api_tokens: ApiTokens
) -> None:
    service = api_tokens.service()
    assert _fields(call("resources_list", service, building="b/../x")) == {"building"}
    assert call("resources_list", api_tokens.admin("b1"), building="b/../x").status_code == 403
    assert _fields(call("resource_get", service, building="b1", resource="a/b")) == {"resourceId"}
    assert _fields(call("resource_delete", service, building="b1", resource="a#b")) == {
        "resourceId"
    }
    assert _fields(call("company_delete", service, building="b1", company="c?1")) == {"companyId"}
    assert _fields(call("user_delete", service, building="b1", email="x")) == {"email"}
