"""OpenAPI operations of room analytics (issue 15): the query (JSON or CSV) and the rebuild.
The definitions are docs/ANALYTICS.md's, repeated in the descriptions so a client has them."""

from __future__ import annotations

from typing import Any

from shared.analytics.report import CSV_HEADER, GROUP_BY, POPULAR
from shared.analytics.service import MAX_DAYS, REBUILD_MAX_DAYS
from shared.api.openapi import ID_SCHEMA, Operation, Reasons
from shared.api.openapi import json_content as _json
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import query_parameter as _query
from shared.api.openapi import ref as _ref

_DATE = {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}
_MINUTES = {"type": "number", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0}

_DEFINITIONS = (
    "Definitions (docs/ANALYTICS.md): days are the building's local days (its time zone; a DST "
    "day has 23 or 25 hours). A booking is a busy block with showAs busy, tentative or oof (not "
    "a go-live check's test event), or a released booking (known from its attendance record); it "
    "is counted on its start's local day, and its minutes on every local day it holds the room "
    "(a released one until `releasedAt`). businessMinutes: one resource's business hours in the "
    "days (building setting, default Mon–Fri 08:00–18:00). bookedMinutes: booked minutes inside "
    "business hours; bookedMinutesOutsideHours: the rest. bookingRate = bookedMinutes / "
    "(resources × businessMinutes), null when businessMinutes is 0. adHoc: made less than the "
    "building's `adHocMinutes` (default 15) before its start, or after it started; planned: the "
    "rest (a booking without a recorded creation time counts as planned). checkInRequired: "
    "bookings whose attendance record says check-in applied; noShows: of those, the ones never "
    "checked in (released or marked no_show); noShowRate = noShows / checkInRequired, null when "
    "0. medianDurationMinutes: median booked length (end − start, whole minutes); "
    "medianLeadMinutes: median of start − createdAt (whole minutes, negative when made after the "
    "start). Medians are exact (the mean of the two middle values when even), null without "
    "bookings."
)

_METRICS: dict[str, Any] = {
    "resources": {**_COUNT, "description": "Resources counted (1 in a resource group)"},
    "businessMinutes": {**_MINUTES, "description": "One resource's business minutes"},
    "bookedMinutes": {**_MINUTES, "description": "Booked minutes inside business hours"},
    "bookedMinutesOutsideHours": _MINUTES,
    "bookingRate": {**_NULLABLE_NUMBER, "minimum": 0, "maximum": 1},
    "bookings": _COUNT,
    "adHoc": _COUNT,
    "planned": _COUNT,
    "checkInRequired": _COUNT,
    "noShows": _COUNT,
    "released": _COUNT,
    "noShowRate": {**_NULLABLE_NUMBER, "minimum": 0, "maximum": 1},
    "medianDurationMinutes": _NULLABLE_NUMBER,
    "medianLeadMinutes": _NULLABLE_NUMBER,
}
_POPULAR_ITEM = {
    "type": "object",
    "required": ["resourceId", "name", "bookingRate"],
    "properties": {"resourceId": {"type": "string"}, "name": {"type": "string"},
                   "bookingRate": {**_NULLABLE_NUMBER, "minimum": 0, "maximum": 1}},
}  # fmt: skip

