"""The pure sync plan (shared/sync/plan.py): every row of its rule table, replays, recurrence, own
bookings, baselines, and the Graph time parsing it relies on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.availability.busy import BusyBlock, transaction_id
from shared.core.times import TimeUnreadable, parse_graph_time
from shared.directory.attribution import Attribution, Company, User, attribute
from shared.sync.plan import (
    Plan,
    Put,
    Remove,
    Target,
    Window,
    outlook_block_id,
    plan,
    transaction_bookings,
)

T = Target("b1", "room-1", "room1@contoso.example", "CAL-1")
DAY = datetime(2026, 12, 1, tzinfo=UTC)
WINDOW = Window(DAY - timedelta(days=1), DAY + timedelta(days=60))
USERS = {"ann@contoso.example": User("ann@contoso.example", "Ann", "contoso")}
COMPANIES = [Company("contoso", "Contoso", ("contoso.example",))]


def who(email: str | None) -> Attribution:
    return attribute(email, users=USERS, companies=COMPANIES, default_user_email=None)


def graph_time(when: datetime) -> dict[str, str]:
    return {"dateTime": when.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def event(
    event_id: str,
    at: datetime = DAY + timedelta(hours=9),
    hours: float = 1,
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": event_id,
        "type": "singleInstance",
        "subject": f"Meeting {event_id}",
        "showAs": "busy",
        "isCancelled": False,
        "start": graph_time(at),
        "end": graph_time(at + timedelta(hours=hours)),
        "organizer": {"emailAddress": {"name": "Ann", "address": "ann@contoso.example"}},
    }
    item.update(extra)
    return item


def removed(event_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.event",
        "id": event_id,
        "@removed": {"reason": "deleted"},
    }


def stored_for(item: dict[str, Any], *, store_subjects: bool = False) -> BusyBlock:
    """What a previous round stored for `item` (by running the plan on it)."""
    put = run([item], [], store_subjects=store_subjects).actions[0]
    assert isinstance(put, Put)
    return put.block


def platform_block(
    booking: str, start: datetime, hours: float = 1, outlook_event_id: str | None = None
) -> BusyBlock:
    return BusyBlock(
        T.building_id, T.resource_id, booking, start, start + timedelta(hours=hours), "platform",
        booking_id=booking, outlook_event_id=outlook_event_id,
    )  # fmt: skip


def run(
    items: Sequence[dict[str, Any]],
    stored: Sequence[BusyBlock],
    *,
    full: bool = False,
    store_subjects: bool = False,
    window: Window = WINDOW,
    bookings: tuple[str, ...] = (),
    gone_series: tuple[str, ...] = (),
) -> Plan:
    return plan(
        items, stored, window, T, attribute=who, store_subjects=store_subjects, full=full,
        bookings=bookings, gone_series=gone_series,
    )  # fmt: skip


def kinds(result: Plan) -> list[tuple[str, str]]:
    return [
        ("put", a.event_id) if isinstance(a, Put) else ("remove", a.reason) for a in result.actions
    ]


# ---------------------------------------------------------------- created / updated / removed


def test_a_new_busy_event_becomes_an_outlook_block() -> None:
    result = run([event("E1")], [])
    assert kinds(result) == [("put", "E1")]
    block = result.actions[0].block
    assert block.block_id == outlook_block_id(T.mailbox, T.calendar_id, "E1")
    assert block.block_id.startswith("o-") and len(block.block_id) == 34
    assert (block.building_id, block.resource_id, block.source) == ("b1", "room-1", "outlook")
    assert block.start == DAY + timedelta(hours=9) and block.end == DAY + timedelta(hours=10)
    assert block.outlook_event_id == "E1" and block.show_as == "busy"
    assert block.booking_id is None


def test_block_ids_are_stable_and_distinct_per_calendar_and_event() -> None:
    a = outlook_block_id("m@x.example", "C1", "E1")
    assert a == outlook_block_id("m@x.example", "C1", "E1")
    assert len({a, outlook_block_id("m@x.example", "C2", "E1"),
                outlook_block_id("n@x.example", "C1", "E1"),
                outlook_block_id("m@x.example", "C1", "E2")}) == 4  # fmt: skip


def test_a_moved_event_is_put_again_with_its_new_times() -> None:
    before = stored_for(event("E1"))
    moved = event("E1", at=DAY + timedelta(days=2, hours=14), hours=2)
    result = run([moved], [before])
    assert kinds(result) == [("put", "E1")]
    block = result.actions[0].block
    assert block.block_id == before.block_id
    assert block.start == DAY + timedelta(days=2, hours=14)
    assert block.end - block.start == timedelta(hours=2)


def test_an_unchanged_replay_needs_no_write() -> None:
    item = event("E1")
    result = run([item, item], [stored_for(item)])
    assert result.actions == () and result.seen == 1


def test_a_show_as_change_is_written() -> None:
    before = stored_for(event("E1"))
    result = run([event("E1", showAs="tentative")], [before])
    assert kinds(result) == [("put", "E1")]
    assert result.actions[0].block.show_as == "tentative"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"isCancelled": True}, "cancelled"),
        ({"showAs": "free"}, "free"),
        ({"start": graph_time(DAY + timedelta(hours=9)), "end": graph_time(DAY + timedelta(hours=9))}, "empty"),
        ({"start": graph_time(DAY + timedelta(days=90)), "end": graph_time(DAY + timedelta(days=90, hours=1))}, "outside_window"),
    ],
)  # fmt: skip
def test_not_busy_any_more_removes_the_stored_block(change: dict[str, Any], reason: str) -> None:
    before = stored_for(event("E1"))
    result = run([event("E1", **change)], [before])
    assert kinds(result) == [("remove", reason)]
    assert result.actions[0].block == before


@pytest.mark.parametrize(
    "change", [{"isCancelled": True}, {"showAs": "free"}, {"start": graph_time(DAY - timedelta(days=9)), "end": graph_time(DAY - timedelta(days=8))}]
)  # fmt: skip
def test_not_busy_and_never_stored_is_nothing(change: dict[str, Any]) -> None:
    assert run([event("E1", **change)], []).actions == ()


@pytest.mark.parametrize("show_as", ["busy", "tentative", "oof", "workingElsewhere", "unknown"])
def test_every_status_but_free_blocks_the_resource(show_as: str) -> None:
    assert kinds(run([event("E1", showAs=show_as)], [])) == [("put", "E1")]


def test_removed_known_event_in_the_window_is_removed() -> None:
    before = stored_for(event("E1"))
    result = run([removed("E1")], [before])
    assert kinds(result) == [("remove", "removed")]


def test_removed_unknown_event_is_ignored() -> None:
    result = run([removed("E-unknown")], [stored_for(event("E1"))])
    assert result.actions == () and result.skipped == 1


def test_removed_event_stored_outside_the_window_is_kept() -> None:
    # Graph reports changes outside the window as @removed; a block we keep from an earlier
    # window (history) must not be deleted because of it.
    past = BusyBlock(
        T.building_id, T.resource_id, outlook_block_id(T.mailbox, T.calendar_id, "E1"),
        DAY - timedelta(days=5), DAY - timedelta(days=5) + timedelta(hours=1), "outlook",
        outlook_event_id="E1",
    )  # fmt: skip
    assert run([removed("E1")], [past]).actions == ()
    assert run([removed("E1")], [past], full=True).actions == ()


# ---------------------------------------------------------------- replays and duplicates


def test_the_last_word_about_an_id_wins() -> None:
    early = event("E1")
    late = event("E1", at=DAY + timedelta(hours=15))
    result = run([early, late], [])
    assert kinds(result) == [("put", "E1")]
    assert result.actions[0].block.start == DAY + timedelta(hours=15)
    # created then removed in the same round: nothing stored, nothing to write
    assert run([early, removed("E1")], []).actions == ()
    # removed then re-created (a replay order): the event stands
    assert kinds(run([removed("E1"), early], [])) == [("put", "E1")]


def test_replaying_a_whole_round_is_idempotent() -> None:
    items = [event("E1"), event("E2", at=DAY + timedelta(hours=12)), removed("E3")]
    first = run(items, [])
    stored = [a.block for a in first.actions if isinstance(a, Put)]
    assert run(items, stored).actions == ()
    assert run(items + items, stored).actions == ()


def test_items_without_an_id_are_ignored() -> None:
    assert run([{"subject": "no id"}, {"id": ""}], []).actions == ()


# ---------------------------------------------------------------- recurrence


def test_occurrences_are_blocks_and_the_series_master_is_not() -> None:
    master = event("S1", type="seriesMaster", recurrence={"pattern": {"type": "daily"}})
    occurrences = [
        event(f"S1-occ{i}", at=DAY + timedelta(days=i, hours=9), type="occurrence",
              seriesMasterId="S1")
        for i in range(3)
    ]  # fmt: skip
    exception = event("S1-occ3", at=DAY + timedelta(days=3, hours=16), type="exception",
                      seriesMasterId="S1")  # fmt: skip
    result = run([master, *occurrences, exception], [])
    assert kinds(result) == [("put", f"S1-occ{i}") for i in range(4)]
    assert result.skipped == 1
    assert len({a.block.block_id for a in result.actions}) == 4


def test_one_cancelled_occurrence_removes_only_its_block() -> None:
    occ = [event(f"S1-occ{i}", at=DAY + timedelta(days=i, hours=9), type="occurrence")
           for i in range(3)]  # fmt: skip
    stored = [stored_for(o) for o in occ]
    result = run([removed("S1-occ1")], stored)
    assert kinds(result) == [("remove", "removed")]
    assert result.actions[0].block == stored[1]


def test_a_deleted_series_removes_each_occurrence() -> None:
    occ = [event(f"S1-occ{i}", at=DAY + timedelta(days=i, hours=9), type="occurrence")
           for i in range(3)]  # fmt: skip
    stored = [stored_for(o) for o in occ]
    result = run([removed("S1"), *(removed(o["id"]) for o in occ)], stored)
    assert sorted(kinds(result)) == [("remove", "removed")] * 3


def _series(master: str = "S1") -> list[dict[str, Any]]:
    return [event(f"{master}-occ{i}", at=DAY + timedelta(days=i, hours=9), type="occurrence",
                  seriesMasterId=master) for i in range(3)]  # fmt: skip


def test_occurrence_blocks_remember_their_series_master() -> None:
    assert {stored_for(o).series_master_id for o in _series()} == {"S1"}
    assert stored_for(event("E1")).series_master_id is None


def test_a_deleted_series_named_only_by_its_master_removes_every_occurrence() -> None:
    stored = [stored_for(o) for o in _series()] + [stored_for(o) for o in _series("S2")]
    result = run([removed("S1")], stored, gone_series=("S1",))
    assert sorted(kinds(result)) == [("remove", "removed")] * 3
    assert {a.block.series_master_id for a in result.actions} == {"S1"}
    # Named by master and occurrences in one round: each block removed once.
    both = run([removed("S1"), *(removed(o["id"]) for o in _series())], stored, gone_series=("S1",))
    assert len(both.actions) == 3 and len({a.block.block_id for a in both.actions}) == 3


def test_a_master_removal_graph_did_not_confirm_keeps_the_occurrences() -> None:
    """`@removed` also means "changed outside the window": without Graph's word that the master
    is gone, the series' blocks in the window stay."""
    stored = [stored_for(o) for o in _series()]
    result = run([removed("S1")], stored)
    assert result.actions == () and result.skipped == 1


