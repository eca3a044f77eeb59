"""The sync worker: turns "mailbox M changed" into busy blocks (ARCHITECTURE.md §5).

One *round* for one mapped calendar: read the calendarView delta from the stored deltaLink (or a
fresh baseline), plan (`shared.sync.plan.plan`, pure), apply the plan through `BusyStore.put/remove`,
store the new deltaLink. Graph is the truth; every round derives state from it, so duplicate,
reordered, late or lost notifications are harmless (STYLE.md §8–9).

Delta state (`deltastate`, PartitionKey building, RowKey resource; DESIGN.md):

| property | meaning |
|---|---|
| `calendarId`, `mailbox`, `graphMailbox` | the mapping the state belongs to (another mapping → baseline) |
| `deltaLink`, `windowStart`, `windowEnd`, `baselineAt` | Graph's link after the last committed round, the window it tracks |
| `leaseId`, `leaseUntil`, `roundStartedAt` | the running round (ETag-guarded lease: one round per calendar at a time) |
| `lastStartedAt`, `lastSyncAt`, `lagSeconds` | the last successful round: when it started and ended, and its lag |
| `dirtySince`, `fullPending` | requests that arrived while a round ran: the lease holder runs again |
| `polled`, `pollSeconds`, `nextPollAt` | calendars without a subscription (shared to a delegated account) |
| `lastErrorReason`, `lastErrorAt`, `rounds`, `graphRequests`, `changes` | health and counters (bench) |

Decisions:
- **Coalescing, derived**: a request is skipped when a round that *started* after the request was
  enqueued has succeeded or is running (it sees the change). Queue insertion times have one-second
  resolution and come from the storage clock, so "after" means `COALESCE_MARGIN` (2 s) after. A
  request that meets a running round that started earlier marks the state dirty and returns; the
  lease holder commits and runs once more. A burst of notifications costs at most two rounds.
- **Lease**: `LEASE` (2 min), renewed between pages; a crashed holder's lease expires and the poll
  timer re-enqueues calendars left dirty (`STALE_DIRTY`).
- **Window**: [today − 1 day, today + `BB_SYNC_WINDOW_DAYS`] in UTC days. Graph fixes a delta
  token's window, so when the day changes the next round is a new baseline that reconciles (at
  most one baseline per calendar per day). Blocks that slid out of the window stay (history).
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
- **Polling**: calendars `ensure_subscription` cannot watch (calendars shared to a delegated
  account) are polled with delta rounds; the interval is `BB_POLL_MIN_SECONDS` after a round with
  changes and doubles while idle up to `BB_POLL_MAX_SECONDS` (also after failures).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    DependencyError,
    GraphError,
    IdentityError,
    NotFound,
    StorageError,
    Unprocessable,
)
from shared.core.validate import check_path
from shared.graph.guard import CalendarNotMapped, MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.sync import plan as syncplan
from shared.sync.plan import Plan, Put, Remove, Window
from shared.sync.queue import QUEUE, SyncRequest

if TYPE_CHECKING:
    from shared.availability.busy import BusyBlock, BusyStore
    from shared.connect.connections import Connection
    from shared.core.settings import Settings
    from shared.graph.client import CalendarScope, GraphClient
    from shared.subscriptions.service import SubscriptionInfo

logger = logging.getLogger(__name__)

POISON_QUEUE = QUEUE + "-poison"
LEASE = timedelta(minutes=2)
COALESCE_MARGIN = timedelta(seconds=2)
STALE_DIRTY = timedelta(seconds=30)
PAGE_SIZE = 200
MAX_PAGES = 1000  # 200,000 items: far beyond a calendar's window; stops a link loop
ACQUIRE_ATTEMPTS = 8
APPLY_WORKERS = 8
RECONCILE_RATE = 50.0  # requests per second the reconciliation sweep spreads its work at
PEEK_MAX = 32  # the queue service's peek limit
PREFER = f'odata.maxpagesize={PAGE_SIZE}, outlook.timezone="UTC"'
# Reasons whose transient failures fail the message (queue retry); timers retry on schedule.
_RETRIED_BY_QUEUE = frozenset({"notified", "mapped", "unmapped", "resync", "missed"})
# Reasons that (re)create the mailbox's subscription; other rounds only read its status.
_SUBSCRIBE = frozenset({"mapped", "resync", "missed"})
_WATCHING = frozenset({"active", "creating"})
_RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "SyncStateNotFound"})

Outcome = Literal["synced", "coalesced", "deferred", "unmapped", "failed"]


# ---------------------------------------------------------------- configuration and collaborators


@dataclass(frozen=True)
class SyncConfig:
    window_days: int = 60
    poll_min_seconds: int = 30
    poll_max_seconds: int = 300

    @staticmethod
    def of(settings: Settings) -> SyncConfig:
        return SyncConfig(
            settings.sync_window_days, settings.poll_min_seconds, settings.poll_max_seconds
        )


@dataclass(frozen=True)
class SyncDeps:
    """Everything the worker touches; `default_sync_deps()` builds the process's set."""

    tables: TableSource
    graph: GraphClient
    connection: Callable[[str], Connection | None]
    busy: BusyStore
    subscribe: Callable[[str, str], SubscriptionInfo | None]  # ensure_subscription
    unsubscribe: Callable[[str, str], bool]  # release_subscription
    subscription: Callable[[str, str], SubscriptionInfo | None]  # subscription_for
    enqueue: Callable[[SyncRequest, float], None]  # (request, delay in seconds)
    peek_poison: Callable[[], list[str]]  # bodies of up to PEEK_MAX poison messages
    config: SyncConfig = field(default_factory=SyncConfig)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


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


