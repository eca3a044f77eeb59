"""The OpenAPI 3.1 description of BookingBridge's HTTP API, served at GET /api/openapi.json.

Kept true by tests/unit/test_function_app.py: every HTTP route of the app is described here and every path
here is a route of the app.
"""

from __future__ import annotations

import importlib
from typing import Any

PROBLEM = {"$ref": "#/components/responses/Problem"}

# (method, path relative to /api, summary, auth: "anonymous" | "bearer", extra operation fields)
Operation = tuple[str, str, str, str, dict[str, Any]]

# Each API surface describes its own operations in shared/apispec/<surface>.py as
#   OPERATIONS: list[Operation]  and optionally  SCHEMAS: dict[str, Any]
# so features add routes without editing a shared list.
SURFACES = ("ops", "admin", "connect", "graph", "mapping", "sync", "bookings")

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
    schemas = dict(COMPONENTS["schemas"])
    operations: list[Operation] = []
    for surface in SURFACES:
        module = importlib.import_module(f"shared.apispec.{surface}")
        operations.extend(module.OPERATIONS)
        schemas.update(getattr(module, "SCHEMAS", {}))
    for method, path, summary, auth, extra in operations:
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
        "components": {**COMPONENTS, "schemas": schemas},
    }
