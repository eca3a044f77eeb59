"""The audit log: one record for every Microsoft Graph calendar read and write.

Table `audit` (DESIGN.md): PartitionKey `<building>|<UTC yyyymmddHH>` spreads writes over hour
buckets (no hot partition at a thousand buildings); RowKey = inverted milliseconds + random, so a
partition lists newest first. Records hold ids, operation names, status and Graph request ids —
never tokens, bodies or subjects.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core.errors import FieldError, NotFound, StorageError, ValidationFailed
from shared.core.paging import TOKEN_FIELD, Listed, decode_cursor, encode_cursor, top_of
from shared.core.times import utc_z

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

AUDIT_TABLE = "audit"  # = shared.storage.tablestore.AUDIT
_MAX_MS = 10**15  # far beyond any date we will see; keeps RowKeys fixed-width
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_RANGE = timedelta(days=31)
DEFAULT_RANGE = timedelta(days=1)


@dataclass(frozen=True)
class AuditEntry:
    time: datetime
    actor: str
    building: str
    connection: str
    operation: str
    mailbox: str | None
    calendar: str | None
    result: str  # "ok" or "<status> <Graph code>"
    status: int
    request_id: str | None
    client_request_id: str | None = None
    id: str | None = None  # record_id(RowKey) once stored: GET /buildings/{b}/audit/{id}

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": utc_z(self.time, "milliseconds"),
            "actor": self.actor,
            "building": self.building,
            "connection": self.connection,
            "operation": self.operation,
            "mailbox": self.mailbox,
            "calendar": self.calendar,
            "result": self.result,
            "status": self.status,
            "requestId": self.request_id,
            "clientRequestId": self.client_request_id,
        }


def partition_key(building: str, when: datetime) -> str:
    return f"{building}|{when.astimezone(UTC):%Y%m%d%H}"


def row_key(when: datetime) -> str:
    ms = int(when.timestamp() * 1000)
    return f"{_MAX_MS - ms:016d}|{secrets.token_hex(4)}"


def hour_buckets(start: datetime, end: datetime) -> list[datetime]:
    """Hour starts from `end` back to `start` (newest first), both included."""
    hour = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    buckets = []
    while hour >= first:
        buckets.append(hour)
        hour -= timedelta(hours=1)
    return buckets


def parse_query(params: Mapping[str, str], now: datetime) -> tuple[datetime, datetime, int]:
    """`from`, `to`, `top` (or its older name `limit`) of GET /buildings/{b}/audit, validated
    (every bad field named)."""
    errors: list[FieldError] = []

    def when(name: str, default: datetime) -> datetime:
        raw = params.get(name)
        if raw is None:  # absent; an empty value is a bad one (400), not the default
            return default
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            errors.append(FieldError(name, "must be an RFC 3339 time"))
            return default
        if value.tzinfo is None:
            errors.append(FieldError(name, "must have an offset or Z"))
            return default
        return value

    end = when("to", now)
    start = when("from", end - DEFAULT_RANGE)
    top = DEFAULT_LIMIT
    try:
        top = top_of(params, default=DEFAULT_LIMIT, maximum=MAX_LIMIT, alias="limit")
    except ValidationFailed as err:
        errors.extend(err.errors)
    if not errors and start > end:
        errors.append(FieldError("from", "must not be after 'to'"))
    if not errors and end - start > MAX_RANGE:
        errors.append(FieldError("from", "range must be at most 31 days"))
    if errors:
        raise ValidationFailed(errors)
    return start, end, top


def record_id(row: str) -> str:
    """A record's id in the API: its RowKey (inverted ms and random) with `.` for `|`."""
    return row.replace("|", ".")


_RECORD_ID = re.compile(r"(\d{16})\.([0-9a-f]{8})")


def record_key(building: str, value: str) -> tuple[str, str] | None:
    """(PartitionKey, RowKey) of a record id (the hour bucket follows from its time), or None."""
    match = _RECORD_ID.fullmatch(value)
    if match is None:
        return None
    try:
        when = _time_of(match.group(1))
    except (ValueError, OverflowError, OSError):  # a time no record can have (year > 9999)
        return None
    return partition_key(building, when), f"{match.group(1)}|{match.group(2)}"


