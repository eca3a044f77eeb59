"""The Microsoft Graph access layer every feature uses (raw HTTP over the one httpx client).

For each request: a token for the connection (delegated: the token provider; application: client
credentials), `Prefer: IdType="ImmutableId"` (ids survive moves, GRAPH.md pitfall 9), a
`client-request-id`, at most `MAILBOX_CONCURRENCY` requests in flight per (connection, mailbox)
in this process (Outlook's limit is 4 per app and mailbox), bounded retries (`RetryPolicy`), one
token refresh on 401 InvalidAuthenticationToken, and an audit record (shared/graph/audit.py).

The mapped-calendar guard (shared/graph/guard.py): a client built with a `CalendarGuard` (the
process's client, `shared.wiring.graph_client()`, always is) classifies every request — single requests, each
`$batch` item, nextLinks and deltaLinks — and refuses anything that reads or writes a calendar that
is not mapped in the connection's building, before any token or network I/O; the refusal is audited
with result `refused`. Discovery (calendar listings and metadata, places, managing subscriptions)
goes through the plain methods (`request`, `get_json`, `batch`). Everything that touches events,
calendarView, delta, getSchedule or creates a subscription goes through a calendar scope:

    scope = graph.for_calendar(connection, MappedCalendar.from_entity(resource_entity))
    scope.request("POST", scope.calendar.calendar_path("/events"), json_body=event)
    scope.get_json(scope.calendar.calendar_path("/calendarView/delta"), params=window)
    scope.request("GET", delta_link)               # links are checked like any path
    graph.for_calendars(connection, rooms).request(
        "POST", rooms[0].mailbox_path("/calendar/getSchedule"), json_body=body)

Retries (GRAPH.md §9): 429 always (the request was not executed) after `Retry-After`; 503/504 and
read timeouts only when the request is idempotent (GET/PUT/PATCH/DELETE, or a POST carrying a
`transactionId`); connect errors always (nothing was sent). Every wait is jittered and bounded by
`max_attempts` and `max_total_wait`: nothing is retried forever, the caller gets `GraphError`.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from shared.core.errors import Forbidden, GraphError, GraphFailure, IdentityError
from shared.graph.audit import AuditEntry, AuditLog
from shared.graph.guard import CalendarGuard, MappedCalendar

if TYPE_CHECKING:
    from shared.core.connection import Connection

logger = logging.getLogger(__name__)

MAILBOX_CONCURRENCY = 4
BATCH_LIMIT = 20
RETRY_STATUSES = frozenset({429, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
IMMUTABLE_ID = 'IdType="ImmutableId"'
_USERS_PATH = re.compile(r"^/?users/([^/?]+)", re.IGNORECASE)
_CALENDAR_PATH = re.compile(r"/calendars/([^/?]+)", re.IGNORECASE)


# ---------------------------------------------------------------- retry policy (pure)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # first try included
    base_delay: float = 0.5
    max_delay: float = 30.0  # one backoff step (without Retry-After)
    max_retry_after: float = 60.0  # a longer Retry-After is handed to the caller (queue retry)
    max_total_wait: float = 90.0
    jitter: float = 0.2  # fraction added on top of Retry-After

    def delay(
        self,
        attempt: int,
        retry_after: float | None,
        waited: float,
        rand: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up.

        `attempt` counts tries so far (1 after the first). With `Retry-After`, wait at least that
        (plus up to `jitter` of it, so a herd does not return in lockstep; `Retry-After: 0` still
        backs off a little); else full-jitter exponential backoff.
        """
        if attempt >= self.max_attempts:
            return None
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        if retry_after is not None and retry_after > 0:
            if retry_after > self.max_retry_after:
                return None
            wait = retry_after * (1 + self.jitter * rand())
        elif retry_after is not None:  # "Retry-After: 0" has been seen: back off a little anyway
            wait = self.base_delay * (0.5 + rand() / 2)
        else:
            wait = backoff * (0.5 + rand() / 2)
        if waited + wait > self.max_total_wait:
            return None
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (Graph sends integers; HTTP dates are accepted too)."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_idempotent(method: str, body: Any) -> bool:
    """Safe to resend after an unknown outcome? POST only with a transactionId (GRAPH.md §4.3)."""
    method = method.upper()
    if method in IDEMPOTENT_METHODS:
        return True
    return method == "POST" and isinstance(body, dict) and bool(body.get("transactionId"))


