"""Analytics (issue 15): roll up closed days, rebuild a range, answer a query.

- `roll_closed_days` (the rollup timer): for each building, every local day that closed (its next
  local midnight plus `CLOSE_MARGIN` passed) after its watermark, oldest first, at most
  `CATCH_UP_DAYS` per run (the rest on the next runs). A building without a watermark starts
  with yesterday; older days are the rebuild's.
- `rebuild`: recomputes closed days [from, to] (≤ `REBUILD_MAX_DAYS`, synchronous) from the stored
  busy blocks and attendance records, and extends the watermark when the range touches it.
- `analytics`: days the watermark covers come from rollups; every other day of the range (today,
  days not yet rolled up) is computed live from the same blocks and records, so an answer is never
  stale. The live part is bounded by the range (≤ `MAX_DAYS`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared.analytics.compute import (
    Counters,
    Rollup,
    bookings_of,
    days_between,
    local_day_bounds,
    rollup_day,
)
from shared.analytics.report import GROUP_BY, GroupBy, Scope, Tally, answer
from shared.analytics.sheets import Part, SheetStore, day_segment, segments, sheet_of
from shared.analytics.store import RollupStore, covered
from shared.attendance.model import records_between
from shared.availability.busy import BusyStore
from shared.core.errors import FieldError, NotFound, ValidationFailed
from shared.core.validate import valid_id
from shared.directory.buildings import Building, Buildings, building_not_found
from shared.directory.companies import load_companies
from shared.directory.people import load_building_settings
from shared.directory.registry import resource_from_entity
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

logger = logging.getLogger(__name__)

MAX_DAYS = 366  # a query's range, inclusive
REBUILD_MAX_DAYS = 31  # a rebuild's range: synchronous, one day ≈ one busy partition read
CATCH_UP_DAYS = 31  # days one timer run rolls up per building
# A day is rolled up this long after its local midnight: late Outlook changes and the release
# timer's last no-shows of the evening have arrived by then (a later change: rebuild).
CLOSE_MARGIN = timedelta(minutes=30)
# A released booking known only from its attendance record is looked for among records of blocks
# that started up to this long before the day (records are partitioned by UTC start day).
RECORD_LOOKBACK = timedelta(days=1)
FORMATS = ("json", "csv")


@dataclass(frozen=True)
class AnalyticsDeps:
    tables: TableSource  # directory tables (resources, companies, settings)
    buildings: Buildings
    busy: BusyStore
    attendance: Any  # the attendance TableClient
    rollups: RollupStore
    sheets: SheetStore
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass(frozen=True)
class Query:
    first: date
    last: date
    resource_id: str | None
    group_by: GroupBy
    format: str


def _date(check: list[FieldError], params: Mapping[str, str], name: str) -> date | None:
    raw = params.get(name)
    if not raw:
        check.append(FieldError(name, "is required (a building-local date YYYY-MM-DD)"))
        return None
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        check.append(FieldError(name, "must be a date YYYY-MM-DD"))
        return None


def _range(
    errors: list[FieldError], params: Mapping[str, str], max_days: int
) -> tuple[date, date] | None:
    first, last = _date(errors, params, "from"), _date(errors, params, "to")
    if first is None or last is None:
        return None
    if last < first:
        errors.append(FieldError("to", "must not be before from"))
    elif (last - first).days + 1 > max_days:
        errors.append(FieldError("to", f"must be at most {max_days} days from `from` (inclusive)"))
    return first, last


def parse_query(params: Mapping[str, str]) -> Query:
    """`from`, `to`, `resourceId`, `groupBy`, `format`, or 400 naming each bad one."""
    errors: list[FieldError] = []
    span = _range(errors, params, MAX_DAYS)
    resource_id = params.get("resourceId") or None
    if resource_id is not None and not valid_id(resource_id):
        errors.append(FieldError("resourceId", "must be a resource id"))
    group_by = params.get("groupBy") or "day"
    if group_by not in GROUP_BY:
        errors.append(FieldError("groupBy", "must be one of " + ", ".join(GROUP_BY)))
    output = params.get("format") or "json"
    if output not in FORMATS:
        errors.append(FieldError("format", "must be json or csv"))
    if errors or span is None:
        raise ValidationFailed(errors)
    return Query(span[0], span[1], resource_id, group_by, output)  # type: ignore[arg-type]


def _building(deps: AnalyticsDeps, building_id: str) -> Building:
    found = deps.buildings.find(building_id)
    if found is None:
        raise building_not_found()
    return found


# --- computing days ---------------------------------------------------------------------------


def compute_days(deps: AnalyticsDeps, building: Building, first: date, last: date) -> list[Rollup]:
    """Rollups of local days [first, last] computed from stored blocks and attendance records."""
    zone = ZoneInfo(building.time_zone)
    start, end = local_day_bounds(first, zone)[0], local_day_bounds(last, zone)[1]
    blocks = deps.busy.blocks(building.id, start, end)
    records = records_between(deps.attendance, building.id, start - RECORD_LOOKBACK, end)
    bookings = bookings_of(blocks, records)
    ad_hoc = load_building_settings(deps.tables, building.id).ad_hoc_minutes
    found: list[Rollup] = []
    for day in days_between(first, last):
        found.extend(rollup_day(building, day, bookings, ad_hoc_minutes=ad_hoc))
    return found


def _last_closed(building: Building, now: datetime) -> date:
    zone = ZoneInfo(building.time_zone)
    today = now.astimezone(zone).date()
    # Today closes at the next midnight + margin; yesterday is closed once today's midnight +
    # margin passed.
    yesterday = today - timedelta(days=1)
    closed_at = local_day_bounds(yesterday, zone)[1] + CLOSE_MARGIN
    return yesterday if now >= closed_at else yesterday - timedelta(days=1)


def _roll(deps: AnalyticsDeps, building: Building, first: date, last: date) -> tuple[int, int]:
    """Compute and store [first, last], day by day; (days, rollups written)."""
    rollups = compute_days(deps, building, first, last)
    per_day: dict[date, list[Rollup]] = {day: [] for day in days_between(first, last)}
    for rollup in rollups:
        per_day[rollup.day].append(rollup)
    written = 0
    for day, rows in per_day.items():
        written += deps.rollups.write_day(building.id, day, rows)
        deps.sheets.write(building.id, day_segment(day), sheet_of(rows))
    deps.sheets.refresh(building.id, per_day)
    deps.rollups.extend(building.id, first, last)
    return len(per_day), written


def rebuild(deps: AnalyticsDeps, building_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """POST …/analytics:rebuild?from&to: recompute closed days (400 naming a bad or open one)."""
    errors: list[FieldError] = []
    span = _range(errors, params, REBUILD_MAX_DAYS)
    if errors or span is None:
        raise ValidationFailed(errors)
    building = _building(deps, building_id)
    last_closed = _last_closed(building, deps.now())
    if span[1] > last_closed:
        raise ValidationFailed(
            [FieldError("to", f"must be a day that has closed (at most {last_closed})")]
        )
    days, written = _roll(deps, building, *span)
    mark = deps.rollups.watermark(building_id)
    return {
        "buildingId": building_id, "from": span[0].isoformat(), "to": span[1].isoformat(),
        "days": days, "rollups": written,
        "rolledUp": None if mark is None else {"since": mark.since.isoformat(),
                                               "through": mark.through.isoformat()},
    }  # fmt: skip


def roll_closed_days(deps: AnalyticsDeps) -> dict[str, int]:
    """The timer: each building's closed days after its watermark; building -> days rolled up.
    One building failing is logged and does not stop the others (the next run retries it)."""
    now = deps.now()
    done: dict[str, int] = {}
    for view in deps.buildings.reachable(None).value:
        building = deps.buildings.find(view["id"])
        if building is None:
            continue
        try:
            last = _last_closed(building, now)
            mark = deps.rollups.watermark(building.id)
            first = last if mark is None else mark.through + timedelta(days=1)
            if first > last:
                continue
            last = min(last, first + timedelta(days=CATCH_UP_DAYS - 1))
            done[building.id], _ = _roll(deps, building, first, last)
        except Exception:
            logger.exception("analytics rollup of building %s failed", building.id)
    return done


# --- the query --------------------------------------------------------------------------------


def _resources(deps: AnalyticsDeps, building_id: str, resource_id: str | None) -> dict[str, str]:
    entities = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building_id},
        select=["PartitionKey", "RowKey", "name"],
    )  # fmt: skip
    found = {r.id: r.name or r.id for r in map(resource_from_entity, entities)}
    if resource_id is None:
        return found
    if resource_id not in found:
        raise NotFound("No such resource", reason="resource_not_found")
    return {resource_id: found[resource_id]}


def analytics(deps: AnalyticsDeps, building_id: str, query: Query) -> dict[str, Any]:
    """GET …/analytics: the answer (report.py) over stored sheets or rollups and live days."""
    building = _building(deps, building_id)
    resources = _resources(deps, building_id, query.resource_id)
    mark = deps.rollups.watermark(building_id)
    stored_days = covered(mark, query.first, query.last)
    companies = query.group_by == "company"
    found = Tally()
    live = [day for day in days_between(query.first, query.last) if day not in set(stored_days)]
    if stored_days and query.resource_id is None:
        live += _from_sheets(deps, building_id, stored_days, query.group_by, found)
    elif stored_days:
        rollups = deps.rollups.read(building_id, stored_days[0], stored_days[-1],
                                    resource_id=query.resource_id, companies=companies)  # fmt: skip
        for rollup in rollups:
            found.add_rollup(rollup)
    for first, last in _runs(sorted(live)):
        for rollup in compute_days(deps, building, first, last):
            if query.resource_id is None or rollup.resource_id == query.resource_id:
                found.add_rollup(rollup)
    # Resources that had bookings but are no longer registered still count (their history is
    # real); named by id.
    if query.resource_id is None:
        for resource in found.resources:
            resources.setdefault(resource, resource)
    names = {c.id: c.name for c in load_companies(deps.tables, building_id)} if companies else {}
    scope = Scope(building, query.first, query.last, days_between(query.first, query.last),
                  resources, names)  # fmt: skip
    return answer(scope, found, query.group_by)


def _from_sheets(
    deps: AnalyticsDeps, building_id: str, days: list[date], group_by: GroupBy, into: Tally
) -> list[date]:
    """Add the stored days' sheets to `into`: the fewest whole segments for the totals, the
    resources and the companies, the day sheets' totals for groupBy day and week. Returns the days
    of segments that have no sheet (rolled up before sheets existed): those are computed live."""
    parts: tuple[Part, ...] = ("t", "r")
    if group_by in ("company", "resource"):
        parts += ("c",) if group_by == "company" else ("h",)
    sheet, missing = deps.sheets.read_sum(building_id, segments(days[0], days[-1]), parts)
    into.total.add(sheet.total)
    for key, counters in sheet.resources.items():
        into.resources.setdefault(key, Counters()).add(counters)
    for key, counters in sheet.companies.items():
        into.companies.setdefault(key, Counters()).add(counters)
    live = [day for segment in missing for day in days_between(segment.first, segment.last)]
    if group_by in ("day", "week"):
        skip = set(live)
        for day, counters in deps.sheets.day_totals(building_id, days[0], days[-1]).items():
            if day not in skip:
                into.days.setdefault(day, Counters()).add(counters)
    return live


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Consecutive days as (first, last) spans."""
    runs: list[tuple[date, date]] = []
    for day in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
