"""Rollups and each building's watermark in Table Storage (table `rollups`).

Rollup: PartitionKey `<building>|<local yyyy>`, RowKey `<local yyyymmdd>|<resource>`: a year of a
building is one partition, read as a few concurrent RowKey ranges. Two properties only, so a
read `$select`s just what it needs: `t` (the resource-day's totals) and `c` (per company), both
`Counters.to_json` text (shared/analytics/compute.py). Writing a day upserts (replace) its rollups
and deletes the day's rollups of resources that no longer have one: recomputing a day leaves
storage exactly as a first computation would (idempotent).

Watermark: PartitionKey `<building>|state`, RowKey `watermark`, `since` and `through` (local
yyyy-mm-dd): every day in [since, through] has been rolled up. Changed under its ETag only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from shared.analytics.compute import Counters, Rollup, days_between
from shared.storage import tablestore

TABLE = "rollups"
_STATE = "state"
_WATERMARK = "watermark"
_READ_WORKERS = 6  # concurrent RowKey ranges of one read (a year: one range per ~2 months)
_DAYS_PER_RANGE = 61


def _partition(building_id: str, year: int) -> str:
    return tablestore.join_key(building_id, f"{year:04d}")


def _day_key(day: date) -> str:
    return day.strftime("%Y%m%d")


def to_entity(rollup: Rollup) -> tablestore.Entity:
    companies = {company or "": c.to_json() for company, c in sorted(
        rollup.companies.items(), key=lambda item: item[0] or "")}  # fmt: skip
    return {
        "PartitionKey": _partition(rollup.building_id, rollup.day.year),
        "RowKey": tablestore.join_key(_day_key(rollup.day), rollup.resource_id),
        "t": tablestore.json_property(rollup.total().to_json()),
        "c": tablestore.json_property(companies),
    }


def _from_entity(building_id: str, entity: tablestore.Entity, companies: bool) -> Rollup:
    day_key, resource_id = tablestore.split_key(str(entity["RowKey"]))
    day = date(int(day_key[:4]), int(day_key[4:6]), int(day_key[6:]))
    if companies:
        raw = json.loads(entity.get("c") or "{}")
        per = {(k or None): Counters.from_json(v) for k, v in raw.items()}
    else:
        # Totals only (not grouped by company): one unattributed cell holds them.
        per = {None: Counters.from_json(json.loads(entity.get("t") or "{}"))}
    return Rollup(building_id, day, resource_id, per)


@dataclass(frozen=True)
class Watermark:
    since: date
    through: date


class RollupStore:
    def __init__(self, table: Any) -> None:
        self.table = table

    # -- rollups ----------------------------------------------------------------------------

    def write_day(self, building_id: str, day: date, rollups: Iterable[Rollup]) -> int:
        """Replace the day's rollups of the building by `rollups`; the number written."""
        entities = [to_entity(r) for r in rollups]
        partition = _partition(building_id, day.year)
        prefix = _day_key(day) + tablestore.KEY_SEPARATOR
        stored = tablestore.query_all(
            self.table, tablestore.PREFIX_FILTER,
            tablestore.prefix_parameters(partition, prefix), select=["RowKey"],
        )  # fmt: skip
        keep = {e["RowKey"] for e in entities}
        operations: list[tablestore.Operation] = [
            ("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities
        ]
        operations += [
            ("delete", {"PartitionKey": partition, "RowKey": e["RowKey"]})
            for e in stored
            if e["RowKey"] not in keep
        ]
        # One chunk after another: the chunks share one partition, which the service commits one
        # at a time anyway, and Azurite resets connections under concurrent batches to it.
        tablestore.submit_in_chunks(self.table, operations)
        return len(entities)

    def read(
        self,
        building_id: str,
        first: date,
        last: date,
        *,
        resource_id: str | None = None,
        companies: bool = False,
    ) -> list[Rollup]:
        """Rollups of local days [first, last]: a few concurrent RowKey ranges per year."""
        ranges: list[tuple[date, date]] = []
        day = first
        while day <= last:
            end = min(last, day + timedelta(days=_DAYS_PER_RANGE - 1), date(day.year, 12, 31))
            ranges.append((day, end))
            day = end + timedelta(days=1)
        select = ["RowKey", "c" if companies else "t"]

        def run(span: tuple[date, date]) -> list[tablestore.Entity]:
            lo, hi = span
            query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
            params: dict[str, Any] = {
                "pk": _partition(building_id, lo.year),
                "lo": _day_key(lo),
                "hi": _day_key(hi) + chr(ord(tablestore.KEY_SEPARATOR) + 1),
            }
            found = tablestore.query_all(self.table, query, params, select=select)
            if resource_id is None:
                return found
            suffix = tablestore.KEY_SEPARATOR + tablestore.escape_key(resource_id)
            return [e for e in found if str(e["RowKey"]).endswith(suffix)]

        if len(ranges) == 1:
            chunks = [run(ranges[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(_READ_WORKERS, len(ranges))) as pool:
                chunks = list(pool.map(run, ranges))
        return [_from_entity(building_id, e, companies) for chunk in chunks for e in chunk]

    # -- the watermark ----------------------------------------------------------------------

    def watermark(self, building_id: str) -> Watermark | None:
        entity = tablestore.get_entity(
            self.table, tablestore.join_key(building_id, _STATE), _WATERMARK
        )
        return _watermark(entity)

    def extend(self, building_id: str, first: date, last: date) -> Watermark:
        """Record that [first, last] is rolled up: the watermark grows to cover it when it touches
        or overlaps the covered span (or there is none); a disjoint span leaves it as it is."""

        def build(current: tablestore.Entity | None) -> tablestore.Entity | None:
            mark = _watermark(current)
            if mark is None:
                since, through = first, last
            elif first <= mark.through + timedelta(days=1) and last >= mark.since - timedelta(1):
                since, through = min(mark.since, first), max(mark.through, last)
            else:
                return None
            if mark == Watermark(since, through):
                return None
            return {"since": since.isoformat(), "through": through.isoformat()}

        entity, _ = tablestore.replace_optimistic(
            self.table, tablestore.join_key(building_id, _STATE), _WATERMARK, build
        )
        return _watermark(entity) or Watermark(first, last)


def _watermark(entity: tablestore.Entity | None) -> Watermark | None:
    if not entity or not entity.get("since") or not entity.get("through"):
        return None
    return Watermark(date.fromisoformat(entity["since"]), date.fromisoformat(entity["through"]))


def covered(mark: Watermark | None, first: date, last: date) -> list[date]:
    """The days of [first, last] the watermark says are rolled up."""
    if mark is None:
        return []
    return days_between(max(first, mark.since), min(last, mark.through))
