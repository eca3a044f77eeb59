"""Rollups -> the analytics answer (JSON and CSV), pure. docs/ANALYTICS.md defines each metric.

METRICS (every group and the totals): resources, businessMinutes (of one resource: the business
hours in the group's days), bookedMinutes (inside business hours), bookedMinutesOutsideHours,
bookingRate = bookedMinutes / (resources x businessMinutes) (null when businessMinutes is 0),
bookings, adHoc, planned, checkInRequired, noShows, released, noShowRate = noShows /
checkInRequired (null when 0), medianDurationMinutes, medianLeadMinutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from shared.analytics.compute import UNATTRIBUTED, Counters, Rollup, business_seconds, median
from shared.core import csvexport
from shared.directory.buildings import Building

GroupBy = Literal["day", "week", "resource", "company"]
GROUP_BY: tuple[GroupBy, ...] = ("day", "week", "resource", "company")
POPULAR = 5  # resources in each of "most" and "least"

METRICS = (
    "resources", "businessMinutes", "bookedMinutes", "bookedMinutesOutsideHours", "bookingRate",
    "bookings", "adHoc", "planned", "checkInRequired", "noShows", "released", "noShowRate",
    "medianDurationMinutes", "medianLeadMinutes",
)  # fmt: skip
CSV_HEADER = ("key", "label", *METRICS)


@dataclass(frozen=True)
class Scope:
    """What the answer covers: the building, its local days, the resources (id -> name)."""

    building: Building
    first: date
    last: date
    days: list[date]
    resources: dict[str, str]
    companies: dict[str, str]  # company id -> name, for labels


def _minutes(seconds: int) -> int | float:
    """Seconds as minutes: a whole number when it is one, else 2 decimals."""
    return seconds // 60 if seconds % 60 == 0 else round(seconds / 60, 2)


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def metrics(counters: Counters, resources: int, business: int) -> dict[str, Any]:
    """The METRICS of `counters` over `resources` resources of `business` business seconds each."""
    return {
        "resources": resources,
        "businessMinutes": _minutes(business),
        "bookedMinutes": _minutes(counters.inside),
        "bookedMinutesOutsideHours": _minutes(counters.outside),
        "bookingRate": _ratio(counters.inside, resources * business),
        "bookings": counters.bookings,
        "adHoc": counters.ad_hoc,
        "planned": counters.planned,
        "checkInRequired": counters.required,
        "noShows": counters.no_shows,
        "released": counters.released,
        "noShowRate": _ratio(counters.no_shows, counters.required),
        "medianDurationMinutes": median(counters.durations),
        "medianLeadMinutes": median(counters.leads),
    }


def _week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _sum(into: dict[str, Counters], key: str, counters: Counters) -> None:
    into.setdefault(key, Counters()).add(counters)


@dataclass
class Tally:
    """What an answer is made of: totals, per resource, per company, per day (only the groups the
    query asks for need to be filled: per company for groupBy company, per day for day and week)."""

    total: Counters = field(default_factory=Counters)
    resources: dict[str, Counters] = field(default_factory=dict)
    companies: dict[str, Counters] = field(default_factory=dict)
    days: dict[date, Counters] = field(default_factory=dict)

    def add_rollup(self, rollup: Rollup) -> None:
        day_total = rollup.total()
        self.total.add(day_total)
        _sum(self.resources, rollup.resource_id, day_total)
        self.days.setdefault(rollup.day, Counters()).add(day_total)
        for company, counters in rollup.companies.items():
            _sum(self.companies, company or UNATTRIBUTED, counters)


def tally(scope: Scope, rollups: Iterable[Rollup]) -> Tally:
    """The tally of the rollups of the scope's resources."""
    found = Tally()
    for rollup in rollups:
        if rollup.resource_id in scope.resources:
            found.add_rollup(rollup)
    return found


def report(scope: Scope, rollups: Iterable[Rollup], group_by: GroupBy) -> dict[str, Any]:
    """The JSON answer (docs/API.md, GET /buildings/{b}/analytics) from resource-day rollups."""
    return answer(scope, tally(scope, rollups), group_by)


def answer(scope: Scope, found: Tally, group_by: GroupBy) -> dict[str, Any]:
    """The JSON answer from a tally of the scope's resources."""
    per_day = {day: business_seconds(scope.building, day) for day in scope.days}
    business = sum(per_day.values())
    resources = len(scope.resources)
    by_resource = {r: found.resources.get(r, Counters()) for r in scope.resources}
    groups: list[dict[str, Any]] = []
    if group_by in ("day", "week"):
        spans: dict[str, list[date]] = {}
        for day in scope.days:
            spans.setdefault(day.isoformat() if group_by == "day" else _week(day), []).append(day)
        for key, days in spans.items():
            label = key if group_by == "day" else f"{key} ({days[0]} – {days[-1]})"
            seconds = sum(per_day[d] for d in days)
            counters = Counters()
            for d in days:
                counters.add(found.days.get(d, Counters()))
            groups.append({"key": key, "label": label, **metrics(counters, resources, seconds)})
    elif group_by == "resource":
        for resource, counters in sorted(by_resource.items()):
            groups.append({"key": resource, "label": scope.resources[resource],
                           **metrics(counters, 1, business)})  # fmt: skip
    else:
        for key, counters in sorted(found.companies.items()):
            label = "Unattributed" if key == UNATTRIBUTED else scope.companies.get(key, key)
            groups.append({"key": key, "label": label, **metrics(counters, resources, business)})
    return {
        "buildingId": scope.building.id,
        "from": scope.first.isoformat(),
        "to": scope.last.isoformat(),
        "timeZone": scope.building.time_zone,
        "groupBy": group_by,
        "totals": metrics(found.total, resources, business),
        "groups": groups,
        "popular": popular(scope.resources, by_resource, business),
    }


def popular(
    names: Mapping[str, str], by_resource: Mapping[str, Counters], business: int
) -> dict[str, list[dict[str, Any]]]:
    """The POPULAR resources with the highest and the lowest booking rate (ties: by id)."""
    rates = {r: _ratio(c.inside, business) for r, c in by_resource.items()}
    # Ascending by rate (None, no business hours at all, as 0), then id; `most` reverses the rate
    # only, so ties read by id both ways.
    least = sorted(rates, key=lambda r: (rates[r] or 0, r))
    most = sorted(rates, key=lambda r: (-(rates[r] or 0), r))

    def item(r: str) -> dict[str, Any]:
        return {"resourceId": r, "name": names[r], "bookingRate": rates[r]}

    return {"most": [item(r) for r in most[:POPULAR]], "least": [item(r) for r in least[:POPULAR]]}


def to_csv(answer: Mapping[str, Any]) -> bytes:
    """One row per group: key, label, METRICS (the same values as the JSON answer)."""
    rows = [[group[name] for name in CSV_HEADER] for group in answer["groups"]]
    return csvexport.render(CSV_HEADER, rows)
