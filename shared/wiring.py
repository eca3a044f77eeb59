"""The composition root: every service's collaborators, built from the settings in one place.

Domain modules take their collaborators as arguments (a `...Deps` dataclass or parameters) and
never reach for a global client; `functions/` asks this module for them and for nothing else.

One caching rule: each builder below is decorated with `@per_settings`, which builds its value
once per `Settings` object and keeps it until the settings change. `get_settings()` is itself
cached, so in a Functions worker everything is built once; a test that points the process at
another stack calls `reset()` (or `clients.reset_clients()`, which drops the settings) and the
next call builds everything afresh. Caches that must live across invocations (token provider,
webhook record cache, JWKS) live inside the values built here, so they follow the same rule.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.analytics.service import AnalyticsDeps
from shared.analytics.sheets import TABLE as SHEETS_TABLE
from shared.analytics.sheets import SheetStore
from shared.analytics.store import TABLE as ROLLUPS_TABLE
from shared.analytics.store import RollupStore
from shared.api.auth import TokenValidator, validator_for
from shared.api.health import DEFAULT_DEADLINE_S as HEALTH_DEADLINE_S
from shared.availability.busy import BusyStore
from shared.availability.service import busy_json
from shared.availability.snapshot import BusySnapshots
from shared.bookings.model import BookingConfig
from shared.bookings.outbox import QUEUE as OUTBOX_QUEUE
from shared.bookings.outbox import Outbox
from shared.bookings.outlook import REQUEST_POLICY, WORKER_POLICY, with_policy
from shared.bookings.service import BookingDeps
from shared.checks.deps import CheckConfig, CheckDeps
from shared.connect.flows import discover_tenant_id
from shared.connect.repository import (
    CONNECTIONS_TABLE,
    FLOWS_TABLE,
    ConnectionRepository,
    FlowRepository,
)
from shared.connect.service import ConnectDeps, mark_mappings_not_synced
from shared.connect.tokens import Identity, TokenProvider, TokenResult
from shared.core.connection import Connection
from shared.core.settings import Settings, get_settings
from shared.directory.buildings import Buildings
from shared.graph.audit import AUDIT_TABLE, AuditLog
from shared.graph.client import GraphClient
from shared.graph.guard import CalendarGuard
from shared.mapping.service import MappingDeps, load_mapped
from shared.storage import clients, tablestore
from shared.storage.keyvault import FLOW_KEY_NAME, SecretStore, VersionedKeys
from shared.storage.tablestore import TableSource
from shared.subscriptions import manage as subscriptions
from shared.subscriptions.clientstate import keys_in
from shared.subscriptions.inbox import LIFECYCLE_QUEUE, Inbox, LifecycleWork, RecordCache
from shared.subscriptions.manage import SubscriptionDeps, disconnect_hook
from shared.subscriptions.store import load_record
from shared.sync import queue as syncqueue
from shared.sync.deps import SyncConfig, SyncDeps
from shared.sync.health import PEEK_MAX
from shared.sync.queue import POISON_QUEUE as SYNC_POISON_QUEUE
from shared.sync.queue import QUEUE as SYNC_QUEUE
from shared.sync.queue import SyncRequest

T = TypeVar("T")

_lock = threading.RLock()  # re-entrant: builders ask for each other
_built: dict[str, tuple[Settings, Any]] = {}


def per_settings(build: Callable[[Settings], T]) -> Callable[[], T]:
    """Build once per `Settings` object (module docstring); thread-safe."""

    @functools.wraps(build)
    def get() -> T:
        settings = get_settings()
        with _lock:
            hit = _built.get(build.__qualname__)
            if hit is not None and hit[0] is settings:
                return hit[1]  # type: ignore[no-any-return]
            value = build(settings)
            _built[build.__qualname__] = (settings, value)
            return value

    return get


def reset() -> None:
    """Forget everything built here and the process's clients and settings (tests)."""
    with _lock:
        _built.clear()
    clients.reset_clients()


