"""Every Graph endpoint of the emulator, with request and response bodies checked against
Microsoft's v1.0 metadata (tests/graphmeta.py): what we send and what we get must be valid
`microsoft.graph.*` shapes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests import graphmeta
from tests.integration.graph_fixtures import (
    Sink,
    Tenant,
    day,
    dttz,
    emu_now,
    event_body,
    graph_emu,
    sink,
    subscribe,
    tenant,
    view_params,
)
from tests.waiting import wait_for

__all__ = ["graph_emu", "sink", "tenant"]

EP = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name BookingId"


def ok(problems: list[str]) -> None:
    assert problems == [], problems


# Properties Graph sends that the v1.0 $metadata lacks; each one is in Graph's own v1.0 examples.
BEYOND_METADATA: dict[str, set[str]] = {
    # api-reference/v1.0/api/subscription-post-subscriptions.md (and subscription-get.md).
    "subscription": {"notificationContentType"},
}


def _strip(body: dict[str, Any], type_name: str) -> dict[str, Any]:
    extra = BEYOND_METADATA.get(type_name, set())
    return {k: v for k, v in body.items() if k not in extra}


def entity(body: dict[str, Any], type_name: str) -> None:
    ok(graphmeta.validate(_strip(body, type_name), f"microsoft.graph.{type_name}"))


def collection(body: dict[str, Any], type_name: str) -> None:
    if isinstance(body.get("value"), list):
        body = {**body, "value": [_strip(v, type_name) for v in body["value"]]}
    ok(graphmeta.validate_collection(body, f"microsoft.graph.{type_name}"))


def request(body: dict[str, Any], type_name: str) -> dict[str, Any]:
    ok(graphmeta.validate(body, f"microsoft.graph.{type_name}", partial=True))
    return body


def test_every_endpoint_matches_the_metadata(tenant: Tenant, sink: Sink) -> None:
    alice = tenant.as_user("alice", ["User.Read", "Calendars.Read", "Calendars.ReadWrite"])
    app = tenant.as_app(["Calendars.ReadWrite", "Place.Read.All"])
    entity(alice.get("/me").json(), "user")
    entity(alice.get("/me", params={"$select": "id,displayName,mail"}).json(), "user")
    collection(alice.get("/me/calendars").json(), "calendar")
    entity(alice.get("/me/calendar").json(), "calendar")
    cal_id = alice.get("/me/calendar").json()["id"]
    entity(alice.get(f"/me/calendars/{cal_id}").json(), "calendar")
    collection(
        tenant.as_user("bob", ["Calendars.Read.Shared"]).get("/me/calendars").json(), "calendar"
    )

    room = {
        "emailAddress": {"address": tenant.upn("room1"), "name": "Room One"},
        "type": "resource",
    }
    body = request(
        event_body(
            day(3, 10),
            subject="Conformance",
            attendees=[room],
            body={"contentType": "html", "content": "<p>Hi</p>"},
            location={"displayName": "Room One", "locationEmailAddress": tenant.upn("room1")},
            transactionId="tx-conformance",
            showAs="busy",
            importance="high",
            singleValueExtendedProperties=[{"id": EP, "value": "bk_9"}],
        ),
        "event",
    )
    created = alice.post("/me/events", json=body).json()
    entity(created, "event")
    eid = created["id"]
    wait_for(
        lambda: (
            alice.get(f"/me/events/{eid}").json()["attendees"][0]["status"]["response"] != "none"
        )
    )
    entity(
        alice.get(
            f"/me/events/{eid}",
            params={"$expand": f"singleValueExtendedProperties($filter=id eq '{EP}')"},
        ).json(),
        "event",
    )
    entity(
        alice.patch(
            f"/me/events/{eid}", json=request({"subject": "Renamed", "categories": ["x"]}, "event")
        ).json(),
        "event",
    )
    collection(alice.get("/me/events").json(), "event")
    collection(alice.get("/me/calendar/events").json(), "event")
    collection(alice.get(f"/me/calendars/{cal_id}/events").json(), "event")
    collection(app.get(f"/users/{tenant.upn('room1')}/calendar/events").json(), "event")

    start = day(1, 9)
    series = request(
        event_body(
            start,
            30,
            subject="Series",
            recurrence={
                "pattern": {
                    "type": "weekly",
                    "interval": 1,
                    "daysOfWeek": [start.strftime("%A").lower()],
                    "firstDayOfWeek": "monday",
                },
                "range": {"type": "noEnd", "startDate": start.date().isoformat()},
            },
        ),
        "event",
    )
    master = alice.post("/me/events", json=series).json()
    entity(master, "event")
    window = view_params(day(0, 0), day(20, 0))
    view = alice.get(
        "/me/calendarView",
        params=window,
        headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'},
    ).json()
    collection(view, "event")
    collection(alice.get(f"/me/calendars/{cal_id}/calendarView", params=window).json(), "event")
    collection(alice.get(f"/me/events/{master['id']}/instances", params=window).json(), "event")
    occurrence = next(e for e in view["value"] if e["type"] == "occurrence")
    entity(alice.get(f"/me/events/{occurrence['id']}").json(), "event")

    delta = alice.get("/me/calendarView/delta", params=window).json()
    pages = [delta]
    while "@odata.nextLink" in pages[-1]:
        pages.append(alice.get(pages[-1]["@odata.nextLink"]).json())
    alice.delete(f"/me/events/{eid}")
    pages.append(alice.get(pages[-1]["@odata.deltaLink"]).json())
    assert any("@removed" in e for e in pages[-1]["value"])
    for page in pages:
        collection(page, "event")
    collection(
        alice.get(f"/me/calendars/{cal_id}/calendarView/delta", params=window).json(), "event"
    )

    schedule_body = {
        "schedules": [tenant.upn("room1"), tenant.upn("alice"), "x@nowhere.example"],
        "startTime": dttz(day(3, 8)),
        "endTime": dttz(day(3, 18)),
        "availabilityViewInterval": 60,
    }
    ok(graphmeta.validate_action_parameters(schedule_body, "getSchedule", "calendar"))
    collection(
        alice.post("/me/calendar/getSchedule", json=schedule_body).json(), "scheduleInformation"
    )

    collection(app.get("/places/microsoft.graph.room").json(), "room")
    lists = app.get("/places/microsoft.graph.roomlist").json()
    collection(lists, "roomList")
    collection(
        app.get(
            f"/places/{lists['value'][0]['emailAddress']}/microsoft.graph.roomlist/rooms"
        ).json(),
        "room",
    )
    entity(app.get(f"/places/{tenant.upn('room1')}").json(), "room")

    now = emu_now(tenant.emu)
    sub_req = {
        "changeType": "created,updated,deleted",
        "notificationUrl": sink.url,
        "lifecycleNotificationUrl": sink.url,
        "resource": "/me/events",
        "expirationDateTime": (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        "clientState": "cs",
    }
    request(sub_req, "subscription")
    sub = alice.post("/subscriptions", json=sub_req).json()
    entity(sub, "subscription")
    entity(alice.get(f"/subscriptions/{sub['id']}").json(), "subscription")
    collection(alice.get("/subscriptions").json(), "subscription")
    entity(
        alice.patch(
            f"/subscriptions/{sub['id']}",
            json={
                "expirationDateTime": (now + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            },
        ).json(),
        "subscription",
    )
    app_sub = subscribe(app, f"/users/{tenant.uid('bob')}/events", sink, now=now)
    entity(app_sub.json(), "subscription")
    alice.post("/me/events", json=event_body(day(4)))
    tenant.emu.control.post(
        f"graph/subscriptions/{sub['id']}/lifecycle", json={"event": "reauthorizationRequired"}
    )
    wait_for(
        lambda: (
            any("lifecycleEvent" in i for i in sink.items())
            and any("changeType" in i for i in sink.items())
        )
    )
    for _t, _path, payload in sink.received:
        for item in payload["value"]:
            if "lifecycleEvent" in item:
                # Lifecycle notifications carry no changeType/resource (Graph's documented shape).
                problems = graphmeta.validate(item, "microsoft.graph.changeNotification")
                assert all("changeType" in p or "resource" in p for p in problems), problems
            else:
                entity(item, "changeNotification")
        if all("changeType" in i for i in payload["value"]):
            entity(payload, "changeNotificationCollection")

    batch = alice.post(
        "/$batch",
        json={
            "requests": [
                {"id": "a", "method": "GET", "url": "/me/calendar"},
                {
                    "id": "b",
                    "method": "POST",
                    "url": "/me/events",
                    "body": event_body(day(6)),
                    "headers": {"Content-Type": "application/json"},
                },
            ]
        },
    ).json()
    by_id = {r["id"]: r for r in batch["responses"]}
    entity(by_id["a"]["body"], "calendar")
    entity(by_id["b"]["body"], "event")
    error = alice.get("/me/events/AAMkAGmissing").json()
    assert set(error["error"]) >= {"code", "message", "innerError"}
