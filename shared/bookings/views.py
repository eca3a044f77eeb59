"""The wire form of bookings: what the bookings routes answer (docs/API.md).

A platform booking (`source: platform`) and an Outlook booking of a mapped resource
(`source: outlook`, read from its busy block) share the list route, ordered by start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict, cast

from shared.availability.busy import BusyBlock
from shared.bookings.model import Booking
from shared.core.times import utc_z


class BookerOut(TypedDict):
    email: str
    name: str


class ErrorOut(TypedDict, total=False):
    reason: str
    status: int
    code: str
    at: str


class AttributionOut(TypedDict):
    kind: str
    companyId: str | None
    userEmail: str | None
    reason: str


class BookingOut(TypedDict):
    id: str
    source: Literal["platform"]
    status: str
    syncState: str
    resourceId: str
    start: str
    end: str
    title: str
    booker: BookerOut
    outlookEventId: str | None
    companyId: str | None
    attribution: AttributionOut | None
    lastError: ErrorOut | None
    attempts: int
    createdAt: str
    updatedAt: str


class ExternalBookingOut(TypedDict):
    id: str
    source: Literal["outlook"]
    status: Literal["confirmed"]
    resourceId: str
    start: str
    end: str
    title: str | None
    showAs: str
    outlookEventId: str | None
    bookingId: str | None
    companyId: str | None
    attribution: AttributionOut | None


def _attribution_view(value: Any) -> AttributionOut | None:
    if not isinstance(value, Mapping) or not value.get("kind"):
        return None
    return {
        "kind": str(value["kind"]),
        "companyId": value.get("companyId"),
        "userEmail": value.get("userEmail"),
        "reason": str(value.get("reason") or ""),
    }


def booking_view(booking: Booking) -> BookingOut:
    error = booking.last_error
    return {
        "id": booking.id,
        "source": "platform",
        "status": booking.status,
        "syncState": booking.sync_state,
        "resourceId": booking.resource_id,
        "start": utc_z(booking.start),
        "end": utc_z(booking.end),
        "title": booking.title,
        "booker": {"email": booking.booker_email, "name": booking.booker_name},
        "outlookEventId": booking.outlook_event_id,
        "companyId": booking.company_id,
        "attribution": _attribution_view(booking.attribution),
        "lastError": cast(ErrorOut, dict(error)) if isinstance(error, Mapping) else None,
        "attempts": booking.attempts,
        "createdAt": utc_z(booking.created_at),
        "updatedAt": utc_z(booking.updated_at),
    }


def external_view(block: BusyBlock) -> ExternalBookingOut:
    return {
        "id": block.block_id,
        "source": "outlook",
        "status": "confirmed",
        "resourceId": block.resource_id,
        "start": utc_z(block.start),
        "end": utc_z(block.end),
        "title": block.subject,
        "showAs": block.show_as,
        "outlookEventId": block.outlook_event_id,
        "bookingId": block.booking_id,
        "companyId": block.company_id,
        "attribution": _attribution_view(block.attribution),
    }
