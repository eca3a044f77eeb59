"""Bookings end to end: the HTTP API on the local Functions host, written through to the Graph
emulator's room calendars, the outbox worker driven by the host's queue trigger.

One stack for the module (fast outbox retries) and one connected building whose three resources
are mapped to the demo rooms; each test books on its own days so tests never see each other's
bookings. Faults are injected through the emulator's control API and cleared by the test.
"""

# ruff: noqa: F811 - pytest fixtures imported from booking_fixtures are parameters here
from __future__ import annotations

import ssl
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient

from devstack.stack import Stack
from shared.availability.busy import BOOKING_PROPERTY_ID, BusyBlock, BusyStore, transaction_id
from tests.e2e.booking_fixtures import (  # noqa: F401 - fixtures
    Booked,
    add_fault,
    banon,
    bapi,
    bbrowser,
    booked_building,
    bstack,
    clear_faults,
    graph_stats,
    outlook_events,
)
from tests.e2e.connect_fixtures import mint_api_token
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

ZONE = zoneinfo.ZoneInfo("Europe/Amsterdam")
# Far enough ahead that nothing is in the past, near enough for the 730-day booking horizon.
FIRST_DAY = (datetime.now(ZONE) + timedelta(days=10)).date()
BOARD, HUDDLE, FOCUS = "r-boardroom4a", "r-huddle4b", "r-focus3c"
EVENT_PATH = "/users/*/calendars/*/events*"


def at(day: int, clock: str) -> str:
    """Local wall time on test day `day` in the resources' zone, as RFC 3339 with its offset."""
    hour, minute = (int(x) for x in clock.split(":"))
    local = datetime(
        FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, hour, minute, tzinfo=ZONE
    ) + timedelta(days=day)
    return local.isoformat()