# ---------------------------------------------------------------- pure helpers


def current_window(now: datetime, days: int) -> Window:
    """[today − 1 day, today + days] in whole UTC days."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(today - timedelta(days=1), today + timedelta(days=days))


def needs_baseline(
    state: Mapping[str, Any] | None, calendar: MappedCalendar, wanted: Window
) -> bool:
    """A new baseline instead of a delta round from the stored link (module docstring)."""
    if state is None or not state.get("deltaLink"):
        return True
    if (
        state.get("calendarId") != calendar.calendar_id
        or state.get("mailbox") != calendar.mailbox
        or state.get("graphMailbox") != calendar.graph_mailbox
    ):
        return True
    return (
        _when(state.get("windowStart")) != wanted.start
        or _when(state.get("windowEnd")) != wanted.end
    )


def next_poll_seconds(previous: int | None, changed: bool, config: SyncConfig) -> int:
    """Adaptive polling: the minimum after changes, doubling (to the maximum) while idle."""
    if changed or not previous:
        return config.poll_min_seconds
    return min(config.poll_max_seconds, max(config.poll_min_seconds, previous * 2))


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


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) else 0


def _when(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (the SDK returns its own datetime subclass)."""
    if isinstance(value, str) and value:
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond, tzinfo=UTC,
    )  # fmt: skip


def _is_resync(err: GraphError) -> bool:
    return err.failure.status == 410 or err.failure.code in _RESYNC_CODES


# ---------------------------------------------------------------- delta state (lease)


@dataclass
class _Lease:
    lease_id: str
    started: datetime  # when the current round began (our clock)
    pending_since: datetime  # enqueue time of the oldest request the round serves
    full: bool


def _state_table(deps: SyncDeps) -> Any:
    return deps.tables(tablestore.DELTA_STATE)


def _write(table: Any, entity: Entity, etag: str | None) -> bool:
    """Create (no etag) or replace under the ETag; False when another writer got there first."""
    clean = {k: v for k, v in entity.items() if v is not None}
    try:
        with tablestore.storage_errors("write deltastate"):
            if etag is None:
                table.create_entity(clean)
            else:
                table.update_entity(
                    clean, mode=UpdateMode.REPLACE, etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )  # fmt: skip
    except (Conflict, NotFound):
        return False
    return True


