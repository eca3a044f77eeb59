"""One mapped resource's go-live check: the steps of shared/checks/model.py, and its clean-up.

Everything goes the real way: the test booking through `shared.bookings.service` (so it is
claimed, written through and cancelled exactly as a portal's booking), Graph only through the
Graph client's calendar scopes (the mapped-calendar guard, retries, audit), availability through
`shared.availability.service` (what portals read), the Outlook test event back through the
webhook → queue → delta path (the sync worker is never called from here; only when that path
failed on time is a delta round *requested*, to tell "notifications do not arrive" from "sync
does not converge"). Artefacts are recorded before they are written (`Ctx.record`), so the
clean-up here and the sweeper find them even if the process dies in between.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from shared.availability.busy import BOOKING_PROPERTY_ID
from shared.availability.service import availability
from shared.bookings.model import idempotency_row
from shared.bookings.service import cancel_booking, create_booking
from shared.bookings.store import index_row
from shared.checks.deps import CheckDeps
from shared.checks.model import Artefacts, StepName, StepResult, failed
from shared.core.checkmarks import (
    CHECK_ATTRIBUTION_REASON,
    CHECK_BOOKER_EMAIL,
    CHECK_BOOKER_NAME,
    CHECK_PROPERTY_ID,
    SUBJECT_PREFIX,
    check_idempotency_key,
    check_transaction_id,
)
from shared.core.connection import Connection
from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    Forbidden,
    GraphError,
    IdentityError,
    NotFound,
    StorageError,
)
from shared.core.times import graph_time, parse_rfc3339, utc_z
from shared.graph.client import CalendarScope
from shared.graph.guard import MappedCalendar
from shared.graph.permissions import (
    REQUIRED_DELEGATED_SCOPES,
    REQUIRED_FREE_BUSY_SCOPES,
    SCHEDULE_READERS,
)
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.subscriptions.manage import can_subscribe
from shared.sync import freebusy
from shared.sync.plan import Window
from shared.sync.queue import SyncRequest

logger = logging.getLogger(__name__)

_RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "SyncStateNotFound"})
_REVOKED = frozenset(
    {"grant_revoked", "consent_required", "consent_declined", "admin_consent_required"}
)
_WEBHOOK_CODES = frozenset({"InvalidRequest", "ValidationError"})
_GAP = timedelta(minutes=1)  # between the test booking and the test event


@dataclass
class Ctx:
    """One resource's check: what every step reads, and the artefacts written so far."""

    deps: CheckDeps
    run_id: str
    building: str
    resource: Entity
    calendar: MappedCalendar
    connection: Connection | None
    record: Callable[[Artefacts], None]  # persist the artefacts (before each write)
    artefacts: Artefacts = field(default_factory=Artefacts)
    read_only: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def resource_id(self) -> str:
        return self.calendar.resource_id

    @property
    def actor(self) -> str:
        return f"check:{self.run_id}:{self.resource_id}"

    @property
    def time_zone(self) -> str:
        return str(self.resource.get("timeZone") or "UTC")

    @property
    def facts(self) -> dict[str, Any]:
        return {
            "building": self.building,
            "resource": self.resource_id,
            "mailbox": self.calendar.mailbox,
            "run": self.run_id,
            "url": self.deps.notification_url,
        }

    def scope(self) -> CalendarScope:
        assert self.connection is not None
        return self.deps.graph.for_calendar(self.connection, self.calendar)

    def save(self, **changes: Any) -> None:
        with self._lock:
            self.artefacts = self.artefacts.with_(**changes)
            self.record(self.artefacts)


