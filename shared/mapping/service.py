"""Calendar discovery and resource ↔ calendar mapping for a connected building.

Discovery (`list_calendars`, GET /buildings/{b}/calendars) — what this connection may map:
- delegated: `GET /me/calendars` — the account's own calendars (`personal`) and the copies of
  calendars shared with it (`shared`; `mailbox` = the owner, GRAPH.md §3.2); with
  `Place.Read.All`, the tenant's rooms from the Places API (`room`): a room shared with the
  account is its copy, any other room is probed with `GET /users/{room}/calendar`;
- application: rooms from the Places API, each probed with `GET /users/{room}/calendar` (its id is
  the room's default calendar id, and the probe proves access: rooms outside an Exchange RBAC
  scope come back `canEdit: false`, `reason: access_denied`);
- `?mailbox=<smtp>`: the calendars of one named mailbox (any mode; 422 when not reachable);
- `?roomList=<email>`: only the rooms of one room list (SpaceIQ's way to find rooms).
Rooms are keyed by email address, never by place id (GRAPH.md §3.4). Probes run as `$batch`
requests of 20, a few at a time.

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
   dropped and a `SyncRequest(reason="mapped", full=True)` is queued.
A failed map changes nothing (the old mapping stays until step 2). An entry is *abandoned* when it
is uncommitted and older than `CLAIM_GRACE` (a crashed map; its resource, if it points at the
entry, is cleared first), or committed while its resource no longer points at it (a crashed
unmap, shared/directory/registry.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.core.addresses import normalise_email
from shared.core.errors import (
    Conflict,
    GraphError,
    IdentityError,
    NotFound,
    Unprocessable,
)
from shared.core.validate import Checker, check_building, check_path
from shared.directory import registry
from shared.directory.registry import INDEX_ROW_KEY, ResourceOut
from shared.graph.client import BATCH_LIMIT, BatchItem, BatchResult
from shared.graph.guard import MappedCalendar, Who
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.sync.queue import QUEUE, SyncRequest

if TYPE_CHECKING:
    from shared.connect.connections import Connection
    from shared.graph.client import GraphClient

logger = logging.getLogger(__name__)

CalendarKind = Literal["room", "personal", "shared"]
PLACES_SCOPE = "Place.Read.All"
CLAIM_GRACE = timedelta(minutes=2)  # far longer than steps 1-3 take; then a claim is abandoned
CALENDAR_ID_MAX = 512  # Graph ids are ~150 characters; the bound keeps index keys and logs sane
MAX_ROOMS = 2000  # rooms listed per request (Places pages of 100); a room list narrows it
PROBE_WORKERS = 4  # $batch requests in flight while probing rooms
_KIND_ORDER = {"personal": 0, "shared": 1, "room": 2}
_GONE = frozenset({"ErrorItemNotFound", "ErrorInvalidUser", "Request_ResourceNotFound"})


# ---------------------------------------------------------------- wire shapes


class OwnerOut(TypedDict):
    name: str | None
    address: str | None


class CalendarOut(TypedDict):
    id: str | None  # None: a room this connection cannot read (see reason)
    name: str
    owner: OwnerOut
    kind: CalendarKind
    canEdit: bool
    mailbox: str
    reason: str | None  # why canEdit is false: access_denied, calendar_not_found, not_writable, ...
    mappedResourceId: str | None  # the resource of this building mapped to it, if any


class RoomListOut(TypedDict):
    name: str | None
    address: str


# ---------------------------------------------------------------- collaborators


class ConnectionSource(Protocol):
    def get(self, building_id: str) -> Connection | None: ...


@dataclass(frozen=True)
class MappingDeps:
    tables: TableSource
    connections: ConnectionSource
    graph: GraphClient
    enqueue: Callable[[SyncRequest], None]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


def default_mapping_deps() -> MappingDeps:
    """The process's collaborators: storage clients, the connect service's connections, Graph."""
    from shared.connect.connections import default_deps
    from shared.graph.client import default_graph
    from shared.storage import clients

    def enqueue(request: SyncRequest) -> None:
        with tablestore.storage_errors("enqueue sync request"):
            clients.queue(QUEUE).send_message(request.encode())

    return MappingDeps(clients.table, default_deps().connections, default_graph(), enqueue)


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


# ---------------------------------------------------------------- connection state


def _connected(deps: MappingDeps, building_id: str) -> Connection:
    connection = deps.connections.get(building_id)
    if connection is None or connection.status in ("disconnected", "error"):
        raise Unprocessable(
            "The building is not connected to Microsoft 365", reason="not_connected"
        )
    if connection.status == "reauth_required":
        raise Unprocessable(
            "The connection to Microsoft 365 needs an administrator to reconnect",
            reason="reauth_required",
        )
    return connection


def _account_mailbox(connection: Connection) -> str | None:
    account = connection.account
    if connection.mode != "delegated" or account is None:
        return None
    name = account.mail or account.user_principal_name
    return name.lower() if name else None


def _reauth(err: IdentityError) -> Unprocessable:
    return Unprocessable(
        "The connection to Microsoft 365 needs an administrator to reconnect",
        reason="reauth_required" if err.error != "not_connected" else "not_connected",
    )


def _users(mailbox: str, suffix: str = "") -> str:
    return f"/users/{quote(mailbox, safe='@')}{suffix}"


# ---------------------------------------------------------------- discovery


@dataclass(frozen=True)
class _Room:
    address: str
    name: str | None


def list_calendars(
    deps: MappingDeps,
    building_id: str,
    params: Mapping[str, str],
    *,
    actor: str = "system",
) -> list[CalendarOut]:
    """Calendars this building's connection may map (module docstring), ordered by kind, name."""
    check_building(building_id)
    mailbox, room_list = _discovery_params(params)
    connection = _connected(deps, building_id)
    try:
        if mailbox is not None:
            found = _named_mailbox(deps, connection, mailbox, actor)
        elif room_list is not None:
            rooms = _room_list_rooms(deps, connection, room_list, actor)
            found = _room_entries(deps, connection, rooms, _copies(deps, connection, actor), actor)
        elif connection.mode == "delegated":
            found = _delegated(deps, connection, actor)
        else:
            _require_places(connection)
            found = _room_entries(deps, connection, _rooms(deps, connection, actor), {}, actor)
    except IdentityError as err:
        if err.reauth:
            raise _reauth(err) from err
        raise
    _annotate(deps, building_id, found)
    return sorted(
        found,
        key=lambda c: (_KIND_ORDER[c["kind"]], c["name"].lower(), c["mailbox"], c["id"] or ""),
    )


