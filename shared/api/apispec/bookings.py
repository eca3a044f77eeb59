"""OpenAPI operations of bookings and availability (shared/bookings/, shared/availability/service.py)."""

from __future__ import annotations

from typing import Any

from shared.api.openapi import EMAIL_SCHEMA as _EMAIL
from shared.api.openapi import ID_SCHEMA as _ID
from shared.api.openapi import NULLABLE_STRING as _NULLABLE
from shared.api.openapi import PROBLEM, Link, Operation, Reasons, query_parameter
from shared.api.openapi import TIME_SCHEMA as _TIME
from shared.api.openapi import json_body as _body
from shared.api.openapi import json_content as _json
from shared.api.openapi import list_of as _list
from shared.api.openapi import paging_parameters as _paging
from shared.api.openapi import path_parameters as _path
from shared.api.openapi import ref as _ref
from shared.availability.service import MAX_RANGE, SLOT_MINUTES_MAX, SLOT_MINUTES_MIN
from shared.bookings.model import (
    IDEMPOTENCY_KEY_MAX,
    LIST_STATUSES,
    MAX_DURATION,
    MIN_DURATION,
    TITLE_MAX,
)

_BAD = {"400": PROBLEM}
_STATES = {"enum": ["checked_in", "releasing", "released", "no_show"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
# GET /bookings/{id} only: the booking's attendance record, null until checked in or examined.
_BOOKING_ATTENDANCE = {
    "oneOf": [{"type": "null"}, {"type": "object", "properties": {
        "state": _STATES, "required": {"type": "boolean"}, "checkedInAt": _NULLABLE_TIME,
        "releasedAt": _NULLABLE_TIME, "reason": _NULLABLE,
    }}],
    "description": "GET of one booking only (lists leave it out): see Attendance.",
}  # fmt: skip
_ANY_BOOKING = {"oneOf": [_ref("Booking"), _ref("ExternalBooking")]}
_READ_ONLY = (
    "`outlook_booking_read_only`: an Outlook booking (`o-...`) is changed or cancelled in "
    "Outlook, never through this API."
)
_RFC3339 = "RFC 3339 date-time with offset (`2026-12-01T09:00:00+01:00` or `Z`)"
_WHOLE = "whole seconds (a fraction other than zeros is a 400 naming the field)"
_MINUTES = int(MIN_DURATION.total_seconds() // 60)
_BOOKING_TIMES = (
    f"`start` and `end` are in {_WHOLE}; `end` is at least {_MINUTES} minute and at most "
    f"{MAX_DURATION.days} days after `start`, and in the future (else a 400 naming `end`)."
)


def _query(name: str, description: str, *, required: bool = False, **schema: Any) -> dict[str, Any]:
    return query_parameter(name, description, {"type": "string", **schema}, required=required)


_RANGE = [
    _query("from", f"Start of the range, {_RFC3339}", required=True, format="date-time"),
    _query(
        "to",
        f"End of the range (exclusive, after `from`, at most {MAX_RANGE.days} days later)",
        required=True,
        format="date-time",
    ),
]
_ATTRIBUTION = {
    "type": ["object", "null"],
    "properties": {
        "kind": {"enum": ["user", "company", "default_user", "unattributed"]},
        "companyId": _NULLABLE,
        "userEmail": _NULLABLE,
        "reason": {"type": "string"},
    },
}

SCHEMAS: dict[str, Any] = {
    "BookingInput": {
        "type": "object",
        "required": ["resourceId", "start", "end", "booker"],
        "additionalProperties": False,
        "description": f"Unknown fields are refused (400). {_BOOKING_TIMES}",
        "properties": {
            "resourceId": _ID,
            "start": {**_TIME, "description": f"{_RFC3339}, {_WHOLE}"},
            "end": {
                **_TIME,
                "description": f"At least {_MINUTES} minute after start, at most "
                f"{MAX_DURATION.days} days later, in the future; {_WHOLE}",
            },
            "title": {"type": "string", "maxLength": TITLE_MAX},
            "booker": {
                "type": "object",
                "required": ["email", "name"],
                "additionalProperties": False,
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
                },
            },
        },
    },
    "BookingPatch": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "description": "Unknown fields are refused (400). The booking as changed obeys the rules "
        f"of a new one: {_BOOKING_TIMES}",
        "properties": {"start": _TIME, "end": _TIME, "title": {"type": "string"}},
    },
    "Booking": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "source": {"const": "platform"},
            "status": {
                "enum": ["confirmed", "cancelled", "released"],
                "description": "released: cancelled by the no-show release (nobody checked in "
                "within the grace period, issue 15); its Outlook event is removed as on cancel.",
            },
            "syncState": {
                "enum": ["synced", "pending", "failed"],
                "description": "The Outlook event: written (synced), to be written by the outbox "
                "(pending), or given up on (failed, see lastError).",
            },
            "resourceId": {"type": "string"},
            "start": _TIME,
            "end": _TIME,
            "title": {"type": "string"},
            "booker": {
                "type": "object",
                "properties": {"email": {"type": "string"}, "name": {"type": "string"}},
            },
            "outlookEventId": _NULLABLE,
            "companyId": _NULLABLE,
            "attribution": _ATTRIBUTION,
            "lastError": {
                "type": ["object", "null"],
                "description": "reason: graph_unavailable, retries_exhausted, access_denied, "
                "calendar_not_found, event_not_found, reauth_required, not_connected, not_mapped, "
                "calendar_not_mapped, calendar_changed, ...",
                "properties": {
                    "reason": {"type": "string"},
                    "status": {"type": "integer"},
                    "code": {"type": "string"},
                    "at": _TIME,
                },
            },
            "attempts": {"type": "integer"},
            "createdAt": _TIME,
            "updatedAt": _TIME,
            "attendance": _BOOKING_ATTENDANCE,
        },
    },
    "ExternalBooking": {
        "type": "object",
        "description": "A booking made directly in Outlook (mirrored by sync).",
        "properties": {
            "id": {"type": "string"},
            "source": {"const": "outlook"},
            "status": {"const": "confirmed"},
            "resourceId": {"type": "string"},
            "start": _TIME,
            "end": _TIME,
            "title": {**_NULLABLE, "description": "only when the building stores subjects"},
            "showAs": {"type": "string"},
            "outlookEventId": _NULLABLE,
            "bookingId": _NULLABLE,
            "companyId": _NULLABLE,
            "attribution": _ATTRIBUTION,
            "attendance": _BOOKING_ATTENDANCE,
        },
    },
    "Attendance": {
        "type": "object",
        "description": "A booking's check-in and no-show release (issue 15). state: checked_in, "
        "releasing (the release timer claimed it; a check-in now is refused), released (a "
        "platform booking cancelled with status released, or an Outlook booking declined as the "
        "room), no_show (nobody checked in but it could not be released: reason delegated_mode, "
        "not_a_room_mailbox, room_is_organizer, ended, booking_cancelled). required: check-in "
        "applied to it (the timer examined it after the grace period with auto-release on).",
        "properties": {
            "bookingId": {"type": "string"},
            "resourceId": {"type": "string"},
            "state": _STATES,
            "required": {"type": "boolean"},
            "start": _TIME,
            "end": _TIME,
            "checkedInAt": _NULLABLE_TIME,
            "releasedAt": _NULLABLE_TIME,
            "reason": _NULLABLE,
            "by": {**_NULLABLE, "description": "who checked in: the body's `by`, else the caller"},
        },
    },
    "CheckIn": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "by": {
                "anyOf": [_EMAIL, _ID],
                "description": "On whose behalf: a person's email address, or the id of the "
                "panel or sensor (1–64 of A-Z a-z 0-9 . _ -). Default: the caller.",
            }
        },
    },
    "Availability": {
        "type": "object",
        "properties": {
            "start": _TIME,
            "end": _TIME,
            "slotMinutes": {"type": ["integer", "null"]},
            "resources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "resourceId": {"type": "string"},
                        "timeZone": {"type": "string"},
                        "busy": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "start": _TIME,
                                    "end": _TIME,
                                    "source": {"enum": ["platform", "outlook"]},
                                    "bookingId": _NULLABLE,
                                    "companyId": _NULLABLE,
                                    "showAs": {"type": "string"},
                                    "detail": {
                                        "enum": ["booking", "event", "freeBusy"],
                                        "description": "What the block was made from: a "
                                        "platform booking, an Outlook event, or free/busy "
                                        "only (a free/busy connection: status, start and end, "
                                        "no subject or organizer)",
                                    },
                                },
                            },
                        },
                        "free": {
                            "type": "array",
                            "description": "With slotMinutes: runs of free slots aligned to the "
                            "resource's local midnight, merged.",
                            "items": {
                                "type": "object",
                                "properties": {"start": _TIME, "end": _TIME},
                            },
                        },
                    },
                },
            },
        },
    },
}

