"""The subscriptions service with injected collaborators against real Azurite, the Graph emulator
and the Key Vault emulator; no Functions host.

ensure (create through Graph's validation handshake, then idempotent), the webhook inbox on what
Graph actually delivered, renewal (`$batch` PATCHes; a subscription Graph lost is recreated and
resynced), lifecycle work (reauthorize, removed, stale, paused) and the disconnect hook. Each test
gets tables, a tenant and a building of its own (tests/integration/service_fixtures.py), so the
counts in renewal reports are exact; rooms are mapped through the mapping service. Graph's
webhook is graph_fixtures' `Sink` (it echoes validation tokens and records what Graph delivers);
our own webhook over HTTP is tests/e2e/test_webhook.py's. One emulator serves Graph and the vault:
the session's demo emulator, whose first (demo) tenant owns the vault.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from devstack.m365 import RunningEmulator
from shared.core.connection import Connection
from shared.core.settings import load_settings
from shared.directory import registry
from shared.mapping import service as mapping
from shared.mapping.service import MappingDeps
from shared.storage.keyvault import SecretStore, VersionedKeys, b64url
from shared.subscriptions import manage, store
from shared.subscriptions.clientstate import CLIENT_STATE_KEY_NAME, client_state, keys_in
from shared.subscriptions.inbox import Inbox, InboxResult, LifecycleWork, RecordCache, receive
from shared.subscriptions.manage import SubscriptionDeps
from shared.subscriptions.renewal import renew_due
from shared.sync.queue import SyncRequest
from tests.integration import emulator_fixtures, graph_fixtures
from tests.integration.graph_fixtures import Tenant, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures
from tests.waiting import wait_for

m365 = emulator_fixtures.m365  # the session's emulator (demo tenant; Graph and Key Vault)
sink = graph_fixtures.sink

pytestmark = pytest.mark.timeout(120)

ROOMS = ("room1", "room2")


@pytest.fixture(scope="module")
def graph_emu(m365: RunningEmulator) -> RunningEmulator:
    """graph_fixtures' tenants on the session's demo emulator (the demo tenant owns its vault)."""
    return m365


@pytest.fixture(scope="module")
def vault(m365: RunningEmulator) -> SecretStore:
    """The app's SecretStore on the Key Vault emulator."""
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
    return SecretStore(lambda: client)


@pytest.fixture(scope="module")
def keys(vault: SecretStore) -> VersionedKeys:
    """The clientState key in the Key Vault emulator, through the app's SecretStore."""
    return keys_in(vault)


@dataclass
class Subs:
    """The subscriptions service's deps on `world`, what it queued, and Graph seen directly."""

    world: World
    deps: SubscriptionDeps
    sent: list[SyncRequest]
    http: httpx.Client  # raw Graph, as the app (to look behind the service's back)

    @property
    def building(self) -> str:
        return self.world.building

    def map(self, room: str) -> str:
        """Map the room's default calendar to resource `res-<room>` (the mapping service)."""
        mailbox = self.world.mailbox(room)
        calendar = self.http.get(f"/users/{mailbox}/calendar").json()
        deps = MappingDeps(self.world.tables, self.world.connections(), self.world.graph, _drop)
        body = {"name": room, "kind": "room", "timeZone": "UTC"}
        registry.put_resource(self.world.tables, self.building, f"res-{room}", body)
        mapping.map_resource(
            deps, self.building, f"res-{room}", {"calendarId": calendar["id"], "mailbox": mailbox},
            actor="test",
        )  # fmt: skip
        return mailbox

    def unmap(self, room: str) -> None:
        deps = MappingDeps(self.world.tables, self.world.connections(), self.world.graph, _drop)
        mapping.unmap(deps, self.building, f"res-{room}")

    def paused(self) -> SubscriptionDeps:
        """The deps with the building's connection waiting for re-authorisation."""
        connection = replace(self.world.connection, status="reauth_required")
        return replace(self.deps, connections={self.building: connection})

    def index(self, mailbox: str) -> dict[str, Any]:
        entity = store.get_index(self.world.tables, self.building, mailbox)
        assert entity is not None, mailbox
        return dict(entity)

    def graph_has(self, sub_id: str) -> bool:
        return self.http.get(f"/subscriptions/{sub_id}").status_code == 200


def _drop(request: SyncRequest) -> None:
    """Mapping's sync requests: not what these tests look at."""


