"""OpenAPI operations of the go-live check (issue 14): start, read, list."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import ID_SCHEMA, PROBLEM, Link, Operation, Reasons
from shared.api.openapi import NULLABLE_STRING as _NULLABLE_STRING
from shared.api.openapi import NULLABLE_TIME as _NULLABLE_TIME
from shared.api.openapi import TIME_SCHEMA as _TIME
from shared.api.openapi import list_of as _list
from shared.api.openapi import paging_parameters as _paging
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.checks.deps import LIST_MAX, CheckConfig
from shared.checks.model import EXPLANATIONS, STEPS
from shared.checks.runner import MAX_RESOURCES

_CHECK_PARAMETER = {
    "name": "check",
    "in": "path",
    "required": True,
    "description": "Check id (as returned by POST)",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{21}$"},
}

SCHEMAS: dict[str, Any] = {
    "CheckStart": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "resourceIds": {
                "type": ["array", "null"],
                "minItems": 1,
                "maxItems": MAX_RESOURCES,
                "items": ID_SCHEMA,
                "description": "Mapped resources to check; absent or null: every mapped resource",
            }
        },
    },
    "CheckStep": {
        "type": "object",
        "required": ["name", "status", "startedAt", "durationMs", "graphRequestIds"],
        "properties": {
            "name": {"enum": list(STEPS)},
            "status": {"enum": ["passed", "failed", "skipped"]},
            "startedAt": _TIME,
            "durationMs": {"type": "integer"},
            "graphRequestIds": {"type": "array", "items": {"type": "string"}},
            "reason": {
                **_NULLABLE_STRING,
                "description": "For a failed or skipped step: " + ", ".join(sorted(EXPLANATIONS)),
            },
            "message": {**_NULLABLE_STRING, "description": "What happened, in a sentence"},
            "fix": {**_NULLABLE_STRING, "description": "How to fix it"},
            "detail": {
                "type": "object",
                "description": "Facts of the step, e.g. lagSeconds of outlook_to_platform",
            },
        },
    },
    "CheckResource": {
        "type": "object",
        "required": ["resourceId", "status", "steps"],
        "properties": {
            "resourceId": {"type": "string"},
            "status": {"enum": ["running", "passed", "failed"]},
            "currentStep": _NULLABLE_STRING,
            "steps": {"type": "array", "items": _ref("CheckStep")},
        },
    },
    "Check": {
        "type": "object",
        "required": ["id", "building", "status", "createdAt", "resourceIds"],
        "properties": {
            "id": {"type": "string"},
            "building": {"type": "string"},
            "status": {"enum": ["queued", "running", "passed", "failed", "abandoned"]},
            "createdAt": _TIME,
            "startedAt": _NULLABLE_TIME,
            "finishedAt": _NULLABLE_TIME,
            "durationMs": {"type": ["integer", "null"]},
            "actor": {"type": "string"},
            "resourceIds": {"type": "array", "items": {"type": "string"}},
            "cleanup": {
                "type": ["object", "null"],
                "description": "Once finished: status clean | leftovers, and what was left (the "
                "sweeper removes it)",
            },
            "resources": {"type": "array", "items": _ref("CheckResource")},
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "post",
        "/buildings/{building}/checks",
        "Start a go-live check of the building's mapped resources (runs in the background)",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": _ref("CheckStart"),
                        "example": {"resourceIds": ["r-boardroom4a"]},
                    }
                },
            },
            "responses": {
                "202": {
                    "description": "Queued; poll the Location",
                    "content": {"application/json": {"schema": _ref("Check")}},
                },
                "409": {
                    "description": "A check of this building is still running (`check_running`; "
                    "`runningCheckId` names it)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
                "422": {
                    "description": "No mapped resource (`no_mapped_resources`)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                },
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/checks",
        "Recent go-live checks of the building, newest first",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                *_paging(CheckConfig.list_limit, LIST_MAX, alias="limit"),
            ],
            "responses": {
                "200": _list(_ref("Check"), "A page of runs without their steps, newest first"),
                "400": PROBLEM,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/checks/{check}",
        "One go-live check: per resource, its ordered steps so far",
        "bearer",
        {
            "parameters": [*_path("building"), _CHECK_PARAMETER],
            "responses": {
                "200": {
                    "description": "The run; steps appear as they complete",
                    "content": {"application/json": {"schema": _ref("Check")}},
                },
                "400": PROBLEM,
                "404": PROBLEM,
            },
        },
    ),
]

LINKS: list[Link] = [
    (
        "post",
        "/buildings/{building}/checks",
        "GetCheck",
        "get",
        "/buildings/{building}/checks/{check}",
        {"building": "$request.path.building", "check": "$response.body#/id"},
    )
]

REASONS: Reasons = {
    ("post", "/buildings/{building}/checks"): {
        "409": ("check_running",),
        "422": ("no_mapped_resources", "not_connected", "reauth_required"),
    },
    ("get", "/buildings/{building}/checks/{check}"): {"404": ("check_not_found",)},
}