class AuditLog:
    def __init__(self, table: Callable[[], TableClient]) -> None:
        self._table = table

    def record(self, entry: AuditEntry) -> None:
        """Write one record. A failed audit write is logged, never fails the Graph call it records."""
        entity = {
            "PartitionKey": partition_key(entry.building, entry.time),
            "RowKey": row_key(entry.time),
            "time": entry.time,
            "actor": entry.actor,
            "building": entry.building,
            "connection": entry.connection,
            "operation": entry.operation,
            "mailbox": entry.mailbox or "",
            "calendar": entry.calendar or "",
            "result": entry.result,
            "status": entry.status,
            "requestId": entry.request_id or "",
            "clientRequestId": entry.client_request_id or "",
        }
        try:
            self._table().create_entity(entity)
        except Exception as exc:
            logger.error(
                "audit write failed for building %s (%s): %s",
                entry.building, entry.operation, type(exc).__name__,
            )  # fmt: skip

    def read(
        self, building: str, params: Mapping[str, str], now: datetime
    ) -> Listed[dict[str, Any]]:
        """GET /buildings/{b}/audit: the query checked (`parse_query`), then one page of `query`
        after the keyset cursor (the last record's RowKey: RowKeys order records newest first
        across hour buckets, so "after" is exact)."""
        start, end, top = parse_query(params, now)
        cursor = decode_cursor(params.get(TOKEN_FIELD), 1)
        after = None
        if cursor is not None:
            if record_key(building, cursor[0]) is None:  # not the id of a record we list
                raise ValidationFailed(
                    [FieldError(TOKEN_FIELD, "is not a valid continuation token")]
                )
            after = cursor[0].replace(".", "|")
        found = self.query(building, start, end, top + 1, after=after)
        more = len(found) > top
        page = found[:top]
        token = encode_cursor([str(page[-1].id)]) if more else None
        return Listed([e.to_api() for e in page], token)

    def get(self, building: str, value: str) -> dict[str, Any]:
        """GET /buildings/{b}/audit/{id}: one record, or 404."""
        key = record_key(building, value)
        entity = None
        if key is not None:
            try:
                entity = self._table().get_entity(*key)
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:  # ResourceNotFoundError
                    raise NotFound(
                        "No such audit record in this building", reason="audit_not_found"
                    ) from exc
                raise StorageError(
                    "Storage is unavailable", log_detail=f"audit read: {type(exc).__name__}"
                ) from exc
        if entity is None:
            raise NotFound("No such audit record in this building", reason="audit_not_found")
        return _entry_from(entity).to_api()

    def query(
        self,
        building: str,
        start: datetime,
        end: datetime,
        limit: int,
        *,
        after: str | None = None,
    ) -> list[AuditEntry]:
        """Records of one building in [start, end], newest first, at most `limit`; with `after`
        (a RowKey), only the records listed after it."""
        found: list[AuditEntry] = []
        lo = row_key_bound(end)
        hi = row_key_bound(start)
        first_hour = end
        if after is not None:
            lo = max(lo, after + "~")  # strictly after: "~" sorts above every RowKey character
            first_hour = min(end, _time_of(after))
        try:
            table = self._table()
            for hour in hour_buckets(start, first_hour):
                entities = table.query_entities(
                    "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi",
                    parameters={"pk": partition_key(building, hour), "lo": lo, "hi": hi + "~"},
                )
                for entity in entities:
                    found.append(_entry_from(entity))
                    if len(found) >= limit:
                        return found
        except Exception as exc:
            raise StorageError(
                "Storage is unavailable", log_detail=f"audit query: {type(exc).__name__}"
            ) from exc
        return found


def _time_of(row: str) -> datetime:
    """The time of a RowKey (or of its inverted-milliseconds part)."""
    return datetime.fromtimestamp((_MAX_MS - int(row.split("|")[0])) / 1000, UTC)


def row_key_bound(when: datetime) -> str:
    return f"{_MAX_MS - int(when.timestamp() * 1000):016d}"


def _entry_from(e: Any) -> AuditEntry:
    t = e["time"]
    if isinstance(t, datetime) and t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return AuditEntry(
        time=t,
        actor=str(e.get("actor") or ""),
        building=str(e.get("building") or ""),
        connection=str(e.get("connection") or ""),
        operation=str(e.get("operation") or ""),
        mailbox=str(e.get("mailbox") or "") or None,
        calendar=str(e.get("calendar") or "") or None,
        result=str(e.get("result") or ""),
        status=int(e.get("status") or 0),
        request_id=str(e.get("requestId") or "") or None,
        client_request_id=str(e.get("clientRequestId") or "") or None,
        id=record_id(str(e["RowKey"])) if e.get("RowKey") else None,
    )
