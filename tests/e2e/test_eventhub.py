"""Graph notifications through Azure Event Hubs (issue 17), on the whole local stack.

The stack runs with `BB_NOTIFICATION_DELIVERY=eventhub`: a building is connected in application
mode and the demo's room `boardroom4a` mapped through our routes, as in test_webhook.py, and the
subscription the sync worker creates names Graph's `EventHub:` URL for both notifications and
lifecycle events. No Event Hubs runs here, so the Graph emulator records what it would have put
on the hub (GET /_emulator/graph/eventhub) and the tests hand those bodies, or documented ones,
to our trigger as the azure-functions library's own `EventHubEvent` objects: in this process
(`graph_eventhub_notifications(events)`, cardinality many, with the stack's settings and queues)
and through the local host's admin API (the trigger as the host indexed it). What follows (sync
requests, lifecycle work done by the host's workers) is the webhook's path, read from the inbox's
log line and from Graph.

Payloads marked "documented" are test_webhook.py's, from Microsoft's docs (change notification
and lifecycle notification examples, placeholders filled in).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest

from devstack.stack import Stack, start_stack
from functions.graph_eventhub import graph_eventhub_notifications
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    HostLog,
    connect_building_application,
    emulator_subscriptions,
    map_room,
    new_building,
    run_function,
    service_env,
    wait_until,
)
from tests.e2e.test_webhook import (
    SETTINGS,
    active,
    collection,
    documented_change,
    documented_lifecycle,
    other_char,
)

pytestmark = pytest.mark.timeout(120)

SECRET_URL = "https://kv-bookingbridge.vault.azure.net/secrets/graph-eventhub-send"
TENANT = "contoso.onmicrosoft.com"
HUB_URL = f"EventHub:{SECRET_URL}?tenantId={TENANT}"
EVENTHUB_SETTINGS = {
    **SETTINGS,
    "BB_NOTIFICATION_DELIVERY": "eventhub",
    "BB_EVENTHUB_SECRET_URL": SECRET_URL,
    "BB_EVENTHUB_TENANT": TENANT,
}
INBOX_LOGGER = "shared.subscriptions.inbox"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def hstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("eventhub-stack"), extra_settings=EVENTHUB_SETTINGS
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def hapi(hstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(hstack.endpoints, client_token(hstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(hstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(hstack.endpoints) as client:
        yield client


@pytest.fixture(scope="module")
def svc(hstack: Stack) -> Iterator[None]:
    with service_env(hstack):
        yield


@pytest.fixture(scope="module")
def world(hstack: Stack, hapi: httpx.Client, anonymous: httpx.Client, svc: None) -> dict[str, str]:
    """A connected building with the room mapped and subscribed through Event Hubs."""
    from shared import wiring

    room = str(hstack.emulator.seed["tenant"]["users"]["boardroom4a"]["mail"]).lower()
    building = new_building()
    connect_building_application(hstack, hapi, anonymous, building)
    map_room(hapi, building, "room-1", room)
    info = wait_until(lambda: active(wiring.subscription_deps(), building, room))
    assert info is not None
    return {"building": building, "mailbox": room}


@pytest.fixture
def log(hstack: Stack) -> HostLog:
    host_log = HostLog(hstack)
    host_log.mark()
    return host_log


def subscription(hstack: Stack, world: dict[str, str]) -> dict[str, Any]:
    """The emulator's copy of the subscription our index names."""
    from tests.e2e.test_webhook import index_of

    sub_id = index_of(world)["subscriptionId"]
    found = emulator_subscriptions(hstack).get(sub_id)
    assert found is not None, f"subscription {sub_id} is not in Graph"
    return found


def hub_events(hstack: Stack) -> list[dict[str, Any]]:
    """What Graph put on our hub so far (each a collection), oldest first."""
    listing = hstack.emulator.control.get("graph/eventhub").json()["value"]
    return next((h["events"] for h in listing if h["notificationUrl"] == HUB_URL), [])


def deliver(caplog: pytest.LogCaptureFixture, *bodies: bytes | str | dict[str, Any]) -> list[str]:
    """Our trigger, with one EventHubEvent per body (one batch); the inbox's log lines."""
    events = [
        func.EventHubEvent(
            body=b
            if isinstance(b, bytes)
            else (b if isinstance(b, str) else json.dumps(b)).encode(),
            sequence_number=n,
            partition_key=None,
        )
        for n, b in enumerate(bodies)
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=INBOX_LOGGER):
        graph_eventhub_notifications(events)
    return [r.getMessage() for r in caplog.records if r.name == INBOX_LOGGER]


# ---------------------------------------------------------------- subscription shape


def test_subscriptions_name_the_event_hub_for_changes_and_lifecycle_and_keep_client_state(
    hstack: Stack, world: dict[str, str]
) -> None:
    sub = subscription(hstack, world)
    assert sub["notificationUrl"] == HUB_URL
    assert sub["lifecycleNotificationUrl"] == HUB_URL
    assert len(sub["clientState"]) == 43  # ours, derived from the Key Vault key
    # Graph's reachability test landed on the hub, not on our webhook.
    assert {i["subscriptionId"] for e in hub_events(hstack) for i in e["value"]} >= {"NA"}


