"""OpenAPI operations of the operational routes (health, this description)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import Operation
from shared.api.openapi import json_content as _json
from shared.api.openapi import ref as _ref

SCHEMAS: dict[str, Any] = {
    "Health": {
        "type": "object",
        "required": ["status", "components"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "components": {
                "type": "object",
                "additionalProperties": {"enum": ["ok", "degraded"]},
            },
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "get",
        "/health",
        "Health of tables, queues, Key Vault and Graph",
        "anonymous",
        {"responses": {"200": _json(_ref("Health"), "Health report")}},
    ),
    (
        "get",
        "/openapi.json",
        "This OpenAPI description",
        "anonymous",
        {"responses": {"200": {"description": "OpenAPI 3.1 document"}}},
    ),
]
