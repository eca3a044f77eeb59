"""Check-in and no-show release (issue 15): the POST .../checkin service and the release timer.

Check-in (`check_in`): the booking is found as GET /bookings/{id} finds it (a platform booking, or
an Outlook booking's busy block `o-...`); inside [start - earlyMinutes, start + graceMinutes] of
the resource's effective `autoRelease` the attendance record `checked_in` is inserted (insert-if-
absent: a second check-in answers the stored record, 200), else 409 `checkin_too_early` /
`checkin_too_late`; a booking the timer claimed or released is 409 `booking_released`.

Release (`release_due`, the timer): per building with auto-release on (itself or any resource),
the blocks that started between a day ago and now - grace are judged by `decide.decide`; the
timer claims a block by inserting its record as `releasing` (insert-if-absent: of two timer
instances, or a timer and a check-in, exactly one wins; a check-in stored first makes the claim
fail, and the timer marks that record `required` instead). Then:

- platform booking: cancelled through `cancel_booking(status="released")` (the Outlook event goes
  through the usual write-through / outbox), the record `released`;
- Outlook booking on a room mailbox connected in application mode: the room's own copy of that
  occurrence is read (`isOrganizer`: the room organising it cannot decline it → no_show
  `room_is_organizer`) and declined as the room (`POST /users/{room}/events/{id}/decline`,
  `sendResponse: true`, a comment saying why); its busy block is removed; the record `released`.
  With `recurringStrikes: N`, N released occurrences of a series in a row (a checked-in one resets
  the count) decline the room's copy of the series master: the rest of the series leaves the room;
- impossible: the record is inserted as `no_show` with the reason, the booking is not touched.

A Graph failure leaves the record `releasing` (with the failure as `reason`) and the next tick
tries again: a claim is never lost and never done twice. `booking.released` goes to outgoing
webhooks before the record says `released` (its delivery waits until it does).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import quote

from shared.attendance.decide import (
    CLAIM_LEASE,
    LOOKBACK,
    Decision,
    Situation,
    check_in_opens,
    decide,
)
from shared.attendance.decide import release_due as due_at
from shared.attendance.model import TABLE, Attendance, partition_key, records_between, row_key
from shared.attendance.store import AttendanceTable
from shared.availability.busy import OUTLOOK_BLOCK_PREFIX, BusyBlock
from shared.bookings.model import Booking
from shared.bookings.service import BookingDeps, cancel_booking, read_booking
from shared.bookings.views import BookingOut, ExternalBookingOut
from shared.core.addresses import normalise_email
from shared.core.checkmarks import CHECK_ATTRIBUTION_REASON, CHECK_BOOKER_EMAIL
from shared.core.connection import Connection
from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    FieldError,
    GraphError,
    NotFound,
    ValidationFailed,
)
from shared.core.times import utc_z
from shared.core.validate import check_path, valid_id
from shared.directory.people import AutoRelease, load_building_settings
from shared.directory.registry import effective_auto_release
from shared.graph.audit import AuditEntry
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.webhooks import events as webhook_events
from shared.webhooks.model import Event

logger = logging.getLogger(__name__)

STRIKES_TABLE = "attendancestrikes"  # per (building, resource, series): released in a row
RELEASE_ACTOR = "release"  # how audit records and Graph calls name the timer
DECLINE_COMMENT = (
    "Released automatically: nobody checked in within {grace} minutes of the start, so the room "
    "is free for others."
)
SERIES_COMMENT = (
    "Released automatically: nobody checked in to {strikes} occurrences in a row, so the room "
    "no longer holds this series."
)


@dataclass(frozen=True)
class AttendanceDeps:
    bookings: BookingDeps  # tables, busy store, connections, Graph clients, emit, clock
    audit: Callable[[AuditEntry], None] = lambda entry: None

    @property
    def records(self) -> AttendanceTable:
        return AttendanceTable(self.bookings.tables(TABLE))

    def now(self) -> datetime:
        return self.bookings.now()


class AttendanceOut(TypedDict):
    bookingId: str
    resourceId: str
    state: str
    required: bool
    start: str
    end: str
    checkedInAt: str | None
    releasedAt: str | None
    reason: str | None
    by: str | None


def attendance_view(record: Attendance) -> AttendanceOut:
    def when(value: datetime | None) -> str | None:
        return utc_z(value) if value is not None else None

    return {
        "bookingId": record.block_id,
        "resourceId": record.resource_id,
        "state": record.state,
        "required": record.required,
        "start": utc_z(record.start),
        "end": utc_z(record.end),
        "checkedInAt": when(record.checked_in_at),
        "releasedAt": when(record.released_at),
        "reason": record.reason,
        "by": record.by,
    }


# --------------------------------------------------------------------------------------------
# Check-in
# --------------------------------------------------------------------------------------------


def _read_by(body: Any) -> str | None:
    """`{"by": "<person's email or a panel id>"}` (optional, the whole body optional)."""
    if body is None:
        return None
    if not isinstance(body, Mapping):
        raise ValidationFailed([FieldError("(body)", "must be an object")])
    errors = [FieldError(k, "is not a known field") for k in body if k != "by"]
    raw = body.get("by")
    by: str | None = None
    if raw is not None:
        if isinstance(raw, str) and "@" in raw:
            by = normalise_email(raw)
        elif isinstance(raw, str) and valid_id(raw):
            by = raw
        if by is None:
            errors.append(
                FieldError("by", "must be an email address or a panel id (A-Z a-z 0-9 . _ -)")
            )
    if errors:
        raise ValidationFailed(errors)
    return by


def _booking_block(deps: BookingDeps, building_id: str, booking_id: str) -> BusyBlock:
    """The block a booking id names, found as GET /bookings/{id} finds it (404 otherwise); a
    platform booking that is no longer on is 409."""
    if booking_id.startswith(OUTLOOK_BLOCK_PREFIX):
        block = deps.busy.find(building_id, booking_id)
        if block is None or block.source != "outlook":
            raise NotFound("No such booking in this building", reason="booking_not_found")
        return block
    loaded = deps.bookings.get(building_id, booking_id)
    if loaded is None or loaded[0].status == "creating":
        raise NotFound("No such booking in this building", reason="booking_not_found")
    booking = loaded[0]
    if booking.status == "released":
        raise Conflict("The booking was released: nobody checked in", reason="booking_released")
    if booking.status != "confirmed":
        raise Conflict("The booking is cancelled", reason="booking_cancelled")
    return booking.block()


def _rule(deps: BookingDeps, building_id: str, resource_id: str) -> AutoRelease:
    resource = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building_id, resource_id)
    building = load_building_settings(deps.tables, building_id).auto_release
    return effective_auto_release(resource, building)


def _new_record(block: BusyBlock, **fields: Any) -> Attendance:
    return Attendance(
        building_id=block.building_id,
        resource_id=block.resource_id,
        block_id=block.block_id,
        start=block.start,
        end=block.end,
        source=block.source,
        company_id=block.company_id,
        created_at=block.created_at,
        booking_id=block.booking_id,
        outlook_event_id=block.outlook_event_id,
        series_master_id=block.series_master_id,
        **fields,
    )


def check_in(
    deps: AttendanceDeps, building_id: str, booking_id: str, body: Any, *, actor: str
) -> tuple[AttendanceOut, bool]:
    """Check a booking in; (the record, whether this call stored it)."""
    check_path(building=building_id, bookingId=booking_id)
    by = _read_by(body)
    block = _booking_block(deps.bookings, building_id, booking_id)
    for _ in range(2):
        stored = deps.records.get(block)
        if stored is not None:
            record = stored[0]
            if record.state == "checked_in":
                return attendance_view(record), False  # idempotent: the first check-in stands
            raise Conflict(
                "The booking was released: nobody checked in in time", reason="booking_released"
            )
        rule = _rule(deps.bookings, building_id, block.resource_id)
        now = deps.now()
        if now < check_in_opens(block.start, rule):
            raise Conflict(
                f"Check-in opens {rule.early_minutes} minutes before the start",
                reason="checkin_too_early",
            )
        if now > due_at(block.start, rule):
            raise Conflict(
                f"Check-in closed {rule.grace_minutes} minutes after the start",
                reason="checkin_too_late",
            )
        record = _new_record(
            block, state="checked_in", required=False, checked_in_at=now, by=by or actor
        )
        if deps.records.insert(record):
            _audit(deps, building_id, "attendance.checkin", record, actor)
            return attendance_view(record), True
        # Another writer (a check-in, or the timer's claim) got there first: answer what it stored.
    raise Conflict(
        "The booking is being changed concurrently; try again", reason="concurrent_update"
    )


def _audit(
    deps: AttendanceDeps, building_id: str, operation: str, record: Attendance, actor: str
) -> None:
    """An audit record (ids and states only: never subjects or who attended by name)."""
    connection = deps.bookings.connections.get(building_id)
    deps.audit(
        AuditEntry(
            time=deps.now(),
            actor=actor,
            building=building_id,
            connection=connection.connection_id if connection is not None else "",
            operation=operation,
            mailbox=None,
            calendar=None,
            result=f"{record.state} {record.resource_id}/{record.block_id}"
            + (f" ({record.reason})" if record.reason else ""),
            status=200,
            request_id=None,
        )
    )


def booking_with_attendance(
    deps: AttendanceDeps, building_id: str, booking_id: str
) -> tuple[dict[str, Any], str | None]:
    """GET /bookings/{id} with `attendance` (null until checked in or examined by the timer)."""
    view, etag = read_booking(deps.bookings, building_id, booking_id)
    out: dict[str, Any] = dict(view)
    block = _block_of_view(building_id, view)
    stored = deps.records.get(block) if block is not None else None
    out["attendance"] = (
        {k: v for k, v in attendance_view(stored[0]).items() if k in _BOOKING_ATTENDANCE}
        if stored is not None
        else None
    )
    return out, etag


_BOOKING_ATTENDANCE = ("state", "required", "checkedInAt", "releasedAt", "reason")


def _block_of_view(building_id: str, view: BookingOut | ExternalBookingOut) -> BusyBlock | None:
    start, end = datetime.fromisoformat(view["start"]), datetime.fromisoformat(view["end"])
    return BusyBlock(building_id, view["resourceId"], view["id"], start, end, view["source"])


# --------------------------------------------------------------------------------------------
# Release
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """What the timer needs of one mapped resource."""

    entity: Mapping[str, Any]
    rule: AutoRelease

    @property
    def calendar(self) -> MappedCalendar | None:
        return MappedCalendar.from_entity(self.entity)


def release_due(deps: AttendanceDeps, *, now: datetime | None = None) -> Counter[str]:
    """One timer tick over every building with auto-release on; counts of what was done."""
    now = now or deps.now()
    by_building: dict[str, list[Mapping[str, Any]]] = {}
    for entity in tablestore.query_all(
        deps.bookings.tables(tablestore.RESOURCES), "calendarId ne ''", {},
        select=["PartitionKey", "RowKey", "calendarId", "mailbox", "graphMailbox", "tenantId",
                "calendarIsDefault", "paid", "calendarKind", "autoRelease"],
    ):  # fmt: skip
        by_building.setdefault(str(entity["PartitionKey"]), []).append(entity)
    done: Counter[str] = Counter()
    for building_id, entities in sorted(by_building.items()):
        building = load_building_settings(deps.bookings.tables, building_id).auto_release
        resources = {
            str(e["RowKey"]): Resource(e, effective_auto_release(e, building)) for e in entities
        }
        if any(r.rule.enabled for r in resources.values()):
            try:
                done.update(release_building(deps, building_id, resources, now))
            except BookingBridgeError as err:  # one building's storage trouble stops only it
                logger.warning("release %s: %s", building_id, type(err).__name__)
                done["building_failed"] += 1
    return done


def release_building(
    deps: AttendanceDeps, building_id: str, resources: Mapping[str, Resource], now: datetime
) -> Counter[str]:
    enabled = [rid for rid, r in resources.items() if r.rule.enabled]
    # Up to now, not now - grace: a block due this very second starts exactly at now - grace,
    # which the half-open range would leave out (decide() waits for the rest).
    started = deps.bookings.busy.blocks(building_id, now - LOOKBACK, now, resource_ids=enabled)
    blocks = {(b.resource_id, b.block_id): b for b in started if now - LOOKBACK <= b.start}
    records = {
        (r.resource_id, r.block_id): r
        for r in records_between(deps.bookings.tables(TABLE), building_id, now - LOOKBACK, now)
    }
    # A claim whose block is gone already (declined, then a crash before `released`) is finished
    # from its record.
    for key, record in records.items():
        if record.state == "releasing" and key not in blocks and key[0] in resources:
            blocks[key] = _block_of_record(record)
    connection = deps.bookings.connections.get(building_id)
    done: Counter[str] = Counter()
    for key, block in sorted(blocks.items(), key=lambda kv: (kv[1].start, kv[0])):
        resource = resources[block.resource_id]
        booking = _platform_booking(deps, block) if block.source == "platform" else None
        situation = Situation(
            block=block,
            rule=resource.rule,
            record=records.get(key),
            calendar_kind=resource.entity.get("calendarKind"),
            connection_mode=connection.mode if connection is not None else None,
            is_check=_is_check(block, booking),
        )
        decision = decide(situation, now)
        if decision.action in ("ignore", "wait"):
            continue
        try:
            outcome = _act(deps, situation, decision, resource, connection, now)
        except (GraphError, BookingBridgeError) as err:
            logger.warning("release %s/%s: %s", block.resource_id, block.block_id,
                           type(err).__name__)  # fmt: skip
            outcome = "retry"
        done[outcome] += 1
    return done


def _block_of_record(record: Attendance) -> BusyBlock:
    return BusyBlock(
        record.building_id, record.resource_id, record.block_id, record.start, record.end,
        record.source, booking_id=record.booking_id, company_id=record.company_id,
        outlook_event_id=record.outlook_event_id, series_master_id=record.series_master_id,
        created_at=record.created_at,
    )  # fmt: skip


def _platform_booking(deps: AttendanceDeps, block: BusyBlock) -> Booking | None:
    loaded = deps.bookings.bookings.get(block.building_id, block.block_id)
    return loaded[0] if loaded is not None else None


def _is_check(block: BusyBlock, booking: Booking | None) -> bool:
    if (block.attribution or {}).get("reason") == CHECK_ATTRIBUTION_REASON:
        return True
    return booking is not None and (
        booking.booker_email == CHECK_BOOKER_EMAIL
        or (booking.attribution or {}).get("reason") == CHECK_ATTRIBUTION_REASON
    )


def _act(
    deps: AttendanceDeps,
    situation: Situation,
    decision: Decision,
    resource: Resource,
    connection: Connection | None,
    now: datetime,
) -> str:
    block = situation.block
    if decision.action == "require":
        return _require(deps, block, now)
    if situation.record is None:
        state = "no_show" if decision.action == "no_show" else "releasing"
        claim = _new_record(
            block, state=state, required=True, reason=decision.reason,
            released_at=now if state == "no_show" else None,
            claimed_at=now if state == "releasing" else None,
        )  # fmt: skip
        if not deps.records.insert(claim):
            # Someone stored a record first: a check-in (it wins: mark it required) or another
            # timer instance (it does the release).
            return _require(deps, block, now)
        if state == "no_show":
            return "no_show"
    elif not _take_over(deps, block, now):
        return "contended"
    stored = deps.records.get(block)
    if stored is None or stored[0].state != "releasing" or stored[0].claimed_at != now:
        return "contended"
    if decision.action == "no_show":  # a claim that can no longer be released (e.g. reconnected)
        record, etag = stored
        deps.records.replace(replace(record, state="no_show", reason=decision.reason,
                                     released_at=now), etag)  # fmt: skip
        return "no_show"
    if decision.action == "release":
        return _release_platform(deps, block, stored, now)
    assert connection is not None  # decide() declines only with an application connection
    return _decline(deps, block, stored, resource, connection, now)


def _take_over(deps: AttendanceDeps, block: BusyBlock, now: datetime) -> bool:
    """Claim a release another run left unfinished (its lease over, or given back after a Graph
    failure): an ETag-guarded update, so of two instances taking it over only one goes on."""
    stored = deps.records.get(block)
    if stored is None or stored[0].state != "releasing":
        return False
    record, etag = stored
    if record.claimed_at is not None and now < record.claimed_at + CLAIM_LEASE:
        return False
    return deps.records.replace(replace(record, claimed_at=now), etag)


def _require(deps: AttendanceDeps, block: BusyBlock, now: datetime) -> str:
    """A checked-in booking the timer examined: check-in applied to it (`required`); a check-in of
    a series' occurrence ends that series' run of strikes."""
    stored = deps.records.get(block)
    if stored is None or stored[0].state != "checked_in":
        return "contended"
    record, etag = stored
    if record.required or not deps.records.replace(replace(record, required=True), etag):
        return "contended"  # another run marked it
    if record.series_master_id:
        _count_strike(deps, record, released=False)
    return "checked_in"


def _finish(
    deps: AttendanceDeps, record: Attendance, etag: str, now: datetime, event: Event | None
) -> bool:
    released = replace(record, state="released", released_at=now, reason=None)
    if event is not None:
        deps.bookings.emit(record.building_id, [event])
    return deps.records.replace(released, etag)


def _released_event(record: Attendance, reason: str) -> Event:
    data = {"building": record.building_id, "bookingId": record.block_id,
            "resourceId": record.resource_id, "reason": reason}  # fmt: skip
    commit = {
        "kind": "entity",
        "table": TABLE,
        "pk": partition_key(record.building_id, record.start),
        "rk": row_key(record.resource_id, record.block_id),
        "expect": {"state": "released"},
    }
    return Event(
        "booking.released",
        webhook_events.stable_id("booking.released", record.building_id, record.resource_id,
                                 record.block_id),
        data, commit,
    )  # fmt: skip


def _release_platform(
    deps: AttendanceDeps, block: BusyBlock, stored: tuple[Attendance, str], now: datetime
) -> str:
    record, etag = stored
    try:
        booking = cancel_booking(deps.bookings, block.building_id, block.block_id,
                                 actor=RELEASE_ACTOR, status="released")  # fmt: skip
    except NotFound:
        booking = None
    if booking is None or booking.status != "released":
        # Cancelled (or gone) by someone else meanwhile: nothing was released; the claim stays a
        # no-show (nobody came, and the booking did not hold the room to its end).
        deps.records.replace(replace(record, state="no_show", reason="booking_cancelled",
                                     released_at=now), etag)  # fmt: skip
        return "no_show"
    if not _finish(deps, record, etag, now, _released_event(record, "no_show")):
        return "contended"
    return "released"


def _room_path(calendar: MappedCalendar, event_id: str, suffix: str = "") -> str:
    return f"/users/{quote(calendar.graph_mailbox, safe='@')}/events/{quote(event_id, safe='')}{suffix}"


def _decline(
    deps: AttendanceDeps,
    block: BusyBlock,
    stored: tuple[Attendance, str],
    resource: Resource,
    connection: Connection,
    now: datetime,
) -> str:
    record, etag = stored
    calendar = resource.calendar
    if calendar is None or not record.outlook_event_id:
        deps.records.replace(replace(record, state="no_show", reason="not_mapped",
                                     released_at=now), etag)  # fmt: skip
        return "no_show"
    scope = deps.bookings.worker_graph.for_calendar(connection, calendar)
    try:
        event = scope.get_json(
            _room_path(calendar, record.outlook_event_id),
            params={"$select": "isOrganizer,type,seriesMasterId"},
            operation="release.read", actor=RELEASE_ACTOR,
        )  # fmt: skip
    except GraphError as err:
        if err.failure.status != 404:
            return _keep_trying(deps, record, etag, err)
        event = None  # gone already (declined by a run that crashed after, or deleted): done
    if event is not None and event.get("isOrganizer"):
        deps.records.replace(replace(record, state="no_show", reason="room_is_organizer",
                                     released_at=now), etag)  # fmt: skip
        return "no_show"
    if event is not None:
        comment = DECLINE_COMMENT.format(grace=resource.rule.grace_minutes)
        try:
            scope.request(
                "POST", _room_path(calendar, record.outlook_event_id, "/decline"),
                json_body={"comment": comment, "sendResponse": True},
                operation="release.decline", actor=RELEASE_ACTOR,
            )  # fmt: skip
        except GraphError as err:
            if err.failure.status != 404:
                return _keep_trying(deps, record, etag, err)
    deps.bookings.busy.remove(block)
    if not _finish(deps, record, etag, now, _released_event(record, "no_show")):
        return "contended"
    strikes = resource.rule.recurring_strikes
    if (
        record.series_master_id
        and strikes
        and _count_strike(deps, record, released=True) >= strikes
    ):
        return _end_series(deps, scope, calendar, record, resource.rule)
    return "declined"


def _keep_trying(deps: AttendanceDeps, record: Attendance, etag: str, err: GraphError) -> str:
    """Graph said no for now: the claim stays `releasing` (the failure visible as its reason),
    its lease given back, and the next tick tries again."""
    failure = f"graph_{err.failure.status}_{err.failure.code}".rstrip("_")
    deps.records.replace(replace(record, reason=failure, claimed_at=None), etag)
    return "retry"


def _strike_keys(record: Attendance) -> tuple[str, str]:
    assert record.series_master_id is not None
    return record.building_id, tablestore.join_key(record.resource_id, record.series_master_id)


def _count_strike(deps: AttendanceDeps, record: Attendance, *, released: bool) -> int:
    """Released occurrences of this series in a row, after counting `record` (once: an
    occurrence no later than the last one counted changes nothing)."""
    pk, rk = _strike_keys(record)
    start = utc_z(record.start)
    result: dict[str, int] = {"count": 0}

    def build(current: tablestore.Entity | None) -> tablestore.Entity | None:
        count = int((current or {}).get("count") or 0)
        if current is None and not released:
            return None  # no run to end
        if current is not None and str(current.get("lastStart") or "") >= start:
            result["count"] = count
            return None
        count = count + 1 if released else 0
        result["count"] = count
        return {**(current or {}), "count": count, "lastStart": start}

    tablestore.replace_optimistic(deps.bookings.tables(STRIKES_TABLE), pk, rk, build)
    return result["count"]


def _end_series(
    deps: AttendanceDeps, scope: Any, calendar: MappedCalendar, record: Attendance,
    rule: AutoRelease,
) -> str:  # fmt: skip
    """Decline the room's copy of the series master: Exchange then drops the rest of the series
    from the room's calendar (sync removes their blocks) and the organizer learns it."""
    assert record.series_master_id is not None
    try:
        scope.request(
            "POST", _room_path(calendar, record.series_master_id, "/decline"),
            json_body={"comment": SERIES_COMMENT.format(strikes=rule.recurring_strikes),
                       "sendResponse": True},
            operation="release.decline_series", actor=RELEASE_ACTOR,
        )  # fmt: skip
    except GraphError as err:
        if err.failure.status != 404:
            # The count stays at N: the next released occurrence tries again.
            logger.warning("release: series of %s not declined: %s", record.block_id,
                           err.failure.status)  # fmt: skip
            return "declined"
    pk, rk = _strike_keys(record)
    tablestore.put_entity(deps.bookings.tables(STRIKES_TABLE),
                          {"PartitionKey": pk, "RowKey": rk, "count": 0, "ended": True,
                           "lastStart": utc_z(record.start)})  # fmt: skip
    _audit(deps, record.building_id, "attendance.series_declined", record, RELEASE_ACTOR)
    return "series_declined"
