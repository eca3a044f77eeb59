"""The sync timers: polling of calendars no subscription can watch, and reconciliation.

- **Polling**: calendars `ensure_subscription` cannot watch (calendars shared to a delegated
  account) are polled with delta rounds; the interval is `BB_POLL_MIN_SECONDS` after a round with
  changes and doubles while idle up to `BB_POLL_MAX_SECONDS` (also after failures). The same tick
  re-enqueues calendars whose pending requests a crashed round left behind (`STALE_DIRTY`).
- **Reconciliation** (DESIGN.md, issue 17): a tick (`BB_RECONCILE_SCHEDULE`, 30 min) runs a delta
  round for each mapped calendar that is *due* (`reconcile_reason`), and a clean-up for leftover
  delta state of unmapped calendars. Every successful round reads all changes since the previous
  one, so a calendar is trusted for `BB_RECONCILE_TRUST_MINUTES` (4 h) after its last successful
  round, whatever triggered it, while its subscription is healthy; a loss signal makes it due at
  the next tick: lifecycle `missed`, a reconciliation round that found changes no notification
  announced (the observable gap), a failed round, a subscription failing to renew, not watching
  or expired, and a process start (rounds before it).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.core.errors import BookingBridgeError, Conflict, NotFound
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.sync.deltastate import count, state_table, when
from shared.sync.deps import SyncConfig, SyncDeps, Watch
from shared.sync.queue import SyncRequest

logger = logging.getLogger(__name__)

STALE_DIRTY = timedelta(seconds=30)
RECONCILE_RATE = 50.0  # requests per second the reconciliation sweep spreads its work at
WATCHING = frozenset({"active", "creating"})  # subscription statuses under which Graph notifies


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


def reconcile_reason(
    state: Mapping[str, Any] | None,
    watch: Callable[[], Watch | None],
    now: datetime,
    *,
    trust: timedelta,
    started: datetime | None = None,
) -> str | None:
    """Why the reconciliation tick must run a round for this calendar now, or None: trusted.

    Pure (module docstring, DESIGN.md issue 17). `state`: its deltastate row; `watch`: its
    mailbox's subscription, called only for calendars notifications watch and only when nothing
    cheaper decided; `started`: when this process started (None: no restart signal). Checked in
    order, the first that holds is the reason: no successful round yet; the last round failed; a
    loss signal no round has started after; a round before this process started; the
    subscription not watching, failing to renew, or past its expiry; the trust period since the
    last successful round is over.
    """
    last = when(state.get("lastStartedAt")) if state is not None else None
    if state is None or last is None:
        return "never_synced"
    failed = when(state.get("lastErrorAt"))
    synced = when(state.get("lastSyncAt"))
    if failed is not None and (synced is None or failed > synced):
        return "last_round_failed"
    suspect = when(state.get("suspectAt"))
    if suspect is not None and suspect >= last:
        return str(state.get("suspectReason") or "loss_signal")
    if started is not None and last < started:
        return "restart"
    if not state.get("polled"):  # a polled calendar has no subscription to trust: polls watch it
        subscription = watch()
        if subscription is None or subscription.status not in WATCHING:
            return "not_subscribed"
        if subscription.reason:
            return "subscription_failing"  # a failed renewal (or create) marks the reason
        if subscription.expires_at is not None and subscription.expires_at <= now:
            return "subscription_expired"
    if now - last >= trust:
        return "trust_expired"
    return None


def reconcile_due(deps: SyncDeps, started: datetime | None = None) -> Counter[str]:
    """The reconciliation tick: enqueue a delta round for every mapped calendar that is due
    (`reconcile_reason`), and a clean-up for leftover delta state of unmapped ones, spread at
    `RECONCILE_RATE` per second. One scan of each of the resources and deltastate tables, and one
    point read of the subscription index per mailbox still in question. Returns the reasons
    counted (`trusted` for calendars skipped)."""
    now = deps.now()
    trust = timedelta(minutes=deps.config.reconcile_trust_minutes)
    mapped: dict[tuple[str, str], MappedCalendar] = {}
    for entity in tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "calendarId ne ''", {},
        select=["PartitionKey", "RowKey", "calendarId", "mailbox", "graphMailbox", "tenantId",
                "calendarIsDefault", "paid"],
    ):  # fmt: skip
        calendar = MappedCalendar.from_entity(entity)
        if calendar is not None:
            mapped[(calendar.building_id, calendar.resource_id)] = calendar
    states: dict[tuple[str, str], Entity] = {
        (str(row["PartitionKey"]), str(row["RowKey"])): row
        for row in tablestore.query_all(
            state_table(deps), "PartitionKey ne ''", {}, select=list(_POLICY_FIELDS)
        )
    }
    watches: dict[tuple[str, str], Watch | None] = {}

    def watch_of(calendar: MappedCalendar) -> Watch | None:
        key = (calendar.building_id, calendar.mailbox)
        if key not in watches:
            try:
                watches[key] = deps.subscription(*key)
            except BookingBridgeError as err:
                logger.warning("sync reconcile %s: subscription unreadable: %s", key[0], err.reason)
                watches[key] = None  # unknown: reconciled, as if not watched
        return watches[key]

    reasons: Counter[str] = Counter()
    requests = []
    for key, calendar in mapped.items():
        reason = reconcile_reason(
            states.get(key), functools.partial(watch_of, calendar), now, trust=trust,
            started=started,
        )  # fmt: skip
        reasons[reason or "trusted"] += 1
        if reason is not None:
            requests.append(
                SyncRequest(calendar.building_id, calendar.mailbox, "reconcile",
                            resource=calendar.resource_id)
            )  # fmt: skip
    for key, row in states.items():
        if key not in mapped:
            reasons["unmapped"] += 1
            requests.append(
                SyncRequest(key[0], str(row.get("mailbox") or ""), "unmapped", resource=key[1])
            )

    def send(numbered: tuple[int, SyncRequest]) -> None:
        n, request = numbered
        deps.enqueue(request, n / RECONCILE_RATE)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, enumerate(requests)))
    return reasons


_POLICY_FIELDS = (
    "PartitionKey", "RowKey", "mailbox", "polled", "lastStartedAt", "lastSyncAt", "lastErrorAt",
    "suspectAt", "suspectReason",
)  # fmt: skip
