"""The resource registry of a building: rooms, desks and amenity spaces, and their sync status.

Storage: table `resources`, PartitionKey = building, RowKey = resourceId (docs/DESIGN.md). One
entity holds the resource, its calendar mapping and the mapping's sync health, so one partition
query lists a building with everything the admin page shows. The mapping feature owns the
properties in `MAPPING_PROPERTIES`; a resource PUT keeps every property it does not own
(read-modify-write under the ETag) and `unmap_resource` clears the mapping ones.

Sync status shown to admins (`sync_state`):

| state of the resource | status | reason |
|---|---|---|
| paid | `not_supported` | `paid_resource` |
| free, no calendar mapped | `not_synced` | `not_mapped` |
| mapped | stored `syncStatus` (`pending` until the first sync) | stored `syncReason`: `calendar_not_found`, `access_denied`, `reauth_required`, `subscription_failed`, `throttled`, `disconnected`, ... |

The calendar index (`calendarindex`, one entity per mapped calendar, PartitionKey = the resource's
`calendarIndexKey`, RowKey `map`) carries `buildingId` and `resourceId` pointing back at the
resource. `unmap_resource` clears the resource first and then releases the index entry, only if it
still points back: a crash in between leaves an index entry whose resource no longer points to it
(stale, recognisable, safe to take over), never two resources on one calendar.
How a mapping claims and commits its index entry (`committed`, `claimedAt`) is in
shared/mapping/service.py.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from shared.core.errors import Conflict, NotFound, Unprocessable
from shared.core.etags import IfMatch
from shared.core.paging import Listed, parse_top
from shared.core.validate import Checker, check_building, check_path
from shared.directory.people import (
    AutoRelease,
    AutoReleaseOut,
    auto_release_from,
    auto_release_view,
    read_auto_release,
)
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource

ResourceKind = Literal["room", "desk", "amenity"]
SyncStatus = Literal["synced", "not_synced", "not_supported", "pending", "error"]
KINDS: tuple[ResourceKind, ...] = ("room", "desk", "amenity")
_STORED_STATUSES: frozenset[str] = frozenset({"synced", "not_synced", "pending", "error"})
CAPACITY_MAX = 100_000  # also keeps the value an Edm.Int32

# Written by the mapping feature and its sync; kept by resource PUTs, cleared by unmap_resource.
MAPPING_PROPERTIES = (
    "calendarId",
    "calendarName",
    "calendarKind",
    "mailbox",
    "graphMailbox",  # the mailbox of the calendar's Graph paths (shared/graph/guard.py)
    "calendarIsDefault",
    "tenantId",
    "calendarIndexKey",
    "mappedAt",
    "syncStatus",
    "syncReason",
    "lastSyncAt",
    "lagSeconds",
    "lastError",
)
INDEX_ROW_KEY = "map"

_WRITABLE = ("name", "kind", "paid", "timeZone", "capacity", "floor", "section", "autoRelease")
LABEL_MAX = 100  # floor and section labels (Microsoft Places names, issue 19)
_OWNED = frozenset({*_WRITABLE, "createdAt", "updatedAt"})  # what a resource PUT writes
_READ_ONLY = ("id", "sync")


@dataclass(frozen=True)
class Resource:
    building_id: str
    id: str
    name: str
    kind: ResourceKind
    paid: bool
    time_zone: str
    capacity: int | None
    floor: str | None = None  # a label, e.g. Microsoft Places' floor name (issue 19)
    section: str | None = None
    # No-show release for this resource (issue 15), overriding the building's; None: the building's
    auto_release: AutoRelease | None = None


@dataclass(frozen=True)
class CalendarRef:
    id: str
    name: str | None
    mailbox: str | None


@dataclass(frozen=True)
class SyncState:
    status: SyncStatus
    reason: str | None
    calendar: CalendarRef | None
    last_sync_at: str | None  # RFC 3339 UTC
    lag_seconds: int | None


class CalendarOut(TypedDict):
    id: str
    name: str | None
    mailbox: str | None


class SyncOut(TypedDict):
    status: SyncStatus
    reason: str | None
    calendar: CalendarOut | None
    lastSyncAt: str | None
    lagSeconds: int | None


class ResourceOut(TypedDict):
    id: str
    name: str
    kind: ResourceKind
    paid: bool
    timeZone: str
    capacity: int | None
    floor: str | None
    section: str | None
    autoRelease: AutoReleaseOut | None
    sync: SyncOut


@functools.cache
def _zones() -> frozenset[str]:
    # The IANA names this system's tz database knows. "localtime" (this machine's zone, listed on
    # some systems) and "Factory" (IANA's "zone not set") are not time zones of a building.
    return frozenset(zoneinfo.available_timezones()) - {"localtime", "Factory"}


def valid_time_zone(name: str) -> bool:
    return name in _zones()


def time_zones() -> list[str]:
    """Every zone a resource may name, sorted (the OpenAPI `TimeZone` enum)."""
    return sorted(_zones())


# --- entity ↔ domain --------------------------------------------------------------------------


def resource_from_entity(entity: Mapping[str, Any]) -> Resource:
    capacity = entity.get("capacity")
    return Resource(
        building_id=str(entity["PartitionKey"]),
        id=str(entity["RowKey"]),
        name=str(entity.get("name", "")),
        kind=entity.get("kind", "room"),
        paid=bool(entity.get("paid", False)),
        time_zone=str(entity.get("timeZone", "UTC")),
        capacity=int(capacity) if capacity is not None else None,
        floor=entity.get("floor") or None,
        section=entity.get("section") or None,
        auto_release=_stored_auto_release(entity),
    )


def _stored_auto_release(entity: Mapping[str, Any]) -> AutoRelease | None:
    raw = tablestore.from_json_property(entity.get("autoRelease"))
    return auto_release_from(raw) if raw else None


def effective_auto_release(entity: Mapping[str, Any] | None, building: AutoRelease) -> AutoRelease:
    """The no-show release that applies to a resource: its own when set, else the building's."""
    own = _stored_auto_release(entity) if entity is not None else None
    return own if own is not None else building


