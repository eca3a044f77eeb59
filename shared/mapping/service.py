"""Resource ↔ calendar mapping for a connected building (finding the calendars to map:
shared/mapping/discovery.py).

Mapping (`map_resource`, PUT .../mapping): the calendar is read through Graph
(`GET /users/{graph mailbox}/calendars/{id}`) and must be visible, owned by the named mailbox and
`canEdit`; else 422 with a reason (`calendar_not_found`, `access_denied`, `not_writable`,
`not_connected`, `reauth_required`). Paid resources: 422 `not_supported`. One calendar ↔ one
resource is enforced by the `calendarindex` table (PartitionKey sha256(tenant|mailbox|calendarId),
RowKey `map`):

1. claim: insert-if-absent `{buildingId, resourceId, committed: false, claimedAt}` (ETag kept).
   An existing entry of this resource is reused; another resource's entry is a 409
   `calendar_mapped`, unless it is abandoned (below), then it is taken over;
2. the resource entity gets the mapping under its ETag (`syncStatus: pending`);
3. commit: the index entry becomes `committed: true` If-Match the claim's ETag. If it was taken
   over meanwhile, the resource's mapping is rolled back and the answer is 409: the commit is the
   single point that decides, so two resources can never both end up mapped to one calendar;
4. the resource's previous calendar (a re-map) is released, the guard's cache for the building is
   dropped (after a re-map: a first mapping adds an allow, and the guard re-reads before it
   refuses) and a `SyncRequest(reason="mapped", full=True)` is queued.
A failed map changes nothing (the old mapping stays until step 2). An entry is *abandoned* when it
is uncommitted and older than `CLAIM_GRACE` (a crashed map; its resource, if it points at the
entry, is cleared first), or committed while its resource no longer points at it (a crashed
unmap, shared/directory/registry.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.core.errors import Conflict, GraphError, IdentityError, NotFound, Unprocessable
from shared.core.etags import IfMatch
from shared.core.validate import Checker, check_path
from shared.directory import registry
from shared.directory.registry import INDEX_ROW_KEY, ResourceOut
from shared.graph.audit import AuditEntry
from shared.graph.guard import DEFAULT_CALENDAR, MappedCalendar, Who
from shared.mapping.access import (
    PLACES_SCOPE,
    CalendarKind,
    ConnectionSource,
    account_mailbox,
    connected,
    graph_reason,
    is_room,
    reauth,
    users_path,
)
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.sync.queue import SyncRequest
from shared.webhooks import events as webhook_events

if TYPE_CHECKING:
    from shared.core.connection import Connection
    from shared.graph.client import GraphClient

logger = logging.getLogger(__name__)

CLAIM_GRACE = timedelta(minutes=2)  # far longer than steps 1-3 take; then a claim is abandoned
CALENDAR_ID_MAX = 512  # Graph ids are ~150 characters; the bound keeps index keys and logs sane


# ---------------------------------------------------------------- collaborators


@dataclass(frozen=True)
class MappingDeps:
    tables: TableSource
    connections: ConnectionSource
    graph: GraphClient
    enqueue: Callable[[SyncRequest], None]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Outgoing webhooks (issue 16): mapping.status_changed to `pending`, before the write.
    emit: Callable[[str, list[Any]], object] = field(default=lambda building, events: 0)
    # The audit log (a Places import records who imported what, issue 19).
    audit: Callable[[AuditEntry], None] = field(default=lambda entry: None)


def load_mapped(tables: TableSource, building_id: str) -> dict[str, MappedCalendar]:
    """The building's mapped calendars by resource id (what the calendar guard trusts)."""
    entities = tablestore.query_all(
        tables(tablestore.RESOURCES),
        "PartitionKey eq @b",
        {"b": building_id},
        select=[
            "PartitionKey", "RowKey", "paid", "calendarId", "mailbox", "graphMailbox",
            "calendarIsDefault", "tenantId",
        ],
    )  # fmt: skip
    out: dict[str, MappedCalendar] = {}
    for entity in entities:
        calendar = MappedCalendar.from_entity(entity)
        if calendar is not None:
            out[calendar.resource_id] = calendar
    return out


