"""Where the Graph emulator answers as Graph does, beyond refusing what Graph refuses (issue 18).

Each test is one behaviour Microsoft documents (the page is named) that a lenient fake would get
wrong in a way client code could come to rely on: enum casing, bodies as Exchange stores them,
id validation, OData annotations, `$batch` inner headers, notification formats, https-only
notification URLs, the room attendant's rewriting of its copy.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from devstack.m365.graph.config import GraphConfig
from tests.integration.graph_fixtures import (
    SCENARIO,
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

__all__ = ["graph_emu", "sink", "tenant"]  # fixtures used by name below

WELL_FORMED_UNKNOWN = (
    "AAMkAGVmMDEzMTM4LTZmYWUtNDdkNC1hMDZiLTU1OGY5OTZhYmY4OABGAAAAAAAiQ8W967B7TKBjgx9rVEURBwAiIsqM"
    "bYjsT5e-T7KzowPTAAAAAAENAAAiIsqMbYjsT5e-T7KzowPTAAAa_WKzAAA="
)
SEVEN_DIGITS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


def code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


# user-post-events.md's request, as Microsoft's page sends it (enum values capitalised).
def documented_event(tenant: Tenant, start: Any) -> dict[str, Any]:
    return {
        "subject": "Let's go for lunch",
        "body": {"contentType": "HTML", "content": "Does noon work for you?"},
        "start": dttz(start, "Pacific Standard Time"),
        "end": dttz(start.replace(hour=start.hour + 1), "Pacific Standard Time"),
        "location": {"displayName": "Harry's Bar", "locationType": "Default"},
        "attendees": [
            {
                "emailAddress": {"address": tenant.upn("bob"), "name": "Bob Brown"},
                "type": "Required",
            }
        ],
        "showAs": "Busy",
        "importance": "Normal",
        "allowNewTimeProposals": True,
    }


def test_enum_values_are_case_insensitive_and_come_back_canonical(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    r = alice.post("/me/events", json=documented_event(tenant, day(3, 12)))
    assert r.status_code == 201, r.text
    ev = r.json()
    assert ev["body"]["contentType"] == "html"
    assert ev["attendees"][0]["type"] == "required"
    assert ev["location"]["locationType"] == "default"
    assert (ev["showAs"], ev["importance"]) == ("busy", "normal")
    weekly = event_body(
        day(4, 9),
        recurrence={
            "pattern": {"type": "Weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "NoEnd", "startDate": day(4).date().isoformat()},
        },
    )
    r = alice.post("/me/events", json=weekly)
    assert r.status_code == 201, r.text
    assert r.json()["recurrence"]["pattern"]["type"] == "weekly"
    # Still strict: a value that is no member in any casing is refused.
    bad = alice.post("/me/events", json={**event_body(day(3, 15)), "showAs": "sleeping"})
    assert bad.status_code == 400


def test_html_bodies_as_exchange_stores_them_and_text_on_request(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    html_ev = alice.post("/me/events", json=documented_event(tenant, day(3, 9))).json()
    content = html_ev["body"]["content"]
    assert content.startswith("<html>") and "<body>" in content
    assert "Does noon work for you?" in content and content.rstrip().endswith("</html>")
    assert html_ev["bodyPreview"] == "Does noon work for you?"
    prefer = {"Prefer": 'outlook.body-content-type="text"'}
    r = alice.get(f"/me/events/{html_ev['id']}", headers=prefer)
    assert r.json()["body"] == {"contentType": "text", "content": "Does noon work for you?"}
    assert r.headers["Preference-Applied"] == 'outlook.body-content-type="text"'
    both = {"Prefer": 'outlook.timezone="UTC", outlook.body-content-type="text"'}
    r = alice.get(f"/me/events/{html_ev['id']}", headers=both)
    assert "outlook.body-content-type" in r.headers["Preference-Applied"]
    assert "outlook.timezone" in r.headers["Preference-Applied"]
    # Without the header, bodies come back as HTML (event-get.md): a text body too.
    text_ev = alice.post(
        "/me/events",
        json=event_body(day(3, 14), body={"contentType": "text", "content": "a < b\nsecond"}),
    ).json()
    assert text_ev["body"]["contentType"] == "html"
    assert "a &lt; b<br>" in text_ev["body"]["content"]
    r = alice.get(f"/me/events/{text_ev['id']}", headers=prefer)
    assert r.json()["body"] == {"contentType": "text", "content": "a < b\nsecond"}
    assert "Preference-Applied" not in alice.get(f"/me/events/{text_ev['id']}").headers


def test_malformed_ids_are_400_unknown_ids_404(tenant: Tenant) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    base = f"/users/{tenant.upn('alice')}"
    for bad in ("not-an-id", "AAMkAGnotthere", "1234"):
        r = app.get(f"{base}/events/{bad}")
        assert (r.status_code, code(r)) == (400, "ErrorInvalidIdMalformed"), bad
        assert r.json()["error"]["message"] == "Id is malformed."
    r = app.patch(f"{base}/events/nope", json={"subject": "x"})
    assert (r.status_code, code(r)) == (400, "ErrorInvalidIdMalformed")
    r = app.get(f"{base}/calendars/nope/events")
    assert (r.status_code, code(r)) == (400, "ErrorInvalidIdMalformed")
    r = app.get(f"{base}/events/{WELL_FORMED_UNKNOWN}")
    assert (r.status_code, code(r)) == (404, "ErrorItemNotFound")
    r = app.delete(f"{base}/events/{WELL_FORMED_UNKNOWN}")
    assert (r.status_code, code(r)) == (404, "ErrorItemNotFound")


def test_odata_annotations_as_graph_sends_them(tenant: Tenant, sink: Sink) -> None:
    alice = tenant.as_user("alice")
    ev = alice.post("/me/events", json=event_body(day(2, 9))).json()
    uid = tenant.uid("alice")
    got = alice.get(f"/me/events/{ev['id']}").json()
    assert got["@odata.context"].endswith(f"/$metadata#users('{uid}')/events/$entity")
    sel = alice.get(f"/me/events/{ev['id']}", params={"$select": "subject,body"}).json()
    assert sel["@odata.context"].endswith(f"#users('{uid}')/events(subject,body)/$entity")
    patched = alice.patch(f"/me/events/{ev['id']}", json={"subject": "Renamed"}).json()
    assert patched["@odata.context"].endswith("/events/$entity")
    cal = alice.get("/me/calendar").json()
    assert cal["@odata.context"].endswith(f"#users('{uid}')/calendar")
    one = alice.get(f"/me/calendars/{cal['id']}").json()
    assert one["@odata.context"].endswith(f"#users('{uid}')/calendars/$entity")
    page = alice.get("/me/calendarView/delta", params=view_params(day(1), day(4))).json()
    assert page["value"] and all(
        i["@odata.type"] == "#microsoft.graph.event" for i in page["value"]
    )
    sub = subscribe(alice, "/me/events", sink, now=emu_now(tenant.emu))
    assert sub.status_code == 201, sub.text
    assert sub.json()["notificationContentType"] == "application/json"
    assert SEVEN_DIGITS_Z.match(sub.json()["expirationDateTime"])


def test_notification_times_have_seven_digits_and_z(tenant: Tenant, sink: Sink) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    resource = f"/users/{tenant.uid('alice')}/events"
    assert subscribe(app, resource, sink, now=emu_now(tenant.emu)).status_code == 201
    app.post(resource, json=event_body(day(2, 11)))
    assert wait_for(lambda: sink.items())
    stamp = sink.items()[0]["subscriptionExpirationDateTime"]
    # change-notifications-lifecycle-events.md shows "2019-03-20T11:00:00.0000000Z".
    assert SEVEN_DIGITS_Z.match(stamp), stamp


def test_batch_inner_responses_carry_graphs_headers(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    reqs = [
        {"id": "1", "method": "GET", "url": "/me/calendar"},
        {"id": "2", "method": "GET", "url": f"/me/events/{WELL_FORMED_UNKNOWN}"},
        {"id": "3", "method": "GET", "url": f"{tenant.emu.graph_url}/me/calendar"},
    ]
    r = alice.post("/$batch", json={"requests": reqs})
    assert r.status_code == 200
    out = {x["id"]: x for x in r.json()["responses"]}
    ok = out["1"]["headers"]
    assert out["1"]["status"] == 200 and ok["OData-Version"] == "4.0"
    assert ok["Cache-Control"] == "no-cache"
    assert ok["Content-Type"].startswith("application/json;odata.metadata=minimal")
    assert out["2"]["status"] == 404
    assert out["2"]["headers"]["Content-Type"] == "application/json"
    # An absolute URL is one failed request (msgraph-sdk-python#1015), not a failed batch.
    assert out["3"]["status"] == 400 and out["3"]["body"]["error"]["code"] == "BadRequest"


def test_get_schedule_takes_metadata_casing_and_a_string_interval(tenant: Tenant) -> None:
    alice = tenant.as_user("alice")
    alice.post("/me/events", json=event_body(day(2, 10), 30))
    # outlook-get-free-busy-schedule.md sends "availabilityViewInterval": "15".
    body = {
        "Schedules": [tenant.upn("alice")],
        "StartTime": dttz(day(2, 9)),
        "EndTime": dttz(day(2, 11)),
        "availabilityViewInterval": "15",
    }
    r = alice.post("/me/calendar/getSchedule", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["value"][0]["availabilityView"] == "00002200"
    r = alice.post("/me/calendar/getSchedule", json={**body, "availabilityViewInterval": "x"})
    assert r.status_code == 400


def test_notification_urls_must_be_https_unless_loopback_is_allowed(
    tenant: Tenant, sink: Sink
) -> None:
    assert GraphConfig().allow_http_loopback is False  # the default, without an opt-in
    app = tenant.as_app(["Calendars.ReadWrite"])
    resource = f"/users/{tenant.uid('alice')}/events"
    control = tenant.emu.control
    assert control.get("graph/config").json()["allowHttpLoopback"] is True  # this suite opted in
    control.post("graph/config", json={"allowHttpLoopback": False})
    try:
        r = subscribe(app, resource, sink, now=emu_now(tenant.emu))
        assert r.status_code == 400 and sink.validations == 0
    finally:
        control.post("graph/config", json={"allowHttpLoopback": True})


def test_room_attendant_rewrites_its_copy_per_processing_settings(graph_emu: Any) -> None:
    scenario = {
        **SCENARIO,
        "tenants": [
            {
                **SCENARIO["tenants"][0],
                "users": [
                    *SCENARIO["tenants"][0]["users"],
                    {
                        "mailNickname": "room3",
                        "displayName": "Room Three",
                        "type": "room",
                        "room": {"capacity": 6, "deleteSubject": False, "deleteComments": False},
                    },
                ],
            }
        ],
    }
    t = Tenant(graph_emu, graph_emu.seed_scenario(scenario, fresh=True))
    try:
        alice = t.as_user("alice")
        app = t.as_app(["Calendars.Read"])
        for room, minute in (("room1", 0), ("room3", 30)):
            invite = {"emailAddress": {"address": t.upn(room)}, "type": "resource"}
            body = event_body(
                day(6, 9, minute),
                20,
                subject="Board strategy",
                body={"contentType": "html", "content": "<p>secret agenda</p>"},
                attendees=[invite],
            )
            assert alice.post("/me/events", json=body).status_code == 201

        def room_copy(room: str) -> dict[str, Any] | None:
            items = app.get(f"/users/{t.upn(room)}/calendar/events").json()["value"]
            return items[0] if items else None

        assert wait_for(lambda: room_copy("room1") and room_copy("room3"))
        default_room = room_copy("room1")
        assert default_room is not None
        # Exchange Online defaults: AddOrganizerToSubject and DeleteSubject → the organizer's name;
        # DeleteComments → no body.
        assert default_room["subject"] == "Alice Adams"
        assert "secret agenda" not in default_room["body"]["content"]
        kept = room_copy("room3")
        assert kept is not None and kept["subject"] == "Alice Adams Board strategy"
        assert "secret agenda" in kept["body"]["content"]
        # The organizer's own copy keeps its subject.
        mine = alice.get("/me/events").json()["value"]
        assert {e["subject"] for e in mine} == {"Board strategy"}
    finally:
        for c in t.clients:
            c.close()