def mailbox_of(path: str) -> str:
    """The mailbox a request touches: `/users/{x}/...` → x, `/me/...` → `me`, else `-`."""
    m = _USERS_PATH.match(path.lstrip("/"))
    if m:
        return m.group(1).lower()
    if path.lstrip("/").lower().startswith("me"):
        return "me"
    return "-"


def chunks(items: Sequence[BatchItem], size: int = BATCH_LIMIT) -> list[list[BatchItem]]:
    """Split batch items into `$batch` requests of ≤ `size`, in order, keeping every dependsOn
    chain in one request (dependsOn cannot point into another batch)."""
    index = {item.id: n for n, item in enumerate(items)}
    root = list(range(len(items)))

    def find(n: int) -> int:
        while root[n] != n:
            root[n] = root[root[n]]
            n = root[n]
        return n

    for n, item in enumerate(items):
        for dep in item.depends_on:
            if dep not in index or index[dep] >= n:
                raise ValueError(f"batch item {item.id} depends on an unknown or later item")
            root[find(n)] = find(index[dep])
    chains: dict[int, list[BatchItem]] = {}
    for n, item in enumerate(items):
        chains.setdefault(find(n), []).append(item)
    groups: list[list[BatchItem]] = []
    for chain in chains.values():  # in order of each chain's first item
        if len(chain) > size:
            raise ValueError(f"a dependsOn chain of {len(chain)} exceeds {size} requests")
        if not groups or len(groups[-1]) + len(chain) > size:
            groups.append([])
        groups[-1].extend(chain)
    return groups


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class BatchItem:
    id: str
    method: str
    url: str  # relative to the version: `/users/{id}/events`
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchResult:
    id: str
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def failure(self) -> GraphFailure:
        error = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        inner = error.get("innerError") or error.get("innererror") or {}
        return GraphFailure(
            status=self.status,
            code=str(error.get("code") or "unknown"),
            request_id=self.headers.get("request-id") or inner.get("request-id"),
            retry_after=parse_retry_after(self.headers.get("Retry-After")),
        )


class TokenSource(Protocol):
    def token(self, connection: Connection) -> str: ...

    def invalidate(self, connection: Connection) -> None: ...


