"""In-memory Graph data: mailboxes, calendars, events (with their per-mailbox ids), change log.

Ids follow Outlook's rules that client code must survive:
- every mailbox has its own copy (and id) of a meeting; copies share `iCalUId`;
- an event has a REST id, which changes when the event moves to another calendar, and an immutable
  id (returned with `Prefer: IdType="ImmutableId"`), which does not; both are accepted on input;
- an occurrence's id is derived from its series master's id and its original start.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from typing import Any


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


# Outlook ids are base64url (with padding) of a binary entry id, as a whole string: REST ids decode
# to 00 03 24 00 6x … ("AAMkAG…"), immutable ids to 00 09 00 2e … ("AAkALg…"). An id that is not
# such a string is malformed: Graph answers 400 ErrorInvalidIdMalformed "Id is malformed."
# (GRAPH.md §10), a well-formed id of nothing in this mailbox 404 ErrorItemNotFound.
_REST_PREFIX = b"\x00\x03\x24\x00"
_IMMUTABLE_PREFIX = b"\x00\x09\x00\x2e"
_OCCURRENCE_PREFIX = b"\x00\x03\x24\x38\x20"
_ENTRY_ID_BYTES = 70  # 96 characters with padding, about the size of a real calendar item id


def new_rest_id() -> str:
    tail = os.urandom(_ENTRY_ID_BYTES - 5)
    return _b64(_REST_PREFIX + bytes([0x60 | (os.urandom(1)[0] & 0x0F)]) + tail)


def new_immutable_id() -> str:
    head = bytes([os.urandom(1)[0] & 0x0F])
    return _b64(_IMMUTABLE_PREFIX + head + os.urandom(_ENTRY_ID_BYTES - 5))


def well_formed_id(value: str) -> bool:
    """True when `value` could be an Outlook item or folder id (base64url of an entry id)."""
    if not value or len(value) % 4 or len(value) < 16:
        return False
    try:
        raw = base64.b64decode(value.encode("ascii"), altchars=b"-_", validate=True)
    except (ValueError, UnicodeEncodeError):
        return False
    return len(raw) >= 12


def new_change_key() -> str:
    return "DwAAABYAAA" + _b64(os.urandom(18))


def new_ical_uid() -> str:
    return "040000008200E00074C5B7101A82E008000000" + os.urandom(28).hex().upper()


def occurrence_id(master_id: str, original_start: dt.datetime) -> str:
    raw = f"{master_id}|{int(original_start.timestamp())}".encode()
    return _b64(_OCCURRENCE_PREFIX + raw)


def parse_occurrence_id(occ_id: str) -> tuple[str, dt.datetime] | None:
    if not occ_id.startswith("AAMkOC"):
        return None
    try:
        raw = base64.urlsafe_b64decode(occ_id.encode())
        if not raw.startswith(_OCCURRENCE_PREFIX):
            return None
        master_id, ts = raw[len(_OCCURRENCE_PREFIX) :].decode().rsplit("|", 1)
        return master_id, dt.datetime.fromtimestamp(int(ts), dt.UTC)
    except (ValueError, UnicodeDecodeError):
        return None


def occurrence_ical_uid(master_uid: str, original_start: dt.datetime) -> str:
    # Outlook gives each occurrence its own iCalUId (the series uid with the instance date mixed in).
    return master_uid[:32] + original_start.strftime("%Y%m%d") + master_uid[40:]


@dataclass
class Calendar:
    id: str
    name: str
    is_default: bool
    change_key: str = field(default_factory=new_change_key)
    color: str = "auto"
    hex_color: str = ""
    # A sharee's copy of someone else's calendar: whose and which calendar, and the granted role.
    shared_owner: str | None = None
    shared_calendar_id: str | None = None
    role: str = "owner"


@dataclass
class ExceptionRec:
    """A changed occurrence of a series (an Outlook "exception")."""

    overrides: dict[str, Any]
    start: dt.datetime
    end: dt.datetime
    start_tz: str
    end_tz: str
    change_key: str
    modified: dt.datetime


@dataclass
class EventRec:
    key: str
    calendar_id: str
    rest_id: str
    immutable_id: str
    ical_uid: str
    data: dict[str, Any]
    start: dt.datetime
    end: dt.datetime
    start_tz: str
    end_tz: str
    organizer: dict[str, Any]
    is_organizer: bool
    created: dt.datetime
    modified: dt.datetime
    change_key: str = field(default_factory=new_change_key)
    recurrence: dict[str, Any] | None = None
    response: str = "organizer"
    response_time: dt.datetime | None = None
    is_cancelled: bool = False
    ext_props: dict[str, tuple[str, str]] = field(default_factory=dict)
    exceptions: dict[dt.datetime, ExceptionRec] = field(default_factory=dict)
    cancelled: set[dt.datetime] = field(default_factory=set)
    seq: int = 0
    transaction_id: str | None = None
    # Room bookings: the room copy remembers the organizer's mailbox and event key.
    origin: tuple[str, str] | None = None

    @property
    def is_master(self) -> bool:
        return self.recurrence is not None

    def touch(self, now: dt.datetime, seq: int) -> None:
        self.change_key = new_change_key()
        self.modified = now
        self.seq = seq


@dataclass
class Tombstone:
    seq: int
    calendar_id: str
    key: str
    rest_id: str
    immutable_id: str


@dataclass
class Mailbox:
    tenant_id: str
    user_id: str
    upn: str
    mail: str
    display_name: str
    is_room: bool
    calendars: dict[str, Calendar] = field(default_factory=dict)
    events: dict[str, EventRec] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # rest or immutable id → event key
    seq: int = 0
    tombstones: list[Tombstone] = field(default_factory=list)
    transactions: dict[str, tuple[str, str]] = field(default_factory=dict)  # txid → (key, hash)
    room_policy: dict[str, Any] = field(default_factory=dict)
    # The "Default" folder permission of the default calendar (directory.User.calendar_permission).
    default_permission: str = "AvailabilityOnly"

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    @property
    def default_calendar(self) -> Calendar:
        for cal in self.calendars.values():
            if cal.is_default:
                return cal
        raise LookupError("mailbox without a default calendar")

    def add_calendar(
        self, name: str, *, is_default: bool = False, cal_id: str | None = None
    ) -> Calendar:
        cal = Calendar(
            id=cal_id or _b64(b"\x00\x03\x24\x00\x20" + uuid.uuid4().bytes * 3),
            name=name,
            is_default=is_default,
        )
        self.calendars[cal.id] = cal
        return cal

    def index(self, rec: EventRec) -> None:
        self.ids[rec.rest_id] = rec.key
        self.ids[rec.immutable_id] = rec.key

    def unindex(self, rec: EventRec) -> None:
        self.ids.pop(rec.rest_id, None)
        self.ids.pop(rec.immutable_id, None)

    def find(self, event_id: str) -> EventRec | None:
        key = self.ids.get(event_id)
        return self.events.get(key) if key else None

    def bury(self, rec: EventRec, seq: int) -> None:
        self.tombstones.append(
            Tombstone(seq, rec.calendar_id, rec.key, rec.rest_id, rec.immutable_id)
        )
        if len(self.tombstones) > 5000:  # delta only needs recent history; bound memory
            del self.tombstones[:1000]
