"""Platform bookings of mapped resources, written through to their Outlook calendars.

A booking is accepted by Table Storage, never by Graph: the slot is claimed atomically in the busy
table (`shared.availability.busy`, "no double booking, by construction"), the booking is committed, and only then
is the Outlook event written. A Graph failure after the commit never loses the booking: it answers
201 with `syncState: pending` and the outbox (`shared.bookings.outbox`) brings the event in line later.

Storage (`bookings` table, PartitionKey = building):

| RowKey | what |
|---|---|
| `<booking id>` | the booking (time-ordered, unguessable id: 48-bit ms time + 80 random bits, base32) |
| `idem|<sha256(Idempotency-Key)>` | the key's booking id and a hash of the request; inserted in one transaction with the booking |
| `s|<start>|<booking id>` | a copy of a confirmed booking, keyed by start time: the list route's range query (one partition, RowKey range) |

The main row and its `s|` copy are always written in one entity group transaction under the main
row's ETag, so the copy never disagrees with the booking.

Lifecycle (`status`): `creating` (rows written, slot being claimed: invisible to the API) →
`confirmed` → `cancelled`. `syncState` (of the Outlook event): `pending` → `synced` | `failed`
(with `lastError {reason, status, at}`). `version` counts changes; `syncedVersion` is the version
Outlook shows, so the worker knows what to do from state alone:

    cancelled, not synced .............. delete the event (404: already gone = done)
    confirmed, no event id ............. create it (transactionId = busy.transaction_id(id): a
                                         retry after an unknown outcome stays one event)
    confirmed, version > syncedVersion . PATCH start/end/subject

Create, step by step (each step's failure mode in brackets):
1. validate; the resource must exist (400), be free and mapped (422 `not_supported` / `not_mapped`);
2. with an Idempotency-Key: a known key returns the first booking (or 422 if the request differs);
3. insert the booking (`creating`) + key row in one transaction [key taken concurrently → replay];
4. enqueue a watchdog message (visible after `WATCHDOG`) [the process dies later → the worker
   finds the booking still `creating` and abandons it: event deleted, slot released, rows gone];
5. claim the slot in the busy table [overlap → rows removed, 409 `slot_taken`];
6. live check (`BB_LIVE_CHECK`): calendarView of the slot on the mapped calendar; a busy Outlook
   event that is not ours → slot released, 409;
7. POST the event; then calendarView again: an Outlook event that overlaps and was created before
   ours → ours deleted, slot released, 409 (Outlook won the race);
8. commit `confirmed` with the sync outcome: synced, or pending + an outbox message after a
   transient failure (429/5xx/timeout), or failed at once after a permanent one (403, 404,
   reauth, calendar no longer mapped).
Update commits first (after claiming the new slot `replacing` the old one, and a live check of
it), then tries the same write-through, falling back to the same outbox. Cancel commits first and
frees the slot only once the event is deleted: until then the room is still busy in Outlook, and
sync must keep recognising the event as ours (it knows our events by their platform block).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, cast

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.availability.busy import BOOKING_PROPERTY_ID, BusyBlock, BusyStore, transaction_id
from shared.availability.busy import booking_id_from_transaction as _booking_of_transaction
from shared.availability.service import iso_z, parse_instant, parse_range
from shared.bookings.outbox import OutboxMessage, Sender, backoff
from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    DependencyError,
    FieldError,
    Forbidden,
    GraphError,
    IdentityError,
    NotFound,
    Unprocessable,
    ValidationFailed,
)
from shared.core.validate import Checker, check_building, check_path, valid_id
from shared.graph.client import CalendarScope, GraphClient, RetryPolicy
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource

if TYPE_CHECKING:
    from shared.core.settings import Settings

logger = logging.getLogger(__name__)

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=14)
MAX_AHEAD = timedelta(days=730)
WATCHDOG = timedelta(minutes=5)  # longer than any HTTP invocation may run (230 s on Azure)
IDEMPOTENCY_WAIT_SECONDS = 5.0  # a replay waits this long for the first request to finish
IDEMPOTENCY_KEY_MAX = 255
TITLE_MAX = 255
_VIEW_PAGES = 5  # calendarView pages read per check (100 events each); more is not a room

Status = Literal["creating", "confirmed", "cancelled"]
SyncStateName = Literal["pending", "synced", "failed"]

# The request path may not hang on Graph: one retry at most, then the outbox takes over. The worker
# can afford a little more patience; its real backoff is the queue's visibility timeout.
REQUEST_POLICY = RetryPolicy(
    max_attempts=2, base_delay=0.2, max_retry_after=2.0, max_total_wait=2.0
)
WORKER_POLICY = RetryPolicy(
    max_attempts=3, base_delay=0.5, max_retry_after=10.0, max_total_wait=15.0
)


# --------------------------------------------------------------------------------------------
# Wire shapes
# --------------------------------------------------------------------------------------------


class BookerOut(TypedDict):
    email: str
    name: str


class ErrorOut(TypedDict, total=False):
    reason: str
    status: int
    code: str
    at: str


class AttributionOut(TypedDict):
    kind: str
    companyId: str | None
    userEmail: str | None
    reason: str


class BookingOut(TypedDict):
    id: str
    source: Literal["platform"]
    status: str
    syncState: str
    resourceId: str
    start: str
    end: str
    title: str
    booker: BookerOut
    outlookEventId: str | None
    companyId: str | None
    attribution: AttributionOut | None
    lastError: ErrorOut | None
    attempts: int
    createdAt: str
    updatedAt: str


class ExternalBookingOut(TypedDict):
    id: str
    source: Literal["outlook"]
    status: Literal["confirmed"]
    resourceId: str
    start: str
    end: str
    title: str | None
    showAs: str
    outlookEventId: str | None
    bookingId: str | None
    companyId: str | None
    attribution: AttributionOut | None


class BookingListOut(TypedDict):
    value: list[BookingOut | ExternalBookingOut]


# --------------------------------------------------------------------------------------------
# Domain
# --------------------------------------------------------------------------------------------

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # ascending in ASCII: ids sort by time


def new_booking_id(now: datetime, random_bits: int | None = None) -> str:
    """26 characters: 48-bit Unix milliseconds then 80 random bits, Crockford base32 (lower case).

    Time-ordered (RowKeys of one building sort by creation) and unguessable (80 bits of
    `os.urandom`), and a valid id of this API (`[a-z0-9]`).
    """
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = random_bits if random_bits is not None else int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True)
class BookingConfig:
    live_check: bool = True
    subject_template: str = "{resourceName} – {bookerName}"
    invite_booker: bool = False
    max_attempts: int = 8
    backoff_seconds: int = 30
    backoff_max_seconds: int = 900


@dataclass(frozen=True)
class Booking:
    building_id: str
    id: str
    resource_id: str
    start: datetime
    end: datetime
    title: str
    booker_email: str
    booker_name: str
    status: Status
    sync_state: SyncStateName
    created_at: datetime
    updated_at: datetime
    version: int = 1
    synced_version: int = 0
    attempts: int = 0
    last_error: dict[str, Any] | None = None
    outlook_event_id: str | None = None
    calendar_id: str | None = None  # the calendar the event was written to
    company_id: str | None = None
    attribution: dict[str, Any] | None = None
    idempotency_row: str | None = None
    request_hash: str | None = None

    def block(self) -> BusyBlock:
        return BusyBlock(
            building_id=self.building_id,
            resource_id=self.resource_id,
            block_id=self.id,
            start=self.start,
            end=self.end,
            source="platform",
            booking_id=self.id,
            company_id=self.company_id,
        )

    @property
    def in_sync(self) -> bool:
        return self.sync_state == "synced" and self.synced_version >= self.version


@dataclass(frozen=True)
class CreateRequest:
    resource_id: str
    start: datetime
    end: datetime
    title: str
    booker_email: str
    booker_name: str

    def fingerprint(self) -> str:
        """What a repeated Idempotency-Key must match (the same booking asked for again)."""
        raw = json.dumps(
            [
                self.resource_id,
                iso_z(self.start),
                iso_z(self.end),
                self.title,
                self.booker_email,
                self.booker_name,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Validation (pure)
# --------------------------------------------------------------------------------------------


_FRACTION = re.compile(r"\.(\d+)")


def _whole_seconds(value: str) -> bool:
    """No fraction of a second other than zeros (read from the text: `parse_instant` keeps only
    microseconds, so `.0000001` would otherwise pass as whole)."""
    fraction = _FRACTION.search(value)
    return fraction is None or fraction.group(1).strip("0") == ""


def _times(check: Checker, body: Mapping[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """Start and end: whole seconds (Outlook and our answers carry seconds, so a fraction would
    be a booking that differs from what everyone is shown), at least `MIN_DURATION` apart (a
    shorter event is refused by Outlook, after we had accepted it)."""
    found: dict[str, datetime] = {}
    for name in ("start", "end"):
        if body.get(name) is None:
            check.add(name, "is required")
            continue
        try:
            found[name] = parse_instant(name, body[name])
        except ValidationFailed as err:
            check.errors.extend(err.errors)
            continue
        if not _whole_seconds(body[name]):
            check.add(name, "must be a whole second (no fraction of a second)")
            del found[name]
    if len(found) < 2:
        return now, now
    start, end = found["start"], found["end"]
    if start >= end:
        check.add("end", "must be after start")
    elif end - start < MIN_DURATION:
        check.add("end", "must be at least 1 minute after start")
    elif end - start > MAX_DURATION:
        check.add("end", f"must be at most {MAX_DURATION.days} days after start")
    if end <= now:
        check.add("end", "must be in the future")
    if start > now + MAX_AHEAD:
        check.add("start", f"must be within {MAX_AHEAD.days} days from now")
    return start, end


def _title(check: Checker, body: Mapping[str, Any], default: str = "") -> str:
    value = body.get("title", default)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > TITLE_MAX or not value.isprintable():
        check.add("title", f"must be at most {TITLE_MAX} printable characters")
        return default
    return value.strip()


def parse_create(body: Mapping[str, Any], now: datetime) -> CreateRequest:
    check = Checker(body)
    check.only(("resourceId", "start", "end", "title", "booker"))
    resource_id = body.get("resourceId")
    if not isinstance(resource_id, str) or not valid_id(resource_id):
        check.add("resourceId", "must be 1–64 characters of A-Z a-z 0-9 . _ -")
    start, end = _times(check, body, now)
    title = _title(check, body)
    booker = body.get("booker")
    email = name = ""
    if not isinstance(booker, Mapping):
        check.add("booker", "is required: {email, name}")
    else:
        inner = Checker(booker, prefix="booker.")
        inner.only(("email", "name"))
        email = inner.email("email", booker.get("email")) or ""
        name = inner.name("name")
        check.errors.extend(inner.errors)
    check.done()
    return CreateRequest(str(resource_id), start, end, title, email, name)


def parse_update(body: Mapping[str, Any], current: Booking, now: datetime) -> Booking:
    """The booking as the PATCH body changes it (start, end, title), validated as a whole."""
    check = Checker(body)
    check.only(("start", "end", "title"))
    if not body:
        check.add("body", "must change start, end or title")
    merged = {
        "start": body.get("start", iso_z(current.start)),
        "end": body.get("end", iso_z(current.end)),
    }
    start, end = _times(check, merged, now)
    title = _title(check, body, current.title)
    check.done()
    return replace(current, start=start, end=end, title=title)


def idempotency_row(key: str | None) -> str | None:
    """`idem|sha256(key)`, or None without a key; 400 for an unusable key."""
    if key is None or key == "":
        return None
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationFailed(
            [FieldError("Idempotency-Key", f"must be 1–{IDEMPOTENCY_KEY_MAX} printable characters")]
        )
    return tablestore.join_key("idem", hashlib.sha256(key.encode()).hexdigest())


def subject_of(
    template: str, *, resource_name: str, booker_name: str, booker_email: str, title: str
) -> str:
    """The event subject; the template was checked at settings load (only these placeholders)."""
    text = template.format(
        resourceName=resource_name, bookerName=booker_name, bookerEmail=booker_email, title=title
    )
    return " ".join(text.split())[:255] or resource_name


def event_time(instant: datetime, zone_name: str) -> dict[str, str]:
    """`dateTimeTimeZone` in the resource's IANA zone; UTC when the wall time is ambiguous (the
    repeated hour of a DST change) or the zone unknown, so Graph never has to guess."""
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = None
    if zone is not None:
        local = instant.astimezone(zone)
        wall = local.replace(tzinfo=None)
        other_fold = wall.replace(fold=1 - local.fold).replace(tzinfo=zone)
        if other_fold.utcoffset() == local.utcoffset():  # one reading only
            return {"dateTime": wall.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone_name}
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    return {"dateTime": utc.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def parse_graph_time(value: Any) -> datetime | None:
    """A Graph `dateTimeTimeZone` (we ask for UTC) or an ISO string → aware UTC."""
    if isinstance(value, Mapping):
        text = str(value.get("dateTime") or "")
        zone = str(value.get("timeZone") or "UTC")
    else:
        text, zone = str(value or ""), "UTC"
    if not text:
        return None
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    if zone.upper() not in ("UTC", "Z"):
        try:
            return parsed.replace(tzinfo=zoneinfo.ZoneInfo(zone)).astimezone(UTC)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------

_INDEX = "s"


def _time_key(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def index_row(booking: Booking) -> str:
    return tablestore.join_key(_INDEX, _time_key(booking.start), booking.id)


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
            Status, status if status in ("creating", "confirmed", "cancelled") else "confirmed"
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
    """The `bookings` table (module docstring): every write is one entity group transaction."""

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
        listed_before = previous.status == "confirmed"
        listed_now = booking.status == "confirmed"
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

    def between(self, building_id: str, start: datetime, end: datetime) -> list[Booking]:
        """Confirmed bookings overlapping [start, end): one RowKey range of the `s|` copies."""
        low = tablestore.join_key(_INDEX, _time_key(start - MAX_DURATION))
        high = tablestore.join_key(_INDEX, _time_key(end))
        entities = tablestore.query_all(
            self.table,
            "PartitionKey eq @b and RowKey ge @lo and RowKey lt @hi",
            {"b": building_id, "lo": low, "hi": high},
        )
        found = [from_entity(e) for e in entities]
        return [b for b in found if b.start < end and start < b.end and b.status == "confirmed"]


# --------------------------------------------------------------------------------------------
# Collaborators
# --------------------------------------------------------------------------------------------


class ConnectionSource(Protocol):
    def get(self, building_id: str) -> Any: ...


@dataclass(frozen=True)
class BookingDeps:
    tables: TableSource
    busy: BusyStore
    graph: GraphClient  # for the request path (short retry policy)
    worker_graph: GraphClient  # for the outbox worker
    connections: ConnectionSource
    outbox: Sender
    config: BookingConfig = field(default_factory=BookingConfig)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = time.sleep

    @property
    def bookings(self) -> BookingTable:
        return BookingTable(self.tables(tablestore.BOOKINGS))


def with_policy(graph: GraphClient, policy: RetryPolicy) -> GraphClient:
    """The same Graph client (guard, tokens, audit, per-mailbox limit) with another retry policy."""
    client = GraphClient(
        graph.http,
        graph.base_url,
        graph.tokens,
        graph.audit,
        policy=policy,
        sleep=graph.sleep,
        now=graph.now,
        guard=graph.guard,
    )
    # One in-process limit of 4 per mailbox, whichever policy a request uses (Outlook counts
    # requests per app and mailbox, not per client object).
    client._slots = graph._slots
    client._slots_lock = graph._slots_lock
    return client


_deps: BookingDeps | None = None
_deps_graph: GraphClient | None = None  # the process client the cached deps were built on
_deps_lock = threading.Lock()


def default_booking_deps() -> BookingDeps:
    """The process's collaborators, rebuilt when the settings or the Graph client change."""
    global _deps, _deps_graph
    from shared.bookings.outbox import QUEUE, Outbox
    from shared.connect.connections import default_deps
    from shared.core.settings import get_settings
    from shared.graph.client import default_graph
    from shared.storage import clients

    settings = get_settings()
    graph = default_graph()
    with _deps_lock:
        if _deps is not None and _deps_graph is graph and _deps.config == _config(settings):
            return _deps
        _deps_graph = graph
        _deps = BookingDeps(
            tables=clients.table,
            busy=BusyStore(clients.table(tablestore.BUSY)),
            graph=with_policy(graph, REQUEST_POLICY),
            worker_graph=with_policy(graph, WORKER_POLICY),
            connections=default_deps().connections,
            outbox=Outbox(clients.queue(QUEUE)),
            config=_config(settings),
        )
        return _deps