def _acquire(
    deps: SyncDeps, building: str, resource: str, requested_at: datetime, full: bool
) -> _Lease | Outcome:
    """Take the calendar's lease, or say why this request needs no round of its own."""
    table = _state_table(deps)
    covered_after = requested_at + COALESCE_MARGIN
    for _ in range(ACQUIRE_ATTEMPTS):
        now = deps.now()
        state = tablestore.get_entity(table, building, resource)
        etag = tablestore.etag_of(state) if state is not None else None
        if state is not None:
            last = _when(state.get("baselineAt" if full else "lastStartedAt"))
            if last is not None and last >= covered_after:
                return "coalesced"
        lease_until = _when(state.get("leaseUntil")) if state is not None else None
        if state is not None and lease_until is not None and lease_until > now:
            running = _when(state.get("roundStartedAt"))
            if not full and running is not None and running >= covered_after:
                return "coalesced"
            dirty = _when(state.get("dirtySince"))
            marked = {
                **state,
                "dirtySince": min(dirty, requested_at) if dirty else requested_at,
                "fullPending": bool(state.get("fullPending")) or full,
            }
            if _write(table, marked, etag):
                return "deferred"
            continue
        dirty = _when(state.get("dirtySince")) if state is not None else None
        lease = _Lease(
            uuid.uuid4().hex,
            now,
            min(dirty, requested_at) if dirty else requested_at,
            full or bool(state is not None and state.get("fullPending")),
        )
        taken = {
            **(state or {"PartitionKey": building, "RowKey": resource}),
            "leaseId": lease.lease_id,
            "leaseUntil": now + LEASE,
            "roundStartedAt": now,
            "dirtySince": None,
            "fullPending": None,
        }
        if _write(table, taken, etag):
            return lease
    raise Conflict("The calendar's sync state is contended; retry", reason="sync_contended")


def _update_held(
    deps: SyncDeps,
    building: str,
    resource: str,
    lease: _Lease,
    change: Callable[[Entity], Entity | None],
) -> Entity | None:
    """Read-modify-write the state while holding `lease`; None if the lease was lost."""
    table = _state_table(deps)
    for _ in range(ACQUIRE_ATTEMPTS):
        state = tablestore.get_entity(table, building, resource)
        if state is None or state.get("leaseId") != lease.lease_id:
            return None
        new = change(dict(state))
        if new is None:
            return state
        if _write(table, new, tablestore.etag_of(state)):
            return new
    raise Conflict("The calendar's sync state is contended; retry", reason="sync_contended")


def _renew(deps: SyncDeps, building: str, resource: str, lease: _Lease) -> None:
    def extend(state: Entity) -> Entity:
        return {**state, "leaseUntil": deps.now() + LEASE}

    if _update_held(deps, building, resource, lease, extend) is None:
        raise Conflict("The calendar's sync lease was lost", reason="lease_lost")


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


def _resources_for(deps: SyncDeps, request: SyncRequest) -> list[str]:
    """The resource named by the request, or every mapped calendar of the request's mailbox."""
    if request.resource:
        return [request.resource]
    entities = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": request.building}
    )
    found = []
    for entity in entities:
        calendar = MappedCalendar.from_entity(entity)
        if calendar is not None and calendar.mailbox == request.mailbox:
            found.append(calendar.resource_id)
    return found


