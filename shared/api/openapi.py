"""The OpenAPI 3.1 description of BookingBridge's HTTP API, served at GET /api/openapi.json.

Kept true by tests/unit/test_function_app.py: every HTTP route of the app is described here and every path
here is a route of the app.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
from typing import Any

from shared.core import etags
from shared.core.paging import TOKEN_FIELD, TOP_DEFAULT, TOP_MAX

PROBLEM = {"$ref": "#/components/responses/Problem"}
UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}
UNAVAILABLE = {"$ref": "#/components/responses/Unavailable"}
BODY_RULES = (
    "A JSON body nests at most 32 levels (400 naming `body`) and is at most 1 MiB "
    "(users:import 8 MiB; the Graph webhook 4 MiB) (413)."
)

# Routes below one building: 404 `building_not_found` for a building that does not exist (after
# 401/403: functions/http.py `caller_for`).
BUILDING_SCOPED = "/buildings/{building}/"
# An operation with this extension set accepts query parameters it does not declare. Only for
# anonymous redirect targets whose query someone else writes (Entra adds parameters as it likes:
# session_state, client_info, iss, correlation_id, ...); every other operation refuses an
# undeclared parameter with a 400 naming it (functions/http.py `handle_errors`).
OPEN_QUERY = "x-open-query"

# (method, path relative to /api, summary, auth: "anonymous" | "bearer", extra operation fields)
Operation = tuple[str, str, str, str, dict[str, Any]]

# Helpers every surface's description uses (shared/api/apispec/*.py).
# Not only dots ("." and ".." would be other paths once a URL is normalised).
ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^(?!\\.+$)[A-Za-z0-9._-]{1,64}$"}
EMAIL_SCHEMA: dict[str, Any] = {"type": "string", "format": "email", "maxLength": 254}
NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
TIME_SCHEMA: dict[str, Any] = {"type": "string", "format": "date-time"}
NULLABLE_TIME: dict[str, Any] = {**TIME_SCHEMA, **NULLABLE_STRING}
_ID_TEXT = "(1–64 of A-Z a-z 0-9 . _ -, not only dots)"
PATH_PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    "building": (
        f"Building id {_ID_TEXT}. Below /buildings/{{building}}/, a building that does not exist "
        "is a 404 `building_not_found`, checked after authorisation: a caller who may not reach "
        "a building gets 403 whether or not it exists.",
        ID_SCHEMA,
    ),
    "resource": (f"Resource id {_ID_TEXT}", ID_SCHEMA),
    "company": (f"Company id {_ID_TEXT}", ID_SCHEMA),
    "booking": ("Booking id (as returned by POST)", ID_SCHEMA),
    "email": ("Email address (percent-encoded); compared lower-cased, `+tag` kept", EMAIL_SCHEMA),
    "record": (
        "Audit record id (as listed)",
        {"type": "string", "pattern": "^[0-9]{16}[.][0-9a-f]{8}$"},
    ),
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(name: str, example: Any) -> dict[str, Any]:
    """A required JSON request body of schema `name`, with an example (every body has one)."""
    return {
        "required": True,
        "content": {"application/json": {"schema": ref(name), "example": example}},
    }


def query_parameter(
    name: str, description: str, schema: dict[str, Any] | None = None, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def list_of(item: dict[str, Any], description: str) -> dict[str, Any]:
    """A 200 of a collection route: the one list envelope (docs/API.md "Lists and paging")."""
    envelope = {
        "type": "object",
        "required": ["value", "nextLink"],
        "properties": {"value": {"type": "array", "items": item}, "nextLink": ref("NextLink")},
    }
    return json_content(envelope, description)


def paging_parameters(
    default: int = TOP_DEFAULT, maximum: int = TOP_MAX, *, alias: str | None = None
) -> list[dict[str, Any]]:
    """`top` and `continuationToken` of a paged list (and `top`'s older name, if it has one)."""
    top = {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}
    found = [
        query_parameter("top", f"Items per page, 1–{maximum} (default {default})", top),
        query_parameter(
            TOKEN_FIELD,
            "Opaque; taken from `nextLink`. One we did not issue is a 400 naming it.",
            {"type": "string", "maxLength": 4096},
        ),
    ]
    if alias:
        found.append(
            query_parameter(alias, "The older name of `top` (not with `top`, else 400)", top)
        )
    return found


def path_parameters(*names: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH_PARAMETERS[name][0],
            "schema": PATH_PARAMETERS[name][1],
        }
        for name in names
    ]