def list_room_lists(
    deps: MappingDeps, building_id: str, *, actor: str = "system"
) -> list[RoomListOut]:
    """The tenant's room lists (Places API), to pick one for `?roomList=`."""
    check_building(building_id)
    connection = _connected(deps, building_id)
    _require_places(connection)
    try:
        places = _paged(
            deps, connection, "/places/microsoft.graph.roomlist", actor, "places.roomlists"
        )
    except IdentityError as err:
        if err.reauth:
            raise _reauth(err) from err
        raise
    out: list[RoomListOut] = []
    for place in places:
        address = normalise_email(str(place.get("emailAddress") or ""))
        if address:
            out.append({"name": place.get("displayName"), "address": address})
    return sorted(out, key=lambda r: ((r["name"] or "").lower(), r["address"]))


def _discovery_params(params: Mapping[str, str]) -> tuple[str | None, str | None]:
    check = Checker(params)
    check.only(("mailbox", "roomList"))
    mailbox = check.email("mailbox", params.get("mailbox"), nullable=True)
    room_list = check.email("roomList", params.get("roomList"), nullable=True)
    if mailbox and room_list:
        check.add("roomList", "cannot be combined with mailbox")
    check.done()
    return mailbox, room_list


def _require_places(connection: Connection) -> None:
    if PLACES_SCOPE not in connection.scopes:
        raise Unprocessable(
            "The connection may not read rooms (Place.Read.All was not granted); "
            "name a mailbox with ?mailbox=",
            reason="places_not_granted",
        )


