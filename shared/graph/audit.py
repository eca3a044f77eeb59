"""The audit log: one record for every Microsoft Graph calendar read and write.

Table `audit` (DESIGN.md): PartitionKey `<building>|<UTC yyyymmddHH>` spreads writes over hour
buckets (no hot partition at a thousand buildings); RowKey = inverted milliseconds + random, so a
partition lists newest first. Records hold ids, operation names, status and Graph request ids —
never tokens, bodies or subjects.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.core.errors import FieldError, StorageError, ValidationFailed
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

    def to_api(self) -> dict[str, Any]:
        return {
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


def parse_query(params: dict[str, str], now: datetime) -> tuple[datetime, datetime, int]:
    """`from`, `to`, `limit` of GET /buildings/{b}/audit, validated (every bad field named)."""
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
    limit = DEFAULT_LIMIT
    if params.get("limit") is not None:
        try:
            limit = int(params["limit"])
        except ValueError:
            errors.append(FieldError("limit", "must be an integer"))
        else:
            if not 1 <= limit <= MAX_LIMIT:
                errors.append(FieldError("limit", f"must be between 1 and {MAX_LIMIT}"))
    if not errors and start > end:
        errors.append(FieldError("from", "must not be after 'to'"))
    if not errors and end - start > MAX_RANGE:
        errors.append(FieldError("from", "range must be at most 31 days"))
    if errors:
        raise ValidationFailed(errors)
    return start, end, limit


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

    def read(self, building: str, params: dict[str, str], now: datetime) -> list[AuditEntry]:
        """GET /buildings/{b}/audit: the query parameters checked (`parse_query`), then `query`."""
        start, end, limit = parse_query(params, now)
        return self.query(building, start, end, limit)

    def query(self, building: str, start: datetime, end: datetime, limit: int) -> list[AuditEntry]:
        """Records of one building in [start, end], newest first, at most `limit`."""
        found: list[AuditEntry] = []
        lo = row_key_bound(end)
        hi = row_key_bound(start)
        try:
            table = self._table()
            for hour in hour_buckets(start, end):
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
    )