class _StaticToken:
    """A token source for one access token (the connect flow reads /me before a connection exists)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self, connection: Connection) -> str:
        return self._token

    def invalidate(self, connection: Connection) -> None:
        return None


# ---------------------------------------------------------------- the client


class GraphClient:
    """Graph requests for connections (module docstring).

    `guard`: the mapped-calendar guard. `shared.wiring.graph_client()` always installs one; only tests of the
    transport itself (retries, headers, batching over a mock transport) build a client without it.
    """

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        tokens: TokenSource,
        audit: AuditLog | None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        guard: CalendarGuard | None = None,
    ) -> None:
        self.guard = guard
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.audit = audit
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.now = now
        self._slots: dict[tuple[str, str], threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()

    def _slot(self, connection: Connection, mailbox: str) -> threading.BoundedSemaphore:
        key = (connection.connection_id, mailbox)
        with self._slots_lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = threading.BoundedSemaphore(MAILBOX_CONCURRENCY)
            return slot

    # --- calendar scopes (the only way to reach events, views, delta, getSchedule)
    def for_calendar(self, connection: Connection, calendar: MappedCalendar) -> CalendarScope:
        """Requests on behalf of one mapped calendar (see `CalendarScope`)."""
        return CalendarScope(self, connection, (calendar,))

    def for_calendars(
        self, connection: Connection, calendars: Sequence[MappedCalendar]
    ) -> CalendarScope:
        """Requests on behalf of several mapped calendars (getSchedule over rooms, one $batch)."""
        return CalendarScope(self, connection, tuple(calendars))

    def mappings_changed(self, building_id: str) -> None:
        """A calendar of the building was mapped or unmapped: forget the guard's cached set."""
        if self.guard is not None:
            self.guard.invalidate(building_id)

    # --- single requests
    def request(
        self,
        connection: Connection,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        mailbox: str | None = None,
        operation: str | None = None,
        actor: str = "system",
        idempotent: bool | None = None,
        tokens: TokenSource | None = None,
        calendars: Sequence[MappedCalendar] = (),
    ) -> httpx.Response:
        """One Graph request with everything in the module docstring; a 2xx response or GraphError.

        `path` is relative to the Graph version (`/users/{id}/events`) or an absolute nextLink /
        deltaLink (followed verbatim, GRAPH.md pitfall 13). `calendars`: the mapped calendars the
        request serves (use `for_calendar`); the guard refuses a calendar request without them
        (`CalendarNotMapped`, 403) before anything is sent.
        """
        method = method.upper()
        source = tokens or self.tokens
        relative = _relative(path, self.base_url)
        box = (mailbox or mailbox_of(relative)).lower()
        if self.guard is not None:
            try:
                self.guard.check(connection, method, relative, json_body, calendars)
            except Forbidden as refused:
                self._refused(connection, actor, operation, method, path, box, refused)
                raise
        safe = is_idempotent(method, json_body) if idempotent is None else idempotent
        url = path if path.startswith("https://") else f"{self.base_url}/{path.lstrip('/')}"
        client_request_id = str(uuid.uuid4())
        attempt = 0
        waited = 0.0
        refreshed = False
        response: httpx.Response | None = None
        failure: GraphFailure | None = None
        try:
            while True:
                attempt += 1
                failure = None
                retry_after: float | None = None
                try:
                    with self._slot(connection, box):
                        response = self.http.request(
                            method,
                            url,
                            params=params,
                            json=json_body,
                            headers=self._headers(connection, source, client_request_id, headers),
                        )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure = GraphFailure(0, type(exc).__name__)
                    response = None
                except httpx.TimeoutException as exc:  # read/write/pool: outcome unknown
                    failure = GraphFailure(0, type(exc).__name__)
                    response = None
                    if not safe:
                        raise GraphError(failure) from exc
                except httpx.HTTPError as exc:
                    failure = GraphFailure(0, type(exc).__name__)
                    raise GraphError(failure) from exc
                if response is not None:
                    if response.is_success:
                        return response
                    failure = failure_of(response)
                    if (
                        response.status_code == 401
                        and failure.code == "InvalidAuthenticationToken"
                        and not refreshed
                    ):
                        refreshed = True  # expired or revoked early: one fresh token, once
                        source.invalidate(connection)
                        continue
                    if response.status_code not in RETRY_STATUSES:
                        raise GraphError(failure)
                    if response.status_code != 429 and not safe:
                        raise GraphError(failure)
                    retry_after = failure.retry_after
                assert failure is not None  # every path above that gets here set it
                wait = self.policy.delay(attempt, retry_after, waited)
                if wait is None:
                    raise GraphError(failure)
                logger.info(
                    "graph %s %s: %s %s, retry %d in %.2fs",
                    method, box, failure.status, failure.code, attempt, wait,
                )  # fmt: skip
                waited += wait
                self.sleep(wait)
        finally:
            self._audit(
                connection, actor, operation or _operation(method, path, self.base_url), box,
                path, response, failure, client_request_id,
            )  # fmt: skip

    def get_json(self, connection: Connection, path: str, **kwargs: Any) -> Any:
        return self.request(connection, "GET", path, **kwargs).json()

    def read_me_with(self, connection: Connection, access_token: str) -> dict[str, Any]:
        """`GET /me` with a given access token (the connect flow, before tokens are stored)."""
        me: dict[str, Any] = self.request(
            connection,
            "GET",
            "/me",
            params={"$select": "id,displayName,mail,userPrincipalName"},
            operation="me.read",
            tokens=_StaticToken(access_token),
        ).json()
        return me

    def _headers(
        self,
        connection: Connection,
        source: TokenSource,
        client_request_id: str,
        extra: dict[str, str] | None,
    ) -> dict[str, str]:
        try:
            token = source.token(connection)
        except IdentityError:
            raise
        prefer = [IMMUTABLE_ID]
        headers = {"Authorization": f"Bearer {token}", "client-request-id": client_request_id}
        for name, value in (extra or {}).items():
            if name.lower() == "prefer":
                prefer.extend(v.strip() for v in value.split(",") if v.strip())
            else:
                headers[name] = value
        headers["Prefer"] = ", ".join(dict.fromkeys(prefer))
        return headers

    def _refused(
        self,
        connection: Connection,
        actor: str,
        operation: str | None,
        method: str,
        path: str,
        mailbox: str,
        refused: Forbidden,
    ) -> None:
        logger.warning(
            "graph %s refused for building %s (%s): %s",
            _operation(method, path, self.base_url), connection.building_id, mailbox,
            refused.reason,
        )  # fmt: skip
        if self.audit is None:
            return
        cal = _CALENDAR_PATH.search(path.split("?", 1)[0])
        self.audit.record(
            AuditEntry(
                time=self.now(),
                actor=actor,
                building=connection.building_id,
                connection=connection.connection_id,
                operation=operation or _operation(method, path, self.base_url),
                mailbox=mailbox,
                calendar=cal.group(1) if cal else None,
                result="refused",
                status=403,
                request_id=None,
            )
        )

    def _audit(
        self,
        connection: Connection,
        actor: str,
        operation: str,
        mailbox: str,
        path: str,
        response: httpx.Response | None,
        failure: GraphFailure | None,
        client_request_id: str,
    ) -> None:
        if self.audit is None:
            return
        status = response.status_code if response is not None else 0
        ok = response is not None and response.is_success
        request_id = (response.headers.get("request-id") if response is not None else None) or (
            failure.request_id if failure else None
        )
        cal = _CALENDAR_PATH.search(path)
        self.audit.record(
            AuditEntry(
                time=self.now(),
                actor=actor,
                building=connection.building_id,
                connection=connection.connection_id,
                operation=operation,
                mailbox=mailbox,
                calendar=cal.group(1) if cal else None,
                result="ok" if ok else f"{status} {failure.code if failure else 'error'}",
                status=status,
                request_id=request_id,
                client_request_id=client_request_id,
            )
        )

    # --- $batch
    def batch(
        self,
        connection: Connection,
        items: Sequence[BatchItem],
        *,
        mailbox: str | None = None,
        actor: str = "system",
        calendars: Sequence[MappedCalendar] = (),
    ) -> dict[str, BatchResult]:
        """Run items in `$batch` requests of ≤ 20; per-item results by id (any order from Graph).

        Items answered 429 are retried (in a later batch) after their own Retry-After, within the
        policy's bounds; a dependant whose dependency failed comes back 424 from Graph. Every item
        passes the guard (a refused item refuses its whole `$batch` request, before it is sent).
        """
        results: dict[str, BatchResult] = {}
        for group in chunks(items):
            pending = list(group)
            attempt = 0
            waited = 0.0
            while pending:
                attempt += 1
                answered = self._one_batch(connection, pending, mailbox, actor, calendars)
                retry: list[BatchItem] = []
                longest: float | None = None
                for item in pending:
                    result = answered[item.id]
                    if result.status == 429:
                        retry.append(item)
                        ra = result.failure().retry_after
                        longest = ra if longest is None or (ra or 0) > longest else longest
                    results[item.id] = result
                if not retry:
                    break
                wait = self.policy.delay(attempt, longest, waited)
                if wait is None:
                    break  # their 429 results stay in `results`: the caller sees them
                waited += wait
                self.sleep(wait)
                # A retried item's dependants must go along (they got 424 because of it).
                again = {i.id for i in retry}
                for item in pending:
                    if item.id not in again and any(d in again for d in item.depends_on):
                        retry.append(item)
                        again.add(item.id)
                pending = [i for i in pending if i.id in again]
                pending = [
                    replace_deps(i, tuple(d for d in i.depends_on if d in again)) for i in pending
                ]
        return results

    def _one_batch(
        self,
        connection: Connection,
        items: Iterable[BatchItem],
        mailbox: str | None,
        actor: str,
        calendars: Sequence[MappedCalendar] = (),
    ) -> dict[str, BatchResult]:
        body = {"requests": [_batch_request(i) for i in items]}
        response = self.request(
            connection, "POST", "/$batch", json_body=body, mailbox=mailbox or "-",
            operation="batch", actor=actor, idempotent=all(
                is_idempotent(i.method, i.body) for i in items
            ), calendars=calendars,
        )  # fmt: skip
        out: dict[str, BatchResult] = {}
        for r in response.json().get("responses", []):
            headers = {str(k): str(v) for k, v in (r.get("headers") or {}).items()}
            out[str(r["id"])] = BatchResult(str(r["id"]), int(r["status"]), headers, r.get("body"))
        for item in items:
            if item.id not in out:  # Graph must answer every id; treat a gap as a server error
                out[item.id] = BatchResult(item.id, 500, {}, {"error": {"code": "missingResponse"}})
        return out


