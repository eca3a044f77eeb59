"""Outgoing webhooks' domain: event types, endpoints, deliveries, and their wire shapes.

An event on the wire (the request body, Standard Webhooks' recommended envelope):

    {"type": "outlook_booking.created", "timestamp": "2026-12-04T19:30:00Z", "data": {...}}

`data` always names `building`; each type's fields are in EVENT_TYPES (and in OpenAPI,
shared/api/apispec/webhooks.py). The `webhook-id` header is the event's id: the same on every
attempt and redelivery, so receivers de-duplicate on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.core.validate import Checker

# type -> (what it says, whether something emits it today)
EVENT_TYPES: dict[str, tuple[str, bool]] = {
    "outlook_booking.created": ("a booking made in Outlook reached the platform", True),
    "outlook_booking.updated": ("an Outlook booking moved or changed", True),
    "outlook_booking.cancelled": ("an Outlook booking was cancelled or deleted", True),
    "booking.synced": ("a platform booking was written to its Outlook calendar", True),
    "booking.failed": ("a platform booking could not be written to Outlook, for good", True),
    "booking.released": ("a booking nobody checked in to was released after its grace period "
                         "(a platform booking cancelled, an Outlook booking declined as the "
                         "room; bookingId is the booking's id in this API, o-... for Outlook)",
                         True),
    "mapping.status_changed": ("a resource's sync status changed", True),
    "connection.reauth_required": ("the building's Microsoft 365 connection needs an admin to "
                                   "sign in again", True),
    "connection.restored": ("the connection works again", True),
    "check.completed": ("a go-live check finished", True),
    "webhook.ping": ("sent by POST .../webhooks/{id}:ping, to this endpoint only", True),
}  # fmt: skip
ALL = "*"
MAX_EVENT_BYTES = 32 * 1024  # a queue message is at most 64 KiB (base64): events stay small
DELIVERIES_DEFAULT = 50  # deliveries per page of GET .../deliveries
DELIVERIES_MAX = 200
MAX_ATTEMPTS_KEPT = 30
STATUSES = ("active", "failing", "disabled")
DELIVERY_STATUSES = ("pending", "delivered", "failed", "discarded")
COMMIT_WAIT_S = 60  # how long a delivery waits for the change it reports to be committed


@dataclass(frozen=True)
class Event:
    """An event as a producer hands it over, before the change it reports is committed.

    `id` is derived from the change (stable: a producer re-run after a crash makes the same one).
    `commit` says how to see that the change was committed (shared/wiring.py `_committed`):
    `{"kind": "entity", "table", "pk", "rk", "expect": {field: value, {"min": n} or
    {"since": RFC 3339 time}}}` or
    `{"kind": "busy_block", "building", "resource", "block"}` + `"exists": true` (created),
    `"start", "end"` (updated: that version is stored) or neither (cancelled: no version left). The delivery worker sends nothing until it holds; after COMMIT_WAIT_S it is discarded.
    """

    type: str
    id: str
    data: Mapping[str, Any]
    commit: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    building_id: str
    id: str
    url: str
    events: tuple[str, ...]
    enabled: bool
    description: str
    secret_name: str  # the Key Vault secret (never the secret)
    secret_version: str
    previous_version: str | None
    previous_until: datetime | None
    created_at: datetime
    updated_at: datetime
    failing_since: datetime | None = None
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    disabled_reason: str | None = None

    @property
    def status(self) -> str:
        if not self.enabled:
            return "disabled"
        return "failing" if self.failing_since else "active"

    def wants(self, event_type: str) -> bool:
        if event_type == "webhook.ping":
            return False  # only the ping route sends it, to one endpoint
        return ALL in self.events or event_type in self.events


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None  # timeout, connection_error, unsafe_url, redirect_refused, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "statusCode": self.status_code,
            "latencyMs": self.latency_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class Delivery:
    building_id: str
    webhook_id: str
    id: str
    event_id: str
    event_type: str
    payload: str  # the exact body sent
    status: str
    created_at: datetime
    attempts: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    next_attempt_at: datetime | None = None
    commit: Mapping[str, Any] | None = None  # Event.commit, until seen to hold


def parse_endpoint(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The writable fields of a webhook from a POST (all) or PATCH (`partial`) body, or 400."""
    check = Checker(body)
    check.only(
        ("url", "events", "enabled", "description"),
        read_only=("id", "status", "createdAt", "updatedAt", "failingSince", "lastSuccessAt",
                   "lastFailureAt", "disabledReason", "previousSecretValidUntil"),
    )  # fmt: skip
    out: dict[str, Any] = {}
    if "url" in body or not partial:
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            check.add("url", "is required: an https URL")
        else:
            out["url"] = url.strip()
    if "events" in body or not partial:
        events = body.get("events", [ALL])
        if (
            not isinstance(events, list)
            or not events
            or len(events) > len(EVENT_TYPES)
            or not all(isinstance(e, str) and (e == ALL or e in EVENT_TYPES) for e in events)
        ):
            check.add("events", "must be a non-empty list of event types or [\"*\"]: "
                      + ", ".join(EVENT_TYPES))  # fmt: skip
        else:
            out["events"] = tuple(dict.fromkeys(events))
    if "enabled" in body or not partial:
        out["enabled"] = check.boolean("enabled", True)
    if "description" in body or not partial:
        out["description"] = check.name("description", required=False)
    check.done()
    return out


def _time(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "status": endpoint.status,
        "createdAt": _time(endpoint.created_at),
        "updatedAt": _time(endpoint.updated_at),
        "failingSince": _time(endpoint.failing_since),
        "lastSuccessAt": _time(endpoint.last_success_at),
        "lastFailureAt": _time(endpoint.last_failure_at),
        "disabledReason": endpoint.disabled_reason,
        "previousSecretValidUntil": _time(endpoint.previous_until),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhookId": delivery.webhook_id,
        "eventId": delivery.event_id,
        "type": delivery.event_type,
        "status": delivery.status,
        "createdAt": _time(delivery.created_at),
        "nextAttemptAt": _time(delivery.next_attempt_at),
        "attempts": list(delivery.attempts),
    }