def _config(settings: Settings) -> BookingConfig:
    return BookingConfig(
        live_check=settings.live_check,
        subject_template=settings.booking_subject,
        invite_booker=settings.invite_booker,
        max_attempts=settings.outbox_max_attempts,
        backoff_seconds=settings.outbox_backoff_seconds,
        backoff_max_seconds=settings.outbox_backoff_max_seconds,
    )


# --------------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------------


def _attribution_view(value: Any) -> AttributionOut | None:
    if not isinstance(value, Mapping) or not value.get("kind"):
        return None
    return {
        "kind": str(value["kind"]),
        "companyId": value.get("companyId"),
        "userEmail": value.get("userEmail"),
        "reason": str(value.get("reason") or ""),
    }


def booking_view(booking: Booking) -> BookingOut:
    error = booking.last_error
    return {
        "id": booking.id,
        "source": "platform",
        "status": booking.status,
        "syncState": booking.sync_state,
        "resourceId": booking.resource_id,
        "start": iso_z(booking.start),
        "end": iso_z(booking.end),
        "title": booking.title,
        "booker": {"email": booking.booker_email, "name": booking.booker_name},
        "outlookEventId": booking.outlook_event_id,
        "companyId": booking.company_id,
        "attribution": _attribution_view(booking.attribution),
        "lastError": cast(ErrorOut, dict(error)) if isinstance(error, Mapping) else None,
        "attempts": booking.attempts,
        "createdAt": iso_z(booking.created_at),
        "updatedAt": iso_z(booking.updated_at),
    }


