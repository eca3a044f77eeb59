"""Pure logic of the Graph emulator: recurrence expansion, time zones, delta rounds, filters."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from devstack.m365.graph import recurrence as rr
from devstack.m365.graph import views
from devstack.m365.graph.config import GraphConfig
from devstack.m365.graph.errors import GraphError
from devstack.m365.graph.messages import parse_query
from devstack.m365.graph.model import Mailbox, occurrence_id, parse_occurrence_id
from devstack.m365.graph.odata import parse_expand, parse_filter
from devstack.m365.graph.timezones import (
    format_dttz,
    parse_dttz,
    parse_query_datetime,
    prefer_timezone,
)

UTC = dt.UTC


def expand(
    pattern: dict[str, object],
    rng: dict[str, object],
    start: dt.datetime,
    tz: str = "UTC",
    until: dt.datetime | None = None,
) -> list[dt.datetime]:
    rec = rr.normalize({"pattern": pattern, "range": rng}, start.replace(tzinfo=None), tz)
    return rr.occurrence_starts(
        rec, start, dt.timedelta(minutes=30), None, until or dt.datetime(2100, 1, 1, tzinfo=UTC)
    )


def test_weekly_numbered_with_interval_and_first_day() -> None:
    start = dt.datetime(2025, 3, 3, 9, tzinfo=UTC)  # a Monday
    got = expand(
        {
            "type": "weekly",
            "interval": 2,
            "daysOfWeek": ["monday", "thursday"],
            "firstDayOfWeek": "monday",
        },
        {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 5},
        start,
    )
    assert [d.date().isoformat() for d in got] == [
        "2025-03-03",
        "2025-03-06",
        "2025-03-17",
        "2025-03-20",
        "2025-03-31",
    ]


def test_daily_end_date_and_monthly_clamps_to_month_end() -> None:
    start = dt.datetime(2025, 1, 31, 8, tzinfo=UTC)
    daily = expand(
        {"type": "daily", "interval": 3},
        {"type": "endDate", "startDate": "2025-01-31", "endDate": "2025-02-09"},
        start,
    )
    assert [d.day for d in daily] == [31, 3, 6, 9]
    monthly = expand(
        {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 31},
        {"type": "numbered", "startDate": "2025-01-31", "numberOfOccurrences": 3},
        start,
    )
    assert [d.date().isoformat() for d in monthly] == ["2025-01-31", "2025-02-28", "2025-03-31"]


def test_no_end_is_bounded_by_the_window_and_keeps_wall_clock_across_dst() -> None:
    start = dt.datetime(2025, 3, 7, 14, tzinfo=UTC)  # 09:00 New York (EST)
    got = expand(
        {"type": "weekly", "interval": 1, "daysOfWeek": ["friday"]},
        {"type": "noEnd", "startDate": "2025-03-07"},
        start,
        tz="Eastern Standard Time",
        until=dt.datetime(2025, 3, 22, tzinfo=UTC),
    )
    assert [d.hour for d in got] == [14, 13, 13]  # 09:00 local before and after DST


def test_invalid_recurrences_are_refused() -> None:
    start = dt.datetime(2025, 3, 3, 9)
    with pytest.raises(GraphError):
        rr.normalize({"pattern": {"type": "weekly"}, "range": {"type": "noEnd"}}, start, "UTC")
    with pytest.raises(GraphError):
        rr.normalize({"pattern": {"type": "hourly"}, "range": {"type": "noEnd"}}, start, "UTC")


def test_time_zones_windows_and_iana() -> None:
    utc, name = parse_dttz(
        {"dateTime": "2025-07-01T09:00:00.0000000", "timeZone": "W. Europe Standard Time"}, "start"
    )
    assert utc == dt.datetime(2025, 7, 1, 7, tzinfo=UTC) and name == "W. Europe Standard Time"
    assert format_dttz(utc, "Asia/Tokyo") == {
        "dateTime": "2025-07-01T16:00:00.0000000",
        "timeZone": "Asia/Tokyo",
    }
    with pytest.raises(GraphError) as err:
        parse_dttz({"dateTime": "2025-07-01T09:00:00", "timeZone": "Nowhere/Land"}, "start")
    assert err.value.status == 400
    assert (
        prefer_timezone('outlook.timezone="Pacific Standard Time", odata.maxpagesize=5')
        == "Pacific Standard Time"
    )
    assert prefer_timezone('outlook.timezone="Bogus"') is None


def test_query_datetimes_and_unencoded_plus() -> None:
    assert parse_query_datetime("2025-01-01T10:00:00+02:00", "s") == dt.datetime(
        2025, 1, 1, 8, tzinfo=UTC
    )
    assert parse_query_datetime("2025-01-01T10:00:00", "s").tzinfo is not None  # no offset = UTC
    raw = parse_query("startDateTime=2025-01-01T10:00:00+02:00")["startDateTime"]
    with pytest.raises(GraphError) as err:
        parse_query_datetime(raw, "StartDateTime")
    assert err.value.code == "ErrorInvalidParameter"


def test_occurrence_ids_round_trip() -> None:
    orig = dt.datetime(2025, 5, 5, 9, tzinfo=UTC)
    assert parse_occurrence_id(occurrence_id("AAMkAGxyz=", orig)) == ("AAMkAGxyz=", orig)
    assert parse_occurrence_id("AAMkAGplain") is None


def _state() -> SimpleNamespace:
    return SimpleNamespace(
        emulator=SimpleNamespace(base_url="https://x"),
        delta=views.DeltaStore(),
        config=GraphConfig(),
    )


def test_delta_rounds_report_changes_and_removals() -> None:
    from devstack.m365.graph import events as ev

    mb = Mailbox("t", "u", "u@x", "u@x", "U", False)
    cal = mb.add_calendar("Calendar", is_default=True)
    state = SimpleNamespace(
        now=lambda: dt.datetime(2025, 1, 1, tzinfo=UTC),
        changed=lambda *a: None,
        emulator=SimpleNamespace(base_url="https://x"),
    )
    body = {
        "subject": "a",
        "start": {"dateTime": "2025-01-02T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-01-02T10:00:00", "timeZone": "UTC"},
    }
    a, _ = ev.create_event(state, mb, cal.id, body)  # type: ignore[arg-type]
    b, _ = ev.create_event(state, mb, cal.id, {**body, "subject": "b"})  # type: ignore[arg-type]
    lo, hi = dt.datetime(2025, 1, 2, tzinfo=UTC), dt.datetime(2025, 1, 3, tzinfo=UTC)
    first = views.begin_round(_state(), mb, {cal.id}, lo, hi, "/p", None, 10)  # type: ignore[arg-type]
    assert [k for k, _ in first.entries] == ["item", "item"]
    ev.update_event(state, mb, a, None, {"subject": "a2"})  # type: ignore[arg-type]
    ev.delete_event(state, mb, b, None)  # type: ignore[arg-type]
    second = views.begin_round(_state(), mb, {cal.id}, lo, hi, "/p", first.snapshot, 10)  # type: ignore[arg-type]
    kinds = sorted(k for k, _ in second.entries)
    assert kinds == ["item", "removed"]
    removed = next(ref for k, ref in second.entries if k == "removed")
    assert removed == (b.rest_id, b.immutable_id)
    third = views.begin_round(_state(), mb, {cal.id}, lo, hi, "/p", second.snapshot, 10)  # type: ignore[arg-type]
    assert third.entries == []


def test_filters_and_expand() -> None:
    ep = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name BookingId"
    preds = parse_filter(
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{ep}' and "
        "ep/value eq 'O''Brien') and subject eq 'x'"
    )
    assert len(preds) == 2
    with pytest.raises(GraphError):
        parse_filter("contains(subject, 'x')")
    assert parse_expand(f"singleValueExtendedProperties($filter=id eq '{ep}')") == [ep]
    assert parse_expand(None) is None
