"""The booking service with its collaborators injected, against a real Azurite and the Graph
emulator: no Functions host, no HTTP routes in between.

`BookingDeps` is built here the way `shared.wiring.booking_deps` builds it in the app, from the
`world` of tests/integration/service_fixtures.py (tables of the test's own, a fresh tenant, an
application connection, the guarded Graph client) plus the busy store and an outbox on an Azurite
queue. The room is mapped to the tenant's room1 calendar.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from devstack.m365 import RunningEmulator
from shared.availability.busy import BOOKING_PROPERTY_ID, BusyStore, SlotTaken
from shared.bookings.model import BookingConfig
from shared.bookings.outbox import Outbox, OutboxMessage
from shared.bookings.outlook import REQUEST_POLICY, WORKER_POLICY, with_policy
from shared.bookings.service import (
    WATCHDOG,
    BookingDeps,
    cancel_booking,
    create_booking,
    get_booking,
    list_bookings,
    process_outbox,
)
from shared.core.errors import BookingBridgeError, Conflict, Unprocessable
from shared.storage import tablestore
from tests.integration.graph_fixtures import day, graph_emu, tenant, zulu
from tests.integration.service_fixtures import World, table_service, world

__all__ = ["graph_emu", "table_service", "tenant", "world"]

ROOM = "room-1"
EVENTS = "/users/*/calendars/*/events"


@pytest.fixture(scope="module")
def queue(azurite: str) -> Iterator[QueueClient]:
    """An outbox queue of this module, base64 like the app's (`clients.queue`)."""
    client = QueueClient.from_connection_string(
        azurite,
        f"outbox-{uuid.uuid4().hex[:8]}",
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    client.create_queue()
    try:
        yield client
    finally:
        client.delete_queue()


class Recorded:
    """The real outbox, remembering what was sent (the messages are invisible for their delay)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.sent: list[tuple[OutboxMessage, int]] = []

    def send(self, message: OutboxMessage, *, delay_seconds: int = 0) -> None:
        self.outbox.send(message, delay_seconds=delay_seconds)
        self.sent.append((message, delay_seconds))


@dataclass
class Booked:
    deps: BookingDeps
    world: World
    outbox: Recorded
    graph: httpx.Client  # Graph as the app, to look at what the service wrote

    @property
    def building(self) -> str:
        return self.world.building

    @property
    def room(self) -> str:
        return self.world.mailbox("room1")

    def queued(self) -> int:
        """Messages in the outbox queue, visible or not (what the Functions host would deliver)."""
        props = self.outbox.outbox.queue.get_queue_properties()
        return int(props.approximate_message_count or 0)


@pytest.fixture
def booked(world: World, queue: QueueClient) -> Booked:
    """The world's building with one room mapped to room1's calendar, and the service's deps."""
    graph = world.tenant.as_app()
    mailbox = world.mailbox("room1")
    calendars = graph.get(f"/users/{mailbox}/calendars").json()["value"]
    calendar = next(c for c in calendars if c.get("isDefaultCalendar"))
    world.tables(tablestore.RESOURCES).create_entity(
        {
            "PartitionKey": world.building,
            "RowKey": ROOM,
            "name": "Room One",
            "kind": "room",
            "paid": False,
            "timeZone": "Europe/Amsterdam",
            "calendarId": calendar["id"],
            "mailbox": mailbox,
            "calendarIsDefault": True,
            "tenantId": world.tenant.id,
        }
    )
    outbox = Recorded(Outbox(queue))
    deps = BookingDeps(
        tables=world.tables,
        busy=BusyStore(world.tables(tablestore.BUSY)),
        graph=with_policy(world.graph, REQUEST_POLICY),
        worker_graph=with_policy(world.graph, WORKER_POLICY),
        connections=world.connections(),
        outbox=outbox,
        config=BookingConfig(),
    )
    return Booked(deps, world, outbox, graph)


def body(start: datetime, minutes: int = 60, **extra: Any) -> dict[str, Any]:
    return {
        "resourceId": ROOM,
        "start": zulu(start),
        "end": zulu(start + timedelta(minutes=minutes)),
        "title": "Planning",
        "booker": {"email": "ann@fabrikam.example", "name": "Ann"},
        **extra,
    }


def our_events(booked: Booked, booking_id: str) -> list[dict[str, Any]]:
    """The room's events carrying this booking's id in our extended property."""
    prop = f"ep/id eq '{BOOKING_PROPERTY_ID}' and ep/value eq '{booking_id}'"
    found = booked.graph.get(
        f"/users/{booked.room}/events",
        params={"$filter": f"singleValueExtendedProperties/Any(ep: {prop})"},
    )
    found.raise_for_status()
    events: list[dict[str, Any]] = found.json()["value"]
    return events


def event(booked: Booked, event_id: str | None) -> httpx.Response:
    """The room's event by the id the service stored (Graph answers with its canonical id)."""
    assert event_id is not None
    return booked.graph.get(f"/users/{booked.room}/events/{event_id}")


def test_create_writes_the_event_and_the_same_key_returns_the_same_booking(
    booked: Booked,
) -> None:
    start = day(3, 9)
    view, created = create_booking(booked.deps, booked.building, body(start), idempotency_key="k-1")
    assert created and view["status"] == "confirmed" and view["syncState"] == "synced"
    written = event(booked, view["outlookEventId"]).json()
    assert written["subject"] == "Room One – Ann"
    # Written in the room's zone; Graph answers in UTC unless asked otherwise.
    assert written["start"]["dateTime"].startswith(zulu(start)[:19])
    assert written["originalStartTimeZone"] == "Europe/Amsterdam"
    again, created_again = create_booking(
        booked.deps, booked.building, body(start), idempotency_key="k-1"
    )
    assert not created_again and again == view
    assert [e["id"] for e in our_events(booked, view["id"])] == [written["id"]]
    with pytest.raises(Unprocessable) as err:
        create_booking(booked.deps, booked.building, body(start, 30), idempotency_key="k-1")
    assert err.value.reason == "idempotency_key_reused"


def test_an_overlapping_booking_is_slot_taken_and_leaves_nothing(booked: Booked) -> None:
    start = day(4, 9)
    first, _ = create_booking(booked.deps, booked.building, body(start))
    with pytest.raises(SlotTaken) as err:
        create_booking(booked.deps, booked.building, body(start + timedelta(minutes=30)))
    assert [b.block_id for b in err.value.conflicting] == [first["id"]]
    window = {"from": zulu(start - timedelta(hours=1)), "to": zulu(start + timedelta(hours=3))}
    listed = list_bookings(booked.deps, booked.building, window).value
    assert [b["id"] for b in listed] == [first["id"]]
    blocks = booked.deps.busy.blocks(booked.building, start, start + timedelta(hours=2))
    assert [b.block_id for b in blocks] == [first["id"]]
    outlook = booked.graph.get(
        f"/users/{booked.room}/calendarView",
        params={"startDateTime": window["from"], "endDateTime": window["to"]},
    ).json()["value"]
    assert [e["id"] for e in outlook] == [event(booked, first["outlookEventId"]).json()["id"]]


def test_cancel_deletes_the_event_and_frees_the_slot(booked: Booked) -> None:
    start = day(5, 9)
    view, _ = create_booking(booked.deps, booked.building, body(start))
    cancel_booking(booked.deps, booked.building, view["id"])
    cancelled = get_booking(booked.deps, booked.building, view["id"])
    assert cancelled["status"] == "cancelled" and cancelled["syncState"] == "synced"
    assert event(booked, view["outlookEventId"]).status_code == 404
    assert booked.deps.busy.blocks(booked.building, start, start + timedelta(hours=1)) == []
    rebooked, created = create_booking(booked.deps, booked.building, body(start))
    assert created and rebooked["id"] != view["id"] and rebooked["syncState"] == "synced"


def test_a_graph_outage_leaves_the_booking_pending_and_the_outbox_writes_it_later(
    booked: Booked, graph_emu: RunningEmulator
) -> None:
    fault = {"method": "POST", "path": EVENTS, "status": 503}
    graph_emu.control.post("graph/faults", json=fault).raise_for_status()
    before = booked.queued()
    view, created = create_booking(booked.deps, booked.building, body(day(6, 9)))
    assert created and view["status"] == "confirmed" and view["syncState"] == "pending"
    assert view["outlookEventId"] is None and view["lastError"] is not None
    assert (view["lastError"]["reason"], view["lastError"]["status"]) == ("graph_unavailable", 503)
    # The watchdog's check, then the retry after the first backoff: both really enqueued.
    sent = [(m.op, delay) for m, delay in booked.outbox.sent]
    assert sent == [("check", int(WATCHDOG.total_seconds())), ("create", 30)]
    assert booked.queued() == before + 2

    retry = OutboxMessage(booked.building, view["id"], "create")
    assert process_outbox(booked.deps, retry) == "pending"  # Graph still down: another attempt
    still = get_booking(booked.deps, booked.building, view["id"])
    assert still["syncState"] == "pending" and still["attempts"] == 2
    assert booked.outbox.sent[-1] == (retry, 60)
    assert our_events(booked, view["id"]) == []

    graph_emu.control.delete("graph/faults").raise_for_status()
    assert process_outbox(booked.deps, retry) == "synced"
    synced = get_booking(booked.deps, booked.building, view["id"])
    assert synced["syncState"] == "synced" and synced["lastError"] is None
    written = event(booked, synced["outlookEventId"]).json()
    assert [e["id"] for e in our_events(booked, view["id"])] == [written["id"]]
    assert process_outbox(booked.deps, replace(retry, op="check")) == "in_sync"


@pytest.mark.parametrize("invite_booker", [False, True])
def test_an_outlook_booking_sync_has_not_seen_refuses_the_slot_and_leaves_nothing(
    booked: Booked, graph_emu: RunningEmulator, invite_booker: bool
) -> None:
    """Issue 17: without BB_INVITE_BOOKER the create writes, sees the earlier Outlook event in its
    check after the POST and deletes its own event (2 Graph requests, then the DELETE); with it,
    the slot is read first and nothing is written (the booker is mailed nothing)."""
    start = day(7 if invite_booker else 8, 9)
    walk_in = booked.graph.post(
        f"/users/{booked.room}/events",
        json={"subject": "Walk-in", "showAs": "busy",
              "start": {"dateTime": zulu(start)[:19], "timeZone": "UTC"},
              "end": {"dateTime": zulu(start + timedelta(hours=1))[:19], "timeZone": "UTC"}},
    )  # fmt: skip
    assert walk_in.status_code == 201, walk_in.text
    deps = replace(booked.deps, config=replace(booked.deps.config, invite_booker=invite_booker))

    def posts() -> int:
        counts = graph_emu.control.get("stats").json()["requests"]["byEndpoint"]
        return int(counts.get("POST /users/{id}/calendars/{id}/events", 0))

    before = posts()
    with pytest.raises(Conflict) as err:
        create_booking(deps, booked.building, body(start + timedelta(minutes=30)))
    assert err.value.reason == "slot_taken"
    assert posts() - before == (0 if invite_booker else 1)
    window = {"startDateTime": zulu(start), "endDateTime": zulu(start + timedelta(hours=2))}
    left = booked.graph.get(f"/users/{booked.room}/calendarView", params=window).json()["value"]
    assert [e["id"] for e in left] == [walk_in.json()["id"]]
    assert booked.deps.busy.blocks(booked.building, start, start + timedelta(hours=2)) == []
    listed = {"from": window["startDateTime"], "to": window["endDateTime"], "source": "platform"}
    assert list_bookings(booked.deps, booked.building, listed).value == []


def test_a_create_whose_watchdog_cannot_be_queued_stores_nothing(
    booked: Booked, azurite: str
) -> None:
    """The watchdog is queued before the booking row exists (issue 17 moved it there): a queue
    that cannot take it fails the create with nothing stored, so the same Idempotency-Key books
    afresh once the queue is back (it used to leave a `creating` row that answered
    `request_in_progress` for that key forever)."""
    missing = QueueClient.from_connection_string(
        azurite, f"missing-{uuid.uuid4().hex[:8]}", message_encode_policy=TextBase64EncodePolicy()
    )
    broken = replace(booked.deps, outbox=Outbox(missing))
    start = day(9, 9)
    with pytest.raises(BookingBridgeError):  # the queue is missing: NotFound
        create_booking(broken, booked.building, body(start), idempotency_key="k-watch")
    window = {"from": zulu(start), "to": zulu(start + timedelta(hours=1)), "status": "all"}
    assert list_bookings(booked.deps, booked.building, window).value == []
    assert booked.deps.busy.blocks(booked.building, start, start + timedelta(hours=1)) == []
    view, created = create_booking(
        booked.deps, booked.building, body(start), idempotency_key="k-watch"
    )
    assert created and view["syncState"] == "synced"