def test_a_cancelled_series_master_removes_every_occurrence() -> None:
    stored = [stored_for(o) for o in _series()]
    master = event("S1", type="seriesMaster", isCancelled=True)
    result = run([master], stored)
    assert sorted(kinds(result)) == [("remove", "cancelled")] * 3


# ---------------------------------------------------------------- own bookings


def test_our_event_by_transaction_id_is_never_imported() -> None:
    ours = platform_block("bk-1", DAY + timedelta(hours=9))
    item = event("E-ours", transactionId=transaction_id("bk-1"))
    result = run([item], [ours])
    assert result.actions == () and result.own == 1


def test_our_event_by_stored_event_id_is_never_imported() -> None:
    ours = platform_block("bk-1", DAY + timedelta(hours=9), outlook_event_id="E-ours")
    result = run([event("E-ours")], [ours])
    assert result.actions == () and result.own == 1


def test_a_transaction_id_naming_no_booking_of_this_resource_is_external() -> None:
    other_resource = BusyBlock(
        T.building_id,
        "room-2",
        "bk-9",
        DAY,
        DAY + timedelta(hours=1),
        "platform",
        booking_id="bk-9",
    )
    for txid in (transaction_id("bk-404"), transaction_id("bk-9"), "someone-else:bk-1"):
        result = run([event("E1", transactionId=txid)], [other_resource])
        assert kinds(result) == [("put", "E1")], txid


