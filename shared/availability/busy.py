"""Busy blocks: every reason a resource is unavailable, platform bookings and Outlook events alike.

This module is the seam between bookings (which claim slots) and sync (which mirrors Outlook); both
go through `BusyStore`, so the "no double booking" invariant lives in exactly one place.

Storage (docs/DESIGN.md, "No double booking, by construction"): table `busy`, PartitionKey
`<building>|<UTC day yyyymmdd>`, RowKey `r|<resource>|<start as time_key(): 20261201T090000000000Z>|<block id>` for segments and
`lock|<resource>` for the per-resource-day lock. A block is cut into one segment per UTC day it
touches; a segment carries the whole block's start/end so readers never stitch segments.

Each day partition also has a version row (RowKey `version`, a random `v`): every write that
changes the partition's segments rewrites it in the same transaction, so one point read tells a
reader holding a copy of the day whether it is still exact (shared/availability/snapshot.py).

Claiming a slot (platform bookings): per day partition, read the resource's segments and its lock
(ETag), check overlap, then one entity group transaction: update the lock (If-Match, or create if
absent) + insert the segment. A concurrent writer fails the transaction and retries from the read,
where it sees the first claim -> `SlotTaken`. Multi-day blocks commit partition by partition and
compensate on a later conflict (conservative: never a double booking).

Mirroring Outlook (sync): `put` writes without a conflict check (Outlook is the truth for Outlook
blocks; a room may really be double-booked there) but still bumps the lock, so a platform claim
racing it re-reads and sees the Outlook block.

Finding a block by id: sync learns of a moved or deleted event by its id alone (delta `@removed`
carries no times), so each block also has an index row, PartitionKey `<building>|blocks|<resource>`,
RowKey `<block id>`, listing the versions (start, end) whose segments may exist. A version is added
before its segments are written and dropped only after they are deleted, so the index is always a
superset of what is stored and a crash in between leaves nothing `remove` cannot find.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
import secrets
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, Protocol, TypeVar

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.core.errors import Conflict, NotFound
from shared.storage import tablestore

logger = logging.getLogger(__name__)

Source = Literal["platform", "outlook"]

# The single-value extended property every Outlook event we write carries (value: our booking id),
# so sync recognises our own events and never imports them as external bookings. GRAPH.md §4.4:
# one fixed property set GUID, the same id format everywhere.
BOOKING_PROPERTY_ID = "String {5d0c3a7e-2b1f-4c8e-9a6d-b7e4f1c2a9d3} Name BookingBridgeBookingId"

# calendarView delta supports no $expand (GRAPH.md §7.2), so sync cannot see the extended property
# there; the event's transactionId (returned to the app that set it) carries the booking id instead.
# Sync trusts it only for a platform booking of the same building and resource.
_TRANSACTION_PREFIX = "bookingbridge:"

# A block touching more UTC days than this is refused (ValueError): one transaction per day, and
# nothing we book or mirror (bounded sync windows, ≤ 31-day booking ranges) comes near it.
MAX_BLOCK_DAYS = 400
# Claim retries after losing the lock race; each retry re-reads, so more than a handful of losses in a
# row means a hot resource-day, reported as a retryable 409 rather than spinning.
CLAIM_ATTEMPTS = 8
# A filter holds at most 15 comparisons (Table service limit): PartitionKey + 2 per resource prefix.
_RESOURCES_PER_QUERY = 7
# Beyond this many resources one whole-building query per day is cheaper than prefix queries.
_PREFIX_QUERY_LIMIT = 3 * _RESOURCES_PER_QUERY
_QUERY_WORKERS = 4
_RANGE_QUERIES = 4  # a building's day is read as this many concurrent RowKey ranges

_SEGMENT = "r"
# What a reader needs of a segment ($select: no PartitionKey/RowKey/Timestamp to parse).
_BLOCK_FIELDS = (
    "resourceId", "blockId", "start", "end", "source", "showAs", "bookingId", "companyId",
    "outlookEventId", "subject", "attribution", "writtenAt", "seriesMasterId", "createdAt",
)  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOCK = "lock"
_INDEX = "blocks"
_VERSION = "version"  # sorts after every "lock|" and "r|" row: no segment or lock query meets it
# Ids of blocks mirroring Outlook events (shared/sync/plan.py `outlook_block_id`); platform booking
# ids never contain "-", so the prefix alone tells the two kinds apart (GET /bookings/{id}).
OUTLOOK_BLOCK_PREFIX = "o-"


def transaction_id(booking_id: str) -> str:
    """The Graph transactionId of a booking's event: retries of the create stay one event."""
    return _TRANSACTION_PREFIX + booking_id


