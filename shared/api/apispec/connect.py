"""OpenAPI operations of the connection to Microsoft 365 (connect, callbacks, status) and audit."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import NULLABLE_STRING as _NULLABLE_STRING
from shared.api.openapi import NULLABLE_TIME as _NULLABLE_TIME
from shared.api.openapi import OPEN_QUERY, PROBLEM, Operation, Reasons
from shared.api.openapi import TIME_SCHEMA as _TIME
from shared.api.openapi import json_body as _body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import paging_parameters as _paging
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import query_parameter as _query
from shared.api.openapi import ref as _ref
from shared.core.validate import ACCOUNT
from shared.graph.audit import DEFAULT_LIMIT, MAX_LIMIT

_REDIRECT = {
    "302": {
        "description": "To the flow's returnUrl with `?status=connected` or "
        "`?status=error&reason=<code>`",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    "400": PROBLEM,
}

SCHEMAS: dict[str, Any] = {
    "ConnectRequest": {
        "type": "object",
        "required": ["mode", "returnUrl"],
        "properties": {
            "mode": {"enum": ["delegated", "application"]},
            "tenant": {
                "type": "string",
                "description": "Application mode: tenant id or verified domain",
            },
            "returnUrl": {
                "type": "string",
                "format": "uri",
                "description": "Where the browser returns; its origin must be allow-listed "
                "(BB_RETURN_URL_ORIGINS)",
            },
            "loginHint": {
                "type": "string",
                "maxLength": 256,
                "description": "Pre-fills the Microsoft sign-in; for a Portal.Service caller also "
                "the expected account when expectedAccount is absent",
            },
            "access": {
                "enum": ["full", "freeBusy"],
                "default": "full",
                "description": "freeBusy (issue 19): read free/busy only. Delegated asks for "
                "User.Read, Calendars.ReadBasic and Place.Read.All (application consents to the "
                "registration's permissions, as `/.default` must); availability comes from "
                "getSchedule (polled, no subscriptions or delta), no subject is stored, and "
                "bookings on its mappings are refused with 422 read_only_mapping. Reconnecting "
                "with full access keeps the mappings.",
            },
            "expectedAccount": {
                "type": "string",
                "maxLength": 256,
                "pattern": ACCOUNT.pattern,
                "description": "The account that is to sign in (user principal name or object "
                "id). Required for a Portal.Service caller (or loginHint); a Building.Admin "
                "always connects their own account. Anyone else signing in ends the flow with "
                "reason account_mismatch, nothing stored.",
            },
        },
    },
    "ConnectStarted": {
        "type": "object",
        "required": ["authorizeUrl"],
        "properties": {"authorizeUrl": {"type": "string", "format": "uri"}},
    },
    "Connection": {
        "type": "object",
        "required": ["status", "scopes"],
        "properties": {
            "status": {"enum": ["connected", "reauth_required", "disconnected", "error"]},
            "mode": {"enum": ["delegated", "application", None]},
            "account": {
                "type": ["object", "null"],
                "properties": {
                    "id": {"type": "string"},
                    "displayName": _NULLABLE_STRING,
                    "mail": _NULLABLE_STRING,
                    "userPrincipalName": _NULLABLE_STRING,
                },
            },
            "tenantId": _NULLABLE_STRING,
            "scopes": {"type": "array", "items": {"type": "string"}},
            "access": {"enum": ["full", "freeBusy", None]},
            "connectedAt": _NULLABLE_TIME,
            "lastRefreshAt": _NULLABLE_TIME,
            "reason": _NULLABLE_STRING,
        },
    },
    "AuditRecord": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "GET /buildings/{building}/audit/{id}"},
            "time": _TIME,
            "actor": {"type": "string"},
            "building": {"type": "string"},
            "connection": {"type": "string"},
            "operation": {"type": "string"},
            "mailbox": _NULLABLE_STRING,
            "calendar": _NULLABLE_STRING,
            "result": {"type": "string"},
            "status": {"type": "integer"},
            "requestId": _NULLABLE_STRING,
            "clientRequestId": _NULLABLE_STRING,
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "post",
        "/buildings/{building}/connection",
        "Start connecting the building to Microsoft 365 (delegated sign-in or admin consent)",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": _body(
                "ConnectRequest",
                {
                    "mode": "application",
                    "tenant": "contoso.onmicrosoft.com",
                    "returnUrl": "https://portal.example/connected",
                    "expectedAccount": "admin@contoso.onmicrosoft.com",
                },
            ),
            "responses": {
                "200": _json(_ref("ConnectStarted"), "Send the admin's browser here"),
                "400": PROBLEM,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/connection",
        "The building's connection: status, mode, account, tenant, scopes",
        "bearer",
        {
            "parameters": _path("building"),
            "responses": {"200": _json(_ref("Connection"), "Connection status")},
        },
    ),
    (
        "delete",
        "/buildings/{building}/connection",
        "Disconnect: subscriptions and the refresh token deleted, mappings kept as not_synced",
        "bearer",
        {"parameters": _path("building"), "responses": {"204": {"description": "Disconnected"}}},
    ),
    (
        "get",
        "/oauth/callback",
        "Microsoft's redirect after delegated sign-in (code or error, state)",
        "anonymous",
        {
            "parameters": [
                _query("code", "Authorization code"),
                _query("state", "The flow's single-use state"),
                _query("error", "Error code from the identity platform"),
                _query("error_description", "AADSTS description"),
            ],
            # Entra's redirect: it adds parameters we neither need nor control (session_state,
            # client_info, iss, error_uri, ...), so undeclared ones are accepted and ignored.
            OPEN_QUERY: True,
            "responses": _REDIRECT,
        },
    ),
    (
        "get",
        "/oauth/adminconsent",
        "Microsoft's redirect after an application connect: an OpenID Connect sign-in with "
        "prompt=admin_consent; the tenant comes only from the verified id token (tid must equal "
        "the requested tenant), then a client-credentials token confirms the consent. The v2 "
        "admin-consent shape (admin_consent, tenant without a code) is refused "
        "(consent_unverifiable): anyone can type it.",
        "anonymous",
        {
            "parameters": [
                _query("code", "Authorization code of this flow"),
                _query("state", "The flow's single-use state"),
                _query("session_state", "Ignored"),
                _query("error", "Error code from the identity platform"),
                _query("error_description", "Error text (not shown)"),
                _query("admin_consent", "The v2 admin-consent shape: refused (see above)"),
                _query("tenant", "The v2 admin-consent shape: refused (see above)"),
            ],
            OPEN_QUERY: True,  # Entra's redirect, as /oauth/callback
            "responses": _REDIRECT,
        },
    ),
    (
        "get",
        "/buildings/{building}/audit",
        "Audit records of Microsoft Graph calendar reads and writes, newest first",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                _query(
                    "from",
                    "Start (RFC 3339); default: 24 h before `to`",
                    _TIME,
                ),
                _query("to", "End (RFC 3339); default: now", _TIME),
                *_paging(DEFAULT_LIMIT, MAX_LIMIT, alias="limit"),
            ],
            "responses": {
                "200": _list(_ref("AuditRecord"), "A page of audit records, newest first"),
                "400": PROBLEM,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/audit/{record}",
        "One audit record (by the id it is listed with)",
        "bearer",
        {
            "parameters": _path("building", "record"),
            "responses": {"200": _json(_ref("AuditRecord"), "The record"), "404": PROBLEM},
        },
    ),
]

REASONS: Reasons = {("get", "/buildings/{building}/audit/{record}"): {"404": ("audit_not_found",)}}
