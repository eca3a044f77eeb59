"""Time values at our edges, read and written one way: Graph `dateTimeTimeZone` and RFC 3339.

Graph names a zone the Windows way ("W. Europe Standard Time") or the IANA way ("Europe/Berlin"):
it documents both for `dateTimeTimeZone.timeZone` and for `Prefer: outlook.timezone`. We accept
both. Windows names resolve through CLDR's windowsZones "001" (primary zone) mapping, which
`tzlocal` ships generated from CLDR (`tzlocal.windows_tz.win_tz`, pinned in requirements.txt)
rather than a table of our own that would go stale as Windows adds zones.

An unknown zone is an error (`UnknownTimeZone`), never a silent UTC: reading a 09:00 meeting in an
unrecognised zone as 09:00 UTC would put a busy block in the wrong place without anyone noticing.
Naive RFC 3339 strings are refused for the same reason; a `dateTimeTimeZone` carries its zone.

Every "Z" string we write comes from `utc_z`.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

from tzlocal.windows_tz import win_tz

# Names Graph and Exchange use for UTC that are neither a CLDR Windows id nor an IANA name:
# "Coordinated Universal Time" is the UTC zone's Windows display/standard name, which Exchange
# returns for some legacy mailboxes; "Z" is how RFC 3339 spells it.
_UTC_ALIASES = frozenset({"utc", "z", "coordinated universal time", "etc/utc", "etc/gmt", "gmt"})
# Graph's dateTimeTimeZone page lists these two spellings with the tz database name beside them in
# parentheses ("Asia/Toshkent (Tashkent)", "Asia/Astana (Almaty)"); the tz database has only the
# latter, so they are read as that.
_DOCUMENTED_SPELLINGS = {"Asia/Toshkent": "Asia/Tashkent", "Asia/Astana": "Asia/Almaty"}

# Graph writes seven fractional digits ("2026-12-01T09:00:00.0000000"); Python reads up to six.
_FRACTION = re.compile(r"(\.\d{1,6})\d*")
# A calendar date and a wall time. Graph's dateTime may omit seconds on input ("09:00"), and writes
# seven fractional digits; RFC 3339 requires seconds and we read at most nine fractional digits.
_WALL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(:\d{2}(\.\d+)?)?")
_RFC3339_WALL = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)


class TimeUnreadable(ValueError):
    """A time value that is not a date and time in a form Graph or RFC 3339 writes."""


class NoTimeZone(TimeUnreadable):
    """An RFC 3339 date-time without `Z` or an offset: it names no instant."""


class UnknownTimeZone(TimeUnreadable):
    """A zone name that is neither a Windows zone (CLDR) nor an IANA zone."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown time zone {name!r} (expected a Windows or IANA zone name)")
        self.name = name


@functools.lru_cache(maxsize=512)
def zone(name: str) -> tzinfo:
    """The zone a Windows or IANA name denotes; `UnknownTimeZone` when it denotes none."""
    key = name.strip()
    if key.lower() in _UTC_ALIASES:
        return UTC
    iana = win_tz.get(key) or _DOCUMENTED_SPELLINGS.get(key, key)
    try:
        return zoneinfo.ZoneInfo(iana)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        # ValueError: not a valid key at all ("../x", absolute paths, empty).
        raise UnknownTimeZone(name) from None


def _wall_time(text: str, form: re.Pattern[str] = _WALL) -> datetime:
    """`2026-12-01T09:00:00.0000000` (no zone) as a naive datetime."""
    if not form.fullmatch(text):
        raise TimeUnreadable(f"not a date and time: {text!r}")
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text[:10] + "T" + text[11:]))
    except ValueError:
        raise TimeUnreadable(f"not a date and time: {text!r}") from None


def parse_rfc3339(text: Any) -> datetime:
    """An RFC 3339 date-time with `Z` or an offset (Graph's `expirationDateTime`, our API's times)
    as an aware UTC datetime. A string without a zone is refused: it names no instant."""
    if not isinstance(text, str):
        raise TimeUnreadable("a date-time must be a string")
    value = text.strip()
    offset = _OFFSET.search(value)
    if offset is None:
        raise NoTimeZone(f"date-time without a zone (add Z or an offset): {text!r}")
    wall = _wall_time(value[: offset.start()], _RFC3339_WALL)
    suffix = offset.group(1)
    try:
        aware = datetime.fromisoformat(wall.isoformat() + ("+00:00" if suffix in "Zz" else suffix))
    except ValueError:
        raise TimeUnreadable(f"not a date and time: {text!r}") from None
    return aware.astimezone(UTC)


def rfc3339_or_none(value: Any) -> datetime | None:
    """`parse_rfc3339` for an optional field of a Graph reply (`createdDateTime`,
    `expirationDateTime`) whose caller has a fallback: None when absent or unreadable."""
    if value is None or value == "":
        return None
    try:
        return parse_rfc3339(value)
    except TimeUnreadable:
        return None


def parse_graph_time(value: Any) -> datetime:
    """A Graph `dateTimeTimeZone` ({"dateTime": "2026-12-01T09:00:00.0000000", "timeZone": "W.
    Europe Standard Time"}) as an aware UTC datetime. `TimeUnreadable` / `UnknownTimeZone` on
    anything else; a missing `timeZone` is refused unless `dateTime` carries its own offset."""
    if not isinstance(value, Mapping):
        raise TimeUnreadable("a dateTimeTimeZone must be an object")
    text, name = value.get("dateTime"), value.get("timeZone")
    if not isinstance(text, str):
        raise TimeUnreadable("a dateTimeTimeZone needs a string dateTime")
    text = text.strip()
    if _OFFSET.search(text):
        # Some clients write an offset inside dateTime as well; it then wins, as in Graph.
        return parse_rfc3339(text)
    if not isinstance(name, str) or not name.strip():
        raise TimeUnreadable("a dateTimeTimeZone without an offset needs a timeZone")
    return _wall_time(text).replace(tzinfo=zone(name)).astimezone(UTC)


def utc_z(value: datetime, timespec: Literal["seconds", "milliseconds"] = "seconds") -> str:
    """`2026-12-01T09:00:00Z`: an aware datetime as our RFC 3339 UTC string (seconds unless the
    caller keeps milliseconds, as the audit log does). Naive datetimes are refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a naive datetime names no instant")
    return value.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def graph_time(instant: datetime, zone_name: str) -> dict[str, str]:
    """A `dateTimeTimeZone` for Graph: the wall time in `zone_name`, or UTC when that wall time is
    ambiguous (the repeated hour of a DST change) or the zone unknown. Either way the instant is
    exact, so Graph never has to guess; the zone only decides how Outlook shows it."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("a naive datetime names no instant")
    utc = instant.astimezone(UTC).replace(tzinfo=None)
    in_utc = {"dateTime": utc.isoformat(timespec="seconds"), "timeZone": "UTC"}
    try:
        where = zone(zone_name)
    except UnknownTimeZone:
        return in_utc
    local = instant.astimezone(where)
    wall = local.replace(tzinfo=None)
    other_fold = wall.replace(fold=1 - local.fold).replace(tzinfo=where)
    if other_fold.utcoffset() != local.utcoffset():  # two readings: let UTC say which
        return in_utc
    return {"dateTime": wall.isoformat(timespec="seconds"), "timeZone": zone_name}
