"""Platform bookings of mapped resources, written through to their Outlook calendars.

A booking is accepted by Table Storage, never by Graph: the slot is claimed atomically in the busy
table (`shared.availability.busy`, "no double booking, by construction"), the booking is committed
(`shared.bookings.store`), and only then is the Outlook event written (`shared.bookings.outlook`).
A Graph failure after the commit never loses the booking: it answers 201 with `syncState: pending`
and the outbox (`shared.bookings.outbox`) brings the event in line later. The booking's states are
described in `shared.bookings.model`; the outbox worker acts on them from state alone:

    cancelled, not synced .............. delete the event (404: already gone = done)
    confirmed, no event id ............. find it by our extended property (a create whose
                                         answer was lost) and adopt it, else create it
                                         (transactionId = busy.transaction_id(id) as well)
    confirmed, version > syncedVersion . PATCH start/end/subject

Create, step by step (each step's failure mode in brackets):
1. validate; the resource must exist (400), be free and mapped (422 `not_supported` / `not_mapped`);
2. with an Idempotency-Key: a known key returns the first booking (or 422 if the request differs);
3. enqueue a watchdog message (visible after `WATCHDOG`; sent at once with the reads of steps 1–2
   and the booker's attribution, done before step 4) [the process dies later → the worker finds
   the booking still `creating` and abandons it: event deleted, slot released, rows gone; a create
   refused before step 4 leaves a message that finds nothing];
4. insert the booking (`creating`) + key row in one transaction [key taken concurrently → replay];
5. claim the slot in the busy table [overlap → rows removed, 409 `slot_taken`];
6. POST the event (with `BB_INVITE_BOOKER` and `BB_LIVE_CHECK`, a calendarView of the slot first:
   a busy Outlook event that is not ours → slot released, 409, and the booker is mailed nothing);
7. calendarView of the slot: an Outlook event that overlaps and was created before ours (or when
   which came first cannot be told) → ours deleted, slot released, 409 (Outlook won the race).
   This is the live check: it sees every Outlook booking sync has not brought in yet, also one
   made between the claim and the POST; those sync knows the claim refused in step 5;
8. commit `confirmed` with the sync outcome: synced, or pending + an outbox message after a
   transient failure (429/5xx/timeout), or failed at once after a permanent one (403, 404,
   reauth, calendar no longer mapped).
Update commits first (after claiming the new slot `replacing` the old one, and a live check of
it before the write, `BB_LIVE_CHECK`: a moved event keeps its creation time, so a check after the
PATCH could not tell which came first), then tries the same write-through, falling back to the
same outbox. Cancel commits first and frees the slot only once the event is deleted: until then
the room is still busy in Outlook, and sync must keep recognising the event as ours (it knows our
events by their platform block).

Collaborators come in as `BookingDeps` (built by `shared.wiring.booking_deps`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from azure.data.tables import UpdateMode

from shared.availability.busy import OUTLOOK_BLOCK_PREFIX, BusyStore
from shared.availability.service import parse_range
from shared.bookings.model import (
    ENDED,
    LIST_STATUSES,
    Booking,
    BookingConfig,
    SyncStateName,
    idempotency_row,
    new_booking_id,
    parse_create,
    parse_update,
)
from shared.bookings.outbox import OutboxMessage, Sender, backoff
from shared.bookings.outlook import (
    ConnectionSource,
    Target,
    WriteFailed,
    create_event,
    created_before,
    delete_event,
    find_event,
    outlook_conflicts,
    target_for,
    update_event,
    write_failure,
)
from shared.bookings.store import BookingTable
from shared.bookings.views import (
    BookingOut,
    ExternalBookingOut,
    booking_view,
    external_view,
)
from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    DependencyError,
    FieldError,
    Forbidden,
    GraphError,
    IdentityError,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    ValidationFailed,
)
from shared.core.etags import IfMatch, entity_tag
from shared.core.paging import TOKEN_FIELD, TOP_DEFAULT, Listed, decode_cursor, keyset_page, top_of
from shared.core.times import rfc3339_or_none
from shared.core.validate import check_building, check_path, valid_id
from shared.directory.attributor import load_attributor
from shared.graph.client import GraphClient
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.webhooks import events as webhook_events

logger = logging.getLogger(__name__)

WATCHDOG = timedelta(minutes=5)  # longer than any HTTP invocation may run (230 s on Azure)
IDEMPOTENCY_WAIT_SECONDS = 5.0  # a replay waits this long for the first request to finish


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
    # Outgoing webhooks (issue 16): hand events over before the outcome is committed (wiring).
    emit: Callable[[str, list[Any]], object] = field(default=lambda building, events: 0)

    @property
    def bookings(self) -> BookingTable:
        return BookingTable(self.tables(tablestore.BOOKINGS))


def _resource(tables: TableSource, building_id: str, resource_id: str) -> Entity | None:
    return tablestore.get_entity(tables(tablestore.RESOURCES), building_id, resource_id)


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


def _require_writable(deps: BookingDeps, building_id: str) -> None:
    """A free/busy-only connection's mappings are read-only (issue 19): refused with 422
    `read_only_mapping` before anything is stored, claimed or sent to Graph."""
    connection = deps.connections.get(building_id)
    if connection is not None and connection.free_busy_only:
        raise Unprocessable(
            "The building's calendars are connected free/busy only: bookings cannot be written "
            "to them (reconnect with full access to book)",
            reason="read_only_mapping",
        )


def _attribution(
    tables: TableSource, building_id: str, email: str
) -> tuple[str | None, dict[str, Any]]:
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
    booking_id = new_booking_id(now)
    # The reads a create needs do not depend on each other: they go to storage at once (issue
    # 17: each is a round trip). The watchdog goes with them, before the booking row exists, so
    # no row is ever without one (one for a create refused below finds nothing: "gone").
    pool = _round_trips()
    watchdog = pool.submit(_watch, deps, building_id, booking_id)
    found = pool.submit(_resource, deps.tables, building_id, request.resource_id)
    attributed = pool.submit(_attribution, deps.tables, building_id, request.booker_email)
    key_read = pool.submit(deps.bookings.key_record, building_id, key_row) if key_row else None
    resource = _require_bookable(found.result())
    fingerprint = request.fingerprint()
    if key_row is not None and key_read is not None:
        replayed = _replay(deps, building_id, key_row, fingerprint, first=key_read.result)
        if replayed is not None:
            return replayed, False
    _require_writable(deps, building_id)
    company_id, attribution = attributed.result()
    booking = Booking(
        building_id=building_id,
        id=booking_id,
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
    watchdog.result()
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
    try:
        deps.busy.claim(booking.block())
    except BaseException:
        table.discard(booking)
        raise
    return _first_write(deps, booking, etag, resource, actor), True


def _replay(
    deps: BookingDeps,
    building_id: str,
    key_row: str,
    fingerprint: str,
    *,
    first: Callable[[], Entity | None] | None = None,
) -> BookingOut | None:
    """The booking an Idempotency-Key already made (waiting briefly while it is being made).
    `first`: the key row as already read, if it was."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    while True:
        record = first() if first is not None else deps.bookings.key_record(building_id, key_row)
        first = None
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
        # No calendarView before the POST: the one after it sees every Outlook event that was
        # there before ours, which is all a check before it could see (DESIGN.md "Booking create
        # in two Graph requests"); Outlook events sync already knows were refused by the claim.
        # Only with BB_INVITE_BOOKER is it still read first: a create that loses after its
        # POST would have mailed the booker an invitation and then its cancellation.
        target = target_for(deps.connections, deps.graph, resource)
        if (
            deps.config.live_check
            and deps.config.invite_booker
            and outlook_conflicts(target, booking.start, booking.end, own_event_id=None)
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
    _emit_outcome(deps, booking, confirmed)
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


def _emit_outcome(deps: BookingDeps, before: Booking, after: Booking) -> None:
    """booking.synced / booking.failed for an attempt's outcome, handed over *before* it is
    saved: each delivery waits until the booking row shows that outcome (a lost ETag race or a
    crash before the save leaves the change uncommitted, and the delivery is discarded); a re-run
    after a crash makes the same event id, de-duplicated (DESIGN.md "Outgoing webhooks")."""
    if after.status in ENDED or after.sync_state not in ("synced", "failed"):
        return
    if after.sync_state == before.sync_state == "failed":
        return
    reason = None
    if after.sync_state == "failed":
        error = after.last_error or {}
        reason = str(error.get("reason") or error.get("code") or "write_failed")
    deps.emit(before.building_id, [webhook_events.booking_outcome(
        building=after.building_id, booking=after.id, resource=after.resource_id,
        state=after.sync_state, version=after.version if after.sync_state == "failed"
        else after.synced_version, outlook_event_id=after.outlook_event_id, reason=reason,
        table=tablestore.BOOKINGS,
    )])  # fmt: skip


def _created_after_an_outlook_event(
    target: Target, booking: Booking, event: Mapping[str, Any]
) -> bool:
    """Step 7: did an Outlook event for the slot exist before ours (Outlook won the race)?"""
    try:
        others = outlook_conflicts(
            target, booking.start, booking.end, own_event_id=str(event["id"])
        )
    except (GraphError, IdentityError, Forbidden):
        # No live answer: the busy table's claim decides, as for a write the outbox makes.
        return False
    return created_before(rfc3339_or_none(event.get("createdDateTime")), others)


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
        _send(deps, booking.building_id, booking.id, op, delay=delay)
    elif booking.sync_state == "failed":
        _note_on_resource(deps, booking)


def _send(deps: BookingDeps, building_id: str, booking_id: str, op: str, *, delay: int) -> None:
    deps.outbox.send(OutboxMessage(building_id, booking_id, cast(Any, op)), delay_seconds=delay)


def _watch(deps: BookingDeps, building_id: str, booking_id: str) -> None:
    """The watchdog of a change about to be made: a check of the booking after WATCHDOG (the
    request died meanwhile → the worker repairs or abandons what it left)."""
    _send(deps, building_id, booking_id, "check", delay=int(WATCHDOG.total_seconds()))


@functools.cache
def _round_trips() -> ThreadPoolExecutor:
    """The process's threads for a request's independent storage round trips (made on first use;
    a create needs four at most, so this serves several concurrent requests)."""
    return ThreadPoolExecutor(max_workers=16, thread_name_prefix="booking-io")


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


def get_booking(
    deps: BookingDeps, building_id: str, booking_id: str
) -> BookingOut | ExternalBookingOut:
    return read_booking(deps, building_id, booking_id)[0]


def read_booking(
    deps: BookingDeps, building_id: str, booking_id: str
) -> tuple[BookingOut | ExternalBookingOut, str | None]:
    """One booking and its ETag (shared/core/etags.py), or 404: a platform booking, or an Outlook
    booking (a busy block, `o-...`) as the list shows it (no ETag: it is read-only here)."""
    check_path(building=building_id, bookingId=booking_id)
    if booking_id.startswith(OUTLOOK_BLOCK_PREFIX):
        block = deps.busy.find(building_id, booking_id)
        if block is None or block.source != "outlook":
            raise NotFound("No such booking in this building", reason="booking_not_found")
        return external_view(block), None
    booking, etag = _visible(deps, building_id, booking_id)
    return booking_view(booking), entity_tag(etag)


def _visible(deps: BookingDeps, building_id: str, booking_id: str) -> tuple[Booking, str]:
    """A platform booking to change; an Outlook booking is 409 `outlook_booking_read_only`."""
    if booking_id.startswith(OUTLOOK_BLOCK_PREFIX):
        get_booking(deps, building_id, booking_id)  # 404 when there is no such booking either
        raise Conflict(
            "This booking was made in Outlook; change or cancel it in Outlook (it is read-only here)",
            reason="outlook_booking_read_only",
        )
    loaded = deps.bookings.get(building_id, booking_id)
    if loaded is None or loaded[0].status == "creating":
        raise NotFound("No such booking in this building", reason="booking_not_found")
    return loaded


def list_bookings(
    deps: BookingDeps, building_id: str, params: Mapping[str, str]
) -> Listed[BookingOut | ExternalBookingOut]:
    """Platform bookings (the `s|` range) and Outlook bookings (busy blocks), ordered by
    (start, resourceId, id): one page of `top` after the keyset cursor (shared/core/paging.py), so
    paging is exact across both sources and equal start times."""
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
    status = params.get("status") or "confirmed"
    if status not in LIST_STATUSES:
        errors.append(FieldError("status", "must be one of " + ", ".join(sorted(LIST_STATUSES))))
    resource_id = params.get("resourceId") or None
    if resource_id is not None and not valid_id(resource_id):
        errors.append(FieldError("resourceId", "must be 1–64 characters of A-Z a-z 0-9 . _ -"))
    top = TOP_DEFAULT
    try:
        top = top_of(params)
        decode_cursor(params.get(TOKEN_FIELD), _CURSOR_ARITY)
    except ValidationFailed as err:
        errors.extend(err.errors)
    if errors:
        raise ValidationFailed(errors)
    items: list[BookingOut | ExternalBookingOut] = []
    if source in ("platform", "all"):
        items.extend(
            booking_view(b)
            for b in deps.bookings.between(building_id, start, end, LIST_STATUSES[status])
            if resource_id is None or b.resource_id == resource_id
        )
    if source in ("outlook", "all") and status in ("confirmed", "all"):
        blocks = deps.busy.blocks(
            building_id,
            start,
            end,
            resource_ids=[resource_id] if resource_id else None,
            source="outlook",
        )
        items.extend(external_view(b) for b in blocks)
    return keyset_page(
        items, _list_key, arity=_CURSOR_ARITY, top=top, token=params.get(TOKEN_FIELD)
    )


_CURSOR_ARITY = 3


def _list_key(item: BookingOut | ExternalBookingOut) -> tuple[str, str, str]:
    # Times are UTC `Z` of one width (whole seconds), so strings sort as instants; ids are unique
    # across both sources (platform ids never contain "-", Outlook ones start with "o-").
    return (item["start"], item["resourceId"], item["id"])


def update_booking(
    deps: BookingDeps,
    building_id: str,
    booking_id: str,
    body: Mapping[str, Any],
    *,
    actor: str = "api",
    if_match: IfMatch | None = None,
) -> tuple[BookingOut, str | None]:
    """Move or retitle a booking: new slot claimed atomically (409 on overlap), then written
    through. Returns (view, ETag; None when a concurrent write-through got in first and the
    caller must read it again). With `if_match`: 412 unless the booking is at the version it
    names; the save is conditional on that version, so a writer in between also ends in 412."""
    check_path(building=building_id, bookingId=booking_id)
    current, etag = _visible(deps, building_id, booking_id)
    if if_match is not None:
        if_match.check(etag)
    if current.status == "released":
        raise Conflict("The booking was released (nobody checked in)", reason="booking_released")
    if current.status in ENDED:
        raise Conflict("The booking is cancelled", reason="booking_cancelled")
    now = deps.now()
    wanted = parse_update(body, current, now)
    if (wanted.start, wanted.end, wanted.title) == (current.start, current.end, current.title):
        return booking_view(current), entity_tag(etag)
    _require_writable(deps, building_id)
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
    _watch(deps, updated.building_id, updated.id)
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
        if if_match is not None:
            raise PreconditionFailed() from None
        raise Conflict(
            "The booking was changed concurrently; read it and try again",
            reason="concurrent_update",
        ) from None
    result, new_etag = _write_through(deps, updated, etag, "update", actor)
    return booking_view(result), entity_tag(new_etag) if new_etag else None


def _live_check_for_move(deps: BookingDeps, resource: Entity, updated: Booking) -> None:
    try:
        target = target_for(deps.connections, deps.graph, resource)
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
    deps: BookingDeps,
    building_id: str,
    booking_id: str,
    *,
    actor: str = "api",
    if_match: IfMatch | None = None,
    status: Literal["cancelled", "released"] = "cancelled",
) -> Booking:
    """Cancel: the booking is marked cancelled at once; its event is deleted, then its slot freed
    (right away, or by the outbox when Graph is unavailable). `if_match` as in `update_booking`
    (checked on every version a retry reads, so a writer in between ends in 412). The no-show
    release (shared/attendance) cancels with `status="released"`. Returns the booking as
    committed (an ended one as it was: cancelling twice changes nothing)."""
    check_path(building=building_id, bookingId=booking_id)
    for _ in range(3):
        current, etag = _visible(deps, building_id, booking_id)
        if if_match is not None:
            if_match.check(etag)
        if current.status in ENDED:
            return current
        cancelled = replace(
            current,
            status=status,
            version=current.version + 1,
            sync_state="pending",
            attempts=0,
            last_error=None,
            updated_at=deps.now(),
        )
        _watch(deps, cancelled.building_id, cancelled.id)
        try:
            etag = deps.bookings.save(cancelled, etag, current)
        except Conflict:
            continue
        # The slot is freed once the event is gone (in `_write_through`), not before: until then
        # the room is still busy in Outlook, and sync must keep recognising the event as ours.
        _write_through(deps, cancelled, etag, "cancel", actor)
        return cancelled
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
    target = target_for(deps.connections, graph, resource)
    event_id = booking.outlook_event_id
    if booking.calendar_id and booking.calendar_id != target.calendar.calendar_id:
        raise WriteFailed("calendar_changed", transient=False)
    if booking.status in ENDED:
        if event_id is None and booking.synced_version == 0:
            event_id = find_event(target, booking.id)  # a create whose answer was lost
        if event_id is not None:
            delete_event(target, event_id, actor)
    elif event_id is None:
        # Every create here is a delayed one: the first attempt (`_first_write`) failed, and it
        # may have reached Outlook with only its answer lost. Look for it by our marker before
        # writing: Graph's transactionId de-duplication has no documented lifetime (GRAPH.md
        # §4.3), and an outbox retry comes minutes or hours later. Found: adopt and bring in line.
        event_id = find_event(target, booking.id)
        if event_id is None:
            event_id = str(create_event(target, booking, deps.config, actor)["id"])
        else:
            update_event(target, replace(booking, outlook_event_id=event_id), deps.config, actor)
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
) -> tuple[Booking, str | None]:
    """One attempt, then commit the outcome under the ETag (a lost race is left to the worker).
    Returns the booking as stored and its new storage ETag (None: a lost race, not stored)."""
    now = deps.now()
    try:
        result = apply(deps, deps.worker_graph if worker else deps.graph, booking, actor)
    except (WriteFailed, GraphError, IdentityError, Forbidden, DependencyError) as err:
        failed = write_failure(err, creating=booking.outlook_event_id is None)
        result = failed_attempt(deps.config, booking, failed, now)
    _emit_outcome(deps, booking, result)
    try:
        saved = deps.bookings.save(result, etag, booking)
    except Conflict:
        # Changed meanwhile (another request or the worker): whoever changed it scheduled its own
        # write-through; a check message makes sure the event ends up matching the final state.
        if not worker:
            _send(deps, booking.building_id, booking.id, "check", delay=0)
        return booking, None
    if result.status in ENDED and result.sync_state != "pending":
        deps.busy.remove(result.block())  # the event is gone (or never will be): free the slot
    _after_attempt(deps, result, op)
    return result, saved


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
                delay = int((WATCHDOG - age).total_seconds()) + 1
                _send(deps, booking.building_id, booking.id, message.op, delay=delay)
                return "deferred"
            abandon(deps, booking)
            return "abandoned"
        if message.op == "check":
            repair_slot(deps, booking)
        if booking.in_sync:
            return "in_sync"
        if booking.sync_state == "failed":
            return "failed"
        result, saved = _write_through(deps, booking, etag, message.op, "outbox", worker=True)
        if saved is not None:
            return result.sync_state
    return "contended"


def abandon(deps: BookingDeps, booking: Booking) -> None:
    """A booking whose request died mid-create: its event (if written), slot and rows go."""
    resource = _resource(deps.tables, booking.building_id, booking.resource_id)
    if resource is not None:
        try:
            target = target_for(deps.connections, deps.worker_graph, resource)
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
        if booking.status in ENDED:
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
    "get_booking",
    "list_bookings",
    "process_outbox",
    "read_booking",
    "update_booking",
]
