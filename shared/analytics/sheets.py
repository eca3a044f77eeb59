"""Sheets: a building's rollups summed over calendar segments, so that a query over a year reads a
few dozen entities instead of one per resource per day (issue 15: 500 rooms x 365 days).

A segment is a day, a decade of a month (days 1-10, 11-20, 21-end), a month or a year, in the
building's local calendar. A query's range is cut into the fewest whole segments (`segments`):
a year from 4 December to 3 December is the days 4-10, two decades, eleven months and three
days. Each segment has one sheet:

- `t`: the segment's totals (every resource, every company), the per-day line of groupBy day
  and week (day sheets only are read for those);
- `c`: totals per attributed company, for groupBy company;
- `r`: totals per resource, for groupBy resource and the most and least popular;
- `h`: the per-resource histograms of durations and lead times, for groupBy resource's medians
  (apart from `r` because they are most of a sheet).

Each part is JSON text stored as 32 K-character pieces in entities of the `rollupsheets` table,
PartitionKey `<building>|<yyyy>`, RowKey `<segment key>|<part><nn>` (property `part` too, so a
read can filter on it), at most `_PIECES_PER_ENTITY` pieces per entity: a part of any size fits
(a year's lead-time histogram of a busy building is large). Day sheets are written with the day's rollups; decade,
month and year sheets are then recomputed from the sheets below them (`refresh`), so every sheet
is a pure function of the day sheets: rebuilding a day rewrites exactly what depends on it.
"""

from __future__ import annotations

import json
from calendar import monthrange
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

from azure.data.tables import UpdateMode

from shared.analytics.compute import UNATTRIBUTED, Counters, Rollup
from shared.storage import tablestore

Kind = Literal["d", "x", "m", "y"]  # day, decade, month, year
Part = Literal["t", "c", "r", "h"]
ALL_PARTS: tuple[Part, ...] = ("t", "c", "r", "h")
_PIECE_CHARS = 32 * 1024  # one string property (64 KiB of UTF-16)
_PIECES_PER_ENTITY = 12  # 768 KiB of text: under the 1 MiB entity limit with the keys
_READ_WORKERS = 8
TABLE = "rollupsheets"


@dataclass(frozen=True)
class Segment:
    kind: Kind
    first: date
    last: date

    @property
    def key(self) -> str:
        if self.kind == "y":
            return f"y{self.first:%Y}"
        if self.kind == "m":
            return f"m{self.first:%Y%m}"
        return f"{self.kind}{self.first:%Y%m%d}"

    def days(self) -> int:
        return (self.last - self.first).days + 1


def day_segment(day: date) -> Segment:
    return Segment("d", day, day)


def decade_of(day: date) -> Segment:
    start = 1 if day.day <= 10 else 11 if day.day <= 20 else 21
    end = start + 9 if start < 21 else monthrange(day.year, day.month)[1]
    return Segment("x", day.replace(day=start), day.replace(day=end))


def month_of(day: date) -> Segment:
    first = day.replace(day=1)
    return Segment("m", first, day.replace(day=monthrange(day.year, day.month)[1]))


def year_of(day: date) -> Segment:
    return Segment("y", date(day.year, 1, 1), date(day.year, 12, 31))


def parent(segment: Segment) -> Segment | None:
    """The segment one level up that contains this one (None for a year)."""
    if segment.kind == "d":
        return decade_of(segment.first)
    if segment.kind == "x":
        return month_of(segment.first)
    if segment.kind == "m":
        return year_of(segment.first)
    return None


def children(segment: Segment) -> list[Segment]:
    """The segments one level down that make this one up."""
    if segment.kind == "y":
        return [month_of(date(segment.first.year, m, 1)) for m in range(1, 13)]
    if segment.kind == "m":
        return [decade_of(segment.first.replace(day=d)) for d in (1, 11, 21)]
    if segment.kind == "x":
        return [day_segment(segment.first + timedelta(days=n)) for n in range(segment.days())]
    return []


def segments(first: date, last: date) -> list[Segment]:
    """[first, last] as the fewest whole segments, in order (the largest that starts at each
    point and ends inside the range)."""
    found: list[Segment] = []
    day = first
    while day <= last:
        for candidate in (year_of(day), month_of(day), decade_of(day), day_segment(day)):
            if candidate.first == day and candidate.last <= last:
                found.append(candidate)
                day = candidate.last + timedelta(days=1)
                break
    return found


# --- the sheet ---------------------------------------------------------------------------------


