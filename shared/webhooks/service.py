"""Outgoing webhooks' service: endpoints (create, read, change, delete, rotate the secret),
deliveries (list, redeliver, ping), and `emit` for the producers of events.

- create: the URL checked (422 `unsafe_url`, shared/webhooks/ssrf.py), a fresh `whsec_` secret
  written to Key Vault, the endpoint stored with the secret's *name and version*; the secret is in
  the 201 response and nowhere else, ever again.
- rotate: a new version of the secret; the previous one keeps signing (both signatures in
  `webhook-signature`) until `previousSecretValidUntil` (`graceSeconds`, default
  BB_WEBHOOK_SECRET_GRACE_SECONDS).
- emit: for each enabled endpoint of the building that wants the type, a delivery row with its
  event marker (one transaction: the same event id twice makes one delivery) and a queue message.
  Nothing is sent here: the queue worker (shared/webhooks/delivery.py) sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.core.errors import Conflict, NotFound
from shared.core.paging import Listed, top_of
from shared.core.validate import Checker, check_building, check_path
from shared.webhooks import signing
from shared.webhooks.delivery import DeliveryMessage
from shared.webhooks.deps import WebhookDeps
from shared.webhooks.model import (
    DELIVERIES_DEFAULT,
    DELIVERIES_MAX,
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    Delivery,
    Endpoint,
    Event,
    delivery_view,
    endpoint_view,
    parse_endpoint,
)
from shared.webhooks.ssrf import check_url
from shared.webhooks.store import (
    DeliveryExists,
    new_delivery_id,
    new_webhook_id,
    secret_name,
)

logger = logging.getLogger(__name__)
MAX_WEBHOOKS_PER_BUILDING = 20


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _checked(deps: WebhookDeps, url: str) -> None:
    check_url(url, allow_loopback=deps.config.allow_loopback, resolve=deps.resolve)


def create_webhook(deps: WebhookDeps, building: str, body: Mapping[str, Any]) -> dict[str, Any]:
    check_building(building)
    fields = parse_endpoint(body, partial=False)
    _checked(deps, fields["url"])
    if len(deps.store.endpoints(building)) >= MAX_WEBHOOKS_PER_BUILDING:
        raise Conflict(
            f"A building has at most {MAX_WEBHOOKS_PER_BUILDING} webhooks", reason="too_many"
        )
    now = deps.clock()
    webhook_id = new_webhook_id()
    name = secret_name(building, webhook_id)
    secret = signing.new_secret()
    version = deps.secrets.write(name, secret)
    endpoint = Endpoint(
        building_id=building,
        id=webhook_id,
        secret_name=name,
        secret_version=version,
        previous_version=None,
        previous_until=None,
        created_at=now,
        updated_at=now,
        **fields,
    )
    deps.store.put_endpoint(endpoint)
    logger.info("webhook %s of %s created", webhook_id, building)
    return {**endpoint_view(endpoint), "secret": secret}


def unhealthy(deps: WebhookDeps, building: str) -> list[dict[str, Any]]:
    """The building's webhooks that are failing or disabled (sync health shows them)."""
    keep = ("id", "url", "status", "failingSince", "lastFailureAt", "disabledReason")
    return [
        {k: view[k] for k in keep}
        for view in (endpoint_view(e) for e in deps.store.endpoints(building))
        if view["status"] != "active"
    ]


def list_webhooks(deps: WebhookDeps, building: str) -> Listed[dict[str, Any]]:
    """Every webhook of the building (at most 20: one page, no paging)."""
    check_building(building)
    return Listed([endpoint_view(e) for e in deps.store.endpoints(building)])


def _endpoint(deps: WebhookDeps, building: str, webhook_id: str) -> Endpoint:
    check_path(building=building, webhookId=webhook_id)
    return deps.store.require_endpoint(building, webhook_id)


def get_webhook(deps: WebhookDeps, building: str, webhook_id: str) -> dict[str, Any]:
    return endpoint_view(_endpoint(deps, building, webhook_id))