class Timer:
    """A step's start, duration and Graph request ids."""

    def __init__(self, ctx: Ctx, name: StepName) -> None:
        self.ctx, self.name = ctx, name
        self.started = ctx.deps.now()
        self._t0 = ctx.deps.monotonic()
        self.ids: list[str] = []

    def response(self, response: httpx.Response) -> httpx.Response:
        rid = response.headers.get("request-id")
        if rid:
            self.ids.append(rid)
        return response

    def error(self, err: BaseException) -> None:
        if isinstance(err, GraphError) and err.failure.request_id:
            self.ids.append(err.failure.request_id)

    def audited(self) -> None:
        """Add the request ids the Graph client audited for this resource's actor in this step
        (the booking service's writes, which do not hand back responses)."""
        try:
            entries = self.ctx.deps.audit_query(
                self.ctx.building,
                self.started - timedelta(seconds=1),
                self.ctx.deps.now() + timedelta(seconds=1),
                200,
            )
        except BookingBridgeError:
            return
        for entry in reversed(entries):  # oldest first
            rid = getattr(entry, "request_id", None)
            if getattr(entry, "actor", None) == self.ctx.actor and rid and rid not in self.ids:
                self.ids.append(str(rid))

    @property
    def ms(self) -> int:
        return int((self.ctx.deps.monotonic() - self._t0) * 1000)

    def passed(self, **detail: Any) -> StepResult:
        return StepResult(
            self.name, "passed", self.started, self.ms, tuple(self.ids), detail=detail
        )

    def failed(self, reason: str, **facts: Any) -> StepResult:
        detail = {k: v for k, v in facts.items() if k not in self.ctx.facts}
        return failed(
            self.name, self.started, reason, {**self.ctx.facts, **facts},
            duration_ms=self.ms, request_ids=tuple(self.ids), detail=detail,
        )  # fmt: skip


# ---------------------------------------------------------------- failure classification


def reason_of(err: BaseException, ctx: Ctx, *, writing: bool) -> tuple[str, dict[str, Any]]:
    """(reason code, facts) for a failed Graph, identity or storage call."""
    if isinstance(err, IdentityError):
        if err.reauth or err.error in ("reauth_required", "not_connected"):
            current = ctx.deps.connections.get(ctx.building)
            stored = current.reason if current is not None else None
            detail = stored or err.error
            revoked = stored in _REVOKED or bool({50173, 65001} & set(err.codes))
            return ("consent_revoked" if revoked else "reauth_required"), {"detail": detail}
        return "graph_unavailable", {"code": err.error}
    if isinstance(err, GraphError):
        status, code = err.failure.status, err.failure.code
        facts = {"status": status, "code": code}
        if status == 401:
            return "reauth_required", {**facts, "detail": code}
        if status == 403:
            return ("calendar_write_denied" if writing else "calendar_access_denied"), facts
        if status == 404:
            return "calendar_not_found", facts
        if status == 429:
            return "throttled", facts
        if status == 0 or status >= 500:
            return "graph_unavailable", facts
        return "graph_refused", facts
    if isinstance(err, Forbidden):  # the mapped-calendar guard: the mapping changed meanwhile
        return "calendar_not_found", {"code": err.reason or "calendar_not_mapped"}
    if isinstance(err, StorageError):
        return "storage_unavailable", {"code": err.reason or "storage"}
    return "internal_error", {"code": type(err).__name__}


def _fail(timer: Timer, err: BaseException, *, writing: bool) -> StepResult:
    timer.error(err)
    reason, facts = reason_of(err, timer.ctx, writing=writing)
    return timer.failed(reason, **facts)


# ---------------------------------------------------------------- connection


def write_permitted(connection: Connection) -> bool:
    """May the connection write calendars? Application with no roles is scoped by Exchange RBAC
    alone: the calendar step's probe write tells. A free/busy-only connection never writes."""
    if connection.free_busy_only:
        return False
    scopes = {s.lower() for s in connection.scopes}
    if connection.mode == "delegated":
        return "calendars.readwrite" in scopes
    return not scopes or "calendars.readwrite" in scopes


def missing_permissions(connection: Connection) -> list[str]:
    """Permissions the mode cannot work without (write permission is not one: without it the
    connection is read-only and the write steps are skipped)."""
    scopes = {s.lower() for s in connection.scopes}
    if connection.free_busy_only:  # getSchedule is all it needs (issue 19)
        if connection.mode == "delegated":
            return sorted(s for s in REQUIRED_FREE_BUSY_SCOPES if s.lower() not in scopes)
        if scopes and not scopes & {s.lower() for s in SCHEDULE_READERS}:
            return ["Calendars.ReadBasic.All or Calendars.Read"]
        return []
    if connection.mode == "delegated":
        needed = set(REQUIRED_DELEGATED_SCOPES) - {"Calendars.ReadWrite"}
        return sorted(s for s in needed if s.lower() not in scopes)
    if scopes and not scopes & {"calendars.read", "calendars.readwrite"}:
        return ["Calendars.Read or Calendars.ReadWrite"]
    return []