def _paged(
    deps: MappingDeps,
    connection: Connection,
    path: str,
    actor: str,
    operation: str,
    params: dict[str, str] | None = None,
    limit: int = MAX_ROOMS,
) -> list[dict[str, Any]]:
    """Every item of a Graph collection, following nextLinks (at most `limit`)."""
    items: list[dict[str, Any]] = []
    url: str | None = path
    query = params
    while url and len(items) < limit:
        page = deps.graph.get_json(connection, url, params=query, operation=operation, actor=actor)
        items.extend(v for v in page.get("value", []) if isinstance(v, dict))
        url = page.get("@odata.nextLink")
        query = None  # a nextLink carries its own query (GRAPH.md pitfall 13)
    if url:
        logger.warning("listing %s stopped at %d items", operation, limit)
    return items[:limit]


def _entry(
    calendar_id: str | None,
    name: str,
    owner_name: str | None,
    owner_address: str | None,
    kind: CalendarKind,
    can_edit: bool,
    mailbox: str,
    reason: str | None = None,
) -> CalendarOut:
    return {
        "id": calendar_id,
        "name": name,
        "owner": {"name": owner_name, "address": owner_address},
        "kind": kind,
        "canEdit": can_edit,
        "mailbox": mailbox,
        "reason": reason if reason else (None if can_edit else "not_writable"),
        "mappedResourceId": None,
    }


def _own_calendars(deps: MappingDeps, connection: Connection, actor: str) -> list[CalendarOut]:
    """`/me/calendars`: own (`personal`) and shared copies (`shared`, mailbox = the owner)."""
    account = Who.of(connection).account
    me = _account_mailbox(connection) or ""
    out: list[CalendarOut] = []
    for cal in _paged(deps, connection, "/me/calendars", actor, "calendars.list"):
        owner = cal.get("owner") or {}
        address = str(owner.get("address") or me).lower()
        own = address in account or not owner.get("address")
        out.append(
            _entry(
                str(cal["id"]),
                str(cal.get("name") or ""),
                owner.get("name"),
                address,
                "personal" if own else "shared",
                bool(cal.get("canEdit")),
                me if own else address,
            )
        )
    return out


def _copies(deps: MappingDeps, connection: Connection, actor: str) -> dict[str, CalendarOut]:
    """Delegated: calendars shared with the account, by owner mailbox (rooms shared with it)."""
    if connection.mode != "delegated":
        return {}
    copies: dict[str, CalendarOut] = {}
    for entry in _own_calendars(deps, connection, actor):
        if entry["kind"] == "shared":
            copies.setdefault(entry["mailbox"], entry)
    return copies


def _delegated(deps: MappingDeps, connection: Connection, actor: str) -> list[CalendarOut]:
    own = _own_calendars(deps, connection, actor)
    if PLACES_SCOPE not in connection.scopes:
        return own
    try:
        rooms = _rooms(deps, connection, actor)
    except GraphError as err:
        if err.failure.status != 403:
            raise
        # Place.Read.All was withdrawn since connecting: the account's calendars still count.
        logger.warning("building %s: Places refused (%s)", connection.building_id, err.reason)
        return own
    room_addresses = {r.address for r in rooms}
    copies = {e["mailbox"]: e for e in own if e["kind"] == "shared"}
    rest = [e for e in own if not (e["kind"] == "shared" and e["mailbox"] in room_addresses)]
    return rest + _room_entries(deps, connection, rooms, copies, actor)


def _rooms(deps: MappingDeps, connection: Connection, actor: str) -> list[_Room]:
    places = _paged(
        deps, connection, "/places/microsoft.graph.room", actor, "places.rooms", {"$top": "100"}
    )
    return _rooms_of(places)


def _rooms_of(places: Iterable[Mapping[str, Any]]) -> list[_Room]:
    rooms: dict[str, _Room] = {}
    for place in places:
        address = normalise_email(str(place.get("emailAddress") or ""))
        if address:  # a room without a mailbox address cannot be booked through Graph
            rooms.setdefault(address, _Room(address, place.get("displayName")))
    return list(rooms.values())


