"""Check-in and no-show release (shared/attendance/service.py) against Azurite and the Graph
emulator, with the clock as a parameter: the release is due when the test says so.

The deps are the booking service's (tests/integration/test_bookings_service.py `booked`: room1's
calendar mapped, an application connection) with the attendance table and an audit list.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.attendance import service
from shared.attendance.decide import CLAIM_LEASE
from shared.attendance.model import records_between
from shared.availability.busy import BusyBlock
from shared.bookings.service import create_booking, get_booking
from shared.core.connection import Connection
from shared.core.errors import Conflict, ValidationFailed
from shared.directory.people import AutoRelease
from shared.directory.registry import effective_auto_release
from shared.graph.audit import AuditEntry
from shared.storage import tablestore
from tests.integration.graph_fixtures import day, event_body, graph_emu, tenant, zulu
from tests.integration.service_fixtures import table_service, world
from tests.integration.test_bookings_service import ROOM, Booked, body, booked, queue
from tests.waiting import wait_for

__all__ = ["booked", "graph_emu", "queue", "table_service", "tenant", "world"]

RULE = AutoRelease(enabled=True, grace_minutes=10, early_minutes=15)


@dataclass
class Released:
    booked: Booked
    audit: list[AuditEntry]

    def deps(self, now: datetime) -> service.AttendanceDeps:
        return service.AttendanceDeps(replace(self.booked.deps, now=lambda: now), self.audit.append)

    def resources(self, rule: AutoRelease = RULE) -> dict[str, service.Resource]:
        entity = tablestore.get_entity(
            self.booked.deps.tables(tablestore.RESOURCES), self.booked.building, ROOM
        )
        assert entity is not None
        return {ROOM: service.Resource(entity, rule)}

    def tick(self, now: datetime, rule: AutoRelease = RULE) -> Counter[str]:
        return service.release_building(
            self.deps(now), self.booked.building, self.resources(rule), now
        )

    def records(self, around: datetime) -> dict[str, Any]:
        found = records_between(
            self.booked.deps.tables("attendance"), self.booked.building,
            around - timedelta(days=1), around + timedelta(days=1),
        )  # fmt: skip
        return {r.block_id: r for r in found}


@pytest.fixture
def released(booked: Booked) -> Released:
    table = booked.deps.tables(tablestore.RESOURCES)
    entity = tablestore.get_entity(table, booked.building, ROOM)
    assert entity is not None
    table.upsert_entity({**entity, "calendarKind": "room"})
    return Released(booked, [])


def test_check_in_window_idempotence_and_validation(released: Released) -> None:
    start = day(3, 9)
    view, _ = create_booking(released.booked.deps, released.booked.building, body(start))
    building, bid = released.booked.building, view["id"]
    with pytest.raises(Conflict) as early:
        service.check_in(released.deps(start - timedelta(minutes=16)), building, bid, None,
                         actor="admin:1")  # fmt: skip
    assert early.value.reason == "checkin_too_early"
    with pytest.raises(Conflict) as late:
        service.check_in(released.deps(start + timedelta(minutes=10, seconds=1)), building, bid,
                         None, actor="admin:1")  # fmt: skip
    assert late.value.reason == "checkin_too_late"
    with pytest.raises(ValidationFailed) as bad:
        service.check_in(released.deps(start), building, bid, {"by": "no way", "x": 1},
                         actor="admin:1")  # fmt: skip
    assert {e.field for e in bad.value.errors} == {"by", "x"}
    first, created = service.check_in(
        released.deps(start - timedelta(minutes=15)), building, bid, {"by": "Ann@Fabrikam.example"},
        actor="service:panel",
    )  # fmt: skip
    assert created and first["state"] == "checked_in" and first["by"] == "ann@fabrikam.example"
    again, created_again = service.check_in(
        released.deps(start + timedelta(minutes=5)), building, bid, {"by": "panel-4a"},
        actor="service:panel",
    )  # fmt: skip
    assert not created_again and again == first
    assert [a.operation for a in released.audit] == ["attendance.checkin"]
    shown, _ = service.booking_with_attendance(released.deps(start), building, bid)
    assert shown["attendance"]["state"] == "checked_in"


def test_two_releasers_release_once_and_a_check_in_a_second_before_wins(
    released: Released,
) -> None:
    deps = released.booked.deps
    start = day(4, 9)
    nobody, _ = create_booking(deps, released.booked.building, body(start))
    came, _ = create_booking(deps, released.booked.building, body(start + timedelta(hours=2)))
    now = start + timedelta(minutes=10)  # the first booking's release is due
    barrier = threading.Barrier(2)
    results: list[Counter[str]] = []

    def run() -> None:
        barrier.wait()
        results.append(released.tick(now))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(results, Counter())
    # The loser either lost the claim (contended) or read the record once it was released.
    assert total["released"] == 1 and set(total) <= {"released", "contended"}, results
    # The second booking: a check-in one second before its release wins.
    due = now + timedelta(hours=2)
    service.check_in(released.deps(due - timedelta(seconds=1)), released.booked.building,
                     came["id"], None, actor="admin:1")  # fmt: skip
    assert released.tick(due) == Counter(checked_in=1)
    records = released.records(start)
    assert records[nobody["id"]].state == "released" and records[nobody["id"]].required
    assert records[came["id"]].state == "checked_in" and records[came["id"]].required
    assert get_booking(deps, released.booked.building, nobody["id"])["status"] == "released"
    assert get_booking(deps, released.booked.building, came["id"])["status"] == "confirmed"
    gone = released.booked.graph.get(
        f"/users/{released.booked.room}/events/{nobody['outlookEventId']}"
    )
    assert gone.status_code == 404
    # A check-in after the release is refused; another tick changes nothing.
    with pytest.raises(Conflict) as refused:
        service.check_in(released.deps(now), released.booked.building, nobody["id"], None,
                         actor="admin:1")  # fmt: skip
    assert refused.value.reason == "booking_released"
    assert released.tick(due + timedelta(minutes=1)) == Counter()


def _room_copy(released: Released, start: datetime, **extra: Any) -> list[dict[str, Any]]:
    """An organizer's meeting with the room: the room's own copies of its occurrences."""
    alice = released.booked.world.tenant.as_user("alice")
    room = {"emailAddress": {"address": released.booked.room}, "type": "resource"}
    alice.post("/me/events", json=event_body(start, attendees=[room], **extra)).raise_for_status()
    window = {"startDateTime": zulu(start - timedelta(hours=1)),
              "endDateTime": zulu(start + timedelta(days=5))}  # fmt: skip

    def copies() -> list[dict[str, Any]]:
        got = released.booked.graph.get(
            f"/users/{released.booked.room}/calendarView", params=window
        )
        return list(got.json()["value"])

    return wait_for(copies)


def _block(released: Released, item: dict[str, Any], n: int) -> BusyBlock:
    """The busy block sync makes of the room's copy (written here: no sync in this test)."""
    block = BusyBlock(
        released.booked.building, ROOM, f"o-test{n}",
        datetime.fromisoformat(item["start"]["dateTime"] + "+00:00"),
        datetime.fromisoformat(item["end"]["dateTime"] + "+00:00"),
        "outlook", show_as="busy", outlook_event_id=item["id"],
        series_master_id=item.get("seriesMasterId"),
    )  # fmt: skip
    released.booked.deps.busy.put(block)
    return block


