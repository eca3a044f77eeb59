"""Availability of a building's resources, served from Table Storage (never from Graph).

`GET /buildings/{b}/availability?from&to[&resourceId][&slotMinutes]` answers, per resource, its busy
blocks with provenance (platform booking or Outlook, company, showAs) and, with `slotMinutes`, its
free time. Reads: the building's resources (one partition query) and the busy blocks from the
process's checked copies of whole building-days (shared/availability/snapshot.py: one point read
per UTC day of the range, a scan only of days that changed); a few resources whose days are not
held are read by RowKey prefix instead.

Free time: slots of `slotMinutes` aligned to the resource's local midnight (09:00, 09:30, ... in its
IANA zone, so a 30-minute grid stays on the half hour across DST), kept when they lie inside the
range and overlap no busy block (`showAs: free` blocks do not count), merged into maximal runs so a
31-day range stays a short list. Times in responses are UTC `Z`.

Also the query-string time helpers shared with the bookings routes (`parse_instant`,
`parse_range`): RFC 3339 with an offset, nothing else.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Protocol, TypedDict

from shared.availability.busy import BusyBlock
from shared.availability.snapshot import BusySnapshots, Held
from shared.core import times
from shared.core.errors import FieldError, ValidationFailed
from shared.core.times import TimeUnreadable, UnknownTimeZone, parse_rfc3339, utc_z
from shared.core.validate import check_building, valid_id
from shared.storage import tablestore
from shared.storage.tablestore import TableSource

MAX_RANGE = timedelta(days=31)
SLOT_MINUTES_MIN = 5
SLOT_MINUTES_MAX = 240
# Busy statuses that make a resource unavailable (Graph freeBusyStatus); `free` does not.
NOT_BUSY = frozenset({"free"})

logger = logging.getLogger(__name__)


# RFC 3339 date-time: seconds required, fraction optional, offset required ("Z" or ±hh:mm).
class BusyOut(TypedDict):
    start: str
    end: str
    source: str
    bookingId: str | None
    companyId: str | None
    showAs: str
    detail: str  # booking | event | freeBusy (issue 19)


class FreeOut(TypedDict):
    start: str
    end: str


class ResourceAvailabilityOut(TypedDict, total=False):
    resourceId: str
    timeZone: str
    busy: list[BusyOut]
    free: list[FreeOut]


class AvailabilityOut(TypedDict):
    start: str
    end: str
    slotMinutes: int | None
    resources: list[ResourceAvailabilityOut]


# --- time parsing -----------------------------------------------------------------------------


def parse_instant(field: str, value: Any) -> datetime:
    """An RFC 3339 date-time with offset → aware UTC datetime, else ValidationFailed on `field`.

    A query string's unencoded `+` arrives as a space (`09:00:00 01:00`); that one form is read as
    the `+` it was, since no other reading exists.
    """
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r".+\d \d{2}:\d{2}", text):
            text = text[:-6] + "+" + text[-5:]
        with contextlib.suppress(TimeUnreadable):
            return parse_rfc3339(text)
    raise ValidationFailed(
        [FieldError(field, "must be an RFC 3339 date-time with offset, e.g. 2026-12-01T09:00:00Z")]
    )


def parse_range(params: Mapping[str, str]) -> tuple[datetime, datetime]:
    """`from` and `to` (both required, from < to, at most 31 days apart), naming each bad one."""
    errors: list[FieldError] = []
    bounds: dict[str, datetime] = {}
    for name in ("from", "to"):
        raw = params.get(name)
        if raw is None or raw == "":
            errors.append(FieldError(name, "is required"))
            continue
        try:
            bounds[name] = parse_instant(name, raw)
        except ValidationFailed as err:
            errors.extend(err.errors)
    if not errors:
        if bounds["from"] >= bounds["to"]:
            errors.append(FieldError("to", "must be after from"))
        elif bounds["to"] - bounds["from"] > MAX_RANGE:
            errors.append(FieldError("to", f"must be at most {MAX_RANGE.days} days after from"))
    if errors:
        raise ValidationFailed(errors)
    return bounds["from"], bounds["to"]


def parse_slot_minutes(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not SLOT_MINUTES_MIN <= int(raw) <= SLOT_MINUTES_MAX:
        raise ValidationFailed(
            [
                FieldError(
                    "slotMinutes",
                    f"must be an integer from {SLOT_MINUTES_MIN} to {SLOT_MINUTES_MAX}",
                )
            ]
        )
    return int(raw)


# --- free time (pure) ---------------------------------------------------------------------------


def slot_boundaries(
    start: datetime, end: datetime, slot_minutes: int, zone: tzinfo
) -> list[datetime]:
    """UTC instants of the local grid (local midnight + k·slot) that fall in [start, end], sorted.

    Walking wall-clock times day by day keeps the grid on local time across DST changes: a wall
    time that happens twice (autumn) gives both instants, one that never happens (spring) none.
    """
    first_day = start.astimezone(zone).date() - timedelta(days=1)
    last_day = end.astimezone(zone).date() + timedelta(days=1)
    found: set[datetime] = set()
    day = first_day
    step = timedelta(minutes=slot_minutes)
    while day <= last_day:
        wall = datetime.combine(day, time(0))
        next_day = wall + timedelta(days=1)
        while wall < next_day:
            for fold in (0, 1):
                instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                exists = instant.astimezone(zone).replace(tzinfo=None) == wall
                if exists and start <= instant <= end:
                    found.add(instant)
            wall += step
        day = date.fromordinal(day.toordinal() + 1)
    return sorted(found)


class Interval(Protocol):
    """What cutting free time needs of a busy block (BusyBlock, snapshot.Held)."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def show_as(self) -> str: ...