def _room_list_rooms(
    deps: MappingDeps, connection: Connection, room_list: str, actor: str
) -> list[_Room]:
    _require_places(connection)
    path = f"/places/{quote(room_list, safe='@')}/microsoft.graph.roomlist/rooms"
    try:
        places = _paged(deps, connection, path, actor, "places.roomlist", {"$top": "100"})
    except GraphError as err:
        if err.failure.status == 404:
            raise Unprocessable(
                "No room list with that address", reason="room_list_not_found"
            ) from err
        raise
    return _rooms_of(places)


def _room_entries(
    deps: MappingDeps,
    connection: Connection,
    rooms: Sequence[_Room],
    copies: Mapping[str, CalendarOut],
    actor: str,
) -> list[CalendarOut]:
    """One entry per room: its shared copy (delegated) or a probe of its default calendar."""
    out: list[CalendarOut] = []
    probe: list[_Room] = []
    for room in rooms:
        copy = copies.get(room.address)
        if copy is not None:
            out.append(
                {**copy, "kind": "room", "owner": {"name": room.name, "address": room.address}}
            )
        else:
            probe.append(room)
    results = _probe(deps, connection, [r.address for r in probe], actor)
    for n, room in enumerate(probe):
        result = results[str(n)]
        name = room.name or room.address
        if result.ok and isinstance(result.body, dict) and result.body.get("id"):
            can_edit = bool(result.body.get("canEdit"))
            out.append(
                _entry(
                    str(result.body["id"]), name, room.name, room.address, "room", can_edit,
                    room.address,
                )
            )  # fmt: skip
        else:
            out.append(
                _entry(
                    None, name, room.name, room.address, "room", False, room.address,
                    _probe_reason(result),
                )
            )  # fmt: skip
    return out


def _probe(
    deps: MappingDeps, connection: Connection, mailboxes: Sequence[str], actor: str
) -> dict[str, BatchResult]:
    """`GET /users/{m}/calendar` for each mailbox, as `$batch` requests (item id = position)."""
    items = [BatchItem(str(n), "GET", _users(m, "/calendar")) for n, m in enumerate(mailboxes)]
    groups = [items[i : i + BATCH_LIMIT] for i in range(0, len(items), BATCH_LIMIT)]

    def run(group: list[BatchItem]) -> dict[str, BatchResult]:
        return deps.graph.batch(connection, group, actor=actor)

    results: dict[str, BatchResult] = {}
    if len(groups) <= 1:
        for group in groups:
            results.update(run(group))
        return results
    with ThreadPoolExecutor(max_workers=PROBE_WORKERS) as pool:
        for answered in pool.map(run, groups):
            results.update(answered)
    return results


def _probe_reason(result: BatchResult) -> str:
    if result.status in (401, 403):
        return "access_denied"
    if result.status == 404 or result.failure().code in _GONE:
        return "calendar_not_found"
    return "unavailable"  # throttled or failing after retries: try again later


def _named_mailbox(
    deps: MappingDeps, connection: Connection, mailbox: str, actor: str
) -> list[CalendarOut]:
    """`?mailbox=`: the calendars of one mailbox, or 422 saying why it cannot be reached."""
    account = Who.of(connection).account
    try:
        calendars = _paged(deps, connection, _users(mailbox, "/calendars"), actor, "calendars.list")
    except GraphError as err:
        reason = _graph_reason(err)
        if reason is None:
            raise
        if reason == "calendar_not_found":
            raise Unprocessable("No mailbox with that address", reason="mailbox_not_found") from err
        raise Unprocessable(
            "This connection may not read that mailbox's calendars", reason=reason
        ) from err
    own = mailbox in account
    kind: CalendarKind = "personal" if own else ("room" if _is_room(deps, connection, mailbox, actor) else (
        "shared" if connection.mode == "delegated" else "personal"
    ))  # fmt: skip
    out: list[CalendarOut] = []
    for cal in calendars:
        owner = cal.get("owner") or {}
        address = str(owner.get("address") or mailbox).lower()
        out.append(
            _entry(
                str(cal["id"]), str(cal.get("name") or ""), owner.get("name"), address,
                kind, bool(cal.get("canEdit")), mailbox,
            )
        )  # fmt: skip
    return out


