"""Every list route (found in the OpenAPI description): one envelope, paging that loses and repeats
nothing, every item fetchable by its id; unknown query parameters and foreign continuation tokens
refused; `status=cancelled` (issue 22, docs/API.md "Lists and paging").

On the session stack, in a building of its own (a fresh tenant, its rooms mapped through the API).
Outlook bookings are written as sync writes them (the same BusyStore), at the same start times as
platform bookings, so the bookings cursor is tested across both sources and equal keys.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import Stack
from shared.availability.busy import BusyBlock, BusyStore
from tests.e2e.booking_fixtures import Booked, booked_building
from tests.waiting import wait_for

NEXT_LINK = {"$ref": "#/components/schemas/NextLink"}
BUILDING = "/buildings/{building}"
# Every list route of the API. A new one must be added here (with how its items are fetched):
# the walk below fails on a list route it does not expect, and on one that lost the envelope.
LISTS = {
    "/buildings",
    BUILDING + "/bookings",
    BUILDING + "/resources",
    BUILDING + "/companies",
    BUILDING + "/users",
    BUILDING + "/audit",
    BUILDING + "/checks",
    BUILDING + "/webhooks",
    BUILDING + "/webhooks/{webhook}/deliveries",
    BUILDING + "/calendars",
    BUILDING + "/roomlists",
}
# Not stored items but a live view of the tenant through Graph (docs/API.md): no GET by id.
LIVE_VIEWS = {BUILDING + "/calendars", BUILDING + "/roomlists"}
# Routes that take any query (anonymous redirect targets whose query Entra writes).
OPEN_QUERY = {
    ("get", "/oauth/callback"),
    ("get", "/oauth/adminconsent"),
    ("get", "/console/{path}"),
}
# Fields that move on their own between a list and a GET (sync lag, retries, a running check).
VOLATILE = {
    "sync", "syncState", "outlookEventId", "lastError", "status", "attempts", "nextAttemptAt",
    "lastSuccessAt", "lastFailureAt", "failingSince", "disabledReason", "startedAt", "finishedAt",
    "durationMs", "cleanup", "updatedAt", "resources", "version", "syncedVersion",
}  # fmt: skip
ID_FIELD = {BUILDING + "/users": "email"}


@dataclass(frozen=True)
class World:
    booked: Booked
    webhook: str
    check: str
    cancelled: str
    window: dict[str, str]  # of the bookings
    audit_to: str  # before the bookings: later records (sync rounds, the check) stay out

    def path(self, template: str) -> str:
        return template.replace("{building}", self.booked.building).replace(
            "{webhook}", self.webhook
        )


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=stack.endpoints["caBundle"])
    with httpx.Client(verify=context, trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def description(anonymous: httpx.Client) -> dict[str, Any]:
    response = anonymous.get("openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _ok(response: httpx.Response, *status: int) -> Any:
    assert response.status_code in (status or (200,)), (response.request.url, response.text)
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def world(stack: Stack, api: httpx.Client, anonymous: httpx.Client, browser: httpx.Client) -> World:
    booked = booked_building(stack, api, anonymous, browser)
    mapped = time.monotonic()  # every connecting and mapping record is older
    b = f"buildings/{booked.building}"
    for i in range(5):
        _ok(api.put(f"{b}/companies/c{i}", json={"name": f"C{i}", "domains": [f"c{i}.example"]}),
            201)  # fmt: skip
    rows = [{"email": f"u{i}@c0.example", "name": f"U{i}", "companyId": "c0"} for i in range(5)]
    assert _ok(api.post(f"{b}/users:import", json=rows))["imported"] == 5
    for extra in ("r-desk1", "r-desk2"):  # 5 resources, 2 of them unmapped (Outlook blocks below)
        _ok(api.put(f"{b}/resources/{extra}", json={"name": extra, "kind": "desk",
                                                    "timeZone": "Europe/Amsterdam"}), 201)  # fmt: skip
    # Bookings: three start times, each on several resources and from both sources, so many
    # items share a start and the cursor must order by (start, resource, id).
    # A second's margin keeps records written after the first walk (a sync round's) out of the
    # range; waiting it out keeps the last mapping records in, however fast the set-up above was.
    time.sleep(max(0.0, mapped + 1.2 - time.monotonic()))
    audit_to = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    day = (datetime.now(UTC) + timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    starts = [day + timedelta(hours=h) for h in (0, 1, 2)]
    for start in starts[:2]:
        for resource in booked.resources:
            _ok(api.post(f"{b}/bookings", json={
                "resourceId": resource, "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(), "title": "List test",
                "booker": {"email": "ann@c0.example", "name": "Ann"}}), 201)  # fmt: skip
    tables = TableServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    busy = BusyStore(tables.get_table_client("busy"))
    for start in starts:
        for n, resource in enumerate(("r-desk1", "r-desk2")):
            busy.put(BusyBlock(booked.building, resource, f"o-{start:%H}{n}{'0' * 29}", start,
                               start + timedelta(minutes=45), "outlook", outlook_event_id="evt"))  # fmt: skip
    cancelled = _ok(api.post(f"{b}/bookings", json={
        "resourceId": "r-focus3c", "start": starts[2].isoformat(),
        "end": (starts[2] + timedelta(minutes=30)).isoformat(), "title": "Cancelled",
        "booker": {"email": "ann@c0.example", "name": "Ann"}}), 201)["id"]  # fmt: skip
    _ok(api.delete(f"{b}/bookings/{cancelled}"), 204)
    webhook = _ok(api.post(f"{b}/webhooks", json={"url": "http://127.0.0.1:9/hook"}), 201)["id"]
    for _ in range(3):
        _ok(api.post(f"{b}/webhooks/{webhook}:ping"), 202)
    check = _ok(api.post(f"{b}/checks", json={"resourceIds": ["r-focus3c"]}), 202)["id"]
    window = {"from": day.isoformat(), "to": (day + timedelta(hours=4)).isoformat()}
    return World(booked, webhook, check, cancelled, window, audit_to)


def _concrete(template: str, world: World) -> str:
    path = world.path(template)
    for name, value in (("resource", "r-focus3c"), ("company", "c0"), ("email", "u0@c0.example"),
                        ("booking", world.cancelled), ("check", world.check),
                        ("delivery", "0000000000000deadbeef"), ("record", "0" * 16 + ".00000000"),
                        ("path", "")):  # fmt: skip
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path.lstrip("/")


def _query_of(world: World, template: str) -> dict[str, str]:
    if template.endswith("/bookings"):
        return dict(world.window)
    return {"to": world.audit_to} if template.endswith("/audit") else {}


def list_routes(description: dict[str, Any]) -> set[str]:
    """GETs whose 200 is the list envelope; fails on a GET answering a bare array."""
    found = set()
    for path, operations in description["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        content = get["responses"].get("200", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        assert schema.get("type") != "array", f"GET {path} lists without the envelope"
        if schema.get("properties", {}).get("nextLink") == NEXT_LINK:
            assert schema["required"] == ["value", "nextLink"], path
            assert schema["properties"]["value"]["type"] == "array", path
            found.add(path)
    return found


def walk(api: httpx.Client, first: str, params: dict[str, str]) -> tuple[list[Any], int]:
    """Every item of a list, following nextLink; (items, pages)."""
    items: list[Any] = []
    page = _ok(api.get(first, params=params))
    pages = 1
    while True:
        assert set(page) == {"value", "nextLink"}, page
        items += page["value"]
        if page["nextLink"] is None:
            return items, pages
        link = urlsplit(page["nextLink"])
        assert link.path.startswith("/api/") and "continuationToken=" in link.query, link
        page = _ok(api.get(link.path.removeprefix("/api/") + "?" + link.query))
        pages += 1
        assert pages < 100, "nextLink never ends"


def test_every_list_route_has_the_envelope(description: dict[str, Any]) -> None:
    assert list_routes(description) == LISTS


@pytest.mark.parametrize(
    ("template", "top", "at_least"),
    [
        (BUILDING + "/bookings", 3, 13),  # 6 platform + 6 Outlook at 3 start times + cancelled
        (BUILDING + "/resources", 2, 5),
        (BUILDING + "/companies", 2, 5),
        (BUILDING + "/users", 2, 5),
        (BUILDING + "/audit", 2, 5),  # connecting and mapping: token, discovery, probes
    ],
)
def test_pages_lose_and_repeat_nothing(
    api: httpx.Client, world: World, template: str, top: int, at_least: int
) -> None:
    query = _query_of(world, template)
    if template.endswith("/bookings"):
        query["status"] = "all"
    whole, _ = walk(api, _concrete(template, world), {**query, "top": "1000"})
    paged, pages = walk(api, _concrete(template, world), {**query, "top": str(top)})
    key = ID_FIELD.get(template, "id")
    ids = [item[key] for item in paged]
    assert len(whole) >= at_least and pages >= 3, (len(whole), pages)
    assert len(ids) == len(set(ids)), "an item was repeated"
    assert ids == [item[key] for item in whole], "paging changed the order or lost an item"
    if template.endswith("/bookings"):
        starts = [(b["start"], b["resourceId"], b["id"]) for b in paged]
        assert starts == sorted(starts) and len({s for s, _, _ in starts}) == 3


def test_every_item_of_every_list_is_fetchable_by_its_id(api: httpx.Client, world: World) -> None:
    wait_for(lambda: _ok(api.get(f"{_concrete(BUILDING + '/webhooks/{webhook}/deliveries', world)}"))
             ["value"], timeout=10, what="the pings' deliveries")  # fmt: skip
    fetched = 0
    for template in sorted(LISTS - LIVE_VIEWS):
        query = _query_of(world, template)
        if template.endswith("/bookings"):
            query["status"] = "all"  # the cancelled one too
        items, _ = walk(api, _concrete(template, world), query)
        assert items, f"{template} listed nothing to fetch"
        key = ID_FIELD.get(template, "id")
        for item in items:
            got = _ok(api.get(f"{_concrete(template, world)}/{quote(str(item[key]), safe='')}"))
            stable = {k: v for k, v in item.items() if k not in VOLATILE}
            assert {k: got.get(k) for k in stable} == stable, (template, item[key])
            fetched += 1
    outlook = [b for b in walk(api, _concrete(BUILDING + "/bookings", world), world.window)[0]
               if b["source"] == "outlook"]  # fmt: skip
    assert len(outlook) == 6
    # 13 bookings, 5 resources, companies and users, 5+ audit records, a check, a webhook and
    # its 3 deliveries.
    assert fetched >= 13 + 5 + 5 + 5 + 5 + 1 + 1 + 3


def test_outlook_bookings_are_read_only(api: httpx.Client, world: World) -> None:
    base = _concrete(BUILDING + "/bookings", world)
    outlook = next(b for b in _ok(api.get(base, params=world.window))["value"]
                   if b["source"] == "outlook")  # fmt: skip
    for response in (api.patch(f"{base}/{outlook['id']}", json={"title": "x"}),
                     api.delete(f"{base}/{outlook['id']}")):  # fmt: skip
        assert response.status_code == 409, response.text
        assert response.json()["reason"] == "outlook_booking_read_only"
    assert api.get(f"{base}/o-{'f' * 32}").status_code == 404
    assert api.delete(f"{base}/o-{'f' * 32}").status_code == 404


def test_status_picks_cancelled_bookings(api: httpx.Client, world: World) -> None:
    base = _concrete(BUILDING + "/bookings", world)

    def ids(**params: str) -> set[str]:
        return {b["id"] for b in walk(api, base, {**world.window, **params})[0]}

    assert world.cancelled not in ids()
    assert world.cancelled not in ids(status="confirmed")
    assert ids(status="cancelled") == {world.cancelled}
    assert ids(status="all") == ids() | {world.cancelled}
    bad = api.get(base, params={**world.window, "status": "gone"})
    assert bad.status_code == 400 and [e["field"] for e in bad.json()["errors"]] == ["status"]


def test_a_continuation_token_we_did_not_issue_is_a_400(
    api: httpx.Client, world: World, description: dict[str, Any]
) -> None:
    paged = [
        path for path in LISTS
        if any(p["name"] == "continuationToken" for p in description["paths"][path]["get"].get("parameters", []))
    ]  # fmt: skip
    assert set(paged) >= {BUILDING + s for s in ("/bookings", "/resources", "/users", "/audit")}
    # A Table Storage token (users) on the lists with cursors, and malformed ones everywhere.
    first = _ok(api.get(_concrete(BUILDING + "/users", world), params={"top": "2"}))["nextLink"]
    users_token = parse_qs(urlsplit(first).query)["continuationToken"][0]
    for path in paged:
        cursored = path.endswith(("/bookings", "/audit"))
        for token in ("garbage!", "k1.e30", "k1.W10", *([users_token] if cursored else [])):
            response = api.get(_concrete(path, world),
                               params={**_query_of(world, path), "continuationToken": token})  # fmt: skip
            assert response.status_code == 400, (path, token, response.text)
            assert [e["field"] for e in response.json()["errors"]] == ["continuationToken"], path


def test_an_unknown_query_parameter_is_a_400_naming_it_on_every_route(
    api: httpx.Client, world: World, description: dict[str, Any]
) -> None:
    open_ones = set()
    for path, operations in description["paths"].items():
        for method, operation in operations.items():
            if operation.get("x-open-query"):
                open_ones.add((method, path))
                continue
            response = api.request(method, _concrete(path, world), params={"colour": "red"})
            assert response.status_code == 400, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"] == [
                {"field": "colour", "message": "is not a parameter of this operation"}
            ], (method, path)
    assert open_ones == OPEN_QUERY
    # The open ones take what Entra appends (a refused sign-in, here) without naming it.
    redirect = api.get("oauth/callback", params={"error": "access_denied", "iss": "x"})
    assert redirect.status_code != 400 or "iss" not in redirect.text, redirect.text
    assert api.get("console/", params={"code": "x"}).status_code == 200
