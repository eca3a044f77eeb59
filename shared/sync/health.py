"""Sync as an administrator sees and steers it: `GET /buildings/{b}/sync` (per mapping: status,
mode, subscription, delta state, lag, last error, poison messages) and `POST
/buildings/{b}/resources/{r}/sync` (a forced full resync)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Literal, TypedDict

from shared.core.errors import BookingBridgeError, NotFound, Unprocessable
from shared.core.validate import check_path
from shared.directory.registry import sync_state
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.sync.deltastate import count, state_table, when
from shared.sync.deps import SyncDeps, Watch
from shared.sync.queue import SyncRequest, decode_all

logger = logging.getLogger(__name__)

PEEK_MAX = 32  # the queue service's peek limit


class ErrorOut(TypedDict):
    reason: str
    at: str | None


class WriteErrorOut(TypedDict):
    """The last platform booking of the mapping whose write-through failed for good."""

    reason: str
    at: str | None
    bookingId: str | None
    status: int | None  # Graph's HTTP status (0: no answer), None when Graph was not reached
    code: str | None  # Graph's error code, or the transient reason retries ended on


class DeltaStateOut(TypedDict):
    ageSeconds: int | None
    baselineAt: str | None
    windowStart: str | None
    windowEnd: str | None


class MappingHealthOut(TypedDict):
    resourceId: str
    calendar: dict[str, str | None]
    status: str
    reason: str | None
    mode: Literal["notifications", "polling", "pending"]
    subscription: Mapping[str, object] | None  # Watch.to_api()
    deltaState: DeltaStateOut | None
    lastSyncAt: str | None
    lagSeconds: int | None
    lastError: ErrorOut | None
    lastWriteError: WriteErrorOut | None
    nextPollAt: str | None
    rounds: int
    graphRequests: int
    poisonMessages: int


class SyncHealthOut(TypedDict):
    building: str
    mappings: list[MappingHealthOut]
    poisonMessages: int
    poisonMessagesCapped: bool
    # Outgoing webhooks not active (failing, or disabled after failing for 3 days; issue 16).
    webhooks: list[Mapping[str, object]]


def sync_health(deps: SyncDeps, building: str) -> SyncHealthOut:
    """`GET /buildings/{b}/sync`: per mapping, what an admin needs to trust (or fix) the sync."""
    check_path(building=building)
    now = deps.now()
    resources = tablestore.query_all(
        deps.tables(tablestore.RESOURCES), "PartitionKey eq @b", {"b": building}
    )
    states = {
        str(s["RowKey"]): s
        for s in tablestore.query_all(state_table(deps), "PartitionKey eq @b", {"b": building})
    }
    poison = _poison_for(deps, building)
    subscriptions: dict[str, Watch | None] = {}
    mappings: list[MappingHealthOut] = []
    for entity in resources:
        calendar = MappedCalendar.from_entity(entity)
        if calendar is None:
            continue
        state = states.get(calendar.resource_id)
        if calendar.mailbox not in subscriptions:
            try:
                subscriptions[calendar.mailbox] = deps.subscription(building, calendar.mailbox)
            except BookingBridgeError as err:
                logger.warning("sync health %s: subscription unreadable: %s", building, err.reason)
                subscriptions[calendar.mailbox] = None
        mappings.append(
            _mapping_health(entity, calendar, state, subscriptions[calendar.mailbox], poison, now)
        )
    capped = len(poison) >= PEEK_MAX
    return {"building": building, "mappings": mappings, "poisonMessages": len(poison),
            "poisonMessagesCapped": capped, "webhooks": deps.webhook_health(building)}  # fmt: skip


def _mapping_health(
    entity: Entity,
    calendar: MappedCalendar,
    state: Entity | None,
    sub: Watch | None,
    poison: list[SyncRequest],
    now: datetime,
) -> MappingHealthOut:
    shown = sync_state(entity)
    last_error: ErrorOut | None = None
    stored_error = tablestore.from_json_property(entity.get("lastError"))
    if isinstance(stored_error, dict) and stored_error.get("reason"):
        last_error = {"reason": str(stored_error["reason"]), "at": stored_error.get("at")}
    lag = shown.lag_seconds
    delta: DeltaStateOut | None = None
    mode: Literal["notifications", "polling", "pending"] = "pending"
    next_poll = None
    rounds = requests = 0
    if state is not None:
        baseline = when(state.get("baselineAt"))
        dirty = when(state.get("dirtySince"))
        if dirty is not None:
            lag = max(lag or 0, int((now - dirty).total_seconds()))
        delta = {
            "ageSeconds": int((now - baseline).total_seconds()) if baseline else None,
            "baselineAt": tablestore.iso_utc(baseline),
            "windowStart": tablestore.iso_utc(state.get("windowStart")),
            "windowEnd": tablestore.iso_utc(state.get("windowEnd")),
        }
        if state.get("polled") is not None:
            mode = "polling" if state.get("polled") else "notifications"
        next_poll = tablestore.iso_utc(state.get("nextPollAt"))
        rounds = count(state.get("rounds"))
        requests = count(state.get("graphRequests"))
    return {
        "resourceId": calendar.resource_id,
        "calendar": {
            "id": calendar.calendar_id,
            "name": entity.get("calendarName"),
            "mailbox": calendar.mailbox,
        },
        "status": shown.status,
        "reason": shown.reason,
        "mode": mode,
        "subscription": sub.to_api() if sub is not None else None,
        "deltaState": delta,
        "lastSyncAt": shown.last_sync_at,
        "lagSeconds": lag,
        "lastError": last_error,
        "lastWriteError": _write_error(entity),
        "nextPollAt": next_poll,
        "rounds": rounds,
        "graphRequests": requests,
        "poisonMessages": sum(
            1
            for p in poison
            if p.resource == calendar.resource_id
            or (p.resource is None and p.mailbox == calendar.mailbox)
        ),
    }


def _write_error(entity: Entity) -> WriteErrorOut | None:
    """`lastWriteError` as the booking service notes it on the resource (bookings/service.py
    `_note_on_resource`: the booking's lastError + its id)."""
    stored = tablestore.from_json_property(entity.get("lastWriteError"))
    if not isinstance(stored, dict) or not stored.get("reason"):
        return None
    status = stored.get("status")
    code = stored.get("code")
    booking = stored.get("bookingId")
    return {
        "reason": str(stored["reason"]),
        "at": str(stored["at"]) if stored.get("at") else None,
        "bookingId": str(booking) if booking else None,
        "status": status if isinstance(status, int) else None,
        "code": str(code) if code else None,
    }


def _poison_for(deps: SyncDeps, building: str) -> list[SyncRequest]:
    found = []
    try:
        bodies = deps.peek_poison()
    except BookingBridgeError as err:
        logger.warning("sync health: poison queue unreadable: %s", err.log_detail)
        return []
    for body in bodies:
        try:
            requests = decode_all(body)
        except BookingBridgeError:
            continue
        found += [r for r in requests if r.building == building]
    return found


def force_resync(deps: SyncDeps, building: str, resource: str) -> SyncRequest:
    """`POST /buildings/{b}/resources/{r}/sync`: queue a full resync of one mapping."""
    check_path(building=building, resourceId=resource)
    entity = tablestore.get_entity(deps.tables(tablestore.RESOURCES), building, resource)
    if entity is None:
        raise NotFound("No such resource in this building", reason="resource_not_found")
    calendar = MappedCalendar.from_entity(entity)
    if calendar is None:
        raise Unprocessable("The resource has no calendar mapped", reason="not_mapped")
    request = SyncRequest(building, calendar.mailbox, "resync", resource=resource, full=True)
    deps.enqueue(request, 0)
    return request
