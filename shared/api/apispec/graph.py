"""OpenAPI operations called by Microsoft Graph: change and lifecycle notifications (webhook)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import PROBLEM, Operation
from shared.api.openapi import TIME_SCHEMA as _TIME
from shared.api.openapi import ref as _ref
from shared.subscriptions.inbox import VALIDATION_TOKEN_MAX

_VALIDATION_TOKEN = {
    "name": "validationToken",
    "in": "query",
    "required": False,
    "description": "Graph's validation request (GRAPH.md §6.4): echoed back, URL-decoded, as "
    "text/plain within 10 s; the body is then empty and not read",
    "schema": {"type": "string", "minLength": 1, "maxLength": VALIDATION_TOKEN_MAX},
}


SCHEMAS: dict[str, Any] = {
    "ChangeNotification": {
        "type": "object",
        "description": "One item of Graph's changeNotificationCollection (change or lifecycle)",
        "required": ["subscriptionId", "clientState"],
        "properties": {
            "id": {"type": "string"},
            "subscriptionId": {"type": "string"},
            "subscriptionExpirationDateTime": _TIME,
            "clientState": {
                "type": "string",
                "maxLength": 128,
                "description": "Checked in constant time against the subscription's",
            },
            "changeType": {"enum": ["created", "updated", "deleted"]},
            "lifecycleEvent": {
                "enum": ["reauthorizationRequired", "subscriptionRemoved", "missed"]
            },
            "resource": {"type": "string"},
            "resourceData": {"type": "object"},
            "tenantId": {"type": "string"},
        },
    },
    "ChangeNotificationCollection": {
        "type": "object",
        "required": ["value"],
        "properties": {
            "value": {"type": "array", "items": _ref("ChangeNotification")},
            "validationTokens": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def _webhook(what: str) -> dict[str, Any]:
    return {
        "description": what,
        "parameters": [_VALIDATION_TOKEN],
        "requestBody": {
            "required": True,
            "description": "JSON notifications; the empty text/plain body only with "
            "?validationToken= (else 415 `not_json`)",
            "content": {
                "application/json": {
                    "schema": _ref("ChangeNotificationCollection"),
                    "example": {
                        "value": [
                            {
                                "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                                "clientState": "v1.3hVd9p0f",
                                "changeType": "updated",
                                "resource": "Users/3f1b/Events/AAMkADk0",
                                "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
                            }
                        ]
                    },
                },
                "text/plain": {"schema": {"type": "string", "maxLength": 0}, "example": ""},
            },
        },
        "responses": {
            "200": {
                "description": "Validation request: the decoded validationToken",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "202": {
                "description": "Accepted: valid items queued; items with an unknown "
                "subscription or a wrong clientState were dropped (not revealed)"
            },
            "400": PROBLEM,
            "415": PROBLEM,
            "503": PROBLEM,
        },
    }


OPERATIONS: list[Operation] = [
    (
        "post",
        "/graph/notifications",
        "Microsoft Graph change notifications (and the subscription validation handshake)",
        "anonymous",
        _webhook(
            "Anonymous; every item's clientState is checked. One sync request per changed "
            "mailbox is queued; 503 when it could not be queued (Graph retries)."
        ),
    ),
    (
        "post",
        "/graph/lifecycle",
        "Microsoft Graph lifecycle notifications: reauthorizationRequired, subscriptionRemoved, "
        "missed (and the validation handshake)",
        "anonymous",
        _webhook(
            "Anonymous; clientState checked per item. reauthorizationRequired → the "
            "subscription is renewed; subscriptionRemoved → recreated and resynced; missed → "
            "resynced. Work is queued; the answer is 202 at once."
        ),
    ),
]