def free_runs(
    start: datetime, end: datetime, busy: Sequence[Interval], edges: Sequence[datetime]
) -> list[tuple[datetime, datetime]]:
    """Maximal runs of grid slots (between consecutive `edges`, from `slot_boundaries`) inside
    [start, end) that overlap no busy block.

    Works on the gaps between busy blocks rather than slot by slot: each gap is snapped inwards to
    the grid, so the cost is O(blocks · log slots) however fine the grid.
    """
    gaps: list[tuple[datetime, datetime]] = []
    cursor = start
    for b_start, b_end in sorted((b.start, b.end) for b in busy if b.show_as not in NOT_BUSY):
        if b_start > cursor:
            gaps.append((cursor, min(b_start, end)))
        cursor = max(cursor, b_end)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end))
    runs: list[tuple[datetime, datetime]] = []
    for gap_start, gap_end in gaps:
        first = bisect.bisect_left(edges, gap_start)
        last = bisect.bisect_right(edges, gap_end) - 1
        if first < last:
            runs.append((edges[first], edges[last]))
    return runs


# --- the service --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AvailabilityQuery:
    start: datetime
    end: datetime
    resource_id: str | None
    slot_minutes: int | None


def parse_query(params: Mapping[str, str]) -> AvailabilityQuery:
    errors: list[FieldError] = []
    start = end = datetime.now(UTC)
    try:
        start, end = parse_range(params)
    except ValidationFailed as err:
        errors.extend(err.errors)
    slot = None
    try:
        slot = parse_slot_minutes(params.get("slotMinutes"))
    except ValidationFailed as err:
        errors.extend(err.errors)
    resource_id = params.get("resourceId") or None
    if resource_id is not None and not valid_id(resource_id):
        errors.append(FieldError("resourceId", "must be 1–64 characters of A-Z a-z 0-9 . _ -"))
    if errors:
        raise ValidationFailed(errors)
    return AvailabilityQuery(start, end, resource_id, slot)


def _zone(name: str) -> tzinfo:
    """The resource's zone for slot edges. Zones are checked when a resource is saved, so an
    unknown one is stored data gone wrong: say so, and cut slots on UTC hours meanwhile."""
    try:
        return times.zone(name)
    except UnknownTimeZone:
        logger.warning("availability: resource zone %r unknown; slots cut in UTC", name)
        return UTC