def is_mapped(entity: Mapping[str, Any]) -> bool:
    return bool(entity.get("calendarId"))


def sync_state(entity: Mapping[str, Any]) -> SyncState:
    """What the admin sees about a resource's calendar sync (table in the module docstring)."""
    calendar = (
        CalendarRef(
            id=str(entity["calendarId"]),
            name=entity.get("calendarName"),
            mailbox=entity.get("mailbox"),
        )
        if is_mapped(entity)
        else None
    )
    last_sync_at = tablestore.iso_utc(entity.get("lastSyncAt"))
    lag = entity.get("lagSeconds")
    lag_seconds = int(lag) if isinstance(lag, int | float) else None
    if entity.get("paid"):
        return SyncState("not_supported", "paid_resource", calendar, last_sync_at, lag_seconds)
    if calendar is None:
        return SyncState("not_synced", "not_mapped", None, None, None)
    stored = entity.get("syncStatus")
    status: SyncStatus = stored if stored in _STORED_STATUSES else "pending"
    return SyncState(status, entity.get("syncReason"), calendar, last_sync_at, lag_seconds)


def resource_view(entity: Mapping[str, Any]) -> ResourceOut:
    """The wire form of a stored resource."""
    r = resource_from_entity(entity)
    s = sync_state(entity)
    return {
        "id": r.id,
        "name": r.name,
        "kind": r.kind,
        "paid": r.paid,
        "timeZone": r.time_zone,
        "capacity": r.capacity,
        "floor": r.floor,
        "section": r.section,
        "autoRelease": auto_release_view(r.auto_release) if r.auto_release else None,
        "sync": {
            "status": s.status,
            "reason": s.reason,
            "calendar": (
                {"id": s.calendar.id, "name": s.calendar.name, "mailbox": s.calendar.mailbox}
                if s.calendar
                else None
            ),
            "lastSyncAt": s.last_sync_at,
            "lagSeconds": s.lag_seconds,
        },
    }


# --- validation -------------------------------------------------------------------------------


def parse_resource(building_id: str, resource_id: str, body: Mapping[str, Any]) -> Resource:
    """A resource from a PUT body, or 400 naming every bad field (path id included)."""
    check = Checker(body)
    check.path_id("resourceId", resource_id)
    check.only(_WRITABLE, _READ_ONLY)
    name = check.name()
    kind = cast(ResourceKind, check.choice("kind", KINDS))
    paid = check.boolean("paid", default=False)
    time_zone = body.get("timeZone")
    if not isinstance(time_zone, str) or not valid_time_zone(time_zone):
        check.add("timeZone", "must be an IANA time zone such as Europe/Amsterdam")
    capacity = check.integer("capacity", minimum=0, maximum=CAPACITY_MAX)
    floor, section = _label(check, body, "floor"), _label(check, body, "section")
    auto_release = read_auto_release(check, "autoRelease")
    check.done()
    return Resource(
        building_id, resource_id, name, kind, paid, str(time_zone), capacity, floor, section,
        auto_release,
    )  # fmt: skip


def _label(check: Checker, body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > LABEL_MAX
        or (not value.isprintable())
    ):
        check.add(field, f"must be a label of 1–{LABEL_MAX} printable characters, or null")
        return None
    return value.strip()


# --- services ---------------------------------------------------------------------------------


