"""The events producers hand over (model.Event), one constructor per type: stable ids derived
from the change, the `data` of the type's schema, and how to see the change committed.

Pure: producers (sync, bookings, connect, mapping, checks) build events here and hand them to
their `emit` collaborator (shared/wiring.py) *before* committing the change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.webhooks.model import Event


def stable_id(*parts: object) -> str:
    """`msg_` + a hash of what identifies the change (the same change, the same id)."""
    text = json.dumps([str(p) for p in parts], separators=(",", ":"))
    return "msg_" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def outlook_booking(
    kind: str,  # created | updated | cancelled
    *,
    building: str,
    resource: str,
    block: str,
    start: datetime,
    end: datetime,
    show_as: str | None,
    attribution: Mapping[str, Any] | None,
) -> Event:
    data = {
        "resourceId": resource,
        "blockId": block,
        "start": _iso(start),
        "end": _iso(end),
        "showAs": show_as,
        "attribution": dict(attribution or {}),
    }
    commit: dict[str, Any] = {"kind": "busy_block", "building": building, "resource": resource,
                              "block": block}  # fmt: skip
    if kind == "updated":
        commit.update(start=_iso(start), end=_iso(end))
    elif kind == "created":
        commit["exists"] = True
    event_id = stable_id("outlook_booking", kind, building, resource, block, data["start"],
                         data["end"], show_as, json.dumps(data["attribution"], sort_keys=True))  # fmt: skip
    return Event(f"outlook_booking.{kind}", event_id, data, commit)


def booking_outcome(
    *,
    building: str,
    booking: str,
    resource: str,
    state: str,  # synced | failed
    version: int,
    outlook_event_id: str | None,
    reason: str | None,
    table: str,
) -> Event:
    """booking.synced / booking.failed for a write-through attempt's committed outcome."""
    if state == "synced":
        data: dict[str, Any] = {"bookingId": booking, "resourceId": resource,
                                "outlookEventId": outlook_event_id}  # fmt: skip
        # syncedVersion only grows, and only when that version reached Outlook.
        expect: dict[str, Any] = {"syncedVersion": {"min": version}}
    else:
        data = {"bookingId": booking, "resourceId": resource, "reason": reason or "unknown"}
        expect = {"syncState": "failed", "version": version}
    commit = {"kind": "entity", "table": table, "pk": building, "rk": booking, "expect": expect}
    return Event(f"booking.{state}", stable_id("booking", state, building, booking, version),
                 data, commit)  # fmt: skip


def connection_status(
    *, building: str, connection_id: str, status: str, reason: str | None, table: str
) -> Event:
    """connection.reauth_required (status reauth_required) or connection.restored (connected)
    of one connection record (a reconnect makes a new connection id)."""
    kind = "reauth_required" if status == "reauth_required" else "restored"
    data: dict[str, Any] = {"status": status}
    if kind == "reauth_required":
        data["reason"] = reason
    expect = {"connectionId": connection_id, "status": status}
    commit = {"kind": "entity", "table": table, "pk": building, "rk": "current", "expect": expect}
    return Event(f"connection.{kind}", stable_id("connection", kind, building, connection_id),
                 data, commit)  # fmt: skip


def mapping_status(
    *,
    building: str,
    resource: str,
    status: str,
    previous: str | None,
    reason: str | None,
    table: str,
    at: str,
) -> Event:
    """mapping.status_changed: a resource's sync status moved from `previous` to `status`."""
    data = {"resourceId": resource, "status": status, "previousStatus": previous,
            "reason": reason}  # fmt: skip
    # A status that may be superseded within the wait is checked by the time that made it.
    if status == "pending":
        expect: dict[str, Any] = {"mappedAt": {"since": at}}
    elif status == "synced":
        expect = {"lastSyncAt": {"since": at}}
    else:
        expect = {"syncStatus": status}
    commit = {"kind": "entity", "table": table, "pk": building, "rk": resource, "expect": expect}
    return Event("mapping.status_changed", stable_id("mapping", building, resource, previous,
                 status, at), data, commit)  # fmt: skip


def check_completed(*, building: str, check_id: str, status: str, table: str, row: str) -> Event:
    """check.completed: a go-live check run ended (passed, failed, abandoned)."""
    commit = {"kind": "entity", "table": table, "pk": building, "rk": row,
              "expect": {"status": status}}  # fmt: skip
    return Event("check.completed", stable_id("check", building, check_id, status),
                 {"checkId": check_id, "status": status}, commit)  # fmt: skip