def index_key(tenant_id: str, mailbox: str, calendar_id: str) -> str:
    """The `calendarindex` PartitionKey of a calendar (DESIGN.md)."""
    raw = f"{tenant_id.lower()}|{mailbox.lower()}|{calendar_id}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- mapping


@dataclass(frozen=True)
class Found:
    """A calendar as read through Graph, ready to map."""

    calendar_id: str
    name: str
    mailbox: str  # the owner
    graph_mailbox: str
    kind: CalendarKind
    is_default: bool
    can_edit: bool


def _parse_mapping(building_id: str, resource_id: str, body: Mapping[str, Any]) -> tuple[str, str]:
    check_path(building=building_id, resourceId=resource_id)
    check = Checker(body)
    check.only(("calendarId", "mailbox"))
    calendar_id = body.get("calendarId")
    if (
        not isinstance(calendar_id, str)
        or not calendar_id.strip()
        or len(calendar_id) > CALENDAR_ID_MAX
        or not calendar_id.isprintable()
    ):
        check.add("calendarId", f"must be a calendar id (1–{CALENDAR_ID_MAX} characters)")
        calendar_id = ""
    mailbox = check.email("mailbox", body.get("mailbox"))
    check.done()
    assert mailbox is not None  # done() raised otherwise
    return calendar_id.strip(), mailbox


def _resolve(
    deps: MappingDeps, connection: Connection, calendar_id: str, mailbox: str, actor: str
) -> Found:
    """Read the calendar through Graph from where this connection reaches it, or 422 why not.

    Application: `/users/{mailbox}`. Delegated: the account's own mailbox first (own calendars and
    the sharee's copies of shared ones), then the owner's mailbox (a room or person who delegated
    their default calendar, GRAPH.md §3.2).
    """
    account = Who.of(connection).account
    me = account_mailbox(connection)
    if me is None:
        candidates = [mailbox]
    elif mailbox in account:
        candidates = [me]
    else:
        candidates = [me, mailbox]
    reasons: list[str] = []
    for path_mailbox in candidates:
        try:
            cal = deps.graph.get_json(
                connection,
                users_path(path_mailbox, f"/calendars/{quote(calendar_id, safe='')}"),
                operation="calendar.read",
                actor=actor,
            )
        except GraphError as err:
            reason = graph_reason(err)
            if reason is None:
                raise
            reasons.append(reason)
            continue
        owner = cal.get("owner") or {}
        address = str(owner.get("address") or path_mailbox).lower()
        if not (address == mailbox or (address in account and mailbox in account)):
            reasons.append("calendar_not_found")  # that id is another mailbox's calendar
            continue
        is_default = cal.get("isDefaultCalendar") is True
        if address in account:
            kind: CalendarKind = "personal"
        elif is_room(deps.graph, connection, address, actor):
            kind = "room"
        else:
            kind = "shared" if me is not None else "personal"
        name = str(cal.get("name") or "")
        if kind == "room" and is_default and owner.get("name"):
            name = str(owner["name"])  # a room's default calendar is just "Calendar"
        return Found(
            calendar_id=str(cal.get("id") or calendar_id),
            name=name,
            mailbox=address,
            graph_mailbox=path_mailbox,
            kind=kind,
            is_default=is_default,
            can_edit=bool(cal.get("canEdit")),
        )
    reason = next((r for r in ("reauth_required", "access_denied") if r in reasons), None)
    reason = reason or "calendar_not_found"
    details = {
        "calendar_not_found": "No calendar with that id in that mailbox is visible to this connection",
        "access_denied": "This connection may not read that calendar",
        "reauth_required": "The connection to Microsoft 365 needs an administrator to reconnect",
    }
    raise Unprocessable(details[reason], reason=reason)