SCHEMAS: dict[str, Any] = {
    "AnalyticsMetrics": {
        "type": "object",
        "required": list(_METRICS),
        "properties": _METRICS,
        "description": _DEFINITIONS,
    },
    "AnalyticsGroup": {
        "allOf": [
            _ref("AnalyticsMetrics"),
            {
                "type": "object",
                "required": ["key", "label"],
                "properties": {
                    "key": {
                        "type": "string",
                        "description": "day: YYYY-MM-DD; week: ISO week YYYY-Www; resource: its "
                        "id; company: its id, or `unattributed`",
                    },
                    "label": {"type": "string"},
                },
            },
        ]
    },
    "Analytics": {
        "type": "object",
        "required": [
            "buildingId",
            "from",
            "to",
            "timeZone",
            "groupBy",
            "totals",
            "groups",
            "popular",
        ],
        "properties": {
            "buildingId": {"type": "string"},
            "from": _DATE,
            "to": _DATE,
            "timeZone": {"type": "string"},
            "groupBy": {"enum": list(GROUP_BY)},
            "totals": _ref("AnalyticsMetrics"),
            "groups": {"type": "array", "items": _ref("AnalyticsGroup")},
            "popular": {
                "type": "object",
                "required": ["most", "least"],
                "description": f"The {POPULAR} resources with the highest and the lowest booking "
                "rate over the range (ties by id)",
                "properties": {
                    "most": {"type": "array", "maxItems": POPULAR, "items": _POPULAR_ITEM},
                    "least": {"type": "array", "maxItems": POPULAR, "items": _POPULAR_ITEM},
                },
            },
        },
    },
    "AnalyticsRebuild": {
        "type": "object",
        "required": ["buildingId", "from", "to", "days", "rollups", "rolledUp"],
        "properties": {
            "buildingId": {"type": "string"},
            "from": _DATE,
            "to": _DATE,
            "days": {**_COUNT, "description": "Local days recomputed"},
            "rollups": {**_COUNT, "description": "Resource-day rollups written"},
            "rolledUp": {
                "type": ["object", "null"],
                "description": "The days rollups now cover (`since`..`through`); the query "
                "computes every other day live",
                "properties": {"since": _DATE, "through": _DATE},
            },
        },
    },
}

_RANGE = [
    _query("from", "First building-local day, YYYY-MM-DD (inclusive)", _DATE, required=True),
    _query("to", "Last building-local day, YYYY-MM-DD (inclusive; not before `from`)", _DATE,
           required=True),
]  # fmt: skip

OPERATIONS: list[Operation] = [
    (
        "get",
        "/buildings/{building}/analytics",
        "Room analytics of a range of days: booking rate, ad hoc vs planned, no-shows, by day, "
        "week, resource or company, and the most and least popular resources",
        "bearer",
        {
            "description": f"At most {MAX_DAYS} days. Days rolled up (docs/ANALYTICS.md) are read "
            "from rollups; every other day (today, days not yet rolled up) is computed live from "
            "the stored busy blocks, so the answer is never stale. " + _DEFINITIONS,
            "parameters": [
                *_path("building"),
                *_RANGE,
                _query(
                    "resourceId", "Only this resource (404 when it is not registered)", ID_SCHEMA
                ),
                _query("groupBy", "The groups (default day)", {"enum": list(GROUP_BY)}),
                _query(
                    "format",
                    "json (default) or csv: one row per group, columns " + ", ".join(CSV_HEADER),
                    {"enum": ["json", "csv"]},
                ),
            ],
            "responses": {
                "200": {
                    "description": "The analytics; with format=csv the groups as CSV (UTF-8 with "
                    "a byte-order mark, every cell quoted, the same values as the JSON)",
                    "content": {
                        "application/json": {"schema": _ref("Analytics")},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
            },
        },
    ),
    (
        "post",
        "/buildings/{building}/analytics:rebuild",
        "Recompute the rollups of closed days from the stored busy blocks and attendance records",
        "bearer",
        {
            "description": f"At most {REBUILD_MAX_DAYS} days, synchronous; `to` must be a day "
            "that has closed (its next local midnight plus 30 minutes passed). Idempotent: "
            "rebuilding a day writes the same rollups.",
            "parameters": [*_path("building"), *_RANGE],
            "responses": {"200": _json(_ref("AnalyticsRebuild"), "What was recomputed")},
        },
    ),
]

REASONS: Reasons = {
    ("get", "/buildings/{building}/analytics"): {"404": ("resource_not_found",)},
}
