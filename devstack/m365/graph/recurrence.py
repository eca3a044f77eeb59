"""Recurrence expansion (pure): Outlook's patternedRecurrence → occurrence start times.

Occurrences are computed on the wall clock of the recurrence time zone (so a 09:00 weekly meeting
stays at 09:00 across DST) and converted to UTC. An occurrence is identified by its original start in
UTC; exceptions and cancellations are keyed by it.
"""

from __future__ import annotations

import calendar as _cal
import datetime as dt
from collections.abc import Iterator
from typing import Any

from .errors import GraphError
from .timezones import zone

DAYS = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
INDEXES = ["first", "second", "third", "fourth", "last"]
SUPPORTED_PATTERNS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly")
_MAX_STEPS = 200_000  # bound on generated dates so a pathological series cannot hang a request


def _bad(message: str) -> GraphError:
    return GraphError(400, "ErrorInvalidRequest", message)


def _canon(value: Any, allowed: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return next((a for a in allowed if a.lower() == value.lower()), None)


def _sun0(d: dt.date) -> int:
    """Day of week with Sunday = 0 (Outlook's enumeration order)."""
    return (d.weekday() + 1) % 7


def _parse_date(value: Any, field: str) -> dt.date:
    if not isinstance(value, str):
        raise _bad(f"The recurrence range '{field}' is required.")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError as exc:
        raise _bad(f"Invalid recurrence range '{field}': '{value}'.") from exc


def normalize(rec: Any, start_local: dt.datetime, start_tz: str) -> dict[str, Any]:
    """Validate a patternedRecurrence and fill Outlook's defaults (as Graph echoes them)."""
    if not isinstance(rec, dict):
        raise _bad("The recurrence must be a patternedRecurrence object.")
    pattern = rec.get("pattern")
    rng = rec.get("range")
    if not isinstance(pattern, dict) or not isinstance(rng, dict):
        raise _bad("A recurrence needs both 'pattern' and 'range'.")
    # Enum members are case-insensitive on input, as everywhere in Graph (events.canonical).
    ptype = _canon(pattern.get("type"), SUPPORTED_PATTERNS) or pattern.get("type")
    if ptype not in SUPPORTED_PATTERNS:
        raise _bad(f"Recurrence pattern type '{ptype}' is not supported.")
    interval = pattern.get("interval", 1)
    if not isinstance(interval, int) or interval < 1 or interval > 99:
        raise _bad("The recurrence pattern interval must be between 1 and 99.")
    days = pattern.get("daysOfWeek") or []
    if isinstance(days, list):
        days = [_canon(d, DAYS) or d for d in days]
    if not isinstance(days, list) or any(d not in DAYS for d in days):
        raise _bad("Invalid daysOfWeek in recurrence pattern.")
    fdw = _canon(pattern.get("firstDayOfWeek") or "sunday", DAYS) or pattern.get("firstDayOfWeek")
    if fdw not in DAYS:
        raise _bad("Invalid firstDayOfWeek in recurrence pattern.")
    index = _canon(pattern.get("index") or "first", INDEXES) or pattern.get("index")
    if index not in INDEXES:
        raise _bad("Invalid index in recurrence pattern.")
    dom = pattern.get("dayOfMonth") or 0
    month = pattern.get("month") or 0
    if ptype in ("weekly", "relativeMonthly") and not days:
        raise _bad(f"A {ptype} recurrence requires daysOfWeek.")
    if ptype in ("absoluteMonthly", "absoluteYearly") and not (1 <= dom <= 31):
        raise _bad(f"A {ptype} recurrence requires dayOfMonth between 1 and 31.")
    if ptype == "absoluteYearly" and not (1 <= month <= 12):
        raise _bad("An absoluteYearly recurrence requires month between 1 and 12.")
    rtype = _canon(rng.get("type"), ("endDate", "noEnd", "numbered")) or rng.get("type")
    if rtype not in ("endDate", "noEnd", "numbered"):
        raise _bad(f"Recurrence range type '{rtype}' is not supported.")
    start_date = _parse_date(rng.get("startDate") or start_local.date().isoformat(), "startDate")
    out_range: dict[str, Any] = {
        "type": rtype,
        "startDate": start_date.isoformat(),
        "endDate": "0001-01-01",
        "recurrenceTimeZone": rng.get("recurrenceTimeZone") or start_tz,
        "numberOfOccurrences": 0,
    }
    zone(out_range["recurrenceTimeZone"])  # 400 on unknown zone
    if rtype == "endDate":
        end_date = _parse_date(rng.get("endDate"), "endDate")
        if end_date < start_date:
            raise _bad("The recurrence range endDate is before its startDate.")
        out_range["endDate"] = end_date.isoformat()
    if rtype == "numbered":
        n = rng.get("numberOfOccurrences")
        if not isinstance(n, int) or n < 1 or n > 999:
            raise _bad("numberOfOccurrences must be between 1 and 999.")
        out_range["numberOfOccurrences"] = n
    out_pattern = {
        "type": ptype,
        "interval": interval,
        "month": month,
        "dayOfMonth": dom,
        "daysOfWeek": list(days) if ptype in ("weekly", "relativeMonthly") else [],
        "firstDayOfWeek": fdw,
        "index": index,
    }
    return {"pattern": out_pattern, "range": out_range}


def _dates(rec: dict[str, Any]) -> Iterator[dt.date]:
    """All occurrence dates of the pattern from startDate on (unbounded; caller stops)."""
    p, r = rec["pattern"], rec["range"]
    start = dt.date.fromisoformat(r["startDate"])
    interval = p["interval"]
    ptype = p["type"]
    if ptype == "daily":
        d = start
        while True:
            yield d
            d += dt.timedelta(days=interval)
    elif ptype == "weekly":
        fdw = DAYS.index(p["firstDayOfWeek"])
        wanted = {DAYS.index(x) for x in p["daysOfWeek"]}
        week = start - dt.timedelta(days=(_sun0(start) - fdw) % 7)
        while True:
            for off in range(7):
                d = week + dt.timedelta(days=off)
                if d >= start and _sun0(d) in wanted:
                    yield d
            week += dt.timedelta(days=7 * interval)
    elif ptype in ("absoluteMonthly", "relativeMonthly"):
        y, m = start.year, start.month
        while True:
            last = _cal.monthrange(y, m)[1]
            if ptype == "absoluteMonthly":
                # Outlook books day 31 on the month's last day when the month is shorter.
                cands = [dt.date(y, m, min(p["dayOfMonth"], last))]
            else:
                cands = [_relative_day(y, m, p["index"], p["daysOfWeek"])]
            for d in cands:
                if d >= start:
                    yield d
            m += interval
            y += (m - 1) // 12
            m = (m - 1) % 12 + 1
    elif ptype == "absoluteYearly":
        y = start.year
        while True:
            last = _cal.monthrange(y, p["month"])[1]
            d = dt.date(y, p["month"], min(p["dayOfMonth"], last))
            if d >= start:
                yield d
            y += interval


def _relative_day(y: int, m: int, index: str, days: list[str]) -> dt.date:
    wanted = {DAYS.index(x) for x in days}
    last = _cal.monthrange(y, m)[1]
    matches = [dt.date(y, m, d) for d in range(1, last + 1) if _sun0(dt.date(y, m, d)) in wanted]
    i = INDEXES.index(index)
    return matches[-1] if index == "last" or i >= len(matches) else matches[i]


def occurrence_starts(
    rec: dict[str, Any],
    master_start_utc: dt.datetime,
    duration: dt.timedelta,
    window_start: dt.datetime | None,
    window_end: dt.datetime,
) -> list[dt.datetime]:
    """Original starts (UTC) of the occurrences that overlap [window_start, window_end).

    `window_start=None` lists every occurrence up to `window_end` (used for numbered series and for
    resolving occurrence ids).
    """
    r = rec["range"]
    tz = zone(r["recurrenceTimeZone"])
    local_time = master_start_utc.astimezone(tz).time().replace(tzinfo=None)
    end_date = dt.date.fromisoformat(r["endDate"]) if r["type"] == "endDate" else None
    limit = r["numberOfOccurrences"] if r["type"] == "numbered" else None
    out: list[dt.datetime] = []
    count = 0
    for steps, day in enumerate(_dates(rec)):
        if steps > _MAX_STEPS or (end_date is not None and day > end_date):
            break
        if limit is not None and count >= limit:
            break
        count += 1  # noqa: SIM113 - counts pattern dates, not loop steps
        start = dt.datetime.combine(day, local_time).replace(tzinfo=tz).astimezone(dt.UTC)
        if start >= window_end:
            break
        if (
            window_start is None
            or start + duration > window_start
            or (duration == dt.timedelta(0) and start >= window_start)
        ):
            out.append(start)
    return out


def last_occurrence_end(
    rec: dict[str, Any], master_start_utc: dt.datetime, duration: dt.timedelta
) -> dt.datetime | None:
    """End of the series (None for noEnd): used to judge room conflicts and delta windows."""
    r = rec["range"]
    if r["type"] == "noEnd":
        return None
    far = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    starts = occurrence_starts(rec, master_start_utc, duration, None, far)
    return (starts[-1] + duration) if starts else master_start_utc + duration
