"""The sync worker: turns "mailbox M changed" into busy blocks (ARCHITECTURE.md §5).

One *round* for one mapped calendar: read the calendarView delta from the stored deltaLink (or a
fresh baseline), plan (`shared.sync.plan.plan`, pure), apply the plan through `BusyStore.put/remove`,
store the new deltaLink. Graph is the truth; every round derives state from it, so duplicate,
reordered, late or lost notifications are harmless (STYLE.md §8–9). The delta state, its lease,
coalescing and the window are in shared/sync/deltastate.py; the timers in shared/sync/polling.py;
sync health in shared/sync/health.py.

Decisions:
- **Baselines reconcile**: a full round removes the resource's Outlook blocks in the window that
  Graph no longer has. Full rounds: first round, `full` requests (mapped, forced resync), window
  slide, a changed mapping, 410 Gone / `syncStateNotFound` / `resyncRequired`.
- **Failures**: the deltaLink is only advanced after the plan is applied, so a failed round is
  simply repeated (delta replays are harmless). Each failure maps to a reason code
  (`reason_of`): `reauth_required`, `disconnected`, `access_denied`, `calendar_not_found`,
  `calendar_not_mapped`, `throttled`, `graph_unavailable`, `storage_unavailable`. Transient ones
  fail the queue message (the host retries it, then moves it to `notifications-poison`, counted by
  sync health) unless the request came from a timer, which retries on its own schedule.
- **Lag** (`lagSeconds`): when a round commits, its end minus the enqueue time of the oldest request
  it served (a notification's wait until its change is in Table Storage, plus up to the
  notification's own delivery delay, which we cannot see). Sync health shows, for a calendar with
  requests still waiting, the time since the oldest of them instead.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from shared.availability.busy import BusyBlock
from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    DependencyError,
    GraphError,
    GraphFailure,
    IdentityError,
    StorageError,
)
from shared.core.times import utc_z
from shared.directory.attributor import load_attributor
from shared.graph.guard import CalendarNotMapped, MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.sync import deltastate, freebusy
from shared.sync import plan as syncplan
from shared.sync.deltastate import (
    LEASE,
    Lease,
    Skipped,
    count,
    current_window,
    needs_baseline,
    when,
)
from shared.sync.deps import SyncDeps
from shared.sync.plan import Plan, Put, Remove, Window
from shared.sync.polling import WATCHING, next_poll_seconds
from shared.sync.queue import SyncRequest
from shared.webhooks import events as webhook_events
from shared.webhooks.model import Event

if TYPE_CHECKING:
    from shared.core.connection import Connection
    from shared.graph.client import CalendarScope

logger = logging.getLogger(__name__)

PAGE_SIZE = 200
MAX_PAGES = 1000  # 200,000 items: far beyond a calendar's window; stops a link loop
APPLY_WORKERS = 8
PREFER = f'odata.maxpagesize={PAGE_SIZE}, outlook.timezone="UTC"'
# Reasons whose transient failures fail the message (queue retry); timers retry on schedule.
_RETRIED_BY_QUEUE = frozenset({"notified", "mapped", "unmapped", "resync", "missed"})
# Reasons that (re)create the mailbox's subscription; other rounds only read its status.
_SUBSCRIBE = frozenset({"mapped", "resync", "missed"})
_RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "SyncStateNotFound"})

Outcome = Literal["synced", "unmapped", "failed"] | Skipped


@dataclass(frozen=True)
class RoundResult:
    """What one request did to one mapped calendar (logged; the bench counts them)."""

    resource_id: str
    outcome: Outcome
    full: bool = False
    changes: int = 0
    requests: int = 0
    reason: str | None = None
    transient: bool = False


def reason_of(err: Exception) -> tuple[str, bool]:
    """(reason code, transient) for a failed round."""
    if isinstance(err, CalendarNotMapped):
        return "calendar_not_mapped", False
    if isinstance(err, IdentityError):
        if err.error == "not_connected":
            return "disconnected", False
        if err.reauth or err.error == "reauth_required":
            return "reauth_required", False
        return "identity_unavailable", err.transient
    if isinstance(err, GraphError):
        status = err.failure.status
        if status == 401:
            return "reauth_required", False
        if status == 403:
            return "access_denied", False
        if status == 404:
            return "calendar_not_found", False
        if status == 429:
            return "throttled", True
        if status == 0 or status >= 500:
            return "graph_unavailable", True
        return f"graph_{err.failure.code}", False
    if isinstance(err, StorageError):
        return "storage_unavailable", err.transient
    if isinstance(err, Conflict):
        return "concurrent_update", True
    if isinstance(err, DependencyError):
        return err.reason or "dependency_unavailable", err.transient
    return "internal_error", True


def _is_resync(err: GraphError) -> bool:
    return err.failure.status == 410 or err.failure.code in _RESYNC_CODES


# ---------------------------------------------------------------- the worker


def handle(
    deps: SyncDeps, request: SyncRequest, requested_at: datetime | None
) -> list[RoundResult]:
    """Serve one queue message. Raises the first transient failure when the queue should retry
    (module docstring); permanent failures are recorded in sync health and not raised."""
    requested_at = requested_at or deps.now()
    resources = _resources_for(deps, request)
    results: list[RoundResult] = []
    failure: BookingBridgeError | None = None
    for resource_id in resources:
        try:
            results.append(sync_calendar(deps, request, resource_id, requested_at))
        except BookingBridgeError as err:
            reason, transient = reason_of(err)
            logger.warning(
                "sync %s/%s (%s) failed: %s %s",
                request.building, resource_id, request.reason, reason, err.log_detail,
            )  # fmt: skip
            results.append(RoundResult(resource_id, "failed", reason=reason, transient=transient))
            if transient and failure is None:
                failure = err
    if failure is not None and request.reason in _RETRIED_BY_QUEUE:
        raise failure
    return results


# Requests of one batch message (the webhook's GroupSend) served at once: a batch is the
# notifications of a busy moment, and one message must not serialise their rounds.
BATCH_WORKERS = 4


def handle_all(
    deps: SyncDeps, requests: Sequence[SyncRequest], requested_at: datetime | None
) -> list[tuple[SyncRequest, list[RoundResult]]]:
    """Serve every request of one queue message (`shared.sync.queue.decode_all`). Each is tried;
    the first failure the queue should retry is raised after all were, so the message comes back
    (the rounds that succeeded then find themselves coalesced: `deltastate.acquire`)."""
    if len(requests) == 1:
        return [(requests[0], handle(deps, requests[0], requested_at))]
    served: list[tuple[SyncRequest, list[RoundResult]]] = []
    failure: BookingBridgeError | None = None
    with ThreadPoolExecutor(min(BATCH_WORKERS, len(requests))) as pool:
        # A context each: log records keep the invocation id the host put in it.
        futures = [
            (r, pool.submit(contextvars.copy_context().run, handle, deps, r, requested_at))
            for r in requests
        ]
        for request, future in futures:
            try:
                served.append((request, future.result()))
            except BookingBridgeError as err:
                failure = failure or err
    if failure is not None:
        raise failure
    return served


def _resources_for(deps: SyncDeps, request: SyncRequest) -> list[str]:
    """The resource named by the request, or every mapped calendar of the request's mailbox."""
    if request.resource:
        return [request.resource]
    return [c.resource_id for c in _mapped_in(deps, request.building, request.mailbox)]


