"""Room analytics through the HTTP API of the local stack (issue 15's figures).

Starts its own stack, then:
- seeds 500 resources and a year (365 building-local days) of daily rollups for each, summed
  into the sheets the rollup timer writes (`seed_year`), then times
  `GET /buildings/{b}/analytics` over that year (groupBy day, resource and company; p50 / p95;
  target p95 < 500 ms);
- seeds one day of 500 rooms x 10 busy blocks (bench_bookings' seed) and times the rollup of
  that one day through `POST /buildings/{b}/analytics:rebuild` (target < 10 s).
Prints the host floor (bench/floor.py) in the same run.

    .venv/bin/python bench/bench_analytics.py [--days N]   (or: make bench)

`--days` (default 365) shortens the year, to see how the figures grow with it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from azure.data.tables import TableServiceClient

from bench.bench_availability import RESOURCES, seed_building
from bench.floor import print_host_floor
from devstack.stack import start_stack
from shared.analytics.compute import Counters, Rollup
from shared.analytics.sheets import TABLE as SHEETS_TABLE
from shared.analytics.sheets import SheetStore, day_segment, sheet_of
from shared.analytics.store import TABLE, RollupStore
from shared.storage import tablestore
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client

DAYS = 365
REQUESTS = 20


def seed_year(connection: str, building: str, last: date) -> tuple[float, int]:
    """A year of rollups for RESOURCES resources (three companies each day), as the timer leaves
    them for building-wide queries: each day's sheet, then the decades, months and years above
    them recomputed (sheets.py), and the watermark over the year. The resource-day rollups
    themselves (read only by resourceId queries) are not seeded: Azurite answers their per-day
    read by scanning its whole table, which makes seeding a year of them quadratic here."""
    service = TableServiceClient.from_connection_string(connection)
    sheets = SheetStore(service.create_table_if_not_exists(SHEETS_TABLE))
    started = time.perf_counter()
    written = 0
    days = [last - timedelta(days=offset) for offset in range(DAYS)]
    for n, day in enumerate(days):
        offset = (last - day).days
        rollups = [
            Rollup(building, day, f"res-{i:03d}", {
                f"company-{(i + k) % 7}": Counters(
                    inside=1800 * (1 + (i + offset) % 5), outside=600 * k, bookings=2, ad_hoc=k % 2,
                    planned=2 - k % 2, required=1, no_shows=k % 2, released=k % 2,
                    durations=Counter({30 + 15 * k: 2}), leads=Counter({60 * k + 5 + offset: 2}),
                )
                for k in range(3)
            })
            for i in range(RESOURCES)
        ]  # fmt: skip
        sheets.write(building, day_segment(day), sheet_of(rollups))
        written += len(rollups)
        if n % 60 == 59:
            print(f"  seeded {n + 1} of {DAYS} days", flush=True)
    sheets.refresh(building, days)
    RollupStore(service.create_table_if_not_exists(TABLE)).extend(building, days[-1], last)
    return time.perf_counter() - started, written


def seed_resources(connection: str, building: str) -> None:
    service = TableServiceClient.from_connection_string(connection)
    table = service.create_table_if_not_exists(tablestore.RESOURCES)
    tablestore.submit_in_chunks(table, [
        ("upsert", {"PartitionKey": building, "RowKey": f"res-{i:03d}", "name": f"Room {i}",
                    "kind": "room", "paid": False, "timeZone": "Europe/Amsterdam"})
        for i in range(RESOURCES)
    ])  # fmt: skip


def report(label: str, ms: list[float]) -> None:
    p95 = statistics.quantiles(ms, n=20)[-1]
    print(f"{label:<46} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   "
          f"(n={len(ms)})   target p95 < 500 ms: {'met' if p95 < 500 else 'NOT met'}",
          flush=True)  # fmt: skip


def main() -> None:
    global DAYS
    if "--days" in sys.argv:
        DAYS = int(sys.argv[sys.argv.index("--days") + 1])
    with tempfile.TemporaryDirectory() as state, start_stack(Path(state)) as stack:
        connection = stack.settings["AzureWebJobsStorage"]
        with functions_client(stack.endpoints, client_token(stack.endpoints)) as api:
            print_host_floor(stack)
            year, day_building = "bench-analytics-year", "bench-analytics-day"
            for b in (year, day_building):
                ensure_building(api, b, "Europe/Amsterdam")
            today = datetime.now(UTC).date()
            last = today - timedelta(days=3)  # a closed day in every zone
            seed_resources(connection, year)
            seconds, written = seed_year(connection, year, last)
            print(f"seeded {written} rollups ({RESOURCES} resources x {DAYS} days) in "
                  f"{seconds:.1f} s", flush=True)  # fmt: skip
            query = {"from": (last - timedelta(days=DAYS - 1)).isoformat(), "to": last.isoformat()}
            path = f"buildings/{year}/analytics"
            for group in ("day", "resource", "company"):
                assert api.get(path, params={**query, "groupBy": group}).status_code == 200
                ms = []
                for _ in range(REQUESTS):
                    started = time.perf_counter()
                    answer = api.get(path, params={**query, "groupBy": group}, timeout=120)
                    ms.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200, answer.text
                report(f"analytics, {RESOURCES} rooms x {DAYS} days, by {group}", ms)

            one = datetime.combine(last, datetime.min.time(), UTC)
            seeded = seed_building(connection, day_building, one, days=1)
            print(f"seeded {RESOURCES} rooms x 10 busy blocks for {last} in {seeded:.1f} s")
            started = time.perf_counter()
            rebuilt = api.post(f"buildings/{day_building}/analytics:rebuild",
                               params={"from": last.isoformat(), "to": last.isoformat()},
                               timeout=300)  # fmt: skip
            took = time.perf_counter() - started
            assert rebuilt.status_code == 200, rebuilt.text
            print(f"rollup of one day for {RESOURCES} rooms (rebuild through the API): "
                  f"{took:.2f} s, {rebuilt.json().get('rollups')} rollups   target < 10 s: "
                  f"{'met' if took < 10 else 'NOT met'}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