def connection_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "connection")
    connection = ctx.connection
    if connection is None:
        return timer.failed("not_connected")
    if connection.status != "connected":
        revoked = connection.reason in _REVOKED
        return timer.failed(
            "consent_revoked" if revoked else "reauth_required",
            detail=connection.reason or connection.status,
        )
    if connection.mode == "delegated":  # the grant must still work: one cheap call as the account
        try:
            timer.response(
                ctx.deps.graph.request(
                    connection,
                    "GET",
                    "/me",
                    params={"$select": "id"},
                    operation="check.connection",
                    actor=ctx.actor,
                )
            )
        except BookingBridgeError as err:
            return _fail(timer, err, writing=False)
    missing = missing_permissions(connection)
    if missing:
        return timer.failed("insufficient_permissions", missing=", ".join(missing))
    ctx.read_only = not write_permitted(connection)
    return timer.passed(
        mode=connection.mode,
        scopes=sorted(connection.scopes),
        readOnly=ctx.read_only,
        rbacScoped=connection.mode == "application" and not connection.scopes,
    )


# ---------------------------------------------------------------- notifications and delta


def _delta_row(ctx: Ctx) -> Entity | None:
    return tablestore.get_entity(
        ctx.deps.tables(tablestore.DELTA_STATE), ctx.building, ctx.resource_id
    )


def notifications_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "notifications")
    connection = ctx.connection
    assert connection is not None
    mailbox = ctx.calendar.mailbox
    notifiable = (
        can_subscribe(connection, mailbox)
        and ctx.calendar.graph_mailbox == mailbox
        and not connection.free_busy_only  # polled with getSchedule (issue 19)
    )
    if not notifiable:  # a calendar shared with a delegated account: polled with delta
        state = _delta_row(ctx)
        next_poll = state.get("nextPollAt") if state else None
        limit = ctx.deps.now() + timedelta(seconds=2 * ctx.deps.poll_max_seconds + 60)
        if state is None or not state.get("polled") or next_poll is None:
            return timer.failed("polling_inactive")
        if tablestore.stored_time(next_poll) > limit:
            return timer.failed("polling_inactive")
        return timer.passed(
            mode="polling (free/busy)" if connection.free_busy_only else "polling",
            nextPollAt=tablestore.iso_utc(next_poll),
        )
    info = ctx.deps.subscription(ctx.building, mailbox)
    if info is None:
        return timer.failed("subscription_missing", status="none")
    shown = dict(info.to_api())
    status, code = str(shown.get("status")), str(shown.get("reason") or "")
    if status == "failed":
        if code in _WEBHOOK_CODES:
            return timer.failed("webhook_unreachable", code=code)
        if code == "reauth_required":
            return timer.failed("reauth_required", detail=code)
        return timer.failed("subscription_failed", code=code or "unknown")
    sub_id = str(shown.get("id") or "")
    if status != "active" or not sub_id:
        return timer.failed("subscription_missing", status=status)
    try:  # Graph still has it, delivering to us: it passed the validation handshake there
        found = timer.response(
            ctx.deps.graph.request(
                connection,
                "GET",
                f"/subscriptions/{sub_id}",
                operation="check.subscription",
                actor=ctx.actor,
            )
        ).json()
    except GraphError as err:
        timer.error(err)
        if err.failure.status == 404:
            return timer.failed("subscription_gone", subscription=sub_id)
        return _fail(timer, err, writing=False)
    except BookingBridgeError as err:
        return _fail(timer, err, writing=False)
    url = str(found.get("notificationUrl") or "")
    if url.rstrip("/") != ctx.deps.notification_url.rstrip("/"):
        return timer.failed("subscription_url_mismatch", found=url or "nothing")
    return timer.passed(
        mode="notifications", subscriptionId=sub_id, expiresAt=found.get("expirationDateTime")
    )