def busy_view(block: BusyBlock) -> BusyOut:
    return {
        "start": utc_z(block.start),
        "end": utc_z(block.end),
        "source": block.source,
        "bookingId": block.booking_id or (block.block_id if block.source == "platform" else None),
        "companyId": block.company_id,
        "showAs": block.show_as,
        "detail": detail_of(block),
    }


def detail_of(block: BusyBlock) -> str:
    """A block's provenance: a platform booking, an Outlook event, or free/busy only."""
    if block.source == "platform":
        return "booking"
    return str((block.attribution or {}).get("detail") or "event")


def resources_of(
    tables: TableSource, building_id: str, resource_id: str | None
) -> list[tablestore.Entity]:
    """The building's resources (or the one asked for: unknown → 400 naming `resourceId`)."""
    table = tables(tablestore.RESOURCES)
    if resource_id is not None:
        entity = tablestore.get_entity(table, building_id, resource_id)
        if entity is None:
            raise ValidationFailed([FieldError("resourceId", "is not a resource of this building")])
        return [entity]
    return tablestore.query_all(
        table, "PartitionKey eq @b", {"b": building_id}, select=["RowKey", "timeZone"]
    )


def busy_json(block: BusyBlock) -> str:
    """A block's view as compact JSON text: what the snapshots hold, so that a week of a building
    (35,000 blocks) is answered by joining texts rather than encoding 35,000 objects again."""
    return _compact(busy_view(block))


def availability_json(
    tables: TableSource,
    busy: BusySnapshots[str],
    building_id: str,
    params: Mapping[str, str],
) -> str:
    """The answer of the availability route (module docstring), as JSON text."""
    check_building(building_id)
    query = parse_query(params)
    resources = resources_of(tables, building_id, query.resource_id)
    # The resources' ids: only theirs are shown, and they cut a day's scan into concurrent ranges.
    blocks = busy.by_resource(
        building_id, query.start, query.end, resource_ids=[str(r["RowKey"]) for r in resources]
    )
    head = {"start": utc_z(query.start), "end": utc_z(query.end), "slotMinutes": query.slot_minutes}
    items = assemble(resources, blocks, query)
    return f'{_compact(head)[:-1]},"resources":[{",".join(items)}]}}'


def availability(
    tables: TableSource,
    busy: BusySnapshots[str],
    building_id: str,
    params: Mapping[str, str],
) -> AvailabilityOut:
    """`availability_json` as an object (the go-live check reads it)."""
    answer: AvailabilityOut = json.loads(availability_json(tables, busy, building_id, params))
    return answer


def assemble(
    resources: Iterable[Mapping[str, Any]],
    blocks: Mapping[str, Sequence[Held[str]]],
    query: AvailabilityQuery,
) -> list[str]:
    """Each resource's entry as JSON text: its busy views and (with slotMinutes) free runs;
    `blocks` by resource, each block's view already JSON (`busy_json`)."""
    grids: dict[str, list[datetime]] = {}  # resources mostly share a zone: one grid per zone
    out: list[str] = []
    for entity in sorted(resources, key=lambda e: str(e["RowKey"])):
        resource_id = str(entity["RowKey"])
        zone_name = str(entity.get("timeZone") or "UTC")
        mine = blocks.get(resource_id, ())
        head = _compact({"resourceId": resource_id, "timeZone": zone_name})[:-1]
        item = f'{head},"busy":[{",".join(b.view for b in mine)}]'
        if query.slot_minutes is not None:
            if zone_name not in grids:
                grids[zone_name] = slot_boundaries(
                    query.start, query.end, query.slot_minutes, _zone(zone_name)
                )
            runs = free_runs(query.start, query.end, mine, grids[zone_name])
            free = [{"start": utc_z(s), "end": utc_z(e)} for s, e in runs]
            item += f',"free":{_compact(free)}'
        out.append(item + "}")
    return out


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