OPERATIONS: list[Operation] = [
    (
        "post",
        "/buildings/{building}/bookings",
        "Book a mapped resource; the booking is written through to its Outlook calendar",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A repeated key returns the first booking (header "
                    "`Idempotent-Replayed: true`); with another body, 422.",
                    "schema": {"type": "string", "maxLength": IDEMPOTENCY_KEY_MAX},
                },
            ],
            "requestBody": _body(
                "BookingInput",
                {
                    "resourceId": "r-boardroom4a",
                    "start": "2027-03-01T09:00:00+01:00",
                    "end": "2027-03-01T10:00:00+01:00",
                    "title": "Quarterly review",
                    "booker": {"email": "ann@contoso.com", "name": "Ann Archer"},
                },
            ),
            "responses": {
                "201": _json(_ref("Booking"), "Booked (syncState says whether Outlook has it)"),
                **_BAD,
                "409": PROBLEM,
                "422": PROBLEM,
            },
            "description": "409 `slot_taken`: the slot overlaps a platform or Outlook booking; "
            "409 `request_in_progress`: the same Idempotency-Key is still being served. 422 "
            "`not_supported` (paid resource), `not_mapped`, `idempotency_key_reused`, "
            "`read_only_mapping` (the building's connection is free/busy only).",
        },
    ),
    (
        "get",
        "/buildings/{building}/bookings",
        "Platform and Outlook bookings in a range",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                *_RANGE,
                _query("resourceId", "Only this resource", pattern=_ID["pattern"], type="string"),
                _query(
                    "source", "Which bookings (default all)", enum=["platform", "outlook", "all"]
                ),
                _query(
                    "status",
                    "Which platform bookings: confirmed (default), cancelled or all; Outlook "
                    "bookings are confirmed (none with cancelled)",
                    enum=sorted(LIST_STATUSES),
                ),
                *_paging(),
            ],
            "description": "Ordered by (start, resourceId, id); the continuation is a cursor on "
            "that key, so no booking is lost or repeated across pages, also when many share a "
            "start time or the list changes between pages.",
            "responses": {
                "200": _list(_ANY_BOOKING, "A page, ordered by start"),
                **_BAD,
            },
        },
    ),
    (
        "get",
        "/buildings/{building}/bookings/{booking}",
        "One booking: a platform booking, or an Outlook one (`o-...`, as listed)",
        "bearer",
        {
            "parameters": _path("building", "booking"),
            "responses": {"200": _json(_ANY_BOOKING, "The booking"), "404": PROBLEM},
        },
    ),
    (
        "patch",
        "/buildings/{building}/bookings/{booking}",
        "Move or retitle a booking",
        "bearer",
        {
            "parameters": _path("building", "booking"),
            "requestBody": _body(
                "BookingPatch",
                {"start": "2027-03-01T10:00:00+01:00", "end": "2027-03-01T11:00:00+01:00"},
            ),
            "responses": {
                "200": _json(_ref("Booking"), "Updated"),
                **_BAD,
                "404": PROBLEM,
                "409": PROBLEM,
                "422": PROBLEM,
            },
            "description": "409 `slot_taken` (the new slot is booked), `booking_cancelled`, "
            "`concurrent_update`, " + _READ_ONLY + " 422 `read_only_mapping` (the building's "
            "connection is free/busy only).",
        },
    ),
    (
        "delete",
        "/buildings/{building}/bookings/{booking}",
        "Cancel a booking; its Outlook event is removed",
        "bearer",
        {
            "parameters": _path("building", "booking"),
            "responses": {
                "204": {"description": "Cancelled (also when it already was)"},
                "404": PROBLEM,
                "409": PROBLEM,
            },
            "description": "409 " + _READ_ONLY,
        },
    ),
    (
        "post",
        "/buildings/{building}/bookings/{booking}/checkin",
        "Check a booking in (a room panel, sensor gateway or app, for a person)",
        "bearer",
        {
            "parameters": _path("building", "booking"),
            "requestBody": {**_body("CheckIn", {"by": "ann@contoso.com"}), "required": False},
            "responses": {
                "201": _json(_ref("Attendance"), "Checked in"),
                "200": _json(_ref("Attendance"), "Already checked in: the first check-in"),
                **_BAD,
                "404": PROBLEM,
                "409": PROBLEM,
            },
            "description": "A platform booking (its id) or an Outlook booking (`o-...`), inside "
            "[start - earlyMinutes, start + graceMinutes] of the resource's autoRelease (its "
            "own, else the building's). 409 `checkin_too_early`, `checkin_too_late`, "
            "`booking_released` (the release timer claimed or released it), "
            "`booking_cancelled`, `concurrent_update`. Idempotent: a second check-in answers "
            "the stored record (200). Audited (`attendance.checkin`).",
        },
    ),
    (
        "get",
        "/buildings/{building}/availability",
        "Busy blocks (with provenance) and free slots, from Table Storage",
        "bearer",
        {
            "parameters": [
                *_path("building"),
                *_RANGE,
                _query(
                    "resourceId",
                    "Only this resource (must exist)",
                    pattern=_ID["pattern"],
                    type="string",
                ),
                _query(
                    "slotMinutes",
                    "Also list free time on this grid",
                    type="integer",
                    minimum=SLOT_MINUTES_MIN,
                    maximum=SLOT_MINUTES_MAX,
                ),
            ],
            "responses": {"200": _json(_ref("Availability"), "Per resource"), **_BAD},
        },
    ),
]