def delta_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "delta")
    state = _delta_row(ctx)
    if ctx.connection is not None and ctx.connection.free_busy_only:
        return _free_busy_read(ctx, timer, state)
    link = str(state.get("deltaLink") or "") if state else ""
    if not link:
        return timer.failed("never_synced")
    try:  # read the stored token's next page (replaying a delta link changes nothing in Graph)
        timer.response(
            ctx.scope().request(
                "GET",
                link,
                headers={"Prefer": 'odata.maxpagesize=1, outlook.timezone="UTC"'},
                operation="check.delta",
                actor=ctx.actor,
            )
        )
    except GraphError as err:
        timer.error(err)
        if err.failure.status == 410 or err.failure.code in _RESYNC_CODES:
            return timer.failed(
                "delta_token_expired", code=f"{err.failure.status} {err.failure.code}"
            )
        return _fail(timer, err, writing=False)
    except BookingBridgeError as err:
        return _fail(timer, err, writing=False)
    baseline = state.get("baselineAt") if state else None
    return timer.passed(baselineAt=tablestore.iso_utc(baseline), lastSyncAt=tablestore.iso_utc(
        state.get("lastSyncAt") if state else None))  # fmt: skip


def _free_busy_read(ctx: Ctx, timer: Timer, state: Entity | None) -> StepResult:
    """A free/busy connection keeps no delta token: its reads are getSchedule rounds. The step
    asks getSchedule about the next hour as a sync round would (nothing is written)."""
    if state is None or not state.get("lastSyncAt"):
        return timer.failed("never_synced")
    assert ctx.connection is not None
    now = ctx.deps.now()
    try:
        _, requests = freebusy.schedule_items(
            ctx.scope(), ctx.connection, ctx.calendar, Window(now, now + timedelta(hours=1))
        )
    except GraphError as err:
        timer.error(err)
        return _fail(timer, err, writing=False)
    except BookingBridgeError as err:
        return _fail(timer, err, writing=False)
    return timer.passed(mode="freeBusy", requests=requests,
                        lastSyncAt=tablestore.iso_utc(state.get("lastSyncAt")))  # fmt: skip


# ---------------------------------------------------------------- calendar


def _marked_event(
    ctx: Ctx, role: str, title: str, start: datetime, end: datetime, show_as: str
) -> dict[str, Any]:
    return {
        "subject": SUBJECT_PREFIX + title,
        "start": graph_time(start, ctx.time_zone),
        "end": graph_time(end, ctx.time_zone),
        "showAs": show_as,
        "isReminderOn": False,
        "location": {"displayName": str(ctx.resource.get("name") or ctx.resource_id)},
        "body": {
            "contentType": "text",
            "content": f"Written by BookingBridge's go-live check {ctx.run_id}; removed when it ends.",
        },
        "transactionId": check_transaction_id(ctx.run_id, ctx.resource_id, role),
        "singleValueExtendedProperties": [{"id": CHECK_PROPERTY_ID, "value": ctx.run_id}],
    }


def calendar_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "calendar")
    if ctx.connection is not None and ctx.connection.free_busy_only:
        # Free/busy rights show no calendar to read; getSchedule (the delta step) proved access.
        return timer.passed(probe="skipped: free/busy-only connection")
    scope = ctx.scope()
    try:
        meta = timer.response(
            scope.request(
                "GET", ctx.calendar.calendar_path(""), operation="check.calendar", actor=ctx.actor
            )
        ).json()
    except BookingBridgeError as err:
        return _fail(timer, err, writing=False)
    detail = {"name": meta.get("name"), "canEdit": meta.get("canEdit")}
    if ctx.read_only:
        return timer.passed(**detail, probe="skipped: read-only connection")
    if meta.get("canEdit") is False:
        return timer.failed("calendar_read_only")
    slots = choose_slots(ctx)
    if slots is None:
        return _no_free_slot(timer, ctx)
    start, end = slots[0], slots[1]
    # A write probe the room never notices: `showAs: free` is no busy time (availability, sync and
    # the booking live check all ignore it), deleted at once.
    body = _marked_event(ctx, "probe", "write probe", start, end, "free")
    try:
        event = timer.response(
            scope.request(
                "POST",
                ctx.calendar.calendar_path("/events"),
                json_body=body,
                operation="check.probe",
                actor=ctx.actor,
            )
        ).json()
        ctx.save(probe_event_id=str(event["id"]))
        _delete_event(ctx, timer, str(event["id"]))
        ctx.save(probe_event_id=None)
    except BookingBridgeError as err:
        return _fail(timer, err, writing=True)
    return timer.passed(**detail, probe="written and deleted")


