"""The mapped-calendar guard: every path classification (table-driven), every decision, and the
refusal happening in the Graph access layer before any token or network I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from shared.core.connection import Account, Connection
from shared.graph.client import BatchItem, GraphClient, RetryPolicy
from shared.graph.guard import (
    DEFAULT_CALENDAR,
    CalendarGuard,
    CalendarNotMapped,
    GraphPathNotAllowed,
    Kind,
    MappedCalendar,
    Who,
    classify,
    decide,
)

D, C, MD, EV, W, S, B, SUB, R = (
    Kind.DISCOVERY,
    Kind.CALENDAR,
    Kind.MAILBOX_DEFAULT,
    Kind.EVENT,
    Kind.WATCH,
    Kind.SCHEDULE,
    Kind.BATCH,
    Kind.SUBSCRIPTION,
    Kind.REFUSED,
)

CLASSIFIED: list[tuple[str, str, Any, Kind, str | None, str | None]] = [
    # discovery: listings and calendar metadata, no event data
    ("GET", "/me", None, D, "me", None),
    ("GET", "/me?$select=id,mail", None, D, "me", None),
    ("GET", "/me/calendars", None, D, "me", None),
    ("GET", "/users/Room@X.com/calendars", None, D, "room@x.com", None),
    ("GET", "users/room%40x.com/calendars?$top=100", None, D, "room@x.com", None),
    ("GET", "/users/room@x.com/calendars/AAMk=", None, D, "room@x.com", None),
    ("GET", "/users/room@x.com/calendar", None, D, "room@x.com", None),
    ("GET", "/me/calendar", None, D, "me", None),
    ("GET", "/places/microsoft.graph.room", None, D, None, None),
    ("GET", "/places/hq@x.com/microsoft.graph.roomlist/rooms", None, D, None, None),
    # subscriptions: managing them reads no calendar
    ("GET", "/subscriptions", None, SUB, None, None),
    ("GET", "/subscriptions/s1", None, SUB, None, None),
    ("PATCH", "/subscriptions/s1", {"expirationDateTime": "x"}, SUB, None, None),
    ("DELETE", "/subscriptions/s1", None, SUB, None, None),
    ("POST", "/subscriptions/s1/reauthorize", None, SUB, None, None),
    ("POST", "/subscriptions", {"resource": "/users/room@x.com/events"}, W, "room@x.com", None),
    ("POST", "/subscriptions", {"resource": "users/Room@x.com/events"}, W, "room@x.com", None),
    ("POST", "/subscriptions", {"resource": "me/events"}, W, "me", None),
    # one calendar
    ("GET", "/users/r@x/calendars/c1/events", None, C, "r@x", "c1"),
    ("POST", "/users/r@x/calendars/c1/events", {"subject": "s"}, C, "r@x", "c1"),
    ("GET", "/users/r@x/calendars/c1/events/e1", None, C, "r@x", "c1"),
    ("PATCH", "/users/r@x/calendars/c1/events/e1", {}, C, "r@x", "c1"),
    ("DELETE", "/users/r@x/calendars/c1/events/e1", None, C, "r@x", "c1"),
    ("GET", "/users/r@x/calendars/c1/calendarView?startDateTime=a", None, C, "r@x", "c1"),
    ("GET", "/users/r@x/calendars/c1/calendarView/delta?$deltatoken=t", None, C, "r@x", "c1"),
    ("GET", "/me/calendars/c1/events", None, C, "me", "c1"),
    ("GET", "/users/r@x/calendar/events", None, C, "r@x", DEFAULT_CALENDAR),
    ("POST", "/users/r@x/calendar/events", {}, C, "r@x", DEFAULT_CALENDAR),
    ("GET", "/users/r@x/calendar/calendarView", None, C, "r@x", DEFAULT_CALENDAR),
    ("GET", "/me/calendar/calendarView/delta", None, C, "me", DEFAULT_CALENDAR),
    # mailbox-wide collections (the default calendar, or all of them)
    ("GET", "/users/r@x/events", None, MD, "r@x", None),
    ("POST", "/users/r@x/events", {"subject": "s"}, MD, "r@x", None),
    ("GET", "/users/r@x/events/delta", None, MD, "r@x", None),
    ("GET", "/users/r@x/calendarView?startDateTime=a&endDateTime=b", None, MD, "r@x", None),
    ("GET", "/users/r@x/calendarView/delta", None, MD, "r@x", None),
    ("GET", "/me/events", None, MD, "me", None),
    # one event by id (mailbox-wide ids)
    ("GET", "/users/r@x/events/e1", None, EV, "r@x", None),
    ("PATCH", "/users/r@x/events/e1", {}, EV, "r@x", None),
    ("DELETE", "/users/r@x/events/e1", None, EV, "r@x", None),
    ("POST", "/users/r@x/events/e1/cancel", {}, EV, "r@x", None),
    ("POST", "/users/r@x/events/e1/decline", {}, EV, "r@x", None),
    ("GET", "/users/r@x/events/e1/instances", None, EV, "r@x", None),
    ("GET", "/me/events/e1", None, EV, "me", None),
    # free/busy
    ("POST", "/users/r@x/calendar/getSchedule", {"schedules": ["A@x"]}, S, "r@x", None),
    ("POST", "/me/calendar/getSchedule", {"schedules": []}, S, "me", None),
    # never
    ("GET", "/users/r@x", None, R, "r@x", None),
    ("GET", "/users/r@x/messages", None, R, "r@x", None),
    ("GET", "/users/r@x/mailFolders/inbox", None, R, "r@x", None),
    ("GET", "/me/calendarGroups", None, R, "me", None),
    ("POST", "/users/r@x/calendars", {"name": "n"}, R, "r@x", None),
    ("PATCH", "/users/r@x/calendars/c1", {}, R, "r@x", None),
    ("DELETE", "/users/r@x/calendars/c1", None, R, "r@x", None),
    ("PATCH", "/users/r@x/calendar", {}, R, "r@x", None),
    ("GET", "/users/r@x/calendars/c1/calendarPermissions", None, R, "r@x", None),
    ("GET", "/users/r@x/calendar/getSchedule", None, R, "r@x", None),
    ("POST", "/me/findMeetingTimes", {}, R, "me", None),
    ("GET", "/groups", None, R, None, None),
    ("GET", "/users", None, R, None, None),
    ("GET", "", None, R, None, None),
    ("GET", "/users/r@x/../../groups", None, R, None, None),
    ("POST", "/places/microsoft.graph.room", {}, R, None, None),
    ("POST", "/subscriptions", {"resource": "/users/r@x/messages"}, R, None, None),
    ("POST", "/subscriptions", {"resource": "/users/r@x/calendars/c1/events"}, R, None, None),
    ("POST", "/subscriptions", {"resource": "/users/r@x/events/delta"}, R, None, None),
    ("POST", "/subscriptions", {}, R, None, None),
    ("PUT", "/subscriptions/s1/x", None, R, None, None),
    ("GET", "https://evil.example/v1.0/users/r@x/calendars/c1/events", None, R, None, None),
    ("GET", "//evil.example/v1.0/me", None, R, None, None),
    ("POST", "/$batch", {"requests": "nope"}, R, None, None),
]


@pytest.mark.parametrize(("method", "path", "body", "kind", "mailbox", "calendar"), CLASSIFIED)
def test_every_path_is_classified(
    method: str, path: str, body: Any, kind: Kind, mailbox: str | None, calendar: str | None
) -> None:
    target = classify(method, path, body)
    assert target.kind is kind, target
    if kind is not R:
        assert target.mailbox == mailbox
        assert target.calendar_id == calendar
    else:
        assert target.why


def test_a_batch_is_classified_item_by_item_and_cannot_nest() -> None:
    batch = classify(
        "POST",
        "/$batch",
        {
            "requests": [
                {"id": "1", "method": "GET", "url": "/users/r@x/calendar"},
                {"id": "2", "method": "GET", "url": "/users/r@x/calendars/c1/events"},
            ]
        },
    )
    assert batch.kind is B
    assert [p.kind for p in batch.parts] == [D, C]
    nested = {"requests": [{"id": "1", "method": "POST", "url": "/$batch", "body": {}}]}
    assert classify("POST", "/$batch", nested).kind is R
    assert classify("GET", "/$batch").kind is R


def test_schedules_are_read_from_the_body_lower_cased() -> None:
    target = classify("POST", "/me/calendar/getSchedule", {"schedules": ["Room@X.com", "b@x"]})
    assert target.schedules == ("room@x.com", "b@x")


# ---------------------------------------------------------------- decisions

ROOM = MappedCalendar("b1", "r-room", "t1", "room-cal", "room@x", "room@x", is_default=True)
SECONDARY = MappedCalendar("b1", "r-own", "t1", "own-cal", "me@x", "me@x", is_default=False)
SHARED = MappedCalendar("b1", "r-shared", "t1", "copy-cal", "olivia@x", "me@x")
MAPPED = {c.resource_id: c for c in (ROOM, SECONDARY, SHARED)}
APP = Who("b1", "t1", frozenset())
DELEGATED = Who("b1", "t1", frozenset({"me@x", "me@upn.x"}))
OTHER_BUILDING = MappedCalendar("b2", "r-room", "t1", "room-cal", "room@x", "room@x", True)
OTHER_TENANT = Who("b1", "t2", frozenset())

DECIDED: list[tuple[str, str, Any, Who, tuple[MappedCalendar, ...], type[Exception] | None]] = [
    # discovery and subscription management need no mapping
    ("GET", "/users/unmapped@x/calendars", None, APP, (), None),
    ("GET", "/users/unmapped@x/calendar", None, APP, (), None),
    ("DELETE", "/subscriptions/s1", None, APP, (), None),
    # nothing declared: refused
    ("GET", "/users/room@x/calendars/room-cal/events", None, APP, (), CalendarNotMapped),
    ("GET", "/users/room@x/events/e1", None, APP, (), CalendarNotMapped),
    # the declared calendar, through its id, its default-calendar path, or the mailbox
    ("GET", "/users/room@x/calendars/room-cal/events", None, APP, (ROOM,), None),
    ("POST", "/users/room@x/calendar/events", {}, APP, (ROOM,), None),
    ("GET", "/users/room@x/calendarView/delta", None, APP, (ROOM,), None),
    ("GET", "/users/ROOM@X/events", None, APP, (ROOM,), None),
    ("DELETE", "/users/room@x/events/e1", None, APP, (ROOM,), None),
    ("POST", "/subscriptions", {"resource": "/users/room@x/events"}, APP, (ROOM,), None),
    # another calendar or mailbox than the declared one
    ("GET", "/users/room@x/calendars/other/events", None, APP, (ROOM,), CalendarNotMapped),
    ("GET", "/users/other@x/calendars/room-cal/events", None, APP, (ROOM,), CalendarNotMapped),
    ("GET", "/users/other@x/events/e1", None, APP, (ROOM,), CalendarNotMapped),
    ("POST", "/subscriptions", {"resource": "/users/other@x/events"}, APP, (ROOM,),
     CalendarNotMapped),
    # a secondary calendar never opens the mailbox's default calendar or all its events
    ("GET", "/me/calendars/own-cal/events", None, DELEGATED, (SECONDARY,), None),
    ("GET", "/users/me@upn.x/calendars/own-cal/calendarView", None, DELEGATED, (SECONDARY,),
     None),  # the account's UPN and mail are one mailbox
    ("GET", "/users/me@upn.x/calendars/own-cal/calendarView", None, APP, (SECONDARY,),
     CalendarNotMapped),
    ("GET", "/me/calendar/events", None, DELEGATED, (SECONDARY,), CalendarNotMapped),
    ("GET", "/me/calendarView", None, DELEGATED, (SECONDARY,), CalendarNotMapped),
    ("GET", "/me/events", None, DELEGATED, (SECONDARY,), CalendarNotMapped),
    ("PATCH", "/me/events/e1", {}, DELEGATED, (SECONDARY,), None),
    # a shared calendar is reached through the account's copy, not the owner's mailbox
    ("POST", "/me/calendars/copy-cal/events", {}, DELEGATED, (SHARED,), None),
    ("GET", "/users/olivia@x/calendar/events", None, DELEGATED, (SHARED,), CalendarNotMapped),
    ("GET", "/users/olivia@x/calendars/copy-cal/events", None, DELEGATED, (SHARED,),
     CalendarNotMapped),
    # "me" means nothing to an application connection
    ("GET", "/me/calendars/own-cal/events", None, APP, (SECONDARY,), CalendarNotMapped),
    # a declared calendar must be mapped, identically, in the caller's building and tenant
    ("GET", "/users/room@x/calendar/events", None, APP, (OTHER_BUILDING,), CalendarNotMapped),
    ("GET", "/users/room@x/calendar/events", None, OTHER_TENANT, (ROOM,), CalendarNotMapped),
    ("GET", "/users/room@x/calendar/events", None, APP,
     (MappedCalendar("b1", "r-room", "t1", "room-cal", "room@x", "room@x", False),), None),
    ("GET", "/users/room@x/calendars/c2/events", None, APP,
     (MappedCalendar("b1", "r-room", "t1", "c2", "room@x", "room@x", True),), CalendarNotMapped),
    ("GET", "/users/x@x/calendars/c9/events", None, APP,
     (MappedCalendar("b1", "r-new", "t1", "c9", "x@x", "x@x"),), CalendarNotMapped),
    # getSchedule: every schedule must be a declared mapping's mailbox
    ("POST", "/users/room@x/calendar/getSchedule", {"schedules": ["room@x"]}, APP, (ROOM,), None),
    ("POST", "/me/calendar/getSchedule", {"schedules": ["room@x", "olivia@x"]}, DELEGATED,
     (ROOM, SHARED), None),
    ("POST", "/me/calendar/getSchedule", {"schedules": ["room@x", "ceo@x"]}, DELEGATED,
     (ROOM,), CalendarNotMapped),
    ("POST", "/users/ceo@x/calendar/getSchedule", {"schedules": ["room@x"]}, APP, (ROOM,),
     CalendarNotMapped),
    ("POST", "/me/calendar/getSchedule", {"schedules": ["room@x"]}, DELEGATED, (),
     CalendarNotMapped),
    # $batch: one unmapped item refuses the whole request
    ("POST", "/$batch", {"requests": [
        {"id": "1", "method": "GET", "url": "/users/room@x/calendar/events"},
        {"id": "2", "method": "GET", "url": "/users/room@x/calendar"},
    ]}, APP, (ROOM,), None),
    ("POST", "/$batch", {"requests": [
        {"id": "1", "method": "GET", "url": "/users/room@x/calendar/events"},
        {"id": "2", "method": "GET", "url": "/users/other@x/calendar/events"},
    ]}, APP, (ROOM,), CalendarNotMapped),
    # never allowed, whatever is declared
    ("GET", "/users/room@x/messages", None, APP, (ROOM,), GraphPathNotAllowed),
    ("GET", "https://evil.example/v1.0/users/room@x/calendar/events", None, APP, (ROOM,),
     GraphPathNotAllowed),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "who", "declared", "refused"), DECIDED)
def test_decisions(
    method: str,
    path: str,
    body: Any,
    who: Who,
    declared: tuple[MappedCalendar, ...],
    refused: type[Exception] | None,
) -> None:
    outcome = decide(classify(method, path, body), who, MAPPED, declared)
    if refused is None:
        assert outcome is None
    else:
        assert isinstance(outcome, refused), outcome
        assert outcome.status == 403


def test_refusals_carry_their_reason_codes() -> None:
    not_mapped = decide(classify("GET", "/users/r@x/events/e"), APP, MAPPED, ())
    assert not_mapped is not None and not_mapped.reason == "calendar_not_mapped"
    assert isinstance(not_mapped, CalendarNotMapped) and not_mapped.mailbox == "r@x"
    never = decide(classify("GET", "/users/r@x/messages"), APP, MAPPED, ())
    assert never is not None and never.reason == "graph_path_not_allowed"


def test_a_mapped_calendar_from_a_resource_entity() -> None:
    entity = {
        "PartitionKey": "b1", "RowKey": "r1", "calendarId": "c1", "mailbox": "Olivia@X",
        "graphMailbox": "Me@X", "tenantId": "t1", "calendarIsDefault": False,
    }  # fmt: skip
    calendar = MappedCalendar.from_entity(entity)
    assert calendar == MappedCalendar("b1", "r1", "t1", "c1", "olivia@x", "me@x", False)
    assert calendar.calendar_path("/events") == "/users/me@x/calendars/c1/events"
    assert calendar.mailbox_path("/events/e 1") == "/users/me@x/events/e 1"
    assert MappedCalendar.from_entity({**entity, "calendarId": None}) is None
    assert MappedCalendar.from_entity({**entity, "paid": True}) is None
    odd = MappedCalendar("b", "r", "t", "AA/k+=", "a+b@x", "a+b@x")
    assert classify("GET", odd.calendar_path("/events")).calendar_id == "AA/k+="


# ---------------------------------------------------------------- the guard in the Graph layer


class Tokens:
    def __init__(self) -> None:
        self.fetched = 0

    def token(self, connection: Connection) -> str:
        self.fetched += 1
        return "t"

    def invalidate(self, connection: Connection) -> None:
        return None


class Loader:
    def __init__(self, mapped: Mapping[str, MappedCalendar]) -> None:
        self.mapped = dict(mapped)
        self.loads = 0

    def __call__(self, building_id: str) -> Mapping[str, MappedCalendar]:
        self.loads += 1
        return {k: v for k, v in self.mapped.items() if v.building_id == building_id}


APP_CONN = Connection("b1", "c1", "application", "connected", "t1")
DELEGATED_CONN = Connection(
    "b1", "c2", "delegated", "connected", "t1", account=Account("id", "Me", "me@x", "me@upn.x")
)


def guarded(
    loader: Loader, clock: list[float] | None = None
) -> tuple[GraphClient, list[httpx.Request], Tokens]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.path.endswith("$batch"):
            import json

            ids = [r["id"] for r in json.loads(request.content)["requests"]]
            return httpx.Response(
                200, json={"responses": [{"id": i, "status": 200, "body": {}} for i in ids]}
            )
        return httpx.Response(200, json={"value": []})

    tick = clock if clock is not None else [0.0]
    guard = CalendarGuard(loader, ttl=15, clock=lambda: tick[0])
    tokens = Tokens()
    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = GraphClient(http, "https://graph.test/v1.0", tokens, None, RetryPolicy(), guard=guard)
    return client, sent, tokens


REFUSED_REQUESTS: list[tuple[str, str, Any]] = [
    (m, p, b) for m, p, b, who, declared, refused in DECIDED if refused is not None
    and who is APP and not declared
] + [
    ("GET", "/users/room@x/calendar/events", None),
    ("POST", "/users/room@x/calendar/getSchedule", {"schedules": ["room@x"]}),
    ("POST", "/subscriptions", {"resource": "/users/room@x/events"}),
    ("GET", "https://graph.test/v1.0/users/room@x/calendarView/delta?$deltatoken=x", None),
    ("GET", "/users/room@x/messages", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body"), REFUSED_REQUESTS)
def test_undeclared_calendar_requests_are_refused_before_any_io(
    method: str, path: str, body: Any
) -> None:
    client, sent, tokens = guarded(Loader(MAPPED))
    with pytest.raises((CalendarNotMapped, GraphPathNotAllowed)):
        client.request(APP_CONN, method, path, json_body=body)
    assert sent == [] and tokens.fetched == 0


def test_the_calendar_scope_reaches_its_calendar_and_nothing_else() -> None:
    client, sent, tokens = guarded(Loader(MAPPED))
    scope = client.for_calendar(APP_CONN, ROOM)
    scope.get_json(ROOM.calendar_path("/calendarView/delta"))
    scope.request("POST", ROOM.mailbox_path("/calendar/events"), json_body={"subject": "s"})
    scope.request("GET", "https://graph.test/v1.0/users/room@x/calendarView/delta?$skiptoken=1")
    assert len(sent) == 3 and tokens.fetched == 3
    with pytest.raises(CalendarNotMapped):
        scope.request("GET", SHARED.calendar_path("/events"))
    with pytest.raises(CalendarNotMapped):
        client.for_calendar(APP_CONN, OTHER_BUILDING).request("GET", ROOM.mailbox_path("/events"))
    assert len(sent) == 3


def test_a_batch_with_one_unmapped_item_sends_nothing() -> None:
    client, sent, _ = guarded(Loader(MAPPED))
    items = [
        BatchItem("1", "GET", ROOM.calendar_path("/events")),
        BatchItem("2", "GET", "/users/ceo@x/calendar/events"),
    ]
    with pytest.raises(CalendarNotMapped):
        client.for_calendar(APP_CONN, ROOM).batch(items)
    with pytest.raises(CalendarNotMapped):
        client.batch(APP_CONN, items[:1])  # nothing declared
    assert sent == []
    results = client.for_calendar(APP_CONN, ROOM).batch(items[:1])
    assert results["1"].ok and len(sent) == 1
    discovery = client.batch(APP_CONN, [BatchItem("1", "GET", "/users/ceo@x/calendar")])
    assert discovery["1"].ok and len(sent) == 2  # probing a default calendar is discovery


def test_delegated_me_paths_resolve_to_the_account() -> None:
    client, sent, _ = guarded(Loader(MAPPED))
    client.for_calendar(DELEGATED_CONN, SHARED).request(
        "POST", "/me/calendars/copy-cal/events", json_body={}
    )
    assert len(sent) == 1
    with pytest.raises(CalendarNotMapped):
        client.for_calendar(DELEGATED_CONN, SECONDARY).request("GET", "/me/calendarView")


def test_a_new_mapping_is_seen_at_once_and_an_unmapping_after_invalidation_or_ttl() -> None:
    loader = Loader({})
    clock = [0.0]
    client, sent, _ = guarded(loader, clock)
    scope = client.for_calendar(APP_CONN, ROOM)
    with pytest.raises(CalendarNotMapped):
        scope.get_json(ROOM.calendar_path("/events"))
    loads = loader.loads
    loader.mapped = dict(MAPPED)  # mapped by another process: a refusal re-reads first
    scope.get_json(ROOM.calendar_path("/events"))
    assert loader.loads == loads + 1
    scope.get_json(ROOM.calendar_path("/events"))
    assert loader.loads == loads + 1  # cached while allowed
    loader.mapped = {}  # unmapped by another process: still allowed within the TTL ...
    scope.get_json(ROOM.calendar_path("/events"))
    clock[0] = 16.0  # ... but not after it
    with pytest.raises(CalendarNotMapped):
        scope.get_json(ROOM.calendar_path("/events"))
    loader.mapped = dict(MAPPED)
    scope.get_json(ROOM.calendar_path("/events"))
    loader.mapped = {}
    client.mappings_changed("b1")  # unmapped in this process: refused at once
    with pytest.raises(CalendarNotMapped):
        scope.get_json(ROOM.calendar_path("/events"))
    assert len(sent) == 4


def test_a_client_without_a_guard_is_the_transport_only() -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
    )
    client = GraphClient(http, "https://graph.test/v1.0", Tokens(), None)
    client.request(APP_CONN, "GET", "/users/r@x/events")
    assert len(sent) == 1 and client.guard is None
