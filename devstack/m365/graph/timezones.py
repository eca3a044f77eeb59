"""Time zones as Outlook takes them: Windows names and IANA names, `dateTimeTimeZone` in and out.

Graph accepts Windows zone names ("Pacific Standard Time") and IANA names ("America/Los_Angeles") in
`dateTimeTimeZone.timeZone` and in `Prefer: outlook.timezone`. The Windows→IANA table is CLDR's
windowsZones "001" (primary) mapping for the zones an Outlook tenant commonly uses.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import GraphError

WINDOWS_TO_IANA: dict[str, str] = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "US Eastern Standard Time": "America/Indianapolis",
    "Venezuela Standard Time": "America/Caracas",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Greenland Standard Time": "America/Godthab",
    "Montevideo Standard Time": "America/Montevideo",
    "UTC-02": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "Etc/UTC",
    "Coordinated Universal Time": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kiev",
    "Israel Standard Time": "Asia/Jerusalem",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "India Standard Time": "Asia/Calcutta",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Katmandu",
    "Central Asia Standard Time": "Asia/Bishkek",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Myanmar Standard Time": "Asia/Rangoon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}
_WINDOWS_LOWER = {k.lower(): v for k, v in WINDOWS_TO_IANA.items()}

_DT_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?(Z|[+-]\d{2}:\d{2})?$"
)


@lru_cache(maxsize=512)
def _zone_or_none(name: str) -> dt.tzinfo | None:
    if not name:
        return None
    if name.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
        return dt.UTC
    mapped = _WINDOWS_LOWER.get(name.lower())
    try:
        return ZoneInfo(mapped or name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone(name: str) -> dt.tzinfo:
    """The tz for a Windows or IANA name; 400 as Outlook answers for names it does not know."""
    tz = _zone_or_none(name)
    if tz is None:
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified. The following TimeZone value is not "
            f"supported: '{name}'.",
        )
    return tz


def is_known_zone(name: str) -> bool:
    return _zone_or_none(name) is not None


def parse_local(text: str) -> tuple[dt.datetime, dt.tzinfo | None]:
    """Parse Outlook's `dateTime` (naive, up to 7 fractional digits, optional offset)."""
    m = _DT_RE.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise GraphError(
            400,
            "ErrorInvalidRequest",  # Outlook's answer to an unparsable dateTime
            f"Cannot convert the literal '{text}' to the expected type 'Edm.DateTimeOffset'.",
        )
    y, mo, d, h, mi, s, frac, off = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        naive = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro)
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidRequest", f"Invalid dateTime '{text}'.") from exc
    tz: dt.tzinfo | None = None
    if off == "Z":
        tz = dt.UTC
    elif off:
        sign = 1 if off[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(off[1:3]), minutes=int(off[4:6])))
    return naive, tz


def parse_dttz(value: Any, field: str) -> tuple[dt.datetime, str]:
    """A `dateTimeTimeZone` → (aware UTC datetime, zone name as given). 400 on bad input."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(
            400, "ErrorInvalidRequest", f"The property '{field}' must be a dateTimeTimeZone."
        )
    tz_name = value.get("timeZone") or "UTC"
    if not isinstance(tz_name, str):
        raise GraphError(400, "ErrorInvalidRequest", f"Invalid timeZone in '{field}'.")
    tz = zone(tz_name)
    naive, offset = parse_local(value["dateTime"])
    aware = naive.replace(tzinfo=offset or tz)
    return aware.astimezone(dt.UTC), tz_name


def format_dttz(moment: dt.datetime, tz_name: str | None) -> dict[str, str]:
    """UTC moment → `dateTimeTimeZone` in `tz_name` (Graph prints 7 fractional digits)."""
    name = tz_name or "UTC"
    tz = _zone_or_none(name) or dt.UTC
    local = moment.astimezone(tz).replace(tzinfo=None)
    return {
        "dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0",
        "timeZone": name,
    }


def iso_utc(moment: dt.datetime) -> str:
    """Edm.DateTimeOffset as Graph prints it (`2025-03-01T09:00:00.1234567Z`)."""
    m = moment.astimezone(dt.UTC)
    return m.strftime("%Y-%m-%dT%H:%M:%S.") + f"{m.microsecond:06d}0Z"


def parse_query_datetime(text: str, name: str) -> dt.datetime:
    """calendarView's `startDateTime`/`endDateTime`: ISO 8601, offset honoured, none ⇒ UTC.

    A `+hh:mm` offset sent unencoded arrives as a space after form decoding and is refused, as Graph
    refuses it (the client must send `%2B` or `Z`).
    """
    try:
        naive, tz = parse_local(text)
    except GraphError as exc:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            f"The value '{text}' of parameter '{name}' is invalid.",
        ) from exc
    return naive.replace(tzinfo=tz or dt.UTC).astimezone(dt.UTC)


_PREFER_TZ = re.compile(r'outlook\.timezone\s*=\s*"?([^",]+)"?', re.I)


def prefer_timezone(prefer: str) -> str | None:
    """The zone named by `Prefer: outlook.timezone=…`, if valid (Graph ignores unknown ones)."""
    m = _PREFER_TZ.search(prefer or "")
    if not m:
        return None
    name = m.group(1).strip()
    return name if is_known_zone(name) else None
