"""Free/busy-only connections and the Microsoft Places import end to end (issue 19), on a stack of
their own whose poll timer runs every second (SYNC_SETTINGS: one polling interval is 2–4 s).

Each test connects a new building to a fresh copy of the demo tenant through the real connect
routes with `access: "freeBusy"`, maps a room from discovery, books the room in Outlook (an
organizer's meeting the room accepts, with a distinctive subject), and judges what portals see:
the busy time in `GET /availability` within one polling interval, no subject anywhere in Table
Storage (every table scanned) or in the audit, a booking refused with 422 `read_only_mapping`,
and no write to Graph (the emulator's request counters).

The Places import runs against the demo tenant's Places (a building, two floors, two sections, 20
desks in mixed modes, two workspaces): the tree, a refused selection, the import (resources
created and mapped to their mailboxes), a platform booking of a desk on the desk's calendar, and a
re-run that changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import Stack, start_stack
from tests.e2e.booking_fixtures import graph_stats, outlook_events
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.connect_fixtures import drive_authorize, fresh_tenant, query_of
from tests.e2e.sync_fixtures import SYNC_SETTINGS, outlook
from tests.waiting import wait_for

WRITES = ("POST", "PATCH", "DELETE", "PUT")
READS_ONLY = ("getSchedule", "$batch")  # POSTs that read


@pytest.fixture(scope="module")
def fstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("freebusy-stack"), extra_settings=SYNC_SETTINGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def fapi(fstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(fstack.endpoints, client_token(fstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def fanon(fstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(fstack.endpoints) as client:
        yield client


def new_building(api: httpx.Client, prefix: str) -> str:
    building = f"{prefix}-{uuid.uuid4().hex[:10]}"
    # Buildings are first-class once issue 20 lands (PUT creates one); before, any answer will do.
    api.put(f"buildings/{building}", json={"name": building, "timeZone": "UTC"})
    return building


def connect(
    stack: Stack, api: httpx.Client, anon: httpx.Client, building: str, tenant: dict[str, Any],
    *, mode: str, access: str,
) -> dict[str, Any]:  # fmt: skip
    """Connect through our routes as the tenant's admin would; the connection as GET shows it."""
    admin = tenant["users"]["admin"]
    body: dict[str, Any] = {
        "mode": mode, "access": access, "returnUrl": stack.endpoints["returnUrl"],
        "expectedAccount": admin["userPrincipalName"],
    }  # fmt: skip
    if mode == "application":
        body["tenant"] = tenant["domain"]
    started = api.post(f"buildings/{building}/connection", json=body)
    assert started.status_code == 200, started.text
    with httpx.Client(verify=stack.endpoints["caBundle"], trust_env=False, timeout=30) as browser:
        callback = drive_authorize(
            browser, started.json()["authorizeUrl"], username=admin["userPrincipalName"],
            password=admin["password"], functions_base=stack.endpoints["functionsBaseUrl"],
        )  # fmt: skip
    done = anon.get(callback.removeprefix(stack.endpoints["functionsBaseUrl"] + "/"))
    assert done.status_code == 302, done.text
    assert query_of(done.headers["location"])["status"] == "connected", done.headers["location"]
    got = api.get(f"buildings/{building}/connection")
    assert got.status_code == 200, got.text
    return dict(got.json())


def map_room(api: httpx.Client, building: str, mailbox: str) -> dict[str, Any]:
    """The room as free/busy discovery lists it, mapped to a new resource `r-room`."""
    found = api.get(f"buildings/{building}/calendars")
    assert found.status_code == 200, found.text
    (room,) = [c for c in found.json()["value"] if c["mailbox"] == mailbox]
    # Read-only: a free/busy connection can map it, never write to it.
    assert room["canEdit"] is False and room["reason"] == "free_busy_only", room
    put = api.put(
        f"buildings/{building}/resources/r-room",
        json={"name": "Board room", "kind": "room", "timeZone": "UTC"},
    )
    assert put.status_code in (200, 201), put.text
    mapped = api.put(
        f"buildings/{building}/resources/r-room/mapping",
        json={"calendarId": room["id"], "mailbox": mailbox},
    )
    assert mapped.status_code == 200, mapped.text
    return dict(room)