def _mapped_in(deps: SyncDeps, building: str, mailbox: str) -> list[MappedCalendar]:
    """The building's mapped calendars that live in `mailbox`."""
    entities = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building}
    )
    found = (MappedCalendar.from_entity(e) for e in entities)
    return [c for c in found if c is not None and c.mailbox == mailbox]


def sync_calendar(
    deps: SyncDeps, request: SyncRequest, resource_id: str, requested_at: datetime
) -> RoundResult:
    """Run (or coalesce) rounds for one resource until no request is left waiting for it."""
    building = request.building
    if request.reason == "missed":
        # Graph says notifications were lost: a loss signal the reconciliation tick honours if
        # no round starts after it (this request's own round normally does).
        deltastate.note_loss(deps.tables, building, resource_id, "missed", deps.now())
    acquired = deltastate.acquire(deps, building, resource_id, requested_at, request.full)
    if not isinstance(acquired, Lease):
        logger.info("sync %s/%s: %s (%s)", building, resource_id, acquired, request.reason)
        return RoundResult(resource_id, acquired)
    lease = acquired
    total_changes = total_requests = 0
    any_full = False
    subscribe = request.reason in _SUBSCRIBE
    # A reconciliation round finding changes means no notification announced them (or one is
    # still in flight): the gap signal. Only the first round: reruns serve requests that came in.
    unannounced = request.reason == "reconcile"
    while True:
        entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building, resource_id)
        calendar = MappedCalendar.from_entity(entity) if entity is not None else None
        if calendar is None:
            if _forget(deps, building, resource_id, request.mailbox, lease):
                continue  # a request (a new mapping?) arrived during the clean-up
            return RoundResult(resource_id, "unmapped")
        try:
            result = _round(deps, calendar, lease, subscribe=subscribe)
        except Exception as err:
            _fail(deps, calendar, lease, err)
            raise
        gap = unannounced and not result.full and result.polled is False and result.plan.seen > 0
        subscribe = unannounced = False
        total_changes += result.changes
        total_requests += result.requests
        any_full = any_full or result.full
        if not _commit(deps, calendar, lease, result, gap=gap):
            return RoundResult(resource_id, "synced", any_full, total_changes, total_requests)


