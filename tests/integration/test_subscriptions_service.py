"""The subscriptions service with injected collaborators against real Azurite, the Graph emulator
and the Key Vault emulator; no Functions host.

ensure (create through Graph's validation handshake, then idempotent), the webhook inbox on what
Graph actually delivered, renewal (`$batch` PATCHes; a subscription Graph lost is recreated and
resynced), lifecycle work (reauthorize, removed, stale, paused) and the disconnect hook. Each test
gets tables of its own (a fresh suffix on Azurite) and a building of its own, so the counts in
renewal reports are exact. Graph's webhook is `Sink` (it echoes validation tokens and records what
Graph delivers); our own webhook over HTTP is tests/e2e/test_webhook.py's.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables import TableClient, TableServiceClient
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.m365 import RunningEmulator
from shared.core.connection import Connection
from shared.core.settings import load_settings
from shared.graph.client import GraphClient
from shared.graph.guard import CalendarGuard
from shared.mapping.service import load_mapped
from shared.storage import tablestore
from shared.storage.keyvault import SecretStore, VersionedKeys
from shared.storage.tablestore import TableSource
from shared.subscriptions import manage, store
from shared.subscriptions.clientstate import client_state, keys_in
from shared.subscriptions.inbox import Inbox, LifecycleWork, RecordCache, receive
from shared.subscriptions.manage import SubscriptionDeps
from shared.subscriptions.renewal import renew_due
from shared.sync.queue import SyncRequest
from tests.integration import emulator_fixtures
from tests.integration.graph_fixtures import Sink
from tests.waiting import wait_for

m365 = emulator_fixtures.m365  # the session's emulator (demo tenant; Graph and Key Vault)

pytestmark = pytest.mark.timeout(120)

ROOMS = ("boardroom4a", "focus3c")


# ---------------------------------------------------------------- collaborators


class AppTokens:
    """App-only Graph tokens minted by the emulator's control API (the identity path is tested in
    test_identity.py; here only Graph's answers matter)."""

    def __init__(self, m365: RunningEmulator) -> None:
        self.m365 = m365
        self.issued = 0

    def token(self, connection: Connection) -> str:
        body = {
            "tenantId": connection.tenant_id,
            "clientId": self.m365.seed["apps"]["bookingbridge"]["clientId"],
            "roles": ["Calendars.ReadWrite"],
        }
        response = self.m365.control.post("graph/token", json=body)
        response.raise_for_status()
        self.issued += 1
        return str(response.json()["access_token"])

    def invalidate(self, connection: Connection) -> None:
        pass  # every call mints a new one


@dataclass
class Connections:
    """The connection lookup: one building, one application connection (status changeable)."""

    connection: Connection

    def get(self, building_id: str) -> Connection | None:
        return self.connection if building_id == self.connection.building_id else None


@dataclass
class World:
    deps: SubscriptionDeps
    connections: Connections
    tables: TableSource
    sent: list[SyncRequest]
    mailboxes: dict[str, str]  # room nickname -> mailbox (lower case)
    http: httpx.Client  # raw Graph, as the app (to look behind the service's back)
    created: list[str] = field(default_factory=list)

    @property
    def building(self) -> str:
        return self.connections.connection.building_id

    def map(self, room: str) -> str:
        """Map the room's default calendar to a resource of the building (as mapping does)."""
        mailbox = self.mailboxes[room]
        calendar = self.http.get(f"/users/{mailbox}/calendar").json()
        tablestore.put_entity(
            self.tables(tablestore.RESOURCES),
            {
                "PartitionKey": self.building, "RowKey": f"res-{room}", "name": room,
                "calendarId": calendar["id"], "mailbox": mailbox, "graphMailbox": mailbox,
                "calendarIsDefault": True, "tenantId": self.connections.connection.tenant_id,
                "paid": False,
            },
        )  # fmt: skip
        return mailbox

    def index(self, mailbox: str) -> dict[str, Any]:
        entity = store.get_index(self.tables, self.building, mailbox)
        assert entity is not None, mailbox
        return dict(entity)

    def graph_has(self, sub_id: str) -> bool:
        return self.http.get(f"/subscriptions/{sub_id}").status_code == 200