def _free_busy_mailbox(
    deps: MappingDeps, connection: Connection, mailbox: str, actor: str
) -> Found:
    """A free/busy connection maps a mailbox's default calendar (`DEFAULT_CALENDAR`): getSchedule
    reads only that one, and free/busy rights show no calendar to read. The Places API, where
    granted, says whether the mailbox exists and names it; a mailbox getSchedule cannot resolve
    shows in sync health (`calendar_not_found`)."""
    name = mailbox
    kind: CalendarKind = "personal" if mailbox in Who.of(connection).account else "shared"
    if PLACES_SCOPE in connection.scopes:
        try:
            place = deps.graph.get_json(
                connection, f"/places/{quote(mailbox, safe='@')}", operation="places.read",
                actor=actor,
            )  # fmt: skip
        except GraphError as err:
            if err.failure.status != 404:
                raise
            raise Unprocessable(
                "No room, desk or workspace with that address", reason="calendar_not_found"
            ) from err
        name = str(place.get("displayName") or mailbox)
        kind = "room"
    return Found(
        calendar_id=DEFAULT_CALENDAR, name=name, mailbox=mailbox, graph_mailbox=mailbox,
        kind=kind, is_default=True, can_edit=False,
    )  # fmt: skip


def map_resource(
    deps: MappingDeps,
    building_id: str,
    resource_id: str,
    body: Mapping[str, Any],
    *,
    actor: str = "system",
) -> ResourceOut:
    """Map a resource to a calendar (module docstring); the resource as GET shows it."""
    calendar_id, mailbox = _parse_mapping(building_id, resource_id, body)
    resources = deps.tables(tablestore.RESOURCES)
    current = tablestore.get_entity(resources, building_id, resource_id)
    if current is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    if current.get("paid"):
        raise Unprocessable("Paid resources cannot sync to a calendar", reason="not_supported")
    connection = connected(deps.connections, building_id)
    try:
        if connection.free_busy_only and calendar_id == DEFAULT_CALENDAR:
            found = _free_busy_mailbox(deps, connection, mailbox, actor)
        else:
            found = _resolve(deps, connection, calendar_id, mailbox, actor)
    except IdentityError as err:
        if err.reauth:
            raise reauth(err) from err
        raise
    # A free/busy connection's mappings are read-only (bookings on them are refused, issue 19).
    if not found.can_edit and not connection.free_busy_only:
        raise Unprocessable(
            "This connection can see that calendar but may not write to it", reason="not_writable"
        )
    return apply_mapping(deps, connection, building_id, resource_id, found)


def apply_mapping(
    deps: MappingDeps, connection: Connection, building_id: str, resource_id: str, found: Found
) -> ResourceOut:
    """Steps 1-4 of the module docstring for a calendar already read and checked (`map_resource`
    reads one; the bulk import, shared/mapping/bulk.py, reads many in `$batch` probes)."""
    key = index_key(connection.tenant_id, found.mailbox, found.calendar_id)
    index = deps.tables(tablestore.CALENDAR_INDEX)
    claim, fresh_claim = _claim(deps, index, key, building_id, resource_id)
    try:
        entity, previous_key, changed = _write_mapping(
            deps, connection, found, key, building_id, resource_id
        )
    except Exception:
        if fresh_claim:
            _release(index, key, building_id, resource_id)
        raise
    if not claim.get("committed"):
        _commit(deps, index, claim, building_id, resource_id, key)
    if previous_key and previous_key != key:
        _release(index, previous_key, building_id, resource_id)
    if previous_key:
        # A re-map (or fresher details) may end an allow the guard has cached. A first mapping
        # only adds one, and the guard re-reads before it refuses anything, so its cache stays:
        # dropping it per row made every Graph request of the syncs running beside a 1,000-row
        # mappings:import reload the building's 1,000 resources.
        deps.graph.mappings_changed(building_id)
    if changed or entity.get("syncStatus") == "pending":
        deps.enqueue(
            SyncRequest(building_id, found.mailbox, "mapped", resource=resource_id, full=True)
        )
    logger.info(
        "building %s: resource %s mapped to a %s calendar (%s)",
        building_id, resource_id, found.kind, "changed" if changed else "unchanged",
    )  # fmt: skip
    return registry.resource_view(entity)