def booking_id_from_transaction(value: object) -> str | None:
    """The booking id a transactionId names, if it is one of ours in form."""
    if isinstance(value, str) and value.startswith(_TRANSACTION_PREFIX):
        return value[len(_TRANSACTION_PREFIX) :] or None
    return None


@dataclass(frozen=True)
class BusyBlock:
    """One busy interval of one resource. Times are timezone-aware UTC; `start < end`."""

    building_id: str
    resource_id: str
    block_id: str  # platform: the booking id; outlook: "o-" + a stable id of the event occurrence
    start: datetime
    end: datetime
    source: Source
    show_as: str = "busy"  # Graph freeBusyStatus: busy, tentative, oof, workingElsewhere
    booking_id: str | None = None  # the platform booking (source platform, or an imported one)
    company_id: str | None = None
    outlook_event_id: str | None = None
    subject: str | None = None  # only when the building's storeExternalSubjects is on
    attribution: dict[str, Any] | None = None
    # outlook: the series master of a recurring event's occurrence, so that the series' removal
    # removes every occurrence block even when delta names only the master (sync/plan.py)
    series_master_id: str | None = None
    # when the booking was made (platform: the booking's creation; outlook: the event's
    # createdDateTime), for analytics' ad hoc vs planned and lead time; None on blocks written
    # before it was recorded
    created_at: datetime | None = None


class SlotTaken(Conflict):
    """The slot overlaps another block of the resource (HTTP 409)."""

    def __init__(self, conflicting: list[BusyBlock]) -> None:
        super().__init__("The resource is already booked at that time", reason="slot_taken")
        self.conflicting = conflicting


# ---------------------------------------------------------------------------------------------
# Keys and pure helpers
# ---------------------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """`value` in UTC; naive datetimes are refused (a booking system must never guess a zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("busy block times must be timezone-aware")
    return value.astimezone(UTC)


def overlaps(start: datetime, end: datetime, other_start: datetime, other_end: datetime) -> bool:
    """Half-open intervals overlap; touching ends (10:00-11:00, 11:00-12:00) do not, and an empty
    interval (Outlook allows start == end) overlaps nothing."""
    return max(start, other_start) < min(end, other_end)