def emulator_now(m365: RunningEmulator) -> datetime:
    """The emulator's clock (other tests of the session may have moved it)."""
    offset = float(m365.control.get("clock").json()["offsetSeconds"])
    return datetime.now(UTC) + timedelta(seconds=offset)


def graph_posts(m365: RunningEmulator) -> int:
    counts = m365.control.get("stats").json()["requests"]["byEndpoint"]
    return int(counts.get("POST /subscriptions", 0))


@pytest.fixture
def subs(
    m365: RunningEmulator,
    world: World,
    tenant: Tenant,
    keys: VersionedKeys,
    sink: graph_fixtures.Sink,
) -> Iterator[Subs]:
    # Our notification URLs are <public base>/graph/notifications and /graph/lifecycle: the sink
    # answers any path. The renewal margin exceeds any lifetime: every run finds all due.
    settings = load_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "BB_KEY_VAULT_URL": m365.key_vault_url,
            "BB_CLIENT_ID": tenant.app(),
            "BB_PUBLIC_BASE_URL": sink.url.rsplit("/", 1)[0],
            "BB_API_AUDIENCE": "api://bookingbridge",
            "BB_API_TENANT_ID": tenant.id,
            "BB_GRAPH_BASE_URL": m365.graph_url,
            "BB_SUBSCRIPTION_MINUTES": "600",
            "BB_RENEW_MARGIN_MINUTES": "525600",
        }
    )
    sent: list[SyncRequest] = []
    deps = SubscriptionDeps(
        settings=settings, tables=world.tables, connections=world.connections(),
        graph=world.graph, keys=keys, enqueue=sent.append, now=lambda: emulator_now(m365),
    )  # fmt: skip
    try:
        yield Subs(world, deps, sent, tenant.as_app())
    finally:
        manage.delete_all_for_building(deps, world.building)


def active(subs: Subs, mailbox: str) -> store.SubscriptionInfo:
    info = manage.ensure_subscription(subs.deps, subs.building, mailbox)
    assert info is not None and info.status == "active", info
    assert info.subscription_id
    return info


# ---------------------------------------------------------------- ensure and the inbox


