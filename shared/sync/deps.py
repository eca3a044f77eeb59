"""What the sync worker, its timers and sync health are given: `SyncDeps`, built once per process
by shared/wiring.py (`sync_deps()`), and the tunables of `SyncConfig`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.storage.tablestore import TableSource
from shared.sync.queue import SyncRequest

if TYPE_CHECKING:
    from shared.availability.busy import BusyStore
    from shared.core.connection import Connection
    from shared.core.settings import Settings
    from shared.graph.client import GraphClient


@dataclass(frozen=True)
class SyncConfig:
    window_days: int = 60
    poll_min_seconds: int = 30
    poll_max_seconds: int = 300
    # A healthy calendar is reconciled this long after its last successful round (polling.py).
    reconcile_trust_minutes: int = 240

    @staticmethod
    def of(settings: Settings) -> SyncConfig:
        return SyncConfig(
            settings.sync_window_days,
            settings.poll_min_seconds,
            settings.poll_max_seconds,
            settings.reconcile_trust_minutes,
        )


class Watch(Protocol):
    """What sync reads of a mailbox's subscription: the subscriptions service's
    `SubscriptionInfo`, named by a protocol because that package depends on this one (it
    enqueues sync requests)."""

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...  # the last failure (a renewal's included); None: healthy

    @property
    def expires_at(self) -> datetime | None: ...

    def to_api(self) -> Mapping[str, object]: ...  # id, expiresAt, status, reason


@dataclass(frozen=True)
class SyncDeps:
    """Everything the worker, the timers and sync health touch."""

    tables: TableSource
    graph: GraphClient
    connection: Callable[[str], Connection | None]
    busy: BusyStore
    subscribe: Callable[[str, str], Watch | None]  # ensure_subscription
    unsubscribe: Callable[[str, str], bool]  # release_subscription
    subscription: Callable[[str, str], Watch | None]  # subscription_for
    enqueue: Callable[[SyncRequest, float], None]  # (request, delay in seconds)
    peek_poison: Callable[[], list[str]]  # bodies of up to PEEK_MAX poison messages
    config: SyncConfig = field(default_factory=SyncConfig)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Outgoing webhooks (issue 16): hand events over before the change is applied (wiring).
    emit: Callable[[str, list[Any]], object] = field(default=lambda building, events: 0)
    # The building's outgoing webhooks that are failing or disabled, for sync health.
    webhook_health: Callable[[str], list[Mapping[str, object]]] = field(default=lambda building: [])
