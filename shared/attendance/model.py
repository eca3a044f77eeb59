"""The attendance record: what happened to one started booking (block) that check-in applies to.

One record per busy block (platform booking or Outlook occurrence), table `attendance`:
PartitionKey `<building>|<UTC day of the block's start, yyyymmdd>`, RowKey `<resource>|<block id>`.
Every state change is an insert-if-absent or an ETag-guarded update, so two writers (a check-in and
the release timer, or two timer instances) never both win:

    (no record) ──check-in──────────────▶ checked_in
        │                                   │ timer after grace: required = True
        └──timer after grace (insert)──▶ releasing ──release done──▶ released
                                            └──release impossible──▶ no_show (reason says why)

A `releasing` record is a claim with a lease (`claimedAt`): while it runs, other timer instances
leave the booking alone; a claim whose holder died (or whose Graph call failed, which gives the
lease back) is taken over by an ETag-guarded update, so one instance at a time goes on with it.

The record keeps the block's times, company and creation time, because a released booking's busy
block is gone (the booking was cancelled or the room declined it) and analytics still counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.availability.busy import as_utc
from shared.storage import tablestore

TABLE = "attendance"

State = Literal["checked_in", "releasing", "released", "no_show"]
STATES: tuple[State, ...] = ("checked_in", "releasing", "released", "no_show")
# States of a booking that required check-in and had none (analytics' no-shows).
NO_SHOW_STATES: frozenset[State] = frozenset({"releasing", "released", "no_show"})


@dataclass(frozen=True)
class Attendance:
    building_id: str
    resource_id: str
    block_id: str  # the busy block's id: the booking id, or "o-..." for an Outlook occurrence
    start: datetime  # the block's times when the record was made (UTC)
    end: datetime
    state: State
    required: bool  # check-in applied to this booking (auto-release on for it at its start)
    source: Literal["platform", "outlook"] = "platform"
    company_id: str | None = None
    created_at: datetime | None = None  # when the booking was made (BusyBlock.created_at)
    booking_id: str | None = None
    outlook_event_id: str | None = None
    series_master_id: str | None = None
    checked_in_at: datetime | None = None
    released_at: datetime | None = None  # released or marked no_show
    claimed_at: datetime | None = None  # releasing: when a timer instance took the claim
    reason: str | None = None  # why no_show (release impossible), or the release's failure
    by: str | None = None  # who checked in (caller id), for the audit trail


def partition_key(building_id: str, start: datetime) -> str:
    return tablestore.join_key(building_id, as_utc(start).strftime("%Y%m%d"))


def row_key(resource_id: str, block_id: str) -> str:
    return tablestore.join_key(resource_id, block_id)


def _optional_time(value: Any) -> datetime | None:
    return tablestore.stored_time(value) if value else None


def to_entity(record: Attendance) -> tablestore.Entity:
    entity: tablestore.Entity = {
        "PartitionKey": partition_key(record.building_id, record.start),
        "RowKey": row_key(record.resource_id, record.block_id),
        "resourceId": record.resource_id,
        "blockId": record.block_id,
        "start": as_utc(record.start).isoformat(timespec="microseconds"),
        "end": as_utc(record.end).isoformat(timespec="microseconds"),
        "state": record.state,
        "required": record.required,
        "source": record.source,
    }
    optional: dict[str, Any] = {
        "companyId": record.company_id,
        "bookingId": record.booking_id,
        "outlookEventId": record.outlook_event_id,
        "seriesMasterId": record.series_master_id,
        "reason": record.reason,
        "by": record.by,
    }
    times = {
        "createdAt": record.created_at,
        "checkedInAt": record.checked_in_at,
        "releasedAt": record.released_at,
        "claimedAt": record.claimed_at,
    }
    optional.update(
        {k: as_utc(v).isoformat(timespec="microseconds") for k, v in times.items() if v is not None}
    )
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def from_entity(building_id: str, entity: Mapping[str, Any]) -> Attendance:
    state = entity.get("state")
    return Attendance(
        building_id=building_id,
        resource_id=str(entity["resourceId"]),
        block_id=str(entity["blockId"]),
        start=tablestore.stored_time(entity["start"]),
        end=tablestore.stored_time(entity["end"]),
        state=state if state in STATES else "no_show",
        required=bool(entity.get("required", False)),
        source="outlook" if entity.get("source") == "outlook" else "platform",
        company_id=entity.get("companyId"),
        created_at=_optional_time(entity.get("createdAt")),
        booking_id=entity.get("bookingId"),
        outlook_event_id=entity.get("outlookEventId"),
        series_master_id=entity.get("seriesMasterId"),
        checked_in_at=_optional_time(entity.get("checkedInAt")),
        released_at=_optional_time(entity.get("releasedAt")),
        claimed_at=_optional_time(entity.get("claimedAt")),
        reason=entity.get("reason"),
        by=entity.get("by"),
    )


def records_between(
    table: Any, building_id: str, start: datetime, end: datetime
) -> list[Attendance]:
    """The building's records of blocks starting in [start, end) (one query per UTC day)."""
    first, last = as_utc(start).date(), as_utc(end).date()
    found: list[Attendance] = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        pk = tablestore.join_key(building_id, day.strftime("%Y%m%d"))
        for entity in tablestore.query_all(table, "PartitionKey eq @pk", {"pk": pk}):
            record = from_entity(building_id, entity)
            if as_utc(start) <= record.start < as_utc(end):
                found.append(record)
    return found