def writes(stack: Stack) -> dict[str, int]:
    """Graph requests that change something, by endpoint (the emulator's counters)."""
    by_endpoint: dict[str, int] = graph_stats(stack)["requests"]["byEndpoint"]
    return {
        e: n
        for e, n in by_endpoint.items()
        if e.split(" ")[0] in WRITES and not any(r in e for r in READS_ONLY)
    }


def book_in_outlook(stack: Stack, tenant: dict[str, Any], subject: str) -> datetime:
    """Emma invites the room to a meeting tomorrow 10:00 UTC; the room accepts it."""
    start = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    room = tenant["users"]["boardroom4a"]
    emma = tenant["users"]["emma"]["mail"]
    outlook(
        stack, "POST", f"users/{emma}/events", params={"tenant": tenant["id"]},
        json={
            "subject": subject,
            "location": {"displayName": f"{subject} location"},
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC"},
            "attendees": [{"emailAddress": {"address": room["mail"], "name": room["displayName"]},
                           "type": "resource"}],
        },
    )  # fmt: skip
    return start


def busy_blocks(api: httpx.Client, building: str, start: datetime) -> list[dict[str, Any]]:
    response = api.get(
        f"buildings/{building}/availability",
        params={"from": (start - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    (resource,) = response.json()["resources"]
    return list(resource["busy"])


def stored_anywhere(stack: Stack, needle: str) -> list[str]:
    """Every Azurite table (busy blocks, bookings, audit, sync state, ...) and every host log
    that contains `needle`."""
    found = []
    service = TableServiceClient.from_connection_string(stack.settings["AzureWebJobsStorage"])
    for table in service.list_tables():
        rows = service.get_table_client(table.name).list_entities()
        if any(needle in repr(dict(row)) for row in rows):
            found.append(f"table {table.name}")
    for log in (stack.state_dir / "logs").glob("*.log"):
        if log.name != "m365.log" and needle in log.read_text(errors="replace"):
            found.append(log.name)
    return found


def check_free_busy_building(
    stack: Stack, api: httpx.Client, building: str, tenant: dict[str, Any], before: dict[str, int]
) -> None:
    """The Done-when of issue 19 for one connected, mapped building (module docstring)."""
    subject = f"Zebra-{uuid.uuid4().hex[:12]}"
    start = book_in_outlook(stack, tenant, subject)
    # Within one polling interval (2–4 s here): the room's busy time, as free/busy only.
    blocks = wait_for(
        lambda: [b for b in busy_blocks(api, building, start) if b["source"] == "outlook"] or None,
        timeout=20,
        what="the room's Outlook busy time in availability",
    )
    (block,) = blocks
    assert block["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert block["detail"] == "freeBusy" and block["showAs"] == "busy"
    assert block["companyId"] is None and block["bookingId"] is None
    assert stored_anywhere(stack, subject) == []
    # Audited reads: getSchedule, never events, calendarView or delta.
    audit = api.get(f"buildings/{building}/audit")
    assert audit.status_code == 200, audit.text
    operations = {r["operation"] for r in audit.json()["value"]}
    assert "sync.schedule" in operations, operations
    assert not {o for o in operations if "delta" in o or "event" in o}, operations
    # A booking is refused before anything is stored or written.
    refused = api.post(
        f"buildings/{building}/bookings",
        json={"resourceId": "r-room", "start": (start + timedelta(hours=2)).isoformat(),
              "end": (start + timedelta(hours=3)).isoformat(), "title": "Platform",
              "booker": {"email": tenant["users"]["liam"]["mail"], "name": "Liam Lee"}},
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "read_only_mapping"
    listed = api.get(
        f"buildings/{building}/bookings",
        params={"from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "to": (start + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )  # fmt: skip
    assert listed.status_code == 200, listed.text
    items = listed.json()["value"]
    assert not [b for b in items if b.get("source", "platform") == "platform"], items
    # The go-live check runs its read steps (getSchedule, no calendar read) and skips the writes.
    started = api.post(f"buildings/{building}/checks", json={})
    assert started.status_code == 202, started.text

    def finished() -> dict[str, Any] | None:
        got = api.get(f"buildings/{building}/checks/{started.json()['id']}").json()
        return got if got["status"] in ("passed", "failed", "abandoned") else None

    check = wait_for(finished, timeout=60, what="the go-live check to finish")
    (result,) = [r for r in check["resources"] if r["resourceId"] == "r-room"]
    steps = {st["name"]: st for st in result["steps"]}
    assert check["status"] == "passed", check
    assert [n for n, st in steps.items() if st["status"] == "passed"] == [
        "connection", "notifications", "delta", "calendar",
    ], steps  # fmt: skip
    assert steps["delta"]["detail"]["mode"] == "freeBusy"
    assert all(
        st["reason"] == "read_only_connection"
        for n, st in steps.items() if n not in ("connection", "notifications", "delta", "calendar")
    ), steps  # fmt: skip
    assert writes(stack) == before  # no event, no subscription, nothing written to Graph


def test_free_busy_application_connection(
    fstack: Stack, fapi: httpx.Client, fanon: httpx.Client
) -> None:
    tenant = fresh_tenant(fstack)
    building = new_building(fapi, "fba")
    before = writes(fstack)
    connection = connect(fstack, fapi, fanon, building, tenant, mode="application",
                         access="freeBusy")  # fmt: skip
    assert connection["access"] == "freeBusy" and connection["mode"] == "application"
    room = map_room(fapi, building, tenant["users"]["boardroom4a"]["mail"])
    assert room["id"] != "<default>"  # an application connection reads the room's calendar id
    check_free_busy_building(fstack, fapi, building, tenant, before)
    # Reconnecting with full access keeps the mapping, and the room becomes bookable.
    upgraded = connect(fstack, fapi, fanon, building, tenant, mode="application", access="full")
    assert upgraded["access"] == "full"
    resource = fapi.get(f"buildings/{building}/resources/r-room")
    assert resource.status_code == 200, resource.text
    assert resource.json()["sync"]["calendar"]["id"] == room["id"], resource.json()


def test_free_busy_delegated_connection(
    fstack: Stack, fapi: httpx.Client, fanon: httpx.Client
) -> None:
    tenant = fresh_tenant(fstack)
    building = new_building(fapi, "fbd")
    before = writes(fstack)
    connection = connect(fstack, fapi, fanon, building, tenant, mode="delegated",
                         access="freeBusy")  # fmt: skip
    # Only what free/busy needs was asked for and granted.
    assert connection["access"] == "freeBusy"
    assert set(connection["scopes"]) == {"User.Read", "Calendars.ReadBasic", "Place.Read.All"}
    room = map_room(fapi, building, tenant["users"]["boardroom4a"]["mail"])
    # The admin has free/busy rights only on the room: it is mapped by its default calendar.
    assert room["id"] == "<default>"
    check_free_busy_building(fstack, fapi, building, tenant, before)


# ---------------------------------------------------------------- Microsoft Places import


def _items(body: Any) -> list[dict[str, Any]]:
    """A collection answer's items (the list envelope, API.md "Lists and paging")."""
    return list(body["value"])


def _imported(api: httpx.Client, building: str) -> list[dict[str, Any]]:
    """The building's resources as an import writes them (sync progress left out)."""
    listed = api.get(f"buildings/{building}/resources")
    assert listed.status_code == 200, listed.text
    return [{**r, "sync": r["sync"]["calendar"]} for r in _items(listed.json())]


def _walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from _walk(node["children"])


def test_places_import_creates_maps_and_converges(
    fstack: Stack, fapi: httpx.Client, fanon: httpx.Client
) -> None:
    tenant = fresh_tenant(fstack)
    building = new_building(fapi, "pl")
    connect(fstack, fapi, fanon, building, tenant, mode="application", access="full")
    tree = fapi.get(f"buildings/{building}/places")
    assert tree.status_code == 200, tree.text
    (hq,) = tree.json()["value"]
    assert (hq["type"], hq["name"]) == ("building", "HQ")
    assert sorted(f["name"] for f in hq["children"]) == ["Floor 3", "Floor 4"]
    places = {p["name"]: p for p in _walk([hq])}
    desks = [p for p in places.values() if p["type"] == "desk"]
    assert len(desks) == 20 and len([p for p in places.values() if p["type"] == "workspace"]) == 2
    assert places["Desk 3N-01"]["mode"] == "reservable" and places["Desk 3N-01"]["bookable"]
    assert places["Desk 3N-07"]["mode"] == "dropIn" and places["Desk 3N-07"]["bookable"]
    assert (places["Desk 3N-09"]["bookable"], places["Desk 3N-09"]["reason"]) == (False, "assigned")
    assert places["Desk 3S-10"]["reason"] == "unavailable"
    assert places["Board Room 4A"]["mailbox"] == tenant["users"]["boardroom4a"]["mail"]

    # All or nothing: a named desk that cannot be booked and an unknown id, each named.
    refused = fapi.post(
        f"buildings/{building}/places:import",
        json={"timeZone": "Europe/Amsterdam",
              "placeIds": [places["Desk 3N-09"]["id"], places["Desk 3N-01"]["id"], "nope"]},
    )  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert refused.json()["reason"] == "rows_rejected"
    assert sorted(r["placeId"] for r in refused.json()["rejected"]) == sorted(
        [places["Desk 3N-09"]["id"], "nope"]
    )
    assert _items(fapi.get(f"buildings/{building}/resources").json()) == []

    done = fapi.post(f"buildings/{building}/places:import", json={"timeZone": "Europe/Amsterdam"})
    assert done.status_code == 200, done.text
    report = done.json()
    # 3 rooms, 10 reservable and 4 drop-in desks, 2 workspaces; 6 desks skipped with reasons.
    assert len(report["created"]) == 19 and report["updated"] == [] == report["missing"]
    assert sorted(s["reason"] for s in report["skipped"]) == ["assigned"] * 4 + ["unavailable"] * 2
    desk_mail = tenant["users"]["desk3n01"]["mail"]
    (desk_id,) = [c["resourceId"] for c in report["created"] if c["mailbox"] == desk_mail]
    desk = fapi.get(f"buildings/{building}/resources/{desk_id}").json()
    assert (desk["kind"], desk["capacity"], desk["floor"], desk["section"]) == (
        "desk", 1, "Floor 3", "3 North"
    )  # fmt: skip
    assert desk["sync"]["calendar"]["mailbox"] == desk_mail
    pod = next(c["resourceId"] for c in report["created"]
               if c["mailbox"] == tenant["users"]["ws3steam"]["mail"])  # fmt: skip
    assert fapi.get(f"buildings/{building}/resources/{pod}").json()["kind"] == "amenity"
    resources = _imported(fapi, building)

    # A platform booking of the desk is written to the desk's mailbox calendar.
    start = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                            microsecond=0)  # fmt: skip
    booked = fapi.post(
        f"buildings/{building}/bookings",
        json={"resourceId": desk_id, "start": start.isoformat(),
              "end": (start + timedelta(hours=8)).isoformat(), "title": "Focus day",
              "booker": {"email": tenant["users"]["liam"]["mail"], "name": "Liam Lee"}},
    )  # fmt: skip
    assert booked.status_code == 201, booked.text
    events = wait_for(
        lambda: [e for e in outlook_events(fstack, desk_mail, tenant)
                 if str(e.get("subject")).startswith("Desk 3N-01")] or None,
        timeout=20, what="the booking on the desk's mailbox calendar",
    )  # fmt: skip
    assert len(events) == 1

    # Running it again changes nothing.
    again = fapi.post(f"buildings/{building}/places:import", json={})
    assert again.status_code == 200, again.text
    assert again.json()["created"] == [] == again.json()["updated"]
    assert len(again.json()["unchanged"]) == 19
    assert _imported(fapi, building) == resources

    # In Places a desk is renamed and another removed: the next import renames the first's
    # resource and reports it, reports the second's as missing and keeps it.
    renamed, removed = places["Desk 3N-02"], places["Desk 3N-03"]
    query = {"tenant": tenant["id"]}
    outlook(fstack, "PATCH", f"places/{renamed['id']}", params=query,
            json={"displayName": "Desk 3N-02 (window)"})  # fmt: skip
    outlook(fstack, "DELETE", f"places/{removed['id']}", params=query)
    # A new connection reads Places afresh (they are cached a minute per connection).
    connect(fstack, fapi, fanon, building, tenant, mode="application", access="full")
    third = fapi.post(f"buildings/{building}/places:import", json={})
    assert third.status_code == 200, third.text
    changed = third.json()
    assert [(r["from"], r["to"]) for r in changed["renamed"]] == [
        ("Desk 3N-02", "Desk 3N-02 (window)")
    ]
    assert [m["mailbox"] for m in changed["missing"]] == [tenant["users"]["desk3n03"]["mail"]]
    kept = fapi.get(f"buildings/{building}/resources/{changed['missing'][0]['resourceId']}")
    assert kept.status_code == 200 and kept.json()["sync"]["calendar"] is not None
    assert changed["created"] == [] and len(changed["unchanged"]) == 17
