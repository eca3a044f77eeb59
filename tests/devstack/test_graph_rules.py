"""Rules of the Graph emulator that differ from a naive fake (each would let wrong client code pass).

Real HTTPS against the emulator process, unmodified httpx, fresh tenant per test.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from typing import Any

import httpx

from tests.integration.graph_fixtures import (
    SHARED,
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
    zulu,
)
from tests.waiting import wait_for

__all__ = ["graph_emu", "sink", "tenant"]  # fixtures used by name below

# Base64url of an entry id, like every Outlook id, but of no item.
WELL_FORMED_UNKNOWN = (
    "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqM"
    "bYjsT5e-T7KzowPTAAAAAAENAAAiIsqMbYjsT5e-T7KzowPTAAAa_WKzAAA="
)
EP_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name BookingId"


def code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


# ----------------------------------------------------------------------------- auth & permissions
def test_tokens_and_permissions(tenant: Tenant) -> None:
    anon = tenant.client("not-a-jwt")
    r = anon.get("/me")
    assert r.status_code == 401 and code(r) == "InvalidAuthenticationToken"
    assert r.headers["request-id"] and r.json()["error"]["innerError"]["request-id"]
    expired = tenant.client(tenant.token("alice", lifetime=-600))
    assert expired.get("/me/events").status_code == 401
    wrong_aud = tenant.client(tenant.token("alice", audience="https://vault.azure.net"))
    assert code(wrong_aud.get("/me/events")) == "InvalidAuthenticationToken"
    # An unmapped scope: a valid token without any calendar permission.
    r = tenant.as_user("alice", ["User.Read"]).get("/me/events")
    assert r.status_code == 403 and code(r) == "ErrorAccessDenied"
    app = tenant.as_app(["Calendars.ReadWrite"])
    r = app.get("/me")
    assert r.status_code == 400
    r = app.get("/users/nobody@nowhere.example/events")
    assert r.status_code == 404 and code(r) == "ErrorInvalidUser"
    r = app.get(f"/users/{tenant.upn('alice')}/events/AAMkAGnotthere")
    assert r.status_code == 400 and code(r) == "ErrorInvalidIdMalformed"
    r = app.get(f"/users/{tenant.upn('alice')}/events/{WELL_FORMED_UNKNOWN}")
    assert r.status_code == 404 and code(r) == "ErrorItemNotFound"
    # Another user's mailbox without a share → 403; with a read share → readable, not writable.
    dave = tenant.as_user("dave", SHARED)
    assert code(dave.get(f"/users/{tenant.upn('alice')}/calendar/events")) == "ErrorAccessDenied"
    carol = tenant.as_user("carol", SHARED)
    assert carol.get(f"/users/{tenant.upn('alice')}/calendar/events").status_code == 200
    r = carol.post(f"/users/{tenant.upn('alice')}/calendar/events", json=event_body(day(3)))
    assert r.status_code == 403
    # Read shared needs a .Shared scope even with a share.
    carol_own = tenant.as_user("carol")
    assert carol_own.get(f"/users/{tenant.upn('alice')}/calendar/events").status_code == 403


def test_rbac_scoped_application(tenant: Tenant) -> None:
    scoped = tenant.as_app(roles=[], app="scoped")
    assert scoped.get(f"/users/{tenant.upn('room1')}/calendar/events").status_code == 200
    r = scoped.get(f"/users/{tenant.upn('room2')}/calendar/events")
    assert r.status_code == 403 and code(r) == "ErrorAccessDenied"


def test_revoked_session_tokens_rejected(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    assert alice.get("/me/events").status_code == 200
    # Revocation is judged against the issue instant (whole seconds): move the emulated clock on.
    tenant.emu.advance_clock(1.1)
    r = tenant.emu.control.post(
        "graph/grants/revoke", json={"tenantId": tenant.id, "user": tenant.uid("alice")}
    )
    assert r.status_code == 200
    assert alice.get("/me/events").status_code == 401
    assert tenant.as_user("alice").get("/me/events").status_code == 200


def test_calendar_sharing_as_outlook_shows_it(tenant: Tenant) -> None:
    bob = tenant.as_user("bob", SHARED)
    cals = bob.get("/me/calendars").json()["value"]
    shared = [c for c in cals if c["owner"]["address"] == tenant.upn("alice")]
    assert len(shared) == 1
    copy = shared[0]
    assert copy["canShare"] is False and copy["canEdit"] is True and copy["name"] == "Alice Adams"
    alice = tenant.as_user("alice")
    alice_cals = alice.get("/me/calendars").json()["value"]
    assert {c["name"] for c in alice_cals} == {"Calendar", "Projects"}
    assert copy["id"] not in {c["id"] for c in alice_cals}
    r = bob.post(f"/me/calendars/{copy['id']}/events", json=event_body(day(2), subject="Via share"))
    assert r.status_code == 201
    assert r.json()["organizer"]["emailAddress"]["address"] == tenant.upn("alice")
    subjects = [e["subject"] for e in alice.get("/me/calendar/events").json()["value"]]
    assert "Via share" in subjects


# ----------------------------------------------------------------------------- events
def test_transaction_id_idempotency_and_extended_properties(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    tx = str(uuid.uuid4())
    body = event_body(
        day(4),
        transactionId=tx,
        singleValueExtendedProperties=[{"id": EP_ID, "value": "bk_1"}],
    )
    first = alice.post("/me/events", json=body)
    again = alice.post("/me/events", json=body)
    assert first.status_code == 201 and again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert len(alice.get("/me/events").json()["value"]) == 1
    other = alice.post("/me/events", json={**body, "subject": "Different"})
    assert other.status_code == 400 and code(other) == "ErrorDuplicateTransactionId"
    eid = first.json()["id"]
    assert "singleValueExtendedProperties" not in alice.get(f"/me/events/{eid}").json()
    expand = f"singleValueExtendedProperties($filter=id eq '{EP_ID}')"
    got = alice.get(f"/me/events/{eid}", params={"$expand": expand}).json()
    assert got["singleValueExtendedProperties"] == [{"id": EP_ID, "value": "bk_1"}]
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{EP_ID}' and ep/value eq 'bk_1')"
    assert [e["id"] for e in alice.get("/me/events", params={"$filter": flt}).json()["value"]] == [
        eid
    ]
    flt2 = flt.replace("bk_1", "bk_2")
    assert alice.get("/me/events", params={"$filter": flt2}).json()["value"] == []


def test_event_validation_and_change_keys(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    bad_zone = event_body(day(1))
    bad_zone["start"]["timeZone"] = "Mars/Olympus"
    assert alice.post("/me/events", json=bad_zone).status_code == 400
    backwards = {"subject": "x", "start": dttz(day(1, 10)), "end": dttz(day(1, 9))}
    assert alice.post("/me/events", json=backwards).status_code == 400
    assert alice.post("/me/events", json={**event_body(day(1)), "bogus": 1}).status_code == 400
    created = alice.post("/me/events", json=event_body(day(1))).json()
    assert created["@odata.etag"] == f'W/"{created["changeKey"]}"'
    assert created["type"] == "singleInstance" and created["isOrganizer"] is True
    patched = alice.patch(f"/me/events/{created['id']}", json={"subject": "Renamed"}).json()
    assert patched["changeKey"] != created["changeKey"] and patched["iCalUId"] == created["iCalUId"]
    # Time zones: Windows and IANA names in, Prefer: outlook.timezone out.
    win = alice.post(
        "/me/events",
        json={
            "subject": "w",
            "start": {"dateTime": "2031-03-03T09:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2031-03-03T10:00:00", "timeZone": "America/Los_Angeles"},
        },
    ).json()
    assert win["start"] == {"dateTime": "2031-03-03T17:00:00.0000000", "timeZone": "UTC"}
    r = alice.get(
        f"/me/events/{win['id']}", headers={"Prefer": 'outlook.timezone="W. Europe Standard Time"'}
    )
    assert r.json()["start"]["dateTime"].startswith("2031-03-03T18:00:00")
    assert "outlook.timezone" in r.headers["Preference-Applied"]


def test_cancel_is_for_organizers_and_accept_decline(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    ev = alice.post("/me/events", json=event_body(day(2))).json()
    assert alice.post(f"/me/events/{ev['id']}/cancel", json={"comment": "no"}).status_code == 202
    assert alice.get(f"/me/events/{ev['id']}").status_code == 404
    # Attendees get their own copy; only the organizer may cancel; answers reach the organizer.
    invite = [
        {"emailAddress": {"address": tenant.upn("bob")}, "type": "required"},
        {"emailAddress": {"address": tenant.upn("carol")}, "type": "optional"},
    ]
    meeting = alice.post("/me/events", json=event_body(day(2), attendees=invite)).json()
    bob, carol = tenant.as_user("bob"), tenant.as_user("carol")
    copy = wait_for(lambda: bob.get("/me/events").json()["value"])[0]
    assert copy["id"] != meeting["id"] and copy["iCalUId"] == meeting["iCalUId"]
    assert copy["isOrganizer"] is False and copy["responseStatus"]["response"] == "notResponded"
    r = bob.post(f"/me/events/{copy['id']}/cancel", json={})
    assert r.status_code == 400
    assert bob.post(f"/me/events/{copy['id']}/accept", json={}).status_code == 202
    carol_copy = wait_for(lambda: carol.get("/me/events").json()["value"])[0]
    assert carol.post(f"/me/events/{carol_copy['id']}/decline", json={}).status_code == 202
    assert carol.get(f"/me/events/{carol_copy['id']}").status_code == 404
    answers = {
        a["emailAddress"]["address"]: a["status"]["response"]
        for a in alice.get(f"/me/events/{meeting['id']}").json()["attendees"]
    }
    assert answers == {tenant.upn("bob"): "accepted", tenant.upn("carol"): "declined"}
    alice.delete(f"/me/events/{meeting['id']}")
    assert bob.get(f"/me/events/{copy['id']}").json()["isCancelled"] is True


def test_immutable_ids_survive_moves(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    imm = tenant.as_user("alice", None, Prefer='IdType="ImmutableId"')
    created = imm.post("/me/events", json=event_body(day(3))).json()
    rest_id = alice.get("/me/events").json()["value"][0]["id"]
    assert rest_id != created["id"]
    projects = next(
        c for c in alice.get("/me/calendars").json()["value"] if c["name"] == "Projects"
    )
    moved = tenant.emu.control.post(
        f"graph/users/{tenant.upn('alice')}/events/{created['id']}/move",
        json={"calendarId": projects["id"]},
    )
    assert moved.status_code == 200
    assert alice.get(f"/me/events/{rest_id}").status_code == 404  # REST id changed on move
    assert imm.get(f"/me/events/{created['id']}").status_code == 200  # immutable id did not
    assert alice.get(f"/me/calendars/{projects['id']}/events/{created['id']}").status_code == 200


# ----------------------------------------------------------------------------- rooms
def test_room_attendant_accepts_then_declines_conflict(tenant: Tenant) -> None:
    alice, bob = tenant.as_user("alice"), tenant.as_user("bob")
    room = {
        "emailAddress": {"address": tenant.upn("room1"), "name": "Room One"},
        "type": "resource",
    }
    first = alice.post("/me/events", json=event_body(day(5, 10), attendees=[room])).json()
    assert first["attendees"][0]["status"]["response"] == "none"  # answered asynchronously

    def response_of(client: httpx.Client, eid: str) -> str:
        return str(client.get(f"/me/events/{eid}").json()["attendees"][0]["status"]["response"])

    assert wait_for(lambda: response_of(alice, first["id"]) == "accepted")
    app = tenant.as_app(["Calendars.Read"])
    room_events = app.get(f"/users/{tenant.upn('room1')}/calendar/events").json()["value"]
    assert [e["iCalUId"] for e in room_events] == [first["iCalUId"]]
    assert room_events[0]["id"] != first["id"] and room_events[0]["isOrganizer"] is False
    clash = bob.post("/me/events", json=event_body(day(5, 10, 30), attendees=[room])).json()
    assert wait_for(lambda: response_of(bob, clash["id"]) == "declined")
    # Cancelling the organizer's meeting frees the room.
    alice.post(f"/me/events/{first['id']}/cancel", json={})
    assert wait_for(
        lambda: app.get(f"/users/{tenant.upn('room1')}/calendar/events").json()["value"] == []
    )


def test_room_declines_one_occurrence_then_the_series(tenant: Tenant) -> None:
    """Releasing a no-show as the room (issue 15): the app declines the room's own copy of one
    occurrence; that occurrence leaves the room's calendar (delta reports it removed), the
    organizer's occurrence shows the room declined while the rest of the series stays accepted,
    and later changes of the series don't bring it back. Declining the room's copy of the series
    master ends the series for the room. Body checked as OData does; organizers can't respond."""
    alice = tenant.as_user("alice")
    room_upn = tenant.upn("room1")
    room = {"emailAddress": {"address": room_upn, "name": "Room One"}, "type": "resource"}
    daily = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": day(2).date().isoformat(),
                  "numberOfOccurrences": 3},
    }  # fmt: skip
    master = alice.post(
        "/me/events", json=event_body(day(2, 9), attendees=[room], recurrence=daily)
    ).json()

    def room_status(event: dict[str, Any]) -> str:
        return str(event["attendees"][0]["status"]["response"])

    assert wait_for(
        lambda: room_status(alice.get(f"/me/events/{master['id']}").json()) == "accepted"
    )
    app = tenant.as_app(["Calendars.ReadWrite"])
    params = view_params(day(1, 0), day(6, 0))
    rooms_view = f"/users/{room_upn}/calendarView"
    delta = app.get(f"{rooms_view}/delta", params=params).json()
    while "@odata.deltaLink" not in delta:
        delta = app.get(delta["@odata.nextLink"]).json()
    copies = [e for e in delta["value"] if e.get("type") == "occurrence"]
    assert len(copies) == 3
    first = copies[0]
    # Bad bodies name the offending parameter; nothing is declined by them.
    for bad, word in (
        ({"comment": "x", "sendResponse": "yes"}, "sendResponse"),
        ({"comment": 3}, "comment"),
        ({"comment": "x", "reason": "no-show"}, "reason"),
    ):
        r = app.post(f"/users/{room_upn}/events/{first['id']}/decline", json=bad)
        assert r.status_code == 400 and code(r) == "RequestBodyRead", r.text
        assert word in r.json()["error"]["message"]
    r = app.post(
        f"/users/{room_upn}/events/{first['id']}/decline",
        json={"comment": "Released: nobody checked in", "sendResponse": True},
    )
    assert r.status_code == 202 and not r.content
    changes = app.get(delta["@odata.deltaLink"]).json()
    assert [e["id"] for e in changes["value"] if "@removed" in e] == [first["id"]]
    left = app.get(rooms_view, params=params).json()["value"]
    assert [e["id"] for e in left] == [e["id"] for e in copies[1:]]
    organizer_view = alice.get("/me/calendarView", params=params).json()["value"]
    assert [room_status(e) for e in organizer_view] == ["declined", "accepted", "accepted"]
    assert room_status(alice.get(f"/me/events/{master['id']}").json()) == "accepted"
    # A change to the series re-syncs the room's copy without the declined occurrence.
    alice.patch(f"/me/events/{master['id']}", json={"subject": "Renamed"})
    assert [e["id"] for e in app.get(rooms_view, params=params).json()["value"]] == [
        e["id"] for e in copies[1:]
    ]
    # The organizer can't decline their own meeting; only the organizer can cancel it.
    r = alice.post(f"/me/events/{master['id']}/decline", json={"sendResponse": True})
    assert r.status_code == 400 and "your own meeting" in r.json()["error"]["message"]
    room_master = copies[1]["seriesMasterId"]
    r = app.post(f"/users/{room_upn}/events/{room_master}/cancel", json={"comment": "no"})
    assert r.status_code == 400 and code(r) == "ErrorInvalidRequest"
    assert "organizer to cancel" in r.json()["error"]["message"]
    # Declining the room's copy of the master ends the series for the room.
    r = app.post(
        f"/users/{room_upn}/events/{room_master}/decline",
        json={"comment": "Released after repeated no-shows", "sendResponse": True},
    )
    assert r.status_code == 202
    assert app.get(rooms_view, params=params).json()["value"] == []
    assert room_status(alice.get(f"/me/events/{master['id']}").json()) == "declined"


