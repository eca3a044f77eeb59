"""The OpenAPI 3.1 description of BookingBridge's HTTP API, served at GET /api/openapi.json.

Kept true by tests/unit/test_openapi.py: every HTTP route of the app is described here and every path
here is a route of the app. Each feature adds its operations to `OPERATIONS`.
"""

from __future__ import annotations

from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}

# (method, path relative to /api, summary, auth: "anonymous" | "bearer", extra operation fields)
OPERATIONS: list[tuple[str, str, str, str, dict[str, Any]]] = [
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

COMPONENTS: dict[str, Any] = {
    "securitySchemes": {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Token from the configured issuer; roles Portal.Service or Building.Admin.",
        }
    },
    "schemas": {
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
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "reason": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
    "responses": {
        "Problem": {
            "description": "Problem details (RFC 9457)",
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, auth, extra in OPERATIONS:
        operation: dict[str, Any] = {"summary": summary, **extra}
        operation["security"] = [] if auth == "anonymous" else [{"bearer": []}]
        if auth != "anonymous":
            operation.setdefault("responses", {}).update({"401": PROBLEM, "403": PROBLEM})
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "BookingBridge",
            "version": "0.1.0",
            "description": "Workplace booking platform ↔ Microsoft 365 calendars.",
        },
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": COMPONENTS,
    }
