"""Calendar segments of the analytics sheets (shared/analytics/sheets.py): pure."""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

import pytest

from shared.analytics.sheets import children, decade_of, month_of, parent, segments

pytestmark = pytest.mark.unit


def test_a_year_to_the_day_is_23_segments() -> None:
    found = segments(date(2025, 12, 4), date(2026, 12, 3))
    kinds = "".join(s.kind for s in found)
    assert kinds == "d" * 7 + "xx" + "m" * 11 + "ddd"
    assert [s.key for s in found[7:10]] == ["x20251211", "x20251221", "m202601"]
    assert found[8].last == date(2025, 12, 31)


def test_a_whole_year_is_one_segment() -> None:
    (only,) = segments(date(2024, 1, 1), date(2024, 12, 31))
    assert (only.kind, only.key) == ("y", "y2024")


@pytest.mark.parametrize("seed", range(20))
def test_segments_cover_every_day_once_and_each_is_whole(seed: int) -> None:
    rng = random.Random(seed)
    first = date(2023, 1, 1) + timedelta(days=rng.randrange(900))
    last = first + timedelta(days=rng.randrange(400))
    found = segments(first, last)
    assert found[0].first == first and found[-1].last == last
    for a, b in itertools.pairwise(found):
        assert b.first == a.last + timedelta(days=1)
    for segment in found:
        # Whole: the segment is exactly what its kind makes of its first day.
        assert {"d": segment, "x": decade_of(segment.first), "m": month_of(segment.first),
                "y": segment}[segment.kind] == segment  # fmt: skip
    assert len(found) <= 2 * (9 + 2 + 11) + 1  # never one per day over long ranges


def test_decades_months_and_years_nest() -> None:
    assert decade_of(date(2024, 2, 29)).last == date(2024, 2, 29)
    assert decade_of(date(2023, 2, 21)).last == date(2023, 2, 28)
    assert decade_of(date(2026, 1, 31)).first == date(2026, 1, 21)
    assert decade_of(date(2026, 1, 10)).last == date(2026, 1, 10)
    month = month_of(date(2026, 7, 15))
    assert [c.first.day for c in children(month)] == [1, 11, 21]
    assert len(children(decade_of(date(2026, 7, 25)))) == 11
    assert parent(parent(month) or month) is None  # a year has no parent
    assert len(children(parent(month) or month)) == 12
