"""Microsoft Places for a connected building (issue 19): the tenant's buildings, floors, sections,
rooms, desks and workspaces as a tree (`places_tree`, GET /buildings/{b}/places), and the bulk
"create resources from Places" (`import_places`, POST /buildings/{b}/places:import).

Reading: one listing per Places type (`/places/microsoft.graph.<type>`, every page: 100 rooms or
workspaces, 1,000 of the rest per page, GRAPH.md §3.4), the tree built from `parentId`; a place
whose parent is not listed is a root. Each place says whether it can be booked through its mailbox
(`bookable`, and `reason` when not): a desk or workspace in `assigned` or `unavailable` mode is not,
nor a place without a mailbox; `reservable` and `dropIn` ones with a mailbox are, as are rooms.

Importing (decisions):
- **Keyed by mailbox**, never by place id (ids are not stable on Graph, GRAPH.md §3.4): a
  resource imported before (`placeMailbox`) or already mapped to that mailbox is updated; a new
  one is created with an id from the mailbox's local part.
- **What it writes**: `name` (the place's display name), `kind` (room → room, desk → desk,
  workspace → amenity: bookable space that is neither), `capacity` (a desk seats one), `floor`
  and `section` labels (the names of its floor and section ancestors; a room without a floor
  place: its `floorLabel`), the body's `timeZone` for new resources (existing ones keep theirs),
  and the mapping to the mailbox's default calendar (a free/busy connection maps `<default>`).
- **All or nothing, every problem named**: every selected place is checked first (unknown id,
  not bookable, its calendar unreadable or not writable, its resource id taken by another
  mailbox's resource); any problem → 422 `rows_rejected` listing each, nothing written. Then
  resources are written and mapped one by one; a Graph or storage failure part-way leaves earlier
  ones done, and running the import again converges (same ids, no duplicates).
- **Converges**: a re-run with nothing changed in Places changes nothing (`unchanged`); a place
  renamed in Places renames its resource and is reported in `renamed`; a resource imported earlier
  whose mailbox Places no longer lists is reported in `missing` and never deleted here.
- **Audited**: one `places.import` audit record per run (who, how many created, updated, unchanged),
  besides the Graph reads and mappings the Graph layer audits itself.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from shared.core.addresses import normalise_email
from shared.core.connection import Connection
from shared.core.errors import FieldError, IdentityError, ValidationFailed
from shared.core.validate import Checker, check_building
from shared.directory import registry
from shared.graph.audit import AuditEntry
from shared.graph.guard import DEFAULT_CALENDAR
from shared.mapping.access import connected, reauth
from shared.mapping.discovery import paged, probe_calendars, probe_reason, require_places
from shared.mapping.service import MappingDeps, map_resource
from shared.storage import tablestore

logger = logging.getLogger(__name__)

TYPES = ("building", "floor", "section", "room", "workspace", "desk")
CONTAINERS = frozenset({"building", "floor", "section"})
KIND_OF = {"room": "room", "desk": "desk", "workspace": "amenity"}
MAX_PLACES = 20_000  # per type and request; a tenant with more should import by selection
SELECTION_MAX = 1000
_MODES = {
    "#microsoft.graph.reservableplacemode": "reservable",
    "#microsoft.graph.dropinplacemode": "dropIn",
    "#microsoft.graph.assignedplacemode": "assigned",
    "#microsoft.graph.unavailableplacemode": "unavailable",
}
_NOT_BOOKABLE_MODES = {"assigned": "assigned", "unavailable": "unavailable"}


@dataclass(frozen=True)
class Place:
    id: str
    type: str
    name: str
    parent_id: str | None
    mailbox: str | None
    mode: str | None
    capacity: int | None
    floor_label: str | None  # a room's own floorLabel
    mode_reason: str | None  # an unavailable desk's reason as Places gives it

    @property
    def bookable(self) -> tuple[bool, str | None]:
        """(bookable, why not): containers are neither (None reason, False)."""
        if self.type in CONTAINERS:
            return False, None
        if self.mode in _NOT_BOOKABLE_MODES:
            return False, _NOT_BOOKABLE_MODES[self.mode]
        if not self.mailbox:
            return False, "no_mailbox"
        return True, None


class PlaceOut(TypedDict):
    id: str
    type: str
    name: str
    parentId: str | None
    mailbox: str | None
    mode: str | None
    capacity: int | None
    bookable: bool
    reason: str | None
    resourceId: str | None
    children: list[PlaceOut]


def _place(kind: str, raw: Mapping[str, Any]) -> Place | None:
    place_id = str(raw.get("id") or raw.get("placeId") or "")
    if not place_id:
        return None
    mailbox = raw.get("emailAddress") if kind in ("room", "workspace") else None
    details = raw.get("mailboxDetails")
    if kind == "desk" and isinstance(details, Mapping):
        mailbox = details.get("emailAddress")
    mode_raw = raw.get("mode")
    mode = reason = None
    if isinstance(mode_raw, Mapping):
        mode = _MODES.get(str(mode_raw.get("@odata.type", "")).lower())
        reason = mode_raw.get("reason") if isinstance(mode_raw.get("reason"), str) else None
    capacity = raw.get("capacity")
    if kind == "desk":
        capacity = 1
    return Place(
        id=place_id, type=kind, name=str(raw.get("displayName") or place_id),
        parent_id=str(raw["parentId"]) if raw.get("parentId") else None,
        mailbox=normalise_email(str(mailbox)) if isinstance(mailbox, str) and mailbox else None,
        mode=mode, capacity=capacity if isinstance(capacity, int) else None,
        floor_label=str(raw["floorLabel"]) if raw.get("floorLabel") else None, mode_reason=reason,
    )  # fmt: skip


# Places read per connection are reused for this long: Microsoft takes up to 48 hours to show a
# change in Places (GRAPH.md §3.4), so a minute is invisible, and a console that reads the tree,
# previews and imports costs the tenant's Places API one read instead of three.
PLACES_TTL_SECONDS = 60.0
_cache: dict[str, tuple[float, list[Place]]] = {}
_cache_lock = threading.Lock()


def clear_places_cache() -> None:
    with _cache_lock:
        _cache.clear()


def read_places(deps: MappingDeps, building_id: str, actor: str) -> list[Place]:
    """Every place of the building's tenant (all types, all pages; cached PLACES_TTL_SECONDS)."""
    connection = connected(deps.connections, building_id)
    require_places(connection)
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(connection.connection_id)
    if cached is not None and now - cached[0] < PLACES_TTL_SECONDS:
        return cached[1]
    places: list[Place] = []
    try:
        for kind in TYPES:
            for raw in paged(
                deps, connection, f"/places/microsoft.graph.{kind}", actor, f"places.{kind}",
                limit=MAX_PLACES,
            ):  # fmt: skip
                place = _place(kind, raw)
                if place is not None:
                    places.append(place)
    except IdentityError as err:
        if err.reauth:
            raise reauth(err) from err
        raise
    with _cache_lock:
        for key in [k for k, (at, _) in _cache.items() if now - at >= PLACES_TTL_SECONDS]:
            del _cache[key]
        _cache[connection.connection_id] = (now, places)
    return places


