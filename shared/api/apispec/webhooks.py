"""OpenAPI operations of outgoing webhooks (issue 16): endpoints, secret rotation, ping,
deliveries and redelivery; the events' payload schemas (`WebhookEvent` and one per type)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import NULLABLE_STRING as _NULLABLE_STRING
from shared.api.openapi import NULLABLE_TIME as _NULLABLE_TIME
from shared.api.openapi import PROBLEM, Link, Operation, Reasons
from shared.api.openapi import TIME_SCHEMA as _TIME
from shared.api.openapi import json_body as _json_body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import paging_parameters as _paging
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.webhooks.model import ALL, DELIVERIES_DEFAULT, DELIVERIES_MAX, EVENT_TYPES

_WEBHOOK = {
    "name": "webhook",
    "in": "path",
    "required": True,
    "description": "Webhook id (as returned by POST)",
    "schema": {"type": "string", "pattern": "^wh[0-9a-f]{16}$"},
}
_DELIVERY = {
    "name": "delivery",
    "in": "path",
    "required": True,
    "description": "Delivery id (from the deliveries list)",
    "schema": {"type": "string", "pattern": "^[0-9]{13}[0-9a-f]{8}$"},
}
_PARAMS = [*_path("building"), _WEBHOOK]
_ATTRIBUTION = {
    "type": "object",
    "description": "Who booked (issue 6): kind user | company | default_user | unattributed",
    "properties": {
        "kind": {"enum": ["user", "company", "default_user", "unattributed"]},
        "companyId": _NULLABLE_STRING,
        "userEmail": _NULLABLE_STRING,
        "reason": _NULLABLE_STRING,
    },
}
_OUTLOOK_BOOKING = {
    "type": "object",
    "required": ["building", "resourceId", "blockId", "start", "end"],
    "properties": {
        "building": {"type": "string"},
        "resourceId": {"type": "string"},
        "blockId": {"type": "string", "description": "The busy block's id (GET .../bookings)"},
        "start": _TIME,
        "end": _TIME,
        "showAs": _NULLABLE_STRING,
        "attribution": _ATTRIBUTION,
    },
}


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "description": EVENT_TYPES[name][0],
        "required": ["type", "timestamp", "data"],
        "properties": {"type": {"const": name}, "timestamp": _TIME, "data": data},
    }


def _data(required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["building", *required],
        "properties": {"building": {"type": "string"}, **properties},
    }


_EVENT_DATA: dict[str, dict[str, Any]] = {
    "outlook_booking.created": _OUTLOOK_BOOKING,
    "outlook_booking.updated": _OUTLOOK_BOOKING,
    "outlook_booking.cancelled": _OUTLOOK_BOOKING,
    "booking.synced": _data(["bookingId", "resourceId"], bookingId={"type": "string"},
                            resourceId={"type": "string"}, outlookEventId=_NULLABLE_STRING),
    "booking.failed": _data(["bookingId", "resourceId", "reason"], bookingId={"type": "string"},
                            resourceId={"type": "string"}, reason={"type": "string"}),
    "booking.released": _data(["bookingId", "resourceId"], bookingId={"type": "string"},
                              resourceId={"type": "string"}, reason=_NULLABLE_STRING),
    "mapping.status_changed": _data(["resourceId", "status"], resourceId={"type": "string"},
                                    status={"type": "string"}, previousStatus=_NULLABLE_STRING,
                                    reason=_NULLABLE_STRING),
    "connection.reauth_required": _data(["status"], status={"type": "string"},
                                        reason=_NULLABLE_STRING),
    "connection.restored": _data(["status"], status={"type": "string"}),
    "check.completed": _data(["checkId", "status"], checkId={"type": "string"},
                             status={"enum": ["passed", "failed", "abandoned"]}),
    "webhook.ping": _data(["webhookId"], webhookId={"type": "string"}),
}  # fmt: skip


def _schema_name(event_type: str) -> str:
    return "Event_" + event_type.replace(".", "_")


SCHEMAS: dict[str, Any] = {
    "WebhookWrite": {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {
                "type": "string",
                "format": "uri",
                "maxLength": 2048,
                "description": "https, resolving only to public addresses (else 422 "
                "`unsafe_url`); http only to loopback where BB_WEBHOOKS_ALLOW_LOOPBACK is set",
            },
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(EVENT_TYPES),  # as many as there are types (repeats count)
                "items": {"enum": [ALL, *EVENT_TYPES]},
                "description": 'Event types to receive; default ["*"] (all)',
            },
            "enabled": {"type": "boolean", "default": True},
            "description": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "enabled", "status"],
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": {"type": "string"}},
            "enabled": {"type": "boolean"},
            "description": {"type": "string"},
            "status": {
                "enum": ["active", "failing", "disabled"],
                "description": "disabled: by an admin, or after failing for 3 days "
                "(`disabledReason: failing`); PATCH enabled=true to resume",
            },
            "createdAt": _TIME,
            "updatedAt": _TIME,
            "failingSince": _NULLABLE_TIME,
            "lastSuccessAt": _NULLABLE_TIME,
            "lastFailureAt": _NULLABLE_TIME,
            "disabledReason": _NULLABLE_STRING,
            "previousSecretValidUntil": {
                **_NULLABLE_TIME,
                "description": "After a rotation: the previous secret still signs until then",
            },
        },
    },
    "WebhookWithSecret": {
        "allOf": [
            _ref("Webhook"),
            {
                "type": "object",
                "required": ["secret"],
                "properties": {
                    "secret": {
                        "type": "string",
                        "pattern": "^whsec_[A-Za-z0-9+/=]+$",
                        "description": "The signing secret, shown this once (kept in Key Vault)",
                    }
                },
            },
        ]
    },
    "WebhookRotate": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "graceSeconds": {
                "type": "integer",
                "minimum": 0,
                "maximum": 604800,
                "description": "How long the previous secret keeps signing; default "
                "BB_WEBHOOK_SECRET_GRACE_SECONDS (24 h)",
            }
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["id", "eventId", "type", "status", "createdAt", "attempts"],
        "properties": {
            "id": {"type": "string"},
            "webhookId": {"type": "string"},
            "eventId": {"type": "string", "description": "The `webhook-id` header"},
            "type": {"type": "string"},
            "status": {
                "enum": ["pending", "delivered", "failed", "discarded"],
                "description": "discarded: the change it reported never committed",
            },
            "createdAt": _TIME,
            "nextAttemptAt": _NULLABLE_TIME,
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "at": _TIME,
                        "statusCode": {"type": ["integer", "null"]},
                        "latencyMs": {"type": "integer"},
                        "error": {
                            **_NULLABLE_STRING,
                            "description": "timeout | connection_error | unsafe_url | "
                            "redirect_refused | disabled",
                        },
                    },
                },
            },
        },
    },
    "WebhookEvent": {
        "description": "The body of every webhook request (Standard Webhooks: headers "
        "`webhook-id`, `webhook-timestamp`, `webhook-signature` = space-separated `v1,<base64 "
        "HMAC-SHA256 of id.timestamp.body>`)",
        "oneOf": [_ref(_schema_name(t)) for t in EVENT_TYPES],
        "discriminator": {"propertyName": "type"},
    },
    **{_schema_name(t): _event(t, _EVENT_DATA[t]) for t in EVENT_TYPES},
}

_BASE = "/buildings/{building}/webhooks"
_ONE = _BASE + "/{webhook}"
_422 = {
    "description": "The URL is not https to a public address (`unsafe_url`)",
    "content": {"application/problem+json": {"schema": _ref("Problem")}},
}

_WEBHOOK_EXAMPLE = {
    "url": "https://portal.example/hooks/bookingbridge",
    "events": ["booking.synced", "booking.failed"],
    "description": "Portal",
}

OPERATIONS: list[Operation] = [
    ("post", _BASE, "Create a webhook; the signing secret is in this response only", "bearer",
     {"parameters": _path("building"), "requestBody": _json_body("WebhookWrite", _WEBHOOK_EXAMPLE),
      "responses": {"201": _json(_ref("WebhookWithSecret"), "Created"), "409": PROBLEM,
                    "422": _422}}),
    ("get", _BASE, "The building's webhooks", "bearer",
     {"parameters": _path("building"),
      "responses": {"200": _list(_ref("Webhook"), "Every webhook (at most 20: one page)")}}),
    ("get", _ONE, "One webhook (its status, never its secret)", "bearer",
     {"parameters": _PARAMS, "responses": {"200": _json(_ref("Webhook"), "OK"), "404": PROBLEM}}),
    ("patch", _ONE, "Change url, events, enabled, description", "bearer",
     {"parameters": _PARAMS, "requestBody": _json_body("WebhookWrite", _WEBHOOK_EXAMPLE),
      "responses": {"200": _json(_ref("Webhook"), "OK"), "404": PROBLEM, "422": _422}}),
    ("delete", _ONE, "Delete a webhook, its deliveries and its secret", "bearer",
     {"parameters": _PARAMS, "responses": {"204": {"description": "Deleted"}, "404": PROBLEM}}),
    ("post", _ONE + ":rotate", "A new signing secret; the previous one keeps signing during "
     "the grace period", "bearer",
     {"parameters": _PARAMS,
      "requestBody": {"required": False,
                      "content": {"application/json": {"schema": _ref("WebhookRotate"),
                                                       "example": {"graceSeconds": 86400}}}},
      "responses": {"200": _json(_ref("WebhookWithSecret"), "Rotated"), "404": PROBLEM}}),
    ("post", _ONE + ":ping", "Send a webhook.ping event to this endpoint (through the queue)",
     "bearer",
     {"parameters": _PARAMS,
      "responses": {"202": _json(_ref("WebhookDelivery"), "Queued"), "404": PROBLEM}}),
    ("get", _ONE + "/deliveries", "Deliveries, newest first: attempts, status codes, latency",
     "bearer",
     {"parameters": [*_PARAMS, *_paging(DELIVERIES_DEFAULT, DELIVERIES_MAX, alias="limit")],
      "responses": {"200": _list(_ref("WebhookDelivery"), "A page, newest first"),
                    "400": PROBLEM, "404": PROBLEM}}),
    ("get", _ONE + "/deliveries/{delivery}", "One delivery (as listed)", "bearer",
     {"parameters": [*_PARAMS, _DELIVERY],
      "responses": {"200": _json(_ref("WebhookDelivery"), "OK"), "404": PROBLEM}}),
    ("post", _ONE + "/deliveries/{delivery}:redeliver", "Send a delivery again (same body and "
     "webhook-id)", "bearer",
     {"parameters": [*_PARAMS, _DELIVERY],
      "responses": {"202": _json(_ref("WebhookDelivery"), "Queued"), "404": PROBLEM}}),
]  # fmt: skip

LINKS: list[Link] = [
    ("post", _BASE, name, method, _ONE + tail,
     {"building": "$request.path.building", "webhook": "$response.body#/id"})
    for name, method, tail in (
        ("GetWebhook", "get", ""), ("ChangeWebhook", "patch", ""), ("DeleteWebhook", "delete", ""),
        ("RotateSecret", "post", ":rotate"), ("Ping", "post", ":ping"),
        ("Deliveries", "get", "/deliveries"),
    )
]  # fmt: skip

# 405: `GET|PATCH|DELETE …/{webhook}:rotate|:ping` reach these routes (an action takes only POST).
_ACTION_ONLY_POST = ("method_not_allowed",)
REASONS: Reasons = {
    ("post", _BASE): {"409": ("too_many",), "422": ("unsafe_url",)},
    ("get", _ONE): {"405": _ACTION_ONLY_POST},
    ("patch", _ONE): {"405": _ACTION_ONLY_POST, "422": ("unsafe_url",)},
    ("delete", _ONE): {"405": _ACTION_ONLY_POST},
    ("get", _ONE + "/deliveries/{delivery}"): {
        "404": ("delivery_not_found",),
        "405": _ACTION_ONLY_POST,
    },
}
