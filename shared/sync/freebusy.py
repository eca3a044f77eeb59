"""Free/busy-only sync (issue 19): a mapped calendar of an `access: "freeBusy"` connection is read
with getSchedule, never with events, calendarView, delta or subscriptions (which need more than
Calendars.ReadBasic, or more than the mailbox's AvailabilityOnly folder permission shows).

One round reads the resource's whole sync window (`deltastate.current_window`) in getSchedule
windows of at most `CHUNK` (Graph documents < 62 days; GRAPH.md §5.2 advises ≤ 31) and turns each
`scheduleItem` into an event-shaped item for `shared.sync.plan.plan` as a baseline (`full`): a
block whose (start, end, status) is gone is removed, a new one put. The item keeps status, start
and end and nothing else: a subject or location Graph sends anyway (it does to callers with more
than free/busy rights) is dropped here, before planning, so it is never stored, whatever the
building's storeExternalSubjects says. Blocks carry `attribution.detail = "freeBusy"` and are
attributed to nobody (getSchedule names no organizer).

Freshness: these calendars are always polled (no notifications), at the adaptive interval of
shared/sync/polling.py (`BB_POLL_MIN_SECONDS` after a change, doubling to `BB_POLL_MAX_SECONDS`
while idle), so an Outlook change shows within one interval, never within seconds.

Batches: one getSchedule asks about the round's mailbox and up to `BATCH` − 1 other free/busy
mailboxes of the building (`peers`; 20 is the documented limit, GRAPH.md §5.2). The answers for
the others are kept in this process for `fresh_seconds` (half the minimum poll interval), so
their rounds, which the poll timer enqueues in the same tick, read nothing from Graph. A round
finding no fresh answer asks for itself (and its peers) again: batching saves requests, it never
delays a round beyond that half interval.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.core.errors import GraphError, GraphFailure
from shared.core.times import utc_z
from shared.directory.attribution import Attribution
from shared.graph.guard import MappedCalendar
from shared.sync.plan import Window

if TYPE_CHECKING:
    from shared.core.connection import Connection
    from shared.graph.client import CalendarScope

FREE_BUSY_DETAIL = "freeBusy"
BATCH = 20
CHUNK = timedelta(days=31)
Items = list[dict[str, Any]]
# (connection id, mailbox, window start, window end) -> (monotonic time read, items)
_recent: dict[tuple[str, str, Any, Any], tuple[float, Items]] = {}
_recent_lock = threading.Lock()
PREFER = 'outlook.timezone="UTC"'
ATTRIBUTION_REASON = "free_busy_only"  # getSchedule names no organizer to attribute


def nobody(email: str | None) -> Attribution:
    return Attribution("unattributed", None, None, ATTRIBUTION_REASON)


def schedule_path(connection: Connection, calendar: MappedCalendar) -> str:
    """Delegated: the account's own getSchedule (it may ask about any mailbox); application: the
    mapped mailbox's (Graph wants a mailbox in the path; the guard allows a mapped one)."""
    if connection.mode == "delegated":
        return "/me/calendar/getSchedule"
    return calendar.mailbox_path("/calendar/getSchedule")


def _chunks(window: Window) -> Iterator[Window]:
    start = window.start
    while start < window.end:
        end = min(window.end, start + CHUNK)
        yield Window(start, end)
        start = end


def item_id(start: Mapping[str, Any], end: Mapping[str, Any], status: str) -> str:
    """A stable id for one busy interval (getSchedule has no event ids): moved = removed + new."""
    key = f"{start.get('dateTime')}|{end.get('dateTime')}|{status}"
    return "fb-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def schedule_items(
    scope: CalendarScope,
    connection: Connection,
    calendar: MappedCalendar,
    window: Window,
    *,
    peers: Sequence[MappedCalendar] = (),
    fresh_seconds: float = 0.0,
) -> tuple[Items, int]:
    """The busy intervals of the calendar's mailbox in `window`, as event-shaped items holding
    only `id`, `start`, `end` and `showAs`; and the number of Graph requests made. `peers`: other
    mapped calendars (of `scope`) asked about in the same requests (module docstring)."""
    now = time.monotonic()
    key = (connection.connection_id, calendar.mailbox, window.start, window.end)
    if fresh_seconds > 0:
        with _recent_lock:
            found = _recent.get(key)
        if found is not None and now - found[0] < fresh_seconds:
            return found[1], 0
    mailboxes = list(dict.fromkeys([calendar.mailbox, *(p.mailbox for p in peers)]))[:BATCH]
    answers, requests = _ask(scope, connection, calendar, mailboxes, window)
    if calendar.mailbox not in answers:
        # Graph answers 200 with a per-schedule error for an address it cannot resolve.
        raise GraphError(GraphFailure(status=404, code="ErrorMailboxNotFound"))
    if fresh_seconds > 0:
        with _recent_lock:
            for stale in [k for k, (at, _) in _recent.items() if now - at >= fresh_seconds]:
                del _recent[stale]
            for mailbox, items in answers.items():
                _recent[(connection.connection_id, mailbox, window.start, window.end)] = (
                    now, items,
                )  # fmt: skip
    return answers[calendar.mailbox], requests


def _ask(
    scope: CalendarScope,
    connection: Connection,
    calendar: MappedCalendar,
    mailboxes: list[str],
    window: Window,
) -> tuple[dict[str, Items], int]:
    """getSchedule over `window` for `mailboxes`: items per mailbox Graph could answer for."""
    answers: dict[str, Items] = {m: [] for m in mailboxes}
    failed: set[str] = set()
    requests = 0
    for chunk in _chunks(window):
        body = {
            "schedules": mailboxes,
            "startTime": {"dateTime": utc_z(chunk.start).removesuffix("Z"), "timeZone": "UTC"},
            "endTime": {"dateTime": utc_z(chunk.end).removesuffix("Z"), "timeZone": "UTC"},
        }
        answer = scope.request(
            "POST", schedule_path(connection, calendar), json_body=body,
            headers={"Prefer": PREFER}, mailbox=calendar.graph_mailbox,
            operation="sync.schedule", actor="sync", idempotent=True,
        ).json()  # fmt: skip
        requests += 1
        infos = answer.get("value") if isinstance(answer, dict) else None
        by_id = {
            str(i.get("scheduleId", "")).lower(): i for i in infos or [] if isinstance(i, dict)
        }
        for mailbox in mailboxes:
            info = by_id.get(mailbox)
            if info is None or info.get("error"):
                failed.add(mailbox)
                continue
            answers[mailbox].extend(_items_of(info))
    return {m: items for m, items in answers.items() if m not in failed}, requests


def _items_of(info: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One scheduleInformation's busy intervals as event-shaped items (status, start, end)."""
    for entry in info.get("scheduleItems") or []:
        if not isinstance(entry, dict):
            continue
        start, end = entry.get("start"), entry.get("end")
        status = str(entry.get("status") or "busy")
        if not isinstance(start, dict) or not isinstance(end, dict):
            continue
        # Only these four keys: a subject or location in the answer stops here.
        yield {"id": item_id(start, end, status), "start": start, "end": end, "showAs": status}
