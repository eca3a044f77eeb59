"""A platform booking: its id, its state, and the validation of what a request asks for (pure).

Lifecycle (`status`): `creating` (rows written, slot being claimed: invisible to the API) →
`confirmed` → `cancelled`, or `released` (cancelled by the no-show release of issue 15, after
nobody checked in: the same as cancelled for Outlook and the slot). `syncState` (of the Outlook event): `pending` → `synced` | `failed`
(with `lastError {reason, status, at}`). `version` counts changes; `syncedVersion` is the version
Outlook shows, so the outbox worker knows what to do from state alone (shared/bookings/service.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.availability.busy import BusyBlock
from shared.availability.service import parse_instant
from shared.core.errors import FieldError, ValidationFailed
from shared.core.times import utc_z
from shared.core.validate import Checker, valid_id
from shared.storage import tablestore

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=14)
MAX_AHEAD = timedelta(days=730)
IDEMPOTENCY_KEY_MAX = 255
TITLE_MAX = 255

Status = Literal["creating", "confirmed", "cancelled", "released"]
# A booking that is over before its time: its Outlook event goes, its slot is freed.
ENDED: frozenset[Status] = frozenset({"cancelled", "released"})
SyncStateName = Literal["pending", "synced", "failed"]
# `status` of GET /bookings: which platform bookings are listed (Outlook ones are all confirmed).
LIST_STATUSES: dict[str, tuple[Status, ...]] = {
    "confirmed": ("confirmed",),
    "cancelled": ("cancelled",),
    "released": ("released",),
    "all": ("confirmed", "cancelled", "released"),
}


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # ascending in ASCII: ids sort by time


def new_booking_id(now: datetime, random_bits: int | None = None) -> str:
    """26 characters: 48-bit Unix milliseconds then 80 random bits, Crockford base32 (lower case).

    Time-ordered (RowKeys of one building sort by creation) and unguessable (80 bits of
    `os.urandom`), and a valid id of this API (`[a-z0-9]`).
    """
    millis = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = random_bits if random_bits is not None else int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (rand & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True)
class BookingConfig:
    live_check: bool = True
    subject_template: str = "{resourceName} – {bookerName}"
    invite_booker: bool = False
    max_attempts: int = 8
    backoff_seconds: int = 30
    backoff_max_seconds: int = 900


@dataclass(frozen=True)
class Booking:
    building_id: str
    id: str
    resource_id: str
    start: datetime
    end: datetime
    title: str
    booker_email: str
    booker_name: str
    status: Status
    sync_state: SyncStateName
    created_at: datetime
    updated_at: datetime
    version: int = 1
    synced_version: int = 0
    attempts: int = 0
    last_error: dict[str, Any] | None = None
    outlook_event_id: str | None = None
    calendar_id: str | None = None  # the calendar the event was written to
    company_id: str | None = None
    attribution: dict[str, Any] | None = None
    idempotency_row: str | None = None
    request_hash: str | None = None

    def block(self) -> BusyBlock:
        return BusyBlock(
            building_id=self.building_id,
            resource_id=self.resource_id,
            block_id=self.id,
            start=self.start,
            end=self.end,
            source="platform",
            booking_id=self.id,
            company_id=self.company_id,
            created_at=self.created_at,
        )

    @property
    def in_sync(self) -> bool:
        return self.sync_state == "synced" and self.synced_version >= self.version


@dataclass(frozen=True)
class CreateRequest:
    resource_id: str
    start: datetime
    end: datetime
    title: str
    booker_email: str
    booker_name: str

    def fingerprint(self) -> str:
        """What a repeated Idempotency-Key must match (the same booking asked for again)."""
        raw = json.dumps(
            [
                self.resource_id,
                utc_z(self.start),
                utc_z(self.end),
                self.title,
                self.booker_email,
                self.booker_name,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(raw.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


_FRACTION = re.compile(r"\.(\d+)")


def _whole_seconds(value: str) -> bool:
    """No fraction of a second other than zeros (read from the text: `parse_instant` keeps only
    microseconds, so `.0000001` would otherwise pass as whole)."""
    fraction = _FRACTION.search(value)
    return fraction is None or fraction.group(1).strip("0") == ""


def _times(check: Checker, body: Mapping[str, Any], now: datetime) -> tuple[datetime, datetime]:
    """Start and end: whole seconds (Outlook and our answers carry seconds, so a fraction would
    be a booking that differs from what everyone is shown), at least `MIN_DURATION` apart (a
    shorter event is refused by Outlook, after we had accepted it)."""
    found: dict[str, datetime] = {}
    for name in ("start", "end"):
        if body.get(name) is None:
            check.add(name, "is required")
            continue
        try:
            found[name] = parse_instant(name, body[name])
        except ValidationFailed as err:
            check.errors.extend(err.errors)
            continue
        if not _whole_seconds(body[name]):
            check.add(name, "must be a whole second (no fraction of a second)")
            del found[name]
    if len(found) < 2:
        return now, now
    start, end = found["start"], found["end"]
    if start >= end:
        check.add("end", "must be after start")
    elif end - start < MIN_DURATION:
        check.add("end", "must be at least 1 minute after start")
    elif end - start > MAX_DURATION:
        check.add("end", f"must be at most {MAX_DURATION.days} days after start")
    if end <= now:
        check.add("end", "must be in the future")
    if start > now + MAX_AHEAD:
        check.add("start", f"must be within {MAX_AHEAD.days} days from now")
    return start, end


def _title(check: Checker, body: Mapping[str, Any], default: str = "") -> str:
    value = body.get("title", default)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > TITLE_MAX or not value.isprintable():
        check.add("title", f"must be at most {TITLE_MAX} printable characters")
        return default
    return value.strip()


def parse_create(body: Mapping[str, Any], now: datetime) -> CreateRequest:
    check = Checker(body)
    check.only(("resourceId", "start", "end", "title", "booker"))
    resource_id = body.get("resourceId")
    if not isinstance(resource_id, str) or not valid_id(resource_id):
        check.add("resourceId", "must be 1–64 characters of A-Z a-z 0-9 . _ -")
    start, end = _times(check, body, now)
    title = _title(check, body)
    booker = body.get("booker")
    email = name = ""
    if not isinstance(booker, Mapping):
        check.add("booker", "is required: {email, name}")
    else:
        inner = Checker(booker, prefix="booker.")
        inner.only(("email", "name"))
        email = inner.email("email", booker.get("email")) or ""
        name = inner.name("name")
        check.errors.extend(inner.errors)
    check.done()
    return CreateRequest(str(resource_id), start, end, title, email, name)


def parse_update(body: Mapping[str, Any], current: Booking, now: datetime) -> Booking:
    """The booking as the PATCH body changes it (start, end, title), validated as a whole."""
    check = Checker(body)
    check.only(("start", "end", "title"))
    if not body:
        check.add("body", "must change start, end or title")
    merged = {
        "start": body.get("start", utc_z(current.start)),
        "end": body.get("end", utc_z(current.end)),
    }
    start, end = _times(check, merged, now)
    title = _title(check, body, current.title)
    check.done()
    return replace(current, start=start, end=end, title=title)


def idempotency_row(key: str | None) -> str | None:
    """`idem|sha256(key)`, or None without a key; 400 for an unusable key."""
    if key is None or key == "":
        return None
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise ValidationFailed(
            [FieldError("Idempotency-Key", f"must be 1–{IDEMPOTENCY_KEY_MAX} printable characters")]
        )
    return tablestore.join_key("idem", hashlib.sha256(key.encode()).hexdigest())