_BOOKINGS = "/buildings/{building}/bookings"
LINKS: list[Link] = [
    ("post", _BOOKINGS, name, method, _BOOKINGS + "/{booking}",
     {"building": "$request.path.building", "booking": "$response.body#/id"})
    for name, method in (("GetBooking", "get"), ("MoveBooking", "patch"), ("CancelBooking", "delete"))
]  # fmt: skip

_ONE = _BOOKINGS + "/{booking}"
_UNBOOKABLE = ("not_supported", "not_mapped", "read_only_mapping")
REASONS: Reasons = {
    ("post", _BOOKINGS): {
        "409": ("slot_taken", "request_in_progress", "concurrent_update"),
        "422": (*_UNBOOKABLE, "idempotency_key_reused"),
    },
    ("get", _ONE): {"404": ("booking_not_found",)},
    ("post", _ONE + "/checkin"): {
        "404": ("booking_not_found",),
        "409": (
            "checkin_too_early",
            "checkin_too_late",
            "booking_released",
            "booking_cancelled",
            "concurrent_update",
        ),
    },
    ("patch", _ONE): {
        "404": ("booking_not_found",),
        "409": (
            "slot_taken",
            "booking_cancelled",
            "booking_released",
            "concurrent_update",
            "outlook_booking_read_only",
        ),
        "422": _UNBOOKABLE,
    },
    ("delete", _ONE): {
        "404": ("booking_not_found",),
        "409": ("concurrent_update", "outlook_booking_read_only"),
    },
}