def sync_calendar(
    deps: SyncDeps, request: SyncRequest, resource_id: str, requested_at: datetime
) -> RoundResult:
    """Run (or coalesce) rounds for one resource until no request is left waiting for it."""
    building = request.building
    acquired = _acquire(deps, building, resource_id, requested_at, request.full)
    if not isinstance(acquired, _Lease):
        logger.info("sync %s/%s: %s (%s)", building, resource_id, acquired, request.reason)
        return RoundResult(resource_id, acquired)
    lease = acquired
    total_changes = total_requests = 0
    any_full = False
    subscribe = request.reason in _SUBSCRIBE
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
        subscribe = False
        total_changes += result.changes
        total_requests += result.requests
        any_full = any_full or result.full
        if not _commit(deps, calendar, lease, result):
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
    deps: SyncDeps, calendar: MappedCalendar, lease: _Lease, *, subscribe: bool
) -> _RoundDone:
    building, resource = calendar.building_id, calendar.resource_id
    connection = deps.connection(building)
    if connection is None:
        raise IdentityError("The building is not connected", error="not_connected", reauth=True)
    state = tablestore.get_entity(_state_table(deps), building, resource)
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
            _when(state["windowStart"]) or wanted.start, _when(state["windowEnd"]) or wanted.end
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
    result = _plan(deps, calendar, items, window, full)
    if result.actions and deps.now() - lease.started > LEASE / 3:
        _renew(deps, building, resource, lease)  # a long (throttled) fetch: keep the lease
    _apply(deps, result)
    logger.info(
        "sync %s/%s: %s round, %d items, %d changes (%d own, %d skipped), %d requests",
        building, resource, "full" if full else "delta", result.seen, result.changes,
        result.own, result.skipped, pages,
    )  # fmt: skip
    return _RoundDone(full, result.changes, pages, new_link, window, result, polled)


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
    return info is None or info.status not in _WATCHING


class _Expired(Exception):
    def __init__(self, error: GraphError, pages: int) -> None:
        self.error = error
        self.pages = pages


