"""Analytics against a real Azurite: a rebuild writes the hand-computed week's rollups, a second
rebuild writes identical entities (and drops a day's rollup that no longer has a booking), the
query over stored rollups equals the one computed live and the hand-computed numbers, and the
timer rolls up closed days after the watermark, catching up after a pause.

The week is tests/analytics_fixture.py's, stored as busy blocks and attendance records.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared.analytics.service import (
    AnalyticsDeps,
    analytics,
    parse_query,
    rebuild,
    roll_closed_days,
)
from shared.analytics.sheets import TABLE as SHEETS
from shared.analytics.sheets import SheetStore
from shared.analytics.store import TABLE as ROLLUPS
from shared.analytics.store import RollupStore
from shared.attendance.model import TABLE as ATTENDANCE
from shared.attendance.model import to_entity
from shared.availability.busy import BusyStore
from shared.core.errors import ValidationFailed
from shared.directory import companies, registry
from shared.directory.buildings import Buildings
from shared.storage import tablestore
from tests import analytics_fixture as fx
from tests.integration.service_fixtures import Tables, tables

__all__ = ["tables"]

NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)  # the fixture's week has closed


def _seed(tables: Tables) -> tuple[AnalyticsDeps, str]:
    building = f"b-{uuid.uuid4().hex[:10]}"
    Buildings(tables).put(building, {"name": "Analytics HQ", "timeZone": "Europe/Amsterdam"})
    for resource, name in fx.RESOURCES.items():
        registry.put_resource(tables, building, resource,
                              {"name": name, "kind": "room", "timeZone": "Europe/Amsterdam"})  # fmt: skip
    companies.put_company(tables, building, "c1", {"name": "Contoso", "domains": ["contoso.com"]})
    busy = BusyStore(tables(tablestore.BUSY))
    for block in fx.blocks(building):
        busy.put(block)
    for record in fx.records(building):
        tables(ATTENDANCE).upsert_entity(to_entity(record))
    deps = AnalyticsDeps(tables, Buildings(tables), busy, tables(ATTENDANCE),
                         RollupStore(tables(ROLLUPS)), SheetStore(tables(SHEETS)),
                         now=lambda: NOW)  # fmt: skip
    return deps, building


def _stored(deps: AnalyticsDeps, building: str) -> list[dict[str, Any]]:
    found = tablestore.query_all(deps.rollups.table, "PartitionKey eq @pk",
                                 {"pk": tablestore.join_key(building, "2026")})  # fmt: skip
    return [dict(e) for e in found]


def _week(deps: AnalyticsDeps, building: str, group_by: str = "day") -> dict[str, Any]:
    query = parse_query({"from": "2026-03-02", "to": "2026-03-08", "groupBy": group_by})
    return analytics(deps, building, query)


def test_rebuild_is_idempotent_and_the_stored_week_equals_the_live_one(tables: Tables) -> None:
    deps, b = _seed(tables)
    live = _week(deps, b)  # no watermark yet: every day computed live
    assert live["totals"] == fx.TOTALS
    live_answers = {g: _week(deps, b, g) for g in ("week", "resource", "company")}
    done = rebuild(deps, b, {"from": "2026-03-02", "to": "2026-03-08"})
    # Rollups: Tue room-a, room-b; Wed room-a; Thu room-a, room-b; Sat room-a = 6
    assert (done["days"], done["rollups"]) == (7, 6)
    assert done["rolledUp"] == {"since": "2026-03-02", "through": "2026-03-08"}
    first = _stored(deps, b)
    assert len(first) == 6
    rebuild(deps, b, {"from": "2026-03-02", "to": "2026-03-08"})
    assert [(r["RowKey"], r["t"], r["c"]) for r in _stored(deps, b)] == [
        (r["RowKey"], r["t"], r["c"]) for r in first
    ]
    stored = _week(deps, b)  # every day from the sheets now
    assert stored == live
    for group_by in ("week", "resource", "company"):
        assert _week(deps, b, group_by) == live_answers[group_by], group_by
    assert {g["key"]: g["bookings"] for g in _week(deps, b, "company")["groups"]} == {
        "c1": 3, "c2": 2, "unattributed": 2}  # fmt: skip
    assert _week(deps, b, "company")["groups"][0]["label"] == "Contoso"
    # A4 (Saturday's only booking) is cancelled: a rebuild drops Saturday's rollup.
    (a4,) = [x for x in fx.blocks(b) if x.block_id == "a4"]
    deps.busy.remove(a4)
    rebuild(deps, b, {"from": "2026-03-07", "to": "2026-03-07"})
    assert len(_stored(deps, b)) == 5
    assert _week(deps, b)["totals"]["bookings"] == 6


def test_rebuild_refuses_days_that_have_not_closed(tables: Tables) -> None:
    deps, b = _seed(tables)
    with pytest.raises(ValidationFailed) as refused:
        rebuild(deps, b, {"from": "2026-03-09", "to": "2026-03-10"})
    assert [e.field for e in refused.value.errors] == ["to"]


def test_the_timer_rolls_up_closed_days_and_catches_up(tables: Tables) -> None:
    deps, b = _seed(tables)
    # First run on 2026-03-06 at 01:00 local: no watermark, so yesterday (Thu) only.
    at = datetime(2026, 3, 6, 0, tzinfo=UTC)
    assert roll_closed_days(replace(deps, now=lambda: at)).get(b) == 1
    assert deps.rollups.watermark(b).through == date(2026, 3, 5)  # type: ignore[union-attr]
    # Down until Tuesday 10th noon: Fri .. Mon are caught up in one run.
    assert roll_closed_days(deps).get(b) == 4
    mark = deps.rollups.watermark(b)
    assert mark is not None and (mark.since, mark.through) == (date(2026, 3, 5), date(2026, 3, 9))
    assert roll_closed_days(deps).get(b) is None  # nothing new closed
    # Mon..Wed are live (before `since`), Thu..Sun from rollups: the same numbers.
    assert _week(deps, b)["totals"] == fx.TOTALS