# ----------------------------------------------------------------------------- recurrence & views
def test_recurrence_expansion_exceptions_and_instances(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    start = day(1, 9)
    weekday = start.strftime("%A").lower()
    body = event_body(
        start,
        30,
        subject="Standup",
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [weekday]},
            "range": {
                "type": "numbered",
                "startDate": start.date().isoformat(),
                "numberOfOccurrences": 4,
            },
        },
    )
    master = alice.post("/me/events", json=body).json()
    assert master["type"] == "seriesMaster"
    params = view_params(start - dt.timedelta(days=1), start + dt.timedelta(days=60))
    view = alice.get("/me/calendarView", params=params).json()["value"]
    assert [e["type"] for e in view] == ["occurrence"] * 4
    assert len({e["id"] for e in view}) == 4 and len({e["iCalUId"] for e in view}) == 4
    assert all(e["seriesMasterId"] == master["id"] for e in view)
    # Exception: move the second occurrence by an hour; delete the third.
    second, third = view[1], view[2]
    moved = alice.patch(
        f"/me/events/{second['id']}",
        json={
            "start": dttz(start + dt.timedelta(days=7, hours=1)),
            "end": dttz(start + dt.timedelta(days=7, hours=1, minutes=30)),
        },
    )
    assert moved.status_code == 200 and moved.json()["type"] == "exception"
    assert alice.delete(f"/me/events/{third['id']}").status_code == 204
    view = alice.get("/me/calendarView", params=params).json()["value"]
    assert [e["type"] for e in view] == ["occurrence", "exception", "occurrence"]
    inst = alice.get(f"/me/events/{master['id']}/instances", params=params).json()["value"]
    assert len(inst) == 3
    # Crossing onto the next occurrence's day is refused.
    r = alice.patch(
        f"/me/events/{view[0]['id']}",
        json={
            "start": dttz(start + dt.timedelta(days=7)),
            "end": dttz(start + dt.timedelta(days=7, minutes=30)),
        },
    )
    assert r.status_code == 400 and code(r) == "ErrorOccurrenceCrossingBoundary"
    # Daily with an end date, absoluteMonthly with no end: expanded within the window only.
    alice.post(
        "/me/events",
        json=event_body(
            day(1, 12),
            15,
            subject="Daily",
            recurrence={
                "pattern": {"type": "daily", "interval": 2},
                "range": {
                    "type": "endDate",
                    "startDate": day(1).date().isoformat(),
                    "endDate": day(10).date().isoformat(),
                },
            },
        ),
    )
    daily = [
        e
        for e in alice.get("/me/calendarView", params={**params, "$top": "100"}).json()["value"]
        if e["subject"] == "Daily"
    ]
    assert len(daily) == 5