@dataclass(frozen=True)
class CalendarScope:
    """A `GraphClient` bound to one connection and the mapped calendar(s) a caller serves.

    The only way to read or write events, calendarView, delta and getSchedule, or to create a
    subscription: every request (and every `$batch` item, nextLink and deltaLink) must address
    one of `calendars` (table in shared/graph/guard.py), and each of them must still be mapped
    in the connection's building, else `CalendarNotMapped` (403) is raised before any I/O.
    Otherwise exactly `GraphClient.request` / `batch` (retries, throttling, audit).

    Build paths from the calendar so they match what the guard expects:
    `calendar.calendar_path("/events")`, `calendar.calendar_path("/calendarView/delta")`,
    `calendar.mailbox_path("/events/{event id}")`, `calendar.mailbox_path("/events")` (for a
    subscription's `resource`, without the leading slash if you prefer; both are accepted).
    """

    graph: GraphClient
    connection: Connection
    calendars: tuple[MappedCalendar, ...]

    @property
    def calendar(self) -> MappedCalendar:
        """The (first) calendar of the scope."""
        return self.calendars[0]

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """`GraphClient.request` for this scope's calendars (same keyword arguments)."""
        return self.graph.request(self.connection, method, path, calendars=self.calendars, **kwargs)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def batch(
        self, items: Sequence[BatchItem], *, mailbox: str | None = None, actor: str = "system"
    ) -> dict[str, BatchResult]:
        """`GraphClient.batch` for this scope's calendars."""
        return self.graph.batch(
            self.connection, items, mailbox=mailbox, actor=actor, calendars=self.calendars
        )