@dataclass(frozen=True)
class _RoundDone:
    full: bool
    changes: int
    requests: int
    link: str
    window: Window
    plan: Plan
    polled: bool | None  # None: unchanged


def _round(
    deps: SyncDeps, calendar: MappedCalendar, lease: Lease, *, subscribe: bool
) -> _RoundDone:
    building, resource = calendar.building_id, calendar.resource_id
    connection = deps.connection(building)
    if connection is None:
        raise IdentityError("The building is not connected", error="not_connected", reauth=True)
    if connection.free_busy_only:
        return _free_busy_round(deps, connection, calendar)
    state = tablestore.get_entity(deltastate.state_table(deps), building, resource)
    # Subscribe when asked to, and on a calendar's first round whatever request triggered it (a
    # notification may overtake the `mapped` request, which is then coalesced).
    fresh = state is None or state.get("polled") is None or state.get("mailbox") != calendar.mailbox
    polled = _polled(deps, calendar, create=subscribe or fresh)
    wanted = current_window(deps.now(), deps.config.window_days)
    full = lease.full or needs_baseline(state, calendar, wanted)
    scope = deps.graph.for_calendar(connection, calendar)
    link = None if full or state is None else str(state["deltaLink"])
    window = wanted
    if not full and state is not None:
        window = Window(
            when(state["windowStart"]) or wanted.start, when(state["windowEnd"]) or wanted.end
        )
    spent = 0
    for attempt in range(3):
        try:
            items, new_link, pages = _fetch(deps, scope, calendar, lease, link, window)
            break
        except _Expired as expired:
            # 410 Gone / syncStateNotFound, also on a baseline's nextLink: start a new baseline.
            spent += expired.pages
            if attempt == 2:
                raise expired.error from None
            logger.info("sync %s/%s: delta token expired (%s); new baseline", building, resource,
                        expired.error.failure.code)  # fmt: skip
            full, window, link = True, wanted, None
    pages += spent
    result, stored_ids = _plan(deps, calendar, items, window, full, scope)
    # Outgoing webhooks: handed over before the blocks are written (a crash after the writes
    # and before the deltaLink commit re-runs the round, which then finds nothing to change);
    # each delivery waits until its block change is seen committed (DESIGN.md, issue 16).
    deps.emit(building, outlook_events(result, stored_ids))
    if result.actions and deps.now() - lease.started > LEASE / 3:
        deltastate.renew(
            deps, building, resource, lease
        )  # a long (throttled) fetch: keep the lease
    _apply(deps, result)
    logger.info(
        "sync %s/%s: %s round, %d items, %d changes (%d own, %d skipped), %d requests",
        building, resource, "full" if full else "delta", result.seen, result.changes,
        result.own, result.skipped, pages,
    )  # fmt: skip
    return _RoundDone(full, result.changes, pages, new_link, window, result, polled)


