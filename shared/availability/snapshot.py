"""Whole building-days of busy blocks kept in the process, checked by one point read per day.

Why: a building's availability is read far more often than it changes, and reading a day of a
500-room building (5,000 segments) from Table Storage costs about 200 ms, nearly all of it the
service's scan and the SDK's parsing, where the portal's target is 100 ms, exact and fresh.

How (docs/DESIGN.md, "Availability from a checked copy of the day"): every write to a day
partition of the `busy` table rewrites the partition's version row in the same transaction
(shared/availability/busy.py). A read point-reads the version of each day it covers first, then
uses its copy of each day whose version is unchanged and rescans only the others. Because the
version is read before the scan, a copy is never labelled newer than its contents: a write that
lands during a scan leaves a copy whose label is already out of date, so the next read rescans.
Read-your-writes holds across instances: a writer's segments and version commit together, and
Table Storage is strongly consistent, so any read that starts after the write sees the new version.

What is held: per block, what availability shows (the rendered view, from the injected `render`)
and what choosing among segments needs; no subject and no attribution, so privacy mode holds in
memory as in tables. Bounded by blocks held (least recently used days go first); a query for a
few resources whose days are not held reads them directly by RowKey prefix rather than scanning
whole days nobody asked for.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Generic, TypeVar

from shared.availability.busy import (
    LISTING_ORDER,
    BusyBlock,
    BusyStore,
    as_utc,
    newest,
    overlaps,
    utc_days,
)

V = TypeVar("V")

# About 1 KB each in memory (the view's strings dominate): 50,000 blocks is a week of a 500-room
# building at 10 blocks per room and day, in about 50 MB.
MAX_BLOCKS = 50_000
# At most this many resources and a day not held: read by prefix (BusyStore.blocks) instead.
FEW_RESOURCES = 21
_VERSION_READERS = 8


@dataclass(frozen=True, slots=True)
class Held(Generic[V]):
    """One segment as held: enough to choose among segments and cut free time, and its view."""

    resource_id: str
    block_id: str
    start: datetime
    end: datetime
    show_as: str
    written: str  # the segment's writtenAt: of two versions of a moving block, the newer wins
    view: V


@dataclass(frozen=True)
class _Day(Generic[V]):
    version: str | None  # the day's version, read before its locks and segments were
    locks: dict[str, str]  # each resource's lock value, read before its segments were
    start: datetime  # the UTC day [start, end)
    end: datetime
    by_resource: dict[str, tuple[Held[V], ...]]  # each in LISTING_ORDER
    count: int
    repeats: bool  # a block id occurs twice in one resource's day (a move in progress)


def _day(version: str | None, locks: dict[str, str], day: date, segments: list[Held[V]]) -> _Day[V]:
    by_resource: dict[str, list[Held[V]]] = {}
    for held in sorted(segments, key=LISTING_ORDER):
        by_resource.setdefault(held.resource_id, []).append(held)
    repeats = any(len({h.block_id for h in items}) < len(items) for items in by_resource.values())
    start = datetime.combine(day, time(0), UTC)
    return _Day(
        version,
        locks,
        start,
        start + timedelta(days=1),
        {r: tuple(items) for r, items in by_resource.items()},
        len(segments),
        repeats,
    )


class BusySnapshots(Generic[V]):
    """Busy blocks as `BusyStore.blocks` answers them (same choice, same order), from copies of
    whole building-days validated on every read. Thread-safe; one per process (shared/wiring.py)."""

    def __init__(
        self,
        store: BusyStore,
        render: Callable[[BusyBlock], V],
        *,
        max_blocks: int = MAX_BLOCKS,
    ) -> None:
        self.store = store
        self._render = render
        self._max_blocks = max_blocks
        self._days: OrderedDict[tuple[str, date], _Day[V]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def blocks(
        self,
        building_id: str,
        start: datetime,
        end: datetime,
        *,
        resource_ids: Iterable[str] | None = None,
    ) -> list[Held[V]]:
        """Blocks overlapping [start, end), each once, in `LISTING_ORDER`."""
        grouped = self.by_resource(building_id, start, end, resource_ids=resource_ids)
        return [held for resource in sorted(grouped) for held in grouped[resource]]

    def by_resource(
        self,
        building_id: str,
        start: datetime,
        end: datetime,
        *,
        resource_ids: Iterable[str] | None = None,
    ) -> dict[str, list[Held[V]]]:
        """`blocks`, grouped by resource (resources without blocks are absent)."""
        start, end = as_utc(start), as_utc(end)
        wanted = None if resource_ids is None else set(resource_ids)
        if end <= start or wanted == set():
            return {}
        days = utc_days(start, end)
        if (
            wanted is not None
            and len(wanted) <= FEW_RESOURCES
            and not self._holds(building_id, days)
        ):
            grouped: dict[str, list[Held[V]]] = {}
            for block in self.store.blocks(building_id, start, end, resource_ids=wanted):
                grouped.setdefault(block.resource_id, []).append(self._hold("", block))
            return grouped
        versions = self._versions(building_id, days)
        grouped = {}
        repeats = len(days) > 1  # a block of several days has a segment in each
        for day in days:
            held = self._fresh(building_id, day, versions[day], wanted or ())
            repeats = repeats or held.repeats
            # Every segment of a day overlaps that day, so a day inside the range needs no check.
            inside = start <= held.start and held.end <= end
            for resource_id, items in held.by_resource.items():
                if wanted is not None and resource_id not in wanted:
                    continue
                chosen = (
                    items if inside else [h for h in items if overlaps(h.start, h.end, start, end)]
                )
                if chosen:
                    grouped.setdefault(resource_id, []).extend(chosen)
        if repeats:
            # Days concatenate in order unless a block id occurs twice; only then choose.
            for resource_id, listed in grouped.items():
                if len({h.block_id for h in listed}) < len(listed):
                    grouped[resource_id] = newest((h.written, h) for h in listed)
        return grouped

    @property
    def held_blocks(self) -> int:
        with self._lock:
            return self._held

    # -- internals -----------------------------------------------------------------------------

    def _hold(self, written: str, block: BusyBlock) -> Held[V]:
        return Held(
            block.resource_id,
            block.block_id,
            block.start,
            block.end,
            block.show_as,
            written,
            self._render(block),
        )

    def _holds(self, building_id: str, days: list[date]) -> bool:
        with self._lock:
            return all((building_id, day) in self._days for day in days)

    def _versions(self, building_id: str, days: list[date]) -> dict[date, str | None]:
        def read(day: date) -> str | None:
            return self.store.day_version(building_id, day)

        if len(days) == 1:
            return {days[0]: read(days[0])}
        with ThreadPoolExecutor(max_workers=min(_VERSION_READERS, len(days))) as pool:
            return dict(zip(days, pool.map(read, days), strict=True))

    def _fresh(
        self, building_id: str, day: date, version: str | None, split_at: Iterable[str]
    ) -> _Day[V]:
        """The held copy of the day if its version is `version`, else one brought up to date: the
        resources whose lock changed are read again (all of them when many did or nothing is
        held). Locks are read before segments, as the version is before locks: a copy is never
        labelled newer than what it holds."""
        key = (building_id, day)
        with self._lock:
            held = self._days.get(key)
            if held is not None and held.version == version:
                self._days.move_to_end(key)
                return held
        locks = self.store.day_locks(building_id, day)
        kept: list[Held[V]] = []
        if held is None:
            found = self.store.day_segments(building_id, day, split_at=split_at)
        else:
            both = locks.keys() | held.locks.keys()
            changed = {r for r in both if locks.get(r) != held.locks.get(r)}
            if len(changed) > FEW_RESOURCES:
                found = self.store.day_segments(building_id, day, split_at=split_at)
            else:
                found = self.store.day_segments(building_id, day, only=changed)
                kept = [h for r, hs in held.by_resource.items() if r not in changed for h in hs]
        # An empty block (Outlook allows start == end) overlaps nothing: never shown, not held.
        kept += [self._hold(w, b) for w, b in found if b.start < b.end]
        fresh = _day(version, locks, day, kept)
        self._keep(key, fresh)
        return fresh

    def _keep(self, key: tuple[str, date], day: _Day[V]) -> None:
        # Two readers may rescan one day at once; whichever stores last wins, and if that is the
        # older copy its older version makes the next read rescan: never stale, at worst twice.
        with self._lock:
            old = self._days.pop(key, None)
            if old is not None:
                self._held -= old.count
            if day.count > self._max_blocks:
                return
            self._days[key] = day
            self._held += day.count
            while self._held > self._max_blocks:
                _, evicted = self._days.popitem(last=False)
                self._held -= evicted.count