def emulator_now(m365: RunningEmulator) -> datetime:
    """The emulator's clock (other tests of the session may have moved it)."""
    offset = float(m365.control.get("clock").json()["offsetSeconds"])
    return datetime.now(UTC) + timedelta(seconds=offset)


def graph_posts(m365: RunningEmulator) -> int:
    counts = m365.control.get("stats").json()["requests"]["byEndpoint"]
    return int(counts.get("POST /subscriptions", 0))


@pytest.fixture(scope="module")
def table_service(azurite: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite)


@pytest.fixture
def tables(table_service: TableServiceClient) -> Iterator[TableSource]:
    """The app's tables under a suffix of this test's own (created on first use, dropped after)."""
    suffix = uuid.uuid4().hex[:8]
    made: dict[str, TableClient] = {}

    def table(name: str) -> TableClient:
        if name not in made:
            made[name] = table_service.create_table_if_not_exists(f"{name}{suffix}")
        return made[name]

    yield table
    for client in made.values():
        table_service.delete_table(client.table_name)


@pytest.fixture(scope="module")
def keys(m365: RunningEmulator) -> VersionedKeys:
    """The clientState key in the Key Vault emulator, through the app's SecretStore."""
    seed = m365.seed
    app = seed["apps"]["bookingbridge"]
    credential = ClientSecretCredential(
        seed["tenant"]["id"], app["clientId"], app["clientSecret"],
        authority=m365.base_url, disable_instance_discovery=True,
        connection_verify=m365.ca_bundle,
    )  # fmt: skip
    client = SecretClient(
        m365.key_vault_url, credential, verify_challenge_resource=False,
        connection_verify=m365.ca_bundle,
    )  # fmt: skip
    return keys_in(SecretStore(lambda: client))


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def world(
    m365: RunningEmulator, tables: TableSource, keys: VersionedKeys, sink: Sink
) -> Iterator[World]:
    tenant = m365.seed["tenant"]
    connection = Connection(
        f"b-{uuid.uuid4().hex[:10]}", f"conn-{uuid.uuid4().hex[:8]}", "application", "connected",
        tenant["id"],
    )  # fmt: skip
    # Our notification URLs are <public base>/graph/notifications and /graph/lifecycle: the sink
    # answers any path. The renewal margin exceeds any lifetime: every run finds all due.
    base = sink.url.rsplit("/", 1)[0]
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BB_KEY_VAULT_URL": m365.key_vault_url,
            "BB_CLIENT_ID": m365.seed["apps"]["bookingbridge"]["clientId"],
            "BB_PUBLIC_BASE_URL": base,
            "BB_API_AUDIENCE": "api://bookingbridge",
            "BB_API_TENANT_ID": tenant["id"],
            "BB_GRAPH_BASE_URL": m365.graph_url,
            "BB_SUBSCRIPTION_MINUTES": "600",
            "BB_RENEW_MARGIN_MINUTES": "525600",
        }
    )
    tokens = AppTokens(m365)
    tls = ssl.create_default_context(cafile=m365.ca_bundle)
    http = httpx.Client(verify=tls, trust_env=False, timeout=30)
    graph = GraphClient(
        http, m365.graph_url, tokens, None,
        guard=CalendarGuard(lambda building: load_mapped(tables, building)),
    )  # fmt: skip
    raw = httpx.Client(
        base_url=m365.graph_url, verify=tls, trust_env=False, timeout=30,
        headers={"Authorization": f"Bearer {tokens.token(connection)}"},
    )  # fmt: skip
    sent: list[SyncRequest] = []
    connections = Connections(connection)
    deps = SubscriptionDeps(
        settings=settings, tables=tables, connections=connections, graph=graph, keys=keys,
        enqueue=sent.append, now=lambda: emulator_now(m365),
    )  # fmt: skip
    mailboxes = {room: str(tenant["users"][room]["mail"]).lower() for room in ROOMS}
    world = World(deps, connections, tables, sent, mailboxes, raw)
    try:
        yield world
    finally:
        manage.delete_all_for_building(deps, world.building)
        raw.close()
        http.close()


