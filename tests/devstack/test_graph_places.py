"""The Graph emulator's Microsoft Places hierarchy and free/busy rules (issue 19).

Real HTTPS against the emulator process, unmodified httpx, a fresh tenant per test (the shared
graph fixtures' tenant plus a Places hierarchy and seeded folder permissions). Every Places
response is validated against Microsoft's v1.0 metadata (tests/graphmeta.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.m365 import RunningEmulator
from tests.graphmeta import validate_collection
from tests.integration.graph_fixtures import SCENARIO, Tenant, day, dttz, event_body, graph_emu

__all__ = ["graph_emu"]

DESKS = 1005  # more than one default page of desks (1,000)


def _scenario() -> dict[str, Any]:
    scenario = copy.deepcopy(SCENARIO)
    tenant = scenario["tenants"][0]
    tenant["users"][4]["room"]["parent"] = "f1"  # room1 on floor 1
    tenant["users"] += [
        {"mailNickname": "desk1", "displayName": "Desk One", "type": "desk"},
        {"mailNickname": "pod1", "displayName": "Pod One", "type": "workspace"},
        {"mailNickname": "open", "displayName": "Open Calendar", "calendarPermission": "Reviewer"},
    ]
    tenant["places"] = [
        {"key": "hq", "type": "building", "displayName": "HQ"},
        {"key": "f1", "type": "floor", "parent": "hq", "displayName": "Floor 1", "sortOrder": 1},
        {"key": "s1", "type": "section", "parent": "f1", "displayName": "North"},
        {"key": "d1", "type": "desk", "parent": "s1", "displayName": "Desk One",
         "mode": "reservable", "mailbox": "desk1"},
        {"key": "d2", "type": "desk", "parent": "s1", "displayName": "Desk Two",
         "mode": "assigned", "assignedTo": "bob"},
        {"key": "d3", "type": "desk", "parent": "s1", "displayName": "Desk Three",
         "mode": "unavailable", "reason": "Broken chair"},
        {"key": "w1", "type": "workspace", "parent": "s1", "displayName": "Pod One",
         "capacity": 4, "mode": "reservable", "mailbox": "pod1"},
        *({"key": f"x{i}", "type": "desk", "parent": "s1", "displayName": f"Hot desk {i}",
           "mode": "dropIn"} for i in range(DESKS - 3)),
    ]  # fmt: skip
    return scenario


@pytest.fixture
def places_tenant(graph_emu: RunningEmulator) -> Iterator[Tenant]:
    t = Tenant(graph_emu, graph_emu.seed_scenario(_scenario(), fresh=True))
    try:
        yield t
    finally:
        for c in t.clients:
            c.close()


def _all(client: httpx.Client, path: str) -> tuple[list[dict[str, Any]], int]:
    """Every item of a Places collection (following nextLinks) and the number of pages."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    pages = 0
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        kind = path.rsplit(".", 1)[-1]
        assert validate_collection(body, kind) == [], validate_collection(body, kind)[:5]
        items += body["value"]
        pages += 1
        url = body.get("@odata.nextLink")
    return items, pages


def test_places_hierarchy_in_v1_shapes_and_pages(places_tenant: Tenant) -> None:
    t = places_tenant
    assert t.as_user("alice").get("/places/microsoft.graph.desk").status_code == 403
    app = t.as_app(["Place.Read.All"])
    (building,), _ = _all(app, "/places/microsoft.graph.building")
    (floor,), _ = _all(app, "/places/microsoft.graph.floor")
    (section,), _ = _all(app, "/places/microsoft.graph.section")
    assert floor["parentId"] == building["id"] and section["parentId"] == floor["id"]
    desks, pages = _all(app, "/places/microsoft.graph.desk")
    # 1,000 desks per page (place-list.md), then the rest.
    assert len(desks) == DESKS and pages == 2
    by_name = {d["displayName"]: d for d in desks}
    one, two, three = by_name["Desk One"], by_name["Desk Two"], by_name["Desk Three"]
    assert one["mode"] == {"@odata.type": "#microsoft.graph.reservablePlaceMode"}
    assert one["mailboxDetails"]["emailAddress"] == t.upn("desk1")
    assert two["mode"]["@odata.type"] == "#microsoft.graph.assignedPlaceMode"
    assert two["mode"]["assignedUserEmailAddress"] == t.upn("bob") and two["mailboxDetails"] is None
    assert three["mode"] == {
        "@odata.type": "#microsoft.graph.unavailablePlaceMode", "reason": "Broken chair"
    }  # fmt: skip
    assert {d["parentId"] for d in desks} == {section["id"]}
    (pod,), _ = _all(app, "/places/microsoft.graph.workspace")
    assert pod["emailAddress"] == t.upn("pod1") and pod["capacity"] == 4
    # Rooms are a page of 100 and know their parent; desks and workspaces are not rooms.
    rooms, _ = _all(app, "/places/microsoft.graph.room")
    assert sorted(r["emailAddress"] for r in rooms) == sorted([t.upn("room1"), t.upn("room2")])
    assert next(r for r in rooms if r["emailAddress"] == t.upn("room1"))["parentId"] == floor["id"]
    # The Kiota spelling and one place by id or by its mailbox.
    assert app.get("/places/graph.desk", params={"$top": "2"}).json()["value"][0]["id"]
    assert app.get(f"/places/{pod['id']}").json()["displayName"] == "Pod One"
    assert app.get(f"/places/{t.upn('desk1')}").json()["id"] == one["id"]


