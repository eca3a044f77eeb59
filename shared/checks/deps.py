"""What the go-live check is given: `CheckDeps`, built by shared/wiring.py (`check_deps()`), and
its tunables (`CheckConfig`, from the settings)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from shared.storage.tablestore import TableSource

if TYPE_CHECKING:
    from shared.availability.busy import BusyStore
    from shared.availability.snapshot import BusySnapshots
    from shared.bookings.service import BookingDeps
    from shared.checks.store import CheckStore
    from shared.core.connection import Connection
    from shared.core.settings import Settings
    from shared.graph.audit import AuditEntry
    from shared.graph.client import GraphClient
    from shared.sync.deps import Watch
    from shared.sync.queue import SyncRequest


LIST_MAX = 100  # runs per page of GET /checks


@dataclass(frozen=True)
class CheckConfig:
    outlook_seconds: float = 60.0  # how long a change may take to reach availability
    concurrency: int = 4  # resources checked at once
    slot_minutes: int = 15  # length of the test booking and of the test event
    lead: timedelta = timedelta(hours=1)  # the test slots start at least this far ahead
    search_days: int = 14  # where a free slot is looked for
    poll_seconds: float = 0.2  # how often availability is read while waiting
    list_limit: int = 20  # runs listed by default (a page of GET /checks; at most LIST_MAX)

    @property
    def stale_after(self) -> timedelta:
        """A run whose heartbeat is older than this has died (the longest step waits about
        3 × `outlook_seconds` between heartbeats: the wait, the forced round, Graph retries)."""
        return timedelta(seconds=max(300.0, 4 * self.outlook_seconds + 120))

    @staticmethod
    def of(settings: Settings) -> CheckConfig:
        return CheckConfig(
            outlook_seconds=float(settings.checks_outlook_seconds),
            concurrency=settings.checks_concurrency,
        )


class Connections(Protocol):
    def get(self, building_id: str) -> Connection | None: ...


@dataclass(frozen=True)
class CheckDeps:
    tables: TableSource
    store: CheckStore
    graph: GraphClient
    connections: Connections
    bookings: BookingDeps  # the booking service, configured for test bookings (wiring)
    busy: BusyStore
    availability: BusySnapshots[str]  # what the availability route reads (wiring)
    subscription: Callable[[str, str], Watch | None]  # the mailbox's subscription (index)
    enqueue_sync: Callable[[SyncRequest, float], None]
    enqueue_run: Callable[[str, str], None]  # (building, run id) onto the checks queue
    audit: Callable[[AuditEntry], None]
    audit_query: Callable[[str, datetime, datetime, int], list[Any]]  # AuditLog.query
    notification_url: str
    poll_max_seconds: int  # BB_POLL_MAX_SECONDS: a polled calendar's longest interval
    config: CheckConfig = field(default_factory=CheckConfig)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    # Outgoing webhooks (issue 16): check.completed, handed over before the run's end is stored.
    emit: Callable[[str, list[Any]], object] = field(default=lambda building, events: 0)