def test_ensure_creates_once_through_the_handshake_and_the_inbox_accepts_what_graph_sends(
    m365: RunningEmulator, subs: Subs, sink: graph_fixtures.Sink, keys: VersionedKeys
) -> None:
    mailbox = subs.map("room1")
    posts = graph_posts(m365)
    info = active(subs, mailbox.upper())  # any case: mailboxes are compared lower-cased
    assert sink.validations >= 1  # Graph validated our notification URL before creating it
    assert graph_posts(m365) == posts + 1
    record = store.load_record(subs.world.tables, str(info.subscription_id))
    assert record is not None and record.mailbox == mailbox
    assert record.building_id == subs.building and record.key_check == keys.current().check
    sub = subs.http.get(f"/subscriptions/{info.subscription_id}").json()
    assert sub["resource"] == f"/users/{mailbox}/events"
    assert sub["notificationUrl"].endswith("/graph/notifications")
    assert sub["lifecycleNotificationUrl"].endswith("/graph/lifecycle")
    assert info.expires_at is not None and info.expires_at > emulator_now(m365)
    # Idempotent: no Graph request, the same subscription.
    for _ in range(3):
        again = manage.ensure_subscription(subs.deps, subs.building, mailbox)
        assert again is not None and again.subscription_id == info.subscription_id
    assert graph_posts(m365) == posts + 1
    # A change in the room: Graph notifies the sink with our clientState; the inbox takes it.
    start = (emulator_now(m365) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    created = subs.http.post(
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
        RecordCache(lambda sub_id: store.load_record(subs.world.tables, sub_id)), keys,
        queued.extend, lifecycle.append,
    )  # fmt: skip
    result = receive(inbox, json.dumps({"value": items}).encode())
    assert result.accepted == len(items) and result.dropped == {}
    assert queued == [SyncRequest(subs.building, mailbox, "notified")] and lifecycle == []
    subs.http.delete(f"/users/{mailbox}/events/{created.json()['id']}")


def test_ensure_returns_none_for_what_it_cannot_watch(subs: Subs) -> None:
    mailbox = subs.world.mailbox("room1")
    assert manage.ensure_subscription(subs.deps, subs.building, mailbox) is None  # not mapped
    subs.map("room1")
    assert manage.ensure_subscription(subs.paused(), subs.building, mailbox) is None
    assert store.get_index(subs.world.tables, subs.building, mailbox) is None


# ---------------------------------------------------------------- renewal


def test_renewal_patches_in_one_batch_and_recreates_what_graph_lost(
    m365: RunningEmulator, subs: Subs
) -> None:
    kept, lost = (active(subs, subs.map(room)) for room in ROOMS)
    subs.sent.clear()
    assert subs.http.delete(f"/subscriptions/{lost.subscription_id}").status_code == 204
    report = renew_due(subs.deps)
    assert (report.scanned, report.renewed, report.recreated, report.failed) == (2, 1, 1, 0)
    assert report.batches == 1
    renewed = subs.index(kept.mailbox)
    assert renewed["subscriptionId"] == kept.subscription_id and renewed.get("renewedAt")
    assert store.aware(renewed["expiresAt"]) >= kept.expires_at  # type: ignore[operator]
    again = subs.index(lost.mailbox)
    assert again["status"] == "active" and again["subscriptionId"] != lost.subscription_id
    assert subs.graph_has(again["subscriptionId"]) and subs.graph_has(str(kept.subscription_id))
    # Changes made while nobody was subscribed were never notified: the mailbox is resynced.
    assert subs.sent == [SyncRequest(subs.building, lost.mailbox, "resync")]


def test_renewal_skips_a_building_waiting_for_reauthorisation(subs: Subs) -> None:
    info = active(subs, subs.map("room1"))
    report = renew_due(subs.paused())
    assert (report.scanned, report.skipped, report.renewed, report.batches) == (1, 1, 0, 0)
    assert subs.index(info.mailbox)["subscriptionId"] == info.subscription_id


# ---------------------------------------------------------------- lifecycle work


def test_lifecycle_reauthorize_renews_and_removed_recreates(subs: Subs) -> None:
    info = active(subs, subs.map("room1"))
    sub_id = str(info.subscription_id)
    work = LifecycleWork(sub_id, "reauthorizationRequired")
    assert manage.handle_lifecycle(subs.deps, work) == "reauthorized"
    index = subs.index(info.mailbox)
    assert index["subscriptionId"] == sub_id and index["status"] == "active"
    assert index.get("renewedAt")
    subs.sent.clear()
    assert manage.handle_lifecycle(subs.deps, LifecycleWork(sub_id, "subscriptionRemoved")) == (
        "recreated"
    )
    index = subs.index(info.mailbox)
    assert index["status"] == "active" and index["subscriptionId"] != sub_id
    assert subs.graph_has(index["subscriptionId"]) and not subs.graph_has(sub_id)
    assert store.load_record(subs.world.tables, sub_id) is None
    assert subs.sent == [SyncRequest(subs.building, info.mailbox, "resync")]
    # Work for the old subscription, delivered late: nothing to do.
    assert manage.handle_lifecycle(subs.deps, work) == "unknown"


def test_lifecycle_work_while_reauthorisation_is_pending_marks_it_failed(subs: Subs) -> None:
    info = active(subs, subs.map("room1"))
    work = LifecycleWork(str(info.subscription_id), "reauthorizationRequired")
    assert manage.handle_lifecycle(subs.paused(), work) == "paused"
    index = subs.index(info.mailbox)
    assert (index["status"], index["reason"]) == ("failed", "reauth_required")
    disconnected: dict[str, Connection] = {}
    assert manage.handle_lifecycle(replace(subs.deps, connections=disconnected), work) == (
        "disconnected"
    )


# ---------------------------------------------------------------- release and disconnect


def test_release_keeps_a_mapped_mailbox_and_the_disconnect_hook_deletes_everything(
    subs: Subs,
) -> None:
    first, second = (active(subs, subs.map(room)) for room in ROOMS)
    assert not manage.release_subscription(subs.deps, subs.building, first.mailbox)
    subs.unmap(ROOMS[0])
    assert manage.release_subscription(subs.deps, subs.building, first.mailbox)
    assert not subs.graph_has(str(first.subscription_id))
    assert manage.subscription_for(subs.deps, subs.building, first.mailbox) is None
    manage.disconnect_hook(subs.deps, subs.world.connection)
    assert not subs.graph_has(str(second.subscription_id))
    assert store.building_index(subs.world.tables, subs.building) == []
    assert store.load_record(subs.world.tables, str(second.subscription_id)) is None


# ---------------------------------------------------------------- key rotation (last: it rotates)


def test_a_rotated_client_state_key_keeps_old_subscriptions_heard_until_renewal_moves_them(
    m365: RunningEmulator, subs: Subs, sink: graph_fixtures.Sink, vault: SecretStore,
    keys: VersionedKeys,
) -> None:  # fmt: skip
    """Rotation (issue 20): a new version of `client-state-key` is set in Key Vault. An instance
    that starts afterwards still accepts notifications of a subscription made with the previous
    version (the record names its version); its renewal run moves the subscription to the new
    version, whose notifications are accepted by old and new instances alike."""
    mailbox = subs.map("room1")
    info = active(subs, mailbox)
    before = store.load_record(subs.world.tables, str(info.subscription_id))
    assert before is not None
    vault.set(CLIENT_STATE_KEY_NAME, b64url(secrets.token_bytes(32)), content_type="hmac-key")
    fresh = keys_in(vault)  # an instance started after the rotation: nothing cached
    assert fresh.current().check != before.key_check

    def notified(sub_id: str, subject: str) -> list[dict[str, Any]]:
        start = (emulator_now(m365) + timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
        made = subs.http.post(f"/users/{mailbox}/events", json={
            "subject": subject,
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC"}})  # fmt: skip
        assert made.status_code == 201, made.text
        return list(wait_for(
            lambda: [i for i in sink.items() if i.get("subscriptionId") == sub_id],
            timeout=10, what="a change notification",
        ))  # fmt: skip

    def accepted(instance: VersionedKeys, items: list[dict[str, Any]]) -> InboxResult:
        inbox = Inbox(
            RecordCache(lambda sub_id: store.load_record(subs.world.tables, sub_id)), instance,
            lambda requests: None, lambda work: None,
        )  # fmt: skip
        return receive(inbox, json.dumps({"value": items}).encode())

    old_items = notified(str(info.subscription_id), "Before the renewal")
    result = accepted(fresh, old_items)
    assert result.accepted == len(old_items) and result.dropped == {}
    assert before.key_version == keys.current().version  # how it found the previous key
    # The new instance's renewal moves the subscription to the current version.
    report = renew_due(replace(subs.deps, keys=fresh))
    assert report.recreated == 1, report
    moved = subs.index(mailbox)
    after = store.load_record(subs.world.tables, str(moved["subscriptionId"]))
    assert after is not None and after.subscription_id != before.subscription_id
    assert (after.key_version, after.key_check) == (fresh.current().version,
                                                   fresh.current().check)  # fmt: skip
    assert not subs.graph_has(str(info.subscription_id))
    new_items = notified(after.subscription_id, "After the renewal")
    assert {i["clientState"] for i in new_items} == {client_state(fresh.current().key, after.nonce)}
    for instance in (fresh, keys):  # the instance that still has the old key as current, too
        result = accepted(instance, new_items)
        assert result.accepted == len(new_items) and result.dropped == {}


class _GoneAfterFirstRead:
    """The connection as a creator racing a disconnect sees it: there when it starts, gone (the
    disconnect's sweep ran before the creator's claim, then the row went) when Graph answers."""

    def __init__(self, real: manage.ConnectionLookup) -> None:
        self.real, self.reads = real, 0

    def get(self, building_id: str) -> Connection | None:
        self.reads += 1
        return self.real.get(building_id) if self.reads == 1 else None

    def forget(self, building_id: str) -> None:
        self.real.forget(building_id)


def test_a_subscription_created_while_the_building_disconnects_is_deleted_again(
    m365: RunningEmulator, subs: Subs
) -> None:
    mailbox = subs.map("room1")
    posts = graph_posts(m365)
    racing = replace(subs.deps, connections=_GoneAfterFirstRead(subs.deps.connections))
    info = manage.ensure_subscription(racing, subs.building, mailbox)
    assert info is not None and info.status == "removed" and info.subscription_id is None, info
    assert graph_posts(m365) == posts + 1  # Graph created it ...
    listed = subs.http.get("/subscriptions").json()["value"]
    # ... and it was deleted again, with its claim: nothing left to notify or to renew.
    assert [s for s in listed if s["resource"] == f"/users/{mailbox}/events"] == []
    assert store.get_index(subs.world.tables, subs.building, mailbox) is None