# ---------------------------------------------------------------- storage, Key Vault, Graph
# (builders for the shared collaborators: secret store, Graph client, audit log)


@per_settings
def secret_store(settings: Settings) -> SecretStore:
    """Key Vault on the cached SecretClient (the factory, so `reset_clients()` takes effect)."""

    def rebuild() -> None:  # Key Vault refused our token: a new client and credential, once
        clients.secret_client.cache_clear()
        clients.credential.cache_clear()

    return SecretStore(clients.secret_client, rebuild)


@per_settings
def audit_log(settings: Settings) -> AuditLog:
    return AuditLog(lambda: clients.table(AUDIT_TABLE))


@per_settings
def graph_client(settings: Settings) -> GraphClient:
    """The process's Graph client: the shared httpx client, the connections' token provider, the
    audit log, and the mapped-calendar guard on the resources table."""
    return GraphClient(
        clients.http_client(),
        settings.graph_base_url,
        token_provider(),
        audit_log(),
        guard=CalendarGuard(lambda building: load_mapped(clients.table, building)),
    )


# ---------------------------------------------------------------- api (auth, health)


@per_settings
def token_validator(settings: Settings) -> TokenValidator:
    """Bearer tokens of the API (its JWKS cache lives inside: kept across invocations)."""
    return validator_for(settings, clients.http_client)


def health_checks() -> dict[str, Callable[[], object]]:
    """GET /health's checks, each one cheap real call against a dependency.

    Not `@per_settings`, and each check reads the settings itself: with unusable settings (e.g.
    BB_CLIENT_ID not set yet after the first deploy) health reports the components degraded
    instead of failing as a whole.
    """

    def tables() -> object:
        return next(iter(clients.table_service().list_tables(results_per_page=1)), None)

    def queues() -> object:
        return next(iter(clients.queue_service().list_queues(results_per_page=1)), None)

    def key_vault() -> object:
        # Listing needs a valid token and the list permission: proves identity and RBAC, not just TCP.
        pages = clients.secret_client().list_properties_of_secrets(max_page_size=1)
        return next(iter(pages), None)

    def graph() -> object:
        # Reachability only: any HTTP answer (401 without a token is normal) means Graph is there.
        response = clients.http_client().get(
            get_settings().graph_base_url + "/$metadata", timeout=HEALTH_DEADLINE_S
        )
        if response.status_code >= 500:
            raise RuntimeError(f"graph answered {response.status_code}")
        return None

    return {"tables": tables, "queues": queues, "keyVault": key_vault, "graph": graph}


# ---------------------------------------------------------------- connect


@per_settings
def connection_repository(settings: Settings) -> ConnectionRepository:
    return ConnectionRepository(lambda: clients.table(CONNECTIONS_TABLE), emit_webhook_events)


@per_settings
def token_provider(settings: Settings) -> TokenProvider:
    """Access tokens per connection (its caches must live across invocations)."""
    store = secret_store()
    identity = Identity(
        settings.client_id,
        settings.authority_host,
        lambda: store.app_credential(settings.client_secret_name, settings.client_certificate_name),
        clients.msal_http_session(),
    )
    return TokenProvider(identity, store, connection_repository(), _utc_now)


