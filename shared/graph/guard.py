"""The mapped-calendar guard: which Microsoft Graph requests may leave this app, decided before any I/O.

BookingBridge may only read or write calendars an admin mapped to a resource (PRODUCT.md: "only
mapped calendars are touched, even if the account can see more"). Every request of the Graph access
layer (`shared.graph.client.GraphClient.request`, and so `batch`, `$batch` items and nextLinks/deltaLinks)
is classified here from its method, path and body, and refused (`CalendarNotMapped` or
`GraphPathNotAllowed`, both 403 `Forbidden`) before a token is fetched or a byte is sent. The
caller says which mapped calendar(s) it serves (`GraphClient.for_calendar(connection, calendar)`);
the guard checks the request against those, and checks that each is *still* mapped in the
connection's building and tenant (the resources table, cached briefly in-process).

How every path is classified (`{m}` = `me` or `users/{mailbox}`; matching is case-insensitive;
the query string plays no part):

| request | kind | allowed when |
|---|---|---|
| `GET /me`, `GET /{m}/calendars`, `GET /{m}/calendars/{id}`, `GET /{m}/calendar`, `GET /places/...` | discovery | always (metadata, no events) |
| `GET /subscriptions`, `GET/PATCH/DELETE /subscriptions/{id}`, `POST /subscriptions/{id}/reauthorize` | subscription | always (renewing and deleting must work after an unmap) |
| `POST /subscriptions` with `resource` `{m}/events` | watch | a declared mapping has Graph mailbox `{m}` |
| `/{m}/calendars/{id}/events...`, `/{m}/calendars/{id}/calendarView...` (incl. delta) | calendar | a declared mapping has Graph mailbox `{m}` and calendar `{id}` |
| `/{m}/calendar/events...`, `/{m}/calendar/calendarView...` | calendar | as above, and the mapping is the mailbox's default calendar |
| `GET/POST /{m}/events`, `/{m}/events/delta`, `/{m}/calendarView...` | mailbox_default | a declared mapping of `{m}` that is its default calendar (Graph serves these from the default calendar, or from all of them, so any other mapping would read unmapped calendars) |
| `/{m}/events/{id}...` (get, update, delete, cancel, decline, instances, ...) | event | a declared mapping has Graph mailbox `{m}` (event ids are mailbox-wide: the caller holds ids of events it found in or wrote to its mapped calendar) |
| `POST /{m}/calendar/getSchedule` | schedule | every `schedules` address is the mailbox of a declared mapping, and `{m}` is a declared mapping's mailbox or the connected account |
| `POST /$batch` | batch | every inner request is allowed on its own (a nested `$batch` is not) |
| anything else (mail, files, directory, calendar creation or changes, `/users/{m}`, another host) | refused | never: `GraphPathNotAllowed` |

`me`, the account's mail and its UPN all stand for the connected (delegated) account's mailbox.
A mapping's *Graph mailbox* is the mailbox in its Graph paths: the room or user in application
mode, the connected account for a calendar shared with it (the sharee's copy, GRAPH.md §3.2); its
*mailbox* is whose calendar it really is (the owner's address).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from shared.core.errors import Forbidden

if TYPE_CHECKING:
    from shared.core.connection import Connection

# How long a building's set of mapped calendars is trusted without re-reading the resources table.
# A map or unmap in this process invalidates it at once; a refusal re-reads before it refuses, so a
# calendar mapped by another process is usable immediately, and one unmapped by another process
# stays reachable here for at most this long.
MAPPED_TTL_SECONDS = 15.0
DEFAULT_CALENDAR = "<default>"  # `calendar_id` of a `/{m}/calendar/...` path


class Kind(StrEnum):
    DISCOVERY = "discovery"
    SUBSCRIPTION = "subscription"
    WATCH = "watch"
    CALENDAR = "calendar"
    MAILBOX_DEFAULT = "mailbox_default"
    EVENT = "event"
    SCHEDULE = "schedule"
    BATCH = "batch"
    REFUSED = "refused"


NEEDS_MAPPING = frozenset(
    {Kind.WATCH, Kind.CALENDAR, Kind.MAILBOX_DEFAULT, Kind.EVENT, Kind.SCHEDULE, Kind.BATCH}
)


class CalendarNotMapped(Forbidden):
    """A Graph request for a calendar (or mailbox) that is not mapped for the caller (403)."""

    def __init__(self, detail: str, *, mailbox: str | None = None, calendar: str | None = None):
        super().__init__(detail, reason="calendar_not_mapped")
        self.mailbox = mailbox
        self.calendar = calendar


class GraphPathNotAllowed(Forbidden):
    """A Graph request this app never makes (mail, files, directory, another host) (403)."""

    def __init__(self, detail: str):
        super().__init__(detail, reason="graph_path_not_allowed")


@dataclass(frozen=True)
class MappedCalendar:
    """One resource's mapped calendar, as the guard and every calendar-scoped caller see it.

    Read it from a resource entity with `MappedCalendar.from_entity` (the resources table holds
    `calendarId`, `mailbox`, `graphMailbox`, `calendarIsDefault`, `tenantId`); pass it to
    `GraphClient.for_calendar` to read or write that calendar.
    """

    building_id: str
    resource_id: str
    tenant_id: str
    calendar_id: str
    mailbox: str  # whose calendar it is (owner's SMTP address), lower-cased
    graph_mailbox: str  # the mailbox of its Graph paths (/users/{graph_mailbox}/...), lower-cased
    is_default: bool = False  # the default calendar of graph_mailbox (then /calendar/... works)

    @staticmethod
    def from_entity(entity: Mapping[str, Any]) -> MappedCalendar | None:
        """From a `resources` entity; None when the resource has no (complete) mapping."""
        calendar_id = entity.get("calendarId")
        mailbox = entity.get("mailbox")
        if not calendar_id or not mailbox or entity.get("paid"):
            return None
        return MappedCalendar(
            building_id=str(entity["PartitionKey"]),
            resource_id=str(entity["RowKey"]),
            tenant_id=str(entity.get("tenantId") or ""),
            calendar_id=str(calendar_id),
            mailbox=str(mailbox).lower(),
            graph_mailbox=str(entity.get("graphMailbox") or mailbox).lower(),
            is_default=bool(entity.get("calendarIsDefault", False)),
        )

    def calendar_path(self, suffix: str = "") -> str:
        """`/users/{graph_mailbox}/calendars/{calendar_id}` + suffix (e.g. `/events`); for a
        mapping of the mailbox's default calendar by `DEFAULT_CALENDAR` (a free/busy connection
        maps mailboxes it cannot read calendars of, issue 19) `/users/{graph_mailbox}/calendar`."""
        if self.calendar_id == DEFAULT_CALENDAR:
            return f"/users/{quote(self.graph_mailbox, safe='@')}/calendar{suffix}"
        return (
            f"/users/{quote(self.graph_mailbox, safe='@')}/calendars/"
            f"{quote(self.calendar_id, safe='')}{suffix}"
        )

    def mailbox_path(self, suffix: str = "") -> str:
        """`/users/{graph_mailbox}` + suffix (e.g. `/events/{id}` for an event by id)."""
        return f"/users/{quote(self.graph_mailbox, safe='@')}{suffix}"

    def same_mapping(self, other: MappedCalendar) -> bool:
        return (
            self.building_id == other.building_id
            and self.resource_id == other.resource_id
            and self.tenant_id == other.tenant_id
            and self.calendar_id == other.calendar_id
            and self.mailbox == other.mailbox
            and self.graph_mailbox == other.graph_mailbox
        )


@dataclass(frozen=True)
class Target:
    """What one Graph request addresses."""

    kind: Kind
    mailbox: str | None = None  # as addressed, lower-cased; "me" for /me
    calendar_id: str | None = None  # CALENDAR: the id, or DEFAULT_CALENDAR
    schedules: tuple[str, ...] = ()  # SCHEDULE: the addresses asked for
    parts: tuple[Target, ...] = ()  # BATCH: the inner requests
    why: str = ""  # REFUSED: for the log and the error detail


@dataclass(frozen=True)
class Who:
    """The calling connection, as far as the guard cares."""

    building_id: str
    tenant_id: str
    account: frozenset[str]  # the delegated account's mail and UPN, lower-cased (empty: app)

    @staticmethod
    def of(connection: Connection) -> Who:
        account = connection.account
        names = (account.mail, account.user_principal_name) if account else ()
        return Who(
            connection.building_id,
            connection.tenant_id,
            frozenset(n.lower() for n in names if n),
        )


# ---------------------------------------------------------------- classification (pure)


def _segments(path: str) -> list[str] | None:
    """Path segments, decoded; None for what is not a relative Graph path (another host, ...)."""
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return None
    segments = [unquote(s) for s in parts.path.strip("/").split("/")]
    if any(s in ("", ".", "..") for s in segments):
        return None
    return segments


def classify(method: str, path: str, body: Any = None) -> Target:
    """What a request addresses (the table in the module docstring). Pure; never raises."""
    method = method.upper()
    segs = _segments(path)
    if not segs:
        return Target(Kind.REFUSED, why="not a Microsoft Graph path of this service")
    head = segs[0].lower()
    if head == "$batch" and len(segs) == 1 and method == "POST":
        return _batch(body)
    if head == "places":
        if method == "GET":
            return Target(Kind.DISCOVERY)
        return Target(Kind.REFUSED, why="places are read only")
    if head == "subscriptions":
        return _subscriptions(method, segs[1:], body)
    if head == "me":
        return _mailbox(method, "me", segs[1:], body)
    if head == "users" and len(segs) >= 2:
        return _mailbox(method, segs[1].lower(), segs[2:], body)
    return Target(Kind.REFUSED, why=f"/{segs[0]} is not a calendar path")


def _batch(body: Any) -> Target:
    requests = body.get("requests") if isinstance(body, Mapping) else None
    if not isinstance(requests, list):
        return Target(Kind.REFUSED, why="a $batch without requests")
    parts = []
    for item in requests:
        if not isinstance(item, Mapping):
            return Target(Kind.REFUSED, why="a $batch item is not an object")
        url = str(item.get("url", ""))
        if (_segments(url) or [""])[0].lower() == "$batch":
            return Target(Kind.REFUSED, why="a $batch inside a $batch")
        inner = classify(str(item.get("method", "")), url, item.get("body"))
        if inner.kind is Kind.REFUSED:
            return Target(Kind.REFUSED, mailbox=inner.mailbox, why=f"in a $batch: {inner.why}")
        parts.append(inner)
    return Target(Kind.BATCH, parts=tuple(parts))


def _subscriptions(method: str, rest: list[str], body: Any) -> Target:
    low = [s.lower() for s in rest]
    if not rest and method == "GET":
        return Target(Kind.SUBSCRIPTION)
    if not rest and method == "POST":
        resource = body.get("resource") if isinstance(body, Mapping) else None
        if not isinstance(resource, str):
            return Target(Kind.REFUSED, why="a subscription without a resource")
        watched = classify("GET", resource)
        segments = _segments(resource) or [""]
        if watched.kind is Kind.MAILBOX_DEFAULT and segments[-1].lower() == "events":
            return Target(Kind.WATCH, mailbox=watched.mailbox)
        return Target(Kind.REFUSED, why="subscriptions are only made on a mailbox's events")
    if len(rest) == 1 and method in ("GET", "PATCH", "DELETE"):
        return Target(Kind.SUBSCRIPTION)
    if len(rest) == 2 and low[1] == "reauthorize" and method == "POST":
        return Target(Kind.SUBSCRIPTION)
    return Target(Kind.REFUSED, why="not a subscription operation")


def _mailbox(method: str, mailbox: str, rest: list[str], body: Any) -> Target:
    low = [s.lower() for s in rest]
    n = len(rest)
    if n == 0:
        if mailbox == "me" and method == "GET":
            return Target(Kind.DISCOVERY, mailbox=mailbox)
        return Target(Kind.REFUSED, mailbox=mailbox, why="user objects are not read here")
    if low[0] == "calendars":
        if n <= 2:  # the list, or one calendar's metadata
            if method == "GET":
                return Target(Kind.DISCOVERY, mailbox=mailbox)
            return Target(
                Kind.REFUSED, mailbox=mailbox, why="calendars are never created or changed"
            )
        if low[2] in ("events", "calendarview"):
            return Target(Kind.CALENDAR, mailbox=mailbox, calendar_id=rest[1])
        return Target(Kind.REFUSED, mailbox=mailbox, why=f"calendar {low[2]} is not used")
    if low[0] == "calendar":
        if n == 1:
            if method == "GET":
                return Target(Kind.DISCOVERY, mailbox=mailbox)
            return Target(Kind.REFUSED, mailbox=mailbox, why="calendars are never changed")
        if low[1] == "getschedule" and n == 2 and method == "POST":
            return Target(Kind.SCHEDULE, mailbox=mailbox, schedules=_schedules(body))
        if low[1] in ("events", "calendarview"):
            return Target(Kind.CALENDAR, mailbox=mailbox, calendar_id=DEFAULT_CALENDAR)
        return Target(Kind.REFUSED, mailbox=mailbox, why=f"calendar {low[1]} is not used")
    if low[0] == "calendarview":
        return Target(Kind.MAILBOX_DEFAULT, mailbox=mailbox)
    if low[0] == "events":
        if n == 1 or low[1] == "delta":
            return Target(Kind.MAILBOX_DEFAULT, mailbox=mailbox)
        return Target(Kind.EVENT, mailbox=mailbox)
    return Target(Kind.REFUSED, mailbox=mailbox, why=f"{rest[0]} is not a calendar path")


def _schedules(body: Any) -> tuple[str, ...]:
    schedules = body.get("schedules") if isinstance(body, Mapping) else None
    if not isinstance(schedules, list):
        return ()
    return tuple(str(s).lower() for s in schedules)


# ---------------------------------------------------------------- decision (pure)


def decide(
    target: Target,
    who: Who,
    mapped: Mapping[str, MappedCalendar],
    declared: Sequence[MappedCalendar],
) -> Forbidden | None:
    """None when the request may go, else the error to raise (not raised here).

    `mapped` is the building's mapped calendars by resource id (the truth); `declared` what the
    caller says it serves. A declared calendar counts only while it is still mapped, identically,
    in the caller's building and tenant.
    """
    if target.kind is Kind.REFUSED:
        return GraphPathNotAllowed(f"This request is not allowed: {target.why}")
    if target.kind not in NEEDS_MAPPING:
        return None
    valid: list[MappedCalendar] = []
    for calendar in declared:
        current = mapped.get(calendar.resource_id)
        if (
            current is None
            or calendar.building_id != who.building_id
            or current.tenant_id != who.tenant_id
            or not current.same_mapping(calendar)
        ):
            return CalendarNotMapped(
                f"Resource {calendar.resource_id} is not mapped to that calendar",
                mailbox=calendar.mailbox,
                calendar=calendar.calendar_id,
            )
        valid.append(current)  # the stored one: its is_default is the truth
    if target.kind is Kind.BATCH:
        for part in target.parts:
            refusal = decide(part, who, mapped, valid)
            if refusal is not None:
                return refusal
        return None
    if _allowed(target, who, valid):
        return None
    where = target.mailbox or "-"
    if not valid:
        detail = f"No mapped calendar was declared for this request to {where}"
    else:
        detail = f"The request to {where} is outside the declared mapped calendars"
    return CalendarNotMapped(detail, mailbox=target.mailbox, calendar=target.calendar_id)


def _addresses(mailbox: str | None, who: Who) -> frozenset[str]:
    """The mailbox addresses a path segment stands for (`me` = the connected account)."""
    if mailbox is None:
        return frozenset()
    if mailbox == "me" or mailbox in who.account:  # the account's mail and UPN: one mailbox
        return who.account
    return frozenset({mailbox})


def _allowed(target: Target, who: Who, valid: Iterable[MappedCalendar]) -> bool:
    addressed = _addresses(target.mailbox, who)
    calendars = list(valid)
    on_mailbox = [c for c in calendars if c.graph_mailbox in addressed]
    if target.kind is Kind.CALENDAR:
        return any(
            c.calendar_id == target.calendar_id
            or (target.calendar_id == DEFAULT_CALENDAR and c.is_default)
            for c in on_mailbox
        )
    if target.kind is Kind.MAILBOX_DEFAULT:
        return any(c.is_default for c in on_mailbox)
    if target.kind in (Kind.EVENT, Kind.WATCH):
        return bool(on_mailbox)
    if target.kind is Kind.SCHEDULE:
        owners = {c.mailbox for c in calendars} | {c.graph_mailbox for c in calendars}
        path_ok = bool(addressed & (owners | who.account))
        return path_ok and bool(calendars) and all(s in owners for s in target.schedules)
    return False


# ---------------------------------------------------------------- the guard (cache + decision)


class CalendarGuard:
    """Decides every Graph request of a `GraphClient` (installed by `shared.wiring.graph_client`).

    `load(building_id)` returns the building's mapped calendars by resource id (the resources
    table); results are cached for `ttl` seconds per building. A request that would be refused is
    decided again on freshly loaded mappings first, so only a stale *allow* is possible (bounded by
    `ttl`, and cleared in this process by `invalidate` on map/unmap).
    """

    def __init__(
        self,
        load: Callable[[str], Mapping[str, MappedCalendar]],
        *,
        ttl: float = MAPPED_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, Mapping[str, MappedCalendar]]] = {}
        self._lock = threading.Lock()

    def mapped(self, building_id: str, *, fresh: bool = False) -> Mapping[str, MappedCalendar]:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(building_id)
        if hit is not None and not fresh and now - hit[0] < self._ttl:
            return hit[1]
        loaded = dict(self._load(building_id))
        with self._lock:
            self._cache[building_id] = (now, loaded)
        return loaded

    def invalidate(self, building_id: str | None = None) -> None:
        with self._lock:
            if building_id is None:
                self._cache.clear()
            else:
                self._cache.pop(building_id, None)

    def check(
        self,
        connection: Connection,
        method: str,
        path: str,
        body: Any = None,
        declared: Sequence[MappedCalendar] = (),
    ) -> Target:
        """The request's target when allowed; raises `CalendarNotMapped` / `GraphPathNotAllowed`."""
        target = classify(method, path, body)
        if target.kind is Kind.REFUSED:
            raise GraphPathNotAllowed(f"This request is not allowed: {target.why}")
        if target.kind not in NEEDS_MAPPING:
            return target
        who = Who.of(connection)
        refusal = decide(target, who, self.mapped(who.building_id), declared)
        if refusal is not None:
            refusal = decide(target, who, self.mapped(who.building_id, fresh=True), declared)
        if refusal is not None:
            raise refusal
        return target