def _fetch(
    deps: SyncDeps,
    scope: CalendarScope,
    calendar: MappedCalendar,
    lease: _Lease,
    link: str | None,
    window: Window,
) -> tuple[list[dict[str, Any]], str, int]:
    """Every page of one delta round: (items in order, the new deltaLink, requests made)."""
    items: list[dict[str, Any]] = []
    url = link or calendar.calendar_path("/calendarView/delta")
    params: dict[str, str] | None = None
    if link is None:
        params = {
            "startDateTime": window.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": window.end.strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            _renew(deps, calendar.building_id, calendar.resource_id, lease)
            renew_at = deps.now() + LEASE / 2
    raise GraphError(_failure("tooManyPages"))


def _failure(code: str) -> Any:
    from shared.core.errors import GraphFailure

    return GraphFailure(status=502, code=code)


def _plan(
    deps: SyncDeps,
    calendar: MappedCalendar,
    items: Sequence[dict[str, Any]],
    window: Window,
    full: bool,
) -> Plan:
    target = syncplan.Target(
        calendar.building_id, calendar.resource_id, calendar.mailbox, calendar.calendar_id
    )
    if not items and not full:
        return Plan((), 0, 0, 0)  # nothing changed: no need to read blocks or the directory
    from shared.directory.people import load_attributor

    stored = deps.busy.blocks(
        calendar.building_id, window.start, window.end, resource_ids=[calendar.resource_id]
    )
    attributor = load_attributor(deps.tables, calendar.building_id)
    return syncplan.plan(
        items, stored, window, target, attribute=attributor,
        store_subjects=attributor.settings.store_external_subjects, full=full,
        bookings=_bookings_of(deps, calendar, items, stored),
    )  # fmt: skip


def _bookings_of(
    deps: SyncDeps,
    calendar: MappedCalendar,
    items: Sequence[dict[str, Any]],
    stored: Sequence[BusyBlock],
) -> set[str]:
    """Platform bookings of this resource named by transactionIds but without a block in the
    window: a booking being created, or cancelled while its event is being deleted (point reads
    of the bookings table; rare, so no batching)."""
    have = {b.booking_id for b in stored if b.source == "platform"}
    found = set()
    table = deps.tables(tablestore.BOOKINGS)
    for booking_id in syncplan.transaction_bookings(items) - have:
        try:
            entity = tablestore.get_entity(table, calendar.building_id, booking_id)
        except (ValueError, BookingBridgeError):
            continue
        if entity is not None and entity.get("resourceId") == calendar.resource_id:
            found.add(booking_id)
    return found


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


def _commit(deps: SyncDeps, calendar: MappedCalendar, lease: _Lease, done: _RoundDone) -> bool:
    """Store the round's deltaLink; True (lease kept, renewed) when requests arrived meanwhile."""
    now = deps.now()
    rerun: list[tuple[bool, datetime]] = []

    def change(state: Entity) -> Entity:
        rerun.clear()
        dirty = _when(state.get("dirtySince"))
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
            "rounds": _count(state.get("rounds")) + 1,
            "graphRequests": _count(state.get("graphRequests")) + done.requests,
            "changes": _count(state.get("changes")) + done.changes,
        }
        if done.full:
            new["baselineAt"] = lease.started
        if polled:
            seconds = next_poll_seconds(
                _count(state.get("pollSeconds")) or None, done.changes > 0, deps.config
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

    stored = _update_held(deps, calendar.building_id, calendar.resource_id, lease, change)
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


def _fail(deps: SyncDeps, calendar: MappedCalendar, lease: _Lease, err: Exception) -> None:
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
            seconds = next_poll_seconds(
                _count(state.get("pollSeconds")) or None, False, deps.config
            )
            new.update(pollSeconds=seconds, nextPollAt=now + timedelta(seconds=seconds))
        return new

    try:
        _update_held(deps, calendar.building_id, calendar.resource_id, lease, change)
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
        return new

    tablestore.replace_optimistic(
        deps.tables(tablestore.RESOURCES), calendar.building_id, calendar.resource_id, build
    )


def _forget(deps: SyncDeps, building: str, resource: str, mailbox: str, lease: _Lease) -> bool:
    """The resource is not mapped (any more): drop its Outlook blocks, delta state, subscription.

    True when requests arrived meanwhile (the lease is kept): the caller looks at the mapping again.
    """
    table = _state_table(deps)
    state = tablestore.get_entity(table, building, resource)
    windows = [current_window(deps.now(), deps.config.window_days)]
    if state is not None:
        start, end = _when(state.get("windowStart")), _when(state.get("windowEnd"))
        if start is not None and end is not None:
            windows.append(Window(start, end))
        mailbox = str(state.get("mailbox") or mailbox)
    start = min(w.start for w in windows)
    end = max(w.end for w in windows)
    blocks = deps.busy.blocks(building, start, end, resource_ids=[resource], source="outlook")
    _apply(deps, Plan(tuple(Remove(b, "removed") for b in blocks), 0, 0, 0))
    if mailbox and not _mailbox_in_use(deps, building, mailbox):
        try:
            deps.unsubscribe(building, mailbox)
        except BookingBridgeError as err:
            logger.warning(
                "sync %s: releasing a mailbox's subscription failed: %s", building, err.reason
            )
    logger.info("sync %s/%s: unmapped, %d Outlook blocks removed", building, resource, len(blocks))
    for _ in range(ACQUIRE_ATTEMPTS):
        state = tablestore.get_entity(table, building, resource)
        if state is None or state.get("leaseId") != lease.lease_id:
            return False
        dirty = _when(state.get("dirtySince"))
        if dirty is not None:
            now = deps.now()
            fresh: Entity = {
                "PartitionKey": building, "RowKey": resource, "leaseId": lease.lease_id,
                "leaseUntil": now + LEASE, "roundStartedAt": now,
            }  # fmt: skip
            if _write(table, fresh, tablestore.etag_of(state)):
                lease.started, lease.pending_since, lease.full = now, dirty, True
                return True
            continue
        try:
            if tablestore.delete_if_unchanged(table, state):
                return False
        except NotFound:
            return False
    raise Conflict("The calendar's sync state is contended; retry", reason="sync_contended")


def _mailbox_in_use(deps: SyncDeps, building: str, mailbox: str) -> bool:
    entities = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building}
    )
    return any(
        (c := MappedCalendar.from_entity(e)) is not None and c.mailbox == mailbox for e in entities
    )


