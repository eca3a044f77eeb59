"""Analytics' pure computation against hand-computed numbers (the arithmetic is in the comments
and in tests/analytics_fixture.py): a normal week, DST days, a booking crossing midnight, a released
booking, bookings outside business hours, ad hoc vs planned at the boundary; CSV equals JSON."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.analytics.compute import (
    Booking,
    Counters,
    bookings_of,
    business_seconds,
    days_between,
    local_day_bounds,
    median,
    rollup_day,
)
from shared.analytics.report import CSV_HEADER, Scope, report, to_csv
from shared.analytics.service import _last_closed, parse_query
from shared.analytics.store import _from_entity, to_entity
from shared.core.errors import ValidationFailed
from shared.directory.buildings import WEEKDAYS, Building
from tests import analytics_fixture as fx

AMS = ZoneInfo("Europe/Amsterdam")
ALL_DAY = Building("b", "24/7", "Europe/Amsterdam", {d: [("00:00", "24:00")] for d in WEEKDAYS})


def _week(group_by: str = "day") -> dict[str, Any]:
    b = fx.building("b")
    bookings = bookings_of(fx.blocks("b"), fx.records("b"))
    rollups = [r for day in days_between(fx.FIRST, fx.LAST)
               for r in rollup_day(b, day, bookings, ad_hoc_minutes=15)]  # fmt: skip
    scope = Scope(b, fx.FIRST, fx.LAST, days_between(fx.FIRST, fx.LAST), dict(fx.RESOURCES),
                  {"c1": "Contoso", "c2": "Fabrikam"})  # fmt: skip
    return report(scope, rollups, group_by)  # type: ignore[arg-type]


def test_the_week_by_day_equals_the_hand_computed_numbers() -> None:
    answer = _week("day")
    assert answer["totals"] == fx.TOTALS
    assert {g["key"]: {k: v for k, v in g.items() if k not in ("key", "label")}
            for g in answer["groups"]} == fx.DAYS  # fmt: skip
    assert answer["popular"] == fx.POPULAR
    assert (answer["buildingId"], answer["from"], answer["to"], answer["timeZone"]) == (
        "b", "2026-03-02", "2026-03-08", "Europe/Amsterdam")  # fmt: skip


def test_the_week_by_company_and_by_resource() -> None:
    by_company = _week("company")
    assert {g["key"]: {k: v for k, v in g.items() if k not in ("key", "label")}
            for g in by_company["groups"]} == fx.COMPANIES  # fmt: skip
    assert [g["label"] for g in by_company["groups"]] == ["Contoso", "Fabrikam", "Unattributed"]
    assert by_company["totals"] == fx.TOTALS
    by_resource = {g["key"]: g for g in _week("resource")["groups"]}
    # room-a: in 120 / 3000 = 0.04, out 60 + 240 + 120 = 420; bookings A1 A2 A3 A4
    assert (by_resource["room-a"]["resources"], by_resource["room-a"]["bookingRate"]) == (1, 0.04)
    assert by_resource["room-a"]["bookedMinutesOutsideHours"] == 420
    assert by_resource["room-a"]["bookings"] == 4
    # room-b: in 90 / 3000 = 0.03; B1 B2 B3
    assert (by_resource["room-b"]["bookingRate"], by_resource["room-b"]["bookings"]) == (0.03, 3)


def test_a_week_group_is_the_iso_week() -> None:
    (week,) = _week("week")["groups"]
    assert week["key"] == "2026-W10"
    assert {k: v for k, v in week.items() if k not in ("key", "label")} == fx.TOTALS


def test_csv_has_one_row_per_group_with_the_json_values() -> None:
    answer = _week("company")
    rows = list(csv.reader(io.StringIO(to_csv(answer).decode("utf-8-sig"))))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 1 + len(answer["groups"])
    for row, group in zip(rows[1:], answer["groups"], strict=True):
        assert row == ["" if group[c] is None else str(group[c]) for c in CSV_HEADER]


def _one(start: datetime, end: datetime, created: datetime | None = None) -> Booking:
    return Booking("r", "x", start, end, end, None, created, None)


def test_spring_forward_day_has_23_hours() -> None:
    # 2026-03-29 (a Sunday): 02:00 CET -> 03:00 CEST. The local day is 2026-03-28T23:00Z ..
    # 2026-03-29T22:00Z = 23 h = 1380 min of business on a 00:00-24:00 building; none with the
    # default hours (a Sunday).
    day = date(2026, 3, 29)
    start, end = local_day_bounds(day, AMS)
    assert (end - start).total_seconds() == 23 * 3600
    assert business_seconds(ALL_DAY, day) == 1380 * 60
    # 01:00 CET (00:00Z) .. 04:00 CEST (02:00Z): 3 wall-clock hours, 120 minutes held.
    booking = _one(datetime(2026, 3, 29, 1, tzinfo=AMS), datetime(2026, 3, 29, 4, tzinfo=AMS))
    (rollup,) = rollup_day(ALL_DAY, day, [booking], ad_hoc_minutes=15)
    total = rollup.total()
    assert (total.inside, total.outside, total.durations) == (120 * 60, 0, {120: 1})
    scope = Scope(ALL_DAY, day, day, [day], {"r": "R"}, {})
    # bookingRate = 120 / (1 x 1380) = 0.08696 -> 0.087
    assert report(scope, [rollup], "day")["totals"]["bookingRate"] == 0.087
    assert report(scope, [rollup], "day")["totals"]["businessMinutes"] == 1380
    sunday = Scope(fx.building("b"), day, day, [day], {"r": "R"}, {})
    assert report(sunday, [], "day")["totals"]["bookingRate"] is None  # no business minutes


def test_fall_back_day_has_25_hours() -> None:
    # 2026-10-25: 03:00 CEST -> 02:00 CET. Local day 2026-10-24T22:00Z .. 2026-10-25T23:00Z = 25 h.
    day = date(2026, 10, 25)
    start, end = local_day_bounds(day, AMS)
    assert (start, end) == (datetime(2026, 10, 24, 22, tzinfo=UTC),
                            datetime(2026, 10, 25, 23, tzinfo=UTC))  # fmt: skip
    assert business_seconds(ALL_DAY, day) == 1500 * 60
    # 01:00 CEST (23:00Z the day before) .. 04:00 CET (03:00Z): 240 minutes held.
    booking = _one(datetime(2026, 10, 24, 23, tzinfo=UTC), datetime(2026, 10, 25, 3, tzinfo=UTC))
    (rollup,) = rollup_day(ALL_DAY, day, [booking], ad_hoc_minutes=15)
    assert rollup.total().inside == 240 * 60
    scope = Scope(ALL_DAY, day, day, [day], {"r": "R"}, {})
    assert report(scope, [rollup], "day")["totals"]["bookingRate"] == 0.16  # 240 / 1500


def test_a_booking_crossing_midnight_splits_its_minutes_and_counts_once() -> None:
    # A3: Wed 22:00 - Thu 02:00 local: 120 minutes on each day, the booking on Wednesday.
    (a3,) = [b for b in bookings_of(fx.blocks("b"), []) if b.block_id == "a3"]
    b = fx.building("b")
    (wed,) = rollup_day(b, date(2026, 3, 4), [a3], ad_hoc_minutes=15)
    (thu,) = rollup_day(b, date(2026, 3, 5), [a3], ad_hoc_minutes=15)
    assert (wed.total().outside, wed.total().bookings) == (120 * 60, 1)
    assert (thu.total().outside, thu.total().bookings, thu.total().durations) == (120 * 60, 0, {})


def test_a_released_booking_counts_until_it_was_released() -> None:
    # B2: 10:00-12:00, released 10:10 (no block): 10 minutes in, a no-show, released, required.
    (b2,) = bookings_of([], fx.records("b"))
    assert b2.held_until == fx.local(3, 10, 10)
    (rollup,) = rollup_day(fx.building("b"), date(2026, 3, 3), [b2], ad_hoc_minutes=15)
    total = rollup.total()
    assert (total.inside, total.outside, total.bookings) == (10 * 60, 0, 1)
    assert (total.required, total.no_shows, total.released) == (1, 1, 1)
    assert total.durations == {120: 1}  # the booked length, not the held one
    # A checked-in record without its block (the booking was cancelled later) is no booking.
    assert [x.block_id for x in bookings_of([], fx.records("b"))] == ["b2"]


@pytest.mark.parametrize(
    ("before", "ad_hoc"),
    [(15 * 60, False), (15 * 60 - 1, True), (0, True), (-60, True), (16 * 60, False)],
)
def test_ad_hoc_is_made_less_than_the_setting_before_its_start(before: int, ad_hoc: bool) -> None:
    start = datetime(2026, 3, 3, 9, tzinfo=AMS)
    created = datetime.fromtimestamp(start.timestamp() - before, UTC)
    (rollup,) = rollup_day(fx.building("b"), date(2026, 3, 3),
                           [_one(start, start.replace(hour=10), created)], ad_hoc_minutes=15)  # fmt: skip
    assert (rollup.total().ad_hoc, rollup.total().planned) == (int(ad_hoc), int(not ad_hoc))


def test_a_booking_outside_business_hours() -> None:
    # A Saturday 10:00-12:00 and a Tuesday 06:00-07:30: all outside (08:00-18:00 Mon-Fri).
    b = fx.building("b")
    sat = _one(fx.local(7, 10), fx.local(7, 12))
    tue = _one(fx.local(3, 6), fx.local(3, 7, 30))
    (r1,) = rollup_day(b, date(2026, 3, 7), [sat], ad_hoc_minutes=15)
    (r2,) = rollup_day(b, date(2026, 3, 3), [tue], ad_hoc_minutes=15)
    assert (r1.total().inside, r1.total().outside) == (0, 120 * 60)
    assert (r2.total().inside, r2.total().outside) == (0, 90 * 60)
    assert r1.total().planned == 1  # no createdAt: planned


def test_median_is_exact_over_histograms() -> None:
    assert median(Counters().durations) is None
    assert median(Counters(durations={5: 1}).durations) == 5  # type: ignore[arg-type]
    assert median({1: 2, 7: 2}) == 4  # type: ignore[arg-type]
    assert median({1: 1, 2: 1, 100: 1}) == 2  # type: ignore[arg-type]


def test_a_rollup_round_trips_through_its_entity_identically() -> None:
    b = fx.building("b")
    bookings = bookings_of(fx.blocks("b"), fx.records("b"))
    for rollup in rollup_day(b, date(2026, 3, 3), bookings, ad_hoc_minutes=15):
        entity = to_entity(rollup)
        back = _from_entity("b", entity, True)
        assert back.companies == rollup.companies
        assert to_entity(back) == entity  # recomputing writes identical entities
        assert _from_entity("b", entity, False).total() == rollup.total()


def test_query_parameters_are_checked_each_bad_one_named() -> None:
    with pytest.raises(ValidationFailed) as bad:
        parse_query(
            {"from": "2026-13-01", "groupBy": "month", "format": "xml", "resourceId": "a b"}
        )
    assert {e.field for e in bad.value.errors} == {"from", "to", "groupBy", "format", "resourceId"}
    with pytest.raises(ValidationFailed) as reversed_range:
        parse_query({"from": "2026-03-02", "to": "2026-03-01"})
    assert [e.field for e in reversed_range.value.errors] == ["to"]
    with pytest.raises(ValidationFailed):
        parse_query({"from": "2025-01-01", "to": "2026-01-02"})  # 367 days
    assert parse_query({"from": "2025-01-02", "to": "2026-01-02"}).group_by == "day"


def test_a_day_closes_half_an_hour_after_its_local_midnight() -> None:
    b = fx.building("b")
    # 2026-03-04 00:29 local (23:29Z the 3rd): the 3rd is not closed yet, the 2nd is.
    assert _last_closed(b, datetime(2026, 3, 3, 23, 29, tzinfo=UTC)) == date(2026, 3, 2)
    assert _last_closed(b, datetime(2026, 3, 3, 23, 30, tzinfo=UTC)) == date(2026, 3, 3)