def test_an_outlook_booking_is_declined_as_the_room(released: Released) -> None:
    start = day(5, 9)
    (copy,) = _room_copy(released, start)
    block = _block(released, copy, 1)
    done = released.tick(start + timedelta(minutes=11))
    assert done == Counter({"declined": 1})
    room = released.booked.graph.get(f"/users/{released.booked.room}/events/{copy['id']}")
    assert room.status_code == 404  # declined: gone from the room's calendar
    assert released.booked.deps.busy.find(released.booked.building, block.block_id) is None
    record = released.records(start)[block.block_id]
    assert record.state == "released" and record.required and record.released_at is not None


def test_recurring_strikes_end_the_series(released: Released) -> None:
    start = day(6, 9)
    daily = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": start.date().isoformat(),
                  "numberOfOccurrences": 4},
    }  # fmt: skip
    copies = _room_copy(released, start, recurrence=daily)
    assert len(copies) == 4
    blocks = [_block(released, c, n) for n, c in enumerate(copies)]
    rule = replace(RULE, recurring_strikes=2)
    assert released.tick(blocks[0].start + timedelta(minutes=11), rule) == Counter(declined=1)
    assert released.tick(blocks[1].start + timedelta(minutes=11), rule) == Counter(
        series_declined=1
    )
    window = {"startDateTime": zulu(start - timedelta(hours=1)),
              "endDateTime": zulu(start + timedelta(days=5))}  # fmt: skip
    left = released.booked.graph.get(f"/users/{released.booked.room}/calendarView", params=window)
    assert left.json()["value"] == []  # the rest of the series left the room


def test_delegated_mode_counts_a_no_show_and_touches_nothing(released: Released) -> None:
    start = day(7, 9)
    (copy,) = _room_copy(released, start)
    block = _block(released, copy, 9)
    connection = released.booked.world.connection
    delegated = Connection(connection.building_id, connection.connection_id, "delegated",
                           "connected", connection.tenant_id)  # fmt: skip
    released.booked.deps = replace(
        released.booked.deps, connections={connection.building_id: delegated}
    )
    assert released.tick(start + timedelta(minutes=11)) == Counter(no_show=1)
    record = released.records(start)[block.block_id]
    assert (record.state, record.reason, record.required) == ("no_show", "delegated_mode", True)
    room = released.booked.graph.get(f"/users/{released.booked.room}/events/{copy['id']}")
    assert room.status_code == 200
    assert released.booked.deps.busy.find(released.booked.building, block.block_id) is not None


def test_effective_rule_is_the_resources_own() -> None:
    building = AutoRelease(enabled=True)
    own = AutoRelease(enabled=False, grace_minutes=3)
    entity = {"autoRelease": tablestore.json_property({"enabled": False, "graceMinutes": 3,
                                                       "earlyMinutes": 15,
                                                       "recurringStrikes": None})}  # fmt: skip
    assert effective_auto_release(entity, building) == own
    assert effective_auto_release({}, building) == building


def test_a_claim_is_left_to_its_holder_while_its_lease_lasts(released: Released) -> None:
    """Another instance claimed the release a moment ago and is still at it: this run touches
    nothing (no second cancel); once the lease is over, the claim is taken over and finished."""
    deps = released.booked.deps
    start = day(8, 9)
    view, _ = create_booking(deps, released.booked.building, body(start))
    now = start + timedelta(minutes=10)
    (block,) = [
        b
        for b in deps.busy.blocks(released.booked.building, start, now)
        if b.block_id == view["id"]
    ]
    claim = service._new_record(block, state="releasing", required=True, claimed_at=now)
    assert released.deps(now).records.insert(claim)
    assert released.tick(now + timedelta(seconds=30)) == Counter()
    assert get_booking(deps, released.booked.building, view["id"])["status"] == "confirmed"
    later = now + CLAIM_LEASE
    assert released.tick(later) == Counter(released=1)
    record = released.records(start)[view["id"]]
    assert record.state == "released" and record.claimed_at == later
    assert get_booking(deps, released.booked.building, view["id"])["status"] == "released"