# ---------------------------------------------------------------- timers


def poll_due(deps: SyncDeps) -> int:
    """Enqueue a round for every polled calendar whose time has come, and for calendars whose
    pending requests were left behind by a crashed round. Returns how many were enqueued."""
    now = deps.now()
    # One scan of the deltastate table (one small row per mapped calendar).
    rows = tablestore.query_all(
        _state_table(deps),
        "( polled eq true and nextPollAt le @now ) or dirtySince le @stale",
        {"now": now, "stale": now - STALE_DIRTY},
        select=[
            "PartitionKey",
            "RowKey",
            "mailbox",
            "leaseUntil",
            "dirtySince",
            "polled",
            "nextPollAt",
            "pollSeconds",
        ],
    )
    sent = 0
    for row in rows:
        lease_until = _when(row.get("leaseUntil"))
        if lease_until is not None and lease_until > now:
            continue  # a round is running; it takes pending requests along
        deps.enqueue(
            SyncRequest(str(row["PartitionKey"]), str(row.get("mailbox") or ""), "reconcile",
                        resource=str(row["RowKey"])),
            0,
        )  # fmt: skip
        sent += 1
        if row.get("polled"):
            _postpone_poll(deps, row, now)
    return sent


def _postpone_poll(deps: SyncDeps, row: Entity, now: datetime) -> None:
    """Move `nextPollAt` on by one interval, so that the next ticks do not enqueue the same poll
    again while it waits in the queue (the round sets the real next time). Only if the row is
    unchanged since it was read: a round that committed meanwhile knows better."""
    seconds = _count(row.get("pollSeconds")) or deps.config.poll_min_seconds
    try:
        with tablestore.storage_errors("postpone poll"):
            _state_table(deps).update_entity(
                {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                 "nextPollAt": now + timedelta(seconds=seconds)},
                mode=UpdateMode.MERGE, etag=tablestore.etag_of(row),
                match_condition=MatchConditions.IfNotModified,
            )  # fmt: skip
    except (Conflict, NotFound):
        pass


def reconcile_all(deps: SyncDeps) -> int:
    """Enqueue a delta round for every mapped calendar (and clean-up for leftover delta state of
    unmapped ones), spread at `RECONCILE_RATE` per second. Returns how many were enqueued."""
    mapped: dict[tuple[str, str], MappedCalendar] = {}
    for entity in tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "calendarId ne ''", {},
        select=["PartitionKey", "RowKey", "calendarId", "mailbox", "graphMailbox", "tenantId",
                "calendarIsDefault", "paid"],
    ):  # fmt: skip
        calendar = MappedCalendar.from_entity(entity)
        if calendar is not None:
            mapped[(calendar.building_id, calendar.resource_id)] = calendar
    requests = [
        SyncRequest(c.building_id, c.mailbox, "reconcile", resource=c.resource_id)
        for c in mapped.values()
    ]
    for row in tablestore.query_all(
        _state_table(deps), "PartitionKey ne ''", {}, select=["PartitionKey", "RowKey", "mailbox"]
    ):
        key = (str(row["PartitionKey"]), str(row["RowKey"]))
        if key not in mapped:
            requests.append(
                SyncRequest(key[0], str(row.get("mailbox") or ""), "unmapped", resource=key[1])
            )

    def send(numbered: tuple[int, SyncRequest]) -> None:
        n, request = numbered
        deps.enqueue(request, n / RECONCILE_RATE)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, enumerate(requests)))
    return len(requests)