def _is_room(deps: MappingDeps, connection: Connection, mailbox: str, actor: str) -> bool:
    """Whether the Places API knows the mailbox as a room (False when it may not be asked)."""
    if PLACES_SCOPE not in connection.scopes:
        return False
    try:
        place = deps.graph.get_json(
            connection, f"/places/{quote(mailbox, safe='@')}", operation="places.read", actor=actor
        )
    except GraphError:
        return False
    return (
        "room" in str(place.get("@odata.type", "")).lower()
        and "roomlist" not in str(place.get("@odata.type", "")).lower()
    )


def _annotate(deps: MappingDeps, building_id: str, found: list[CalendarOut]) -> None:
    """Say which resource of this building each calendar is mapped to (never other buildings')."""
    mapped = load_mapped(deps.tables, building_id)
    by_calendar = {(c.mailbox, c.calendar_id): c.resource_id for c in mapped.values()}
    for entry in found:
        if entry["id"] is not None:
            entry["mappedResourceId"] = by_calendar.get((entry["mailbox"], entry["id"]))


def _graph_reason(err: GraphError) -> str | None:
    """A Graph refusal as a mapping reason; None for failures that are not about the calendar."""
    status, code = err.failure.status, err.failure.code
    if status == 404 or code in _GONE or (status == 400 and "Id" in code):
        return "calendar_not_found"
    if status == 403:
        return "access_denied"
    if status == 401:
        return "reauth_required"
    return None


# ---------------------------------------------------------------- mapping


@dataclass(frozen=True)
class _Found:
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
) -> _Found:
    """Read the calendar through Graph from where this connection reaches it, or 422 why not.

    Application: `/users/{mailbox}`. Delegated: the account's own mailbox first (own calendars and
    the sharee's copies of shared ones), then the owner's mailbox (a room or person who delegated
    their default calendar, GRAPH.md §3.2).
    """
    account = Who.of(connection).account
    me = _account_mailbox(connection)
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
                _users(path_mailbox, f"/calendars/{quote(calendar_id, safe='')}"),
                operation="calendar.read",
                actor=actor,
            )
        except GraphError as err:
            reason = _graph_reason(err)
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
        elif _is_room(deps, connection, address, actor):
            kind = "room"
        else:
            kind = "shared" if me is not None else "personal"
        name = str(cal.get("name") or "")
        if kind == "room" and is_default and owner.get("name"):
            name = str(owner["name"])  # a room's default calendar is just "Calendar"
        return _Found(
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
    connection = _connected(deps, building_id)
    try:
        found = _resolve(deps, connection, calendar_id, mailbox, actor)
    except IdentityError as err:
        if err.reauth:
            raise _reauth(err) from err
        raise
    if not found.can_edit:
        raise Unprocessable(
            "This connection can see that calendar but may not write to it", reason="not_writable"
        )
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
    found: _Found,
    key: str,
    building_id: str,
    resource_id: str,
) -> tuple[Entity, str | None, bool]:
    """Put the mapping on the resource (under its ETag): (entity, previous index key, changed)."""
    previous: dict[str, Any] = {}

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
        return {
            **kept,
            **mapping,
            "mappedAt": deps.now(),
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


def unmap(deps: MappingDeps, building_id: str, resource_id: str) -> None:
    """Remove a resource's mapping (idempotent); 404 for an unknown resource."""
    check_path(building=building_id, resourceId=resource_id)
    entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building_id, resource_id)
    if entity is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    released = registry.release_mapping(deps.tables, building_id, resource_id)
    deps.graph.mappings_changed(building_id)
    mailbox = released.get("mailbox")
    if released.get("calendarId") and mailbox:
        deps.enqueue(
            SyncRequest(
                building_id, str(mailbox).lower(), "unmapped", resource=resource_id, full=True
            )
        )
        logger.info("building %s: resource %s unmapped", building_id, resource_id)


def delete_resource(deps: MappingDeps, building_id: str, resource_id: str) -> None:
    """`DELETE /buildings/{b}/resources/{r}`: unmap first, through `unmap`, so sync hears of it
    (its subscription and Outlook blocks go) and this process's guard forgets the calendar at once;
    then delete. Idempotent: an unknown resource is already deleted."""
    try:
        unmap(deps, building_id, resource_id)
    except NotFound:
        return
    registry.delete_resource(deps.tables, building_id, resource_id)