def _write_mapping(
    deps: MappingDeps,
    connection: Connection,
    found: Found,
    key: str,
    building_id: str,
    resource_id: str,
) -> tuple[Entity, str | None, bool]:
    """Put the mapping on the resource (under its ETag): (entity, previous index key, changed)."""
    previous: dict[str, Any] = {}
    mapped_at = deps.now()

    def build(current: Entity | None) -> Entity | None:
        previous.clear()
        if current is None:
            raise NotFound("No such resource in this building", reason="resource_not_found")
        if current.get("paid"):
            raise Unprocessable("Paid resources cannot sync to a calendar", reason="not_supported")
        previous["key"] = current.get("calendarIndexKey")
        mapping = {
            "calendarId": found.calendar_id,
            "calendarName": found.name,
            "calendarKind": found.kind,
            "mailbox": found.mailbox,
            "graphMailbox": found.graph_mailbox,
            "calendarIsDefault": found.is_default,
            "tenantId": connection.tenant_id,
            "calendarIndexKey": key,
        }
        if current.get("calendarIndexKey") == key:
            if all(current.get(k) == v for k, v in mapping.items()):
                return None  # the same mapping again: nothing to write (idempotent PUT)
            return {**current, **mapping}  # same calendar, fresher details: sync state kept
        kept = {k: v for k, v in current.items() if k not in registry.MAPPING_PROPERTIES}
        if current.get("syncStatus") != "pending":
            deps.emit(building_id, [webhook_events.mapping_status(
                building=building_id, resource=resource_id, status="pending",
                previous=current.get("syncStatus"), reason="awaiting_first_sync",
                table=tablestore.RESOURCES, at=tablestore.iso_utc(mapped_at) or "",
            )])  # fmt: skip
        return {
            **kept,
            **mapping,
            "mappedAt": mapped_at,
            "syncStatus": "pending",
            "syncReason": "awaiting_first_sync",
        }

    entity, _ = tablestore.replace_optimistic(
        deps.tables(tablestore.RESOURCES), building_id, resource_id, build
    )
    assert entity is not None
    old = previous.get("key")
    changed = old != key
    return entity, str(old) if old else None, changed


def _claim(
    deps: MappingDeps, index: Any, key: str, building_id: str, resource_id: str
) -> tuple[Entity, bool]:
    """Step 1: the calendar's index entry for this resource: (entry with its ETag, newly made)."""
    for _ in range(5):
        entry = {
            "PartitionKey": key,
            "RowKey": INDEX_ROW_KEY,
            "buildingId": building_id,
            "resourceId": resource_id,
            "committed": False,
            "claimedAt": deps.now(),
        }
        try:
            with tablestore.storage_errors("claim calendarindex"):
                metadata = index.create_entity(entry)
            return {**entry, "etag": metadata.get("etag")}, True
        except Conflict as exc:
            if exc.reason != "exists":
                raise
        existing = tablestore.get_entity(index, key, INDEX_ROW_KEY)
        if existing is None:
            continue  # released meanwhile: claim again
        if existing.get("buildingId") == building_id and existing.get("resourceId") == resource_id:
            return {**existing, "etag": tablestore.etag_of(existing)}, False
        if not _abandoned(deps, existing, key):
            raise Conflict(
                "That calendar is already mapped to another resource", reason="calendar_mapped"
            )
        tablestore.delete_if_unchanged(index, existing)  # taken over; a changed entry is re-read
    raise Conflict(
        "The calendar is being mapped concurrently; try again", reason="concurrent_update"
    )


