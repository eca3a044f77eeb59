"""Event Hubs batches in the inbox (issue 17), against real Azurite, the Graph emulator and the Key
Vault emulator: what differs from the webhook's POST, and nothing else (the shared checks are
tests/integration/test_subscriptions_service.py's and the stack's tests/e2e/test_eventhub.py's).

- no bound on record reads: a batch naming 250 unknown subscriptions besides ours is read
  through, where the webhook's POST of the same items is a 503 for Graph to retry;
- a queue that fails raises out of the batch (the host retries it before the checkpoint moves),
  while bad events in the same batch are only counted.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest

from shared.core.errors import DependencyError, StorageError
from shared.storage.keyvault import VersionedKeys
from shared.subscriptions import store
from shared.subscriptions.clientstate import client_state
from shared.subscriptions.eventhub import receive_events
from shared.subscriptions.inbox import MAX_RECORD_READS, Inbox, LifecycleWork, RecordCache, receive
from shared.sync.queue import SyncRequest
from tests.integration.graph_fixtures import Tenant, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures
from tests.integration.test_subscriptions_service import (  # noqa: F401 - fixtures
    Subs,
    active,
    graph_emu,
    keys,
    m365,
    sink,
    subs,
    vault,
)

pytestmark = pytest.mark.timeout(120)


def _inbox(subs: Subs, keys: VersionedKeys, enqueue: Callable[[SyncRequest], None]) -> Inbox:
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
    result = receive_events(_inbox(subs, keys, queued.append), bodies)
    assert result.accepted == 1 and result.dropped == {"unknown_subscription": 250}
    assert queued == [SyncRequest(subs.building, mailbox, "notified")]


def test_a_failing_queue_fails_the_batch_and_bad_events_do_not(
    subs: Subs, keys: VersionedKeys
) -> None:
    _, ours = _ours(subs, keys)

    def down(request: SyncRequest) -> None:
        raise StorageError("queue unavailable", reason="queue")

    bodies = [b"garbage", json.dumps({"value": [ours]}).encode()]
    with pytest.raises(StorageError):
        receive_events(_inbox(subs, keys, down), bodies)
    queued: list[SyncRequest] = []
    result = receive_events(_inbox(subs, keys, queued.append), bodies)  # the retry
    assert result.accepted == 1 and result.dropped == {"malformed_event": 1} and len(queued) == 1