def _imported(deps: MappingDeps, building_id: str) -> dict[str, tablestore.Entity]:
    """The building's resources by the mailbox they were imported from or are mapped to."""
    by_mailbox: dict[str, tablestore.Entity] = {}
    for entity in tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building_id}
    ):
        for key in (entity.get("mailbox"), entity.get("placeMailbox")):
            if key:
                by_mailbox.setdefault(str(key).lower(), entity)
    return by_mailbox


def places_tree(deps: MappingDeps, building_id: str, *, actor: str = "system") -> dict[str, Any]:
    """The GET shape: `{"value": [root places with children], "nextLink": null}`."""
    check_building(building_id)
    places = read_places(deps, building_id, actor)
    resources = _imported(deps, building_id)
    nodes: dict[str, PlaceOut] = {}
    for p in places:
        bookable, reason = p.bookable
        resource = resources.get(p.mailbox or "")
        nodes[p.id] = {
            "id": p.id, "type": p.type, "name": p.name, "parentId": p.parent_id,
            "mailbox": p.mailbox, "mode": p.mode, "capacity": p.capacity,
            "bookable": bookable, "reason": reason,
            "resourceId": str(resource["RowKey"]) if resource is not None else None,
            "children": [],
        }  # fmt: skip
    roots: list[PlaceOut] = []
    for p in places:
        parent = nodes.get(p.parent_id or "")
        (parent["children"] if parent is not None and p.parent_id != p.id else roots).append(
            nodes[p.id]
        )
    return {"value": roots, "nextLink": None}


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class _Planned:
    place: Place
    resource_id: str
    calendar_id: str
    body: dict[str, Any]
    existing: tablestore.Entity | None


