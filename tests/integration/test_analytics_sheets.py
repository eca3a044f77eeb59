"""Analytics sheets (shared/analytics/sheets.py) against Azurite: for any range, the sum of the
sheets of its segments equals the sum of its resource-day rollups, whatever the sheets' sizes."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import date, timedelta

from shared.analytics import sheets as sh
from shared.analytics.compute import Counters, Rollup, days_between
from tests.integration.service_fixtures import Tables, tables

__all__ = ["tables"]

FIRST, LAST = date(2025, 12, 18), date(2026, 2, 12)  # across a year, months and decades


def _rollups(building: str, rng: random.Random) -> dict[date, list[Rollup]]:
    found: dict[date, list[Rollup]] = {}
    for day in days_between(FIRST, LAST):
        found[day] = [
            Rollup(building, day, f"r{i}", {
                rng.choice([None, "c1", "c2"]): Counters(
                    inside=rng.randrange(0, 36000), outside=rng.randrange(0, 600),
                    bookings=(n := rng.randrange(1, 5)), ad_hoc=n // 2, planned=n - n // 2,
                    required=1, no_shows=rng.randrange(2), released=0,
                    durations=Counter({rng.randrange(15, 240): n}),
                    leads=Counter({rng.randrange(-30, 100000): n}),
                )
            })
            for i in range(rng.randrange(0, 6))
        ]  # fmt: skip
    return found


def _expected(rollups: dict[date, list[Rollup]], first: date, last: date) -> sh.Sheet:
    return sh.sheet_of(r for day in days_between(first, last) for r in rollups[day])


def test_segment_sums_equal_the_rollups_of_every_range(tables: Tables) -> None:
    building = f"b-{uuid.uuid4().hex[:8]}"
    store = sh.SheetStore(tables(sh.TABLE))
    rollups = _rollups(building, random.Random(7))
    for day, rows in rollups.items():
        store.write(building, sh.day_segment(day), sh.sheet_of(rows))
    assert store.refresh(building, rollups) > 0
    rng = random.Random(11)
    spans = [(FIRST, LAST), (date(2026, 1, 1), date(2026, 1, 31)), (date(2025, 12, 21), LAST)]
    for _ in range(6):
        a = FIRST + timedelta(days=rng.randrange((LAST - FIRST).days))
        spans.append((a, a + timedelta(days=rng.randrange((LAST - a).days + 1))))
    for first, last in spans:
        found, missing = store.read_sum(building, sh.segments(first, last), sh.ALL_PARTS)
        assert missing == [], (first, last)
        assert found == _expected(rollups, first, last), (first, last)
    # Without the resources' histograms: the same counts, no histograms read.
    lean, _ = store.read_sum(building, sh.segments(FIRST, LAST), ("t", "r"))
    full = _expected(rollups, FIRST, LAST)
    assert lean.total == full.total and lean.companies == {}
    assert {k: v.bookings for k, v in lean.resources.items()} == {
        k: v.bookings for k, v in full.resources.items()
    }
    assert all(not v.leads and not v.durations for v in lean.resources.values())
    totals = store.day_totals(building, FIRST, LAST)
    assert totals == {d: sh.sheet_of(rows).total for d, rows in rollups.items()}


def test_a_sheet_larger_than_an_entity_round_trips_and_shrinks(tables: Tables) -> None:
    building = f"b-{uuid.uuid4().hex[:8]}"
    store = sh.SheetStore(tables(sh.TABLE))
    day = date(2026, 3, 4)
    # Enough resources with wide histograms for more than one entity of pieces.
    big = sh.Sheet(resources={
        f"room-{i:04d}": Counters(bookings=1, leads=Counter({k: 1 for k in range(i, i + 60)}))
        for i in range(1500)
    })  # fmt: skip
    store.write(building, sh.day_segment(day), big)
    assert store.read(building, sh.day_segment(day), sh.ALL_PARTS) == big
    rows = tables(sh.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": f"{building}|2026"}
    )
    assert len([r for r in rows if r["part"] == "h"]) > 1
    small = sh.Sheet(resources={"room-0001": Counters(bookings=2)})
    store.write(building, sh.day_segment(day), small)
    assert store.read(building, sh.day_segment(day), sh.ALL_PARTS) == small
    left = tables(sh.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": f"{building}|2026"}
    )
    assert len(list(left)) == 4  # one entity per part again
    assert store.read(building, sh.day_segment(day + timedelta(days=1)), ("t",)) is None
