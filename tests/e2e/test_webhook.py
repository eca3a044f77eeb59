"""Graph subscriptions, the webhook, lifecycle notifications and renewal, on the whole local stack.

One stack for this module (it moves the emulator clock at the end). A building is connected in
application mode through our connect routes, the demo's room `boardroom4a` is mapped through our
mapping routes, and its subscription is created by `ensure_subscription` (called in this process,
as the sync worker would): the Graph emulator POSTs the validation handshake to the stack's real
host, so creation succeeding proves our webhook answered it.

Payloads marked "documented" are Microsoft's examples, from microsoftgraph/microsoft-graph-docs-
contrib: concepts/includes/change-notifications-delivery-notificationurl-validation.md (validation
request), concepts/change-notifications-delivery-webhooks.md ("Change notification example"),
concepts/change-notifications-lifecycle-events.md ("Structure of a lifecycle notification"), with
the placeholders filled in (subscription id, clientState, tenant id).

What the webhook enqueued is read from its own log line (counts and building ids per POST): the
sync worker may consume `notifications` messages at any moment, so the queue itself is inspected
only in the in-process test that sends to a private queue.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    HostLog,
    connect_building_application,
    connect_building_delegated,
    emulator_now,
    emulator_stats,
    emulator_subscriptions,
    map_room,
    new_building,
    run_function,
    service_env,
    wait_sync_quiet,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

# Subscriptions ask for more than Graph allows (the cap must apply); every run of the renewal
# timer finds every subscription due (the margin exceeds any lifetime).
SETTINGS = {"BB_SUBSCRIPTION_MINUTES": "10000", "BB_RENEW_MARGIN_MINUTES": "525600"}

DOC_VALIDATION_QUERY = (  # GRAPH.md §6.4, as Graph encodes it (`+` for spaces, %3a for colons)
    "validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+"
    "Request-Id%3a+5731e5c5-2b61-4f7e-9c2a-0d1b6a3b7c11"
)
DOC_VALIDATION_ECHO = (
    "Validation: Testing client application reachability for subscription "
    "Request-Id: 5731e5c5-2b61-4f7e-9c2a-0d1b6a3b7c11"
)
DOC_CHANGE_ITEM: dict[str, Any] = {  # change-notifications-delivery-webhooks.md
    "id": "lsgTZMr9KwAAA",
    "subscriptionId": "{subscription_guid}",
    "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
    "clientState": "secretClientValue",
    "changeType": "created",
    "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
    "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
    "resourceData": {
        "@odata.type": "#Microsoft.Graph.Message",
        "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
        "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
        "id": "{long_id_string}",
    },
}
DOC_LIFECYCLE_ITEM: dict[str, Any] = {  # change-notifications-lifecycle-events.md
    "subscriptionId": "<subscription_guid>",
    "subscriptionExpirationDateTime": "2019-03-20T11:00:00.0000000Z",
    "tenantId": "<tenant_guid>",
    "clientState": "<secretClientState>",
    "lifecycleEvent": "subscriptionRemoved or missed or reauthorizationRequired",
}


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def wstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("webhook-stack"), extra_settings=SETTINGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def wapi(wstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(wstack.endpoints, client_token(wstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def graph_caller(wstack: Stack) -> Iterator[httpx.Client]:
    """Anonymous, as Microsoft Graph calls the webhook."""
    with functions_client(wstack.endpoints) as client:
        yield client


@pytest.fixture(scope="module")
def svc(wstack: Stack) -> Iterator[None]:
    with service_env(wstack):
        yield


@pytest.fixture(scope="module")
def room(wstack: Stack) -> str:
    return str(wstack.emulator.seed["tenant"]["users"]["boardroom4a"]["mail"]).lower()


@pytest.fixture(scope="module")
def world(
    wstack: Stack, wapi: httpx.Client, graph_caller: httpx.Client, svc: None, room: str
) -> dict[str, str]:
    """A connected building with the room mapped and subscribed."""
    from shared import wiring

    building = new_building()
    connect_building_application(wstack, wapi, graph_caller, building)
    map_room(wapi, building, "room-1", room)
    # The sync worker (queue trigger) may be creating it already from the mapping's request.
    info = wait_until(lambda: active(wiring.subscription_deps(), building, room))
    assert info is not None, index_of({"building": building, "mailbox": room})
    return {"building": building, "mailbox": room}


@pytest.fixture
def log(wstack: Stack) -> HostLog:
    host_log = HostLog(wstack)
    host_log.mark()
    return host_log


def index_of(world: dict[str, str]) -> dict[str, Any]:
    """The mailbox's subscription index entity, read now."""
    from shared.storage import clients, tablestore
    from shared.subscriptions import store

    entity = tablestore.get_entity(
        clients.table(store.TABLE),
        store.index_partition(world["building"]),
        tablestore.escape_key(world["mailbox"]),
    )
    assert entity is not None
    return dict(entity)