def test_a_booking_without_a_block_is_still_ours() -> None:
    # Being created (event written before the caller saw the block) or cancelled (block gone,
    # event deletion pending): the caller found the booking itself from the transactionId.
    item = event("E-ours", transactionId=transaction_id("bk-2"))
    assert transaction_bookings([item, event("E2"), removed("E3")]) == {"bk-2"}
    result = run([item], [], bookings=("bk-2",))
    assert result.actions == () and result.own == 1
    assert kinds(run([item], [])) == [("put", "E-ours")]  # without that knowledge: external


def test_an_own_event_imported_earlier_is_removed_once_recognised() -> None:
    imported = stored_for(event("E-ours"))
    ours = platform_block("bk-1", DAY + timedelta(hours=9), outlook_event_id="E-ours")
    result = run([event("E-ours")], [imported, ours])
    assert kinds(result) == [("remove", "own_booking")]
    # ... and a baseline does not also count it as "not in baseline"
    assert kinds(run([event("E-ours")], [imported, ours], full=True)) == [("remove", "own_booking")]


def test_platform_blocks_are_never_removed() -> None:
    ours = platform_block("bk-1", DAY + timedelta(hours=9), outlook_event_id="E-ours")
    assert run([removed("E-ours")], [ours]).actions == ()
    assert run([], [ours], full=True).actions == ()


