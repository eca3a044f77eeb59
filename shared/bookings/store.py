"""The `bookings` table (PartitionKey = building): every write is one entity group transaction.

| RowKey | what |
|---|---|
| `<booking id>` | the booking (time-ordered, unguessable id: 48-bit ms time + 80 random bits, base32) |
| `idem|<sha256(Idempotency-Key)>` | the key's booking id and a hash of the request; inserted in one transaction with the booking |
| `s|<start>|<booking id>` | a copy of a confirmed or cancelled booking, keyed by start time: the list route's range query (one partition, RowKey range; `?status=` filters) |

The main row and its `s|` copy are always written in one entity group transaction under the main
row's ETag, so the copy never disagrees with the booking.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, cast

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.availability.busy import time_key
from shared.bookings.model import MAX_DURATION, Booking, Status, SyncStateName
from shared.core.errors import NotFound
from shared.storage import tablestore
from shared.storage.tablestore import Entity

_INDEX = "s"
# Statuses with an `s|` copy. Cancelled ones keep theirs (GET /bookings?status=cancelled); those
# cancelled before that (issue 22) lost it and are not listed, but stay readable by id.
LISTED: frozenset[Status] = frozenset({"confirmed", "cancelled", "released"})


def index_row(booking: Booking) -> str:
    return tablestore.join_key(_INDEX, time_key(booking.start), booking.id)


def to_entity(booking: Booking, row_key: str | None = None) -> Entity:
    entity: Entity = {
        "PartitionKey": booking.building_id,
        "RowKey": row_key or booking.id,
        "bookingId": booking.id,
        "resourceId": booking.resource_id,
        "start": booking.start,
        "end": booking.end,
        "title": booking.title,
        "bookerEmail": booking.booker_email,
        "bookerName": booking.booker_name,
        "status": booking.status,
        "syncState": booking.sync_state,
        "version": booking.version,
        "syncedVersion": booking.synced_version,
        "attempts": booking.attempts,
        "createdAt": booking.created_at,
        "updatedAt": booking.updated_at,
    }
    optional: dict[str, Any] = {
        "outlookEventId": booking.outlook_event_id,
        "calendarId": booking.calendar_id,
        "companyId": booking.company_id,
        "idempotencyRow": booking.idempotency_row,
        "requestHash": booking.request_hash,
    }
    entity.update({k: v for k, v in optional.items() if v is not None})
    if booking.last_error is not None:
        entity["lastError"] = tablestore.json_property(booking.last_error)
    if booking.attribution is not None:
        entity["attribution"] = tablestore.json_property(booking.attribution)
    return entity


def from_entity(entity: Mapping[str, Any]) -> Booking:
    status = str(entity.get("status"))
    sync_state = str(entity.get("syncState"))
    return Booking(
        building_id=str(entity["PartitionKey"]),
        id=str(entity.get("bookingId") or entity["RowKey"]),
        resource_id=str(entity["resourceId"]),
        start=tablestore.stored_time(entity["start"]),
        end=tablestore.stored_time(entity["end"]),
        title=str(entity.get("title") or ""),
        booker_email=str(entity.get("bookerEmail") or ""),
        booker_name=str(entity.get("bookerName") or ""),
        status=cast(
            Status,
            status if status in ("creating", "confirmed", "cancelled", "released") else "confirmed",
        ),
        sync_state=cast(
            SyncStateName,
            sync_state if sync_state in ("pending", "synced", "failed") else "pending",
        ),
        created_at=tablestore.stored_time(entity["createdAt"]),
        updated_at=tablestore.stored_time(entity.get("updatedAt") or entity["createdAt"]),
        version=int(entity.get("version") or 1),
        synced_version=int(entity.get("syncedVersion") or 0),
        attempts=int(entity.get("attempts") or 0),
        last_error=tablestore.from_json_property(entity.get("lastError")),
        outlook_event_id=entity.get("outlookEventId"),
        calendar_id=entity.get("calendarId"),
        company_id=entity.get("companyId"),
        attribution=tablestore.from_json_property(entity.get("attribution")),
        idempotency_row=entity.get("idempotencyRow"),
        request_hash=entity.get("requestHash"),
    )


class BookingTable:
    """The `bookings` table (module docstring)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, building_id: str, booking_id: str) -> tuple[Booking, str] | None:
        entity = tablestore.get_entity(self.table, building_id, booking_id)
        if entity is None or entity.get("bookingId") is None:
            return None
        return from_entity(entity), tablestore.etag_of(entity) or ""

    def key_record(self, building_id: str, row: str) -> Entity | None:
        return tablestore.get_entity(self.table, building_id, row)

    def insert(self, booking: Booking) -> str:
        """The new booking (and its key row) or Conflict(`exists`) when the key is taken."""
        operations: list[tablestore.Operation] = [("create", to_entity(booking))]
        if booking.idempotency_row:
            operations.append(
                (
                    "create",
                    {
                        "PartitionKey": booking.building_id,
                        "RowKey": booking.idempotency_row,
                        "keyOf": booking.id,
                        "requestHash": booking.request_hash,
                        "createdAt": booking.created_at,
                    },
                )
            )
        with tablestore.storage_errors("insert booking"):
            results = self.table.submit_transaction(operations)
        return str((results[0] or {}).get("etag") or "")

    def save(self, booking: Booking, etag: str, previous: Booking) -> str:
        """Replace the booking If-Match `etag`, keeping its `s|` copy in step; returns the new ETag.
        Conflict(`modified`) when someone else changed it first."""
        operations: list[tablestore.Operation] = [
            (
                "update",
                to_entity(booking),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ]
        listed_before = previous.status in LISTED
        listed_now = booking.status in LISTED
        if listed_before and (not listed_now or index_row(previous) != index_row(booking)):
            operations.append(
                ("delete", {"PartitionKey": previous.building_id, "RowKey": index_row(previous)})
            )
        if listed_now:
            operations.append(
                ("upsert", to_entity(booking, index_row(booking)), {"mode": UpdateMode.REPLACE})
            )
        try:
            with tablestore.storage_errors("save booking"):
                results = self.table.submit_transaction(operations)
        except NotFound:
            if len(operations) == 1 or operations[1][0] != "delete":
                raise
            # The old copy was already gone (an interrupted earlier write): save without it.
            del operations[1]
            with tablestore.storage_errors("save booking"):
                results = self.table.submit_transaction(operations)
        return str((results[0] or {}).get("etag") or "")

    def discard(self, booking: Booking) -> None:
        """Remove a booking that never became visible (and its key row): idempotent."""
        for row in (booking.id, booking.idempotency_row):
            if row:
                try:
                    with tablestore.storage_errors("discard booking"):
                        self.table.delete_entity(booking.building_id, row)
                except NotFound:
                    pass

    def between(
        self,
        building_id: str,
        start: datetime,
        end: datetime,
        statuses: Collection[Status] = frozenset({"confirmed"}),
    ) -> list[Booking]:
        """Bookings of `statuses` overlapping [start, end): one RowKey range of the `s|` copies."""
        low = tablestore.join_key(_INDEX, time_key(start - MAX_DURATION))
        high = tablestore.join_key(_INDEX, time_key(end))
        entities = tablestore.query_all(
            self.table,
            "PartitionKey eq @b and RowKey ge @lo and RowKey lt @hi",
            {"b": building_id, "lo": low, "hi": high},
        )
        found = [from_entity(e) for e in entities]
        return [b for b in found if b.start < end and start < b.end and b.status in statuses]