def update_webhook(
    deps: WebhookDeps, building: str, webhook_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    endpoint = _endpoint(deps, building, webhook_id)
    fields = parse_endpoint(body, partial=True)
    if "url" in fields:
        _checked(deps, fields["url"])
    updated = replace(endpoint, updated_at=deps.clock(), **fields)
    if fields.get("enabled") and not endpoint.enabled:
        # Re-enabled by an admin: its failure history starts again.
        updated = replace(updated, failing_since=None, disabled_reason=None)
    deps.store.put_endpoint(updated)
    return endpoint_view(updated)


def delete_webhook(deps: WebhookDeps, building: str, webhook_id: str) -> None:
    endpoint = _endpoint(deps, building, webhook_id)
    deps.store.delete_endpoint(building, webhook_id)
    deps.secrets.delete(endpoint.secret_name)  # a missing secret is not an error (SecretStore)


def rotate_secret(
    deps: WebhookDeps, building: str, webhook_id: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    endpoint = _endpoint(deps, building, webhook_id)
    check = Checker(body)
    check.only(("graceSeconds",))
    grace = check.integer("graceSeconds", minimum=0, maximum=7 * 86400)
    check.done()
    grace = deps.config.secret_grace_s if grace is None else grace
    now = deps.clock()
    secret = signing.new_secret()
    version = deps.secrets.write(endpoint.secret_name, secret)
    until = now + timedelta(seconds=grace)
    updated = replace(
        endpoint,
        secret_version=version,
        previous_version=endpoint.secret_version if grace else None,
        previous_until=until if grace else None,
        updated_at=now,
    )
    deps.store.put_endpoint(updated)
    logger.info("webhook %s of %s: secret rotated (grace %s s)", webhook_id, building, grace)
    return {**endpoint_view(updated), "secret": secret}


# ---------------------------------------------------------------- deliveries


def _payload(event_type: str, event_time: datetime, data: Mapping[str, Any]) -> str:
    body = json.dumps(
        {"type": event_type, "timestamp": _iso(event_time), "data": dict(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )
    if len(body.encode()) > MAX_EVENT_BYTES:
        raise ValueError(f"event {event_type} is over {MAX_EVENT_BYTES} bytes")
    return body


def _deliver_to(
    deps: WebhookDeps,
    endpoint: Endpoint,
    event_id: str,
    event_type: str,
    payload: str,
    now: datetime,
    commit: Mapping[str, Any] | None = None,
) -> Delivery | None:
    delivery = Delivery(
        building_id=endpoint.building_id,
        webhook_id=endpoint.id,
        id=new_delivery_id(now),
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        status="pending",
        created_at=now,
        commit=commit,
    )
    try:
        deps.store.add_delivery(delivery)
    except DeliveryExists:
        return None  # this event was handed over before: its delivery exists (and its message)
    deps.enqueue(DeliveryMessage(endpoint.building_id, endpoint.id, delivery.id).encode(), 0)
    return delivery


def emit(
    deps: WebhookDeps,
    building: str,
    event_type: str,
    data: Mapping[str, Any],
    event_id: str,
    *,
    at: datetime | None = None,
) -> int:
    """Hand an event to every enabled endpoint of `building` that wants it; how many took it.

    `event_id` must be stable for the change it reports (derived from it, not random): a
    producer that runs again after a crash emits the same id, and the marker rows make that a
    no-op. Raises storage errors: a producer that must not lose the event lets them propagate so
    that its own retry runs again.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type}")
    now = deps.clock()
    wanting = [e for e in deps.store.endpoints(building) if e.enabled and e.wants(event_type)]
    if not wanting:
        return 0
    payload = _payload(event_type, at or now, {"building": building, **data})
    made = 0
    for endpoint in wanting:
        if _deliver_to(deps, endpoint, event_id, event_type, payload, now) is not None:
            made += 1
    return made


def emit_events(deps: WebhookDeps, building: str, events: list[Event]) -> int:
    """Hand events over *before* the change they report is committed (DESIGN.md "Outgoing
    webhooks": crash-safe hand-over); deliveries made. The endpoints are read once."""
    if not events:
        return 0
    now = deps.clock()
    endpoints = [e for e in deps.store.endpoints(building) if e.enabled]
    made = 0
    for event in events:
        if event.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event.type}")
        wanting = [e for e in endpoints if e.wants(event.type)]
        if not wanting:
            continue
        payload = _payload(event.type, now, {"building": building, **event.data})
        for endpoint in wanting:
            if _deliver_to(deps, endpoint, event.id, event.type, payload, now, event.commit):
                made += 1
    return made


def ping(deps: WebhookDeps, building: str, webhook_id: str) -> dict[str, Any]:
    """A `webhook.ping` event to this endpoint only (through the queue, like every event)."""
    endpoint = _endpoint(deps, building, webhook_id)
    now = deps.clock()
    event_id = "msg_ping_" + new_delivery_id(now)
    payload = _payload("webhook.ping", now, {"building": building, "webhookId": webhook_id})
    delivery = _deliver_to(deps, endpoint, event_id, "webhook.ping", payload, now)
    assert delivery is not None  # a fresh id has no marker
    return delivery_view(delivery)


def list_deliveries(
    deps: WebhookDeps, building: str, webhook_id: str, params: Mapping[str, str]
) -> Listed[dict[str, Any]]:
    """One page of the endpoint's deliveries, newest first (`limit`: the older name of `top`)."""
    _endpoint(deps, building, webhook_id)
    top = top_of(params, default=DELIVERIES_DEFAULT, maximum=DELIVERIES_MAX, alias="limit")
    found, token = deps.store.deliveries(building, webhook_id, top, params.get("continuationToken"))
    return Listed([delivery_view(d) for d in found], token)


def get_delivery(
    deps: WebhookDeps, building: str, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    _endpoint(deps, building, webhook_id)
    check_path(deliveryId=delivery_id)
    delivery = deps.store.get_delivery(building, webhook_id, delivery_id)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} not found", reason="delivery_not_found")
    return delivery_view(delivery)


def redeliver(
    deps: WebhookDeps, building: str, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    """Send a delivery again (whatever its status), same body and `webhook-id`."""
    endpoint = _endpoint(deps, building, webhook_id)
    check_path(deliveryId=delivery_id)
    delivery = deps.store.get_delivery(building, webhook_id, delivery_id)
    if delivery is None:
        raise NotFound(f"Delivery {delivery_id} not found")
    pending = replace(delivery, status="pending", next_attempt_at=deps.clock())
    deps.store.put_delivery(pending)
    deps.enqueue(DeliveryMessage(building, endpoint.id, delivery.id).encode(), 0)
    return delivery_view(pending)