# ---------------------------------------------------------------- baselines (full rounds)


def test_a_baseline_removes_what_graph_no_longer_has() -> None:
    keep = stored_for(event("E1"))
    gone = stored_for(event("E2", at=DAY + timedelta(hours=13)))
    result = run([event("E1")], [keep, gone], full=True)
    assert kinds(result) == [("remove", "not_in_baseline")]
    assert result.actions[0].block == gone
    # An incremental round never removes what it does not mention.
    assert run([event("E1")], [keep, gone]).actions == ()


def test_a_baseline_keeps_history_outside_the_window_and_unreadable_items() -> None:
    history = BusyBlock(
        T.building_id, T.resource_id, outlook_block_id(T.mailbox, T.calendar_id, "OLD"),
        DAY - timedelta(days=30), DAY - timedelta(days=30) + timedelta(hours=1), "outlook",
    )  # fmt: skip
    stored = stored_for(event("E1"))
    unreadable = event("E1")
    unreadable["start"] = {"dateTime": "not a time", "timeZone": "UTC"}
    result = run([unreadable], [history, stored], full=True)
    assert result.actions == () and result.skipped == 1


def test_blocks_of_other_resources_are_not_touched() -> None:
    other = BusyBlock(T.building_id, "room-2", "o-x", DAY, DAY + timedelta(hours=1), "outlook")
    assert run([], [other], full=True).actions == ()


# ---------------------------------------------------------------- attribution and subjects


def test_attribution_uses_the_organizer_email() -> None:
    block = run([event("E1")], []).actions[0].block
    assert block.attribution == {"kind": "user", "companyId": "contoso",
                                 "userEmail": "ann@contoso.example", "reason": "registered_user"}  # fmt: skip
    assert block.company_id == "contoso"
    stranger = event("E2", organizer={"emailAddress": {"address": "zed@fabrikam.example"}})
    block = run([stranger], []).actions[0].block
    assert block.attribution is not None
    assert (block.attribution["kind"], block.attribution["reason"]) == (
        "unattributed",
        "no_domain_match",
    )
    assert block.company_id is None
    nobody = event("E3", organizer=None)
    block = run([nobody], []).actions[0].block
    assert block.attribution is not None and block.attribution["reason"] == "missing_email"


def test_subjects_only_when_the_building_stores_them() -> None:
    assert run([event("E1")], []).actions[0].block.subject is None
    assert run([event("E1")], [], store_subjects=True).actions[0].block.subject == "Meeting E1"
    # turning the setting off drops stored subjects on the next round that sees the event
    with_subject = stored_for(event("E1"), store_subjects=True)
    result = run([event("E1")], [with_subject])
    assert kinds(result) == [("put", "E1")] and result.actions[0].block.subject is None