# ---------------------------------------------------------------- sync health and forced resync


class ErrorOut(TypedDict):
    reason: str
    at: str | None


class SubscriptionOut(TypedDict):
    id: str | None
    expiresAt: str | None
    status: str
    reason: str | None


class DeltaStateOut(TypedDict):
    ageSeconds: int | None
    baselineAt: str | None
    windowStart: str | None
    windowEnd: str | None


class MappingHealthOut(TypedDict):
    resourceId: str
    calendar: dict[str, str | None]
    status: str
    reason: str | None
    mode: Literal["notifications", "polling", "pending"]
    subscription: SubscriptionOut | None
    deltaState: DeltaStateOut | None
    lastSyncAt: str | None
    lagSeconds: int | None
    lastError: ErrorOut | None
    nextPollAt: str | None
    rounds: int
    graphRequests: int
    poisonMessages: int


class SyncHealthOut(TypedDict):
    building: str
    mappings: list[MappingHealthOut]
    poisonMessages: int
    poisonMessagesCapped: bool


def sync_health(deps: SyncDeps, building: str) -> SyncHealthOut:
    """`GET /buildings/{b}/sync`: per mapping, what an admin needs to trust (or fix) the sync."""
    check_path(building=building)
    now = deps.now()
    resources = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building}
    )
    states = {
        str(s["RowKey"]): s
        for s in tablestore.query_all(_state_table(deps), "PartitionKey eq @b", {"b": building})
    }
    poison = _poison_for(deps, building)
    subscriptions: dict[str, SubscriptionInfo | None] = {}
    mappings: list[MappingHealthOut] = []
    for entity in resources:
        calendar = MappedCalendar.from_entity(entity)
        if calendar is None:
            continue
        state = states.get(calendar.resource_id)
        if calendar.mailbox not in subscriptions:
            try:
                subscriptions[calendar.mailbox] = deps.subscription(building, calendar.mailbox)
            except BookingBridgeError as err:
                logger.warning("sync health %s: subscription unreadable: %s", building, err.reason)
                subscriptions[calendar.mailbox] = None
        mappings.append(
            _mapping_health(entity, calendar, state, subscriptions[calendar.mailbox], poison, now)
        )
    capped = len(poison) >= PEEK_MAX
    return {"building": building, "mappings": mappings, "poisonMessages": len(poison),
            "poisonMessagesCapped": capped}  # fmt: skip


def _mapping_health(
    entity: Entity,
    calendar: MappedCalendar,
    state: Entity | None,
    sub: SubscriptionInfo | None,
    poison: list[SyncRequest],
    now: datetime,
) -> MappingHealthOut:
    from shared.directory.registry import sync_state

    shown = sync_state(entity)
    last_error: ErrorOut | None = None
    stored_error = tablestore.from_json_property(entity.get("lastError"))
    if isinstance(stored_error, dict) and stored_error.get("reason"):
        last_error = {"reason": str(stored_error["reason"]), "at": stored_error.get("at")}
    lag = shown.lag_seconds
    delta: DeltaStateOut | None = None
    mode: Literal["notifications", "polling", "pending"] = "pending"
    next_poll = None
    rounds = requests = 0
    if state is not None:
        baseline = _when(state.get("baselineAt"))
        dirty = _when(state.get("dirtySince"))
        if dirty is not None:
            lag = max(lag or 0, int((now - dirty).total_seconds()))
        delta = {
            "ageSeconds": int((now - baseline).total_seconds()) if baseline else None,
            "baselineAt": tablestore.iso_utc(baseline),
            "windowStart": tablestore.iso_utc(state.get("windowStart")),
            "windowEnd": tablestore.iso_utc(state.get("windowEnd")),
        }
        if state.get("polled") is not None:
            mode = "polling" if state.get("polled") else "notifications"
        next_poll = tablestore.iso_utc(state.get("nextPollAt"))
        rounds = _count(state.get("rounds"))
        requests = _count(state.get("graphRequests"))
    return {
        "resourceId": calendar.resource_id,
        "calendar": {
            "id": calendar.calendar_id,
            "name": entity.get("calendarName"),
            "mailbox": calendar.mailbox,
        },
        "status": shown.status,
        "reason": shown.reason,
        "mode": mode,
        "subscription": (
            {
                "id": sub.subscription_id,
                "expiresAt": tablestore.iso_utc(sub.expires_at),
                "status": sub.status,
                "reason": sub.reason,
            }
            if sub is not None
            else None
        ),
        "deltaState": delta,
        "lastSyncAt": shown.last_sync_at,
        "lagSeconds": lag,
        "lastError": last_error,
        "nextPollAt": next_poll,
        "rounds": rounds,
        "graphRequests": requests,
        "poisonMessages": sum(
            1
            for p in poison
            if p.resource == calendar.resource_id
            or (p.resource is None and p.mailbox == calendar.mailbox)
        ),
    }