def _free_busy_round(
    deps: SyncDeps, connection: Connection, calendar: MappedCalendar
) -> _RoundDone:
    """A free/busy-only connection's round (shared/sync/freebusy.py): getSchedule over the whole
    window, planned as a baseline; always polled, never subscribed, no deltaLink kept (so a
    reconnect with full access starts with a baseline)."""
    window = current_window(deps.now(), deps.config.window_days)
    # The building's mapped calendars go to getSchedule in fixed groups of freebusy.BATCH (by
    # resource id): a round asks for its whole group, and the group's other rounds, enqueued by
    # the same poll tick, find their answers fresh (shared/sync/freebusy.py).
    mapped = sorted(
        (
            c
            for c in (
                MappedCalendar.from_entity(e)
                for e in tablestore.query_all(
                    deps.tables(tablestore.RESOURCES), "PartitionKey eq @b",
                    {"b": calendar.building_id},
                )
            )
            if c is not None
        ),
        key=lambda c: c.resource_id,
    )  # fmt: skip
    at = next((n for n, c in enumerate(mapped) if c.resource_id == calendar.resource_id), 0)
    group = mapped[at - at % freebusy.BATCH :][: freebusy.BATCH]
    peers = [c for c in group if c.resource_id != calendar.resource_id]
    scope = deps.graph.for_calendars(connection, [calendar, *peers])
    items, requests = freebusy.schedule_items(
        scope, connection, calendar, window, peers=peers,
        fresh_seconds=deps.config.poll_min_seconds / 2,
    )  # fmt: skip
    target = syncplan.Target(
        calendar.building_id, calendar.resource_id, calendar.mailbox, calendar.calendar_id
    )
    stored = deps.busy.blocks(
        calendar.building_id, window.start, window.end, resource_ids=[calendar.resource_id]
    )
    result = syncplan.plan(
        items, stored, window, target, attribute=freebusy.nobody, store_subjects=False,
        full=True, detail=freebusy.FREE_BUSY_DETAIL,
    )  # fmt: skip
    deps.emit(calendar.building_id, outlook_events(result, {b.block_id for b in stored}))
    _apply(deps, result)
    logger.info(
        "sync %s/%s: free/busy round, %d intervals, %d changes, %d requests",
        calendar.building_id, calendar.resource_id, result.seen, result.changes, requests,
    )  # fmt: skip
    return _RoundDone(True, result.changes, requests, "", window, result, True)


def _polled(deps: SyncDeps, calendar: MappedCalendar, *, create: bool) -> bool | None:
    """Whether the calendar must be polled: its mailbox has no live subscription (a calendar
    shared to a delegated account, or creating one failed). `create`: ensure one exists (Graph
    call when missing); else only read its status. None when unknown (keep what is stored)."""
    try:
        if create:
            info = deps.subscribe(calendar.building_id, calendar.mailbox)
        else:
            info = deps.subscription(calendar.building_id, calendar.mailbox)
    except BookingBridgeError as err:
        # The calendar still gets synced: by polling until a subscription exists.
        logger.warning(
            "sync %s/%s: subscription unavailable (%s)", calendar.building_id,
            calendar.resource_id, err.reason,
        )  # fmt: skip
        return True if create else None
    return info is None or info.status not in WATCHING


class _Expired(Exception):
    def __init__(self, error: GraphError, pages: int) -> None:
        self.error = error
        self.pages = pages


