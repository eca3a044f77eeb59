"""The sync worker (shared/sync/worker.py) with injected collaborators against real Azurite and the
Graph emulator, no Functions host: rounds for one mapped room calendar turn Outlook changes into
busy blocks (a baseline first, then delta rounds), a deletion removes its block, and an expired
delta token (410 Gone) is answered with a new baseline.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from shared.availability.busy import BusyStore, transaction_id
from shared.bookings.model import Booking, new_booking_id
from shared.bookings.store import BookingTable
from shared.core.errors import StorageError
from shared.directory import registry
from shared.storage import tablestore
from shared.subscriptions.store import SubscriptionInfo
from shared.sync.deps import SyncDeps
from shared.sync.polling import reconcile_due
from shared.sync.queue import Reason, SyncRequest
from shared.sync.worker import RoundResult, handle
from tests.integration.graph_fixtures import day, event_body, graph_emu, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(60)
RESOURCE = "room-1"


class Room:
    """One mapped room calendar, its Outlook side (the emulator) and its sync."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.mailbox = world.mailbox("room1")
        self.outlook: httpx.Client = world.tenant.as_app()
        self.sent: list[tuple[SyncRequest, float]] = []
        self.busy = BusyStore(world.tables(tablestore.BUSY))
        self.deps = SyncDeps(
            tables=world.tables,
            graph=world.graph,
            connection=world.connections().get,
            busy=self.busy,
            subscribe=lambda b, m: None,  # no subscription: the calendar is polled
            unsubscribe=lambda b, m: False,
            subscription=lambda b, m: None,
            enqueue=lambda request, delay: self.sent.append((request, delay)),
            peek_poison=list,
        )
        calendar = self.outlook.get(f"/users/{self.mailbox}/calendar")
        calendar.raise_for_status()
        self.calendar_id = str(calendar.json()["id"])
        self._map()

    def _map(self) -> None:
        """The mapping as the mapping service leaves it (tested in test_mapping_service.py)."""
        building = self.world.building
        body = {"name": "Room 1", "kind": "room", "timeZone": "UTC"}
        registry.put_resource(self.world.tables, building, RESOURCE, body)

        def build(current: dict[str, Any] | None) -> dict[str, Any]:
            assert current is not None
            return {
                **current, "calendarId": self.calendar_id, "mailbox": self.mailbox,
                "graphMailbox": self.mailbox, "calendarIsDefault": True,
                "tenantId": self.world.tenant.id, "syncStatus": "pending",
            }  # fmt: skip

        table = self.world.tables(tablestore.RESOURCES)
        tablestore.replace_optimistic(table, building, RESOURCE, build)

    def create(self, subject: str, start: datetime, minutes: int = 60) -> str:
        made = self.outlook.post(
            f"/users/{self.mailbox}/events", json=event_body(start, minutes, subject)
        )
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    def delete(self, event_id: str) -> None:
        gone = self.outlook.delete(f"/users/{self.mailbox}/events/{event_id}")
        assert gone.status_code == 204, gone.text

    def sync(self, reason: Reason, *, full: bool = False) -> RoundResult:
        request = SyncRequest(self.world.building, self.mailbox, reason, RESOURCE, full)
        [result] = handle(self.deps, request, datetime.now(UTC))
        assert result.outcome == "synced", result
        return result

    def blocks(self) -> list[tuple[datetime, datetime]]:
        found = self.busy.blocks(
            self.world.building, day(-1), day(30), resource_ids=[RESOURCE], source="outlook"
        )
        return sorted((b.start, b.end) for b in found)

    def state(self) -> dict[str, Any]:
        table = self.world.tables(tablestore.DELTA_STATE)
        state = tablestore.get_entity(table, self.world.building, RESOURCE)
        assert state is not None
        return state


def span(start: datetime, minutes: int = 60) -> tuple[datetime, datetime]:
    return (start, start + timedelta(minutes=minutes))


def test_outlook_changes_become_busy_blocks_and_deletions_remove_them(world: World) -> None:
    room = Room(world)
    first = room.create("There before mapping", day(2, 9))

    baseline = room.sync("mapped", full=True)
    assert baseline.full and baseline.changes == 1
    assert room.blocks() == [span(day(2, 9))]
    state = room.state()
    assert state["deltaLink"] and state["calendarId"] == room.calendar_id and state["polled"]
    resource = world.tables(tablestore.RESOURCES).get_entity(world.building, RESOURCE)
    assert resource["syncStatus"] == "synced"

    room.create("Made in Outlook", day(3, 14), 30)
    delta = room.sync("notified")
    assert not delta.full and delta.changes == 1
    assert room.blocks() == [span(day(2, 9)), span(day(3, 14), 30)]

    room.delete(first)
    assert room.sync("notified").changes == 1
    assert room.blocks() == [span(day(3, 14), 30)]
    # Nothing changed since: a round that changes nothing.
    assert room.sync("reconcile").changes == 0
    assert room.blocks() == [span(day(3, 14), 30)]