@dataclass
class Sheet:
    """Sums of rollups: totals, per company (key UNATTRIBUTED for none), per resource."""

    total: Counters = field(default_factory=Counters)
    companies: dict[str, Counters] = field(default_factory=dict)
    resources: dict[str, Counters] = field(default_factory=dict)

    def add(self, other: Sheet) -> None:
        self.total.add(other.total)
        for key, counters in other.companies.items():
            self.companies.setdefault(key, Counters()).add(counters)
        for key, counters in other.resources.items():
            self.resources.setdefault(key, Counters()).add(counters)

    def add_rollup(self, rollup: Rollup) -> None:
        resource = self.resources.setdefault(rollup.resource_id, Counters())
        for company, counters in rollup.companies.items():
            self.total.add(counters)
            resource.add(counters)
            self.companies.setdefault(company or UNATTRIBUTED, Counters()).add(counters)


def sheet_of(rollups: Iterable[Rollup]) -> Sheet:
    sheet = Sheet()
    for rollup in rollups:
        sheet.add_rollup(rollup)
    return sheet


# A sheet's counters are stored as flat lists, not Counters.to_json objects: JSON parses lists of
# integers in C, and a month sheet of 500 rooms holds tens of thousands of histogram entries.
_SCALARS = (
    "inside",
    "outside",
    "bookings",
    "ad_hoc",
    "planned",
    "required",
    "no_shows",
    "released",
)


def _flat(histogram: Counter[int]) -> list[int]:
    return [x for k in sorted(histogram) if histogram[k] for x in (k, histogram[k])]


def _encode(counters: Counters) -> list[Any]:
    scalars: list[Any] = [getattr(counters, name) for name in _SCALARS]
    return [*scalars, _flat(counters.durations), _flat(counters.leads)]


class _Sum:
    """Stored counters added up as they are read (scalars, then the two histograms)."""

    def __init__(self) -> None:
        self.scalars = [0] * len(_SCALARS)
        self.durations: dict[int, int] = {}
        self.leads: dict[int, int] = {}

    def add(self, raw: list[Any]) -> None:
        for i in range(len(_SCALARS)):
            self.scalars[i] += raw[i]
        if len(raw) > len(_SCALARS):
            self.add_histograms(raw[len(_SCALARS)], raw[len(_SCALARS) + 1])

    def add_histograms(self, durations: list[int], leads: list[int]) -> None:
        for into, flat in ((self.durations, durations), (self.leads, leads)):
            get = into.get
            for key, count in zip(flat[::2], flat[1::2], strict=True):
                into[key] = get(key, 0) + count

    def counters(self) -> Counters:
        scalars: dict[str, Any] = dict(zip(_SCALARS, self.scalars, strict=True))
        return Counters(**scalars, durations=Counter(self.durations), leads=Counter(self.leads))


def _decode(raw: list[Any]) -> Counters:
    found = _Sum()
    found.add(raw)
    return found.counters()