def _delete_event(ctx: Ctx, timer: Timer | None, event_id: str) -> bool:
    """DELETE an event of the mapped calendar; False when it was already gone."""
    try:
        response = ctx.scope().request(
            "DELETE", ctx.calendar.calendar_path(f"/events/{event_id}"),
            operation="check.cleanup", actor=ctx.actor,
        )  # fmt: skip
    except GraphError as err:
        if err.failure.status == 404:
            return False
        raise
    if timer is not None:
        timer.response(response)
    return True


# ---------------------------------------------------------------- slots and availability


def choose_slots(ctx: Ctx) -> tuple[datetime, datetime, datetime, datetime] | None:
    """(booking start, booking end, event start, event end): the first free window for both, at
    least `lead` ahead; recorded as the run's slot before anything is written. Chosen once."""
    if ctx.artefacts.slot_start is not None and ctx.artefacts.slot_end is not None:
        return _split(ctx, ctx.artefacts.slot_start)
    config = ctx.deps.config
    length = timedelta(minutes=config.slot_minutes)
    earliest = ctx.deps.now() + config.lead
    earliest = earliest.replace(second=0, microsecond=0) + timedelta(minutes=1)
    answer = availability(
        ctx.deps.tables, ctx.deps.availability, ctx.building,
        {"from": utc_z(earliest), "to": utc_z(earliest + timedelta(days=config.search_days)),
         "resourceId": ctx.resource_id, "slotMinutes": str(config.slot_minutes)},
    )  # fmt: skip
    need = 2 * length + _GAP
    for run in answer["resources"][0].get("free", []) if answer["resources"] else []:
        start, end = max(parse_rfc3339(run["start"]), earliest), parse_rfc3339(run["end"])
        if end - start >= need:
            ctx.save(slot_start=start, slot_end=start + need)
            return _split(ctx, start)
    return None


def _no_free_slot(timer: Timer, ctx: Ctx) -> StepResult:
    """A step that needs the run's slot, when `choose_slots` found no window long enough."""
    config = ctx.deps.config
    return timer.failed(
        "no_free_slot", minutes=2 * config.slot_minutes + 1, days=config.search_days
    )


