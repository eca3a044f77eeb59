"""OpenAPI operations of the operational routes (health, this description, CORS preflights)."""

from __future__ import annotations

from typing import Any

from shared.api.cors import ALLOW_HEADERS, ALLOW_METHODS, MAX_AGE_SECONDS
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
    (
        "options",
        "/{path}",
        "CORS preflight of any route (browser frontends)",
        "anonymous",
        {
            "description": "What a browser sends before a cross-origin call (`Origin`, "
            "`Access-Control-Request-Method`). Always 204; for an origin in `BB_CORS_ORIGINS` "
            "with `Access-Control-Allow-Origin` (that origin, or `*`), `Access-Control-Allow-Methods` "
            f"({', '.join(ALLOW_METHODS)}), `Access-Control-Allow-Headers` ({', '.join(ALLOW_HEADERS)}), "
            f"`Access-Control-Max-Age` ({MAX_AGE_SECONDS}) and `Vary: Origin`; for any other origin "
            "without them, so the browser refuses the call.",
            "parameters": [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "description": "Any path under /api (slashes included)",
                    "schema": {"type": "string"},
                },
                {
                    "name": "Origin",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "Access-Control-Request-Method",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "204": {
                    "description": "Preflight answered (CORS headers only for an allowed origin)",
                    "headers": {
                        "Access-Control-Allow-Origin": {"schema": {"type": "string"}},
                        "Access-Control-Allow-Methods": {"schema": {"type": "string"}},
                        "Access-Control-Allow-Headers": {"schema": {"type": "string"}},
                        "Access-Control-Max-Age": {"schema": {"type": "string"}},
                    },
                }
            },
        },
    ),
]