def _texts(sheet: Sheet) -> dict[Part, str]:
    def text(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    resources = {k: _encode(v) for k, v in sheet.resources.items()}
    return {
        "t": text(_encode(sheet.total)),
        "c": text({k: _encode(v) for k, v in sheet.companies.items()}),
        # The resources' counts and their histograms apart: only groupBy resource shows
        # per-resource medians, and the histograms are most of a sheet.
        "r": text({k: v[: len(_SCALARS)] for k, v in resources.items()}),
        "h": text({k: v[len(_SCALARS) :] for k, v in resources.items()}),
    }


def _loaded(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


# --- storage -----------------------------------------------------------------------------------


def _partition(building_id: str, segment: Segment) -> str:
    return tablestore.join_key(building_id, f"{segment.first.year:04d}")


def _prefix(segment: Segment) -> str:
    return segment.key + tablestore.KEY_SEPARATOR


def _after(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _entities(pk: str, segment: Segment, part: Part, text: str) -> list[tablestore.Entity]:
    pieces = [text[i : i + _PIECE_CHARS] for i in range(0, len(text), _PIECE_CHARS)] or [""]
    found: list[tablestore.Entity] = []
    for n in range(0, len(pieces), _PIECES_PER_ENTITY):
        entity: tablestore.Entity = {
            "PartitionKey": pk,
            "RowKey": f"{_prefix(segment)}{part}{n // _PIECES_PER_ENTITY:02d}",
            "part": part,
        }
        chunk = pieces[n : n + _PIECES_PER_ENTITY]
        entity.update({f"p{i}": piece for i, piece in enumerate(chunk)})
        found.append(entity)
    return found


def _joined(entities: Iterable[tablestore.Entity]) -> str:
    """The text of one part of one segment from its entities (in RowKey order)."""
    text: list[str] = []
    for entity in sorted(entities, key=lambda e: str(e["RowKey"])):
        n = 0
        while f"p{n}" in entity:
            text.append(str(entity[f"p{n}"]))
            n += 1
    return "".join(text)


def _part_filter(parts: Iterable[Part]) -> str:
    return "(" + " or ".join(f"part eq '{p}'" for p in sorted(set(parts))) + ")"


class SheetStore:
    """Sheets in their own table (`rollupsheets`): a few hundred entities per building-year, so a
    range read never wades through the resource-day rollups."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def _query(self, pk: str, lo: str, hi: str, parts: Iterable[Part] | None = None) -> list[Any]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        if parts is not None:
            query += " and " + _part_filter(parts)
        return tablestore.query_all(self.table, query, {"pk": pk, "lo": lo, "hi": hi})

    def write(self, building_id: str, segment: Segment, sheet: Sheet) -> None:
        """Replace the segment's sheet (its entities; leftovers of a longer one deleted)."""
        pk, prefix = _partition(building_id, segment), _prefix(segment)
        entities = [
            e for part, text in _texts(sheet).items() for e in _entities(pk, segment, part, text)
        ]
        keep = {e["RowKey"] for e in entities}
        stored = tablestore.query_all(
            self.table, "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": pk, "lo": prefix, "hi": _after(prefix)}, select=["RowKey"],
        )  # fmt: skip
        operations: list[tablestore.Operation] = [
            ("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities
        ]
        operations += [
            ("delete", {"PartitionKey": pk, "RowKey": e["RowKey"]})
            for e in stored
            if e["RowKey"] not in keep
        ]
        tablestore.submit_in_chunks(self.table, operations)

    def _raw(self, building_id: str, segment: Segment, parts: tuple[Part, ...]) -> Any:
        """The parsed parts of the segment's sheet ({part: JSON}), None when it has none."""
        prefix = _prefix(segment)
        by_part: dict[str, list[tablestore.Entity]] = {}
        for entity in self._query(_partition(building_id, segment), prefix, _after(prefix), parts):
            by_part.setdefault(str(entity.get("part")), []).append(entity)
        if not by_part:
            return None
        return {part: _loaded(_joined(entities)) for part, entities in by_part.items()}

    def read(self, building_id: str, segment: Segment, parts: tuple[Part, ...]) -> Sheet | None:
        """The segment's sheet, only `parts` of it read (the others empty: without "h", the
        resources' histograms); None when it has none (days rolled up before sheets existed)."""
        sheet, missing = self.read_sum(building_id, [segment], parts)
        return None if missing else sheet

    def read_sum(
        self, building_id: str, found: list[Segment], parts: tuple[Part, ...]
    ) -> tuple[Sheet, list[Segment]]:
        """The sum of the segments' sheets (read concurrently), and the segments without one.
        Added up as stored (flat lists), Counters made once at the end: a year of 500 rooms is
        ~11,000 resource entries and their histograms."""
        total, companies, resources = _Sum(), dict[str, _Sum](), dict[str, _Sum]()
        missing: list[Segment] = []
        with ThreadPoolExecutor(max_workers=max(1, min(_READ_WORKERS, len(found)))) as pool:
            raws = pool.map(lambda s: self._raw(building_id, s, parts), found)
            for segment, raw in zip(found, raws, strict=True):
                if raw is None:
                    missing.append(segment)
                    continue
                if raw.get("t"):
                    total.add(raw["t"])
                for key, value in raw.get("c", {}).items():
                    companies.setdefault(key, _Sum()).add(value)
                for key, value in raw.get("r", {}).items():
                    resources.setdefault(key, _Sum()).add(value)
                for key, (durations, leads) in raw.get("h", {}).items():
                    resources.setdefault(key, _Sum()).add_histograms(durations, leads)
        sheet = Sheet(
            total.counters(),
            {k: v.counters() for k, v in companies.items()},
            {k: v.counters() for k, v in resources.items()},
        )
        return sheet, missing

    def day_totals(self, building_id: str, first: date, last: date) -> dict[date, Counters]:
        """Each day's totals over [first, last] (one RowKey range per year, totals only)."""
        found: dict[date, list[tablestore.Entity]] = {}
        for year in range(first.year, last.year + 1):
            lo, hi = (
                day_segment(max(first, date(year, 1, 1))),
                day_segment(min(last, date(year, 12, 31))),
            )
            for entity in self._query(
                _partition(building_id, lo), _prefix(lo), _after(_prefix(hi)), ("t",)
            ):
                key = str(entity["RowKey"])[1:9]  # "d" + yyyymmdd + "|t00"
                day = date(int(key[:4]), int(key[4:6]), int(key[6:]))
                found.setdefault(day, []).append(entity)
        return {
            day: _decode(json.loads(text)) if (text := _joined(parts)) else Counters()
            for day, parts in found.items()
        }

    def refresh(self, building_id: str, days: Iterable[date]) -> int:
        """Recompute the decades, months and years above `days` (their day sheets written) from
        the sheets below them, bottom up; the number of sheets written."""
        level: set[Segment] = {decade_of(d) for d in days}
        written = 0
        while level:
            upper: set[Segment] = set()
            for segment in sorted(level, key=lambda s: s.first):
                below, _ = self.read_sum(building_id, children(segment), ALL_PARTS)
                self.write(building_id, segment, below)
                written += 1
                if (up := parent(segment)) is not None:
                    upper.add(up)
            level = upper
        return written