def put_resource(
    tables: TableSource,
    building_id: str,
    resource_id: str,
    body: Mapping[str, Any],
    *,
    if_match: IfMatch | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[ResourceOut, bool, str]:
    """Create or replace a resource; its mapping and sync health are kept. Returns (view, created,
    ETag). With `if_match`, only the version it names is replaced (412 otherwise, and for a
    resource that does not exist yet): checked on the version the conditional write replaces.

    A mapped resource cannot become paid (422 `resource_mapped`): paid resources never sync, so
    the mapping would silently stop working. Unmap it first. `extra`: properties a service keeps
    on the entity besides the body's (the Places import's `placeId`, `placeMailbox`).
    """
    check_building(building_id)
    resource = parse_resource(building_id, resource_id, body)

    def build(current: Entity | None) -> Entity:
        if if_match is not None:
            if_match.check(tablestore.etag_of(current) if current is not None else None)
        if current is not None and resource.paid and is_mapped(current):
            raise Unprocessable(
                "A mapped resource cannot be paid; remove its calendar mapping first",
                reason="resource_mapped",
            )
        now = tablestore.utc_now()
        # Everything this PUT does not own survives it (mapping, sync health, future fields).
        kept = {k: v for k, v in (current or {}).items() if k not in _OWNED}
        return {
            **kept,
            "name": resource.name,
            "kind": resource.kind,
            "paid": resource.paid,
            "timeZone": resource.time_zone,
            "capacity": resource.capacity,
            "floor": resource.floor,
            "section": resource.section,
            "autoRelease": tablestore.json_property(auto_release_view(resource.auto_release))
            if resource.auto_release
            else None,
            **(extra or {}),
            "createdAt": current.get("createdAt", now) if current else now,
            "updatedAt": now,
        }

    entity, created = tablestore.replace_optimistic(
        tables(tablestore.RESOURCES), building_id, resource_id, build
    )
    assert entity is not None  # build never declines
    return resource_view(entity), created, tablestore.version_tag(entity) or ""


def get_resource(tables: TableSource, building_id: str, resource_id: str) -> ResourceOut:
    return read_resource(tables, building_id, resource_id)[0]


def read_resource(
    tables: TableSource, building_id: str, resource_id: str
) -> tuple[ResourceOut, str]:
    """One resource and its ETag, or 404."""
    check_path(building=building_id, resourceId=resource_id)
    entity = tablestore.get_entity(tables(tablestore.RESOURCES), building_id, resource_id)
    if entity is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    return resource_view(entity), tablestore.version_tag(entity) or ""


def list_resources(
    tables: TableSource, building_id: str, top: str | None, continuation_token: str | None
) -> Listed[ResourceOut]:
    """One page of the building's resources (one partition), ordered by id; follow the token."""
    check_building(building_id)
    page = tablestore.query_page(
        tables(tablestore.RESOURCES),
        "PartitionKey eq @b",
        {"b": building_id},
        top=parse_top(top),
        continuation_token=continuation_token,
    )
    return Listed([resource_view(e) for e in page.items], page.continuation_token)


def unmap_resource(tables: TableSource, building_id: str, resource_id: str) -> bool:
    """Remove a resource's calendar mapping; True if it had one.

    The hook the mapping feature extends (subscription and delta state clean-up go here too).
    Today: clear the mapping properties, then release the calendar index entry if it still points
    at this resource (order explained in the module docstring).
    """
    return bool(release_mapping(tables, building_id, resource_id).get("calendarId"))


def release_mapping(
    tables: TableSource, building_id: str, resource_id: str, *, if_match: IfMatch | None = None
) -> dict[str, Any]:
    """`unmap_resource`, returning the mapping properties it removed ({} if there were none).
    With `if_match`: 412 unless the resource is at the version it names (checked on the version
    the conditional write replaces)."""
    released: dict[str, Any] = {}

    def build(current: Entity | None) -> Entity | None:
        released.clear()
        if if_match is not None:
            if_match.check(tablestore.etag_of(current) if current is not None else None)
        if current is None or not any(k in current for k in MAPPING_PROPERTIES):
            return None
        released.update({k: current[k] for k in MAPPING_PROPERTIES if k in current})
        return {k: v for k, v in current.items() if k not in MAPPING_PROPERTIES}

    tablestore.replace_optimistic(tables(tablestore.RESOURCES), building_id, resource_id, build)
    index_key = released.get("calendarIndexKey")
    if index_key:
        index = tables(tablestore.CALENDAR_INDEX)
        entry = tablestore.get_entity(index, str(index_key), INDEX_ROW_KEY)
        if (
            entry is not None
            and entry.get("buildingId") == building_id
            and entry.get("resourceId") == resource_id
        ):
            tablestore.delete_if_unchanged(index, entry)
    return dict(released)


def delete_resource(
    tables: TableSource, building_id: str, resource_id: str, *, if_match: IfMatch | None = None
) -> None:
    """Unmap, then delete. Idempotent: deleting a missing resource succeeds (204). With
    `if_match` (an unmapped resource: shared/mapping/service.py checks a mapped one when it
    unmaps it), only the version it names is deleted: 412 otherwise, or when nothing is there."""
    check_path(building=building_id, resourceId=resource_id)
    table = tables(tablestore.RESOURCES)
    for _ in range(5):
        unmap_resource(tables, building_id, resource_id)
        entity = tablestore.get_entity(table, building_id, resource_id)
        if if_match is not None:
            if_match.check(tablestore.etag_of(entity) if entity is not None else None)
        if entity is None:
            return
        # Deleting the exact version read keeps a mapping made meanwhile from being orphaned.
        if not is_mapped(entity) and tablestore.delete_if_unchanged(table, entity):
            return
    raise Conflict(
        "The resource is being changed concurrently; try again", reason="concurrent_update"
    )
