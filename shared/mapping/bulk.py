"""Bulk mapping by room email (issue 17, `POST /buildings/{b}/mappings:import`): the SpaceIQ case,
1,000 rooms mapped in one request instead of 1,000 PUTs of .../mapping.

Body: `{"timeZone": "Europe/Amsterdam", "mappings": [{"resourceId", "mailbox", "name"?}, ...]}`,
1-`BULK_MAX` rows. Decisions:
- **Creates or maps**: a row's resource that exists is mapped as it is (its name, zone and
  settings untouched); one that does not is created as a room (`name`: the row's, else the room's
  display name; `timeZone`: the body's, required only when some resource is new), then mapped.
- **Resolved through discovery**, as GET /calendars would show them: the rows' mailboxes must be
  rooms the Places API lists for this connection (Place.Read.All required), each room's calendar
  probed in `$batch` requests of 20 (`probe_calendars`; a delegated account's shared copy of a
  room is mapped as discovery offers it). A free/busy connection maps `<default>` unprobed.
  Mailboxes that are not listed rooms are probed too, to say which of "no such mailbox" and
  "not a room" it is.
- **All or nothing, every bad row named** (422 `rows_rejected`, `rejected[]` with `row`,
  `resourceId`, `mailbox`, `error`, and `errors[]` naming `mappings[<n>].<field>`): a malformed
  row, a resource id or mailbox twice in the file, an unknown mailbox, a mailbox that is not a
  room, a calendar not readable or not writable, a paid resource, a calendar mapped to another
  resource (of any building) and not to this row's. Nothing is written then.
- **The one calendar guard**: each row is written by `apply_mapping`, the same claim → write →
  commit on `calendarindex` as a single PUT, so a calendar mapped concurrently elsewhere still
  ends as a 409 of this request (the rows before it stay mapped). Mappings are written
  `WRITE_WORKERS` at a time; each queues its room's first full sync, as a PUT does.
- **Idempotent**: a re-run maps nothing again (`unchanged`); a row whose resource was mapped to
  another calendar is re-mapped (`updated`). A failure part-way leaves earlier rows done, and
  running the same request again converges.
- **Audited**: one `mappings.import` audit record (who, how many created, updated, unchanged),
  besides the Graph reads the Graph layer audits.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.core.errors import IdentityError
from shared.core.validate import NAME_MAX, Checker, check_building
from shared.directory import registry
from shared.directory.registry import INDEX_ROW_KEY
from shared.mapping.access import account_mailbox, connected, reauth
from shared.mapping.discovery import (
    MAX_ROOMS,
    CalendarOut,
    _copies,
    _free_busy_entry,
    _room_entries,
    _rooms,
    probe_calendars,
    require_places,
)
from shared.mapping.places import ImportRejected, import_time_zone, record_import
from shared.mapping.service import CLAIM_GRACE, Found, MappingDeps, apply_mapping, index_key
from shared.storage import tablestore

if TYPE_CHECKING:
    from shared.core.connection import Connection

logger = logging.getLogger(__name__)

BULK_MAX = MAX_ROOMS  # rows per request: as many rooms as discovery lists at once
WRITE_WORKERS = 8  # mappings written at a time (each its own calendarindex partition)
READ_WORKERS = 8  # calendarindex and resource point reads at a time while checking


@dataclass(frozen=True)
class _Row:
    n: int
    resource_id: str
    mailbox: str
    name: str | None


@dataclass(frozen=True)
class _Plan:
    row: _Row
    found: Found
    key: str
    existing: tablestore.Entity | None


def _parse(
    body: Mapping[str, Any], rejected: list[dict[str, Any]]
) -> tuple[str | None, list[_Row]]:
    """The body's zone and well-formed rows; a malformed row goes to `rejected` (every field named),
    a malformed body is a 400."""
    check = Checker(body)
    check.only(("timeZone", "mappings"))
    zone = import_time_zone(check, body)
    raw = body.get("mappings")
    if not isinstance(raw, list) or not 0 < len(raw) <= BULK_MAX:
        check.add("mappings", f"must be a list of 1–{BULK_MAX} rows")
        raw = []
    check.done()
    rows: list[_Row] = []
    for n, item in enumerate(raw):
        prefix = f"mappings[{n}]."
        if not isinstance(item, dict):
            rejected.append(_rejection(n, {}, f"mappings[{n}]", "must be an object"))
            continue
        row = Checker(item, prefix=prefix)
        row.only(("resourceId", "mailbox", "name"))
        resource_id = item.get("resourceId")
        if not isinstance(resource_id, str):
            row.add("resourceId", "is required")
            resource_id = ""
        else:
            row.path_id("resourceId", resource_id)
        mailbox = row.email("mailbox", item.get("mailbox"))
        name = row.name(required=False) or None
        if row.errors:
            for error in row.errors:
                rejected.append(_rejection(n, item, error.field, error.message))
            continue
        rows.append(_Row(n, resource_id, mailbox or "", name))
    return zone, rows


def _rejection(n: int, item: Mapping[str, Any], field: str, error: str) -> dict[str, Any]:
    resource_id, mailbox = item.get("resourceId"), item.get("mailbox")
    return {
        "row": n,
        "resourceId": resource_id if isinstance(resource_id, str) else None,
        "mailbox": mailbox if isinstance(mailbox, str) else None,
        "field": field,
        "error": error,
    }


def _reject(rejected: list[dict[str, Any]], row: _Row, field: str, error: str) -> None:
    rejected.append({"row": row.n, "resourceId": row.resource_id, "mailbox": row.mailbox,
                     "field": f"mappings[{row.n}].{field}", "error": error})  # fmt: skip


def _duplicates(rows: Sequence[_Row], rejected: list[dict[str, Any]]) -> list[_Row]:
    """Rows whose resource id and mailbox no earlier row has (the later ones are rejected)."""
    by_resource: dict[str, int] = {}
    by_mailbox: dict[str, int] = {}
    kept: list[_Row] = []
    for row in rows:
        first_r = by_resource.setdefault(row.resource_id.lower(), row.n)
        first_m = by_mailbox.setdefault(row.mailbox, row.n)
        if first_r != row.n:
            _reject(rejected, row, "resourceId", f"is also row {first_r}'s resource")
        if first_m != row.n:
            _reject(rejected, row, "mailbox", f"is also row {first_m}'s mailbox")
        if first_r == row.n and first_m == row.n:
            kept.append(row)
    return kept


def _discovered(
    deps: MappingDeps, connection: Connection, rows: Sequence[_Row], actor: str
) -> tuple[dict[str, CalendarOut], set[str], set[str]]:
    """(the rows' rooms as discovery shows them, by mailbox; the other mailboxes that exist; the
    rooms a delegated account maps through its shared copy, in its own mailbox)."""
    wanted = {r.mailbox for r in rows}
    rooms = [room for room in _rooms(deps, connection, actor) if room.address in wanted]
    copies = _copies(deps, connection, actor)
    entries = _room_entries(deps, connection, rooms, copies, actor)
    if connection.free_busy_only:
        entries = [_free_busy_entry(e) for e in entries]
    found = {str(e["owner"]["address"] or e["mailbox"]): e for e in entries}
    others = sorted(wanted - set(found))
    probed = probe_calendars(deps, connection, others, actor) if others else {}
    # A mailbox that answers (or refuses: it exists) but is no listed room is someone's mailbox.
    exist = {m for n, m in enumerate(others) if probed[str(n)].status in (200, 403)}
    return found, exist, set(copies) & set(found)


def _held_elsewhere(
    deps: MappingDeps, entry: tablestore.Entity | None, key: str, row: _Row, building_id: str
) -> bool:
    """Whether the calendar's index entry belongs to another resource, as the single PUT would
    find (409 `calendar_mapped`): a claim younger than `CLAIM_GRACE` (a map in progress), or a
    committed entry whose resource still points at it. What a crash left behind (an older claim,
    an entry its resource no longer points at) is taken over when the row is written, as a PUT
    takes it over, so it does not count; nothing is cleared here."""
    if entry is None:
        return False
    if entry.get("buildingId") == building_id and entry.get("resourceId") == row.resource_id:
        return False
    if not entry.get("committed"):
        claimed = entry.get("claimedAt")
        if not isinstance(claimed, datetime):
            return False
        claimed = claimed if claimed.tzinfo else claimed.replace(tzinfo=UTC)
        return deps.now() - claimed < CLAIM_GRACE
    building, resource = str(entry.get("buildingId") or ""), str(entry.get("resourceId") or "")
    holder = (
        tablestore.get_entity(deps.tables(tablestore.RESOURCES), building, resource)
        if building and resource
        else None
    )
    return holder is not None and holder.get("calendarIndexKey") == key


def import_mappings(
    deps: MappingDeps, building_id: str, body: Mapping[str, Any], *, actor: str = "system"
) -> dict[str, Any]:
    """Create and map the rows' resources (module docstring): the report, or `ImportRejected`."""
    check_building(building_id)
    rejected: list[dict[str, Any]] = []
    zone, rows = _parse(body, rejected)
    connection = connected(deps.connections, building_id)
    require_places(connection)
    rows = _duplicates(rows, rejected)
    try:
        rooms, exist, copied = _discovered(deps, connection, rows, actor)
    except IdentityError as err:
        if err.reauth:
            raise reauth(err) from err
        raise
    resources = deps.tables(tablestore.RESOURCES)
    index = deps.tables(tablestore.CALENDAR_INDEX)
    me = account_mailbox(connection)
    candidates: list[tuple[_Row, Found, str]] = []
    for row in rows:
        entry = rooms.get(row.mailbox)
        if entry is None:
            why = (
                "is not a room (a mailbox the Places API lists no room for)"
                if (row.mailbox in exist)
                else "is no room or mailbox this connection can see (calendar_not_found)"
            )
            _reject(rejected, row, "mailbox", why)
            continue
        if entry["id"] is None:
            _reject(rejected, row, "mailbox", f"its calendar cannot be read ({entry['reason']})")
            continue
        if not entry["canEdit"] and not connection.free_busy_only:
            _reject(rejected, row, "mailbox", "its calendar is not writable (not_writable)")
            continue
        copy = me is not None and row.mailbox in copied  # the account's copy of the room
        found = Found(
            calendar_id=str(entry["id"]), name=str(entry["owner"]["name"] or entry["name"]),
            mailbox=row.mailbox, graph_mailbox=me if copy and me else row.mailbox, kind="room",
            is_default=not copy, can_edit=bool(entry["canEdit"]),
        )  # fmt: skip
        candidates.append(
            (row, found, index_key(connection.tenant_id, row.mailbox, found.calendar_id))
        )

    def read(
        item: tuple[_Row, Found, str],
    ) -> tuple[tablestore.Entity | None, tablestore.Entity | None]:
        row, _, key = item
        return (
            tablestore.get_entity(resources, building_id, row.resource_id),
            tablestore.get_entity(index, key, INDEX_ROW_KEY),
        )

    with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
        current = list(pool.map(read, candidates))
    planned: list[_Plan] = []
    for (row, found, key), (existing, index_entry) in zip(candidates, current, strict=True):
        if existing is not None and existing.get("paid"):
            _reject(
                rejected, row, "resourceId", "is a paid resource: it cannot sync (not_supported)"
            )
            continue
        if _held_elsewhere(deps, index_entry, key, row, building_id):
            assert index_entry is not None
            holder = str(index_entry.get("resourceId") or "")
            where = (
                f"resource {holder}"
                if index_entry.get("buildingId") == building_id
                else "a resource of another building"
            )
            _reject(
                rejected, row, "mailbox", f"its calendar is mapped to {where} (calendar_mapped)"
            )
            continue
        planned.append(_Plan(row, found, key, existing))
    if zone is None and any(p.existing is None for p in planned):
        rejected.append({"row": None, "resourceId": None, "mailbox": None, "field": "timeZone",
                         "error": "is required to create resources"})  # fmt: skip
    if rejected:
        rejected.sort(key=lambda r: (r["row"] is None, r["row"] or 0))
        raise ImportRejected(rejected, noun="rows")
    report: dict[str, Any] = {"created": [], "updated": [], "unchanged": []}

    def write(plan: _Plan) -> tuple[str, dict[str, Any]]:
        return _write(deps, connection, building_id, plan, zone)

    with ThreadPoolExecutor(max_workers=WRITE_WORKERS) as pool:
        for outcome, done in pool.map(write, planned):
            report[outcome].append(done)
    counted = ("created", "updated", "unchanged")
    record_import(deps, connection, building_id, actor, "mappings", report, counted)
    return report


def _write(
    deps: MappingDeps, connection: Connection, building_id: str, plan: _Plan, zone: str | None
) -> tuple[str, dict[str, Any]]:
    """Create the row's resource if needed and map it: (created / updated / unchanged, entry)."""
    row, found, before = plan.row, plan.found, plan.existing
    if before is None:
        registry.put_resource(
            deps.tables, building_id, row.resource_id,
            {"name": (row.name or found.name or row.mailbox)[: NAME_MAX],
             "kind": "room", "timeZone": zone},
        )  # fmt: skip
    same = before is not None and before.get("calendarIndexKey") == plan.key
    apply_mapping(deps, connection, building_id, row.resource_id, found)
    entry = {"resourceId": row.resource_id, "mailbox": row.mailbox}
    if before is None:
        return "created", entry
    return ("unchanged" if same else "updated"), entry
