"""Analytics, the pure part: busy blocks + attendance records + a building -> daily rollups, and
rollups -> the numbers an analytics answer shows. No I/O; docs/ANALYTICS.md defines every number.

A rollup is one resource's one building-local day. Its counters are kept per attributed company
(`None`: unattributed) so that grouping by company is exact; the resource-day's totals are their
sums. Durations and lead times are kept as histograms of whole minutes ({minutes: count}), so a
median over any range is exact (histograms add).

Times: a local day is [local midnight, next local midnight) converted to UTC through zoneinfo,
so a DST day has 23 or 25 hours; business hours are the building's wall-clock intervals converted
the same way. Minutes are counted in seconds (exact integers) and shown as minutes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.attendance.model import NO_SHOW_STATES, Attendance
from shared.availability.busy import BusyBlock, as_utc
from shared.core.checkmarks import CHECK_ATTRIBUTION_REASON
from shared.directory.buildings import WEEKDAYS, Building

# showAs values that make a booking (free and workingElsewhere do not hold the room).
BOOKED_SHOW_AS = frozenset({"busy", "tentative", "oof"})
UNATTRIBUTED = "unattributed"  # the key of bookings without an attributed company

Interval = tuple[datetime, datetime]  # UTC, half-open


# --- local days and business hours ------------------------------------------------------------


def local_day_bounds(day: date, zone: ZoneInfo) -> Interval:
    """[local midnight, next local midnight) of `day` in UTC (23 h or 25 h on DST days)."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