def _split(ctx: Ctx, start: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    length = timedelta(minutes=ctx.deps.config.slot_minutes)
    return start, start + length, start + length + _GAP, start + 2 * length + _GAP


def busy_at(ctx: Ctx, start: datetime, end: datetime) -> list[Mapping[str, Any]]:
    """Availability's busy entries of the resource overlapping [start, end)."""
    answer = availability(
        ctx.deps.tables, ctx.deps.availability, ctx.building,
        {"from": utc_z(start), "to": utc_z(end), "resourceId": ctx.resource_id},
    )  # fmt: skip
    resources = answer["resources"]
    return [dict(b) for b in resources[0]["busy"]] if resources else []


def _outlook_block_shown(ctx: Ctx, start: datetime, end: datetime) -> bool:
    return any(
        b["source"] == "outlook" and b["start"] == utc_z(start) and b["end"] == utc_z(end)
        for b in busy_at(ctx, start, end)
    )


def wait_for(ctx: Ctx, condition: Callable[[], bool], seconds: float) -> float | None:
    """Seconds until `condition()` held (read every `poll_seconds`), or None after `seconds`."""
    t0 = ctx.deps.monotonic()
    while True:
        if condition():
            return ctx.deps.monotonic() - t0
        if ctx.deps.monotonic() - t0 >= seconds:
            return None
        ctx.deps.sleep(ctx.deps.config.poll_seconds)


def _force_delta_round(ctx: Ctx) -> None:
    """Ask the sync worker for one delta round of this calendar (as the reconciliation timer
    does): whether delta still converges when notifications did not."""
    ctx.deps.enqueue_sync(
        SyncRequest(ctx.building, ctx.calendar.mailbox, "reconcile", resource=ctx.resource_id), 0
    )


# ---------------------------------------------------------------- write-through


def write_through_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "write_through")
    slots = choose_slots(ctx)
    if slots is None:
        return _no_free_slot(timer, ctx)
    start, end = slots[0], slots[1]
    body = {
        "resourceId": ctx.resource_id,
        "start": utc_z(start),
        "end": utc_z(end),
        "title": f"write-through test (run {ctx.run_id})",
        "booker": {"email": CHECK_BOOKER_EMAIL, "name": CHECK_BOOKER_NAME},
    }
    try:
        view, _ = create_booking(
            ctx.deps.bookings, ctx.building, body,
            idempotency_key=check_idempotency_key(ctx.run_id, ctx.resource_id), actor=ctx.actor,
        )  # fmt: skip
    except Conflict as err:
        timer.audited()
        if err.reason == "slot_taken":
            return timer.failed("slot_taken", slot=f"{utc_z(start)}/{utc_z(end)}")
        return _fail(timer, err, writing=True)
    except BookingBridgeError as err:
        timer.audited()
        return _fail(timer, err, writing=True)
    booking_id, event_id = view["id"], view.get("outlookEventId")
    ctx.save(booking_id=booking_id, booking_event_id=event_id)
    timer.audited()
    if view["syncState"] != "synced" or not event_id:
        error = view.get("lastError") or {}
        code = str(error.get("reason") or error.get("code") or view["syncState"])
        status = int(error.get("status") or 0)
        if view["syncState"] == "pending":
            return timer.failed("write_through_pending", code=code, bookingId=booking_id)
        if code == "access_denied" or status == 403:
            return timer.failed("calendar_write_denied", code=str(error.get("code") or code),
                                bookingId=booking_id)  # fmt: skip
        if code == "reauth_required":
            return timer.failed("reauth_required", detail=code, bookingId=booking_id)
        return timer.failed("write_through_failed", code=code, bookingId=booking_id)
    try:  # read it back from the calendar, with our marker
        event = timer.response(
            ctx.scope().request(
                "GET",
                ctx.calendar.calendar_path(f"/events/{event_id}"),
                params={
                    "$expand": f"singleValueExtendedProperties($filter=id eq '{BOOKING_PROPERTY_ID}')"
                },
                operation="check.read_back",
                actor=ctx.actor,
            )
        ).json()
    except GraphError as err:
        timer.error(err)
        if err.failure.status == 404:
            return timer.failed("event_not_on_calendar", event=event_id, bookingId=booking_id)
        return _fail(timer, err, writing=False)
    except BookingBridgeError as err:
        return _fail(timer, err, writing=False)
    marks = [p.get("value") for p in event.get("singleValueExtendedProperties") or []]
    if booking_id not in marks:
        return timer.failed("event_not_on_calendar", event=event_id, bookingId=booking_id)
    return timer.passed(bookingId=booking_id, outlookEventId=event_id,
                        subject=event.get("subject"))  # fmt: skip


# ---------------------------------------------------------------- Outlook -> platform


def outlook_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "outlook_to_platform")
    slots = choose_slots(ctx)
    if slots is None:
        return _no_free_slot(timer, ctx)
    start, end = slots[2], slots[3]
    body = _marked_event(ctx, "outlook", "Outlook → platform test", start, end, "busy")
    try:
        event = timer.response(
            ctx.scope().request(
                "POST",
                ctx.calendar.calendar_path("/events"),
                json_body=body,
                operation="check.outlook_event",
                actor=ctx.actor,
            )
        ).json()
    except BookingBridgeError as err:
        return _fail(timer, err, writing=True)
    ctx.save(outlook_event_id=str(event["id"]))
    seconds = ctx.deps.config.outlook_seconds
    lag = wait_for(ctx, lambda: _outlook_block_shown(ctx, start, end), seconds)
    if lag is not None:
        return timer.passed(lagSeconds=round(lag, 3), outlookEventId=str(event["id"]))
    _force_delta_round(ctx)
    late = wait_for(ctx, lambda: _outlook_block_shown(ctx, start, end), seconds)
    if late is not None:
        return timer.failed("notifications_not_arriving", seconds=round(seconds, 1),
                            lag=round(seconds + late, 1))  # fmt: skip
    return timer.failed("sync_not_converging", seconds=round(2 * seconds, 1))