def _fetch(
    deps: SyncDeps,
    scope: CalendarScope,
    calendar: MappedCalendar,
    lease: Lease,
    link: str | None,
    window: Window,
) -> tuple[list[dict[str, Any]], str, int]:
    """Every page of one delta round: (items in order, the new deltaLink, requests made)."""
    items: list[dict[str, Any]] = []
    url = link or calendar.calendar_path("/calendarView/delta")
    params: dict[str, str] | None = None
    if link is None:
        params = {
            "startDateTime": utc_z(window.start),
            "endDateTime": utc_z(window.end),
        }
    renew_at = lease.started + LEASE / 2
    for page in range(1, MAX_PAGES + 1):
        try:
            body = scope.get_json(
                url, params=params, headers={"Prefer": PREFER}, mailbox=calendar.graph_mailbox,
                operation="sync.delta", actor="sync",
            )  # fmt: skip
        except GraphError as err:
            if _is_resync(err):
                raise _Expired(err, page) from err
            raise
        params = None  # links carry the query: follow them verbatim (GRAPH.md §7.2)
        value = body.get("value") if isinstance(body, dict) else None
        items.extend(v for v in value or [] if isinstance(v, dict))
        next_link = body.get("@odata.nextLink") if isinstance(body, dict) else None
        delta_link = body.get("@odata.deltaLink") if isinstance(body, dict) else None
        if isinstance(delta_link, str) and delta_link:
            return items, delta_link, page
        if not isinstance(next_link, str) or not next_link:
            raise GraphError(_failure("noDeltaLink"))
        url = next_link
        if deps.now() >= renew_at:
            deltastate.renew(deps, calendar.building_id, calendar.resource_id, lease)
            renew_at = deps.now() + LEASE / 2
    raise GraphError(_failure("tooManyPages"))


def _failure(code: str) -> GraphFailure:
    return GraphFailure(status=502, code=code)


def _plan(
    deps: SyncDeps,
    calendar: MappedCalendar,
    items: Sequence[dict[str, Any]],
    window: Window,
    full: bool,
    scope: CalendarScope,
) -> tuple[Plan, set[str]]:
    """The plan, and the ids of the blocks already stored (what is an update, not a creation)."""
    target = syncplan.Target(
        calendar.building_id, calendar.resource_id, calendar.mailbox, calendar.calendar_id
    )
    if not items and not full:
        return Plan((), 0, 0, 0), set()  # nothing changed: no blocks or directory to read
    stored = deps.busy.blocks(
        calendar.building_id, window.start, window.end, resource_ids=[calendar.resource_id]
    )
    attributor = load_attributor(deps.tables, calendar.building_id)
    return syncplan.plan(
        items, stored, window, target, attribute=attributor,
        store_subjects=attributor.settings.store_external_subjects, full=full,
        bookings=_bookings_of(deps, calendar, items, stored),
        gone_series=_gone_series(scope, calendar, items, stored),
    ), {b.block_id for b in stored}  # fmt: skip


# Removals that mean "no longer booked in Outlook" (not a window move or our own booking).
_CANCELLED = frozenset({"removed", "cancelled", "free", "empty", "not_in_baseline"})


def outlook_events(result: Plan, stored_ids: set[str]) -> list[Event]:
    """outlook_booking.created / updated / cancelled for the plan's actions on Outlook blocks."""
    events = []
    for action in result.actions:
        block = action.block
        if block.source != "outlook":
            continue
        if isinstance(action, Put):
            kind = "updated" if block.block_id in stored_ids else "created"
        elif action.reason in _CANCELLED:
            kind = "cancelled"
        else:
            continue
        events.append(
            webhook_events.outlook_booking(
                kind, building=block.building_id, resource=block.resource_id,
                block=block.block_id, start=block.start, end=block.end, show_as=block.show_as,
                attribution=block.attribution,
            )
        )  # fmt: skip
    return events


def _bookings_of(
    deps: SyncDeps,
    calendar: MappedCalendar,
    items: Sequence[dict[str, Any]],
    stored: Sequence[BusyBlock],
) -> set[str]:
    """Platform bookings of this resource named by transactionIds but without a block in the
    window: a booking being created, cancelled while its event is being deleted, or whose block
    is gone for another reason (its event could not be deleted, a repair lost to another block).
    The bookings table decides, not the busy table (point reads; rare, so no batching).

    A failed read fails the round (repeated, nothing applied): guessing "not ours" would import
    our own event as an Outlook booking and count the slot twice (issue 20)."""
    have = {b.booking_id for b in stored if b.source == "platform"}
    found = set()
    table = deps.tables(tablestore.BOOKINGS)
    for booking_id in syncplan.transaction_bookings(items) - have:
        try:
            entity = tablestore.get_entity(table, calendar.building_id, booking_id)
        except ValueError:
            continue  # not a usable key: no booking of ours has it
        if entity is not None and entity.get("resourceId") == calendar.resource_id:
            found.add(booking_id)
    return found


