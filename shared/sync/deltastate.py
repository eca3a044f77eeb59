"""The delta state of each mapped calendar, and the lease that lets one round run at a time.

Table `deltastate`, PartitionKey building, RowKey resource (DESIGN.md):

| property | meaning |
|---|---|
| `calendarId`, `mailbox`, `graphMailbox` | the mapping the state belongs to (another mapping → baseline) |
| `deltaLink`, `windowStart`, `windowEnd`, `baselineAt` | Graph's link after the last committed round, the window it tracks |
| `leaseId`, `leaseUntil`, `roundStartedAt` | the running round (ETag-guarded lease: one round per calendar at a time) |
| `lastStartedAt`, `lastSyncAt`, `lagSeconds` | the last successful round: when it started and ended, and its lag |
| `dirtySince`, `fullPending` | requests that arrived while a round ran: the lease holder runs again |
| `polled`, `pollSeconds`, `nextPollAt` | calendars without a subscription (shared to a delegated account) |
| `lastErrorReason`, `lastErrorAt`, `rounds`, `graphRequests`, `changes` | health and counters (bench) |
| `suspectAt`, `suspectReason` | the last loss signal (`missed`, `unannounced_changes`): reconciled at the next tick unless a round started since (shared/sync/polling.py) |

Decisions:
- **Coalescing, derived**: a request is skipped when a round that *started* after the request was
  enqueued has succeeded or is running (it sees the change). Queue insertion times have one-second
  resolution and come from the storage clock, so "after" means `COALESCE_MARGIN` (2 s) after. A
  request that meets a running round that started earlier marks the state dirty and returns; the
  lease holder commits and runs once more. A burst of notifications costs at most two rounds.
- **Lease**: `LEASE` (2 min), renewed between pages; a crashed holder's lease expires and the poll
  timer re-enqueues calendars left dirty (`STALE_DIRTY`, shared/sync/polling.py).
- **Window**: [today − 1 day, today + `BB_SYNC_WINDOW_DAYS`] in UTC days. Graph fixes a delta
  token's window, so when the day changes the next round is a new baseline that reconciles (at
  most one baseline per calendar per day). Blocks that slid out of the window stay (history).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode

from shared.core.errors import Conflict, NotFound
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.sync.deps import SyncDeps
from shared.sync.plan import Window

LEASE = timedelta(minutes=2)
COALESCE_MARGIN = timedelta(seconds=2)
ACQUIRE_ATTEMPTS = 8

Skipped = Literal["coalesced", "deferred"]


@dataclass
class Lease:
    lease_id: str
    started: datetime  # when the current round began (our clock)
    pending_since: datetime  # enqueue time of the oldest request the round serves
    full: bool


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
        when(state.get("windowStart")) != wanted.start or when(state.get("windowEnd")) != wanted.end
    )


def count(value: Any) -> int:
    """A stored counter (absent or unreadable: 0)."""
    return int(value) if isinstance(value, int) else 0


def when(value: Any) -> datetime | None:
    """A stored time as a plain aware UTC datetime; None when absent or unreadable."""
    try:
        return tablestore.stored_time(value)
    except ValueError:
        return None


def state_table(deps: SyncDeps) -> TableClient:
    return deps.tables(tablestore.DELTA_STATE)


def write(table: TableClient, entity: Entity, etag: str | None) -> bool:
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


def acquire(
    deps: SyncDeps, building: str, resource: str, requested_at: datetime, full: bool
) -> Lease | Skipped:
    """Take the calendar's lease, or say why this request needs no round of its own."""
    table = state_table(deps)
    covered_after = requested_at + COALESCE_MARGIN
    for _ in range(ACQUIRE_ATTEMPTS):
        now = deps.now()
        state = tablestore.get_entity(table, building, resource)
        etag = tablestore.etag_of(state) if state is not None else None
        if state is not None:
            last = when(state.get("baselineAt" if full else "lastStartedAt"))
            if last is not None and last >= covered_after:
                return "coalesced"
        lease_until = when(state.get("leaseUntil")) if state is not None else None
        if state is not None and lease_until is not None and lease_until > now:
            running = when(state.get("roundStartedAt"))
            if not full and running is not None and running >= covered_after:
                return "coalesced"
            dirty = when(state.get("dirtySince"))
            marked = {
                **state,
                "dirtySince": min(dirty, requested_at) if dirty else requested_at,
                "fullPending": bool(state.get("fullPending")) or full,
            }
            if write(table, marked, etag):
                return "deferred"
            continue
        dirty = when(state.get("dirtySince")) if state is not None else None
        lease = Lease(
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
        if write(table, taken, etag):
            return lease
    raise _contended()


def update_held(
    deps: SyncDeps,
    building: str,
    resource: str,
    lease: Lease,
    change: Callable[[Entity], Entity | None],
) -> Entity | None:
    """Read-modify-write the state while holding `lease`; None if the lease was lost."""
    table = state_table(deps)
    for _ in range(ACQUIRE_ATTEMPTS):
        state = tablestore.get_entity(table, building, resource)
        if state is None or state.get("leaseId") != lease.lease_id:
            return None
        new = change(dict(state))
        if new is None:
            return state
        if write(table, new, tablestore.etag_of(state)):
            return new
    raise _contended()


def renew(deps: SyncDeps, building: str, resource: str, lease: Lease) -> None:
    def extend(state: Entity) -> Entity:
        return {**state, "leaseUntil": deps.now() + LEASE}

    if update_held(deps, building, resource, lease, extend) is None:
        raise Conflict("The calendar's sync lease was lost", reason="lease_lost")


def drop(deps: SyncDeps, building: str, resource: str, lease: Lease) -> bool:
    """Delete the state of a calendar that is no longer mapped, unless requests arrived while the
    lease was held: then the state starts afresh under the same lease (renewed, next round full)
    and the answer is True."""
    table = state_table(deps)
    for _ in range(ACQUIRE_ATTEMPTS):
        state = tablestore.get_entity(table, building, resource)
        if state is None or state.get("leaseId") != lease.lease_id:
            return False
        dirty = when(state.get("dirtySince"))
        if dirty is not None:
            now = deps.now()
            fresh: Entity = {
                "PartitionKey": building, "RowKey": resource, "leaseId": lease.lease_id,
                "leaseUntil": now + LEASE, "roundStartedAt": now,
            }  # fmt: skip
            if write(table, fresh, tablestore.etag_of(state)):
                lease.started, lease.pending_since, lease.full = now, dirty, True
                return True
            continue
        try:
            if tablestore.delete_if_unchanged(table, state):
                return False
        except NotFound:
            return False
    raise _contended()


def note_loss(tables: TableSource, building: str, resource: str, reason: str, at: datetime) -> None:
    """Record a loss signal: notifications for this calendar may have been lost at `at`, so the
    next reconciliation tick runs a round for it unless a round starts after `at` first (derived
    from `lastStartedAt`: nothing to clear). A merge without ETag that leaves the lease alone (a
    lease holder's ETag-guarded write then re-reads and keeps it); no state, no signal needed (a
    calendar without state is due anyway)."""
    try:
        with tablestore.storage_errors("note loss signal"):
            tables(tablestore.DELTA_STATE).update_entity(
                {"PartitionKey": building, "RowKey": resource, "suspectAt": at,
                 "suspectReason": reason},
                mode=UpdateMode.MERGE,
            )  # fmt: skip
    except NotFound:
        pass


def _contended() -> Conflict:
    return Conflict("The calendar's sync state is contended; retry", reason="sync_contended")