def test_calendar_view_window_paging_and_top(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    for i in range(12):
        alice.post("/me/events", json=event_body(day(1, 8, i * 5), 4, subject=f"e{i}"))
    r = alice.get("/me/calendarView")
    assert r.status_code == 400 and code(r) == "ErrorInvalidParameter"
    # An unencoded '+' in the offset arrives as a space and is refused, as on Graph.
    raw = (
        f"/me/calendarView?startDateTime={day(1).strftime('%Y-%m-%dT%H:%M:%S')}+00:00"
        f"&endDateTime={zulu(day(2))}"
    )
    assert alice.get(raw).status_code == 400
    ok = alice.get(
        "/me/calendarView",
        params={
            "startDateTime": day(1).strftime("%Y-%m-%dT%H:%M:%S") + "+00:00",
            "endDateTime": zulu(day(2)),
        },
    )
    assert ok.status_code == 200
    params = view_params(day(1, 0), day(2, 0))
    for top in ("0", "1001"):
        assert alice.get("/me/calendarView", params={**params, "$top": top}).status_code == 400
    seen: list[str] = []
    page = alice.get(
        "/me/calendarView", params={**params, "$top": "5", "$select": "subject"}
    ).json()
    while True:
        seen += [e["subject"] for e in page["value"]]
        assert all(set(e) <= {"id", "@odata.etag", "subject"} for e in page["value"])
        if "@odata.nextLink" not in page:
            break
        page = alice.get(page["@odata.nextLink"]).json()
    assert seen == [f"e{i}" for i in range(12)]
    assert len(alice.get("/me/calendarView", params=params).json()["value"]) == 10  # default page


def test_delta_can_report_a_deleted_series_as_its_master_alone(tenant: Tenant) -> None:
    """`deltaSeriesRemoval`: a deleted series is each occurrence's removal (default) or, on
    demand, only the master's; the occurrences carry `seriesMasterId` either way."""
    alice = tenant.as_user("alice")
    daily = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": day(1).date().isoformat(),
                  "numberOfOccurrences": 3},
    }  # fmt: skip
    params = view_params(day(1, 0), day(5, 0))
    found = {}
    for mode in ("occurrences", "master"):
        tenant.emu.control.post("graph/config", json={"deltaSeriesRemoval": mode})
        try:
            master = alice.post(
                "/me/events", json=event_body(day(1, 9), subject=mode, recurrence=daily)
            ).json()
            first = alice.get("/me/calendarView/delta", params=params).json()
            while "@odata.deltaLink" not in first:
                first = alice.get(first["@odata.nextLink"]).json()
            occurrences = [e for e in first["value"] if e.get("seriesMasterId") == master["id"]]
            assert len(occurrences) == 3
            alice.delete(f"/me/events/{master['id']}")
            changes = alice.get(first["@odata.deltaLink"]).json()
            found[mode] = {e["id"] for e in changes["value"] if "@removed" in e}
            if mode == "occurrences":
                assert found[mode] == {e["id"] for e in occurrences}
            else:
                assert found[mode] == {master["id"]}
        finally:
            tenant.emu.control.post("graph/config", json={"deltaSeriesRemoval": "occurrences"})