def utc_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days [start, end) touches (an empty interval still lives on its start day)."""
    first = as_utc(start).date()
    last = (as_utc(end) - timedelta(microseconds=1)).date() if end > start else first
    count = (last - first).days + 1
    if count > MAX_BLOCK_DAYS:
        raise ValueError(f"a busy block may touch at most {MAX_BLOCK_DAYS} days")
    return [first + timedelta(days=i) for i in range(max(count, 1))]


def day_partition(building_id: str, day: date) -> str:
    return tablestore.join_key(building_id, day.strftime("%Y%m%d"))


def _iso(value: datetime) -> str:
    return as_utc(value).isoformat(timespec="microseconds")


def time_key(value: datetime) -> str:
    """An instant as a RowKey part: fixed-width UTC, so keys sort by time (busy segments by start
    within a resource, the bookings table's `s|` copies by start within a building)."""
    return as_utc(value).strftime("%Y%m%dT%H%M%S%fZ")


def _resource_prefix(resource_id: str) -> str:
    return tablestore.join_key(_SEGMENT, resource_id) + tablestore.KEY_SEPARATOR


def segment_row(resource_id: str, start: datetime, block_id: str) -> str:
    return tablestore.join_key(_SEGMENT, resource_id, time_key(start), block_id)


def lock_row(resource_id: str) -> str:
    return tablestore.join_key(_LOCK, resource_id)


def index_partition(building_id: str, resource_id: str) -> str:
    return tablestore.join_key(building_id, _INDEX, resource_id)


def _prefix_end(prefix: str) -> str:
    """The smallest key greater than every key starting with `prefix` (its last char bumped)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


Version = tuple[datetime, datetime]


def segment_keys(
    building_id: str, resource_id: str, block_id: str, version: Version
) -> set[tuple[str, str]]:
    """(PartitionKey, RowKey) of every segment of one version of a block."""
    start, end = version
    row = segment_row(resource_id, start, block_id)
    return {(day_partition(building_id, day), row) for day in utc_days(start, end)}


def block_entity(block: BusyBlock, partition_key: str) -> tablestore.Entity:
    entity: tablestore.Entity = {
        "PartitionKey": partition_key,
        "RowKey": segment_row(block.resource_id, block.start, block.block_id),
        "resourceId": block.resource_id,
        "blockId": block.block_id,
        # ISO strings, not Edm.DateTime: the SDK parses DateTime properties with strptime, which made
        # reading a building's day (5,000 segments) 2.5 times slower; fixed-format UTC strings
        # parse with fromisoformat and still compare in order.
        "start": _iso(block.start),
        "end": _iso(block.end),
        "writtenAt": _iso(datetime.now(UTC)),
        "source": block.source,
        "showAs": block.show_as,
    }
    optional = {
        "bookingId": block.booking_id,
        "companyId": block.company_id,
        "outlookEventId": block.outlook_event_id,
        "subject": block.subject,
        "seriesMasterId": block.series_master_id,
    }
    entity.update({k: v for k, v in optional.items() if v is not None})
    if block.created_at is not None:
        entity["createdAt"] = _iso(block.created_at)
    if block.attribution is not None:
        entity["attribution"] = tablestore.json_property(block.attribution)
    return entity


def block_from_entity(building_id: str, entity: Mapping[str, Any]) -> BusyBlock:
    source = entity.get("source")
    attribution = tablestore.from_json_property(entity.get("attribution"))
    return BusyBlock(
        building_id=building_id,
        resource_id=str(entity["resourceId"]),
        block_id=str(entity["blockId"]),
        start=tablestore.stored_time(entity["start"]),
        end=tablestore.stored_time(entity["end"]),
        source="outlook" if source == "outlook" else "platform",
        show_as=str(entity.get("showAs") or "busy"),
        booking_id=entity.get("bookingId"),
        company_id=entity.get("companyId"),
        outlook_event_id=entity.get("outlookEventId"),
        subject=entity.get("subject"),
        attribution=attribution if isinstance(attribution, dict) else None,
        series_master_id=entity.get("seriesMasterId"),
        created_at=tablestore.stored_time(entity["createdAt"]) if entity.get("createdAt") else None,
    )


def _readable(
    building_id: str, entities: Iterable[Mapping[str, Any]]
) -> Iterator[tuple[str, BusyBlock]]:
    """(writtenAt, block) of each segment entity that can be read; the others are logged."""
    for entity in entities:
        try:
            block = block_from_entity(building_id, entity)
        except (KeyError, ValueError):
            logger.warning("unreadable busy segment skipped")
            continue
        yield str(entity.get("writtenAt") or ""), block


def _versions_from(entity: Mapping[str, Any] | None) -> list[Version]:
    raw = tablestore.from_json_property(entity.get("versions") if entity else None, [])
    versions: list[Version] = []
    for item in raw if isinstance(raw, list) else []:
        with contextlib.suppress(ValueError, TypeError, IndexError):
            versions.append((tablestore.stored_time(item[0]), tablestore.stored_time(item[1])))
    return versions


def _versions_property(versions: Iterable[Version]) -> str:
    unique = sorted(set(versions))
    return tablestore.json_property([[s.isoformat(), e.isoformat()] for s, e in unique])


def _version_op(partition_key: str) -> tablestore.Operation:
    """The upsert that marks a day partition changed, sent in the transaction that changes it.
    A random value rather than the row's ETag: Azurite's ETags are timestamps, which two writes in
    one millisecond can share."""
    row = {"PartitionKey": partition_key, "RowKey": _VERSION, "v": secrets.token_hex(8)}
    return ("upsert", row, {"mode": UpdateMode.REPLACE})


class Timed(Protocol):
    """What choosing among segments needs of a block (BusyBlock, snapshot.Held)."""

    @property
    def resource_id(self) -> str: ...
    @property
    def block_id(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


T = TypeVar("T", bound=Timed)
# Blocks are listed by resource, then start; the id only orders blocks with equal starts.
LISTING_ORDER = operator.attrgetter("resource_id", "start", "block_id")


def newest(candidates: Iterable[tuple[str, T]]) -> list[T]:
    """Of (writtenAt, block) segments, each (resource, block id) once, in `LISTING_ORDER`. While a
    block moves, its old and new segments coexist for a moment: the newest written wins."""
    chosen: dict[tuple[str, str], tuple[str, T]] = {}
    for written, block in candidates:
        key = (block.resource_id, block.block_id)
        if key not in chosen or written > chosen[key][0]:
            chosen[key] = (written, block)
    return sorted((b for _, b in chosen.values()), key=LISTING_ORDER)


def newest_overlapping(
    candidates: Iterable[tuple[str, T]], start: datetime, end: datetime
) -> list[T]:
    """`newest` of the segments overlapping [start, end) (an older version may overlap where the
    newest does not: then the older one is what the range shows, as it did before the move)."""
    return newest(c for c in candidates if overlaps(c[1].start, c[1].end, start, end))


def _changed_ops(partition_key: str, resource_id: str) -> list[tablestore.Operation]:
    """What a write that is not a claim sends with its change: the resource's lock (so a racing
    claim re-reads, and a snapshot knows which resource changed) and the day's version."""
    lock = ("upsert", _new_lock(partition_key, resource_id), {"mode": UpdateMode.REPLACE})
    return [lock, _version_op(partition_key)]