def test_desk_mailbox_takes_bookings_like_a_room(places_tenant: Tenant) -> None:
    t = places_tenant
    app = t.as_app(["Calendars.ReadWrite"])
    created = app.post(f"/users/{t.upn('desk1')}/calendar/events", json=event_body(day(1, 9)))
    assert created.status_code == 201, created.text
    # A resource mailbox: it cannot sign in, so no password was handed out for it.
    assert "password" not in t.info["users"]["desk1"]


def _schedule(client: httpx.Client, who: str, address: str) -> dict[str, Any]:
    body = {"schedules": [address], "startTime": dttz(day(1, 8)), "endTime": dttz(day(1, 12))}
    r = client.post(f"/users/{who}/calendar/getSchedule" if who else "/me/calendar/getSchedule",
                    json=body)  # fmt: skip
    assert r.status_code == 200, r.text
    (info,) = r.json()["value"]
    return dict(info)


def test_get_schedule_details_only_above_free_busy(places_tenant: Tenant) -> None:
    t = places_tenant
    writer = t.as_app(["Calendars.ReadWrite"])
    for nick in ("room1", "open", "dave"):
        made = writer.post(
            f"/users/{t.upn(nick)}/calendar/events", json=event_body(day(1, 9), subject="Secret")
        )
        assert made.status_code == 201, made.text
    basic = t.as_user("alice", ["User.Read", "Calendars.ReadBasic"])
    # ReadBasic is enough for getSchedule (calendar-getschedule-permissions.md, least privileged).
    room = _schedule(basic, "", t.upn("room1"))
    (item,) = room["scheduleItems"]
    # A room's Default permission is AvailabilityOnly: status, start and end, nothing else.
    assert set(item) == {"isPrivate", "status", "start", "end"} and item["status"] == "busy"
    assert room["availabilityView"].count("2") == 2
    # A mailbox whose Default permission is Reviewer shows the subject to everyone.
    assert _schedule(basic, "", t.upn("open"))["scheduleItems"][0]["subject"] == "Secret"
    # The owner sees their own details; an app with a calendar permission on the mailbox does.
    assert _schedule(t.as_user("dave"), "", t.upn("dave"))["scheduleItems"][0]["subject"]
    app = t.as_app(["Calendars.ReadBasic.All"])
    assert _schedule(app, t.upn("room1"), t.upn("room1"))["scheduleItems"][0]["subject"]
    # A delegated ReadBasic token reads no other mailbox's events: free/busy is all it gets.
    other = basic.get(f"/users/{t.upn('room1')}/calendar/events")
    assert other.status_code == 403 and other.json()["error"]["code"] == "ErrorAccessDenied"
    # Subscriptions need Calendars.Read (outlook-subscription-notes.md): ReadBasic is refused.
    sub = basic.post(
        "/subscriptions",
        json={"changeType": "created", "resource": "me/events",
              "notificationUrl": "https://127.0.0.1:1/n", "clientState": "x",
              "expirationDateTime": dttz(day(1))["dateTime"] + "Z"},
    )  # fmt: skip
    assert sub.status_code == 403, sub.text
