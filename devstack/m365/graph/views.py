"""calendarView and calendarView/delta.

calendarView: both window parameters required, `$top` 1–1000, `$skip` paging via
`@odata.nextLink`, `$select`, `$filter` (subset), occurrences expanded.

Delta: the window is fixed by the initial request and kept server-side; `$skiptoken` and
`$deltatoken` are opaque. A round compares the calendar's current instances with the snapshot taken
when the previous round ended: new/changed items come in full, vanished ones as
`{"@removed": {"reason": "deleted"}}` — and, as Graph does, items changed or deleted *outside* the
window since the last round are reported as `@removed` too. Tokens can be replayed. Expiry is
forced via the control API: 410 Gone with a `Location` to restart, or 400 `syncStateNotFound`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .deltatokens import DeltaStore, Round, Snapshot
from .errors import GraphError
from .events import event_json, item_change_key, item_id, item_key, view_items
from .model import Mailbox, occurrence_id
from .store import GraphState
from .timezones import parse_query_datetime


def window(query: dict[str, str]) -> tuple[dt.datetime, dt.datetime]:
    low = {k.lower(): v for k, v in query.items()}
    s, e = low.get("startdatetime"), low.get("enddatetime")
    if not s or not e:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters "
            "StartDateTime and EndDateTime.",
        )
    start = parse_query_datetime(s, "StartDateTime")
    end = parse_query_datetime(e, "EndDateTime")
    if end < start:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "The parameter 'EndDateTime' must be later than 'StartDateTime'.",
        )
    return start, end


def _snapshot_items(
    mb: Mailbox, cals: set[str], start: dt.datetime, end: dt.datetime
) -> tuple[dict[str, tuple[str, str, str]], list[tuple[str, Any]]]:
    items: dict[str, tuple[str, str, str]] = {}
    order: list[tuple[str, Any]] = []
    for rec, occ, _s in view_items(mb, cals, start, end):
        k = item_key(rec, occ)
        items[k] = (item_change_key(rec, occ), item_id(rec, occ, False), item_id(rec, occ, True))
        order.append((k, (rec.key, occ)))
    return items, order


def begin_round(
    state: GraphState,
    mb: Mailbox,
    cals: set[str],
    start: dt.datetime,
    end: dt.datetime,
    path: str,
    previous: Snapshot | None,
    page_size: int,
) -> Round:
    current, order = _snapshot_items(mb, cals, start, end)
    entries: list[tuple[str, Any]] = []
    if previous is None:
        entries = [("item", ref) for _k, ref in order]
    else:
        for k, ref in order:
            prev = previous.items.get(k)
            if prev is None or prev[0] != current[k][0]:
                entries.append(("item", ref))
        removed_keys = set()
        # A deleted series as only its master's removal (config `deltaSeriesRemoval: master`):
        # what a client must also cope with, since Graph documents neither form.
        master_only = state.config.delta_series_removal == "master"
        series_gone: set[str] = set()
        for k, (_ck, rest, imm) in previous.items.items():
            if k not in current:
                master = k.split("@")[0]
                if master_only and "@" in k and master not in mb.events:
                    series_gone.add(master)
                    continue
                entries.append(("removed", (rest, imm)))
                removed_keys.add(master)
        for tomb in mb.tombstones:
            if tomb.key in series_gone and tomb.seq > previous.seq:
                entries.append(("removed", (tomb.rest_id, tomb.immutable_id)))
                series_gone.discard(tomb.key)
                removed_keys.add(tomb.key)
        in_view = {k.split("@")[0] for k in current} | {k.split("@")[0] for k in previous.items}
        # Graph also reports changes outside the window as deletions (GRAPH.md §7.3).
        for rec in mb.events.values():
            if rec.calendar_id in cals and rec.seq > previous.seq and rec.key not in in_view:
                entries.append(("removed", (rec.rest_id, rec.immutable_id)))
        for tomb in mb.tombstones:
            if (
                tomb.seq > previous.seq
                and tomb.calendar_id in cals
                and tomb.key not in removed_keys
                and tomb.key not in in_view
            ):
                entries.append(("removed", (tomb.rest_id, tomb.immutable_id)))
    snap = Snapshot((mb.tenant_id, mb.user_id), frozenset(cals), start, end, path, current, mb.seq)
    return Round(snap, entries, page_size)


def render_page(
    state: GraphState,
    mb: Mailbox,
    rnd: Round,
    offset: int,
    base: str,
    *,
    tz: str | None,
    immutable: bool,
    body_type: str | None = None,
) -> dict[str, Any]:
    chunk = rnd.entries[offset : offset + rnd.page_size]
    value: list[dict[str, Any]] = []
    for kind, ref in chunk:
        if kind == "item":
            key, occ = ref
            rec = mb.events.get(key)
            if rec is None:
                continue  # deleted since the round began; the next round reports it
            item = event_json(state, mb, rec, occ, tz=tz, immutable=immutable, body_type=body_type)
            # Delta items carry their type, as Graph's delta pages do (event-delta.md examples).
            value.append({"@odata.type": "#microsoft.graph.event", **item})
        else:
            rest, imm = ref
            value.append(
                {
                    "@odata.type": "#microsoft.graph.event",
                    "id": imm if immutable else rest,
                    "@removed": {"reason": "deleted"},
                }
            )
    out: dict[str, Any] = {
        "@odata.context": f"{state.emulator.base_url}/v1.0/$metadata#Collection(event)",
        "value": value,
    }
    nxt = offset + rnd.page_size
    store = state.delta
    if nxt < len(rnd.entries):
        token = store._put(store.pages, (rnd, nxt))
        out["@odata.nextLink"] = f"{base}?$skiptoken={token}"
    else:
        token = store._put(store.snapshots, rnd.snapshot)
        out["@odata.deltaLink"] = f"{base}?$deltatoken={token}"
    return out


UNSUPPORTED_DELTA = (
    "$select",
    "$filter",
    "$orderby",
    "$expand",
    "$search",
    "$top",
    "$skip",
    "$count",
)


def delta(
    state: GraphState,
    mb: Mailbox,
    cals: set[str],
    query: dict[str, str],
    base: str,
    path: str,
    *,
    page_size: int,
    tz: str | None,
    immutable: bool,
    body_type: str | None = None,
) -> dict[str, Any]:
    bad = [k for k in query if k.lower() in UNSUPPORTED_DELTA]
    if bad:
        raise GraphError(
            400,
            "ErrorInvalidUrlQuery",
            "The following parameters are not supported with change tracking over the "
            f"'CalendarView' resource: '{', '.join(sorted(bad))}'.",
        )
    low = {k.lower(): v for k, v in query.items()}
    store = state.delta
    skip = low.get("$skiptoken")
    dtok = low.get("$deltatoken")
    for token in (skip, dtok):
        if token is not None and token in store.expired:
            raise _expired(state, store, token, base)
    if skip is not None:
        page = store.pages.get(skip)
        if page is None:
            raise _sync_state_not_found()
        rnd, offset = page
        _same_target(rnd.snapshot, mb)
        return render_page(
            state, mb, rnd, offset, base, tz=tz, immutable=immutable, body_type=body_type
        )
    if dtok is not None:
        snap = store.snapshots.get(dtok)
        if snap is None:
            raise _sync_state_not_found()
        _same_target(snap, mb)
        rnd = begin_round(
            state, mb, set(snap.calendar_ids), snap.start, snap.end, snap.path, snap, page_size
        )
        return render_page(state, mb, rnd, 0, base, tz=tz, immutable=immutable, body_type=body_type)
    start, end = window(query)
    rnd = begin_round(state, mb, cals, start, end, path, None, page_size)
    return render_page(state, mb, rnd, 0, base, tz=tz, immutable=immutable, body_type=body_type)


def _same_target(snap: Snapshot, mb: Mailbox) -> None:
    if snap.mailbox != (mb.tenant_id, mb.user_id):
        raise _sync_state_not_found()


def _sync_state_not_found() -> GraphError:
    return GraphError(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be "
        "resynchronized.",
    )


def _expired(state: GraphState, store: DeltaStore, token: str, base: str) -> GraphError:
    mode = store.expired[token]
    if mode == "syncStateNotFound":
        return _sync_state_not_found()
    snap_or_page = store.snapshots.get(token) or store.pages.get(token)
    snap = (
        snap_or_page
        if isinstance(snap_or_page, Snapshot)
        else (snap_or_page[0].snapshot if snap_or_page else None)
    )
    location = base
    if snap is not None:
        location = (
            f"{base}?startDateTime={snap.start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            f"&endDateTime={snap.end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
    return GraphError(
        410,
        "resyncRequired",
        "The delta token has expired. Restart the synchronization from the Location header.",
        headers={"Location": location},
    )


def occurrence_removed_id(master_id: str, occ: dt.datetime) -> str:
    return occurrence_id(master_id, occ)