def _gone_series(
    scope: CalendarScope,
    calendar: MappedCalendar,
    items: Sequence[dict[str, Any]],
    stored: Sequence[BusyBlock],
) -> set[str]:
    """Series masters the round reports `@removed` whose occurrences we hold as blocks, and that
    Graph confirms gone (404 on the master). Delta may name only the master when a whole series
    is deleted, but it also reports changes *outside* the window as removals, so a master's
    `@removed` alone must not clear occurrences of a series that still exists. One GET per such
    master (rare); any other failure fails the round (repeated, nothing applied)."""
    masters = {b.series_master_id for b in stored if b.source == "outlook" and b.series_master_id}
    named = {str(i["id"]) for i in items if "@removed" in i and isinstance(i.get("id"), str)}
    gone = set()
    for master in sorted(masters & named):
        try:
            event = scope.get_json(
                calendar.calendar_path(f"/events/{quote(master, safe='')}"),
                params={"$select": "id,isCancelled"}, mailbox=calendar.graph_mailbox,
                operation="sync.series", actor="sync",
            )  # fmt: skip
        except GraphError as err:
            if err.failure.status != 404:
                raise
            gone.add(master)
            continue
        if isinstance(event, dict) and event.get("isCancelled") is True:
            gone.add(master)
    return gone


def _apply(deps: SyncDeps, result: Plan) -> None:
    """Apply the plan; idempotent, so a failure part-way is repaired by repeating the round."""

    def one(action: Put | Remove) -> None:
        if isinstance(action, Put):
            deps.busy.put(action.block)
        else:
            deps.busy.remove(action.block)

    if len(result.actions) <= 2:
        for action in result.actions:
            one(action)
        return
    # Different blocks are independent (each put/remove is idempotent and lock-bumping).
    with ThreadPoolExecutor(max_workers=APPLY_WORKERS) as pool:
        list(pool.map(one, result.actions))


def _commit(
    deps: SyncDeps, calendar: MappedCalendar, lease: Lease, done: _RoundDone, *, gap: bool = False
) -> bool:
    """Store the round's deltaLink; True (lease kept, renewed) when requests arrived meanwhile.
    `gap`: the round found changes no notification announced, a loss signal (polling.py)."""
    now = deps.now()
    rerun: list[tuple[bool, datetime]] = []

    def change(state: Entity) -> Entity:
        rerun.clear()
        dirty = when(state.get("dirtySince"))
        polled = bool(state.get("polled")) if done.polled is None else done.polled
        new: Entity = {
            **state,
            "calendarId": calendar.calendar_id,
            "mailbox": calendar.mailbox,
            "graphMailbox": calendar.graph_mailbox,
            "deltaLink": done.link,
            "windowStart": done.window.start,
            "windowEnd": done.window.end,
            "lastStartedAt": lease.started,
            "lastSyncAt": now,
            "lagSeconds": max(0, int((now - lease.pending_since).total_seconds())),
            "polled": polled,
            "rounds": count(state.get("rounds")) + 1,
            "graphRequests": count(state.get("graphRequests")) + done.requests,
            "changes": count(state.get("changes")) + done.changes,
        }
        if done.full:
            new["baselineAt"] = lease.started
        if gap:
            new.update(suspectAt=now, suspectReason="unannounced_changes")
        if polled:
            seconds = next_poll_seconds(
                count(state.get("pollSeconds")) or None, done.changes > 0, deps.config
            )
            new["pollSeconds"] = seconds
            new["nextPollAt"] = now + timedelta(seconds=seconds)
        else:
            new["pollSeconds"] = new["nextPollAt"] = None
        if dirty is not None:
            rerun.append((bool(state.get("fullPending")), dirty))
            new.update(
                leaseUntil=now + LEASE, roundStartedAt=now, dirtySince=None, fullPending=None
            )
        else:
            new.update(leaseId=None, leaseUntil=None, roundStartedAt=None)
        return new

    stored = deltastate.update_held(deps, calendar.building_id, calendar.resource_id, lease, change)
    if stored is None:
        logger.warning(
            "sync %s/%s: lease lost; round not committed",
            calendar.building_id,
            calendar.resource_id,
        )
        return False
    _record_health(deps, calendar, ok=True, at=now, lag=int(stored.get("lagSeconds") or 0))
    if not rerun:
        return False
    lease.started = now
    lease.full, lease.pending_since = rerun[0]
    return True