def _new_lock(partition_key: str, resource_id: str) -> tablestore.Entity:
    # Claims race on the lock's ETag; snapshots compare its random value (snapshot.py), which
    # must not repeat: 64 bits.
    return {
        "PartitionKey": partition_key,
        "RowKey": lock_row(resource_id),
        "v": secrets.token_hex(8),
    }


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class BusyStore:
    """Busy blocks in Table Storage. `table` is the `busy` TableClient (shared.storage.clients.table)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # -- writes --------------------------------------------------------------------------------

    def claim(self, block: BusyBlock, *, replacing: BusyBlock | None = None) -> None:
        """Insert `block` atomically if it overlaps no other block of its resource, else SlotTaken.

        With `replacing` (a booking being moved), the old block does not count as a conflict and is
        removed once the new one is committed.
        """
        version = (as_utc(block.start), as_utc(block.end))
        days = utc_days(*version)
        ignore = {block.block_id} | ({replacing.block_id} if replacing else set())
        self._index_add(block, version)
        row = segment_row(block.resource_id, block.start, block.block_id)
        created: list[str] = []  # day partitions where this call wrote the segment
        try:
            for day in days:
                partition_key = day_partition(block.building_id, day)
                if self._claim_day(block, partition_key, ignore):
                    created.append(partition_key)
        except Exception:
            # Compensate: a half-committed multi-day claim would block days nobody booked. Best
            # effort: if compensation fails too, the leftover segments only make the slot look busy.
            with contextlib.suppress(Exception):
                for partition_key in created:
                    self._delete_segment(partition_key, block.resource_id, row)
                if not self._has_segments(block, version):
                    self._index_drop(block, {version})
            raise
        if replacing is None:
            return
        old = self._stored_versions(replacing) | {(as_utc(replacing.start), as_utc(replacing.end))}
        keep: set[tuple[str, str]] = set()
        if replacing.block_id == block.block_id:
            # A booking keeps its id when moved: segments the new version rewrote stay.
            old.discard(version)
            keep = segment_keys(block.building_id, block.resource_id, block.block_id, version)
        self._delete_versions(replacing, old, keep=keep)

    def put(self, block: BusyBlock) -> None:
        """Upsert `block` without a conflict check (sync mirroring Outlook); bumps the locks.

        If a block with the same id exists with other times, its old segments are removed.
        """
        version = (as_utc(block.start), as_utc(block.end))
        days = utc_days(*version)
        previous = self._index_add(block, version)
        for day in days:
            partition_key = day_partition(block.building_id, day)
            operations: list[tablestore.Operation] = [
                ("upsert", block_entity(block, partition_key), {"mode": UpdateMode.REPLACE}),
                *_changed_ops(partition_key, block.resource_id),
            ]
            with tablestore.storage_errors("put busy block"):
                self.table.submit_transaction(operations)
        stale = set(previous) - {version}
        if stale:
            self._delete_versions(
                block,
                stale,
                keep=segment_keys(block.building_id, block.resource_id, block.block_id, version),
            )

    def remove(self, block: BusyBlock) -> None:
        """Delete every segment of `block` (idempotent: already gone is fine)."""
        versions = self._stored_versions(block) | {(as_utc(block.start), as_utc(block.end))}
        self._delete_versions(block, versions)

    def remove_by_id(self, building_id: str, resource_id: str, block_id: str) -> None:
        """Delete every segment of the block with this id, whatever its times (delta `@removed`)."""
        probe = BusyBlock(building_id, resource_id, block_id, _EPOCH, _EPOCH, "outlook")
        self._delete_versions(probe, self._stored_versions(probe))

    # -- reads ---------------------------------------------------------------------------------

    def blocks(
        self,
        building_id: str,
        start: datetime,
        end: datetime,
        *,
        resource_ids: Iterable[str] | None = None,
        source: Source | None = None,
    ) -> list[BusyBlock]:
        """Blocks overlapping [start, end), each once, ordered by (resource, start).

        One partition query per UTC day in the range (bounded: callers limit ranges), filtered by
        resource RowKey prefixes when `resource_ids` is given.
        """
        start, end = as_utc(start), as_utc(end)
        if end <= start:
            return []
        wanted = None if resource_ids is None else sorted(set(resource_ids))
        if wanted is not None and not wanted:
            return []
        found = self._read(building_id, utc_days(start, end), self._range_filters(wanted))
        wanted_set = set(wanted) if wanted is not None else None
        candidates = (
            (written, block)
            for written, block in found
            if (wanted_set is None or block.resource_id in wanted_set)
            and (source is None or block.source == source)
        )
        return newest_overlapping(candidates, start, end)

    def day_segments(
        self,
        building_id: str,
        day: date,
        *,
        split_at: Iterable[str] = (),
        only: Iterable[str] | None = None,
    ) -> list[tuple[str, BusyBlock]]:
        """Every segment of a building's UTC day as (writtenAt, block), whatever its resource (or
        of the resources `only` names): what a snapshot of the day holds. `split_at` (resource
        ids) only cuts the RowKey space into ranges read concurrently."""
        wanted = None if only is None else sorted(set(only))
        found = self._read(building_id, [day], self._range_filters(wanted, split_at=split_at))
        keep = None if wanted is None else set(wanted)
        return [f for f in found if keep is None or f[1].resource_id in keep]

    def day_locks(self, building_id: str, day: date) -> dict[str, str]:
        """Each resource's lock value in a building's UTC day: every write to a resource-day
        changes it, so comparing two readings names the resources that changed between them."""
        low = tablestore.join_key(_LOCK) + tablestore.KEY_SEPARATOR
        rows = tablestore.query_all(
            self.table,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": day_partition(building_id, day), "lo": low, "hi": _prefix_end(low)},
            select=["RowKey", "v"],
        )
        return {tablestore.split_key(str(r["RowKey"]))[1]: str(r.get("v") or "") for r in rows}

    def day_version(self, building_id: str, day: date) -> str | None:
        """The day partition's version (module docstring); None while nothing was written to it
        since versions exist."""
        entity = tablestore.get_entity(self.table, day_partition(building_id, day), _VERSION)
        return str(entity.get("v")) if entity else None

    def forget_subjects(self, building_id: str) -> int:
        """Remove the stored subject from every Outlook block of the building: privacy mode was
        turned back on, and what it promises (no external subject stored) holds for the past too.
        One range scan over the building's partitions, filtered by the service; each segment is
        replaced under its ETag (a sync writing it meanwhile already writes it without one).
        Returns the number of segments changed."""
        low = tablestore.join_key(building_id, "")
        found = tablestore.query_all(
            self.table,
            "PartitionKey ge @lo and PartitionKey lt @hi and source eq 'outlook' and subject ne ''",
            {"lo": low, "hi": _prefix_end(low)},
        )
        changed = 0
        for entity in found:
            kept = {k: v for k, v in entity.items() if k != "subject"}
            update: tablestore.Operation = (
                "update",
                kept,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": tablestore.etag_of(entity),
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
            with (
                contextlib.suppress(Conflict, NotFound),
                tablestore.storage_errors("forget subjects"),
            ):
                changes = _changed_ops(str(entity["PartitionKey"]), str(entity["resourceId"]))
                self.table.submit_transaction([update, *changes])
                changed += 1
        return changed

    # -- internals -----------------------------------------------------------------------------

    def _read(
        self, building_id: str, days: list[date], filters: list[tuple[str, dict[str, Any]]]
    ) -> list[tuple[str, BusyBlock]]:
        """(writtenAt, block) of the segments each filter finds in each day partition."""
        tasks = [(day, f) for day in days for f in filters]

        def run(task: tuple[date, tuple[str, dict[str, Any]]]) -> list[tablestore.Entity]:
            day, (query_filter, parameters) = task
            params = {**parameters, "pk": day_partition(building_id, day)}
            return tablestore.query_all(self.table, query_filter, params, select=_BLOCK_FIELDS)

        if len(tasks) <= 1:
            per_task = [run(task) for task in tasks]
        else:
            # Concurrent queries: the service (or Azurite) serves one while this process parses
            # another; parsing entities is most of the cost of a building's day.
            with ThreadPoolExecutor(max_workers=min(_QUERY_WORKERS, len(tasks))) as pool:
                per_task = list(pool.map(run, tasks))
        return [found for entities in per_task for found in _readable(building_id, entities)]

    # The SDK substitutes `@name` only as a whole space-separated word, hence "( RowKey ... )".
    @staticmethod
    def _range_filters(
        resource_ids: list[str] | None, *, split_at: Iterable[str] = ()
    ) -> list[tuple[str, dict[str, Any]]]:
        """The RowKey filters of one day partition: the whole building (cut at the prefixes of
        `split_at` into ranges read concurrently; every segment is read whatever the ids),
        contiguous ranges of many sorted resources (then filtered in memory), or exact prefixes
        of a few."""
        everything = tablestore.join_key(_SEGMENT) + tablestore.KEY_SEPARATOR
        span = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        if resource_ids is None:
            cuts = sorted({_resource_prefix(r) for r in split_at})
            step = max(1, -(-len(cuts) // _RANGE_QUERIES))
            bounds = [everything, *cuts[step::step][: _RANGE_QUERIES - 1], _prefix_end(everything)]
            return [(span, {"lo": lo, "hi": hi}) for lo, hi in itertools.pairwise(bounds)]
        if len(resource_ids) > _PREFIX_QUERY_LIMIT:
            # Ranges in RowKey order, which is not the ids' order ("a|" sorts after "a-b|").
            prefixes = sorted(_resource_prefix(r) for r in resource_ids)
            size = -(-len(prefixes) // _RANGE_QUERIES)
            chunks = [prefixes[i : i + size] for i in range(0, len(prefixes), size)]
            return [(span, {"lo": c[0], "hi": _prefix_end(c[-1])}) for c in chunks]
        filters: list[tuple[str, dict[str, Any]]] = []
        for i in range(0, len(resource_ids), _RESOURCES_PER_QUERY):
            chunk = resource_ids[i : i + _RESOURCES_PER_QUERY]
            clauses, params = [], {}
            for n, resource_id in enumerate(chunk):
                prefix = _resource_prefix(resource_id)
                clauses.append(f"( RowKey ge @lo{n} and RowKey lt @hi{n} )")
                params[f"lo{n}"], params[f"hi{n}"] = prefix, _prefix_end(prefix)
            filters.append((f"PartitionKey eq @pk and ( {' or '.join(clauses)} )", params))
        return filters

    def _claim_day(self, block: BusyBlock, partition_key: str, ignore: set[str]) -> bool:
        """Commit the segment of `block` in one day partition; True if this call created it."""
        prefix = _resource_prefix(block.resource_id)
        row = segment_row(block.resource_id, block.start, block.block_id)
        query_filter = (
            "PartitionKey eq @pk and ( ( RowKey ge @lo and RowKey lt @hi ) or RowKey eq @lock )"
        )
        params = {
            "pk": partition_key,
            "lo": prefix,
            "hi": _prefix_end(prefix),
            "lock": lock_row(block.resource_id),
        }
        for _ in range(CLAIM_ATTEMPTS):
            entities = tablestore.query_all(self.table, query_filter, params)
            lock = next((e for e in entities if e["RowKey"] == params["lock"]), None)
            existed = False
            conflicting: list[BusyBlock] = []
            for entity in entities:
                if entity is lock:
                    continue
                if entity["RowKey"] == row:
                    existed = True
                    continue
                other = block_from_entity(block.building_id, entity)
                if other.block_id not in ignore and overlaps(
                    other.start, other.end, block.start, block.end
                ):
                    conflicting.append(other)
            if conflicting:
                raise SlotTaken(conflicting)
            lock_op: tablestore.Operation
            if lock is None:
                lock_op = ("create", _new_lock(partition_key, block.resource_id))
            else:
                lock_op = (
                    "update",
                    _new_lock(partition_key, block.resource_id),
                    {
                        "mode": UpdateMode.REPLACE,
                        "etag": tablestore.etag_of(lock),
                        "match_condition": MatchConditions.IfNotModified,
                    },
                )
            operations = [
                lock_op,
                ("upsert", block_entity(block, partition_key), {"mode": UpdateMode.REPLACE}),
                _version_op(partition_key),
            ]
            try:
                with tablestore.storage_errors("claim busy slot"):
                    self.table.submit_transaction(operations)
                return not existed
            except Conflict:
                continue  # another writer touched this resource-day: re-read and decide again
        raise Conflict(
            "The resource is being booked concurrently; try again", reason="concurrent_update"
        )

    def _has_segments(self, block: BusyBlock, version: Version) -> bool:
        keys = segment_keys(block.building_id, block.resource_id, block.block_id, version)
        return any(tablestore.get_entity(self.table, pk, rk) is not None for pk, rk in keys)

    def _index_add(self, block: BusyBlock, version: Version) -> list[Version]:
        """Record `version` before writing its segments; returns the versions recorded before."""
        before: list[Version] = []

        def build(current: tablestore.Entity | None) -> tablestore.Entity | None:
            nonlocal before
            before = _versions_from(current)
            if version in before:
                return None
            return {
                **(current or {}),
                "source": block.source,
                "versions": _versions_property([*before, version]),
            }

        tablestore.replace_optimistic(
            self.table,
            index_partition(block.building_id, block.resource_id),
            tablestore.escape_key(block.block_id),
            build,
        )
        return before

    def _index_drop(self, block: BusyBlock, versions: set[Version]) -> None:
        """Forget versions whose segments are gone; the row goes with its last version."""
        if not versions:
            return
        partition_key = index_partition(block.building_id, block.resource_id)
        row_key = tablestore.escape_key(block.block_id)
        for _ in range(5):
            current = tablestore.get_entity(self.table, partition_key, row_key)
            if current is None:
                return
            left = [v for v in _versions_from(current) if v not in versions]
            if not left:
                if tablestore.delete_if_unchanged(self.table, current):
                    return
                continue
            updated = {**current, "versions": _versions_property(left)}
            try:
                with tablestore.storage_errors("update busy index"):
                    self.table.update_entity(
                        updated,
                        mode=UpdateMode.REPLACE,
                        etag=tablestore.etag_of(current),
                        match_condition=MatchConditions.IfNotModified,
                    )
                return
            except (Conflict, NotFound):
                continue  # lost a race with another writer of this block: read again
        logger.warning("busy index row left with stale versions (concurrent writers)")

    def find(self, building_id: str, block_id: str) -> BusyBlock | None:
        """One block by id, whatever its resource (GET /bookings/{id} of an Outlook booking).

        One query over the building's index rows (one row per block: RowKey = the block id, one
        partition per resource), then the segment of each recorded version; the newest written
        wins, as in `blocks`.
        """
        low = tablestore.join_key(building_id, _INDEX) + tablestore.KEY_SEPARATOR
        rows = tablestore.query_all(
            self.table,
            "PartitionKey ge @lo and PartitionKey lt @hi and RowKey eq @id",
            {"lo": low, "hi": _prefix_end(low), "id": tablestore.escape_key(block_id)},
        )
        found: tuple[str, BusyBlock] | None = None
        for row in rows:
            resource_id = tablestore.split_key(str(row["PartitionKey"]))[-1]
            for version in _versions_from(row):
                pk, rk = min(segment_keys(building_id, resource_id, block_id, version))
                entity = tablestore.get_entity(self.table, pk, rk)
                if entity is None:
                    continue
                written = str(entity.get("writtenAt") or "")
                if found is None or written > found[0]:
                    found = (written, block_from_entity(building_id, entity))
        return found[1] if found else None

    def versions_of(self, building_id: str, resource_id: str, block_id: str) -> set[Version]:
        """The (start, end) versions the index holds for a block (empty: no such block); what
        outgoing webhooks check before reporting a sync change (shared/webhooks/events.py)."""
        probe = BusyBlock(building_id, resource_id, block_id, _EPOCH, _EPOCH, "outlook")
        return self._stored_versions(probe)

    def _stored_versions(self, block: BusyBlock) -> set[Version]:
        entity = tablestore.get_entity(
            self.table,
            index_partition(block.building_id, block.resource_id),
            tablestore.escape_key(block.block_id),
        )
        return set(_versions_from(entity))

    def _delete_segment(self, partition_key: str, resource_id: str, row_key: str) -> None:
        """Delete one segment and mark its resource-day and day changed, atomically; already gone
        changes nothing (the transaction fails whole)."""
        operations = [
            ("delete", {"PartitionKey": partition_key, "RowKey": row_key}),
            *_changed_ops(partition_key, resource_id),
        ]
        with contextlib.suppress(NotFound), tablestore.storage_errors("delete busy segment"):
            self.table.submit_transaction(operations)

    def _delete_versions(
        self, block: BusyBlock, versions: set[Version], *, keep: set[tuple[str, str]] | None = None
    ) -> None:
        """Delete the segments of `versions` (except `keep`), then forget them in the index."""
        keys: set[tuple[str, str]] = set()
        for version in versions:
            keys |= segment_keys(block.building_id, block.resource_id, block.block_id, version)
        for partition_key, row_key in sorted(keys - (keep or set())):
            self._delete_segment(partition_key, block.resource_id, row_key)
        self._index_drop(block, versions)