# Optimistic concurrency (shared/core/etags.py): these reads answer with an ETag, these writes
# take an optional If-Match (412 `precondition_failed` when it names another version). Declared
# here once rather than in each surface's operations.
_BUILDING = "/buildings/{building}"
ETAG_READS = frozenset(
    {
        ("get", f"{_BUILDING}/resources/{{resource}}"),
        ("put", f"{_BUILDING}/resources/{{resource}}"),
        ("get", f"{_BUILDING}/bookings/{{booking}}"),
        ("patch", f"{_BUILDING}/bookings/{{booking}}"),
        ("get", f"{_BUILDING}/settings"),
        ("put", f"{_BUILDING}/settings"),
    }
)
IF_MATCH_WRITES = frozenset(
    {
        ("put", f"{_BUILDING}/resources/{{resource}}"),
        ("delete", f"{_BUILDING}/resources/{{resource}}"),
        ("patch", f"{_BUILDING}/bookings/{{booking}}"),
        ("delete", f"{_BUILDING}/bookings/{{booking}}"),
        ("put", f"{_BUILDING}/settings"),
    }
)
ETAG_HEADER: dict[str, Any] = {
    "description": "Strong, opaque version of what was read or written (send it back in "
    "If-Match to update only that version)",
    "schema": {"type": "string"},
}
IF_MATCH_PARAMETER: dict[str, Any] = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": "Optional. `*` (it must exist) or the ETag of the version read: the write "
    "happens only if it is still that version, else 412 `precondition_failed` and nothing "
    "changes. Malformed → 400 naming `If-Match`. Without it the write is unconditional.",
    "schema": {"type": "string", "maxLength": etags.MAX_HEADER, "pattern": etags.PATTERN},
}


