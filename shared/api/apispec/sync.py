"""OpenAPI operations of calendar sync: sync health per mapping and forced resync."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import NULLABLE_STRING as _NULLABLE_STRING
from shared.api.openapi import NULLABLE_TIME as _TIME
from shared.api.openapi import PROBLEM, Operation, Reasons
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref

_REASONS = (
    "Reason codes: reauth_required, disconnected, access_denied, calendar_not_found, "
    "calendar_not_mapped, throttled, graph_unavailable, storage_unavailable, identity_unavailable."
)


SCHEMAS: dict[str, Any] = {
    "MappingSyncHealth": {
        "type": "object",
        "required": ["resourceId", "calendar", "status", "mode", "rounds", "graphRequests"],
        "properties": {
            "resourceId": {"type": "string"},
            "calendar": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": _NULLABLE_STRING,
                    "mailbox": {"type": "string"},
                },
            },
            "status": {"enum": ["synced", "pending", "error", "not_synced"]},
            "reason": {**_NULLABLE_STRING, "description": _REASONS},
            "mode": {
                "enum": ["notifications", "polling", "pending"],
                "description": "notifications: the mailbox has a Graph subscription; polling: "
                "delta rounds on a timer (calendars shared to a delegated account); pending: "
                "not synced yet",
            },
            "subscription": {
                "type": ["object", "null"],
                "properties": {
                    "id": _NULLABLE_STRING,
                    "expiresAt": _TIME,
                    "status": {"type": "string"},
                    "reason": _NULLABLE_STRING,
                },
            },
            "deltaState": {
                "type": ["object", "null"],
                "description": "The stored delta round: the baseline's age and the window it tracks",
                "properties": {
                    "ageSeconds": {"type": ["integer", "null"]},
                    "baselineAt": _TIME,
                    "windowStart": _TIME,
                    "windowEnd": _TIME,
                },
            },
            "lastSyncAt": {**_TIME, "description": "End of the last successful round"},
            "lagSeconds": {
                "type": ["integer", "null"],
                "description": "Last round's end minus the enqueue time of the oldest request it "
                "served; while requests wait, the time since the oldest of them",
            },
            "lastError": {
                "type": ["object", "null"],
                "properties": {"reason": {"type": "string"}, "at": _TIME},
            },
            "lastWriteError": {
                "type": ["object", "null"],
                "description": "The last platform booking of this mapping whose write-through "
                "to Outlook failed for good (syncState `failed`): a permanent refusal at once, a "
                "transient one once the outbox gave up (`retries_exhausted`). It stays until "
                "another booking fails; the booking itself carries its own `lastError`.",
                "required": ["reason", "at", "bookingId"],
                "properties": {
                    "reason": {
                        "type": "string",
                        "description": "access_denied, calendar_not_found, event_not_found, "
                        "reauth_required, not_mapped, not_connected, calendar_changed, "
                        "resource_not_found, duplicate_transaction, graph_refused, "
                        "retries_exhausted (or another reason the write failed with)",
                    },
                    "at": _TIME,
                    "bookingId": _NULLABLE_STRING,
                    "status": {
                        "type": ["integer", "null"],
                        "description": "Graph's HTTP status (0 when Graph did not answer)",
                    },
                    "code": {
                        **_NULLABLE_STRING,
                        "description": "Graph's error code; for `retries_exhausted`, what the "
                        "last attempt failed with",
                    },
                },
            },
            "nextPollAt": _TIME,
            "rounds": {"type": "integer"},
            "graphRequests": {"type": "integer"},
            "poisonMessages": {"type": "integer"},
        },
    },
    "SyncHealth": {
        "type": "object",
        "required": ["building", "mappings", "poisonMessages"],
        "properties": {
            "building": {"type": "string"},
            "mappings": {"type": "array", "items": _ref("MappingSyncHealth")},
            "poisonMessages": {
                "type": "integer",
                "description": "Sync requests of this building in notifications-poison (among the "
                "first 32 messages peeked)",
            },
            "poisonMessagesCapped": {"type": "boolean"},
            "webhooks": {
                "type": "array",
                "description": "Outgoing webhooks (issue 16) that are failing or disabled: "
                "`id`, `url`, `status`, `failingSince`, `lastFailureAt`, `disabledReason`",
                "items": {"type": "object"},
            },
        },
    },
    "ResyncQueued": {
        "type": "object",
        "required": ["queued", "resourceId", "full"],
        "properties": {
            "queued": {"type": "boolean"},
            "resourceId": {"type": "string"},
            "full": {"type": "boolean"},
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "get",
        "/buildings/{building}/sync",
        "Sync health of every mapped calendar of the building",
        "bearer",
        {
            "parameters": _path("building"),
            "responses": {
                "200": {
                    "description": "Per mapping: subscription, delta state, last sync, lag, "
                    "last error, poison messages",
                    "content": {"application/json": {"schema": _ref("SyncHealth")}},
                },
                "400": PROBLEM,
            },
        },
    ),
    (
        "post",
        "/buildings/{building}/resources/{resource}/sync",
        "Force a full resync of one mapping (baseline + reconcile)",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "responses": {
                "202": {
                    "description": "Queued",
                    "content": {"application/json": {"schema": _ref("ResyncQueued")}},
                },
                "400": PROBLEM,
                "404": PROBLEM,
                "422": {
                    "description": "The resource has no calendar mapped (`not_mapped`)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
            },
        },
    ),
]

REASONS: Reasons = {
    ("post", "/buildings/{building}/resources/{resource}/sync"): {
        "404": ("resource_not_found",),
        "422": ("not_mapped",),
    },
}