# ---------------------------------------------------------------- cancel


def cancel_step(ctx: Ctx) -> StepResult:
    timer = Timer(ctx, "cancel")
    booking_id, event_id = ctx.artefacts.booking_id, ctx.artefacts.booking_event_id
    assert booking_id is not None
    try:
        cancel_booking(ctx.deps.bookings, ctx.building, booking_id, actor=ctx.actor)
    except BookingBridgeError as err:
        timer.audited()
        return _fail(timer, err, writing=True)
    timer.audited()
    if event_id:
        try:
            timer.response(
                ctx.scope().request(
                    "GET",
                    ctx.calendar.calendar_path(f"/events/{event_id}"),
                    params={"$select": "id"},
                    operation="check.read_back",
                    actor=ctx.actor,
                )
            )
            return timer.failed("cancel_event_remains", event=event_id)
        except GraphError as err:
            if err.failure.status != 404:
                return _fail(timer, err, writing=False)
    slot_start, slot_end = _split(ctx, ctx.artefacts.slot_start or ctx.deps.now())[:2]
    if any(b.get("bookingId") == booking_id for b in busy_at(ctx, slot_start, slot_end)):
        return timer.failed("cancel_block_remains")
    detail: dict[str, Any] = {"bookingCancelled": booking_id}
    outlook_id = ctx.artefacts.outlook_event_id
    if outlook_id:  # the Outlook side: delete the test event, watch it leave availability
        _, _, start, end = _split(ctx, ctx.artefacts.slot_start or ctx.deps.now())
        try:
            _delete_event(ctx, timer, outlook_id)
        except BookingBridgeError as err:
            return _fail(timer, err, writing=True)
        seconds = ctx.deps.config.outlook_seconds
        lag = wait_for(ctx, lambda: not _outlook_block_shown(ctx, start, end), seconds)
        if lag is None:
            _force_delta_round(ctx)
            late = wait_for(ctx, lambda: not _outlook_block_shown(ctx, start, end), seconds)
            if late is not None:
                return timer.failed("removal_not_arriving", seconds=round(seconds, 1),
                                    lag=round(seconds + late, 1))  # fmt: skip
            return timer.failed("removal_not_converging", seconds=round(2 * seconds, 1))
        ctx.save(outlook_event_id=None)
        detail.update(outlookEventDeleted=outlook_id, removalLagSeconds=round(lag, 3))
    return timer.passed(**detail)


STEP_FUNCTIONS: dict[StepName, Callable[[Ctx], StepResult]] = {
    "connection": connection_step,
    "notifications": notifications_step,
    "delta": delta_step,
    "calendar": calendar_step,
    "write_through": write_through_step,
    "outlook_to_platform": outlook_step,
    "cancel": cancel_step,
}


# ---------------------------------------------------------------- clean-up


def _check_events(ctx: Ctx) -> list[str]:
    """Ids of the events on the mapped calendar carrying this run's extended property."""
    prop_filter = (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{CHECK_PROPERTY_ID}' "
        f"and ep/value eq '{ctx.run_id}')"
    )
    found = ctx.scope().get_json(
        ctx.calendar.calendar_path("/events"),
        params={"$filter": prop_filter, "$select": "id", "$top": "20"},
        operation="check.find", actor=ctx.actor,
    )  # fmt: skip
    return [str(e["id"]) for e in found.get("value", []) if e.get("id")]


def _check_blocks(ctx: Ctx, booking_id: str | None, event_ids: set[str]) -> list[Any]:
    start, end = ctx.artefacts.slot_start, ctx.artefacts.slot_end
    if start is None or end is None:
        return []
    blocks = ctx.deps.busy.blocks(ctx.building, start, end, resource_ids=[ctx.resource_id])
    return [
        b
        for b in blocks
        if (b.source == "platform" and booking_id is not None and b.booking_id == booking_id)
        or (b.source == "outlook" and b.outlook_event_id in event_ids)
        or (
            b.source == "outlook"
            and (b.attribution or {}).get("reason") == CHECK_ATTRIBUTION_REASON
        )
    ]