def _wall(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    hours, minutes = int(hhmm[:2]), int(hhmm[3:])
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(UTC)


def business_intervals(building: Building, day: date) -> list[Interval]:
    """The building's business hours on `day`, in UTC (wall-clock intervals through zoneinfo)."""
    zone = ZoneInfo(building.time_zone)
    found = building.business_hours.get(WEEKDAYS[day.weekday()], [])
    return [(_wall(day, s, zone), _wall(day, e, zone)) for s, e in found]


def business_seconds(building: Building, day: date) -> int:
    return sum(int((e - s).total_seconds()) for s, e in business_intervals(building, day))


def _overlap(a: Interval, b: Interval) -> int:
    """Seconds two half-open intervals share."""
    return max(0, int((min(a[1], b[1]) - max(a[0], b[0])).total_seconds()))


# --- counters ---------------------------------------------------------------------------------


@dataclass
class Counters:
    """What one rollup (or any sum of rollups) counts. Seconds are booked seconds."""

    inside: int = 0  # booked seconds inside business hours
    outside: int = 0  # booked seconds outside them
    bookings: int = 0
    ad_hoc: int = 0
    planned: int = 0
    required: int = 0  # check-in required
    no_shows: int = 0
    released: int = 0
    durations: Counter[int] = field(default_factory=Counter)  # whole minutes -> bookings
    leads: Counter[int] = field(default_factory=Counter)  # whole minutes -> bookings

    def add(self, other: Counters) -> None:
        self.inside += other.inside
        self.outside += other.outside
        self.bookings += other.bookings
        self.ad_hoc += other.ad_hoc
        self.planned += other.planned
        self.required += other.required
        self.no_shows += other.no_shows
        self.released += other.released
        self.durations.update(other.durations)
        self.leads.update(other.leads)

    def to_json(self) -> dict[str, Any]:
        """Compact and deterministic (sorted histograms): a recomputed day stores identical text."""
        return {
            "in": self.inside, "out": self.outside, "n": self.bookings, "adHoc": self.ad_hoc,
            "planned": self.planned, "req": self.required, "noShows": self.no_shows,
            "rel": self.released, "dur": _histogram_json(self.durations),
            "lead": _histogram_json(self.leads),
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Counters:
        return cls(
            inside=int(raw.get("in", 0)), outside=int(raw.get("out", 0)),
            bookings=int(raw.get("n", 0)), ad_hoc=int(raw.get("adHoc", 0)),
            planned=int(raw.get("planned", 0)), required=int(raw.get("req", 0)),
            no_shows=int(raw.get("noShows", 0)), released=int(raw.get("rel", 0)),
            durations=_histogram(raw.get("dur")), leads=_histogram(raw.get("lead")),
        )  # fmt: skip


def _histogram_json(values: Counter[int]) -> dict[str, int]:
    return {str(k): values[k] for k in sorted(values) if values[k]}


def _histogram(raw: Any) -> Counter[int]:
    found: Counter[int] = Counter()
    if isinstance(raw, dict):
        for k, v in raw.items():
            found[int(k)] += int(v)
    return found


def median(values: Counter[int]) -> float | None:
    """The exact median of a histogram (the mean of the two middle values when even); None if empty."""
    total = sum(values.values())
    if total == 0:
        return None
    wanted = [(total - 1) // 2, total // 2]  # 0-based ranks of the middle value(s)
    found: list[int] = []
    seen = 0
    for value in sorted(values):
        seen += values[value]
        while wanted and wanted[0] < seen:
            found.append(value)
            wanted.pop(0)
    return (found[0] + found[1]) / 2


@dataclass(frozen=True)
class Rollup:
    """One resource's one building-local day: counters per company (None: unattributed)."""

    building_id: str
    day: date
    resource_id: str
    companies: dict[str | None, Counters]

    def total(self) -> Counters:
        found = Counters()
        for counters in self.companies.values():
            found.add(counters)
        return found


# --- bookings: blocks and attendance records -------------------------------------------------


@dataclass(frozen=True)
class Booking:
    """One booking as analytics sees it: the room was held over [start, held_until)."""

    resource_id: str
    block_id: str
    start: datetime
    end: datetime
    held_until: datetime  # the end, or when it was released (clipped to [start, end])
    company_id: str | None
    created_at: datetime | None
    attendance: Attendance | None


def counts_as_booking(block: BusyBlock) -> bool:
    """showAs busy, tentative or oof, and no go-live check test event."""
    if block.show_as not in BOOKED_SHOW_AS:
        return False
    reason = (block.attribution or {}).get("reason")
    return reason != CHECK_ATTRIBUTION_REASON


def bookings_of(blocks: Iterable[BusyBlock], records: Iterable[Attendance]) -> list[Booking]:
    """Blocks that count as bookings, plus released bookings known only from their record (their
    block is gone). A record names its block by (resource, block id); a record whose block is
    gone and which was not released (the booking was cancelled) is no booking."""
    by_block = {(r.resource_id, r.block_id): r for r in records}
    found: list[Booking] = []
    seen: set[tuple[str, str]] = set()
    for block in blocks:
        key = (block.resource_id, block.block_id)
        if key in seen or not counts_as_booking(block):
            continue
        seen.add(key)
        record = by_block.get(key)
        found.append(_booking(block.resource_id, block.block_id, block.start, block.end,
                              block.company_id, block.created_at, record))  # fmt: skip
    for key, record in sorted(by_block.items()):
        if key in seen or record.state != "released":
            continue
        found.append(_booking(record.resource_id, record.block_id, record.start, record.end,
                              record.company_id, record.created_at, record))  # fmt: skip
    return found


def _booking(
    resource_id: str,
    block_id: str,
    start: datetime,
    end: datetime,
    company_id: str | None,
    created_at: datetime | None,
    record: Attendance | None,
) -> Booking:
    held_until = end
    if record is not None and record.state == "released" and record.released_at is not None:
        held_until = min(max(record.released_at, start), end)
    return Booking(resource_id, block_id, start, end, held_until, company_id, created_at, record)


# --- one day ----------------------------------------------------------------------------------


def _in_utc(b: Booking) -> Booking:
    created = as_utc(b.created_at) if b.created_at else None
    return replace(b, start=as_utc(b.start), end=as_utc(b.end), held_until=as_utc(b.held_until),
                   created_at=created)  # fmt: skip


def _whole_minutes(delta: timedelta) -> int:
    return math.floor(delta.total_seconds() / 60)


def rollup_day(
    building: Building,
    day: date,
    bookings: Iterable[Booking],
    *,
    ad_hoc_minutes: int,
) -> list[Rollup]:
    """The rollups of one building-local day, one per resource with a booking held on it (sorted
    by resource). A booking's minutes go to each local day it is held on; the booking itself (its
    count, ad hoc or planned, duration, lead time, attendance) to its start's local day."""
    zone = ZoneInfo(building.time_zone)
    bounds = local_day_bounds(day, zone)
    business = business_intervals(building, day)
    ad_hoc = timedelta(minutes=ad_hoc_minutes)
    per_resource: dict[str, dict[str | None, Counters]] = {}
    for given in bookings:
        # In UTC: Python subtracts two datetimes of one zone by wall clock, which is wrong by
        # an hour across a DST change.
        booking = _in_utc(given)
        held = _overlap((booking.start, booking.held_until), bounds)
        starts_today = bounds[0] <= booking.start < bounds[1]
        if held == 0 and not starts_today:
            continue
        counters = per_resource.setdefault(booking.resource_id, {}).setdefault(
            booking.company_id, Counters()
        )
        inside = sum(_overlap((max(booking.start, bounds[0]), min(booking.held_until, bounds[1])),
                              interval) for interval in business)  # fmt: skip
        counters.inside += inside
        counters.outside += held - inside
        if not starts_today:
            continue
        counters.bookings += 1
        counters.durations[_whole_minutes(booking.end - booking.start)] += 1
        if booking.created_at is None:
            counters.planned += 1  # made before createdAt was recorded: counted as planned
        else:
            counters.leads[_whole_minutes(booking.start - booking.created_at)] += 1
            if booking.start - booking.created_at < ad_hoc:
                counters.ad_hoc += 1
            else:
                counters.planned += 1
        record = booking.attendance
        if record is not None:
            counters.required += int(record.required)
            counters.no_shows += int(record.state in NO_SHOW_STATES)
            counters.released += int(record.state == "released")
    return [
        Rollup(building.id, day, resource, companies)
        for resource, companies in sorted(per_resource.items())
    ]


def days_between(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
