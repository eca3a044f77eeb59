"""OpenAPI operations of the building admin routes: resources, companies, users, settings."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import EMAIL_SCHEMA as _EMAIL
from shared.api.openapi import ID_SCHEMA as _ID
from shared.api.openapi import NULLABLE_STRING as _NULLABLE
from shared.api.openapi import NULLABLE_TIME as _NULLABLE_TIME
from shared.api.openapi import PROBLEM, Link, Operation, Reasons
from shared.api.openapi import json_body as _body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import paging_parameters as _paging
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.core.addresses import DOMAIN_MAX
from shared.directory.registry import CAPACITY_MAX, KINDS, LABEL_MAX, time_zones
from shared.directory.userimport import IMPORT_MAX_ROWS

# Not only blanks (the server strips them): at least one non-space character.
_NAME = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}
_IGNORED: dict[str, Any] = {"description": "Accepted and ignored (GET returns it)"}
_LABEL = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": LABEL_MAX,
    "description": "Where it is: a floor or section label (a Places import fills them in)",
}


SCHEMAS: dict[str, Any] = {
    "TimeZone": {
        "type": "string",
        "description": "IANA time zone, e.g. Europe/Amsterdam (this system's tz database)",
        "enum": time_zones(),
    },
    "ResourceInput": {
        "type": "object",
        "required": ["name", "kind", "timeZone"],
        "additionalProperties": False,
        "description": "Unknown fields are refused (400); `id` and `sync` are accepted and ignored.",
        "properties": {
            "id": _IGNORED,
            "sync": _IGNORED,
            "name": _NAME,
            "kind": {"enum": list(KINDS)},
            "paid": {"type": "boolean", "default": False},
            "timeZone": _ref("TimeZone"),
            "capacity": {"type": ["integer", "null"], "minimum": 0, "maximum": CAPACITY_MAX},
            "floor": _LABEL,
            "section": _LABEL,
            "autoRelease": {
                "oneOf": [{"type": "null"}, _ref("AutoRelease")],
                "description": "This resource's no-show release, overriding the building's "
                "settings `autoRelease` (null or absent: the building's applies).",
            },
        },
    },
    "Sync": {
        "type": "object",
        "required": ["status", "reason", "calendar", "lastSyncAt", "lagSeconds"],
        "properties": {
            "status": {"enum": ["synced", "not_synced", "not_supported", "pending", "error"]},
            "reason": {
                **_NULLABLE,
                "description": "What the admin can act on: paid_resource, not_mapped, "
                "calendar_not_found, access_denied, reauth_required, subscription_failed, "
                "throttled, disconnected, ...",
            },
            "calendar": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "name": _NULLABLE,
                            "mailbox": _NULLABLE,
                        },
                    },
                ]
            },
            "lastSyncAt": _NULLABLE_TIME,
            "lagSeconds": {"type": ["integer", "null"]},
        },
    },
    "Resource": {
        "type": "object",
        "properties": {
            "id": _ID,
            "name": _NAME,
            "kind": {"enum": list(KINDS)},
            "paid": {"type": "boolean"},
            "timeZone": {"type": "string"},
            "capacity": {"type": ["integer", "null"]},
            "floor": _LABEL,
            "section": _LABEL,
            "autoRelease": {"oneOf": [{"type": "null"}, _ref("AutoRelease")]},
            "sync": _ref("Sync"),
        },
    },
    "CompanyInput": {
        "type": "object",
        "required": ["name", "domains"],
        "additionalProperties": False,
        "properties": {
            "id": _IGNORED,
            "name": _NAME,
            "domains": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "items": {"type": "string", "minLength": 1, "maxLength": DOMAIN_MAX},
                "description": "Domain names; stored lower-cased (IDN in ASCII form). A subdomain "
                "is a different domain: list it to match it.",
            },
        },
    },
    "Company": {
        "type": "object",
        "properties": {
            "id": _ID,
            "name": _NAME,
            "domains": {"type": "array", "items": {"type": "string"}},
        },
    },
    "UserInput": {
        "type": "object",
        "required": ["name", "companyId"],
        "additionalProperties": False,
        "properties": {"email": _IGNORED, "name": _NAME, "companyId": _ID},
    },
    "User": {
        "type": "object",
        "properties": {"email": _EMAIL, "name": _NAME, "companyId": _ID},
    },
    "UserImportRow": {
        "type": "object",
        "required": ["email", "name", "companyId"],
        "additionalProperties": False,
        "description": "Unknown fields reject the row (422), as PUT /users/{email} refuses them.",
        "properties": {"email": _EMAIL, "name": _NAME, "companyId": _ID},
    },
    "ImportReport": {
        "type": "object",
        "required": ["imported", "rejected"],
        "properties": {
            "imported": {"type": "integer"},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["row", "error"],
                    "properties": {
                        "row": {
                            "type": "integer",
                            "description": "1 = the first user (after the CSV header)",
                        },
                        "error": {"type": "string"},
                    },
                },
            },
        },
    },
    "Settings": {
        "type": "object",
        "additionalProperties": False,
        "description": "PUT replaces: omitted fields take their defaults; unknown fields are refused.",
        "properties": {
            "defaultUserEmail": {
                "type": ["string", "null"],
                "format": "email",
                "minLength": 1,
                "description": "A registered user of the building (else 422 unknown_user); bookers "
                "whose domain matches several companies are attributed to this user. Default null.",
            },
            "storeExternalSubjects": {
                "type": "boolean",
                "default": False,
                "description": "Privacy mode is on while this is false (the default): no subject, "
                "body, attendee or location text of an Outlook event is stored, logged or audited; "
                "only its times, showAs and attribution (the company, by registered user or the "
                "organizer's domain; the organizer's address only when it is a registered user). "
                "Turning it on stores subjects of events synced from then on; turning it off "
                "stops storing them and removes those stored meanwhile.",
            },
            "autoRelease": {"$ref": "#/components/schemas/AutoRelease"},
            "adHocMinutes": {
                "type": "integer",
                "minimum": 0,
                "maximum": 1440,
                "default": 15,
                "description": "Analytics: a booking made less than this many minutes before its "
                "start, or after it started, is ad hoc; the rest are planned.",
            },
        },
    },
    "AutoRelease": {
        "type": "object",
        "additionalProperties": False,
        "description": "No-show release (opt-in). A booking that requires check-in and has none "
        "graceMinutes after its start is released: a platform booking is cancelled (status "
        "released), an Outlook booking on a room mailbox connected in application mode is "
        "declined as the room; where that is impossible it is marked no_show and left alone.",
        "properties": {
            "enabled": {"type": "boolean", "default": False},
            "graceMinutes": {"type": "integer", "minimum": 1, "maximum": 240, "default": 10},
            "earlyMinutes": {
                "type": "integer",
                "minimum": 0,
                "maximum": 120,
                "default": 15,
                "description": "Check-in opens this many minutes before the start.",
            },
            "recurringStrikes": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": 52,
                "default": None,
                "description": "This many released occurrences of a series in a row decline the "
                "rest of the series; null: never.",
            },
        },
    },
}

_BAD = {"400": PROBLEM}

OPERATIONS: list[Operation] = [
    (
        "put",
        "/buildings/{building}/resources/{resource}",
        "Create or replace a resource (its calendar mapping is kept)",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "requestBody": _body(
                "ResourceInput",
                {
                    "name": "Board Room 4A",
                    "kind": "room",
                    "timeZone": "Europe/Amsterdam",
                    "capacity": 12,
                },
            ),  # fmt: skip,
            "responses": {
                "200": _json(_ref("Resource"), "Replaced"),
                "201": _json(_ref("Resource"), "Created"),
                **_BAD,
                "422": PROBLEM,
            },
            "description": "400 names every bad field. 422 `resource_mapped`: a mapped resource "
            "cannot become paid.",
        },
    ),
    (
        "get",
        "/buildings/{building}/resources",
        "Resources of the building with their sync status",
        "bearer",
        {
            "parameters": [*_path("building"), *_paging()],
            "responses": {"200": _list(_ref("Resource"), "A page, ordered by id"), **_BAD},
        },
    ),
    (
        "get",
        "/buildings/{building}/resources/{resource}",
        "One resource with its sync status",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "responses": {"200": _json(_ref("Resource"), "The resource"), "404": PROBLEM},
        },
    ),
    (
        "delete",
        "/buildings/{building}/resources/{resource}",
        "Delete a resource (unmapping it first)",
        "bearer",
        {
            "parameters": _path("building", "resource"),
            "responses": {"204": {"description": "Gone (also when it did not exist)"}},
        },
    ),
    (
        "put",
        "/buildings/{building}/companies/{company}",
        "Create or replace a company and its email domains",
        "bearer",
        {
            "parameters": _path("building", "company"),
            "requestBody": _body("CompanyInput", {"name": "Contoso", "domains": ["contoso.com"]}),
            "responses": {
                "200": _json(_ref("Company"), "Replaced"),
                "201": _json(_ref("Company"), "Created"),
                **_BAD,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/companies",
        "Companies of the building",
        "bearer",
        {
            "parameters": [*_path("building"), *_paging()],
            "responses": {"200": _list(_ref("Company"), "A page, ordered by id"), **_BAD},
        },
    ),
    (
        "get",
        "/buildings/{building}/companies/{company}",
        "One company",
        "bearer",
        {
            "parameters": _path("building", "company"),
            "responses": {"200": _json(_ref("Company"), "The company"), "404": PROBLEM},
        },
    ),
    (
        "delete",
        "/buildings/{building}/companies/{company}",
        "Delete a company",
        "bearer",
        {
            "parameters": _path("building", "company"),
            "responses": {
                "204": {"description": "Gone (also when it did not exist)"},
                "409": PROBLEM,
            },
            "description": "409 `company_in_use` while registered users belong to it.",
        },
    ),
    (
        "put",
        "/buildings/{building}/users/{email}",
        "Register or update a user",
        "bearer",
        {
            "parameters": _path("building", "email"),
            "requestBody": _body("UserInput", {"name": "Ann Archer", "companyId": "contoso"}),
            "responses": {
                "200": _json(_ref("User"), "Replaced"),
                "201": _json(_ref("User"), "Created"),
                **_BAD,
                "422": PROBLEM,
            },
            "description": "422 `unknown_company` when companyId names no company of the building.",
        },
    ),
    (
        "get",
        "/buildings/{building}/users/{email}",
        "One registered user",
        "bearer",
        {
            "parameters": _path("building", "email"),
            "responses": {"200": _json(_ref("User"), "The user"), "404": PROBLEM},
        },
    ),
    (
        "delete",
        "/buildings/{building}/users/{email}",
        "Remove a registered user",
        "bearer",
        {
            "parameters": _path("building", "email"),
            "responses": {
                "204": {"description": "Gone (also when it did not exist)"},
                "409": PROBLEM,
            },
            "description": "409 `user_is_default` for the building's default user.",
        },
    ),
    (
        "get",
        "/buildings/{building}/users",
        "Registered users, one page at a time",
        "bearer",
        {
            "parameters": [*_path("building"), *_paging()],
            "responses": {"200": _list(_ref("User"), "A page, ordered by address"), **_BAD},
        },
    ),
    (
        "post",
        "/buildings/{building}/users:import",
        "Register users in bulk (all or nothing)",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {
                        "schema": {"type": "string"},
                        "example": "email,name,companyId\nann@contoso.com,Ann,contoso\n",
                    },
                    "application/json": {
                        "schema": {"type": "array", "items": _ref("UserImportRow")},
                        "example": [
                            {"email": "ann@contoso.com", "name": "Ann", "companyId": "contoso"}
                        ],
                    },
                },
            },
            "description": "CSV (RFC 4180, UTF-8, header naming email, name, companyId in any "
            "order and case, and no other column) or a JSON array of objects; at most "
            f"{IMPORT_MAX_ROWS} users. Every row is validated first: a bad address, a missing "
            "name, an unknown company, an address repeated in the file or an unknown field "
            "(JSON; in CSV a value under no column, reported as `column <n>`) rejects the row. "
            "Any rejected row → 422 (problem+json, reason `rows_rejected`, with `imported: 0` "
            "and every rejected row) and nothing is written. Otherwise every user is upserted "
            "(existing users updated, others untouched) and the answer is 200 with "
            "`rejected: []`. A malformed file (not UTF-8, bad quoting, no header) is a 400; so "
            "is a header that lacks a column, names an unknown one or one twice (naming "
            "`header`; blank header cells are no column).",
            "responses": {
                "200": _json(_ref("ImportReport"), "Every user imported"),
                **_BAD,
                "422": {
                    "description": "Rows rejected; nothing imported",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "allOf": [
                                    {"$ref": "#/components/schemas/Problem"},
                                    _ref("ImportReport"),
                                ]
                            }
                        }
                    },
                },
            },
        },
    ),
    (
        "put",
        "/buildings/{building}/settings",
        "Replace the building's settings",
        "bearer",
        {
            "parameters": _path("building"),
            "requestBody": _body(
                "Settings", {"defaultUserEmail": None, "storeExternalSubjects": False}
            ),
            "responses": {"200": _json(_ref("Settings"), "Stored"), **_BAD, "422": PROBLEM},
        },
    ),
    (
        "get",
        "/buildings/{building}/settings",
        "The building's settings (defaults where never set)",
        "bearer",
        {
            "parameters": _path("building"),
            "responses": {"200": _json(_ref("Settings"), "Current settings")},
        },
    ),
]

_RESOURCE = "/buildings/{building}/resources/{resource}"
_COMPANY = "/buildings/{building}/companies/{company}"
_USER = "/buildings/{building}/users/{email}"
_SAME_BUILDING = {"building": "$request.path.building"}
LINKS: list[Link] = [
    *(
        ("put", _RESOURCE, name, method, path, {**_SAME_BUILDING, "resource": "$response.body#/id"})
        for name, method, path in (
            ("GetResource", "get", _RESOURCE),
            ("ReplaceResource", "put", _RESOURCE),
            ("DeleteResource", "delete", _RESOURCE),
        )
    ),
    ("put", _COMPANY, "GetCompany", "get", _COMPANY, {**_SAME_BUILDING, "company": "$response.body#/id"}),
    ("put", _COMPANY, "ReplaceCompany", "put", _COMPANY, {**_SAME_BUILDING, "company": "$response.body#/id"}),
    ("put", _COMPANY, "DeleteCompany", "delete", _COMPANY, {**_SAME_BUILDING, "company": "$response.body#/id"}),
    *(
        ("put", _USER, name, method, _USER, {**_SAME_BUILDING, "email": "$request.path.email"})
        for name, method in (("GetUser", "get"), ("ReplaceUser", "put"), ("DeleteUser", "delete"))
    ),
]  # fmt: skip

_CONCURRENT = ("concurrent_update",)
REASONS: Reasons = {
    ("put", _RESOURCE): {"409": _CONCURRENT, "422": ("resource_mapped",)},
    ("get", _RESOURCE): {"404": ("resource_not_found",)},
    ("delete", _RESOURCE): {"409": _CONCURRENT},
    ("get", _COMPANY): {"404": ("company_not_found",)},
    ("delete", _COMPANY): {"409": ("company_in_use",)},
    ("put", _USER): {"422": ("unknown_company",)},
    ("get", _USER): {"404": ("user_not_found",)},
    ("delete", _USER): {"409": ("user_is_default",)},
    ("post", "/buildings/{building}/users:import"): {"422": ("rows_rejected",)},
    ("put", "/buildings/{building}/settings"): {"422": ("unknown_user",)},
}