def _fail(deps: SyncDeps, calendar: MappedCalendar, lease: Lease, err: Exception) -> None:
    """Record the failure and release the lease. Requests that waited for this round are dropped
    with it: the failing message is retried by the queue (or a timer runs again), and that later
    round covers them."""
    reason, _ = reason_of(err)
    now = deps.now()

    def change(state: Entity) -> Entity:
        new: Entity = {
            **state,
            "leaseId": None,
            "leaseUntil": None,
            "roundStartedAt": None,
            "dirtySince": None,
            "fullPending": None,
            "lastErrorReason": reason,
            "lastErrorAt": now,
        }
        if state.get("polled"):
            seconds = next_poll_seconds(count(state.get("pollSeconds")) or None, False, deps.config)
            new.update(pollSeconds=seconds, nextPollAt=now + timedelta(seconds=seconds))
        return new

    try:
        deltastate.update_held(deps, calendar.building_id, calendar.resource_id, lease, change)
        _record_health(deps, calendar, ok=False, at=now, reason=reason)
    except BookingBridgeError as also:
        logger.error("sync %s/%s: could not record failure: %s", calendar.building_id,
                     calendar.resource_id, also.log_detail)  # fmt: skip


def _record_health(
    deps: SyncDeps,
    calendar: MappedCalendar,
    *,
    ok: bool,
    at: datetime,
    lag: int = 0,
    reason: str | None = None,
) -> None:
    """Sync health on the resource entity, only while it is still mapped to this calendar."""

    def build(current: Entity | None) -> Entity | None:
        mapped = MappedCalendar.from_entity(current) if current is not None else None
        if current is None or mapped is None or not mapped.same_mapping(calendar):
            return None
        new = dict(current)
        if ok:
            new.update(syncStatus="synced", lastSyncAt=at, lagSeconds=lag)
            new.pop("syncReason", None)
        else:
            status = "not_synced" if reason == "disconnected" else "error"
            new.update(
                syncStatus=status,
                syncReason=reason,
                lastError=tablestore.json_property(
                    {"reason": reason, "at": tablestore.iso_utc(at)}
                ),
            )
        previous = current.get("syncStatus")
        if previous != new["syncStatus"]:
            # Handed over before the write (a retry of this build makes the same event id).
            deps.emit(calendar.building_id, [webhook_events.mapping_status(
                building=calendar.building_id, resource=calendar.resource_id,
                status=str(new["syncStatus"]), previous=previous, reason=new.get("syncReason"),
                table=tablestore.RESOURCES, at=tablestore.iso_utc(at) or "",
            )])  # fmt: skip
        return new

    tablestore.replace_optimistic(
        deps.tables(tablestore.RESOURCES), calendar.building_id, calendar.resource_id, build
    )


def _forget(deps: SyncDeps, building: str, resource: str, mailbox: str, lease: Lease) -> bool:
    """The resource is not mapped (any more): drop its Outlook blocks, delta state, subscription.

    True when requests arrived meanwhile (the lease is kept): the caller looks at the mapping again.
    """
    state = tablestore.get_entity(deltastate.state_table(deps), building, resource)
    windows = [current_window(deps.now(), deps.config.window_days)]
    if state is not None:
        start, end = when(state.get("windowStart")), when(state.get("windowEnd"))
        if start is not None and end is not None:
            windows.append(Window(start, end))
        mailbox = str(state.get("mailbox") or mailbox)
    start = min(w.start for w in windows)
    end = max(w.end for w in windows)
    blocks = deps.busy.blocks(building, start, end, resource_ids=[resource], source="outlook")
    _apply(deps, Plan(tuple(Remove(b, "removed") for b in blocks), 0, 0, 0))
    if mailbox and not _mapped_in(deps, building, mailbox):
        try:
            deps.unsubscribe(building, mailbox)
        except BookingBridgeError as err:
            logger.warning(
                "sync %s: releasing a mailbox's subscription failed: %s", building, err.reason
            )
    logger.info("sync %s/%s: unmapped, %d Outlook blocks removed", building, resource, len(blocks))
    return deltastate.drop(deps, building, resource, lease)