def test_an_attribution_change_is_written() -> None:
    before = stored_for(event("E1"))
    moved_org = event("E1", organizer={"emailAddress": {"address": "bob@contoso.example"}})
    result = run([moved_org], [before])
    assert kinds(result) == [("put", "E1")]
    assert result.actions[0].block.attribution["kind"] == "company"  # type: ignore[index]


# ---------------------------------------------------------------- times


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"dateTime": "2026-12-01T09:00:00.0000000", "timeZone": "UTC"}, datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ({"dateTime": "2026-12-01T09:00:00.1234567", "timeZone": "UTC"}, datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        ({"dateTime": "2026-12-01T09:00:00", "timeZone": "Europe/Amsterdam"}, datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ({"dateTime": "2026-07-01T09:00:00Z"}, datetime(2026, 7, 1, 9, tzinfo=UTC)),
        ({"dateTime": "2026-07-01T09:00:00+02:00", "timeZone": "UTC"}, datetime(2026, 7, 1, 7, tzinfo=UTC)),
        # Windows zone names (Graph sends both kinds) are read through CLDR, not refused.
        ({"dateTime": "2026-12-01T09:00:00", "timeZone": "W. Europe Standard Time"}, datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ({"dateTime": "2026-12-01T09:00:00", "timeZone": "Mars Standard Time"}, None),
        ({"dateTime": "yesterday", "timeZone": "UTC"}, None),
        ({"timeZone": "UTC"}, None),
        ("2026-12-01T09:00:00Z", None),
        (None, None),
    ],
)  # fmt: skip
def test_graph_times(value: Any, expected: datetime | None) -> None:
    if expected is None:
        with pytest.raises(TimeUnreadable):
            parse_graph_time(value)
    else:
        assert parse_graph_time(value) == expected


def test_window_overlap_is_half_open() -> None:
    w = Window(DAY, DAY + timedelta(days=1))
    assert w.overlaps(DAY - timedelta(hours=1), DAY + timedelta(minutes=1))
    assert not w.overlaps(DAY - timedelta(hours=1), DAY)
    assert not w.overlaps(DAY + timedelta(days=1), DAY + timedelta(days=2))


def test_removals_are_planned_with_the_stored_block() -> None:
    before = stored_for(event("E1"))
    action = run([removed("E1")], [before]).actions[0]
    assert isinstance(action, Remove) and action.block is before


# ---------------------------------------------------------------- the sync's pure helpers


def test_the_window_is_whole_utc_days_from_yesterday() -> None:
    from shared.sync.deltastate import current_window

    w = current_window(datetime(2026, 12, 1, 17, 45, tzinfo=UTC), 60)
    assert w == Window(datetime(2026, 11, 30, tzinfo=UTC), datetime(2027, 1, 30, tzinfo=UTC))
    # the same window all day long, a new one the next day (the daily slide)
    assert current_window(datetime(2026, 12, 1, 0, 0, tzinfo=UTC), 60) == w
    assert current_window(datetime(2026, 12, 2, 0, 0, tzinfo=UTC), 60).start == DAY


def _mapped(calendar: str = "CAL-1", mailbox: str = "room1@x.example") -> Any:
    from shared.graph.guard import MappedCalendar

    return MappedCalendar("b1", "room-1", "t1", calendar, mailbox, mailbox)


def test_when_a_new_baseline_is_needed() -> None:
    from shared.sync.deltastate import current_window, needs_baseline

    wanted = current_window(DAY, 60)
    state = {
        "deltaLink": "https://graph/delta?$deltatoken=x",
        "calendarId": "CAL-1",
        "mailbox": "room1@x.example",
        "graphMailbox": "room1@x.example",
        "windowStart": wanted.start,
        "windowEnd": wanted.end,
    }
    assert not needs_baseline(state, _mapped(), wanted)
    assert needs_baseline(None, _mapped(), wanted)
    assert needs_baseline({**state, "deltaLink": ""}, _mapped(), wanted)
    assert needs_baseline(state, _mapped(calendar="CAL-2"), wanted)  # re-mapped
    assert needs_baseline(state, _mapped(mailbox="other@x.example"), wanted)
    assert needs_baseline(state, _mapped(), current_window(DAY + timedelta(days=1), 60))  # slid
    assert needs_baseline(state, _mapped(), current_window(DAY, 90))  # window setting changed
    stored_as_text = {
        **state,
        "windowStart": wanted.start.isoformat(),
        "windowEnd": wanted.end.isoformat(),
    }
    assert not needs_baseline(stored_as_text, _mapped(), wanted)


def test_adaptive_poll_interval() -> None:
    from shared.sync.deps import SyncConfig
    from shared.sync.polling import next_poll_seconds

    config = SyncConfig(poll_min_seconds=30, poll_max_seconds=300)
    assert next_poll_seconds(None, False, config) == 30
    assert [next_poll_seconds(p, False, config) for p in (30, 60, 120, 240, 300)] == [
        60,
        120,
        240,
        300,
        300,
    ]
    assert next_poll_seconds(300, True, config) == 30  # changes came: poll fast again


@pytest.mark.parametrize(
    ("error", "reason", "transient"),
    [
        ("graph429", "throttled", True),
        ("graph503", "graph_unavailable", True),
        ("graph0", "graph_unavailable", True),
        ("graph403", "access_denied", False),
        ("graph404", "calendar_not_found", False),
        ("graph401", "reauth_required", False),
        ("graph400", "graph_ErrorInvalidParameter", False),
        ("reauth", "reauth_required", False),
        ("not_connected", "disconnected", False),
        ("storage", "storage_unavailable", True),
        ("not_mapped", "calendar_not_mapped", False),
        ("bug", "internal_error", True),
    ],
)  # fmt: skip
def test_failure_reason_codes(error: str, reason: str, transient: bool) -> None:
    from shared.core.errors import GraphError, GraphFailure, IdentityError, StorageError
    from shared.graph.guard import CalendarNotMapped
    from shared.sync.worker import reason_of

    errors: dict[str, Exception] = {
        "reauth": IdentityError("x", error="invalid_grant", reauth=True),
        "not_connected": IdentityError("x", error="not_connected", reauth=True),
        "storage": StorageError("x", transient=True),
        "not_mapped": CalendarNotMapped("x"),
        "bug": KeyError("x"),
    }
    if error.startswith("graph"):
        status = int(error[5:])
        code = "ErrorInvalidParameter" if status == 400 else "x"
        errors[error] = GraphError(GraphFailure(status, code))
    assert reason_of(errors[error]) == (reason, transient)


# ---------------------------------------------------------------- sync settings


def test_sync_settings_defaults_and_refusals() -> None:
    from shared.core.settings import TIMER_SCHEDULES, SettingsError, load_settings
    from shared.sync.deps import SyncConfig
    from tests.unit.test_settings import VALID

    s = load_settings(VALID)
    assert SyncConfig.of(s) == SyncConfig(window_days=60, poll_min_seconds=30, poll_max_seconds=300)
    schedules = (TIMER_SCHEDULES["BB_POLL_SCHEDULE"], TIMER_SCHEDULES["BB_RECONCILE_SCHEDULE"])
    assert schedules == ("*/30 * * * * *", "0 */30 * * * *")
    custom = load_settings({**VALID, "BB_SYNC_WINDOW_DAYS": "14", "BB_POLL_MIN_SECONDS": "5",
                            "BB_POLL_MAX_SECONDS": "60"})  # fmt: skip
    assert SyncConfig.of(custom) == SyncConfig(14, 5, 60)
    bad = {**VALID, "BB_SYNC_WINDOW_DAYS": "0", "BB_POLL_MIN_SECONDS": "soon",
           "BB_RECONCILE_SCHEDULE": "every 30 minutes"}  # fmt: skip
    with pytest.raises(SettingsError) as raised:
        load_settings(bad)
    named = " ".join(raised.value.problems)
    assert "BB_SYNC_WINDOW_DAYS" in named and "BB_POLL_MIN_SECONDS" in named
    assert "BB_RECONCILE_SCHEDULE" in named
    with pytest.raises(SettingsError, match="BB_POLL_MAX_SECONDS"):
        load_settings({**VALID, "BB_POLL_MIN_SECONDS": "60", "BB_POLL_MAX_SECONDS": "30"})