def _conditional(method: str, path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if (method, path) in ETAG_READS:
        for status, response in responses.items():
            if status.startswith("2") and "$ref" not in response:
                responses[status] = {
                    **response,
                    "headers": {**response.get("headers", {}), "ETag": ETAG_HEADER},
                }
    if (method, path) in IF_MATCH_WRITES:
        operation["parameters"] = [*operation.get("parameters", []), IF_MATCH_PARAMETER]
        responses.setdefault("400", PROBLEM)
        responses["412"] = PROBLEM


# An OpenAPI link from every 2xx answer of one operation to another: (from method, from path, link
# name, to method, to path, the target's parameters as runtime expressions). What a client (and the
# contract test's state machine) follows: create -> read -> update -> delete.
Link = tuple[str, str, str, str, str, dict[str, str]]


def _operation_ref(method: str, path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _add_links(paths: dict[str, dict[str, Any]], links: list[Link]) -> None:
    for source_method, source_path, name, method, path, parameters in links:
        assert method in paths.get(path, {}), f"link {name} to an undescribed {method} {path}"
        for status, response in paths[source_path][source_method]["responses"].items():
            if status.startswith("2"):
                response.setdefault("links", {})[name] = {
                    "operationRef": _operation_ref(method, path),
                    "parameters": parameters,
                }


# Each API surface describes its own operations in shared/api/apispec/<surface>.py as
#   OPERATIONS: list[Operation]  and optionally  SCHEMAS: dict[str, Any], LINKS: list[Link],
#   REASONS: Reasons
# so features add routes without editing a shared list.
SURFACES = (
    "ops",
    "buildings",
    "admin",
    "connect",
    "graph",
    "mapping",
    "sync",
    "bookings",
    "console",
    "checks",
    "webhooks",
    "analytics",
)

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
        "NextLink": {
            "type": ["string", "null"],
            "format": "uri",
            "description": "The URL of the next page (this request's URL, same query, plus "
            "`continuationToken`); null on the last page. A page may hold fewer than `top` "
            "items and still have a next one: follow nextLink until it is null.",
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
        },
        "Unavailable": {
            "description": "A dependency (Table Storage, Key Vault, Microsoft Graph, the identity "
            "platform) failed; nothing was changed. A transient failure says when to retry",
            "headers": {
                "Retry-After": {
                    "description": "Seconds (Graph's own when it throttled us); absent when "
                    "retrying will not help",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        },
        "Unauthorized": {
            "description": "No valid bearer token (RFC 6750): problem details, and a challenge",
            "headers": {
                "WWW-Authenticate": {
                    "description": 'Bearer realm="BookingBridge", plus error="invalid_token" '
                    "when a token was sent",
                    "schema": {"type": "string"},
                }
            },
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        },
    },
}


# The `reason` codes a problem of each status can carry on every operation; an operation adds its
# own with `"reasons": {"<status>": [...]}` in its extra fields. Each 4xx problem is then declared
# with that enum, so an undeclared reason fails the contract test; tests/unit/test_openapi_contract.py
# checks that every reason the code raises is declared somewhere.
REASONS: dict[str, tuple[str, ...]] = {
    "400": ("validation",),
    "401": (
        "missing_token",
        "malformed_token",
        "invalid_token",
        "bad_algorithm",
        "unknown_key",
        "token_expired",
        "wrong_issuer",
        "wrong_audience",
    ),
    "403": (
        "missing_role",
        "missing_scope",
        "building_forbidden",
        "calendar_not_mapped",
        "graph_path_not_allowed",
    ),
    "412": ("precondition_failed",),
    "413": ("payload_too_large",),
    "415": ("not_json",),
}


def _with_reasons(response: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
    """The problem response (or a reference to one) with `reason` limited to `reasons`."""
    if "$ref" in response:
        response = COMPONENTS["responses"][response["$ref"].rsplit("/", 1)[1]]
    media = response["content"]["application/problem+json"]
    schema = {
        "allOf": [media["schema"], {"properties": {"reason": {"enum": reasons}}}],
    }
    listed = ", ".join(f"`{r}`" for r in reasons)
    return {
        **response,
        "description": f"{response['description']}; reason: {listed}",
        "content": {**response["content"], "application/problem+json": {**media, "schema": schema}},
    }


# A surface's reasons per operation: {(method, path): {status: reasons}}; a status not yet among
# the operation's responses is added as a problem.
Reasons = dict[tuple[str, str], dict[str, tuple[str, ...]]]


def _declare_reasons(operation: dict[str, Any], own: dict[str, tuple[str, ...]]) -> None:
    responses = operation["responses"]
    for status in own:
        responses.setdefault(status, PROBLEM)
    for status, response in responses.items():
        reasons = [*REASONS.get(status, ()), *own.get(status, ())]
        if status.startswith("4") and reasons:
            responses[status] = _with_reasons(response, reasons)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas = dict(COMPONENTS["schemas"])
    operations: list[Operation] = []
    links: list[Link] = []
    reasons: Reasons = {}
    for surface in SURFACES:
        module = importlib.import_module(f"shared.api.apispec.{surface}")
        operations.extend(module.OPERATIONS)
        schemas.update(getattr(module, "SCHEMAS", {}))
        links.extend(getattr(module, "LINKS", []))
        reasons.update(getattr(module, "REASONS", {}))
    for method, path, summary, auth, extra in operations:
        # Own copies of what is changed below: a second call must describe the same thing.
        operation: dict[str, Any] = {
            "summary": summary,
            **extra,
            "responses": dict(extra.get("responses", {})),
        }
        operation["security"] = [] if auth == "anonymous" else [{"bearer": []}]
        if auth != "anonymous":
            # Every authenticated route reads storage (and the token's signing keys): any may 503.
            operation["responses"].update({"401": UNAUTHORIZED, "403": PROBLEM})
            operation["responses"].setdefault("503", UNAVAILABLE)
        responses = operation.setdefault("responses", {})
        if operation.get("parameters"):  # every id and query value is checked: 400 naming it
            responses.setdefault("400", PROBLEM)
        if auth != "anonymous" and path.startswith(BUILDING_SCOPED):
            responses.setdefault("404", PROBLEM)  # building_not_found (after 401/403)
        if "requestBody" in operation:  # every body is read by shared/core/jsonbody.py's rules
            responses.setdefault("400", PROBLEM)
            responses.setdefault("413", PROBLEM)
            operation["requestBody"].setdefault("description", BODY_RULES)
        _conditional(method, path, operation)
        own = dict(reasons.get((method, path), {}))
        if auth != "anonymous" and path.startswith(BUILDING_SCOPED):
            own["404"] = (*own.get("404", ()), "building_not_found")
        _declare_reasons(operation, own)
        paths.setdefault(path, {})[method] = operation
    _add_links(paths, links)
    # A deep copy: the parts above are the surfaces' module constants, which no caller may change
    # (schemathesis, for one, writes the links it infers into the document it is given).
    return copy.deepcopy(
        {
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
    )


@functools.cache
def _query_rules() -> tuple[tuple[str, re.Pattern[str], int, frozenset[str] | None], ...]:
    """(method, path pattern, literal length, declared query names or None when open) per operation."""
    rules = []
    for path, operations in openapi_document()["paths"].items():
        # `{path}` is the console's catch-all (`{*path}` in the route); others are one segment.
        parts = re.split(r"(\{[^}]+\})", path)
        pattern = "".join(
            (".*" if p == "{path}" else "[^/]+") if p.startswith("{") else re.escape(p)
            for p in parts
        )
        literal = sum(len(p) for p in parts if not p.startswith("{"))
        for method, operation in operations.items():
            names = None
            if not operation.get(OPEN_QUERY):
                names = frozenset(
                    p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"
                )
            rules.append((method, re.compile(pattern), literal, names))
    return tuple(rules)


def declared_query(method: str, path: str) -> frozenset[str] | None:
    """The query parameters the operation of `method` `path` (below /api) declares: None when it
    takes any (OPEN_QUERY) or no operation matches. The most literal path wins (`users:import`
    over `users/{email}`)."""
    best: tuple[int, frozenset[str] | None] | None = None
    for rule_method, pattern, literal, names in _query_rules():
        matches = rule_method == method.lower() and pattern.fullmatch(path)
        if matches and (best is None or literal > best[0]):
            best = (literal, names)
    return best[1] if best else None