def test_an_expired_delta_token_is_answered_with_a_new_baseline(world: World) -> None:
    room = Room(world)
    room.create("Before", day(4, 10))
    room.sync("mapped", full=True)
    before = room.state()

    expired = world.tenant.emu.control.post(
        "graph/delta/expire", json={"mode": "gone", "user": room.mailbox}
    )
    assert expired.status_code == 200 and expired.json()["expired"] >= 1, expired.text
    gone = room.create("After expiry", day(5, 11))
    again = room.sync("notified")
    assert again.full  # the 410 turned the delta round into a baseline
    assert room.blocks() == [span(day(4, 10)), span(day(5, 11))]
    after = room.state()
    assert after["baselineAt"] > before["baselineAt"] and after["deltaLink"] != before["deltaLink"]

    # The new link works: the next change comes through a delta round again.
    room.delete(gone)
    follow = room.sync("notified")
    assert not follow.full and room.blocks() == [span(day(4, 10))]


def test_unmapped_calendars_lose_their_outlook_blocks_and_state(world: World) -> None:
    room = Room(world)
    room.create("Mapped", day(6, 9))
    room.sync("mapped", full=True)
    assert room.blocks() == [span(day(6, 9))]

    registry.release_mapping(world.tables, world.building, RESOURCE)
    request = SyncRequest(world.building, room.mailbox, "unmapped", RESOURCE, True)
    [result] = handle(room.deps, request, datetime.now(UTC))
    assert result.outcome == "unmapped"
    assert room.blocks() == []
    table = world.tables(tablestore.DELTA_STATE)
    assert tablestore.get_entity(table, world.building, RESOURCE) is None


def test_a_deleted_series_named_only_by_its_master_loses_every_occurrence(world: World) -> None:
    """Delta names only the series master when the series is deleted (the emulator's
    `deltaSeriesRemoval: master`): every stored occurrence block goes, after Graph confirms the
    master is gone; a series that still exists keeps its blocks (issue 20)."""
    room = Room(world)
    daily = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": day(7).date().isoformat(),
                  "numberOfOccurrences": 3},
    }  # fmt: skip
    made = room.outlook.post(
        f"/users/{room.mailbox}/events",
        json=event_body(day(7, 9), 30, "Stand-up", recurrence=daily),
    )
    assert made.status_code == 201, made.text
    room.sync("mapped", full=True)
    assert room.blocks() == [span(day(7 + i, 9), 30) for i in range(3)]
    control = world.tenant.emu.control
    control.post("graph/config", json={"deltaSeriesRemoval": "master"}).raise_for_status()
    try:
        room.delete(str(made.json()["id"]))
        assert room.sync("notified").changes == 3
    finally:
        control.post("graph/config", json={"deltaSeriesRemoval": "occurrences"})
    assert room.blocks() == []


