"""OpenAPI operations of the operational routes (health, this description)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import Operation

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
        {
            "responses": {
                "200": {
                    "description": "Health report",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Health"}}
                    },
                }
            }
        },
    ),
    (
        "get",
        "/openapi.json",
        "This OpenAPI description",
        "anonymous",
        {"responses": {"200": {"description": "OpenAPI 3.1 document"}}},
    ),
]