def _abandoned(deps: MappingDeps, entry: Entity, key: str) -> bool:
    """Whether another resource's index entry may be taken over (module docstring)."""
    resources = deps.tables(tablestore.RESOURCES)
    building, resource = str(entry.get("buildingId") or ""), str(entry.get("resourceId") or "")
    if not entry.get("committed"):
        claimed = entry.get("claimedAt")
        if isinstance(claimed, datetime):
            claimed = claimed if claimed.tzinfo else claimed.replace(tzinfo=UTC)
            if deps.now() - claimed < CLAIM_GRACE:
                return False  # a map in progress
        # A crashed map: clear its resource if it got as far as pointing here.
        _clear_if_pointing(resources, building, resource, key)
        return True
    holder = tablestore.get_entity(resources, building, resource) if building and resource else None
    return holder is None or holder.get("calendarIndexKey") != key


def _clear_if_pointing(resources: Any, building: str, resource: str, key: str) -> None:
    if not building or not resource:
        return

    def build(current: Entity | None) -> Entity | None:
        if current is None or current.get("calendarIndexKey") != key:
            return None
        return {k: v for k, v in current.items() if k not in registry.MAPPING_PROPERTIES}

    tablestore.replace_optimistic(resources, building, resource, build)


def _commit(
    deps: MappingDeps, index: Any, claim: Entity, building_id: str, resource_id: str, key: str
) -> None:
    """Step 3: mark the claim committed If-Match its ETag; if it was taken over, roll back (409)."""
    entity = {k: v for k, v in claim.items() if k != "etag"}
    entity["committed"] = True
    with tablestore.storage_errors("commit calendarindex"):
        try:
            index.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=claim.get("etag"),
                match_condition=MatchConditions.IfNotModified,
            )
            return
        except (ResourceModifiedError, ResourceNotFoundError):
            pass  # taken over (changed or deleted): this map lost
    _clear_if_pointing(deps.tables(tablestore.RESOURCES), building_id, resource_id, key)
    deps.graph.mappings_changed(building_id)
    raise Conflict(
        "That calendar was mapped to another resource meanwhile", reason="calendar_mapped"
    )


def _release(index: Any, key: str, building_id: str, resource_id: str) -> None:
    """Delete an index entry if it (still) points at this resource."""
    entry = tablestore.get_entity(index, key, INDEX_ROW_KEY)
    if (
        entry is not None
        and entry.get("buildingId") == building_id
        and entry.get("resourceId") == resource_id
    ):
        tablestore.delete_if_unchanged(index, entry)


def unmap(
    deps: MappingDeps, building_id: str, resource_id: str, *, if_match: IfMatch | None = None
) -> dict[str, Any]:
    """Remove a resource's mapping (idempotent); 404 for an unknown resource. Returns the mapping
    properties removed ({}: it had none). `if_match` as in `registry.release_mapping`."""
    check_path(building=building_id, resourceId=resource_id)
    entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building_id, resource_id)
    if entity is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    released = registry.release_mapping(deps.tables, building_id, resource_id, if_match=if_match)
    deps.graph.mappings_changed(building_id)
    mailbox = released.get("mailbox")
    if released.get("calendarId") and mailbox:
        deps.enqueue(
            SyncRequest(
                building_id, str(mailbox).lower(), "unmapped", resource=resource_id, full=True
            )
        )
        logger.info("building %s: resource %s unmapped", building_id, resource_id)
    return released


def delete_resource(
    deps: MappingDeps, building_id: str, resource_id: str, *, if_match: IfMatch | None = None
) -> None:
    """`DELETE /buildings/{b}/resources/{r}`: unmap first, through `unmap`, so sync hears of it
    (its subscription and Outlook blocks go) and this process's guard forgets the calendar at once;
    then delete. Idempotent: an unknown resource is already deleted (but 412 with `if_match`).
    `if_match` is checked by the first write: the unmap of a mapped resource, else the delete."""
    try:
        released = unmap(deps, building_id, resource_id, if_match=if_match)
    except NotFound:
        if if_match is not None:
            if_match.check(None)
        return
    registry.delete_resource(
        deps.tables, building_id, resource_id, if_match=None if released else if_match
    )
