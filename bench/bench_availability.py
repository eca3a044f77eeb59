"""Whole-building availability through the HTTP API, exact and fresh, against live getSchedule.

Starts its own stack (devstack.stack.start_stack: Azurite, the Microsoft 365 emulator, the
Functions host running the unmodified app), then:

1. seeds a building of 500 resources with 10 busy blocks each per day for 7 days (35,000 blocks;
   written straight into the busy table with entity group transactions, as sync's writes would
   leave them) and measures, through the API (p50 / p95):
   - availability of the whole building for one day (target p95 <= 100 ms), with 30-minute free
     slots, and for one week (target p95 <= 250 ms); one resource for one day;
   - a read right after a change: another process (this script's own BusyStore, as another
     Functions instance would) writes a block, and the very next read must show it (every one is
     checked: read-your-writes across instances); that read rescans the changed day;
2. seeds a tenant of 500 room mailboxes in the emulator with the same 10 events per room for the
   day, and times live Graph `getSchedule` for all 500 (batches of 20 schedules, the documented
   limit, 4 at a time), the way a product without its own store answers the same question; prints
   the ratio to our one-day figure (target >= 10x faster);
3. prints the local host's floor (bench/floor.py) for scale.

    .venv/bin/python bench/bench_availability.py     (or: python -m bench bench_availability)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import msal

from bench.bench_bookings import pct
from bench.floor import print_host_floor
from devstack.stack import start_stack
from shared.availability.busy import BusyBlock, BusyStore, block_entity, day_partition
from shared.storage import tablestore
from shared.sync.freebusy import BATCH
from tests.e2e.conftest import client_token, functions_client, msal_session

DEMO_SCENARIO = Path(__file__).resolve().parent.parent / "devstack" / "scenarios" / "demo.json"
RESOURCES = 500
BLOCKS_PER_DAY = 10
DAYS = 7
DAY_READS = 200
WEEK_READS = 40
CHANGED_READS = 30
SCHEDULE_ROUNDS = 5
SCHEDULE_CONCURRENCY = 4  # Outlook's concurrent requests per mailbox; each batch asks as another
GRAPH = "https://graph.microsoft.com"
TARGET_DAY_P95 = 100.0
TARGET_WEEK_P95 = 250.0
TARGET_RATIO = 10.0


def timed(call: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = call()
        out.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text
    return out


def report(label: str, ms: list[float], target: float | None = None, extra: str = "") -> None:
    p95 = pct(ms, 0.95)
    verdict = ""
    if target is not None:
        verdict = f"   target p95 <= {target:g} ms: {'met' if p95 <= target else 'NOT met'}"
    print(
        f"{label:<50} p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"
        f"{verdict}{extra}",
        flush=True,
    )


def block(building: str, i: int, day: datetime, k: int) -> BusyBlock:
    start = day + timedelta(hours=7 + k)
    outlook = k % 2 == 1
    return BusyBlock(
        building,
        f"res-{i:03d}",
        f"o-{i:03d}-{day:%m%d}-{k}" if outlook else f"bk{i:03d}{day:%m%d}{k}",
        start,
        start + timedelta(minutes=45),
        "outlook" if outlook else "platform",
        company_id=f"company-{i % 7}",
    )


def seed_building(
    connection_string: str, building: str, first_day: datetime, days: int = DAYS
) -> float:
    """500 resources and 10 blocks each per day for `days` days, a transaction per 100 segments
    (also bench_analytics' one day to roll up)."""
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    resources = service.create_table_if_not_exists(tablestore.RESOURCES)
    busy = service.create_table_if_not_exists(tablestore.BUSY)
    t0 = time.perf_counter()
    tablestore.submit_in_chunks(
        resources,
        [
            ("upsert", {"PartitionKey": building, "RowKey": f"res-{i:03d}", "name": f"Room {i}",
                        "kind": "room", "paid": False, "timeZone": "Europe/Amsterdam"})
            for i in range(RESOURCES)
        ],
    )  # fmt: skip

    def seed_day(d: int) -> None:
        day = first_day + timedelta(days=d)
        pk = day_partition(building, day.date())
        operations: list[tablestore.Operation] = [
            ("upsert", block_entity(block(building, i, day, k), pk))
            for i in range(RESOURCES)
            for k in range(BLOCKS_PER_DAY)
        ]
        tablestore.submit_in_chunks(busy, operations)

    for d in range(days):  # in turn: Azurite resets connections under concurrent transactions
        seed_day(d)
    return time.perf_counter() - t0


def changed_reads(api: httpx.Client, store: BusyStore, building: str, day: datetime) -> list[float]:
    """A write by another process, then the next read: timed, and checked to show the write."""
    path = f"buildings/{building}/availability"
    window = {
        "from": f"{day:%Y-%m-%dT%H:%M:%SZ}",
        "to": f"{day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}",
    }
    out = []
    for n in range(CHANGED_READS):
        start = day + timedelta(hours=18, minutes=n)
        written = BusyBlock(building, f"res-{n:03d}", f"o-change-{n}", start,
                            start + timedelta(minutes=30), "outlook")  # fmt: skip
        store.put(written)
        t0 = time.perf_counter()
        response = api.get(path, params=window)
        out.append((time.perf_counter() - t0) * 1000)
        mine = next(r for r in response.json()["resources"] if r["resourceId"] == f"res-{n:03d}")
        assert any(b["start"] == f"{start:%Y-%m-%dT%H:%M:%SZ}" for b in mine["busy"]), (
            "a write by another process was not in the next read"
        )
    return out


def big_tenant(stack: Any, day: datetime) -> tuple[dict[str, Any], list[str]]:
    """A tenant of 500 room mailboxes with 10 events each on `day`, and BookingBridge consented."""
    demo = json.loads(DEMO_SCENARIO.read_text())
    demo_app = next(a for a in demo["apps"] if a["key"] == "bookingbridge")
    app = {**demo_app, "homeTenant": "big", "clientId": str(uuid.uuid4())}
    rooms = [f"room{i:03d}" for i in range(RESOURCES)]
    scenario = {
        "apps": [app],
        "tenants": [{
            "key": "big", "domain": f"big{uuid.uuid4().hex[:6]}.example", "displayName": "Big",
            "users": [{"mailNickname": "admin", "displayName": "Admin",
                       "directoryRoles": ["Global Administrator"]}]
                     + [{"mailNickname": r, "displayName": f"Room {r}", "type": "room",
                         "room": {"capacity": 8}} for r in rooms],
            "adminConsents": [{"app": "bookingbridge",
                               "application": {GRAPH: ["Calendars.Read"]}}],
        }],
    }  # fmt: skip
    seeded = stack.emulator.seed_scenario(scenario, fresh=False)
    tenant = seeded["tenants"]["big"]
    mails = [tenant["users"][r]["mail"] for r in rooms]

    def events(mail: str) -> None:
        for k in range(BLOCKS_PER_DAY):
            start = day + timedelta(hours=7 + k)
            body = {
                "subject": "Meeting",
                "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
                "end": {"dateTime": f"{start + timedelta(minutes=45):%Y-%m-%dT%H:%M:%S}",
                        "timeZone": "UTC"},
            }  # fmt: skip
            stack.emulator.control.post(f"users/{mail}/events", json=body).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(events, mails))
    return {"tenant": tenant, "app": seeded["apps"]["bookingbridge"]}, mails