# ---------------------------------------------------------------- changes


def test_an_outlook_change_relayed_from_the_hub_through_the_host_is_one_sync_request(
    hstack: Stack, world: dict[str, str], log: HostLog
) -> None:
    sub = subscription(hstack, world)
    before = len(hub_events(hstack))
    created = hstack.emulator.control.post(
        f"users/{world['mailbox']}/events",
        json={
            "subject": "Walk-in meeting",
            "start": {"dateTime": "2031-04-03T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2031-04-03T11:00:00", "timeZone": "UTC"},
        },
    )
    assert created.status_code == 201, created.text
    new = wait_until(
        lambda: [
            e
            for e in hub_events(hstack)[before:]
            if any(i.get("subscriptionId") == sub["id"] for i in e["value"])
        ]
    )
    assert new, hub_events(hstack)
    # As the Functions host would: the event body, as is, to the indexed trigger.
    run_function(hstack, "graph_eventhub_notifications", json.dumps(new[0]))
    lines = log.wait_for("graph notifications:", where=lambda x: "via eventhub" in x)
    assert len(lines) == 1, lines
    assert f"1 sync requests ['{world['building']}']" in lines[0], lines[0]
    assert "dropped {}" in lines[0]


def test_a_batch_is_coalesced_and_its_bad_events_are_dropped_without_failing_it(
    hstack: Stack, world: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscription(hstack, world)
    forged = documented_change(sub, clientState=other_char(sub["clientState"]))
    lines = deliver(
        caplog,
        collection(documented_change(sub)),
        collection(documented_change(sub, changeType="updated", id="second")),
        collection(forged),  # a forged clientState
        collection(documented_change(sub, subscriptionId=str(uuid.uuid4()))),  # not ours
        b"\xff not json",  # garbage
        {"value": "not a list"},  # JSON, but not a collection
        b"",  # empty
        hub_events(hstack)[0],  # Graph's validation event: ignored, not counted
    )
    assert len(lines) == 1, lines
    line = lines[0]
    # 4 items and 3 bad events received (each bad event counts once); 2 items accepted.
    assert f"7 received, 2 accepted, 1 sync requests ['{world['building']}']" in line, line
    for dropped in ("'bad_client_state': 1", "'unknown_subscription': 1", "'malformed_event': 3"):
        assert dropped in line, line
    assert sub["clientState"] not in caplog.text  # no clientState in any log line
    assert "via eventhub" in line


def test_a_batch_of_only_garbage_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    lines = deliver(caplog, b"{", b"[]", "null")
    assert len(lines) == 1 and "'malformed_event': 3" in lines[0], lines


# ---------------------------------------------------------------- lifecycle


def test_documented_missed_is_a_sync_request(
    hstack: Stack, world: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sub = subscription(hstack, world)
    lines = deliver(caplog, collection(documented_lifecycle(sub, "missed")))
    assert f"1 accepted, 1 sync requests ['{world['building']}'], 0 lifecycle" in lines[0]


def test_documented_reauthorization_required_renews_the_subscription(
    hstack: Stack, world: dict[str, str], caplog: pytest.LogCaptureFixture, log: HostLog
) -> None:
    sub = subscription(hstack, world)
    lines = deliver(caplog, collection(documented_lifecycle(sub, "reauthorizationRequired")))
    assert "1 accepted, 0 sync requests [], 1 lifecycle" in lines[0], lines
    # The host's lifecycle worker does the work, as for the webhook.
    done = log.wait_for(
        f"lifecycle reauthorizationRequired of subscription {sub['id']}", timeout=10
    )
    assert done and done[0].endswith("reauthorized"), done


def test_documented_subscription_removed_is_recreated_with_the_event_hub_again(
    hstack: Stack, world: dict[str, str], caplog: pytest.LogCaptureFixture, log: HostLog
) -> None:
    old = subscription(hstack, world)
    # Graph removed it and says so on the hub.
    removed = hstack.emulator.control.delete(
        f"graph/subscriptions/{old['id']}", params={"notify": "false"}
    )
    assert removed.status_code == 204
    lines = deliver(caplog, collection(documented_lifecycle(old, "subscriptionRemoved")))
    assert "1 accepted, 0 sync requests [], 1 lifecycle" in lines[0], lines
    done = log.wait_for(f"lifecycle subscriptionRemoved of subscription {old['id']}", timeout=10)
    assert done and done[0].endswith("recreated"), done
    new = subscription(hstack, world)
    assert new["id"] != old["id"] and new["clientState"] != old["clientState"]
    assert new["notificationUrl"] == HUB_URL and new["lifecycleNotificationUrl"] == HUB_URL
