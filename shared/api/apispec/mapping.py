"""OpenAPI operations of calendar discovery and resource ↔ calendar mapping (shared/mapping/service.py)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import EMAIL_SCHEMA as _EMAIL
from shared.api.openapi import NULLABLE_STRING as _NULLABLE_STRING
from shared.api.openapi import PROBLEM, Operation, Reasons, query_parameter
from shared.api.openapi import json_body as _body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.mapping.bulk import BULK_MAX
from shared.mapping.service import CALENDAR_ID_MAX

_NOT_CONNECTED = (
    "422 `not_connected` (no live connection) or `reauth_required` (an administrator must "
    "reconnect)."
)


def _query(name: str, description: str) -> dict[str, Any]:
    return query_parameter(name, description, _EMAIL)


SCHEMAS: dict[str, Any] = {
    "Calendar": {
        "type": "object",
        "required": ["id", "name", "owner", "kind", "canEdit", "mailbox"],
        "properties": {
            "id": {
                "type": ["string", "null"],
                "description": "The id to map (Graph calendar id). For a room: its default "
                "calendar's id in application mode, or the account's copy of it when it was "
                "shared with the account (delegated). null for a room this connection cannot "
                "read (see reason). `<default>` (free/busy connections): the mailbox's default "
                "calendar, for a room whose calendar free/busy rights do not show.",
            },
            "name": {"type": "string"},
            "owner": {
                "type": "object",
                "properties": {"name": _NULLABLE_STRING, "address": _NULLABLE_STRING},
            },
            "kind": {
                "enum": ["room", "personal", "shared"],
                "description": "room: a room mailbox; personal: the connected account's own "
                "calendar (application mode: the named mailbox's own); shared: a calendar "
                "another person shared with the account",
            },
            "canEdit": {
                "type": "boolean",
                "description": "Only these can be mapped (on a free/busy connection: every "
                "calendar with an id, read-only)",
            },
            "mailbox": {
                "type": "string",
                "description": "Whose calendar it is (the owner's address); send it back with "
                "`id` to map",
            },
            "reason": {
                **_NULLABLE_STRING,
                "description": "Why canEdit is false: access_denied (outside the app's Exchange "
                "RBAC scope, or not shared with the account), calendar_not_found, not_writable "
                "(read-only), unavailable (Graph failed; try again), free_busy_only (the "
                "connection reads free/busy only: mappable, never written)",
            },
            "mappedResourceId": {
                **_NULLABLE_STRING,
                "description": "The resource of this building mapped to this calendar",
            },
        },
    },
    "RoomList": {
        "type": "object",
        "properties": {"name": _NULLABLE_STRING, "address": _EMAIL},
    },
    "MappingInput": {
        "type": "object",
        "required": ["calendarId", "mailbox"],
        "additionalProperties": False,
        "description": "A calendar from GET /buildings/{building}/calendars (`id`, `mailbox`).",
        "properties": {
            "calendarId": {"type": "string", "minLength": 1, "maxLength": CALENDAR_ID_MAX},
            "mailbox": _EMAIL,
        },
    },
    "Place": {
        "type": "object",
        "required": ["id", "type", "name", "bookable", "children"],
        "properties": {
            "id": {"type": "string", "description": "The Places id (not stable on Graph)"},
            "type": {"enum": ["building", "floor", "section", "room", "workspace", "desk"]},
            "name": {"type": "string"},
            "parentId": _NULLABLE_STRING,
            "mailbox": {**_NULLABLE_STRING, "description": "Its booking mailbox, if any"},
            "mode": {"enum": ["reservable", "dropIn", "assigned", "unavailable", None]},
            "capacity": {"type": ["integer", "null"]},
            "bookable": {"type": "boolean"},
            "reason": {
                **_NULLABLE_STRING,
                "description": "Why a desk, workspace or room is not bookable: assigned, "
                "unavailable, no_mailbox (null for bookable places and containers)",
            },
            "resourceId": {
                **_NULLABLE_STRING,
                "description": "The resource of this building imported from or mapped to its "
                "mailbox",
            },
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Place"}},
        },
    },
    "PlacesImportInput": {
        "type": "object",
        "additionalProperties": False,
        "description": "Optional; without placeIds every bookable place is imported.",
        "properties": {
            "timeZone": {
                "$ref": "#/components/schemas/TimeZone",
                "description": "IANA zone of the resources created (existing ones keep theirs); "
                "required when a resource is to be created",
            },
            "placeIds": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {"type": "string", "minLength": 1, "maxLength": 256},
                "description": "Places to import; a building, floor or section brings its "
                "bookable descendants (others are skipped), a named desk that is not bookable "
                "is rejected",
            },
        },
    },
    "PlacesImportReport": {
        "type": "object",
        "properties": {
            name: {"type": "array", "items": {"type": "object"}}
            for name in ("created", "updated", "unchanged", "renamed", "skipped", "missing")
        },
    },
    "MappingsImportInput": {
        "type": "object",
        "additionalProperties": False,
        "required": ["mappings"],
        "properties": {
            "timeZone": {
                "$ref": "#/components/schemas/TimeZone",
                "description": "IANA zone of the resources created (existing ones keep theirs); "
                "required when a row's resource does not exist yet",
            },
            "mappings": {
                "type": "array",
                "minItems": 1,
                "maxItems": BULK_MAX,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["resourceId", "mailbox"],
                    "properties": {
                        "resourceId": {
                            "type": "string",
                            "pattern": "^[A-Za-z0-9._-]{1,64}$",
                            "description": "The resource to map; created (kind room) when it "
                            "does not exist",
                        },
                        "mailbox": {**_EMAIL, "description": "The room's email address"},
                        "name": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": 200,
                            "description": "A created resource's name (default: the room's "
                            "display name); an existing resource keeps its own",
                        },
                    },
                },
            },
        },
    },
    "MappingsImportReport": {
        "type": "object",
        "required": ["created", "updated", "unchanged"],
        "properties": {
            name: {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["resourceId", "mailbox"],
                    "properties": {"resourceId": {"type": "string"}, "mailbox": {"type": "string"}},
                },
            }
            for name in ("created", "updated", "unchanged")
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "get",
        "/buildings/{building}/calendars",
        "Calendars this building's connection may map",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                _query(
                    "mailbox",
                    "Only this mailbox's calendars (e.g. a room the Places API does not list "
                    "yet, or a mailbox in the app's Exchange RBAC scope): 422 `mailbox_not_found` "
                    "or `access_denied` when the connection cannot read it",
                ),
                _query(
                    "roomList",
                    "Only the rooms of this room list (its email address, see "
                    "GET /buildings/{building}/roomlists); 422 `room_list_not_found`",
                ),
            ],
            "description": "Delegated: the account's own calendars, calendars shared with it, "
            "and (with Place.Read.All) the tenant's rooms. Application: the tenant's rooms "
            "(Places API), each probed for access; 422 `places_not_granted` without "
            "Place.Read.All (use ?mailbox=). " + _NOT_CONNECTED,
            "responses": {
                "200": _list(_ref("Calendar"), "Calendars (one page: nextLink is null)"),
                "400": PROBLEM,
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/roomlists",
        "Room lists of the connected tenant (Places API)",
        "bearer",
        {
            "parameters": _path("building"),
            "description": "422 `places_not_granted` without Place.Read.All. " + _NOT_CONNECTED,
            "responses": {
                "200": _list(_ref("RoomList"), "Room lists (one page: nextLink is null)"),
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
    (
        "put",
        "/buildings/{building}/resources/{resource}/mapping",
        "Map a resource to a calendar (starts its sync)",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "requestBody": _body(
                "MappingInput",
                {"calendarId": "AAMkADk0ZmE3", "mailbox": "boardroom4a@contoso.com"},
            ),
            "description": "The calendar is read through Microsoft Graph and must be visible to "
            "the connection and writable. 422 reasons: `not_supported` (paid resource), "
            "`calendar_not_found`, `access_denied`, `not_writable`, `not_connected`, "
            "`reauth_required`. 409 `calendar_mapped`: the calendar is mapped to another "
            "resource (of any building). Mapping the same calendar again is a 200 that changes "
            "nothing; mapping another calendar releases the previous one. The resource's sync "
            "status becomes `pending` (`awaiting_first_sync`) until the first sync.",
            "responses": {
                "200": _json(_ref("Resource"), "The mapped resource"),
                "400": PROBLEM,
                "404": PROBLEM,
                "409": PROBLEM,
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
    (
        "delete",
        "/buildings/{building}/resources/{resource}/mapping",
        "Remove a resource's calendar mapping",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "description": "Idempotent (204 also when it was not mapped); the calendar is "
            "never read or written again. 404 for an unknown resource.",
            "responses": {"204": {"description": "Unmapped"}, "404": PROBLEM},
        },
    ),
    (
        "get",
        "/buildings/{building}/places",
        "The connected tenant's Microsoft Places: buildings, floors, sections, rooms, desks, "
        "workspaces",
        "bearer",
        {
            "parameters": _path("building"),
            "description": "A tree by parentId (`value`: the roots), each place with its mode, "
            "mailbox, and whether it can be booked (desks and workspaces in assigned or "
            "unavailable mode cannot; `reason` says why). 422 `places_not_granted` without "
            "Place.Read.All. " + _NOT_CONNECTED,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["value", "nextLink"],
                        "properties": {
                            "value": {"type": "array", "items": _ref("Place")},
                            "nextLink": {"type": "null"},
                        },
                    },
                    "The places",
                ),
                "400": PROBLEM,
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
    (
        "post",
        "/buildings/{building}/places:import",
        "Create or update resources from Microsoft Places and map each to its mailbox",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": _ref("PlacesImportInput"),
                        "example": {"timeZone": "Europe/Amsterdam"},
                    }
                },
            },
            "description": "All or nothing: any selected place that cannot be imported (unknown, "
            "not bookable, its calendar unreadable or not writable, its resource id taken) → 422 "
            "`rows_rejected` with `rejected` listing each, nothing written. Keyed by mailbox: a "
            "re-run changes nothing (`unchanged`); renamed places rename their resource "
            "(`renamed`); resources whose place is gone are reported (`missing`), never "
            "deleted. Rooms become kind room, desks desk, workspaces amenity, with capacity and "
            "floor/section labels. " + _NOT_CONNECTED,
            "responses": {
                "200": _json(_ref("PlacesImportReport"), "What the import did"),
                "400": PROBLEM,
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
    (
        "post",
        "/buildings/{building}/mappings:import",
        "Map many resources to rooms by room email in one request",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("MappingsImportInput"),
                        "example": {
                            "timeZone": "Europe/Amsterdam",
                            "mappings": [
                                {"resourceId": "board-4a", "mailbox": "boardroom4a@contoso.com"},
                                {
                                    "resourceId": "huddle-4b",
                                    "mailbox": "huddle4b@contoso.com",
                                    "name": "Huddle 4B",
                                },
                            ],
                        },
                    }
                },
            },
            "description": f"1–{BULK_MAX} rows (else 400 naming `mappings`). Each row's "
            "mailbox must be a room the Places API lists for this connection (Place.Read.All, "
            "else 422 `places_not_granted`); its calendar is probed as GET /calendars does and "
            "mapped as PUT .../mapping does (one calendar, one resource). A resource that does "
            "not exist is created as a room. All or nothing: any bad row (malformed, its "
            "resource id or mailbox twice in the request, no such mailbox, not a room, "
            "calendar unreadable or not writable, paid resource, calendar mapped to another "
            "resource) → 422 `rows_rejected` with `rejected: [{row, resourceId, mailbox, field, "
            "error}]` and `errors` naming `mappings[<n>].<field>`, nothing written. A re-run "
            "changes nothing (`unchanged`); a resource mapped to another calendar is re-mapped "
            "(`updated`). 409 `calendar_mapped`: a calendar was mapped elsewhere while the "
            "rows were written (earlier rows stay mapped; a re-run converges). Every mapped "
            "room's first full sync is queued. Audited (`mappings.import`). " + _NOT_CONNECTED,
            "responses": {
                "200": _json(_ref("MappingsImportReport"), "What the import did"),
                "400": PROBLEM,
                "409": PROBLEM,
                "422": PROBLEM,
                "503": PROBLEM,
            },
        },
    ),
]

_CONNECTED = ("not_connected", "reauth_required")
_MAPPING = "/buildings/{building}/resources/{resource}/mapping"
REASONS: Reasons = {
    ("get", "/buildings/{building}/calendars"): {
        "422": (
            *_CONNECTED,
            "places_not_granted",
            "mailbox_not_found",
            "room_list_not_found",
            "access_denied",
        ),
    },
    ("get", "/buildings/{building}/roomlists"): {"422": (*_CONNECTED, "places_not_granted")},
    ("put", _MAPPING): {
        "404": ("resource_not_found",),
        "409": ("calendar_mapped", "concurrent_update"),
        "422": (
            *_CONNECTED,
            "not_supported",
            "calendar_not_found",
            "access_denied",
            "not_writable",
        ),
    },
    ("delete", _MAPPING): {"404": ("resource_not_found",), "409": ("concurrent_update",)},
    ("post", "/buildings/{building}/mappings:import"): {
        "409": ("calendar_mapped", "concurrent_update"),
        "422": (*_CONNECTED, "places_not_granted", "rows_rejected"),
    },
}
