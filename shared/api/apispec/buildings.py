"""OpenAPI operations of buildings themselves (issue 20): PUT, GET, DELETE, and the list."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import ID_SCHEMA as _ID
from shared.api.openapi import PROBLEM, Link, Operation, Reasons
from shared.api.openapi import json_body as _body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.directory.buildings import ADDRESS_MAX, INTERVALS_MAX, WEEKDAYS

_INTERVAL = {
    "type": "object",
    "required": ["start", "end"],
    "additionalProperties": False,
    "properties": {
        "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
        "end": {"type": "string", "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"},
    },
    "description": "Wall times in the building's zone; end after start (24:00 = midnight)",
}
_DAY = {
    "type": "array",
    "maxItems": INTERVALS_MAX,
    "items": _INTERVAL,
    "description": "Ascending, not overlapping; [] = closed",
}
_HOURS = {
    "type": "object",
    "additionalProperties": False,
    "properties": dict.fromkeys(WEEKDAYS, _DAY),
}

EXAMPLE = {
    "name": "Amsterdam HQ",
    "timeZone": "Europe/Amsterdam",
    "businessHours": {
        "mon": [{"start": "08:00", "end": "18:00"}],
        "fri": [{"start": "08:00", "end": "12:30"}, {"start": "13:00", "end": "17:00"}],
    },
    "address": "Herengracht 1, Amsterdam",
}

SCHEMAS: dict[str, Any] = {
    "BuildingInput": {
        "type": "object",
        "required": ["name", "timeZone"],
        "additionalProperties": False,
        "description": "PUT replaces. Unknown fields are refused (400); `id` is accepted and "
        "ignored, so what GET returns can be sent back.",
        "properties": {
            "id": {"description": "Accepted and ignored (GET returns it)"},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "timeZone": _ref("TimeZone"),
            "businessHours": {
                **_HOURS,
                "type": ["object", "null"],
                "description": "Per weekday; a day left out is closed. Omitted or null: Monday "
                "to Friday 08:00–18:00.",
            },
            "address": {"type": ["string", "null"], "maxLength": ADDRESS_MAX},
        },
    },
    "Building": {
        "type": "object",
        "required": ["id", "name", "timeZone", "businessHours", "address"],
        "properties": {
            "id": _ID,
            "name": {"type": "string"},
            "timeZone": {"type": "string"},
            "businessHours": {**_HOURS, "required": list(WEEKDAYS)},
            "address": {"type": ["string", "null"]},
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "get",
        "/buildings",
        "The buildings the caller may reach",
        "bearer",
        {
            "description": "Portal.Service: every building. Building.Admin: the buildings of its "
            "`buildings` claim that exist. Ordered by id.",
            "responses": {"200": _list(_ref("Building"), "The buildings (one page)")},
        },
    ),
    (
        "put",
        "/buildings/{building}",
        "Create or replace a building",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": _body("BuildingInput", EXAMPLE),
            "description": "Portal.Service, or a Building.Admin of this building. 400 names every "
            "bad field (`timeZone` not an IANA zone, business hours out of order, ...).",
            "responses": {
                "200": _json(_ref("Building"), "Replaced"),
                "201": _json(_ref("Building"), "Created"),
            },
        },
    ),
    (
        "get",
        "/buildings/{building}",
        "One building",
        "bearer",
        {
            "parameters": _path("building"),
            "responses": {"200": _json(_ref("Building"), "The building"), "404": PROBLEM},
            "description": "404 `building_not_found` for a building that does not exist.",
        },
    ),
    (
        "delete",
        "/buildings/{building}",
        "Delete a building (Portal.Service only)",
        "bearer",
        {
            "parameters": _path("building"),
            "description": "409 `building_in_use` while the building has a connection, "
            "mappings, resources, users or companies; `inUse` names each, in the order to "
            "remove them. Its settings go with it; bookings, audit records, checks and webhooks "
            "stay. 403 `service_only` for a Building.Admin.",
            "responses": {
                "204": {"description": "Gone (also when it did not exist)"},
                "409": {
                    "description": "Still in use",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Problem"},
                                    {
                                        "type": "object",
                                        "required": ["inUse"],
                                        "properties": {
                                            "inUse": {
                                                "type": "array",
                                                "items": {
                                                    "enum": [
                                                        "connection",
                                                        "mappings",
                                                        "resources",
                                                        "users",
                                                        "companies",
                                                    ]
                                                },
                                            }
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
            },
        },
    ),
]

_BUILDING = "/buildings/{building}"
_SAME = {"building": "$response.body#/id"}
LINKS: list[Link] = [
    ("put", _BUILDING, "GetBuilding", "get", _BUILDING, _SAME),
    ("put", _BUILDING, "ReplaceBuilding", "put", _BUILDING, _SAME),
    ("put", _BUILDING, "DeleteBuilding", "delete", _BUILDING, _SAME),
]

REASONS: Reasons = {
    ("get", _BUILDING): {"404": ("building_not_found",)},
    ("delete", _BUILDING): {"403": ("service_only",), "409": ("building_in_use",)},
}
