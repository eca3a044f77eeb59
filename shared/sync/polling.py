"""The sync timers: polling of calendars no subscription can watch, and reconciliation.

- **Polling**: calendars `ensure_subscription` cannot watch (calendars shared to a delegated
  account) are polled with delta rounds; the interval is `BB_POLL_MIN_SECONDS` after a round with
  changes and doubles while idle up to `BB_POLL_MAX_SECONDS` (also after failures). The same tick
  re-enqueues calendars whose pending requests a crashed round left behind (`STALE_DIRTY`).
- **Reconciliation**: every mapped calendar gets a delta round now and then (and leftover delta
  state of unmapped calendars a clean-up), in case a notification was lost.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.core.errors import Conflict, NotFound
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.sync.deltastate import count, state_table, when
from shared.sync.deps import SyncConfig, SyncDeps
from shared.sync.queue import SyncRequest

STALE_DIRTY = timedelta(seconds=30)
RECONCILE_RATE = 50.0  # requests per second the reconciliation sweep spreads its work at


def next_poll_seconds(previous: int | None, changed: bool, config: SyncConfig) -> int:
    """Adaptive polling: the minimum after changes, doubling (to the maximum) while idle."""
    if changed or not previous:
        return config.poll_min_seconds
    return min(config.poll_max_seconds, max(config.poll_min_seconds, previous * 2))


def poll_due(deps: SyncDeps) -> int:
    """Enqueue a round for every polled calendar whose time has come, and for calendars whose
    pending requests were left behind by a crashed round. Returns how many were enqueued."""
    now = deps.now()
    # One scan of the deltastate table (one small row per mapped calendar).
    rows = tablestore.query_all(
        state_table(deps),
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
        lease_until = when(row.get("leaseUntil"))
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
    seconds = count(row.get("pollSeconds")) or deps.config.poll_min_seconds
    try:
        with tablestore.storage_errors("postpone poll"):
            state_table(deps).update_entity(
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
        state_table(deps), "PartitionKey ne ''", {}, select=["PartitionKey", "RowKey", "mailbox"]
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