def active(world: World, mailbox: str) -> store.SubscriptionInfo:
    info = manage.ensure_subscription(world.deps, world.building, mailbox)
    assert info is not None and info.status == "active", info
    assert info.subscription_id
    return info


# ---------------------------------------------------------------- ensure and the inbox


def test_ensure_creates_once_through_the_handshake_and_the_inbox_accepts_what_graph_sends(
    m365: RunningEmulator, world: World, sink: Sink, keys: VersionedKeys
) -> None:
    mailbox = world.map("boardroom4a")
    posts = graph_posts(m365)
    info = active(world, mailbox.upper())  # any case: mailboxes are compared lower-cased
    assert sink.validations >= 1  # Graph validated our notification URL before creating it
    assert graph_posts(m365) == posts + 1
    record = store.load_record(world.tables, str(info.subscription_id))
    assert record is not None and record.mailbox == mailbox
    assert record.building_id == world.building and record.key_check == keys.current().check
    sub = world.http.get(f"/subscriptions/{info.subscription_id}").json()
    assert sub["resource"] == f"/users/{mailbox}/events"
    assert sub["notificationUrl"].endswith("/graph/notifications")
    assert sub["lifecycleNotificationUrl"].endswith("/graph/lifecycle")
    assert info.expires_at is not None and info.expires_at > emulator_now(m365)
    # Idempotent: no Graph request, the same subscription.
    for _ in range(3):
        again = manage.ensure_subscription(world.deps, world.building, mailbox)
        assert again is not None and again.subscription_id == info.subscription_id
    assert graph_posts(m365) == posts + 1
    # A change in the room: Graph notifies the sink with our clientState; the inbox takes it.
    start = (emulator_now(m365) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    created = world.http.post(
        f"/users/{mailbox}/events",
        json={
            "subject": "Notified",
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC"},
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    items = wait_for(
        lambda: [i for i in sink.items() if i.get("subscriptionId") == info.subscription_id],
        timeout=10,
        what="a change notification",
    )
    assert items[0]["clientState"] == client_state(keys.current().key, record.nonce)
    queued: list[SyncRequest] = []
    lifecycle: list[LifecycleWork] = []
    inbox = Inbox(
        RecordCache(lambda sub_id: store.load_record(world.tables, sub_id)), keys,
        queued.append, lifecycle.append,
    )  # fmt: skip
    result = receive(inbox, json.dumps({"value": items}).encode())
    assert result.accepted == len(items) and result.dropped == {}
    assert queued == [SyncRequest(world.building, mailbox, "notified")] and lifecycle == []
    world.http.delete(f"/users/{mailbox}/events/{created.json()['id']}")


def test_ensure_returns_none_for_what_it_cannot_watch(world: World) -> None:
    mailbox = world.mailboxes["boardroom4a"]
    assert manage.ensure_subscription(world.deps, world.building, mailbox) is None  # not mapped
    world.map("boardroom4a")
    paused = replace(world.connections.connection, status="reauth_required")
    blocked = replace(world.deps, connections=Connections(paused))
    assert manage.ensure_subscription(blocked, world.building, mailbox) is None
    assert store.get_index(world.tables, world.building, mailbox) is None


# ---------------------------------------------------------------- renewal


def test_renewal_patches_in_one_batch_and_recreates_what_graph_lost(
    m365: RunningEmulator, world: World
) -> None:
    kept, lost = (active(world, world.map(room)) for room in ROOMS)
    world.sent.clear()
    assert world.http.delete(f"/subscriptions/{lost.subscription_id}").status_code == 204
    report = renew_due(world.deps)
    assert (report.scanned, report.renewed, report.recreated, report.failed) == (2, 1, 1, 0)
    assert report.batches == 1
    renewed = world.index(kept.mailbox)
    assert renewed["subscriptionId"] == kept.subscription_id and renewed.get("renewedAt")
    assert store.aware(renewed["expiresAt"]) >= kept.expires_at  # type: ignore[operator]
    again = world.index(lost.mailbox)
    assert again["status"] == "active" and again["subscriptionId"] != lost.subscription_id
    assert world.graph_has(again["subscriptionId"]) and world.graph_has(str(kept.subscription_id))
    # Changes made while nobody was subscribed were never notified: the mailbox is resynced.
    assert world.sent == [SyncRequest(world.building, lost.mailbox, "resync")]


def test_renewal_skips_a_building_waiting_for_reauthorisation(world: World) -> None:
    info = active(world, world.map("boardroom4a"))
    paused = replace(world.connections.connection, status="reauth_required")
    report = renew_due(replace(world.deps, connections=Connections(paused)))
    assert (report.scanned, report.skipped, report.renewed, report.batches) == (1, 1, 0, 0)
    assert world.index(info.mailbox)["subscriptionId"] == info.subscription_id


# ---------------------------------------------------------------- lifecycle work


def test_lifecycle_reauthorize_renews_and_removed_recreates(world: World) -> None:
    info = active(world, world.map("boardroom4a"))
    sub_id = str(info.subscription_id)
    work = LifecycleWork(sub_id, "reauthorizationRequired")
    assert manage.handle_lifecycle(world.deps, work) == "reauthorized"
    index = world.index(info.mailbox)
    assert index["subscriptionId"] == sub_id and index["status"] == "active"
    assert index.get("renewedAt")
    world.sent.clear()
    assert manage.handle_lifecycle(world.deps, LifecycleWork(sub_id, "subscriptionRemoved")) == (
        "recreated"
    )
    index = world.index(info.mailbox)
    assert index["status"] == "active" and index["subscriptionId"] != sub_id
    assert world.graph_has(index["subscriptionId"]) and not world.graph_has(sub_id)
    assert store.load_record(world.tables, sub_id) is None
    assert world.sent == [SyncRequest(world.building, info.mailbox, "resync")]
    # Work for the old subscription, delivered late: nothing to do.
    assert manage.handle_lifecycle(world.deps, work) == "unknown"


def test_lifecycle_work_while_reauthorisation_is_pending_marks_it_failed(world: World) -> None:
    info = active(world, world.map("boardroom4a"))
    paused = replace(world.connections.connection, status="reauth_required")
    deps = replace(world.deps, connections=Connections(paused))
    work = LifecycleWork(str(info.subscription_id), "reauthorizationRequired")
    assert manage.handle_lifecycle(deps, work) == "paused"
    index = world.index(info.mailbox)
    assert (index["status"], index["reason"]) == ("failed", "reauth_required")
    disconnected = replace(world.deps, connections=Connections(replace(paused, building_id="x")))
    assert manage.handle_lifecycle(disconnected, work) == "disconnected"


# ---------------------------------------------------------------- release and disconnect


def test_release_keeps_a_mapped_mailbox_and_the_disconnect_hook_deletes_everything(
    world: World,
) -> None:
    first, second = (active(world, world.map(room)) for room in ROOMS)
    assert not manage.release_subscription(world.deps, world.building, first.mailbox)
    world.tables(tablestore.RESOURCES).delete_entity(world.building, "res-boardroom4a")
    assert manage.release_subscription(world.deps, world.building, first.mailbox)
    assert not world.graph_has(str(first.subscription_id))
    assert manage.subscription_for(world.deps, world.building, first.mailbox) is None
    manage.disconnect_hook(world.deps, world.connections.connection)
    assert not world.graph_has(str(second.subscription_id))
    assert store.building_index(world.tables, world.building) == []
    assert store.load_record(world.tables, str(second.subscription_id)) is None