def cleanup(ctx: Ctx) -> list[str]:
    """Remove everything this resource's run wrote; returns what is left (empty: clean).

    Outlook events (recorded ids and whatever carries the run's extended property), the test
    booking (cancelled through the booking service, then its rows), busy blocks of the run's
    slot that are the run's (waiting up to `outlook_seconds` for sync to remove Outlook ones,
    then removing them directly, after a delta round was requested)."""
    left: list[str] = []
    deleted: set[str] = set()
    known = {e for e in (ctx.artefacts.probe_event_id, ctx.artefacts.outlook_event_id) if e}
    graph_ok = ctx.connection is not None
    if graph_ok:
        try:
            for event_id in sorted(known | set(_check_events(ctx))):
                _delete_event(ctx, None, event_id)
                deleted.add(event_id)
        except BookingBridgeError as err:
            logger.warning("check %s/%s: events not cleaned: %s", ctx.run_id, ctx.resource_id,
                           err.log_detail or err.reason)  # fmt: skip
            graph_ok = False
    booking_id = _cleanup_booking(ctx, left)
    event_ids = deleted | known
    blocks = _check_blocks(ctx, booking_id, event_ids)
    if any(b.source == "outlook" for b in blocks):
        wait_for(ctx, lambda: not [b for b in _check_blocks(ctx, booking_id, event_ids)
                                   if b.source == "outlook"], ctx.deps.config.outlook_seconds)  # fmt: skip
        if _check_blocks(ctx, booking_id, event_ids):
            _force_delta_round(ctx)
    for block in _check_blocks(ctx, booking_id, event_ids):
        ctx.deps.busy.remove(block)
    for block in _check_blocks(ctx, booking_id, event_ids):
        left.append(f"busy block {block.block_id}")
    if graph_ok:
        try:
            left.extend(f"Outlook event {e}" for e in _check_events(ctx))
        except BookingBridgeError:
            left.append("Outlook events not verified")
    elif known - deleted:
        left.extend(f"Outlook event {e}" for e in sorted(known - deleted))
    return left


def _booking_events(ctx: Ctx, booking_id: str) -> list[str]:
    prop_filter = (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{BOOKING_PROPERTY_ID}' "
        f"and ep/value eq '{booking_id}')"
    )
    found = ctx.scope().get_json(
        ctx.calendar.calendar_path("/events"),
        params={"$filter": prop_filter, "$select": "id", "$top": "5"},
        operation="check.find", actor=ctx.actor,
    )  # fmt: skip
    return [str(e["id"]) for e in found.get("value", []) if e.get("id")]


def _cleanup_booking(ctx: Ctx, left: list[str]) -> str | None:
    """Cancel the run's test booking (found by its idempotency key) and remove its rows."""
    bookings = ctx.deps.bookings
    table = bookings.bookings
    key_row = idempotency_row(check_idempotency_key(ctx.run_id, ctx.resource_id))
    booking_id = ctx.artefacts.booking_id
    if booking_id is None and key_row is not None:
        record = table.key_record(ctx.building, key_row)
        booking_id = str(record["keyOf"]) if record and record.get("keyOf") else None
    if booking_id is None:
        return None
    loaded = table.get(ctx.building, booking_id)
    if loaded is None:
        return booking_id
    booking, _ = loaded
    if booking.status == "confirmed" and ctx.connection is not None:
        try:
            cancel_booking(bookings, ctx.building, booking_id, actor=ctx.actor)
        except BookingBridgeError as err:
            logger.warning("check %s: test booking not cancelled: %s", ctx.run_id, err.reason)
        loaded = table.get(ctx.building, booking_id)
        booking = loaded[0] if loaded else booking
    if ctx.connection is not None:
        try:  # the event of a create that died before recording it has only our marker
            for event_id in {booking.outlook_event_id, *_booking_events(ctx, booking_id)} - {None}:
                _delete_event(ctx, None, str(event_id))
        except BookingBridgeError:
            left.append(f"Outlook event of the test booking {booking_id}")
    bookings.busy.remove(booking.block())
    with contextlib.suppress(NotFound), tablestore.storage_errors("remove test booking copy"):
        table.table.delete_entity(ctx.building, index_row(booking))  # its `s|` copy, if listed
    table.discard(booking)
    if table.get(ctx.building, booking_id) is not None:
        left.append(f"booking {booking_id}")
    return booking_id