def z(day: int, clock: str) -> str:
    """The same instant as `at`, as the API answers it (UTC `Z`)."""
    return datetime.fromisoformat(at(day, clock)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def booking_body(resource: str, day: int, start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceId": resource,
        "start": at(day, start),
        "end": at(day, end),
        "title": "Quarterly planning",
        "booker": {"email": "ann@fabrikam.example", "name": "Ann Archer"},
        **extra,
    }


@pytest.fixture(scope="module")
def bb(bstack: Stack, bapi: httpx.Client, banon: httpx.Client, bbrowser: httpx.Client) -> Booked:
    return booked_building(bstack, bapi, banon, bbrowser)


@pytest.fixture
def faults(bstack: Stack) -> Iterator[Callable[..., None]]:
    def add(**rule: Any) -> None:
        add_fault(bstack, **rule)

    try:
        yield add
    finally:
        clear_faults(bstack)


def ours(stack: Stack, bb: Booked, resource: str, booking_id: str) -> list[dict[str, Any]]:
    """The events of one booking in its room's mailbox (by our transactionId)."""
    return [
        e
        for e in outlook_events(stack, bb.mailbox(resource), bb.tenant)
        if e.get("transactionId") == transaction_id(booking_id)
    ]


def create(api: httpx.Client, bb: Booked, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(f"buildings/{bb.building}/bookings", json=body, headers=headers)


def get(api: httpx.Client, bb: Booked, booking_id: str) -> dict[str, Any]:
    response = api.get(f"buildings/{bb.building}/bookings/{booking_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def graph_client(stack: Stack, bb: Booked) -> httpx.Client:
    """Microsoft Graph (the emulator) as the app itself, with an app token of the tenant."""
    token = stack.emulator.control.post(
        "graph/token",
        json={"tenantId": bb.tenant["id"], "clientId": stack.settings["BB_CLIENT_ID"],
              "roles": ["Calendars.ReadWrite"]},
    )  # fmt: skip
    token.raise_for_status()
    return httpx.Client(
        base_url=stack.endpoints["graphBaseUrl"],
        verify=ssl.create_default_context(cafile=stack.endpoints["caBundle"]),
        trust_env=False,
        timeout=30,
        headers={
            "Authorization": f"Bearer {token.json()['access_token']}",
            "Prefer": 'IdType="ImmutableId"',
        },
    )


def graph_events_by_marker(stack: Stack, bb: Booked, resource: str, booking_id: str) -> list[str]:
    """Events of the mapped calendar carrying our extended property with this booking id, read
    through Graph itself (the property only comes back through $filter / $expand)."""
    with graph_client(stack, bb) as graph:
        response = graph.get(
            f"/users/{bb.mailbox(resource)}/calendars/{bb.calendars[resource]}/events",
            params={
                "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq "
                f"'{BOOKING_PROPERTY_ID}' and ep/value eq '{booking_id}')"
            },
        )
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["value"]]


# ---------------------------------------------------------------- write-through


def test_a_booking_is_written_moved_and_cancelled_on_the_mapped_calendar(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    created = create(bapi, bb, booking_body(BOARD, 0, "09:00", "10:00"))
    assert created.status_code == 201, created.text
    booking = created.json()
    assert booking["status"] == "confirmed" and booking["syncState"] == "synced"
    assert (booking["start"], booking["end"]) == (z(0, "09:00"), z(0, "10:00"))
    assert created.headers["Location"].endswith(f"/bookings/{booking['id']}")

    [event] = ours(bstack, bb, BOARD, booking["id"])
    assert event["originalStartTimeZone"] == "Europe/Amsterdam"
    assert event["start"]["dateTime"].startswith(z(0, "09:00")[:19])  # stored in UTC
    assert event["end"]["dateTime"].startswith(z(0, "10:00")[:19])
    assert event["subject"] == "Board Room 4A – Ann Archer"  # not the title, not the address
    assert event["attendees"] == [] and event["showAs"] == "busy"
    assert event["location"]["displayName"] == "Board Room 4A"
    assert "BookingBridge" in event["body"]["content"]
    # The marker sync relies on: the extended property names the booking, on exactly this event.
    assert graph_events_by_marker(bstack, bb, BOARD, booking["id"]) == [booking["outlookEventId"]]
    # GET shows what POST answered, plus its attendance (none: nobody checked in, not started).
    assert get(bapi, bb, booking["id"]) == {**booking, "attendance": None}

    moved = bapi.patch(
        f"buildings/{bb.building}/bookings/{booking['id']}",
        json={"start": at(0, "11:00"), "end": at(0, "12:30")},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["syncState"] == "synced" and moved.json()["start"] == z(0, "11:00")
    [event] = ours(bstack, bb, BOARD, booking["id"])
    assert event["start"]["dateTime"].startswith(z(0, "11:00")[:19])
    assert event["end"]["dateTime"].startswith(z(0, "12:30")[:19])
    # The old slot is free again, the new one is taken (by this booking, with provenance).
    shown = bapi.get(
        f"buildings/{bb.building}/availability",
        params={"from": at(0, "08:00"), "to": at(0, "13:00"), "resourceId": BOARD},
    ).json()
    assert shown["resources"][0]["busy"] == [
        {"start": z(0, "11:00"), "end": z(0, "12:30"), "source": "platform",
         "bookingId": booking["id"], "companyId": None, "showAs": "busy", "detail": "booking"}
    ]  # fmt: skip
    again = create(bapi, bb, booking_body(BOARD, 0, "09:00", "10:00"))
    assert again.status_code == 201, again.text

    cancelled = bapi.delete(f"buildings/{bb.building}/bookings/{booking['id']}")
    assert cancelled.status_code == 204, cancelled.text
    assert ours(bstack, bb, BOARD, booking["id"]) == []
    after = get(bapi, bb, booking["id"])
    assert after["status"] == "cancelled" and after["syncState"] == "synced"
    assert bapi.delete(f"buildings/{bb.building}/bookings/{booking['id']}").status_code == 204
    refused = bapi.patch(
        f"buildings/{bb.building}/bookings/{booking['id']}", json={"title": "again"}
    )
    assert refused.status_code == 409 and refused.json()["reason"] == "booking_cancelled"
    # Its slot went with it.
    rebooked = create(bapi, bb, booking_body(BOARD, 0, "11:00", "12:00"))
    assert rebooked.status_code == 201, rebooked.text


def test_if_match_on_a_booking_moves_only_the_version_read(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    """ETag on GET and PATCH; a PATCH or DELETE naming an older version is 412 and changes
    nothing, in the platform or in Outlook (issue 22)."""
    created = create(bapi, bb, booking_body(HUDDLE, 11, "09:00", "10:00"))
    assert created.status_code == 201, created.text
    path = f"buildings/{bb.building}/bookings/{created.json()['id']}"
    read = bapi.get(path)
    first = read.headers["ETag"]
    assert first.startswith('"') and first.endswith('"'), first

    moved = bapi.patch(path, json={"start": at(11, "10:00"), "end": at(11, "11:00")},
                       headers={"If-Match": first})  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert moved.headers["ETag"] not in (first, None)
    assert bapi.get(path).headers["ETag"] == moved.headers["ETag"]  # what the PATCH left stored

    stale = bapi.patch(path, json={"title": "stale"}, headers={"If-Match": first})
    assert stale.status_code == 412 and stale.json()["reason"] == "precondition_failed"
    refused = bapi.delete(path, headers={"If-Match": first})
    assert refused.status_code == 412, refused.text
    kept = get(bapi, bb, created.json()["id"])
    assert (kept["status"], kept["title"], kept["start"]) == (
        "confirmed", "Quarterly planning", z(11, "10:00"),
    )  # fmt: skip
    [event] = ours(bstack, bb, HUDDLE, kept["id"])
    assert event["start"]["dateTime"].startswith(z(11, "10:00")[:19])

    current = bapi.get(path).headers["ETag"]
    assert bapi.delete(path, headers={"If-Match": current}).status_code == 204
    assert ours(bstack, bb, HUDDLE, kept["id"]) == []


def test_a_repeated_idempotency_key_gives_one_booking_and_one_event(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    key = f"order-{uuid.uuid4().hex}"
    body = booking_body(HUDDLE, 1, "14:00", "15:00")
    first = create(bapi, bb, body, key)
    second = create(bapi, bb, body, key)
    assert first.status_code == second.status_code == 201, second.text
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.json()["id"] == first.json()["id"]
    assert len(ours(bstack, bb, HUDDLE, first.json()["id"])) == 1
    listed = bapi.get(
        f"buildings/{bb.building}/bookings",
        params={"from": at(1, "00:00"), "to": at(2, "00:00"), "source": "platform"},
    ).json()["value"]
    assert [b["id"] for b in listed] == [first.json()["id"]]
    # The same key for another booking is a client bug, not a replay.
    reused = create(bapi, bb, {**body, "title": "Something else"}, key)
    assert reused.status_code == 422 and reused.json()["reason"] == "idempotency_key_reused"


def test_twenty_concurrent_requests_for_one_slot_exactly_one_wins(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    bodies = [booking_body(FOCUS, 2, "10:00", f"11:{i:02d}") for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda b: create(bapi, bb, b, uuid.uuid4().hex), bodies))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses if r.status_code >= 500]
    assert all(r.json()["reason"] == "slot_taken" for r in responses if r.status_code == 409)
    [winner] = [r.json() for r in responses if r.status_code == 201]
    assert winner["syncState"] == "synced"
    day_events = [
        e
        for e in outlook_events(bstack, bb.mailbox(FOCUS), bb.tenant)
        if e["start"]["dateTime"].startswith(z(2, "10:00")[:10])
    ]
    assert [e["transactionId"] for e in day_events] == [transaction_id(winner["id"])]
    busy = bapi.get(
        f"buildings/{bb.building}/availability",
        params={"from": at(2, "00:00"), "to": at(3, "00:00"), "resourceId": FOCUS},
    ).json()["resources"][0]["busy"]
    assert [b["bookingId"] for b in busy] == [winner["id"]]


def test_an_outlook_event_blocks_the_slot_even_before_sync(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    made = bstack.emulator.control.post(
        f"users/{bb.mailbox(BOARD)}/events",
        params={"tenant": bb.tenant["id"]},
        json={"subject": "Walk-in", "showAs": "busy",
              "start": {"dateTime": z(3, "13:00")[:19], "timeZone": "UTC"},
              "end": {"dateTime": z(3, "14:00")[:19], "timeZone": "UTC"}},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    taken = create(bapi, bb, booking_body(BOARD, 3, "13:30", "14:30"))
    assert taken.status_code == 409, taken.text
    assert taken.json()["reason"] == "slot_taken"
    touching = create(bapi, bb, booking_body(BOARD, 3, "14:00", "15:00"))
    assert touching.status_code == 201, touching.text
    # A free-as-status Outlook event does not block.
    bstack.emulator.control.post(
        f"users/{bb.mailbox(BOARD)}/events",
        params={"tenant": bb.tenant["id"]},
        json={"subject": "FYI", "showAs": "free",
              "start": {"dateTime": z(3, "16:00")[:19], "timeZone": "UTC"},
              "end": {"dateTime": z(3, "17:00")[:19], "timeZone": "UTC"}},
    ).raise_for_status()  # fmt: skip
    assert create(bapi, bb, booking_body(BOARD, 3, "16:00", "17:00")).status_code == 201


def test_an_outlook_booking_made_between_our_claim_and_our_post_wins(
    bstack: Stack, bapi: httpx.Client, bb: Booked, faults: Callable[..., None]
) -> None:
    """The window the create's check after its POST covers (issue 17): the busy table has our
    claim, sync knows nothing of the Outlook booking, our POST is on its way. Outlook's event was
    created first, so ours is deleted, the slot released, and the caller gets 409."""
    mailbox = bb.mailbox(HUDDLE)
    # Our POST is held for 1.5 s once it reached Graph (after the claim: the claim comes first).
    faults(method="POST", path=EVENT_PATH, mailbox=mailbox, latencyMs=1500, count=1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        ours_pending = pool.submit(create, bapi, bb, booking_body(HUDDLE, 12, "10:00", "11:00"))

        def post_arrived() -> bool:
            rules = bstack.emulator.control.get("graph/faults").json()["rules"]
            return any(r["fired"] for r in rules)

        wait_for(post_arrived, timeout=60, what="our POST at the emulator")
        walk_in = bstack.emulator.control.post(
            f"users/{mailbox}/events",
            params={"tenant": bb.tenant["id"]},
            json={"subject": "Walk-in", "showAs": "busy",
                  "start": {"dateTime": z(12, "10:30")[:19], "timeZone": "UTC"},
                  "end": {"dateTime": z(12, "11:30")[:19], "timeZone": "UTC"}},
        )  # fmt: skip
        assert walk_in.status_code == 201, walk_in.text
        ours = ours_pending.result(timeout=120)
    assert ours.status_code == 409, ours.text
    assert ours.json()["reason"] == "slot_taken"
    # In Outlook: the walk-in stands, and nothing of ours is left on that day.
    day_events = [
        e
        for e in outlook_events(bstack, mailbox, bb.tenant)
        if e["start"]["dateTime"].startswith(z(12, "10:00")[:10])
    ]
    assert [(e["id"], e.get("transactionId")) for e in day_events] == [(walk_in.json()["id"], None)]
    # In the platform: no booking, and the slot holds only the walk-in once sync brings it in.
    window = {"from": at(12, "00:00"), "to": at(13, "00:00")}
    listed = bapi.get(
        f"buildings/{bb.building}/bookings", params={**window, "source": "platform"}
    ).json()["value"]
    assert listed == []

    def busy() -> list[dict[str, Any]]:
        answer = bapi.get(
            f"buildings/{bb.building}/availability", params={**window, "resourceId": HUDDLE}
        )
        blocks: list[dict[str, Any]] = answer.json()["resources"][0]["busy"]
        return blocks

    wait_for(lambda: [b["source"] for b in busy()] == ["outlook"], timeout=30, what="the walk-in")
    # The free hour after the walk-in is bookable: nothing of the rejected booking holds it.
    assert create(bapi, bb, booking_body(HUDDLE, 12, "11:30", "12:30")).status_code == 201


def test_a_create_makes_two_graph_requests(bstack: Stack, bapi: httpx.Client, bb: Booked) -> None:
    """The POST and the check after it (issue 17): no calendarView before the write."""
    before = graph_stats(bstack)["requests"]["byEndpoint"]
    made = create(bapi, bb, booking_body(BOARD, 12, "09:00", "10:00"))
    assert made.status_code == 201 and made.json()["syncState"] == "synced", made.text
    after = graph_stats(bstack)["requests"]["byEndpoint"]
    booking_endpoints = (
        "GET /users/{id}/calendars/{id}/calendarView",
        "POST /users/{id}/calendars/{id}/events",
    )
    assert {k: after.get(k, 0) - before.get(k, 0) for k in booking_endpoints} == dict.fromkeys(
        booking_endpoints, 1
    )


# ---------------------------------------------------------------- failures never lose a booking


def test_graph_outage_bookings_are_pending_and_all_reach_synced(
    bstack: Stack, bapi: httpx.Client, bb: Booked, faults: Callable[..., None]
) -> None:
    faults(path=EVENT_PATH, status=503)  # every event read and write of every mailbox
    made = {}
    for name, (resource, start, end) in {
        "a": (BOARD, "08:00", "09:00"),
        "b": (HUDDLE, "08:00", "09:00"),
        "c": (FOCUS, "08:00", "09:00"),
        "moved": (BOARD, "10:00", "11:00"),
        "cancelled": (HUDDLE, "10:00", "11:00"),
    }.items():
        response = create(bapi, bb, booking_body(resource, 4, start, end))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["syncState"] == "pending" and body["outlookEventId"] is None
        assert body["lastError"]["reason"] == "graph_unavailable" and body["attempts"] == 1
        made[name] = body
    # Update and cancel go through the same outbox while the create is still pending.
    moved = bapi.patch(
        f"buildings/{bb.building}/bookings/{made['moved']['id']}",
        json={"start": at(4, "12:00"), "end": at(4, "13:00")},
    )
    assert moved.status_code == 200 and moved.json()["syncState"] == "pending", moved.text
    gone = bapi.delete(f"buildings/{bb.building}/bookings/{made['cancelled']['id']}")
    assert gone.status_code == 204
    # The worker keeps trying while Graph is down (backoff 1 s, 2 s, 2 s, ...).
    wait_for(lambda: get(bapi, bb, made["a"]["id"])["attempts"] >= 3, 20, "outbox retries")
    assert get(bapi, bb, made["a"]["id"])["syncState"] == "pending"
    clear_faults(bstack)

    def all_synced() -> bool:
        return all(get(bapi, bb, b["id"])["syncState"] == "synced" for b in made.values())

    wait_for(all_synced, 30, "every booking synced after the outage")
    for name in ("a", "b", "c", "moved"):
        booking = get(bapi, bb, made[name]["id"])
        [event] = ours(bstack, bb, booking["resourceId"], booking["id"])
        assert booking["outlookEventId"] and booking["lastError"] is None
        assert event["start"]["dateTime"].startswith(booking["start"][:19])
    assert get(bapi, bb, made["moved"]["id"])["start"] == z(4, "12:00")
    assert ours(bstack, bb, HUDDLE, made["cancelled"]["id"]) == []
    assert get(bapi, bb, made["cancelled"]["id"])["status"] == "cancelled"


def test_a_create_whose_answer_was_lost_stays_one_event(
    bstack: Stack, bapi: httpx.Client, bb: Booked, faults: Callable[..., None]
) -> None:
    """The first POST reached Outlook but its answer was lost, and the booking moved meanwhile:
    the retry's transactionId is refused as a duplicate (other payload), so the worker finds the
    event by our extended property and updates it instead of creating a second one."""
    faults(method="POST", path=EVENT_PATH, status=503)
    booking = create(bapi, bb, booking_body(FOCUS, 9, "09:00", "10:00")).json()
    assert booking["syncState"] == "pending"
    moved = bapi.patch(
        f"buildings/{bb.building}/bookings/{booking['id']}",
        json={"start": at(9, "11:00"), "end": at(9, "12:00")},
    )
    assert moved.status_code == 200
    # What the lost first attempt wrote (the original times, our marker), written past the fault
    # through the emulator's control API, which creates events exactly as Graph does.
    lost = bstack.emulator.control.post(
        f"users/{bb.mailbox(FOCUS)}/events",
        params={"tenant": bb.tenant["id"]},
        json={
            "calendarId": bb.calendars[FOCUS],
            "subject": "Focus 3C – Ann Archer",
            "start": {"dateTime": z(9, "09:00")[:19], "timeZone": "UTC"},
            "end": {"dateTime": z(9, "10:00")[:19], "timeZone": "UTC"},
            "transactionId": transaction_id(booking["id"]),
            "singleValueExtendedProperties": [{"id": BOOKING_PROPERTY_ID, "value": booking["id"]}],
        },
    )
    assert lost.status_code == 201, lost.text
    clear_faults(bstack)
    wait_for(lambda: get(bapi, bb, booking["id"])["syncState"] == "synced", 20, "synced")
    [event] = ours(bstack, bb, FOCUS, booking["id"])
    assert event["start"]["dateTime"].startswith(z(9, "11:00")[:19])
    assert get(bapi, bb, booking["id"])["outlookEventId"] == lost.json()["immutableId"]


def test_a_lost_create_retried_after_graph_forgot_its_transaction_id_stays_one_event(
    bstack: Stack, bapi: httpx.Client, bb: Booked, faults: Callable[..., None]
) -> None:
    """Every create reaches Outlook but its answer is lost (a 504 after the write), and by the
    time the outbox retries, Graph no longer recognises the transactionId (it documents no
    lifetime for it). The retry finds the event by our extended property and adopts it: exactly
    one event in the room calendar, and it is the booking's (issue 20)."""
    faults(method="POST", path=EVENT_PATH, status=504, after=True)
    response = create(bapi, bb, booking_body(BOARD, 11, "09:00", "10:00"))
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["syncState"] == "pending" and booking["outlookEventId"] is None
    [lost] = ours(bstack, bb, BOARD, booking["id"])  # written, though the answer said otherwise
    forgot = bstack.emulator.control.post(
        "graph/transactions/forget",
        json={"user": bb.mailbox(BOARD), "tenant": bb.tenant["id"]},
    )
    assert forgot.status_code == 200, forgot.text
    clear_faults(bstack)  # Graph answers again: a blind retry would now make a second event
    wait_for(lambda: get(bapi, bb, booking["id"])["syncState"] == "synced", 20, "synced")
    assert [e["id"] for e in ours(bstack, bb, BOARD, booking["id"])] == [lost["id"]]
    synced = get(bapi, bb, booking["id"])
    assert graph_events_by_marker(bstack, bb, BOARD, booking["id"]) == [synced["outlookEventId"]]


def test_access_denied_marks_the_booking_failed_at_once(
    bstack: Stack, bapi: httpx.Client, bb: Booked, faults: Callable[..., None]
) -> None:
    faults(method="POST", path=EVENT_PATH, status=403, code="ErrorAccessDenied",
           message="Access is denied.")  # fmt: skip
    response = create(bapi, bb, booking_body(HUDDLE, 5, "15:00", "16:00"))
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["syncState"] == "failed" and booking["attempts"] == 1
    assert booking["lastError"]["reason"] == "access_denied"
    assert booking["lastError"]["status"] == 403
    time.sleep(2.5)  # longer than the outbox backoff: a permanent error is not retried
    assert get(bapi, bb, booking["id"])["attempts"] == 1
    assert ours(bstack, bb, HUDDLE, booking["id"]) == []
    # ... and it shows on the resource for sync health.
    tables = TableServiceClient.from_connection_string(bstack.settings["AzureWebJobsStorage"])
    resource = tables.get_table_client("resources").get_entity(bb.building, HUDDLE)
    assert booking["id"] in resource["lastWriteError"]
    assert "access_denied" in resource["lastWriteError"]


def test_cancelling_a_booking_whose_event_is_already_gone_succeeds(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    booking = create(bapi, bb, booking_body(HUDDLE, 5, "09:00", "10:00")).json()
    [event] = ours(bstack, bb, HUDDLE, booking["id"])
    bstack.emulator.control.delete(
        f"graph/users/{bb.mailbox(HUDDLE)}/events/{event['id']}", params={"tenant": bb.tenant["id"]}
    ).raise_for_status()
    assert bapi.delete(f"buildings/{bb.building}/bookings/{booking['id']}").status_code == 204
    after = get(bapi, bb, booking["id"])
    assert after["status"] == "cancelled" and after["syncState"] == "synced"


# ---------------------------------------------------------------- availability and the list


def test_availability_and_list_show_provenance_and_free_slots(
    bstack: Stack, bapi: httpx.Client, bb: Booked
) -> None:
    # An Outlook booking as sync mirrors it (written here through the same BusyStore sync uses),
    # on a resource that sync does not manage, so the test depends on this feature only.
    lobby = bapi.put(
        f"buildings/{bb.building}/resources/r-lobby",
        json={"name": "Lobby", "kind": "amenity", "timeZone": "Europe/Amsterdam"},
    )
    assert lobby.status_code in (200, 201)
    tables = TableServiceClient.from_connection_string(bstack.settings["AzureWebJobsStorage"])
    BusyStore(tables.get_table_client("busy")).put(
        BusyBlock(
            bb.building, "r-lobby", "o-walkin", datetime.fromisoformat(at(6, "10:00")),
            datetime.fromisoformat(at(6, "11:00")), "outlook", show_as="tentative",
            company_id="fabrikam", outlook_event_id="evt-1",
            attribution={"kind": "company", "companyId": "fabrikam", "userEmail": None,
                         "reason": "domain_match"},
        )
    )  # fmt: skip
    platform = create(bapi, bb, booking_body(BOARD, 6, "08:00", "09:00")).json()
    window = {"from": at(6, "08:00"), "to": at(6, "12:00")}

    whole = bapi.get(
        f"buildings/{bb.building}/availability", params={**window, "slotMinutes": "30"}
    )
    assert whole.status_code == 200, whole.text
    shown = {r["resourceId"]: r for r in whole.json()["resources"]}
    assert set(shown) >= {BOARD, HUDDLE, FOCUS, "r-lobby"}
    assert shown[BOARD]["busy"] == [
        {"start": z(6, "08:00"), "end": z(6, "09:00"), "source": "platform",
         "bookingId": platform["id"], "companyId": None, "showAs": "busy", "detail": "booking"}
    ]  # fmt: skip
    assert shown["r-lobby"]["busy"] == [
        {"start": z(6, "10:00"), "end": z(6, "11:00"), "source": "outlook", "bookingId": None,
         "companyId": "fabrikam", "showAs": "tentative", "detail": "event"}
    ]  # fmt: skip
    assert shown[BOARD]["free"] == [{"start": z(6, "09:00"), "end": z(6, "12:00")}]
    assert shown["r-lobby"]["free"] == [
        {"start": z(6, "08:00"), "end": z(6, "10:00")},
        {"start": z(6, "11:00"), "end": z(6, "12:00")},
    ]
    assert shown[HUDDLE]["busy"] == [] and shown[HUDDLE]["free"] == [
        {"start": z(6, "08:00"), "end": z(6, "12:00")}
    ]
    one = bapi.get(
        f"buildings/{bb.building}/availability", params={**window, "resourceId": "r-lobby"}
    ).json()
    assert [r["resourceId"] for r in one["resources"]] == ["r-lobby"]
    assert "free" not in one["resources"][0]  # no slotMinutes, no free list

    def listed(**params: str) -> list[tuple[str, str]]:
        response = bapi.get(f"buildings/{bb.building}/bookings", params={**window, **params})
        assert response.status_code == 200, response.text
        return [(b["source"], b["id"]) for b in response.json()["value"]]

    assert listed() == [("platform", platform["id"]), ("outlook", "o-walkin")]
    assert listed(source="outlook") == [("outlook", "o-walkin")]
    assert listed(source="platform") == [("platform", platform["id"])]
    assert listed(resourceId="r-lobby") == [("outlook", "o-walkin")]
    external = bapi.get(
        f"buildings/{bb.building}/bookings", params={**window, "source": "outlook"}
    ).json()["value"][0]
    assert external["attribution"] == {
        "kind": "company", "companyId": "fabrikam", "userEmail": None, "reason": "domain_match"
    }  # fmt: skip
    assert external["showAs"] == "tentative" and external["title"] is None


# ---------------------------------------------------------------- refusals


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    return body


def test_bad_input_is_refused_with_field_errors(
    bstack: Stack, bapi: httpx.Client, banon: httpx.Client, bb: Booked
) -> None:
    base = f"buildings/{bb.building}"
    unknown = create(bapi, bb, booking_body("r-nowhere", 7, "09:00", "10:00"))
    assert unknown.status_code == 400
    assert [e["field"] for e in problem(unknown)["errors"]] == ["resourceId"]
    bapi.put(f"{base}/resources/r-paid", json={"name": "Paid desk", "kind": "desk",
                                              "timeZone": "UTC", "paid": True})  # fmt: skip
    paid = create(bapi, bb, booking_body("r-paid", 7, "09:00", "10:00"))
    assert paid.status_code == 422 and problem(paid)["reason"] == "not_supported"
    bapi.put(f"{base}/resources/r-plain", json={"name": "Plain", "kind": "room", "timeZone": "UTC"})
    unmapped = create(bapi, bb, booking_body("r-plain", 7, "09:00", "10:00"))
    assert unmapped.status_code == 422 and problem(unmapped)["reason"] == "not_mapped"
    backwards = create(bapi, bb, booking_body(BOARD, 7, "10:00", "09:00"))
    assert [e["field"] for e in problem(backwards)["errors"]] == ["end"]
    naive = create(
        bapi, bb, {**booking_body(BOARD, 7, "09:00", "10:00"), "start": "2027-01-01T09:00:00"}
    )
    assert [e["field"] for e in problem(naive)["errors"]] == ["start"]

    def availability(**params: str) -> httpx.Response:
        return bapi.get(f"{base}/availability", params=params)

    missing = availability(to=at(7, "10:00"))
    assert [e["field"] for e in problem(missing)["errors"]] == ["from"]
    too_long = availability(**{"from": at(7, "00:00"), "to": at(40, "00:00")})
    assert [e["field"] for e in problem(too_long)["errors"]] == ["to"]
    no_offset = availability(**{"from": "2027-01-01T00:00:00", "to": at(8, "00:00")})
    assert [e["field"] for e in problem(no_offset)["errors"]] == ["from"]
    nobody = availability(**{"from": at(7, "00:00"), "to": at(8, "00:00"), "resourceId": "r-x"})
    assert [e["field"] for e in problem(nobody)["errors"]] == ["resourceId"]
    slot = availability(**{"from": at(7, "00:00"), "to": at(8, "00:00"), "slotMinutes": "3"})
    assert [e["field"] for e in problem(slot)["errors"]] == ["slotMinutes"]
    bad_source = bapi.get(
        f"{base}/bookings", params={"from": at(7, "00:00"), "to": at(8, "00:00"), "source": "x"}
    )
    assert [e["field"] for e in problem(bad_source)["errors"]] == ["source"]
    assert bapi.get(f"{base}/bookings/01abcdefghjkmnpqrstvwxyz00").status_code == 404
    # Nothing above left a booking behind.
    assert bapi.get(
        f"{base}/bookings", params={"from": at(7, "00:00"), "to": at(8, "00:00")}
    ).json() == {"value": [], "nextLink": None}


def test_callers_need_a_token_for_the_building(
    bstack: Stack, banon: httpx.Client, bb: Booked
) -> None:
    path = f"buildings/{bb.building}/bookings"
    window = {"from": at(7, "00:00"), "to": at(8, "00:00")}
    assert banon.get(path, params=window).status_code == 401
    assert banon.post(path, json=booking_body(BOARD, 7, "09:00", "10:00")).status_code == 401
    other = mint_api_token(bstack, roles=["Building.Admin"])  # no buildings claim: none reachable
    headers = {"Authorization": f"Bearer {other}"}
    assert banon.get(path, params=window, headers=headers).status_code == 403
    assert (
        banon.get(
            f"buildings/{bb.building}/availability", params=window, headers=headers
        ).status_code
        == 403
    )
    assert banon.delete(f"{path}/01abcdefghjkmnpqrstvwxyz00", headers=headers).status_code == 403


# ---------------------------------------------------------------- the watchdog (in process)


@pytest.fixture(scope="module")
def service(bstack: Stack) -> Iterator[Any]:
    """shared/ in this process pointed at the module's stack (the same Azurite and emulator)."""
    from shared import wiring

    with bstack.app_environment():
        yield wiring.booking_deps()


def test_the_watchdog_abandons_a_create_whose_request_died(
    bapi: httpx.Client, bb: Booked, service: Any
) -> None:
    from shared.bookings import model
    from shared.bookings import service as bookings
    from shared.bookings.outbox import OutboxMessage

    now = datetime.now(UTC)
    start = datetime.fromisoformat(at(8, "09:00"))
    stuck = model.Booking(
        bb.building, model.new_booking_id(now - timedelta(minutes=10)), HUDDLE, start,
        start + timedelta(hours=1), "", "ann@fabrikam.example", "Ann", "creating", "pending",
        now - timedelta(minutes=10), now - timedelta(minutes=10),
    )  # fmt: skip
    service.bookings.insert(stuck)
    service.busy.claim(stuck.block())
    assert create(bapi, bb, booking_body(HUDDLE, 8, "09:00", "10:00")).status_code == 409
    recent = replace(stuck, id=model.new_booking_id(now), created_at=now, start=start + timedelta(hours=3),
                     end=start + timedelta(hours=4))  # fmt: skip
    service.bookings.insert(recent)
    assert bookings.process_outbox(service, OutboxMessage(bb.building, recent.id, "check")) == (
        "deferred"  # its request may still be running
    )
    outcome = bookings.process_outbox(service, OutboxMessage(bb.building, stuck.id, "check"))
    assert outcome == "abandoned"
    assert bapi.get(f"buildings/{bb.building}/bookings/{stuck.id}").status_code == 404
    assert create(bapi, bb, booking_body(HUDDLE, 8, "09:00", "10:00")).status_code == 201
    assert bookings.process_outbox(service, OutboxMessage(bb.building, stuck.id, "check")) == "gone"