def schedule_reads(
    stack: Any, seeded: dict[str, Any], mails: list[str], day: datetime
) -> list[float]:
    """Wall time of getSchedule for every room of the tenant, batched as Graph allows."""
    endpoints = stack.endpoints
    app = msal.ConfidentialClientApplication(
        seeded["app"]["clientId"],
        client_credential=seeded["app"]["clientSecret"],
        authority=f"{endpoints['authorityHost']}/{seeded['tenant']['id']}",
        instance_discovery=False,
        http_client=msal_session(endpoints["caBundle"]),
    )
    token = app.acquire_token_for_client(scopes=[f"{GRAPH}/.default"])["access_token"]
    graph = httpx.Client(base_url=endpoints["graphBaseUrl"] + "/", verify=endpoints["caBundle"],
                         headers={"Authorization": f"Bearer {token}"}, trust_env=False,
                         timeout=60)  # fmt: skip
    batches = [mails[i : i + BATCH] for i in range(0, len(mails), BATCH)]
    window = {
        "startTime": {"dateTime": f"{day:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        "endTime": {"dateTime": f"{day + timedelta(days=1):%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        "availabilityViewInterval": 30,
    }

    def ask(batch: list[str]) -> int:
        response = graph.post(f"users/{batch[0]}/calendar/getSchedule",
                              json={"schedules": batch, **window})  # fmt: skip
        response.raise_for_status()
        answered = response.json()["value"]
        assert all(len(s["scheduleItems"]) == BLOCKS_PER_DAY for s in answered), answered[0]
        return len(answered)

    out = []
    with ThreadPoolExecutor(SCHEDULE_CONCURRENCY) as pool:
        for _ in range(SCHEDULE_ROUNDS):
            t0 = time.perf_counter()
            assert sum(pool.map(ask, batches)) == len(mails)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as state, start_stack(Path(state)) as stack:
        endpoints = stack.endpoints
        api = functions_client(endpoints, client_token(endpoints))
        building = f"bench-{uuid.uuid4().hex[:8]}"
        created = api.put(
            f"buildings/{building}", json={"name": "Bench", "timeZone": "Europe/Amsterdam"}
        )
        assert created.status_code in (200, 201), created.text
        first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first_day += timedelta(days=14)
        seconds = seed_building(stack.settings["AzureWebJobsStorage"], building, first_day)
        print(f"seeded {RESOURCES} resources x {BLOCKS_PER_DAY} blocks/day x {DAYS} days "
              f"({RESOURCES * BLOCKS_PER_DAY * DAYS} blocks) in {seconds:.1f} s", flush=True)  # fmt: skip
        path = f"buildings/{building}/availability"
        day = {"from": f"{first_day:%Y-%m-%dT%H:%M:%SZ}",
               "to": f"{first_day + timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"}  # fmt: skip
        week = {**day, "to": f"{first_day + timedelta(days=DAYS):%Y-%m-%dT%H:%M:%SZ}"}
        first = api.get(path, params=week).json()
        count = sum(len(r["busy"]) for r in first["resources"])
        assert len(first["resources"]) == RESOURCES and count == RESOURCES * BLOCKS_PER_DAY * DAYS

        day_ms = timed(lambda: api.get(path, params=day), DAY_READS)
        report("availability, whole building, 1 day", day_ms, TARGET_DAY_P95,
               f"   {RESOURCES * BLOCKS_PER_DAY} blocks")  # fmt: skip
        report("availability, whole building, 1 day, slots 30",
               timed(lambda: api.get(path, params={**day, "slotMinutes": "30"}), DAY_READS))  # fmt: skip
        report("availability, whole building, 1 week",
               timed(lambda: api.get(path, params=week), WEEK_READS), TARGET_WEEK_P95,
               f"   {count} blocks")  # fmt: skip
        report("availability, one resource, 1 day",
               timed(lambda: api.get(path, params={**day, "resourceId": "res-250"}), DAY_READS))  # fmt: skip
        from azure.data.tables import TableServiceClient

        other = BusyStore(
            TableServiceClient.from_connection_string(
                stack.settings["AzureWebJobsStorage"]
            ).get_table_client(tablestore.BUSY)
        )
        report("availability right after another process's write", changed_reads(api, other, building, first_day),
               extra="   (every read showed the write; only the changed resource is reread)")  # fmt: skip

        seeded, mails = big_tenant(stack, first_day)
        schedule_ms = schedule_reads(stack, seeded, mails, first_day)
        ours = statistics.median(day_ms)
        theirs = statistics.median(schedule_ms)
        ratio = theirs / ours
        print(f"{'live getSchedule, 500 rooms, 1 day (batches of ' + str(BATCH) + ', 4 at a time)':<50}"
              f" p50 {theirs:7.1f} ms   (n={len(schedule_ms)})", flush=True)  # fmt: skip
        print(f"  availability is {ratio:.1f}x faster than live getSchedule (p50 over p50)"
              f"   target >= {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}",
              flush=True)  # fmt: skip
        print_host_floor(stack)


if __name__ == "__main__":
    main()