def test_delta_removed_replay_and_expiry(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    keep = alice.post("/me/events", json=event_body(day(1, 9), subject="keep")).json()
    gone = alice.post("/me/events", json=event_body(day(1, 11), subject="gone")).json()
    leaves = alice.post("/me/events", json=event_body(day(1, 13), subject="leaves")).json()
    outside = alice.post("/me/events", json=event_body(day(9), subject="outside")).json()
    params = view_params(day(1, 0), day(2, 0))
    r = alice.get("/me/calendarView/delta", params={**params, "$select": "subject"})
    assert r.status_code == 400
    pages = 0
    url: str = "/me/calendarView/delta"
    got: list[dict[str, Any]] = []
    resp = alice.get(url, params=params, headers={"Prefer": "odata.maxpagesize=2"})
    while True:
        pages += 1
        body = resp.json()
        got += body["value"]
        if "@odata.deltaLink" in body:
            delta_link = body["@odata.deltaLink"]
            break
        resp = alice.get(body["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"})
    assert pages == 2 and {e["subject"] for e in got} == {"keep", "gone", "leaves"}
    alice.delete(f"/me/events/{gone['id']}")
    alice.patch(
        f"/me/events/{leaves['id']}", json={"start": dttz(day(5, 9)), "end": dttz(day(5, 10))}
    )
    alice.patch(f"/me/events/{outside['id']}", json={"subject": "still outside"})
    changes = alice.get(delta_link).json()
    removed = {e["id"] for e in changes["value"] if "@removed" in e}
    assert removed == {gone["id"], leaves["id"], outside["id"]}
    assert all(e["@removed"] == {"reason": "deleted"} for e in changes["value"])
    assert keep["id"] not in {e["id"] for e in changes["value"]}
    assert alice.get(delta_link).status_code == 200  # replay tolerated
    # Expiry on demand: 410 with Location, or syncStateNotFound.
    tenant.emu.control.post(
        "graph/delta/expire", json={"mode": "gone", "user": tenant.upn("alice")}
    )
    r = alice.get(delta_link)
    assert r.status_code == 410 and "startDateTime=" in r.headers["Location"]
    restart = alice.get(r.headers["Location"])
    assert restart.status_code == 200
    tenant.emu.control.post(
        "graph/delta/expire", json={"mode": "syncStateNotFound", "user": tenant.upn("alice")}
    )
    r = alice.get(restart.json()["@odata.deltaLink"])
    assert r.status_code == 400 and code(r) == "syncStateNotFound"


def test_get_schedule_limits(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    alice.post("/me/events", json=event_body(day(1, 9), 60))
    alice.post("/me/events", json=event_body(day(1, 10), 30, showAs="tentative"))
    body = {
        "schedules": [tenant.upn("alice"), "ghost@nowhere.example"],
        "startTime": dttz(day(1, 8)),
        "endTime": dttz(day(1, 12)),
        "availabilityViewInterval": 30,
    }
    r = alice.post("/me/calendar/getSchedule", json=body)
    assert r.status_code == 200
    mine, ghost = r.json()["value"]
    assert mine["availabilityView"] == "00221000"
    assert len(mine["scheduleItems"]) == 2 and "error" not in mine
    assert ghost["error"]["responseCode"] and ghost["availabilityView"] == ""
    # Graph takes up to 100 in practice (the docs say 20; microsoft-graph-docs-contrib#5895).
    hundred = {**body, "schedules": [f"u{i}@x.example" for i in range(100)]}
    assert alice.post("/me/calendar/getSchedule", json=hundred).status_code == 200
    too_many = {**body, "schedules": [f"u{i}@x.example" for i in range(101)]}
    r = alice.post("/me/calendar/getSchedule", json=too_many)
    assert r.status_code == 400 and r.json()["error"]["code"] == "ErrorMailboxDataArrayTooBig"
    too_long = {**body, "endTime": dttz(day(1, 8) + dt.timedelta(days=62))}
    assert alice.post("/me/calendar/getSchedule", json=too_long).status_code == 400
    for interval in (4, 1441):
        bad = {**body, "availabilityViewInterval": interval}
        assert alice.post("/me/calendar/getSchedule", json=bad).status_code == 400
    default = {k: v for k, v in body.items() if k != "availabilityViewInterval"}
    assert (
        len(
            alice.post("/me/calendar/getSchedule", json=default).json()["value"][0][
                "availabilityView"
            ]
        )
        == 8
    )


def test_places(tenant: Tenant) -> None:
    assert tenant.as_user("alice").get("/places/microsoft.graph.room").status_code == 403
    app = tenant.as_app(["Place.Read.All"])
    rooms = app.get("/places/microsoft.graph.room").json()["value"]
    assert sorted(r["emailAddress"] for r in rooms) == sorted(
        [tenant.upn("room1"), tenant.upn("room2")]
    )
    lists = app.get("/places/microsoft.graph.roomlist").json()["value"]
    assert len(lists) == 1
    members = app.get(f"/places/{lists[0]['emailAddress']}/microsoft.graph.roomlist/rooms")
    assert len(members.json()["value"]) == 2
    assert app.get(f"/places/{lists[0]['id']}/microsoft.graph.roomlist/rooms").status_code == 404
    paged = app.get("/places/microsoft.graph.room", params={"$top": "1"}).json()
    assert len(paged["value"]) == 1 and "@odata.nextLink" in paged


# ----------------------------------------------------------------------------- batch & throttling
def test_batch_limits_dependencies_and_throttling(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    reqs = [{"id": str(i), "method": "GET", "url": "/me/calendars"} for i in range(21)]
    assert alice.post("/$batch", json={"requests": reqs}).status_code == 400
    dup = [{"id": "1", "method": "GET", "url": "/me"}, {"id": "1", "method": "GET", "url": "/me"}]
    assert alice.post("/$batch", json={"requests": dup}).status_code == 400
    no_ctype = [{"id": "1", "method": "POST", "url": "/me/events", "body": event_body(day(1))}]
    assert alice.post("/$batch", json={"requests": no_ctype}).status_code == 400
    chain = [
        {
            "id": "1",
            "method": "POST",
            "url": "/me/events",
            "body": {"subject": "bad"},
            "headers": {"Content-Type": "application/json"},
        },
        {"id": "2", "method": "GET", "url": "/me/events", "dependsOn": ["1"]},
        {"id": "3", "method": "GET", "url": "/me/calendars"},
    ]
    out = {x["id"]: x for x in alice.post("/$batch", json={"requests": chain}).json()["responses"]}
    assert out["1"]["status"] == 400 and out["2"]["status"] == 424 and out["3"]["status"] == 200
    tenant.emu.control.post("graph/faults", json={"throttle": {"perTenMinutes": 3, "reset": True}})
    try:
        reqs = [{"id": str(i), "method": "GET", "url": "/me/calendars"} for i in range(5)]
        statuses = {
            x["id"]: x for x in alice.post("/$batch", json={"requests": reqs}).json()["responses"]
        }
        throttled = [x for x in statuses.values() if x["status"] == 429]
        assert len(throttled) == 2 and all("Retry-After" in x["headers"] for x in throttled)
    finally:
        tenant.emu.control.delete("graph/faults")


def test_fifth_concurrent_request_is_throttled(tenant: Tenant) -> None:
    tenant.emu.control.post(
        "graph/faults",
        json={"method": "GET", "path": "/users/*/calendar/events", "latencyMs": 600},
    )
    app = tenant.as_app(["Calendars.Read"])
    url = f"/users/{tenant.upn('room2')}/calendar/events"
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def call() -> None:
        r = app.get(url)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    # The four are in flight (each held 600 ms).
    wait_for(lambda: tenant.emu.control.get("graph/stats").json()["inflight"] == 4, 2.0)
    fifth = app.get(url)
    for t in threads:
        t.join()
    assert fifth.status_code == 429 and code(fifth) == "ApplicationThrottled"
    assert int(fifth.headers["Retry-After"]) >= 1
    assert [r.status_code for r in results] == [200] * 4
    # Other mailboxes are unaffected by one mailbox's concurrency.
    assert app.get(f"/users/{tenant.upn('room1')}/calendar").status_code == 200


def test_injected_error_rate(tenant: Tenant) -> None:
    tenant.emu.control.post(
        "graph/faults",
        json={"method": "POST", "path": "/me/events", "status": 503, "retryAfter": 2},
    )
    r = tenant.as_user("alice").post("/me/events", json=event_body(day(1)))
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"


def test_a_fault_after_the_operation_loses_only_the_answer(tenant: Tenant) -> None:
    """`after: true`: the create happens, its answer is the fault (a lost response); a replay of
    the transactionId finds the event until the emulator is told to forget transactionIds."""
    alice = tenant.as_user("alice")
    body = event_body(day(5), transactionId=str(uuid.uuid4()))
    tenant.emu.control.post(
        "graph/faults",
        json={"method": "POST", "path": "/me/events", "status": 504, "after": True, "count": 1},
    )
    try:
        lost = alice.post("/me/events", json=body)
        assert lost.status_code == 504 and code(lost) == "GatewayTimeout"
        [made] = alice.get("/me/events").json()["value"]
        again = alice.post("/me/events", json=body)
        assert again.status_code == 201 and again.json()["id"] == made["id"]
    finally:
        tenant.emu.control.delete("graph/faults")
    forgot = tenant.emu.control.post("graph/transactions/forget", json={})
    assert forgot.status_code == 200 and forgot.json()["forgotten"] >= 1
    late = alice.post("/me/events", json=body)
    assert late.status_code == 201 and late.json()["id"] != made["id"]
    assert len(alice.get("/me/events").json()["value"]) == 2


# ----------------------------------------------------------------------------- subscriptions
def test_subscription_rules(tenant: Tenant, sink: Sink) -> None:
    now = emu_now(tenant.emu)
    alice = tenant.as_user("alice")
    # Delegated on another mailbox → 403 (even a mailbox shared with the user).
    bob = tenant.as_user("bob", [*SHARED])
    r = subscribe(bob, f"/users/{tenant.upn('alice')}/events", sink, now=now)
    assert r.status_code == 403
    # Write-only delegated grant → 403: subscriptions need Calendars.Read.
    writer = tenant.as_user("alice", ["Calendars.ReadWrite"])
    assert subscribe(writer, "/me/events", sink, now=now).status_code == 403
    r = subscribe(alice, "/me/events", sink, minutes=4231, now=now)
    assert r.status_code == 400 and code(r) == "ExtensionError"
    assert "4230 minutes" in r.json()["error"]["message"]
    r = subscribe(alice, "/me/calendars", sink, now=now)
    assert r.status_code == 400 and code(r) == "ExtensionError"
    assert subscribe(alice, "/me/calendars/x/events", sink, now=now).status_code == 400
    assert subscribe(alice, "/me/events", sink, now=now, clientState="x" * 129).status_code == 400
    for mode in ("bad-echo", "json-echo"):
        sink.mode = mode
        r = subscribe(alice, "/me/events", sink, now=now)
        assert r.status_code == 400 and code(r) == "InvalidRequest"
        assert "exactly match" in r.json()["error"]["message"]
    sink.mode = "ok"
    dead = subscribe(
        alice, "/me/events", sink, now=now, notificationUrl="http://127.0.0.1:9/nothing"
    )
    assert (
        dead.status_code == 400 and "validation request failed" in dead.json()["error"]["message"]
    )
    before = sink.validations
    ok = subscribe(alice, "/me/events", sink, minutes=4229, now=now)
    assert ok.status_code == 201, ok.text
    assert sink.validations == before + 2  # notificationUrl and lifecycleNotificationUrl
    sub = ok.json()
    # Renew, reauthorize, list (only the app's), delete.
    later = (now + dt.timedelta(minutes=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (
        alice.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later}).status_code
        == 200
    )
    assert alice.post(f"/subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert [s["id"] for s in alice.get("/subscriptions").json()["value"]] == [sub["id"]]
    other_app = tenant.client(tenant.token("alice", app="scoped"))
    assert other_app.get("/subscriptions").json()["value"] == []
    assert other_app.get(f"/subscriptions/{sub['id']}").status_code == 404
    assert alice.delete(f"/subscriptions/{sub['id']}").status_code == 204
    assert alice.get(f"/subscriptions/{sub['id']}").status_code == 404


def test_notification_delivered_within_one_second(tenant: Tenant, sink: Sink) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    resource = f"/users/{tenant.uid('alice')}/events"
    sub = subscribe(app, resource, sink, now=emu_now(tenant.emu)).json()
    started = time.monotonic()
    ev = tenant.as_user("alice").post("/me/events", json=event_body(day(2))).json()
    # The deadline counts from before the event was created.
    left = 1.0 - (time.monotonic() - started)
    got = wait_for(lambda: [i for i in sink.items() if i.get("changeType") == "created"], left)
    assert got, "no notification"
    item = got[0]
    assert item["subscriptionId"] == sub["id"] and item["clientState"] == "s3cret-state"
    assert item["resource"] == f"Users/{tenant.uid('alice')}/Events/{ev['id']}"
    assert item["resourceData"]["id"] == ev["id"] and item["tenantId"] == tenant.id
    assert item["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
    # Control-API (Outlook user) changes notify too; deletes as well.
    tenant.emu.control.post(f"graph/users/{tenant.upn('alice')}/events", json=event_body(day(3)))
    app.delete(f"{resource}/{ev['id']}")
    assert wait_for(lambda: {i["changeType"] for i in sink.items()} >= {"created", "deleted"})
    stats = tenant.emu.control.get("graph/stats").json()
    assert stats["notifications"]["delivered"] >= 3 and stats["requests"]["total"] > 0


def test_failed_deliveries_retried_and_lifecycle(tenant: Tenant, sink: Sink) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    sub = subscribe(app, f"/users/{tenant.uid('bob')}/events", sink, now=emu_now(tenant.emu)).json()
    sink.mode = "fail"
    tenant.emu.control.post(f"graph/users/{tenant.upn('bob')}/events", json=event_body(day(2)))
    wait_for(lambda: sink.received, 4.0)  # the first delivery, refused
    sink.mode = "ok"
    assert wait_for(lambda: len(sink.received) >= 2, 4.0)  # the failed POST came again
    for event in ("reauthorizationRequired", "missed"):
        r = tenant.emu.control.post(
            f"graph/subscriptions/{sub['id']}/lifecycle", json={"event": event}
        )
        assert r.status_code == 202
    tenant.emu.control.post(
        f"graph/subscriptions/{sub['id']}/lifecycle", json={"event": "subscriptionRemoved"}
    )
    assert wait_for(
        lambda: (
            {i.get("lifecycleEvent") for i in sink.items()}
            >= {"reauthorizationRequired", "missed", "subscriptionRemoved"}
        )
    )
    assert app.get(f"/subscriptions/{sub['id']}").status_code == 404