def external_view(block: BusyBlock) -> ExternalBookingOut:
    return {
        "id": block.block_id,
        "source": "outlook",
        "status": "confirmed",
        "resourceId": block.resource_id,
        "start": iso_z(block.start),
        "end": iso_z(block.end),
        "title": block.subject,
        "showAs": block.show_as,
        "outlookEventId": block.outlook_event_id,
        "bookingId": block.booking_id,
        "companyId": block.company_id,
        "attribution": _attribution_view(block.attribution),
    }


# --------------------------------------------------------------------------------------------
# Graph: the event of a booking
# --------------------------------------------------------------------------------------------


class WriteFailed(Exception):
    """One write-through attempt failed; `transient` says whether the outbox should retry."""

    def __init__(self, reason: str, *, transient: bool, status: int = 0, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.code = code

    def record(self, now: datetime, *, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": reason or self.reason,
            "status": self.status,
            "at": iso_z(now),
        }
        if self.code:
            out["code"] = self.code
        return out


def write_failure(err: BaseException, *, creating: bool) -> WriteFailed:
    """Classify a failure of a Graph write: what retries (429/5xx/timeouts, storage hiccups) and
    what a person must fix (403, 404, reauth, an unmapped calendar)."""
    if isinstance(err, WriteFailed):
        return err
    if isinstance(err, GraphError):
        failure = err.failure
        if err.transient:
            return WriteFailed(
                "graph_unavailable", transient=True, status=failure.status, code=failure.code
            )
        reason = {
            401: "reauth_required",
            403: "access_denied",
            404: "calendar_not_found" if creating else "event_not_found",
        }.get(failure.status, "graph_refused")
        return WriteFailed(reason, transient=False, status=failure.status, code=failure.code)
    if isinstance(err, IdentityError):
        reason = "reauth_required" if err.reauth else err.error
        return WriteFailed(reason, transient=err.transient, code=err.error)
    if isinstance(err, Forbidden):  # the mapped-calendar guard
        return WriteFailed(err.reason or "forbidden", transient=False, status=403)
    if isinstance(err, DependencyError):
        return WriteFailed(err.reason or "dependency_unavailable", transient=err.transient)
    raise err


@dataclass(frozen=True)
class Target:
    """Where a booking's event lives: the resource, its mapped calendar, a guarded Graph scope."""

    resource: Entity
    calendar: MappedCalendar
    scope: CalendarScope

    @property
    def name(self) -> str:
        return str(self.resource.get("name") or self.resource["RowKey"])

    @property
    def time_zone(self) -> str:
        return str(self.resource.get("timeZone") or "UTC")


def _resource(tables: TableSource, building_id: str, resource_id: str) -> Entity | None:
    return tablestore.get_entity(tables(tablestore.RESOURCES), building_id, resource_id)


def target_for(deps: BookingDeps, graph: GraphClient, resource: Entity) -> Target:
    """The resource's write target, or WriteFailed (permanent) when it cannot have one."""
    calendar = MappedCalendar.from_entity(resource)
    if calendar is None:
        raise WriteFailed("not_mapped", transient=False)
    connection = deps.connections.get(str(resource["PartitionKey"]))
    if connection is None:
        raise WriteFailed("not_connected", transient=False)
    if connection.status != "connected":
        raise WriteFailed("reauth_required", transient=False)
    return Target(resource, calendar, graph.for_calendar(connection, calendar))


def event_payload(
    booking: Booking, resource_name: str, time_zone: str, config: BookingConfig, *, creating: bool
) -> dict[str, Any]:
    """The Outlook event of a booking: subject per template, times in the resource's zone, the
    resource as location, our marker (transactionId + extended property), no attendees unless
    `invite_booker` (nobody gets mail we were not asked to send)."""
    body: dict[str, Any] = {
        "subject": subject_of(
            config.subject_template,
            resource_name=resource_name,
            booker_name=booking.booker_name,
            booker_email=booking.booker_email,
            title=booking.title,
        ),
        "start": event_time(booking.start, time_zone),
        "end": event_time(booking.end, time_zone),
        "location": {"displayName": resource_name},
        "showAs": "busy",
        "body": {
            "contentType": "text",
            "content": f"Booked through BookingBridge by {booking.booker_name}.",
        },
    }
    if creating:
        body["transactionId"] = transaction_id(booking.id)
        body["isReminderOn"] = False
        body["singleValueExtendedProperties"] = [{"id": BOOKING_PROPERTY_ID, "value": booking.id}]
        if config.invite_booker:
            body["attendees"] = [
                {
                    "emailAddress": {"address": booking.booker_email, "name": booking.booker_name},
                    "type": "required",
                }
            ]
    return body


def find_event(target: Target, booking_id: str) -> str | None:
    """The id of the booking's event in the mapped calendar (by our extended property), if any."""
    prop_filter = (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{BOOKING_PROPERTY_ID}' "
        f"and ep/value eq '{booking_id}')"
    )
    found = target.scope.get_json(
        target.calendar.calendar_path("/events"),
        params={"$filter": prop_filter, "$select": "id", "$top": "5"},
        operation="booking.find",
    )
    for event in found.get("value", []) if isinstance(found, Mapping) else []:
        if event.get("id"):
            return str(event["id"])
    return None


def create_event(
    target: Target, booking: Booking, config: BookingConfig, actor: str
) -> dict[str, Any]:
    """POST the event (idempotent through its transactionId); returns Graph's event."""
    payload = event_payload(booking, target.name, target.time_zone, config, creating=True)
    try:
        event: dict[str, Any] = target.scope.request(
            "POST",
            target.calendar.calendar_path("/events"),
            json_body=payload,
            operation="booking.create",
            actor=actor,
        ).json()
        return event
    except GraphError as err:
        if err.failure.code != "ErrorDuplicateTransactionId":
            raise
    # Created before with other details (the booking changed between attempts): find and update.
    event_id = find_event(target, booking.id)
    if event_id is None:
        raise WriteFailed("duplicate_transaction", transient=False, status=400)
    return update_event(target, replace(booking, outlook_event_id=event_id), config, actor)


def update_event(
    target: Target, booking: Booking, config: BookingConfig, actor: str
) -> dict[str, Any]:
    payload = event_payload(booking, target.name, target.time_zone, config, creating=False)
    event: dict[str, Any] = target.scope.request(
        "PATCH",
        target.calendar.calendar_path(f"/events/{booking.outlook_event_id}"),
        json_body=payload,
        operation="booking.update",
        actor=actor,
    ).json()
    return event


def delete_event(target: Target, event_id: str, actor: str) -> None:
    """DELETE our event (we organise our own writes, GRAPH.md §4.6); gone already is success."""
    try:
        target.scope.request(
            "DELETE",
            target.calendar.calendar_path(f"/events/{event_id}"),
            operation="booking.delete",
            actor=actor,
        )
    except GraphError as err:
        if err.failure.status != 404:
            raise


@dataclass(frozen=True)
class OutlookEvent:
    id: str
    start: datetime
    end: datetime
    created: datetime | None


def outlook_conflicts(
    target: Target, start: datetime, end: datetime, *, own_event_id: str | None
) -> list[OutlookEvent]:
    """Busy Outlook events of the mapped calendar overlapping [start, end) that are not ours.

    Ours (any BookingBridge transactionId) are governed by the busy table, not by this check.
    """
    params: dict[str, str] | None = {
        "startDateTime": iso_z(start),
        "endDateTime": iso_z(end),
        "$top": "100",
    }
    path = target.calendar.calendar_path("/calendarView")
    found: list[OutlookEvent] = []
    for _ in range(_VIEW_PAGES):
        page = target.scope.get_json(
            path,
            params=params,
            headers={"Prefer": 'outlook.timezone="UTC"'},
            operation="booking.check",
        )
        for event in page.get("value", []):
            if (
                event.get("id") == own_event_id
                or event.get("isCancelled")
                or str(event.get("showAs") or "busy") == "free"
                or _booking_of_transaction(event.get("transactionId")) is not None
            ):
                continue
            e_start, e_end = (
                parse_graph_time(event.get("start")),
                parse_graph_time(event.get("end")),
            )
            if e_start is None or e_end is None or not (e_start < end and start < e_end):
                continue
            found.append(
                OutlookEvent(
                    str(event.get("id")),
                    e_start,
                    e_end,
                    parse_graph_time(event.get("createdDateTime")),
                )
            )
        next_link = page.get("@odata.nextLink")
        if not next_link:
            break
        path, params = str(next_link), None
    return found


# --------------------------------------------------------------------------------------------
# Services: create, read, list, update, cancel
# --------------------------------------------------------------------------------------------


def _require_bookable(resource: Entity | None) -> Entity:
    if resource is None:
        raise ValidationFailed([FieldError("resourceId", "is not a resource of this building")])
    if resource.get("paid"):
        raise Unprocessable(
            "Paid resources cannot be booked through the calendar integration",
            reason="not_supported",
        )
    if MappedCalendar.from_entity(resource) is None:
        raise Unprocessable("The resource is not mapped to a calendar", reason="not_mapped")
    return resource


def _attribution(
    tables: TableSource, building_id: str, email: str
) -> tuple[str | None, dict[str, Any]]:
    from shared.directory.people import load_attributor

    found = load_attributor(tables, building_id)(email)
    return found.company_id, {
        "kind": found.kind,
        "companyId": found.company_id,
        "userEmail": found.user_email,
        "reason": found.reason,
    }


def create_booking(
    deps: BookingDeps,
    building_id: str,
    body: Mapping[str, Any],
    *,
    idempotency_key: str | None = None,
    actor: str = "api",
) -> tuple[BookingOut, bool]:
    """Create a booking (module docstring); returns (view, created). created is False when an
    Idempotency-Key replays an earlier request."""
    check_building(building_id)
    now = deps.now()
    request = parse_create(body, now)
    key_row = idempotency_row(idempotency_key)
    resource = _require_bookable(_resource(deps.tables, building_id, request.resource_id))
    fingerprint = request.fingerprint()
    if key_row is not None:
        replayed = _replay(deps, building_id, key_row, fingerprint)
        if replayed is not None:
            return replayed, False
    company_id, attribution = _attribution(deps.tables, building_id, request.booker_email)
    booking = Booking(
        building_id=building_id,
        id=new_booking_id(now),
        resource_id=request.resource_id,
        start=request.start,
        end=request.end,
        title=request.title,
        booker_email=request.booker_email,
        booker_name=request.booker_name,
        status="creating",
        sync_state="pending",
        created_at=now,
        updated_at=now,
        company_id=company_id,
        attribution=attribution,
        idempotency_row=key_row,
        request_hash=fingerprint if key_row else None,
    )
    table = deps.bookings
    try:
        etag = table.insert(booking)
    except Conflict:
        if key_row is None:
            raise
        replayed = _replay(deps, building_id, key_row, fingerprint)
        if replayed is None:
            raise
        return replayed, False
    _send(deps, booking, "check", delay=int(WATCHDOG.total_seconds()))
    try:
        deps.busy.claim(booking.block())
    except BaseException:
        table.discard(booking)
        raise
    return _first_write(deps, booking, etag, resource, actor), True


def _replay(
    deps: BookingDeps, building_id: str, key_row: str, fingerprint: str
) -> BookingOut | None:
    """The booking an Idempotency-Key already made (waiting briefly while it is being made)."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    while True:
        record = deps.bookings.key_record(building_id, key_row)
        if record is None:
            return None
        if record.get("requestHash") != fingerprint:
            raise Unprocessable(
                "This Idempotency-Key was used for a different request",
                reason="idempotency_key_reused",
            )
        loaded = deps.bookings.get(building_id, str(record.get("keyOf")))
        if loaded is None:
            return None  # the first request failed and left nothing: start afresh
        booking, _ = loaded
        if booking.status != "creating":
            return booking_view(booking)
        if time.monotonic() >= deadline:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress; retry shortly",
                reason="request_in_progress",
            )
        deps.sleep(0.1)


def _reject(deps: BookingDeps, booking: Booking) -> Conflict:
    """Undo a booking that lost to an Outlook event: slot released, rows removed."""
    deps.busy.remove(booking.block())
    deps.bookings.discard(booking)
    return Conflict("The resource is already booked in Outlook at that time", reason="slot_taken")


def _first_write(
    deps: BookingDeps, booking: Booking, etag: str, resource: Entity, actor: str
) -> BookingOut:
    """Steps 6–8 of a create (module docstring)."""
    now = deps.now()
    confirmed = replace(booking, status="confirmed", updated_at=now)
    target: Target | None = None
    lost_to_outlook = False
    try:
        target = target_for(deps, deps.graph, resource)
        if deps.config.live_check and outlook_conflicts(
            target, booking.start, booking.end, own_event_id=None
        ):
            lost_to_outlook = True
        else:
            event = create_event(target, booking, deps.config, actor)
            confirmed = replace(
                confirmed,
                sync_state="synced",
                synced_version=booking.version,
                outlook_event_id=str(event["id"]),
                calendar_id=target.calendar.calendar_id,
            )
            lost_to_outlook = _created_after_an_outlook_event(target, booking, event)
    except (WriteFailed, GraphError, IdentityError, Forbidden, DependencyError) as err:
        confirmed = failed_attempt(deps.config, confirmed, write_failure(err, creating=True), now)
    if lost_to_outlook:
        if target is not None and confirmed.outlook_event_id:
            _delete_quietly(target, confirmed.outlook_event_id, actor)
        raise _reject(deps, booking)
    try:
        deps.bookings.save(confirmed, etag, booking)
    except Conflict:
        # Only the watchdog touches a `creating` booking, and only minutes later: this request
        # outlived it and its rows are gone, so nothing was booked. Undo what is ours.
        if target is not None and confirmed.outlook_event_id:
            _delete_quietly(target, confirmed.outlook_event_id, actor)
        deps.busy.remove(booking.block())
        raise
    _after_attempt(deps, confirmed, "create")
    return booking_view(confirmed)


def _created_after_an_outlook_event(
    target: Target, booking: Booking, event: Mapping[str, Any]
) -> bool:
    """Step 7: did an Outlook event for the slot exist before ours (Outlook won the race)?"""
    try:
        others = outlook_conflicts(
            target, booking.start, booking.end, own_event_id=str(event["id"])
        )
    except (GraphError, IdentityError, Forbidden):
        return False  # ours is written and the slot was free a moment ago: keep it
    ours = parse_graph_time(event.get("createdDateTime"))
    return any(o.created is not None and ours is not None and o.created < ours for o in others)


def _delete_quietly(target: Target, event_id: str, actor: str) -> None:
    try:
        delete_event(target, event_id, actor)
    except BookingBridgeError:
        logger.warning("event of a rolled-back booking not deleted; sync will mirror it")


def failed_attempt(
    config: BookingConfig, booking: Booking, failed: WriteFailed, now: datetime
) -> Booking:
    """The booking after a failed write-through attempt: pending (retry) or failed (done)."""
    attempts = booking.attempts + 1
    if failed.transient and attempts < config.max_attempts:
        state: SyncStateName = "pending"
        error = failed.record(now)
    else:
        state = "failed"
        error = failed.record(now, reason=None if not failed.transient else "retries_exhausted")
        if failed.transient:
            error["code"] = failed.code or failed.reason
    logger.warning(
        "booking %s: write-through attempt %d %s (%s %s)",
        booking.id,
        attempts,
        state,
        failed.reason,
        failed.status,
    )
    return replace(booking, sync_state=state, attempts=attempts, last_error=error)


def _after_attempt(deps: BookingDeps, booking: Booking, op: str) -> None:
    """Schedule the next attempt of a pending booking; surface a failed one in sync health."""
    if booking.sync_state == "pending":
        delay = backoff(
            max(1, booking.attempts),
            base=deps.config.backoff_seconds,
            ceiling=deps.config.backoff_max_seconds,
        )
        _send(deps, booking, op, delay=delay)
    elif booking.sync_state == "failed":
        _note_on_resource(deps, booking)


def _send(deps: BookingDeps, booking: Booking, op: str, *, delay: int) -> None:
    deps.outbox.send(
        OutboxMessage(booking.building_id, booking.id, cast(Any, op)), delay_seconds=delay
    )


def _note_on_resource(deps: BookingDeps, booking: Booking) -> None:
    """A failed write-through shows in the resource's sync health (`lastWriteError`).

    A MERGE of our own property: it never overwrites the mapping's or sync's fields, and the
    resource PUT keeps properties it does not own.
    """
    error = dict(booking.last_error or {})
    error["bookingId"] = booking.id
    try:
        with tablestore.storage_errors("note write error"):
            deps.tables(tablestore.RESOURCES).update_entity(
                {
                    "PartitionKey": booking.building_id,
                    "RowKey": booking.resource_id,
                    "lastWriteError": tablestore.json_property(error),
                },
                mode=UpdateMode.MERGE,
            )
    except BookingBridgeError:
        logger.warning("booking %s: could not note the write error on its resource", booking.id)


def get_booking(deps: BookingDeps, building_id: str, booking_id: str) -> BookingOut:
    check_path(building=building_id, bookingId=booking_id)
    return booking_view(_visible(deps, building_id, booking_id)[0])


def _visible(deps: BookingDeps, building_id: str, booking_id: str) -> tuple[Booking, str]:
    loaded = deps.bookings.get(building_id, booking_id)
    if loaded is None or loaded[0].status == "creating":
        raise NotFound("No such booking in this building", reason="booking_not_found")
    return loaded


def list_bookings(deps: BookingDeps, building_id: str, params: Mapping[str, str]) -> BookingListOut:
    """Platform bookings (the `s|` range) and Outlook bookings (busy blocks), ordered by start."""
    check_building(building_id)
    errors: list[FieldError] = []
    start = end = deps.now()
    try:
        start, end = parse_range(params)
    except ValidationFailed as err:
        errors.extend(err.errors)
    source = params.get("source") or "all"
    if source not in ("platform", "outlook", "all"):
        errors.append(FieldError("source", "must be one of all, outlook, platform"))
    resource_id = params.get("resourceId") or None
    if resource_id is not None and not valid_id(resource_id):
        errors.append(FieldError("resourceId", "must be 1–64 characters of A-Z a-z 0-9 . _ -"))
    if errors:
        raise ValidationFailed(errors)
    items: list[BookingOut | ExternalBookingOut] = []
    if source in ("platform", "all"):
        items.extend(
            booking_view(b)
            for b in deps.bookings.between(building_id, start, end)
            if resource_id is None or b.resource_id == resource_id
        )
    if source in ("outlook", "all"):
        blocks = deps.busy.blocks(
            building_id,
            start,
            end,
            resource_ids=[resource_id] if resource_id else None,
            source="outlook",
        )
        items.extend(external_view(b) for b in blocks)
    items.sort(key=lambda i: (i["start"], i["resourceId"], i["id"]))
    return {"value": items}


def update_booking(
    deps: BookingDeps,
    building_id: str,
    booking_id: str,
    body: Mapping[str, Any],
    *,
    actor: str = "api",
) -> BookingOut:
    """Move or retitle a booking: new slot claimed atomically (409 on overlap), then written through."""
    check_path(building=building_id, bookingId=booking_id)
    current, etag = _visible(deps, building_id, booking_id)
    if current.status == "cancelled":
        raise Conflict("The booking is cancelled", reason="booking_cancelled")
    now = deps.now()
    wanted = parse_update(body, current, now)
    if (wanted.start, wanted.end, wanted.title) == (current.start, current.end, current.title):
        return booking_view(current)
    moved = (wanted.start, wanted.end) != (current.start, current.end)
    updated = replace(
        wanted,
        version=current.version + 1,
        sync_state="pending",
        attempts=0,
        last_error=None,
        updated_at=now,
    )
    resource = _resource(deps.tables, building_id, current.resource_id)
    _send(deps, updated, "check", delay=int(WATCHDOG.total_seconds()))
    if moved:
        deps.busy.claim(updated.block(), replacing=current.block())
        try:
            if deps.config.live_check and resource is not None:
                _live_check_for_move(deps, resource, updated)
        except Conflict:
            _restore_slot(deps, current, updated)
            raise
    try:
        etag = deps.bookings.save(updated, etag, current)
    except Conflict:
        if moved:
            _restore_slot(deps, current, updated)
        raise Conflict(
            "The booking was changed concurrently; read it and try again",
            reason="concurrent_update",
        ) from None
    return booking_view(_write_through(deps, updated, etag, "update", actor))


def _live_check_for_move(deps: BookingDeps, resource: Entity, updated: Booking) -> None:
    try:
        target = target_for(deps, deps.graph, resource)
        clash = outlook_conflicts(
            target, updated.start, updated.end, own_event_id=updated.outlook_event_id
        )
    except (WriteFailed, GraphError, IdentityError, Forbidden, DependencyError):
        return  # no live answer: the busy table already decided; the outbox will sync
    if clash:
        raise Conflict(
            "The resource is already booked in Outlook at that time", reason="slot_taken"
        )


def _restore_slot(deps: BookingDeps, current: Booking, attempted: Booking) -> None:
    """Put the booking's slot back where the stored booking says it is (after a failed move)."""
    try:
        deps.busy.claim(current.block(), replacing=attempted.block())
    except BookingBridgeError:
        logger.warning("booking %s: slot not restored; the outbox check repairs it", current.id)


def cancel_booking(
    deps: BookingDeps, building_id: str, booking_id: str, *, actor: str = "api"
) -> None:
    """Cancel: the booking is marked cancelled at once; its event is deleted, then its slot freed
    (right away, or by the outbox when Graph is unavailable)."""
    check_path(building=building_id, bookingId=booking_id)
    for _ in range(3):
        current, etag = _visible(deps, building_id, booking_id)
        if current.status == "cancelled":
            return
        cancelled = replace(
            current,
            status="cancelled",
            version=current.version + 1,
            sync_state="pending",
            attempts=0,
            last_error=None,
            updated_at=deps.now(),
        )
        _send(deps, cancelled, "check", delay=int(WATCHDOG.total_seconds()))
        try:
            etag = deps.bookings.save(cancelled, etag, current)
        except Conflict:
            continue
        # The slot is freed once the event is gone (in `_write_through`), not before: until then
        # the room is still busy in Outlook, and sync must keep recognising the event as ours.
        _write_through(deps, cancelled, etag, "cancel", actor)
        return
    raise Conflict(
        "The booking is being changed concurrently; try again", reason="concurrent_update"
    )


# --------------------------------------------------------------------------------------------
# Write-through (request path and worker)
# --------------------------------------------------------------------------------------------


def apply(deps: BookingDeps, graph: GraphClient, booking: Booking, actor: str) -> Booking:
    """Bring the booking's Outlook event in line with the booking (derived from state alone);
    returns the booking as synced, or raises (WriteFailed or a Graph/identity error)."""
    resource = _resource(deps.tables, booking.building_id, booking.resource_id)
    if resource is None:
        raise WriteFailed("resource_not_found", transient=False)
    target = target_for(deps, graph, resource)
    event_id = booking.outlook_event_id
    if booking.calendar_id and booking.calendar_id != target.calendar.calendar_id:
        raise WriteFailed("calendar_changed", transient=False)
    if booking.status == "cancelled":
        if event_id is None and booking.synced_version == 0:
            event_id = find_event(target, booking.id)  # a create whose answer was lost
        if event_id is not None:
            delete_event(target, event_id, actor)
    elif event_id is None:
        event = create_event(target, booking, deps.config, actor)
        event_id = str(event["id"])
    else:
        try:
            update_event(target, booking, deps.config, actor)
        except GraphError as err:
            if err.failure.status == 404:
                raise WriteFailed(
                    "event_not_found", transient=False, status=404, code=err.failure.code
                ) from err
            raise
    return replace(
        booking,
        sync_state="synced",
        synced_version=booking.version,
        attempts=0,
        last_error=None,
        outlook_event_id=event_id,
        calendar_id=target.calendar.calendar_id,
    )


def _write_through(
    deps: BookingDeps, booking: Booking, etag: str, op: str, actor: str, *, worker: bool = False
) -> Booking:
    """One attempt, then commit the outcome under the ETag (a lost race is left to the worker)."""
    now = deps.now()
    try:
        result = apply(deps, deps.worker_graph if worker else deps.graph, booking, actor)
    except (WriteFailed, GraphError, IdentityError, Forbidden, DependencyError) as err:
        failed = write_failure(err, creating=booking.outlook_event_id is None)
        result = failed_attempt(deps.config, booking, failed, now)
    try:
        deps.bookings.save(result, etag, booking)
    except Conflict:
        # Changed meanwhile (another request or the worker): whoever changed it scheduled its own
        # write-through; a check message makes sure the event ends up matching the final state.
        if not worker:
            _send(deps, booking, "check", delay=0)
        return booking
    if result.status == "cancelled" and result.sync_state != "pending":
        deps.busy.remove(result.block())  # the event is gone (or never will be): free the slot
    _after_attempt(deps, result, op)
    return result


# --------------------------------------------------------------------------------------------
# The outbox worker
# --------------------------------------------------------------------------------------------


def process_outbox(deps: BookingDeps, message: OutboxMessage) -> str:
    """Handle one outbox message; returns what happened (for the log). Never raises for a
    booking-level failure: those are recorded on the booking and retried through the queue."""
    for _ in range(3):
        loaded = deps.bookings.get(message.building, message.booking_id)
        if loaded is None:
            return "gone"
        booking, etag = loaded
        if booking.status == "creating":
            age = deps.now() - booking.created_at
            if age < WATCHDOG:
                _send(deps, booking, message.op, delay=int((WATCHDOG - age).total_seconds()) + 1)
                return "deferred"
            abandon(deps, booking)
            return "abandoned"
        if message.op == "check":
            repair_slot(deps, booking)
        if booking.in_sync:
            return "in_sync"
        if booking.sync_state == "failed":
            return "failed"
        result = _write_through(deps, booking, etag, message.op, "outbox", worker=True)
        if result is not booking:
            return result.sync_state
    return "contended"


def abandon(deps: BookingDeps, booking: Booking) -> None:
    """A booking whose request died mid-create: its event (if written), slot and rows go."""
    resource = _resource(deps.tables, booking.building_id, booking.resource_id)
    if resource is not None:
        try:
            target = target_for(deps, deps.worker_graph, resource)
            event_id = find_event(target, booking.id)
            if event_id is not None:
                delete_event(target, event_id, "outbox")
        except (WriteFailed, GraphError, IdentityError, Forbidden) as err:
            logger.warning("booking %s abandoned; its event lookup failed: %s", booking.id, err)
    deps.busy.remove(booking.block())
    deps.bookings.discard(booking)
    logger.warning("booking %s abandoned: its request never finished", booking.id)


def repair_slot(deps: BookingDeps, booking: Booking) -> None:
    """Make the busy table agree with the booking (a request that died between the two writes)."""
    try:
        if booking.status == "cancelled":
            if booking.sync_state != "pending":  # while pending, the event still holds the room
                deps.busy.remove(booking.block())
        else:
            deps.busy.claim(booking.block(), replacing=booking.block())
    except Conflict:
        logger.warning("booking %s: its slot is taken by another block; left as is", booking.id)


__all__ = [
    "Booking",
    "BookingConfig",
    "BookingDeps",
    "BookingOut",
    "cancel_booking",
    "create_booking",
    "default_booking_deps",
    "get_booking",
    "list_bookings",
    "process_outbox",
    "update_booking",
]
