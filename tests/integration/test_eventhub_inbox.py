"""Event Hubs batches in the inbox (issue 17), against real Azurite, the Graph emulator and the Key
Vault emulator: what differs from the webhook's POST, and nothing else (the shared checks are
tests/integration/test_subscriptions_service.py's and the stack's tests/e2e/test_eventhub.py's).

- no bound on record reads: a batch naming 250 unknown subscriptions besides ours is read
  through, where the webhook's POST of the same items is a 503 for Graph to retry;
- a queue that fails raises out of the batch (the host retries it before the checkpoint moves),
  while bad events in the same batch are only counted;
- switching delivery moves existing subscriptions: the next ensure (or renewal) recreates a
  subscription made for the other URL, since a lifecycleNotificationUrl cannot be PATCHed.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from devstack.m365 import RunningEmulator
from shared.core.errors import DependencyError, StorageError
from shared.storage.keyvault import VersionedKeys
from shared.subscriptions import manage, store
from shared.subscriptions.clientstate import client_state
from shared.subscriptions.eventhub import notification_url, receive_events
from shared.subscriptions.inbox import MAX_RECORD_READS, Inbox, LifecycleWork, RecordCache, receive
from shared.subscriptions.manage import SubscriptionDeps
from shared.subscriptions.renewal import renew_due
from shared.sync.queue import SyncRequest
from tests.integration.graph_fixtures import Tenant, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures
from tests.integration.test_subscriptions_service import (  # noqa: F401 - fixtures
    Subs,
    active,
    graph_emu,
    graph_posts,
    keys,
    m365,
    sink,
    subs,
    vault,
)

pytestmark = pytest.mark.timeout(120)


def _inbox(
    subs: Subs, keys: VersionedKeys, enqueue: Callable[[Sequence[SyncRequest]], None]
) -> Inbox:
    lifecycle: list[LifecycleWork] = []
    records = RecordCache(lambda sub_id: store.load_record(subs.world.tables, sub_id))
    return Inbox(records, keys, enqueue, lifecycle.append)


def _ours(subs: Subs, keys: VersionedKeys) -> tuple[str, dict[str, object]]:
    mailbox = subs.map("room1")
    info = active(subs, mailbox)
    record = store.load_record(subs.world.tables, str(info.subscription_id))
    assert record is not None
    item = {
        "subscriptionId": record.subscription_id,
        "clientState": client_state(keys.current().key, record.nonce),
        "tenantId": record.tenant_id,
        "changeType": "updated",
        "resource": f"Users/{mailbox}/Events/x",
    }
    return mailbox, item


def test_a_batch_reads_every_subscription_it_names_where_the_webhook_stops_at_its_bound(
    subs: Subs, keys: VersionedKeys
) -> None:
    mailbox, ours = _ours(subs, keys)
    strangers = [
        {**ours, "subscriptionId": str(uuid.uuid4())} for _ in range(MAX_RECORD_READS + 50)
    ]
    body = json.dumps({"value": [ours, *strangers]}).encode()
    with pytest.raises(DependencyError):
        receive(_inbox(subs, keys, lambda r: None), body)  # the webhook: 503, Graph retries
    queued: list[SyncRequest] = []
    # The same items as 26 events of a batch: ours accepted, every stranger read and dropped.
    bodies = [json.dumps({"value": [ours]}).encode()] + [
        json.dumps({"value": strangers[n : n + 10]}).encode() for n in range(0, 250, 10)
    ]
    result = receive_events(_inbox(subs, keys, queued.extend), bodies)
    assert result.accepted == 1 and result.dropped == {"unknown_subscription": 250}
    assert queued == [SyncRequest(subs.building, mailbox, "notified")]


def test_a_failing_queue_fails_the_batch_and_bad_events_do_not(
    subs: Subs, keys: VersionedKeys
) -> None:
    _, ours = _ours(subs, keys)

    def down(requests: Sequence[SyncRequest]) -> None:
        raise StorageError("queue unavailable", reason="queue")

    bodies = [b"garbage", json.dumps({"value": [ours]}).encode()]
    with pytest.raises(StorageError):
        receive_events(_inbox(subs, keys, down), bodies)
    queued: list[SyncRequest] = []
    result = receive_events(_inbox(subs, keys, queued.extend), bodies)  # the retry
    assert result.accepted == 1 and result.dropped == {"malformed_event": 1} and len(queued) == 1


def _via_event_hubs(deps: SubscriptionDeps) -> SubscriptionDeps:
    settings = replace(
        deps.settings,
        notification_delivery="eventhub",
        eventhub_secret_url="https://kv-bookingbridge.vault.azure.net/secrets/graph-eventhub-send",
        eventhub_tenant="contoso.onmicrosoft.com",
    )
    return replace(deps, settings=settings)


def test_switching_delivery_recreates_on_the_next_ensure_and_back(
    m365: RunningEmulator, subs: Subs
) -> None:
    mailbox = subs.map("room1")
    webhook = active(subs, mailbox)
    hub_deps = _via_event_hubs(subs.deps)
    hub = manage.ensure_subscription(hub_deps, subs.building, mailbox)
    assert hub is not None and hub.status == "active" and hub.subscription_id
    assert hub.subscription_id != webhook.subscription_id
    assert not subs.graph_has(str(webhook.subscription_id))  # the webhook's one is deleted
    made = subs.http.get(f"/subscriptions/{hub.subscription_id}").json()
    url = notification_url(hub_deps.settings)
    assert made["notificationUrl"] == url and made["lifecycleNotificationUrl"] == url
    assert subs.index(mailbox)["notificationUrl"] == url
    # Settled: the next ensure costs no Graph request.
    posts = graph_posts(m365)
    again = manage.ensure_subscription(hub_deps, subs.building, mailbox)
    assert again is not None and again.subscription_id == hub.subscription_id
    assert graph_posts(m365) == posts
    # And back: a webhook subscription again, through the validation handshake.
    back = active(subs, mailbox)
    assert back.subscription_id not in (hub.subscription_id, webhook.subscription_id)
    made = subs.http.get(f"/subscriptions/{back.subscription_id}").json()
    assert made["notificationUrl"] == subs.deps.webhook_url


def test_an_index_entity_without_a_stored_url_was_made_for_the_webhook(subs: Subs) -> None:
    mailbox = subs.map("room1")
    active(subs, mailbox)
    index = subs.index(mailbox)
    legacy = {k: v for k, v in index.items() if k != "notificationUrl"}  # written before issue 17
    assert not subs.deps.delivers_elsewhere(legacy)
    assert _via_event_hubs(subs.deps).delivers_elsewhere(legacy)


def test_renewal_recreates_what_was_made_for_the_other_delivery(subs: Subs) -> None:
    mailbox = subs.map("room1")
    webhook = active(subs, mailbox)
    hub_deps = _via_event_hubs(subs.deps)
    report = renew_due(hub_deps)  # the margin makes every subscription due (subs fixture)
    assert report.recreated == 1 and report.renewed == 0, report
    index = subs.index(mailbox)
    assert index["subscriptionId"] != webhook.subscription_id
    assert index["notificationUrl"] == notification_url(hub_deps.settings)
    assert SyncRequest(subs.building, mailbox, "resync") in subs.sent  # the gap is caught up
