"""Calendar discovery for a connected building (`list_calendars`, GET /buildings/{b}/calendars):
what this connection may map.
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
requests of 20, a few at a time. Mapping one of them: shared/mapping/service.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import quote

from shared.core.addresses import normalise_email
from shared.core.errors import GraphError, IdentityError, Unprocessable
from shared.core.validate import Checker, check_building
from shared.graph.client import BATCH_LIMIT, BatchItem, BatchResult
from shared.graph.guard import DEFAULT_CALENDAR, Who
from shared.mapping.access import (
    GONE,
    PLACES_SCOPE,
    CalendarKind,
    account_mailbox,
    connected,
    graph_reason,
    is_room,
    reauth,
    users_path,
)
from shared.mapping.service import MappingDeps, load_mapped

if TYPE_CHECKING:
    from shared.core.connection import Connection

logger = logging.getLogger(__name__)

MAX_ROOMS = 2000  # rooms listed per request (Places pages of 100); a room list narrows it
PROBE_WORKERS = 4  # $batch requests in flight while probing rooms
_KIND_ORDER = {"personal": 0, "shared": 1, "room": 2}


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
    connection = connected(deps.connections, building_id)
    try:
        if mailbox is not None:
            found = _named_mailbox(deps, connection, mailbox, actor)
        elif room_list is not None:
            rooms = _room_list_rooms(deps, connection, room_list, actor)
            found = _room_entries(deps, connection, rooms, _copies(deps, connection, actor), actor)
        elif connection.mode == "delegated":
            found = _delegated(deps, connection, actor)
        else:
            require_places(connection)
            found = _room_entries(deps, connection, _rooms(deps, connection, actor), {}, actor)
    except IdentityError as err:
        if err.reauth:
            raise reauth(err) from err
        raise
    if connection.free_busy_only:
        found = [_free_busy_entry(e) for e in found]
    _annotate(deps, building_id, found)
    return sorted(
        found,
        key=lambda c: (_KIND_ORDER[c["kind"]], c["name"].lower(), c["mailbox"], c["id"] or ""),
    )


def _free_busy_entry(entry: CalendarOut) -> CalendarOut:
    """What a free/busy connection can map (issue 19): every calendar read-only (`free_busy_only`),
    and a room whose calendar its rights do not show by the mailbox's default calendar
    (`DEFAULT_CALENDAR`, what getSchedule reads)."""
    if entry["id"] is None and entry["reason"] != "access_denied":
        return entry  # not found or unavailable: nothing to map
    return {
        **entry,
        "id": entry["id"] or DEFAULT_CALENDAR,
        "canEdit": False,
        "reason": "free_busy_only",
    }


def list_room_lists(
    deps: MappingDeps, building_id: str, *, actor: str = "system"
) -> list[RoomListOut]:
    """The tenant's room lists (Places API), to pick one for `?roomList=`."""
    check_building(building_id)
    connection = connected(deps.connections, building_id)
    require_places(connection)
    try:
        places = paged(
            deps, connection, "/places/microsoft.graph.roomlist", actor, "places.roomlists"
        )
    except IdentityError as err:
        if err.reauth:
            raise reauth(err) from err
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


def require_places(connection: Connection) -> None:
    if PLACES_SCOPE not in connection.scopes:
        raise Unprocessable(
            "The connection may not read rooms (Place.Read.All was not granted); "
            "name a mailbox with ?mailbox=",
            reason="places_not_granted",
        )


def paged(
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
    me = account_mailbox(connection) or ""
    out: list[CalendarOut] = []
    for cal in paged(deps, connection, "/me/calendars", actor, "calendars.list"):
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
    places = paged(
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
    require_places(connection)
    path = f"/places/{quote(room_list, safe='@')}/microsoft.graph.roomlist/rooms"
    try:
        places = paged(deps, connection, path, actor, "places.roomlist", {"$top": "100"})
    except GraphError as err:
        # 400: Graph cannot read the address as a place id at all (a valid email address may
        # still be no id: `/#x@y`); to the caller that is the same answer as an unknown one.
        if err.failure.status in (400, 404):
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
    results = probe_calendars(deps, connection, [r.address for r in probe], actor)
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
                    probe_reason(result),
                )
            )  # fmt: skip
    return out


def probe_calendars(
    deps: MappingDeps, connection: Connection, mailboxes: Sequence[str], actor: str
) -> dict[str, BatchResult]:
    """`GET /users/{m}/calendar` for each mailbox, as `$batch` requests (item id = position)."""
    items = [BatchItem(str(n), "GET", users_path(m, "/calendar")) for n, m in enumerate(mailboxes)]
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


def probe_reason(result: BatchResult) -> str:
    if result.status in (401, 403):
        return "access_denied"
    if result.status == 404 or result.failure().code in GONE:
        return "calendar_not_found"
    return "unavailable"  # throttled or failing after retries: try again later


def _named_mailbox(
    deps: MappingDeps, connection: Connection, mailbox: str, actor: str
) -> list[CalendarOut]:
    """`?mailbox=`: the calendars of one mailbox, or 422 saying why it cannot be reached."""
    account = Who.of(connection).account
    try:
        calendars = paged(
            deps, connection, users_path(mailbox, "/calendars"), actor, "calendars.list"
        )
    except GraphError as err:
        reason = graph_reason(err)
        if reason is None:
            raise
        if reason == "calendar_not_found":
            raise Unprocessable("No mailbox with that address", reason="mailbox_not_found") from err
        raise Unprocessable(
            "This connection may not read that mailbox's calendars", reason=reason
        ) from err
    if mailbox in account:
        kind: CalendarKind = "personal"
    elif is_room(deps.graph, connection, mailbox, actor):
        kind = "room"
    else:
        kind = "shared" if connection.mode == "delegated" else "personal"
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


def _annotate(deps: MappingDeps, building_id: str, found: list[CalendarOut]) -> None:
    """Say which resource of this building each calendar is mapped to (never other buildings')."""
    mapped = load_mapped(deps.tables, building_id)
    by_calendar = {(c.mailbox, c.calendar_id): c.resource_id for c in mapped.values()}
    for entry in found:
        if entry["id"] is not None:
            entry["mappedResourceId"] = by_calendar.get((entry["mailbox"], entry["id"]))