def replace_deps(item: BatchItem, depends_on: tuple[str, ...]) -> BatchItem:
    return replace(item, depends_on=depends_on)


def _batch_request(item: BatchItem) -> dict[str, Any]:
    headers = {"Prefer": IMMUTABLE_ID, **item.headers}
    request: dict[str, Any] = {"id": item.id, "method": item.method.upper(), "url": item.url}
    if item.body is not None:
        headers.setdefault("Content-Type", "application/json")
        request["body"] = item.body
    request["headers"] = headers
    if item.depends_on:
        request["dependsOn"] = list(item.depends_on)
    return request


def failure_of(response: httpx.Response) -> GraphFailure:
    """Graph's error shape → GraphFailure (code from the body, request id from headers)."""
    code = f"http{response.status_code}"
    request_id = response.headers.get("request-id")
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or code)
        inner = error.get("innerError") or error.get("innererror") or {}
        request_id = request_id or inner.get("request-id")
    except (ValueError, AttributeError, json.JSONDecodeError):
        pass
    return GraphFailure(
        status=response.status_code,
        code=code,
        request_id=request_id,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _relative(path: str, base: str) -> str:
    return path[len(base) :] if path.startswith(base) else path


def _operation(method: str, path: str, base: str) -> str:
    """`GET /users/{id}/calendars/{id}/events` — ids folded so operations group well."""
    rel = _relative(path, base).split("?", 1)[0]
    segments = rel.strip("/").split("/")
    folded = []
    for i, seg in enumerate(segments):
        prev = segments[i - 1].lower() if i else ""
        folded.append("{id}" if prev in ("users", "calendars", "events", "subscriptions") else seg)
    return f"{method} /" + "/".join(folded)
