"""The Graph emulator's Event Hubs delivery (issue 17), as Graph's docs describe it
(microsoftgraph/microsoft-graph-docs-contrib, concepts/change-notifications-delivery-event-hubs.md):
`EventHub:https://<vault>.vault.azure.net/secrets/<secret>?tenantId=<tenant>` is accepted as
`notificationUrl` and `lifecycleNotificationUrl` without a validation request; malformed forms are
400 `InvalidRequest`; what Graph would put on the hub (a "validation" event, then each collection
it would have POSTed) is recorded and readable through the control API.

Real HTTPS against the emulator process, unmodified httpx, fresh tenant per test.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.integration.graph_fixtures import (
    Sink,
    Tenant,
    day,
    emu_now,
    event_body,
    graph_emu,
    sink,
    subscribe,
    tenant,
)
from tests.waiting import wait_for

__all__ = ["graph_emu", "sink", "tenant"]  # fixtures used by name below


def hub_url(secret: str | None = None, tenant: str = "contoso.onmicrosoft.com") -> str:
    name = secret or f"graph-hub-{uuid.uuid4().hex[:8]}"
    return f"EventHub:https://kv-bookingbridge.vault.azure.net/secrets/{name}?tenantId={tenant}"


def events_for(tenant: Tenant, url: str) -> list[dict[str, Any]]:
    listing = tenant.emu.control.get("graph/eventhub").json()["value"]
    return next((h["events"] for h in listing if h["notificationUrl"] == url), [])


def test_event_hub_urls_are_accepted_without_a_validation_request_and_deliveries_recorded(
    tenant: Tenant, sink: Sink
) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    url = hub_url(tenant=tenant.id)
    r = subscribe(
        app, f"/users/{tenant.uid('alice')}/events", sink, now=emu_now(tenant.emu),
        notificationUrl=url, lifecycleNotificationUrl=url,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["notificationUrl"] == url and sub["lifecycleNotificationUrl"] == url
    assert sink.validations == 0  # nothing was POSTed anywhere
    # The hub got Graph's reachability test first, every field "NA" (receivers ignore it): one
    # per URL, where a webhook gets one handshake per URL.
    first = events_for(tenant, url)
    assert [i["subscriptionId"] for e in first for i in e["value"]] == ["NA", "NA"]
    assert first[0]["value"][0]["changeType"].startswith("Validation:")
    tenant.emu.control.post(f"graph/users/{tenant.upn('alice')}/events", json=event_body(day(2)))
    changes = wait_for(
        lambda: [
            i
            for e in events_for(tenant, url)
            for i in e["value"]
            if i.get("changeType") == "created"
        ]
    )
    assert changes, events_for(tenant, url)
    item = changes[0]
    assert item["subscriptionId"] == sub["id"] and item["clientState"] == "s3cret-state"
    assert item["tenantId"] == tenant.id
    # Lifecycle events go to the same hub, in the same {"value": [...]} shape.
    posted = tenant.emu.control.post(
        f"graph/subscriptions/{sub['id']}/lifecycle", json={"event": "reauthorizationRequired"}
    )
    assert posted.status_code == 202
    assert wait_for(
        lambda: [
            i
            for e in events_for(tenant, url)
            for i in e["value"]
            if i.get("lifecycleEvent") == "reauthorizationRequired"
        ]
    )
    assert sink.received == []  # the webhook sink never heard of it
    # A renewing PATCH may name the same URL again: nothing to validate either.
    later = (emu_now(tenant.emu) + dt.timedelta(minutes=120)).strftime("%Y-%m-%dT%H:%M:%SZ")
    r = app.patch(f"/subscriptions/{sub['id']}", json={"expirationDateTime": later})
    assert r.status_code == 200 and r.json()["notificationUrl"] == url


@pytest.mark.parametrize(
    "url",
    [
        "EventHub:",
        "EventHub:http://kv-bookingbridge.vault.azure.net/secrets/hub?tenantId=contoso.com",
        "EventHub:https://kv-bookingbridge.vault.azure.net/secrets/hub",  # no tenantId
        "EventHub:https://kv-bookingbridge.vault.azure.net/secrets/hub?tenantId=",
        "EventHub:https://kv-bookingbridge.vault.azure.net/keys/hub?tenantId=contoso.com",
        "EventHub:https://kv-bookingbridge.vault.azure.net/secrets/?tenantId=contoso.com",
        "EventHub:https://example.com/secrets/hub?tenantId=contoso.com",  # not a vault
        "EventHub:https://kv-bookingbridge.vault.azure.net:8443/secrets/hub?tenantId=contoso.com",
        "EventHub:https://kv-bookingbridge.vault.azure.net/secrets/hub_1?tenantId=contoso.com",
    ],
)
def test_malformed_event_hub_urls_are_refused_as_graph_refuses_them(
    tenant: Tenant, sink: Sink, url: str
) -> None:
    app = tenant.as_app(["Calendars.ReadWrite"])
    resource = f"/users/{tenant.uid('alice')}/events"
    for field in ("notificationUrl", "lifecycleNotificationUrl"):
        r = subscribe(app, resource, sink, now=emu_now(tenant.emu), **{field: url})
        assert r.status_code == 400, (field, r.text)
        error = r.json()["error"]
        assert error["code"] == "InvalidRequest" and field in error["message"], error
    assert app.get("/subscriptions").json()["value"] == []