def _parse_import(body: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    check = Checker(body)
    check.only(("timeZone", "placeIds"))
    zone = import_time_zone(check, body)
    ids = body.get("placeIds")
    if "placeIds" in body and (
        not isinstance(ids, list)
        or not 0 < len(ids) <= SELECTION_MAX
        or not all(isinstance(i, str) and 0 < len(i) <= 256 for i in ids)
    ):
        check.add("placeIds", f"must be a list of 1–{SELECTION_MAX} place ids")
        ids = None
    check.done()
    return zone, ids


def import_time_zone(check: Checker, body: Mapping[str, Any]) -> str | None:
    """An import body's optional `timeZone`, for the resources it creates (this import and the
    bulk mappings import): None when absent, else it must be an IANA zone (added to `check`)."""
    zone = body.get("timeZone")
    if "timeZone" in body and (not isinstance(zone, str) or not registry.valid_time_zone(zone)):
        check.add("timeZone", "must be an IANA time zone such as Europe/Amsterdam")
    return zone if isinstance(zone, str) else None


def _ancestors(place: Place, by_id: Mapping[str, Place]) -> dict[str, str]:
    """{type: name} of the place's floor and section ancestors (a cycle stops the walk)."""
    found: dict[str, str] = {}
    seen = {place.id}
    parent = by_id.get(place.parent_id or "")
    while parent is not None and parent.id not in seen:
        seen.add(parent.id)
        found.setdefault(parent.type, parent.name)
        parent = by_id.get(parent.parent_id or "")
    return found


def _selected(
    places: Sequence[Place], ids: list[str] | None, rejected: list[dict[str, Any]]
) -> tuple[list[Place], list[dict[str, Any]]]:
    """(bookable places to import, skipped places with their reasons). A place named in `ids`
    that cannot be booked is a rejection; one reached through a container is only skipped."""
    by_id = {p.id: p for p in places}
    if ids is None:
        chosen = list(places)
        named: set[str] = set()
    else:
        named = set(ids)
        for n, place_id in enumerate(ids):
            if place_id not in by_id:
                rejected.append({"placeId": place_id, "field": f"placeIds[{n}]",
                                 "error": "is not a place of the connected tenant"})  # fmt: skip
        children: dict[str, list[Place]] = {}
        for p in places:
            children.setdefault(p.parent_id or "", []).append(p)
        chosen, stack, seen = [], [by_id[i] for i in ids if i in by_id], set()
        while stack:
            p = stack.pop()
            if p.id in seen:
                continue
            seen.add(p.id)
            chosen.append(p)
            stack.extend(children.get(p.id, []))
    out, skipped = [], []
    for p in chosen:
        bookable, reason = p.bookable
        if bookable:
            out.append(p)
        elif p.type not in CONTAINERS:
            if p.id in named:
                rejected.append({"placeId": p.id, "name": p.name,
                                 "error": f"is not bookable ({reason})"})  # fmt: skip
            else:
                skipped.append({"placeId": p.id, "name": p.name, "reason": reason})
    return out, skipped


def _new_id(mailbox: str) -> str:
    """A new resource's id: the mailbox's local part, as resource ids allow it."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", mailbox.partition("@")[0])[:64].strip(".-") or "place"


def import_places(
    deps: MappingDeps, building_id: str, body: Mapping[str, Any], *, actor: str = "system"
) -> dict[str, Any]:
    """Create or update resources from Places and map them (module docstring). Returns the
    report; raises `ImportRejected` (422 with the rows) when anything would be wrong."""
    check_building(building_id)
    zone, ids = _parse_import(body)
    connection = connected(deps.connections, building_id)
    places = read_places(deps, building_id, actor)
    by_id = {p.id: p for p in places}
    rejected: list[dict[str, Any]] = []
    chosen, skipped = _selected(places, ids, rejected)
    resources = _imported(deps, building_id)
    existing_ids = {
        str(e["RowKey"]): e
        for e in tablestore.query_all(
            deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building_id}
        )
    }
    if zone is None and any(p.mailbox not in resources for p in chosen):
        rejected.append({"field": "timeZone", "error": "is required to create resources"})
    calendars = _calendars(deps, connection, chosen, actor, rejected)
    planned: list[_Planned] = []
    claimed: dict[str, str] = {}
    for p in chosen:
        mailbox = p.mailbox or ""
        existing = resources.get(mailbox)
        resource_id = str(existing["RowKey"]) if existing is not None else _new_id(mailbox)
        holder = existing_ids.get(resource_id)
        other = str((holder or {}).get("placeMailbox") or (holder or {}).get("mailbox") or "")
        if existing is None and holder is not None and other.lower() != mailbox:
            rejected.append(
                {
                    "placeId": p.id,
                    "name": p.name,
                    "error": f"resource id {resource_id} is taken by another resource",
                }
            )
            continue  # fmt: skip
        if claimed.setdefault(resource_id, mailbox) != mailbox:
            rejected.append(
                {
                    "placeId": p.id,
                    "name": p.name,
                    "error": f"resource id {resource_id} is also another place's",
                }
            )
            continue  # fmt: skip
        labels = _ancestors(p, by_id)
        floor = labels.get("floor") or p.floor_label
        resource_body: dict[str, Any] = {
            "name": p.name[:200],
            "kind": KIND_OF[p.type],
            "timeZone": str(existing.get("timeZone")) if existing is not None else zone,
            "capacity": p.capacity,
            "floor": floor[: registry.LABEL_MAX] if floor else None,
            "section": labels["section"][: registry.LABEL_MAX] if "section" in labels else None,
        }
        if existing is not None and existing.get("paid"):
            resource_body["paid"] = True
        planned.append(_Planned(p, resource_id, calendars.get(p.id, ""), resource_body, existing))
    if rejected:
        raise ImportRejected(rejected)
    report: dict[str, Any] = {"created": [], "updated": [], "unchanged": [], "renamed": [],
                              "skipped": skipped, "missing": []}  # fmt: skip
    for item in planned:
        _write(deps, building_id, item, actor, report)
    listed = {p.mailbox for p in places if p.mailbox}
    for mailbox, entity in sorted(resources.items()):
        if entity.get("placeMailbox") == mailbox and mailbox not in listed:
            report["missing"].append({"resourceId": str(entity["RowKey"]), "mailbox": mailbox})
    record_import(deps, connection, building_id, actor, "places", report, _IMPORT_COUNTS)
    return report


_IMPORT_COUNTS = ("created", "updated", "unchanged", "missing")


def record_import(
    deps: MappingDeps,
    connection: Connection,
    building_id: str,
    actor: str,
    what: str,
    report: Mapping[str, Sequence[Any]],
    counted: Sequence[str],
) -> None:
    """An import's outcome, audited as `<what>.import` and logged: how many of each `counted`
    list of the report (places import here, mappings import in bulk.py)."""
    counts = ", ".join(f"{len(report[name])} {name}" for name in counted)
    deps.audit(
        AuditEntry(
            time=deps.now(), actor=actor, building=building_id,
            connection=connection.connection_id, operation=f"{what}.import", mailbox=None,
            calendar=None, status=200, request_id=None, result=f"ok: {counts}",
        )
    )  # fmt: skip
    logger.info("building %s: %s import by %s: %s", building_id, what, actor, counts)


class ImportRejected(ValidationFailed):
    """Some selected places (or bulk mapping rows) cannot be imported: 422 with every one named,
    nothing written."""

    status = 422
    title = "Cannot be done"
    slug = "unprocessable"

    def __init__(self, rows: list[dict[str, Any]], noun: str = "places") -> None:
        # A row with its own `field` names it (the bulk mapping import's rows all do).
        super().__init__(
            [
                FieldError(str(r["field"]), str(r["error"]))
                if "field" in r
                else FieldError("places", f"{r['placeId']} ({r.get('name')}): {r['error']}")
                for r in rows
            ],
            detail=f"{len(rows)} {noun} rejected; nothing was imported",
        )
        self.reason = "rows_rejected"
        self.rows = rows


def _calendars(
    deps: MappingDeps,
    connection: Any,
    chosen: Sequence[Place],
    actor: str,
    rejected: list[dict[str, Any]],
) -> dict[str, str]:
    """The calendar id to map for each place: its mailbox's default calendar, probed (it must be
    writable; a free/busy connection maps `<default>` without reading it)."""
    if connection.free_busy_only:
        return {p.id: DEFAULT_CALENDAR for p in chosen}
    results = probe_calendars(deps, connection, [p.mailbox or "" for p in chosen], actor)
    out: dict[str, str] = {}
    for n, p in enumerate(chosen):
        result = results[str(n)]
        if not (result.ok and isinstance(result.body, dict) and result.body.get("id")):
            rejected.append(
                {
                    "placeId": p.id,
                    "name": p.name,
                    "error": f"its calendar cannot be read ({probe_reason(result)})",
                }
            )
            continue  # fmt: skip
        if not result.body.get("canEdit"):
            rejected.append(
                {
                    "placeId": p.id,
                    "name": p.name,
                    "error": "its calendar is not writable (not_writable)",
                }
            )
            continue  # fmt: skip
        out[p.id] = str(result.body["id"])
    return out


def _write(
    deps: MappingDeps, building_id: str, item: _Planned, actor: str, report: dict[str, Any]
) -> None:
    """Create or update one resource and map it; what changed goes into the report."""
    before = item.existing
    mailbox = item.place.mailbox or ""
    same = (
        before is not None
        and all(before.get(k) == v for k, v in item.body.items() if k != "paid")
        and before.get("placeMailbox") == mailbox
        and before.get("placeId") == item.place.id
    )
    mapped = before is not None and (
        str(before.get("calendarId") or "") == item.calendar_id
        and str(before.get("mailbox") or "").lower() == mailbox
    )
    if not same:
        # Places knows nothing of no-show release: a resource's own setting survives a re-import.
        own = registry.resource_view(before)["autoRelease"] if before is not None else None
        body = {**item.body, "autoRelease": own} if own is not None else item.body
        registry.put_resource(
            deps.tables, building_id, item.resource_id, body,
            extra={"placeId": item.place.id, "placeMailbox": mailbox},
        )  # fmt: skip
    if not mapped:
        map_resource(
            deps, building_id, item.resource_id,
            {"calendarId": item.calendar_id, "mailbox": mailbox}, actor=actor,
        )  # fmt: skip
    entry = {"resourceId": item.resource_id, "placeId": item.place.id, "mailbox": mailbox}
    if before is None:
        report["created"].append(entry)
    elif same and mapped:
        report["unchanged"].append(entry)
    else:
        report["updated"].append(entry)
        if before.get("name") != item.body["name"] and before.get("placeMailbox") == mailbox:
            report["renamed"].append({**entry, "from": before.get("name"), "to": item.body["name"]})