class FailingReads:
    """The bookings table of `world`, with its point reads failing while `down` (a storage outage
    seen by the sync worker only; every other table and call is the real Azurite)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.down = False

    def __call__(self, name: str) -> Any:
        client = self.world.tables(name)
        return _Unavailable(client, self) if name == tablestore.BOOKINGS else client


class _Unavailable:
    def __init__(self, client: Any, switch: FailingReads) -> None:
        self.client, self.switch = client, switch

    def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        if self.switch.down:
            busy = HttpResponseError(message="Server Busy")
            busy.status_code = 503  # what Table Storage answers when it sheds load
            raise busy
        return self.client.get_entity(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_our_event_without_its_block_is_recognised_from_the_bookings_table(world: World) -> None:
    """Our event (its transactionId names a platform booking of this resource) whose busy block
    is gone, e.g. a cancelled booking whose event could not be deleted: the bookings table says it
    is ours, so it is never imported; and while that table cannot be read the round fails
    instead of guessing "not ours" (which imported it and counted the slot twice) (issue 20)."""
    room = Room(world)
    room.sync("mapped", full=True)
    now = datetime.now(UTC)
    booking = Booking(
        world.building, new_booking_id(now), RESOURCE, day(8, 10), day(8, 11), "Ours",
        "ann@fabrikam.example", "Ann", "cancelled", "failed", now, now, version=2,
    )  # fmt: skip
    BookingTable(world.tables(tablestore.BOOKINGS)).insert(booking)  # no busy block: it is gone
    made = room.outlook.post(
        f"/users/{room.mailbox}/events",
        json=event_body(day(8, 10), 60, "Ours", transactionId=transaction_id(booking.id)),
    )
    assert made.status_code == 201, made.text
    reads = FailingReads(world)
    outage = replace(room.deps, tables=reads)
    reads.down = True
    request = SyncRequest(world.building, room.mailbox, "notified", RESOURCE, False)
    with pytest.raises(StorageError):
        handle(outage, request, datetime.now(UTC))
    assert room.blocks() == []  # nothing imported while the table could not say
    reads.down = False
    result = handle(outage, request, datetime.now(UTC))
    assert [r.outcome for r in result] == ["synced"]
    assert room.blocks() == []  # ours: never an Outlook booking
    assert room.sync("reconcile").changes == 0


# ---------------------------------------------------------------- the reconciliation tick (issue 17)


def _watched(room: Room, reason: str | None = None) -> SyncDeps:
    """The room's deps with its mailbox watched by a subscription (`reason`: its last failure)."""
    info = SubscriptionInfo(
        "sub-1", room.world.building, room.mailbox, datetime.now(UTC) + timedelta(days=2),
        "active", reason, room.world.connection.connection_id,
    )  # fmt: skip
    return replace(room.deps, subscribe=lambda b, m: info, subscription=lambda b, m: info)


def _tick(room: Room, deps: SyncDeps, started: datetime | None = None) -> list[str]:
    """Run the tick; the reasons of the requests it sent for this room (the tables are shared)."""
    room.sent.clear()
    reconcile_due(deps, started=started)
    return [r.reason for r, _ in room.sent if r.building == room.world.building]


def test_the_tick_skips_a_healthy_calendar_and_reconciles_one_with_a_gap(world: World) -> None:
    room = Room(world)
    room.deps = _watched(room)
    room.sync("mapped", full=True)
    assert room.state()["polled"] is False
    assert _tick(room, room.deps) == []  # healthy, just synced: trusted

    # A change no notification announces (none arrive here) is invisible to the tick; the round
    # the trust period's end brings finds it, and that is the gap signal.
    room.create("Unannounced", day(4, 10))
    assert _tick(room, room.deps) == []
    found = room.sync("reconcile")
    assert found.changes == 1 and room.blocks() == [span(day(4, 10))]
    assert room.state()["suspectReason"] == "unannounced_changes"
    assert _tick(room, room.deps) == ["reconcile"]
    # That round finds nothing: trusted again. A notified round's finds are not a gap.
    assert room.sync("reconcile").changes == 0
    assert _tick(room, room.deps) == []
    room.create("Announced", day(5, 10))
    assert room.sync("notified").changes == 1
    assert _tick(room, room.deps) == []


def test_a_failed_renewal_a_restart_and_no_trust_period_make_the_tick_reconcile(
    world: World,
) -> None:
    room = Room(world)
    room.deps = _watched(room)
    room.sync("mapped", full=True)
    assert _tick(room, room.deps) == []
    assert _tick(room, _watched(room, reason="throttled")) == ["reconcile"]
    assert _tick(room, room.deps, started=datetime.now(UTC)) == ["reconcile"]
    assert _tick(room, room.deps, started=datetime.now(UTC) - timedelta(hours=1)) == []
    untrusting = replace(room.deps, config=replace(room.deps.config, reconcile_trust_minutes=0))
    assert _tick(room, untrusting) == ["reconcile"]


def test_missed_is_recorded_and_its_own_round_reconciles(world: World) -> None:
    room = Room(world)
    room.deps = _watched(room)
    room.sync("mapped", full=True)
    room.create("Lost notification", day(6, 10))
    assert room.sync("missed").changes == 1
    state = room.state()
    assert state["suspectReason"] == "missed"
    assert state["lastStartedAt"] >= state["suspectAt"]  # the round started after the signal
    assert _tick(room, room.deps) == []


def test_a_failed_round_makes_the_tick_reconcile(world: World) -> None:
    room = Room(world)
    room.deps = _watched(room)
    room.sync("mapped", full=True)
    cut_off = replace(room.deps, connection=lambda building: None)
    request = SyncRequest(world.building, room.mailbox, "reconcile", RESOURCE)
    [failed] = handle(cut_off, request, datetime.now(UTC))
    assert failed.outcome == "failed" and failed.reason == "disconnected"
    assert _tick(room, room.deps) == ["reconcile"]
    room.sync("reconcile")
    assert _tick(room, room.deps) == []
