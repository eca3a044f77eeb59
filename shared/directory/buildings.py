"""Buildings as things: a name, a time zone, business hours and an address (issue 20).

Storage: table `buildings`, PartitionKey = building id, RowKey `building` (docs/DESIGN.md). Every
building-scoped route answers 404 `building_not_found` for a building without this entity,
after the caller's authorisation (functions/http.py `caller_for`), so a 404 never tells a caller
which buildings of others exist.

Decisions (docs/DESIGN.md "Buildings"):
- PUT replaces: `name` and `timeZone` (IANA) required; `businessHours` optional, default Mon–Fri
  08:00–18:00 in the building's zone; `address` optional; unknown fields 400.
- Business hours: `{"mon": [{"start": "08:00", "end": "18:00"}], ..., "sun": []}`, wall times in
  the building's zone, `HH:MM` (end may be `24:00`), each day's intervals ascending and not
  overlapping. A day left out of a PUT is closed; GET always lists all seven.
- DELETE refuses (409 `building_in_use`, `inUse` naming each) while the building has a
  connection, resources (`mappings` too when one is mapped), companies or registered users:
  those are what an admin removes first, and they are exactly what `find` migrates from (below), so
  a deleted building is never resurrected by its own leftovers. Its settings go with it.
  Bookings, audit records, checks and webhooks are history or follow the resources: they stay,
  and come back into view if the same id is created again.
- Migration: a building that has data from before buildings existed (a connection, resources,
  companies, users or settings) but no entity gets one on first read, named by its id, in the
  zone of its first resource (else UTC), with the default business hours.
- Existence is cached per process for `_KNOWN_TTL_S` (positive answers only). A PUT or DELETE in
  this process is seen at once; one in another process within that bound (until then, this
  process's routes keep answering for the deleted building).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from shared.core.errors import Conflict, NotFound
from shared.core.paging import Listed
from shared.core.validate import Checker, check_building, valid_id
from shared.directory.people import SETTINGS_ROW_KEY
from shared.directory.registry import valid_time_zone
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource

ROW_KEY = "building"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ADDRESS_MAX = 500
INTERVALS_MAX = 8  # per day: enough for split shifts, small enough to stay one property
_KNOWN_TTL_S = 30.0
_KNOWN_MAX = 10_000  # buildings remembered per process (a thousand buildings fit many times)
_HHMM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d|24:00")
_WRITABLE = ("name", "timeZone", "businessHours", "address")

Interval = tuple[str, str]
Hours = dict[str, list[Interval]]
DEFAULT_HOURS: Hours = {
    day: ([("08:00", "18:00")] if day in WEEKDAYS[:5] else []) for day in WEEKDAYS
}


class IntervalOut(TypedDict):
    start: str
    end: str


class BuildingOut(TypedDict):
    id: str
    name: str
    timeZone: str
    businessHours: dict[str, list[IntervalOut]]
    address: str | None


@dataclass(frozen=True)
class Building:
    id: str
    name: str
    time_zone: str
    business_hours: Hours
    address: str | None = None


class BuildingInUse(Conflict):
    """409 `building_in_use`: what to remove before the building can go (`in_use`)."""

    def __init__(self, in_use: list[str]) -> None:
        super().__init__(
            "Remove the building's " + ", ".join(in_use) + " first", reason="building_in_use"
        )
        self.in_use = in_use


def building_not_found() -> NotFound:
    return NotFound("No such building", reason="building_not_found")


# --- the wire shape ---------------------------------------------------------------------------


def view(b: Building) -> BuildingOut:
    return {
        "id": b.id,
        "name": b.name,
        "timeZone": b.time_zone,
        "businessHours": {
            day: [{"start": s, "end": e} for s, e in b.business_hours.get(day, [])]
            for day in WEEKDAYS
        },
        "address": b.address,
    }


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def _read_hours(check: Checker, value: Any) -> Hours:
    if value is None:
        return {day: list(v) for day, v in DEFAULT_HOURS.items()}
    if not isinstance(value, dict):
        check.add("businessHours", "must be an object of weekdays (mon ... sun)")
        return {}
    hours: Hours = {day: [] for day in WEEKDAYS}
    for day, intervals in value.items():
        field = f"businessHours.{day}"
        if day not in WEEKDAYS:
            check.add(field, "is not a weekday (mon, tue, wed, thu, fri, sat, sun)")
            continue
        if not isinstance(intervals, list) or len(intervals) > INTERVALS_MAX:
            check.add(field, f"must be a list of at most {INTERVALS_MAX} intervals")
            continue
        previous_end = -1
        for i, interval in enumerate(intervals):
            at = f"{field}[{i}]"
            if not isinstance(interval, dict) or set(interval) != {"start", "end"}:
                check.add(at, 'must be {"start": "HH:MM", "end": "HH:MM"}')
                continue
            start, end = interval["start"], interval["end"]
            if not (isinstance(start, str) and _HHMM.fullmatch(start) and start != "24:00"):
                check.add(f"{at}.start", "must be a time HH:MM from 00:00 to 23:59")
                continue
            if not (isinstance(end, str) and _HHMM.fullmatch(end)):
                check.add(f"{at}.end", "must be a time HH:MM from 00:01 to 24:00")
                continue
            if _minutes(end) <= _minutes(start):
                check.add(f"{at}.end", "must be after start")
                continue
            if _minutes(start) < previous_end:
                check.add(f"{at}.start", "must not be before the previous interval's end")
                continue
            previous_end = _minutes(end)
            hours[day].append((start, end))
    return hours


def parse_building(building_id: str, body: Mapping[str, Any]) -> Building:
    """A PUT body, or 400 naming every bad field."""
    check = Checker(body)
    check.only(_WRITABLE, ("id",))
    name = check.name()
    time_zone = body.get("timeZone")
    if time_zone is None or time_zone == "":
        check.add("timeZone", "is required")
    elif not isinstance(time_zone, str) or not valid_time_zone(time_zone):
        check.add("timeZone", "must be an IANA time zone such as Europe/Amsterdam")
    hours = _read_hours(check, body.get("businessHours"))
    address = body.get("address")
    if address is not None and (
        not isinstance(address, str) or len(address) > ADDRESS_MAX or "\x00" in address
    ):
        check.add("address", f"must be text of at most {ADDRESS_MAX} characters, or null")
    check.done()
    text = address.strip() if isinstance(address, str) else None
    return Building(building_id, name, str(time_zone), hours, text or None)


def _entity(b: Building) -> Entity:
    return {
        "PartitionKey": b.id,
        "RowKey": ROW_KEY,
        "name": b.name,
        "timeZone": b.time_zone,
        "businessHours": tablestore.json_property(
            {day: [list(i) for i in b.business_hours.get(day, [])] for day in WEEKDAYS}
        ),
        "address": b.address or "",
        "updatedAt": tablestore.utc_now(),
    }


def _from_entity(e: Mapping[str, Any]) -> Building:
    stored = tablestore.from_json_property(e.get("businessHours"), None)
    hours: Hours = (
        {day: [(str(s), str(t)) for s, t in stored.get(day, [])] for day in WEEKDAYS}
        if isinstance(stored, dict)
        else dict(DEFAULT_HOURS)
    )
    return Building(
        id=str(e["PartitionKey"]),
        name=str(e.get("name") or e["PartitionKey"]),
        time_zone=str(e.get("timeZone") or "UTC"),
        business_hours=hours,
        address=str(e.get("address")) if e.get("address") else None,
    )


# --- the directory ----------------------------------------------------------------------------


class Buildings:
    """The buildings table, with a small per-process cache of buildings known to exist."""

    def __init__(self, tables: TableSource, clock: Callable[[], float] = time.monotonic) -> None:
        self.tables = tables
        self._clock = clock
        self._known: dict[str, float] = {}  # building id -> when its existence was last read
        self._lock = threading.Lock()

    # The cache ----------------------------------------------------------------------------

    def _remember(self, building_id: str) -> None:
        with self._lock:
            if len(self._known) >= _KNOWN_MAX:
                self._known.clear()  # crude but bounded; the next reads refill it
            self._known[building_id] = self._clock()

    def _forget(self, building_id: str) -> None:
        with self._lock:
            self._known.pop(building_id, None)

    def _is_known(self, building_id: str) -> bool:
        with self._lock:
            seen = self._known.get(building_id)
        return seen is not None and self._clock() - seen < _KNOWN_TTL_S

    # Reads --------------------------------------------------------------------------------

    def find(self, building_id: str) -> Building | None:
        """The building (created from its data if it predates buildings: module docstring)."""
        table = self.tables(tablestore.BUILDINGS)
        entity = tablestore.get_entity(table, building_id, ROW_KEY)
        if entity is None:
            migrated = self._migrate(building_id)
            if migrated is None:
                self._forget(building_id)
                return None
            entity = migrated
        self._remember(building_id)
        return _from_entity(entity)

    def require(self, building_id: str) -> None:
        """404 `building_not_found` unless the building exists (cached: module docstring)."""
        if self._is_known(building_id):
            return
        if self.find(building_id) is None:
            raise building_not_found()

    def get(self, building_id: str) -> BuildingOut:
        check_building(building_id)
        found = self.find(building_id)
        if found is None:
            raise building_not_found()
        return view(found)

    def reachable(self, reach: Iterable[str] | None) -> Listed[BuildingOut]:
        """Every building (reach None: Portal.Service) or those of `reach` that exist (one page)."""
        if reach is None:
            entities = tablestore.query_all(
                self.tables(tablestore.BUILDINGS), "RowKey eq @r", {"r": ROW_KEY}
            )
            found = [_from_entity(e) for e in entities]
        else:
            candidates = (self.find(b) for b in sorted(set(reach)) if valid_id(b))
            found = [b for b in candidates if b is not None]
        return Listed([view(b) for b in found])

    # Writes -------------------------------------------------------------------------------

    def put(self, building_id: str, body: Mapping[str, Any]) -> tuple[BuildingOut, bool]:
        """Create or replace; (view, created)."""
        check_building(building_id)
        building = parse_building(building_id, body)
        created = tablestore.put_entity(self.tables(tablestore.BUILDINGS), _entity(building))
        self._remember(building_id)
        return view(building), created

    def delete(self, building_id: str) -> None:
        """204 whether or not it existed; 409 `building_in_use` while it holds anything."""
        check_building(building_id)
        in_use = self._holdings(building_id)
        if in_use:
            raise BuildingInUse(in_use)
        with tablestore.storage_errors("delete building"):
            self.tables(tablestore.SETTINGS).delete_entity(building_id, SETTINGS_ROW_KEY)
            self.tables(tablestore.BUILDINGS).delete_entity(building_id, ROW_KEY)
        self._forget(building_id)

    # Migration ----------------------------------------------------------------------------

    def _holdings(self, building_id: str, *, first_only: bool = False) -> list[str]:
        """What the building holds that must be removed before it can be deleted, in the order
        an admin removes them (a mapping before its resource, users before their company)."""
        held: list[str] = []
        t = self.tables
        if tablestore.get_entity(t(tablestore.CONNECTIONS), building_id, tablestore.CONNECTION_ROW):
            held.append("connection")
            if first_only:
                return held
        resources = tablestore.query_all(
            t(tablestore.RESOURCES),
            "PartitionKey eq @b",
            {"b": building_id},
            select=["RowKey", "calendarId"],
        )
        if any(r.get("calendarId") for r in resources):
            held.append("mappings")
        if resources:
            held.append("resources")
        for table, label in ((tablestore.USERS, "users"), (tablestore.COMPANIES, "companies")):
            if first_only and held:
                return held
            if tablestore.query_first(t(table), "PartitionKey eq @b", {"b": building_id}):
                held.append(label)
        return held

    def _migrate(self, building_id: str) -> Entity | None:
        """The entity of a building that has data from before buildings existed, now written."""
        t = self.tables
        has_data = bool(self._holdings(building_id, first_only=True)) or (
            tablestore.get_entity(t(tablestore.SETTINGS), building_id, SETTINGS_ROW_KEY) is not None
        )
        if not has_data:
            return None
        first = tablestore.query_first(
            t(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building_id}, select=["timeZone"]
        )
        zone = str(first.get("timeZone") or "UTC") if first else "UTC"
        building = Building(building_id, building_id, zone if valid_time_zone(zone) else "UTC",
                            {day: list(v) for day, v in DEFAULT_HOURS.items()})  # fmt: skip
        entity = _entity(building)
        table = t(tablestore.BUILDINGS)
        try:
            with tablestore.storage_errors("migrate building"):
                table.create_entity(entity)
        except Conflict as exc:
            if exc.reason != "exists":
                raise
            # Another reader migrated it (or an admin created it) first: theirs stands.
            return tablestore.get_entity(table, building_id, ROW_KEY) or entity
        return entity
