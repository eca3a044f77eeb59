"""Pure parts of issue 19: Places shapes → places (bookable and why), the import's selection and
labels, the free/busy items and the provenance they give busy blocks, the calendar path of a
mailbox's default calendar, and the go-live check's permissions for free/busy connections."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.checks.steps import missing_permissions, write_permitted
from shared.core.connection import FREE_BUSY, Connection
from shared.graph.guard import DEFAULT_CALENDAR, MappedCalendar
from shared.mapping.places import _ancestors, _new_id, _place, _selected
from shared.sync import freebusy
from shared.sync.plan import Target, Window, plan

T0 = datetime(2026, 12, 7, tzinfo=UTC)


def desk(place_id: str, mode: str, mailbox: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": place_id, "displayName": place_id.upper(), "parentId": "s1",
        "mode": {"@odata.type": f"#microsoft.graph.{mode}PlaceMode", **extra},
        "mailboxDetails": {"emailAddress": mailbox} if mailbox else None,
    }  # fmt: skip


def test_places_say_whether_and_why_they_are_bookable() -> None:
    reservable = _place("desk", desk("d1", "reservable", "Desk1@X.example"))
    assert reservable is not None and reservable.bookable == (True, None)
    assert reservable.mailbox == "desk1@x.example" and reservable.capacity == 1
    drop_in = _place("desk", desk("d2", "dropIn", "d2@x.example"))
    assert drop_in is not None and drop_in.bookable == (True, None)
    assigned = _place("desk", desk("d3", "assigned", "d3@x.example", assignedUserId="u"))
    assert assigned is not None and assigned.bookable == (False, "assigned")
    broken = _place("desk", desk("d4", "unavailable", reason="Broken chair"))
    assert broken is not None and broken.bookable == (False, "unavailable")
    assert broken.mode_reason == "Broken chair"
    no_mailbox = _place("desk", desk("d5", "reservable"))
    assert no_mailbox is not None and no_mailbox.bookable == (False, "no_mailbox")
    pod = _place("workspace", {"id": "w", "displayName": "Pod", "emailAddress": "pod@x.example",
                               "capacity": 6, "mode": {"@odata.type":
                               "#microsoft.graph.reservablePlaceMode"}})  # fmt: skip
    assert pod is not None and pod.bookable == (True, None) and pod.capacity == 6
    floor = _place("floor", {"id": "f", "displayName": "Floor 3", "parentId": "b"})
    assert floor is not None and floor.bookable == (False, None)
    assert _place("desk", {"displayName": "no id"}) is None


def test_selection_takes_descendants_skips_what_cannot_be_booked_and_names_the_rest() -> None:
    raw = [
        ("building", {"id": "b", "displayName": "HQ"}),
        ("floor", {"id": "f", "displayName": "Floor 3", "parentId": "b"}),
        ("section", {"id": "s1", "displayName": "3 North", "parentId": "f"}),
        ("desk", desk("d1", "reservable", "d1@x.example")),
        ("desk", desk("d3", "assigned", "d3@x.example")),
    ]
    places = [p for p in (_place(kind, r) for kind, r in raw) if p is not None]
    rejected: list[dict[str, Any]] = []
    chosen, skipped = _selected(places, ["f"], rejected)
    assert [p.id for p in chosen] == ["d1"] and rejected == []
    assert skipped == [{"placeId": "d3", "name": "D3", "reason": "assigned"}]
    chosen, _ = _selected(places, ["d3", "ghost"], rejected)
    assert chosen == []
    assert sorted(r["placeId"] for r in rejected) == ["d3", "ghost"]
    by_id = {p.id: p for p in places}
    assert _ancestors(by_id["d1"], by_id) == {"section": "3 North", "floor": "Floor 3",
                                              "building": "HQ"}  # fmt: skip
    assert _new_id("desk.3N+01@x.example") == "desk.3N-01"


def test_free_busy_items_become_blocks_without_subject_marked_free_busy() -> None:
    start = {"dateTime": "2026-12-07T10:00:00.0000000", "timeZone": "UTC"}
    end = {"dateTime": "2026-12-07T11:00:00.0000000", "timeZone": "UTC"}
    item = {"id": freebusy.item_id(start, end, "busy"), "start": start, "end": end,
            "showAs": "busy"}  # fmt: skip
    assert freebusy.item_id(start, end, "busy") != freebusy.item_id(start, end, "tentative")
    target = Target("b1", "r1", "room@x.example", DEFAULT_CALENDAR)
    result = plan(
        [item], [], Window(T0, T0.replace(day=8)), target, attribute=freebusy.nobody,
        store_subjects=True, full=True, detail=freebusy.FREE_BUSY_DETAIL,
    )  # fmt: skip
    (put,) = result.actions
    block = put.block  # type: ignore[union-attr]
    assert block.subject is None and block.company_id is None
    assert block.attribution == {"kind": "unattributed", "companyId": None, "userEmail": None,
                                 "reason": "free_busy_only", "detail": "freeBusy"}  # fmt: skip


def test_a_default_calendar_mapping_addresses_the_mailbox_calendar() -> None:
    mapped = MappedCalendar("b1", "r1", "t", DEFAULT_CALENDAR, "room@x.example", "room@x.example",
                            is_default=True)  # fmt: skip
    assert mapped.calendar_path("/events") == "/users/room@x.example/calendar/events"
    named = MappedCalendar("b1", "r1", "t", "AAMk=", "room@x.example", "room@x.example")
    assert named.calendar_path("/events") == "/users/room@x.example/calendars/AAMk%3D/events"


def test_free_busy_connections_never_write_and_need_only_schedule_permissions() -> None:
    base = Connection("b1", "c1", "delegated", "connected", "t", access=FREE_BUSY,
                      scopes=frozenset({"User.Read", "Calendars.ReadBasic"}))  # fmt: skip
    assert write_permitted(base) is False and missing_permissions(base) == []
    assert write_permitted(Connection("b1", "c1", "delegated", "connected", "t",
                                      scopes=frozenset({"Calendars.ReadWrite"})))  # fmt: skip
    app = Connection("b1", "c1", "application", "connected", "t", access=FREE_BUSY,
                     scopes=frozenset({"Place.Read.All"}))  # fmt: skip
    assert missing_permissions(app) == ["Calendars.ReadBasic.All or Calendars.Read"]
