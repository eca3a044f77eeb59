"""OpenAPI operations of the admin console's routes (anonymous, static; shared/api/console.py)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import OPEN_QUERY, PROBLEM, Operation, Reasons
from shared.api.openapi import json_content as _json
from shared.api.openapi import ref as _ref

SCHEMAS: dict[str, Any] = {
    "ConsoleConfig": {
        "type": "object",
        "description": "What the console's MSAL Browser needs to sign an admin in. No secrets.",
        "required": [
            "clientId",
            "authority",
            "scopes",
            "redirectUri",
            "apiBase",
            "knownAuthorities",
        ],
        "properties": {
            "clientId": {"type": "string", "description": "BB_CLIENT_ID"},
            "authority": {
                "type": "string",
                "description": "BB_AUTHORITY_HOST/BB_API_TENANT_ID (the tenant that signs tokens)",
            },
            "scopes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`{BB_API_AUDIENCE}/access_as_user`",
            },
            "redirectUri": {
                "type": "string",
                "description": "The SPA redirect URI: BB_PUBLIC_BASE_URL + `/console/`",
            },
            "apiBase": {"type": "string", "const": "/api"},
            "knownAuthorities": {
                "type": "array",
                "items": {"type": "string"},
                "description": "host[:port] of the authority",
            },
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "get",
        "/console/config.json",
        "The admin console's sign-in configuration",
        "anonymous",
        {"responses": {"200": _json(_ref("ConsoleConfig"), "Console configuration")}},
    ),
    (
        "get",
        "/console/{path}",
        "The admin console: its page (empty path) and the files of its bundle",
        "anonymous",
        {
            "description": (
                "Static files of console/dist (no data). `/api/console` redirects to "
                "`/api/console/`; the page is index.html, or, if the console was not built, a "
                "page saying how to build it (`make console`), never a 404. Hashed files under "
                "`assets/` are cached for a year (immutable), everything else `no-cache`; every "
                "file carries a Content-Security-Policy (scripts and styles from this origin "
                "only). Any query is accepted and ignored: the page is the SPA redirect URI, "
                "where the identity platform appends what it likes."
            ),
            # Entra redirects sign-ins back to this page with parameters of its choosing.
            OPEN_QUERY: True,
            "parameters": [
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "description": "A file of the bundle (catch-all: may contain `/`; may be empty)",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {"description": "The file (its own content type)"},
                "301": {"description": "`/api/console` → `/api/console/`"},
                "400": PROBLEM,
                "404": PROBLEM,
            },
        },
    ),
]

REASONS: Reasons = {("get", "/console/{path}"): {"404": ("not_found",)}}