@per_settings
def connect_deps(settings: Settings) -> ConnectDeps:
    tokens = token_provider()
    graph = graph_client()

    def read_me(connection: Connection, result: TokenResult) -> dict[str, Any]:
        return graph.read_me_with(connection, result.access_token)

    def mark_mappings_not_synced_hook(connection: Connection) -> None:
        mark_mappings_not_synced(
            lambda: clients.table(tablestore.RESOURCES), connection, emit_webhook_events
        )

    return ConnectDeps(
        settings=settings,
        connections=connection_repository(),
        flows=FlowRepository(lambda: clients.table(FLOWS_TABLE)),
        secrets=secret_store(),
        flow_keys=VersionedKeys(secret_store(), FLOW_KEY_NAME, reason="flow_key"),
        identity=tokens.identity,
        tokens=tokens,
        read_me=read_me,
        resolve_tenant=lambda domain: discover_tenant_id(
            clients.http_client(), settings.authority_host, domain
        ),
        audit=audit_log().record,
        # Subscriptions first: they are deleted while the connection's credentials still work.
        on_disconnect=(delete_subscriptions_hook, mark_mappings_not_synced_hook),
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- directory and mapping


@per_settings
def directory_tables(settings: Settings) -> TableSource:
    """The tables of the directory (resources, companies, users, building settings), one cached
    client per table."""
    return clients.table


@per_settings
def buildings(settings: Settings) -> Buildings:
    """The buildings (its cache of buildings known to exist lives inside: kept across invocations)."""
    return Buildings(clients.table)


@per_settings
def mapping_deps(settings: Settings) -> MappingDeps:
    """Discovery and mapping: the tables, the connections, the Graph client, the sync queue."""
    return MappingDeps(
        clients.table,
        connection_repository(),
        graph_client(),
        enqueue_sync,
        emit=emit_webhook_events,
        audit=audit_log().record,
    )


# ---------------------------------------------------------------- bookings and availability


@per_settings
def busy_store(settings: Settings) -> BusyStore:
    """The busy table: bookings claim slots in it, availability reads it."""
    return BusyStore(clients.table(tablestore.BUSY))


@per_settings
def busy_snapshots(settings: Settings) -> BusySnapshots[str]:
    """The process's checked copies of building-days that availability reads (one per process:
    what one read scans, the next one reuses)."""
    return BusySnapshots(busy_store(), busy_json)


@per_settings
def booking_deps(settings: Settings) -> BookingDeps:
    """The booking service's collaborators: the process's Graph client twice, with the request
    path's short retry policy and the outbox worker's longer one."""
    graph = graph_client()
    return BookingDeps(
        tables=clients.table,
        busy=busy_store(),
        graph=with_policy(graph, REQUEST_POLICY),
        worker_graph=with_policy(graph, WORKER_POLICY),
        connections=connection_repository(),
        outbox=Outbox(clients.queue(OUTBOX_QUEUE)),
        config=BookingConfig(
            live_check=settings.live_check,
            subject_template=settings.booking_subject,
            invite_booker=settings.invite_booker,
            max_attempts=settings.outbox_max_attempts,
            backoff_seconds=settings.outbox_backoff_seconds,
            backoff_max_seconds=settings.outbox_backoff_max_seconds,
        ),
        emit=emit_webhook_events,
    )


@per_settings
def attendance_deps(settings: Settings) -> Any:
    """Check-in and no-show release (issue 15): the booking service's collaborators (the release
    cancels through it, and declines with its worker's Graph client) and the audit log."""
    from shared.attendance.service import AttendanceDeps

    return AttendanceDeps(bookings=booking_deps(), audit=audit_log().record)


# ---------------------------------------------------------------- subscriptions


@per_settings
def client_state_keys(settings: Settings) -> VersionedKeys:
    """The clientState key, cached (the webhook and subscription creation share it)."""
    return keys_in(secret_store())


@per_settings
def webhook_inbox(settings: Settings) -> Inbox:
    """The webhook's collaborators (kept across invocations: the record cache is the point)."""
    records = RecordCache(functools.partial(load_record, clients.table))
    return Inbox(records, client_state_keys(), syncqueue.GroupSend(_send_sync), _enqueue_lifecycle)


@per_settings
def subscription_deps(settings: Settings) -> SubscriptionDeps:
    """Subscriptions per mailbox: ensure, release, renewal, lifecycle work."""
    return SubscriptionDeps(
        settings=settings,
        tables=clients.table,
        connections=connection_repository(),
        graph=graph_client(),
        keys=client_state_keys(),
        enqueue=enqueue_sync,
    )


def delete_subscriptions_hook(connection: Connection) -> None:
    """Connect's disconnect hook: delete the building's Graph subscriptions (a named function:
    connect logs a failing hook by its name)."""
    disconnect_hook(subscription_deps(), connection)


def _enqueue_lifecycle(work: LifecycleWork) -> None:
    with tablestore.storage_errors(f"enqueue on {LIFECYCLE_QUEUE}"):
        clients.queue(LIFECYCLE_QUEUE).send_message(work.encode())


# ---------------------------------------------------------------- sync


def enqueue_sync(request: SyncRequest, delay: float = 0) -> None:
    """Put a sync request on the queue (the client on first use: creating it is a request)."""
    syncqueue.send(clients.queue(SYNC_QUEUE), request, delay)


def _send_sync(requests: list[SyncRequest]) -> None:
    syncqueue.send_all(clients.queue(SYNC_QUEUE), requests)


def _peek_sync_poison() -> list[str]:
    return syncqueue.peek(clients.queue(SYNC_POISON_QUEUE), PEEK_MAX)


@per_settings
def sync_deps(settings: Settings) -> SyncDeps:
    """The sync worker's, its timers' and sync health's collaborators."""
    subs = subscription_deps  # called per use: rebuilt when the settings change
    return SyncDeps(
        tables=clients.table,
        graph=graph_client(),
        connection=connection_repository().get,
        busy=busy_store(),
        subscribe=lambda b, m: subscriptions.ensure_subscription(subs(), b, m),
        unsubscribe=lambda b, m: subscriptions.release_subscription(subs(), b, m),
        subscription=lambda b, m: subscriptions.subscription_for(subs(), b, m),
        enqueue=enqueue_sync,
        peek_poison=_peek_sync_poison,
        config=SyncConfig.of(settings),
        emit=emit_webhook_events,
        webhook_health=_webhook_health,
    )


# ---- checks


def _enqueue_check(building: str, run_id: str) -> None:
    from shared.checks.runner import QUEUE as CHECKS_QUEUE
    from shared.checks.runner import encode_message

    with tablestore.storage_errors(f"enqueue on {CHECKS_QUEUE}"):
        clients.queue(CHECKS_QUEUE).send_message(encode_message(building, run_id))


@per_settings
def check_deps(settings: Settings) -> CheckDeps:
    """The go-live check: the booking service with test bookings' own subject and no invitation
    (the marker prefix, nobody mailed), the Graph client, availability's busy store, sync's
    subscription index and queue, the audit log."""
    from dataclasses import replace

    from shared.checks.store import TABLE as CHECKS_TABLE
    from shared.checks.store import CheckStore
    from shared.core.checkmarks import SUBJECT_PREFIX

    bookings = booking_deps()
    test_bookings = replace(
        bookings,
        config=replace(bookings.config, subject_template=SUBJECT_PREFIX + "{title}",
                       invite_booker=False),
        emit=lambda building, events: 0,  # test bookings are not news for portals
    )  # fmt: skip
    subs = subscription_deps
    return CheckDeps(
        tables=clients.table,
        store=CheckStore(clients.table(CHECKS_TABLE)),
        graph=graph_client(),
        connections=connection_repository(),
        bookings=test_bookings,
        busy=busy_store(),
        availability=busy_snapshots(),
        subscription=lambda b, m: subscriptions.subscription_for(subs(), b, m),
        enqueue_sync=enqueue_sync,
        enqueue_run=_enqueue_check,
        audit=audit_log().record,
        audit_query=audit_log().query,
        notification_url=subs().notification_url,
        poll_max_seconds=settings.poll_max_seconds,
        config=CheckConfig.of(settings),
        emit=emit_webhook_events,
    )


# ---- webhooks


@per_settings
def webhook_http(settings: Settings) -> Any:
    """The outgoing webhooks' own httpx client: 10 s per attempt, redirects never followed, no
    proxies from the environment; receivers are on the internet, so the system trust store (and
    the local CA on the stack)."""
    import httpx

    from shared.webhooks.deps import TIMEOUT_S

    return httpx.Client(
        timeout=httpx.Timeout(TIMEOUT_S, connect=5.0),
        follow_redirects=False,
        verify=settings.verify,
        trust_env=False,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        headers={"User-Agent": "BookingBridge-Webhooks/0.1"},
    )


def _enqueue_webhook_delivery(message: str, delay: float) -> None:
    from shared.webhooks.delivery import QUEUE as WEBHOOK_QUEUE

    with tablestore.storage_errors(f"enqueue on {WEBHOOK_QUEUE}"):
        clients.queue(WEBHOOK_QUEUE).send_message(
            message, visibility_timeout=int(delay) if delay >= 1 else None
        )


def _committed(check: Mapping[str, Any]) -> bool:
    """Whether the change an outgoing webhook event reports is committed (webhooks.model.Event)."""
    if check.get("kind") == "busy_block":
        versions = busy_store().versions_of(check["building"], check["resource"], check["block"])
        if check.get("exists"):
            return bool(versions)
        if "start" in check:
            wanted = (datetime.fromisoformat(check["start"]), datetime.fromisoformat(check["end"]))
            return wanted in versions
        return not versions
    if check.get("kind") == "entity":
        entity = tablestore.get_entity(clients.table(check["table"]), check["pk"], check["rk"])
        if entity is None:
            return False
        for name, wanted in dict(check.get("expect") or {}).items():
            value = entity.get(name)
            if isinstance(wanted, dict) and "min" in wanted:
                if not isinstance(value, int) or value < wanted["min"]:
                    return False
            elif isinstance(wanted, dict) and "since" in wanted:
                stored = tablestore.iso_utc(value)
                if stored is None or _when(stored) < _when(str(wanted["since"])):
                    return False
            elif value != wanted:
                return False
        return True
    return False


def _webhook_health(building: str) -> list[Mapping[str, object]]:
    from shared.webhooks.service import unhealthy

    return list(unhealthy(webhook_deps(), building))


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def emit_webhook_events(building: str, events: list[Any]) -> int:
    """Producers' `emit`: hand events to the building's outgoing webhooks."""
    from shared.webhooks.service import emit_events

    return emit_events(webhook_deps(), building, events)


@per_settings
def webhook_deps(settings: Settings) -> Any:
    """Outgoing webhooks: the `webhooks` table, signing secrets in Key Vault, the delivery queue,
    the webhooks' httpx client, the system resolver (SSRF checks), the clock."""
    from shared.webhooks.deps import WebhookConfig, WebhookDeps
    from shared.webhooks.ssrf import system_resolver
    from shared.webhooks.store import TABLE as WEBHOOKS_TABLE
    from shared.webhooks.store import SigningSecrets, WebhookStore

    return WebhookDeps(
        store=WebhookStore(clients.table(WEBHOOKS_TABLE)),
        secrets=SigningSecrets(secret_store()),
        http=webhook_http(),
        enqueue=_enqueue_webhook_delivery,
        resolve=system_resolver,
        clock=_utc_now,
        config=WebhookConfig.of(settings),
        committed=_committed,
    )


# ---- analytics


@per_settings
def analytics_deps(settings: Settings) -> AnalyticsDeps:
    """Analytics (issue 15): the directory, the busy store, attendance records, the rollups."""
    from shared.attendance.model import TABLE as ATTENDANCE_TABLE

    return AnalyticsDeps(
        tables=clients.table,
        buildings=buildings(),
        busy=busy_store(),
        attendance=clients.table(ATTENDANCE_TABLE),
        rollups=RollupStore(clients.table(ROLLUPS_TABLE)),
        sheets=SheetStore(clients.table(SHEETS_TABLE)),
    )