def _poison_for(deps: SyncDeps, building: str) -> list[SyncRequest]:
    found = []
    try:
        bodies = deps.peek_poison()
    except BookingBridgeError as err:
        logger.warning("sync health: poison queue unreadable: %s", err.log_detail)
        return []
    for body in bodies:
        try:
            request = SyncRequest.decode(body)
        except BookingBridgeError:
            continue
        if request.building == building:
            found.append(request)
    return found


def force_resync(deps: SyncDeps, building: str, resource: str) -> SyncRequest:
    """`POST /buildings/{b}/resources/{r}/sync`: queue a full resync of one mapping."""
    check_path(building=building, resourceId=resource)
    entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building, resource)
    if entity is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    calendar = MappedCalendar.from_entity(entity)
    if calendar is None:
        raise Unprocessable("The resource has no calendar mapped", reason="not_mapped")
    request = SyncRequest(building, calendar.mailbox, "resync", resource=resource, full=True)
    deps.enqueue(request, 0)
    return request


# ---------------------------------------------------------------- wiring

_deps: SyncDeps | None = None
_deps_lock = threading.Lock()


def _send(request: SyncRequest, delay: float) -> None:
    from shared.storage import clients

    with tablestore.storage_errors("enqueue sync request"):
        clients.queue(QUEUE).send_message(
            request.encode(), visibility_timeout=int(delay) if delay >= 1 else None
        )


def _peek_poison() -> list[str]:
    from shared.storage import clients

    with tablestore.storage_errors("peek poison queue"):
        return [
            str(m.content) for m in clients.queue(POISON_QUEUE).peek_messages(max_messages=PEEK_MAX)
        ]


def default_sync_deps() -> SyncDeps:
    """The process's collaborators (cached with the settings they were built from)."""
    global _deps
    from shared.availability.busy import BusyStore
    from shared.connect.connections import default_deps
    from shared.core.settings import get_settings
    from shared.graph.client import default_graph
    from shared.storage import clients
    from shared.subscriptions import service as subscriptions

    with _deps_lock:
        settings = get_settings()
        graph = default_graph()
        if _deps is not None and _deps.graph is graph and _deps.config == SyncConfig.of(settings):
            return _deps
        connections = default_deps().connections

        def sub_deps() -> Any:
            return subscriptions.default_subscription_deps()

        _deps = SyncDeps(
            tables=clients.table,
            graph=graph,
            connection=connections.get,
            busy=BusyStore(clients.table(tablestore.BUSY)),
            subscribe=lambda b, m: subscriptions.ensure_subscription(sub_deps(), b, m),
            unsubscribe=lambda b, m: subscriptions.release_subscription(sub_deps(), b, m),
            subscription=lambda b, m: subscriptions.subscription_for(sub_deps(), b, m),
            enqueue=_send,
            peek_poison=_peek_poison,
            config=SyncConfig.of(settings),
        )
        return _deps