def current_subscription(wstack: Stack, world: dict[str, str]) -> dict[str, Any]:
    """The emulator's copy of the subscription our index points at."""
    sub_id = index_of(world)["subscriptionId"]
    found = emulator_subscriptions(wstack).get(sub_id)
    assert found is not None, f"subscription {sub_id} is not in Graph"
    return found


def collection(*items: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(items)}).encode()


def documented_change(sub: dict[str, Any], **changes: Any) -> dict[str, Any]:
    item = copy.deepcopy(DOC_CHANGE_ITEM)
    item.update(subscriptionId=sub["id"], clientState=sub["clientState"], tenantId=sub["tenantId"])
    item.update(changes)
    return item


def documented_lifecycle(sub: dict[str, Any], event: str) -> dict[str, Any]:
    item = copy.deepcopy(DOC_LIFECYCLE_ITEM)
    item.update(
        subscriptionId=sub["id"], clientState=sub["clientState"], tenantId=sub["tenantId"],
        subscriptionExpirationDateTime=sub["expirationDateTime"], lifecycleEvent=event,
    )  # fmt: skip
    return item


def other_char(text: str) -> str:
    """`text` with its first character changed (one character off)."""
    return ("B" if text[0] == "A" else "A") + text[1:]


def post_json(client: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


def inbox_line(log: HostLog, having: str, *, timeout: float = 5.0) -> str:
    """The webhook's log line (one per POST) containing `having`."""
    lines = log.wait_for("graph notifications:", timeout=timeout, where=lambda x: having in x)
    assert len(lines) == 1, log.lines("graph notifications:")
    return lines[0]


def tables_snapshot() -> list[tuple[str, str, str]]:
    """Every entity of the subscriptions table, with its ETag (the only table the webhook path
    could write; the resources table changes with the sync worker's rounds meanwhile)."""
    from shared.storage import clients, tablestore

    return sorted(
        (e["PartitionKey"], e["RowKey"], str(e.metadata.get("etag")))
        for e in clients.table(tablestore.SUBSCRIPTIONS).query_entities("PartitionKey ne ''")
    )


# ---------------------------------------------------------------- handshake and creation


@pytest.mark.parametrize("path", ["graph/notifications", "graph/lifecycle"])
def test_documented_validation_request_is_echoed_decoded_as_text(
    graph_caller: httpx.Client, path: str
) -> None:
    response = graph_caller.post(
        f"{path}?{DOC_VALIDATION_QUERY}",
        content=b"",
        headers={"Content-Type": "text/plain; charset=utf-8", "Accept": "text/plain"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert response.text == DOC_VALIDATION_ECHO


def test_subscription_made_through_our_handshake_with_graphs_rules(
    wstack: Stack, world: dict[str, str]
) -> None:
    sub = current_subscription(wstack, world)
    base = wstack.functions_url
    assert sub["notificationUrl"] == f"{base}/graph/notifications"
    assert sub["lifecycleNotificationUrl"] == f"{base}/graph/lifecycle"
    assert sub["resource"] == f"/users/{world['mailbox']}/events"
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert len(sub["clientState"]) == 43
    # BB_SUBSCRIPTION_MINUTES is 10000 here: the 4230-minute cap applied (Graph would refuse more).
    expires = emulator_parse(sub["expirationDateTime"])
    now = emulator_now(wstack)
    assert now + timedelta(minutes=4200) < expires <= now + timedelta(minutes=4230)
    index = index_of(world)
    assert index["status"] == "active"
    assert index["expiresAt"] == expires


def test_ensure_is_idempotent_and_costs_no_graph_request(
    wstack: Stack, world: dict[str, str]
) -> None:
    from shared import wiring
    from shared.subscriptions import manage

    before = emulator_stats(wstack)["requests"]["byEndpoint"].get("POST /subscriptions")
    sub_id = index_of(world)["subscriptionId"]
    deps = wiring.subscription_deps()
    for _ in range(3):
        info = manage.ensure_subscription(deps, world["building"], world["mailbox"].upper())
        assert info is not None and info.subscription_id == sub_id
    assert emulator_stats(wstack)["requests"]["byEndpoint"].get("POST /subscriptions") == before
    mine = [s for s in emulator_subscriptions(wstack).values() if s["resource"].endswith(
        f"/{world['mailbox']}/events")]  # fmt: skip
    assert len(mine) == 1


# ---------------------------------------------------------------- change notifications


def test_an_outlook_change_is_queued_within_a_second(
    wstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    started = time.monotonic()
    created = wstack.emulator.control.post(
        f"users/{world['mailbox']}/events",
        json={
            "subject": "Walk-in meeting",
            "start": {"dateTime": "2031-03-03T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2031-03-03T11:00:00", "timeZone": "UTC"},
        },
    )
    assert created.status_code == 201, created.text
    # The deadline counts from before the change was made: notified and queued within a second.
    left = 1.0 - (time.monotonic() - started)
    line = inbox_line(log, f"1 sync requests ['{world['building']}']", timeout=max(left, 0.0))
    assert "dropped {}" in line
    time.sleep(0.3)  # let any follow-up notification of this change land before the next test


def test_documented_collection_of_several_items_is_one_sync_request(
    wstack: Stack, world: dict[str, str], graph_caller: httpx.Client, log: HostLog
) -> None:
    sub = current_subscription(wstack, world)
    body = collection(
        documented_change(sub),
        documented_change(sub, changeType="updated", id="second"),
        documented_change(sub, subscriptionId=str(uuid.uuid4())),  # not ours
    )
    response = post_json(graph_caller, "graph/notifications", body)
    assert response.status_code == 202
    line = inbox_line(log, "3 received")
    assert f"3 received, 2 accepted, 1 sync requests ['{world['building']}']" in line, line
    assert "'unknown_subscription': 1" in line


@pytest.mark.parametrize(
    ("case", "status", "dropped"),
    [
        ("bad_client_state", 202, "'bad_client_state': 1"),
        ("unknown_subscription", 202, "'unknown_subscription': 1"),
        ("other_tenant", 202, "'tenant_mismatch': 1"),
        ("malformed_json", 400, None),
        ("not_a_collection", 400, None),
        ("wrong_content_type", 415, None),
    ],
)
def test_bad_notifications_are_refused_or_dropped_without_side_effects(
    wstack: Stack,
    world: dict[str, str],
    graph_caller: httpx.Client,
    log: HostLog,
    case: str,
    status: int,
    dropped: str | None,
) -> None:
    sub = current_subscription(wstack, world)
    good = documented_change(sub)
    bodies = {
        "bad_client_state": collection({**good, "clientState": other_char(sub["clientState"])}),
        "unknown_subscription": collection({**good, "subscriptionId": str(uuid.uuid4())}),
        "other_tenant": collection({**good, "tenantId": str(uuid.uuid4())}),
        "malformed_json": b'{"value": [',
        "not_a_collection": b'{"value": "x"}',
        "wrong_content_type": collection(good),
    }
    content_type = "text/plain" if case == "wrong_content_type" else "application/json"
    before = tables_snapshot()
    response = graph_caller.post(
        "graph/notifications", content=bodies[case], headers={"Content-Type": content_type}
    )
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert "secret" not in response.text and sub["clientState"] not in response.text
        time.sleep(0.2)  # a window in which a wrongly accepted body would reach the log
        assert log.lines("graph notifications:") == []  # refused before anything was read
    else:
        assert dropped is not None
        line = inbox_line(log, dropped)
        assert "1 received, 0 accepted, 0 sync requests [], 0 lifecycle" in line, line
        assert sub["clientState"] not in line
    assert tables_snapshot() == before


def test_inbox_sends_one_message_per_dirty_mailbox_and_none_for_bad_items(
    wstack: Stack, world: dict[str, str]
) -> None:
    """The webhook's service with its real collaborators, but private queues on the stack's
    Azurite: exactly what it sends can be read back (no worker consumes these)."""
    from shared import wiring
    from shared.core.errors import DependencyError, ValidationFailed
    from shared.storage import clients
    from shared.subscriptions import store
    from shared.subscriptions.inbox import Inbox, LifecycleWork, RecordCache, receive
    from shared.sync.queue import SyncRequest

    suffix = uuid.uuid4().hex[:8]
    sync_q = clients.queue(f"test-sync-{suffix}")
    life_q = clients.queue(f"test-life-{suffix}")
    inbox = Inbox(
        RecordCache(lambda s: store.load_record(clients.table, s)),
        wiring.client_state_keys(),
        lambda rs: [sync_q.send_message(r.encode()) for r in rs],
        lambda w: life_q.send_message(w.encode()),
    )

    def drain(queue: Any) -> list[str]:
        found = [m.content for m in queue.receive_messages(max_messages=32)]
        return found

    sub = current_subscription(wstack, world)
    receive(
        inbox,
        collection(
            documented_change(sub), documented_change(sub, changeType="deleted"),
            documented_lifecycle(sub, "reauthorizationRequired"),
            documented_lifecycle(sub, "reauthorizationRequired"),
        ),
    )  # fmt: skip
    assert [SyncRequest.decode(m) for m in drain(sync_q)] == [
        SyncRequest(world["building"], world["mailbox"], "notified")
    ]
    assert [LifecycleWork.decode(m) for m in drain(life_q)] == [
        LifecycleWork(sub["id"], "reauthorizationRequired")
    ]
    forged = {**sub, "clientState": "x" * 43}
    result = receive(
        inbox, collection(documented_change(forged), documented_lifecycle(forged, "missed"))
    )
    assert result.accepted == 0
    with pytest.raises(ValidationFailed):
        receive(inbox, b"not json")
    # A forged flood of ids: the table is read a bounded number of times, then 503 (nothing sent,
    # even for the genuine item in the same POST; Graph would retry it).
    flood = [documented_change(sub, subscriptionId=str(uuid.uuid4())) for _ in range(201)]
    with pytest.raises(DependencyError) as refused:
        receive(inbox, collection(documented_change(sub), *flood))
    assert refused.value.status == 503
    assert drain(sync_q) == [] and drain(life_q) == []
    sync_q.delete_queue()
    life_q.delete_queue()


# ---------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
def test_documented_lifecycle_notifications_are_accepted(
    wstack: Stack, world: dict[str, str], graph_caller: httpx.Client, log: HostLog, event: str
) -> None:
    sub = current_subscription(wstack, world)
    response = post_json(
        graph_caller, "graph/lifecycle", collection(documented_lifecycle(sub, event))
    )
    assert response.status_code == 202
    if event == "missed":
        inbox_line(log, f"1 accepted, 1 sync requests ['{world['building']}'], 0 lifecycle")
        return
    inbox_line(log, "1 accepted, 0 sync requests [], 1 lifecycle")
    done = log.wait_for(f"lifecycle {event} of subscription {sub['id']}", timeout=10)
    expected = "reauthorized" if event == "reauthorizationRequired" else "recreated"
    assert done and done[0].endswith(expected), done
    assert index_of(world)["status"] == "active"
    current_subscription(wstack, world)  # the one the index names is live in Graph


def test_reauthorization_required_renews_the_subscription(
    wstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    sub = current_subscription(wstack, world)
    time.sleep(1.1)  # expiry has second precision: let "now + lifetime" move on
    sent = wstack.emulator.control.post(
        f"graph/subscriptions/{sub['id']}/lifecycle", json={"event": "reauthorizationRequired"}
    )
    assert sent.status_code == 202
    inbox_line(log, "1 lifecycle")
    renewed = wait_until(
        lambda: (
            emulator_parse(current_subscription(wstack, world)["expirationDateTime"])
            > emulator_parse(sub["expirationDateTime"])
        )
    )
    assert renewed, "the subscription was not renewed"
    assert index_of(world)["subscriptionId"] == sub["id"]
    assert log.wait_for("lifecycle reauthorizationRequired", where=lambda x: "reauthorized" in x)


def test_removed_subscription_is_recreated_and_resynced(
    wstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    old = current_subscription(wstack, world)
    removed = wstack.emulator.control.delete(
        f"graph/subscriptions/{old['id']}", params={"notify": "true"}
    )
    assert removed.status_code == 204
    new_id = wait_until(
        lambda: (
            (i := index_of(world))["status"] == "active"
            and i["subscriptionId"] != old["id"]
            and i["subscriptionId"]
        )
    )
    assert new_id, index_of(world)
    subs = emulator_subscriptions(wstack)
    assert new_id in subs and old["id"] not in subs
    assert subs[new_id]["clientState"] != old["clientState"]  # a new nonce per subscription
    assert log.wait_for("lifecycle subscriptionRemoved", where=lambda x: "recreated" in x)


# ---------------------------------------------------------------- renewal timer


def test_renewal_timer_extends_expiry_in_batches(
    wstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    before = current_subscription(wstack, world)
    batches = emulator_stats(wstack)["requests"]["byEndpoint"].get("POST /$batch", 0)
    time.sleep(1.1)  # expiry has second precision: let "now + lifetime" move on
    run_function(wstack, "subscriptions_renew")
    assert log.wait_for("subscription renewal:", timeout=10)
    after = current_subscription(wstack, world)
    assert after["id"] == before["id"]
    assert emulator_parse(after["expirationDateTime"]) > emulator_parse(
        before["expirationDateTime"]
    )
    assert index_of(world)["expiresAt"] == emulator_parse(after["expirationDateTime"])
    assert emulator_stats(wstack)["requests"]["byEndpoint"].get("POST /$batch", 0) > batches


def test_renewal_timer_recreates_a_subscription_graph_lost(
    wstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    old = current_subscription(wstack, world)
    lost = wstack.emulator.control.delete(
        f"graph/subscriptions/{old['id']}", params={"notify": "false"}
    )
    assert lost.status_code == 204
    run_function(wstack, "subscriptions_renew")
    lines = log.wait_for("subscription renewal:", timeout=10)
    assert lines and "'recreated': 1" in lines[0], lines
    index = index_of(world)
    assert index["status"] == "active" and index["subscriptionId"] != old["id"]
    assert index["subscriptionId"] in emulator_subscriptions(wstack)


# ---------------------------------------------------------------- delegated connections


def test_delegated_connection_subscribes_only_to_its_own_mailbox(
    wstack: Stack, wapi: httpx.Client, graph_caller: httpx.Client, svc: None
) -> None:
    """The admin's own calendar is watched (a delegated subscription, GRAPH.md §6.2); Olivia's
    calendar, shared with the admin, cannot be: ensure says None and the worker polls it."""
    from shared import wiring
    from shared.subscriptions import manage

    building = new_building("whd")
    admin = wstack.emulator.seed["tenant"]["users"]["admin"]
    connect_building_delegated(wstack, wapi, graph_caller, building, admin["userPrincipalName"])
    own = str(admin["mail"]).lower()
    olivia = str(wstack.emulator.seed["tenant"]["users"]["olivia"]["mail"]).lower()
    map_room(wapi, building, "desk-own", own)
    map_room(wapi, building, "desk-shared", olivia)
    deps = wiring.subscription_deps()
    info = wait_until(lambda: active(deps, building, own))
    assert info is not None, manage.subscription_for(deps, building, own)
    sub = emulator_subscriptions(wstack)[info.subscription_id]
    assert sub["resource"] == f"/users/{own}/events"
    assert manage.ensure_subscription(deps, building, olivia) is None
    assert manage.subscription_for(deps, building, olivia) is None
    assert manage.delete_all_for_building(deps, building) == 1
    assert info.subscription_id not in emulator_subscriptions(wstack)


# ---------------------------------------------------------------- release


def test_release_after_unmap_and_delete_all(
    wstack: Stack, wapi: httpx.Client, world: dict[str, str]
) -> None:
    from shared import wiring
    from shared.subscriptions import manage, store

    deps = wiring.subscription_deps()
    building, mailbox = world["building"], world["mailbox"]
    assert not manage.release_subscription(deps, building, mailbox)  # still mapped
    sub_id = index_of(world)["subscriptionId"]
    unmapped = wapi.delete(f"buildings/{building}/resources/room-1/mapping")
    assert unmapped.status_code == 204
    manage.release_subscription(deps, building, mailbox)  # the worker may have done it
    assert manage.subscription_for(deps, building, mailbox) is None
    assert sub_id not in emulator_subscriptions(wstack)
    assert store.load_record(deps.tables, sub_id) is None
    # Map again, then disconnect: delete_all_for_building removes it everywhere.
    map_room(wapi, building, "room-1", mailbox)
    info = wait_until(lambda: active(deps, building, mailbox))
    assert info is not None and info.subscription_id
    # The building stays connected and mapped: a sync round still queued by the mapping would
    # rightly make its subscription again after the delete. Let those rounds finish first.
    wait_sync_quiet(wstack, [building])
    assert manage.delete_all_for_building(deps, building) == 1
    assert info.subscription_id not in emulator_subscriptions(wstack)
    assert store.building_index(deps.tables, building) == []


def test_disconnect_deletes_the_buildings_subscriptions_in_graph(
    wstack: Stack, wapi: httpx.Client, graph_caller: httpx.Client, svc: None
) -> None:
    """DELETE connection (API.md: "subscriptions deleted") goes through the connect service's
    disconnect hook, while the connection's credentials still work."""
    from shared import wiring
    from shared.subscriptions import store

    # A room of its own: one calendar maps to one resource across buildings.
    room = str(wstack.emulator.seed["tenant"]["users"]["focus3c"]["mail"]).lower()
    deps = wiring.subscription_deps()
    building = new_building()
    connect_building_application(wstack, wapi, graph_caller, building)
    map_room(wapi, building, "room-d", room)
    info = wait_until(lambda: active(deps, building, room))
    assert info is not None and info.subscription_id in emulator_subscriptions(wstack)
    assert wapi.delete(f"buildings/{building}/connection").status_code == 204
    assert info.subscription_id not in emulator_subscriptions(wstack)
    # A sync round racing the disconnect may still be creating one: it deletes its own again
    # when Graph answers (tests/integration/test_subscriptions_service.py).
    left = wait_until(lambda: store.building_index(deps.tables, building) == [])
    assert left, store.building_index(deps.tables, building)


def test_renewal_keeps_a_subscription_alive_across_the_clock(
    wstack: Stack, world: dict[str, str]
) -> None:
    """In this process with the emulator's clock as ours (the host's clock cannot move): renewed
    when 225 minutes are left, the subscription outlives its original expiry."""
    from dataclasses import replace

    from shared import wiring
    from shared.subscriptions import renewal

    assert wait_until(
        lambda: active(wiring.subscription_deps(), **world)  # after the release test
    )
    sub = current_subscription(wstack, world)
    expires = emulator_parse(sub["expirationDateTime"])
    wstack.emulator.advance_clock((expires - emulator_now(wstack)).total_seconds() - 225 * 60)
    deps = replace(wiring.subscription_deps(), now=lambda: emulator_now(wstack))
    report = renewal.renew_due(deps)
    assert report.renewed >= 1 and report.failed == 0, (report, index_of(world).get("reason"))
    wstack.emulator.advance_clock(300 * 60)  # past the original expiry
    assert emulator_now(wstack) > expires
    assert sub["id"] in emulator_subscriptions(wstack)
    assert index_of(world)["subscriptionId"] == sub["id"]


def active(deps: Any, building: str, mailbox: str) -> Any:
    """ensure_subscription's answer once it is active (another caller may be creating it)."""
    from shared.subscriptions import manage

    info = manage.ensure_subscription(deps, building, mailbox)
    return info if info is not None and info.status == "active" else None


def emulator_parse(value: str) -> Any:
    from shared.core.times import parse_rfc3339

    return parse_rfc3339(value)


def test_forged_repeats_and_floods_of_unknown_ids_are_202_with_nothing_queued(
    wstack: Stack, world: dict[str, str], graph_caller: httpx.Client, log: HostLog
) -> None:
    """Issue 21: a small forged body repeating one unknown id 201 times was a 503, which would
    make Graph back off from our real endpoint. Distinct ids count, unknown ids are remembered
    briefly, and a POST that names no known subscription is forged traffic: 202, nothing sent."""
    from shared import wiring
    from shared.storage import clients
    from shared.subscriptions import store
    from shared.subscriptions.inbox import MAX_RECORD_READS, Inbox, RecordCache, receive

    sub = current_subscription(wstack, world)
    unknown = documented_change(sub, subscriptionId=str(uuid.uuid4()))
    response = post_json(graph_caller, "graph/notifications", collection(*[unknown] * 201))
    assert response.status_code == 202, response.text
    line = inbox_line(log, "201 received")
    assert "0 accepted, 0 sync requests [], 0 lifecycle" in line, line
    assert "'unknown_subscription': 201" in line, line
    # In process, with private queues and a counting loader: what is read and what is sent.
    suffix = uuid.uuid4().hex[:8]
    sync_q, life_q = clients.queue(f"test-sync-{suffix}"), clients.queue(f"test-life-{suffix}")
    reads: list[str] = []

    def load(sub_id: str) -> Any:
        reads.append(sub_id)
        return store.load_record(clients.table, sub_id)

    inbox = Inbox(
        RecordCache(load), wiring.client_state_keys(),
        lambda rs: [sync_q.send_message(r.encode()) for r in rs],
        lambda w: life_q.send_message(w.encode()),
    )  # fmt: skip
    result = receive(inbox, collection(*[unknown] * 201))
    assert result.accepted == 0 and result.sync_requests == 0 and len(reads) == 1
    receive(inbox, collection(*[unknown] * 201))  # remembered: no read at all
    assert len(reads) == 1
    flood = [documented_change(sub, subscriptionId=str(uuid.uuid4())) for _ in range(300)]
    result = receive(inbox, collection(*flood))  # no known id: forged, 202
    assert result.accepted == 0 and result.dropped == {"unknown_subscription": 300}
    assert len(reads) == 1 + MAX_RECORD_READS  # bounded
    # The genuine item still gets through in its own POST, straight after the flood.
    result = receive(inbox, collection(documented_change(sub)))
    assert result.accepted == 1 and result.sync_requests == 1
    from shared.sync.queue import SyncRequest

    sent = [SyncRequest.decode(m.content) for m in sync_q.receive_messages(max_messages=32)]
    assert sent == [SyncRequest(world["building"], world["mailbox"], "notified")]
    assert list(life_q.receive_messages(max_messages=32)) == []
    sync_q.delete_queue()
    life_q.delete_queue()
