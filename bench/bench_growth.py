"""How cost grows with rooms and buildings (issue 17): one table for four shapes.

Shapes: 100, 500 and 2,000 rooms in one building, and 2,000 rooms across 10 buildings (200 each).
For each shape a fresh local stack (devstack.stack.start_stack: Azurite in memory, the Microsoft 365
emulator, the Functions host running the unmodified app), so no shape reads another's data. Then:

- seeding, which is not what is measured: the resources and 10 busy blocks per room on one UTC day,
  written straight into Azurite as entity group transactions in the shapes the app writes
  (shared.availability.busy: segments and per-resource-day locks in the day partition), instead
  of one `BusyStore.put` per block. Azurite's writes slow down as a partition grows (a 100-entity
  transaction into a 20,000-entity partition takes ~0.4 s), so seeding the 2,000-room building
  takes ~40 s of a ~3-minute run;
- a building connected to the demo tenant (application mode) with one room resource mapped to
  Board Room 4A, so bookings go through the whole write path (live check, Outlook event, sync echo);
- through the HTTP API only, so the figures are whatever main's code does when this runs:
  availability of one whole building for the seeded day (p50 / p95, sequential), then booking
  create (sequential, on the mapped room, on the seeded day: the claim reads the same day
  partition availability reads);
- Graph requests per booking: the emulator's counters (GET /_emulator/stats) from before the first
  create to quiescence; "booking" counts the endpoints bench_bookings counts, "all" adds the sync
  round each booking's own notification causes;
- Table Storage requests per availability read and per booking: counted by a small HTTP proxy
  between the Functions host and Azurite's table endpoint (the host's AzureWebJobsStorage names the
  proxy as TableEndpoint; blobs and queues go straight to Azurite). It parses each request's head
  (and a $batch body's parts) and forwards the bytes unchanged: an entity group transaction is one
  request but counts as its operations, which is what a partition's entities-per-second target
  counts. The host's timers are set to once a year so only the measured calls touch tables (the idle
  rate is printed to show it); the proxy's own cost per table request is printed too.

    .venv/bin/python bench/bench_growth.py [--reads 30] [--bookings 20] [--shapes N] [--direct]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import os
import re
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.bench_bookings import BOOKING_ENDPOINTS, pct
from bench.floor import print_host_floor
from devstack.azurite import Azurite
from devstack.procs import free_port
from devstack.stack import Stack, start_stack
from shared.availability import busy
from shared.availability.busy import BusyBlock
from shared.core.settings import TIMER_SCHEDULES
from shared.storage import tablestore
from tests.e2e.booking_fixtures import connect_application, graph_stats
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client

BLOCKS_PER_DAY = 10
# (label, buildings, rooms per building)
SHAPES = (
    ("100 rooms, 1 building", 1, 100),
    ("500 rooms, 1 building", 1, 500),
    ("2,000 rooms, 1 building", 1, 2000),
    ("2,000 rooms, 10 buildings", 10, 200),
)
READ_BUDGET_SECONDS = 10.0  # per shape: fewer reads than asked when one read is slow
# Timers would touch tables on their own (release every minute, polling every 30 s): once a year.
QUIET_TIMERS = dict.fromkeys(TIMER_SCHEDULES, "0 0 0 1 1 *")
QUIET_SECONDS = 1.5  # no table request for this long: the app's work for the calls is done
_BATCH_PART = re.compile(
    rb"^(?:GET|POST|PUT|PATCH|MERGE|DELETE) https?://[^/\s]+/[^/\s]+/(\w+)", re.MULTILINE
)
_TABLE = re.compile(rb"^/[^/]+/(\w+)")  # /devstoreaccount1/busy(PartitionKey=...) -> busy


# ---------------------------------------------------------------------------------------------
# Counting Table Storage requests
# ---------------------------------------------------------------------------------------------


class TableCounter:
    """An HTTP/1.1 proxy on loopback in front of Azurite's table endpoint, counting what passes.

    Only the client-to-server direction is parsed (request line, headers, Content-Length body;
    the storage SDK never sends chunked bodies, and a request that did is refused loudly); the
    answers are copied back unread, so keep-alive and paging behave as without the proxy.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last = time.monotonic()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="table-counter", daemon=True)

    def __enter__(self) -> TableCounter:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the table counting proxy did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def quiet(self, timeout: float = 30.0) -> None:
        """Wait until no table request arrived for QUIET_SECONDS (the app's async work is done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = time.monotonic() - self._last
            if idle >= QUIET_SECONDS:
                return
            time.sleep(0.1)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, limit=1 << 20)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _record(self, head: bytes, body: bytes) -> None:
        method, target = head.split(b" ", 2)[:2]
        path = target.split(b"?", 1)[0]
        with self._lock:
            self._last = time.monotonic()
            self._counts["requests"] += 1
            if path.endswith(b"/$batch"):
                tables = _BATCH_PART.findall(body)
                self._counts["batches"] += 1
                self._counts["operations"] += len(tables)
                self._counts["writes"] += len(tables)
                for name in tables:
                    self._counts[f"write {name.decode()}"] += 1
            else:
                kind = "read" if method == b"GET" else "write"
                match = _TABLE.match(path)
                self._counts["operations"] += 1
                self._counts[f"{kind}s"] += 1
                self._counts[f"{kind} {match.group(1).decode() if match else '?'}"] += 1

    async def _serve(self, client: asyncio.StreamReader, back: asyncio.StreamWriter) -> None:
        reader, upstream = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port, limit=1 << 20
        )
        for writer in (back, upstream):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # answers must not wait for a delayed ACK (DESIGN.md, issue 17)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def answers() -> None:
            while data := await reader.read(1 << 18):
                with self._lock:
                    self._counts["bytes_down"] += len(data)
                back.write(data)
                await back.drain()
            back.close()

        copying = asyncio.ensure_future(answers())
        try:
            while True:
                try:
                    head = await client.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                headers = dict(
                    line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line
                )
                lowered = {k.strip().lower(): v.strip() for k, v in headers.items()}
                if lowered.get(b"transfer-encoding", b"").lower() == b"chunked":
                    raise RuntimeError("chunked request bodies are not counted by this proxy")
                body = await client.readexactly(int(lowered.get(b"content-length", b"0")))
                self._record(head, body)
                upstream.write(head + body)
                await upstream.drain()
        finally:
            upstream.close()
            await asyncio.gather(copying, return_exceptions=True)
            back.close()


def by_table(counts: Counter[str], per: int) -> str:
    """ "read busy 4.0, write audit 2.0, ...": each table's reads and written operations per call."""
    parts = sorted(
        ((n / per, k) for k, n in counts.items() if k.startswith(("read ", "write ")) and n),
        reverse=True,
    )
    return ", ".join(f"{k} {v:.1f}" for v, k in parts) or "none"


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    return Counter({k: after[k] - before[k] for k in after})


# ---------------------------------------------------------------------------------------------
# Seeding (not measured)
# ---------------------------------------------------------------------------------------------


def busy_operations(building: str, rooms: int, day: datetime) -> list[Any]:
    """The day partition's segments and per-resource locks as BusyStore.put writes them (the same
    entity builders), for `rooms` resources with BLOCKS_PER_DAY blocks each. `create`, not upsert:
    the stack is fresh, and Azurite's upsert looks the key up twice, which in a partition of 22,000
    entities made seeding minutes longer. The block index rows (one partition per resource) are
    left out: neither availability nor a claim on another resource reads them."""
    partition = busy.day_partition(building, day.date())
    operations: list[Any] = []
    for i in range(rooms):
        resource = f"res-{i:04d}"
        operations.append(
            ("create", {"PartitionKey": partition, "RowKey": busy.lock_row(resource), "v": "seed"})
        )
        for k in range(BLOCKS_PER_DAY):
            start = day + timedelta(hours=7 + k)
            block = BusyBlock(
                building, resource, f"o-{i:04d}-{k}", start, start + timedelta(minutes=45),
                "outlook" if k % 2 else "platform", company_id=f"company-{i % 7}",
                booking_id=None if k % 2 else f"bk-{i:04d}-{k}",
            )  # fmt: skip
            operations.append(("create", busy.block_entity(block, partition)))
    return operations


def seed(connection_string: str, buildings: list[str], rooms: int, day: datetime) -> float:
    from azure.data.tables import TableServiceClient

    service = TableServiceClient.from_connection_string(connection_string)
    resources = service.create_table_if_not_exists(tablestore.RESOURCES)
    table = service.create_table_if_not_exists(tablestore.BUSY)
    t0 = time.perf_counter()

    def one(building: str) -> None:
        tablestore.submit_in_chunks(
            resources,
            [
                ("upsert", {"PartitionKey": building, "RowKey": f"res-{i:04d}", "name": f"Room {i}",
                            "kind": "room", "paid": False, "timeZone": "Europe/Amsterdam"})
                for i in range(rooms)
            ],
        )  # fmt: skip
        # One partition's transactions one after another: Azurite resets connections under
        # concurrent transactions to one partition; buildings (partitions) run side by side.
        tablestore.submit_in_chunks(table, busy_operations(building, rooms, day))

    with ThreadPoolExecutor(min(len(buildings), 4)) as pool:
        list(pool.map(one, buildings))
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# One shape
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    shape: str
    floor_p95: float
    seed_s: float
    blocks: int
    read_p50: float
    read_p95: float
    reads: int
    cold_table_requests: int
    warm_table_requests: float
    warm_kib: float
    booking_p50: float
    booking_p95: float
    bookings: int
    graph_booking: float
    graph_all: float
    table_requests_per_booking: float
    table_ops_per_booking: float
    proxy_ms: float
    counted: bool = True


def timed_ms(call: Callable[[], httpx.Response], expect: int) -> float:
    t0 = time.perf_counter()
    response = call()
    ms = (time.perf_counter() - t0) * 1000
    assert response.status_code == expect, response.text
    return ms


def floor_p95(stack: Stack) -> float:
    """print_host_floor prints the floor; the table repeats its p95 beside each shape."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_host_floor(stack)
    line = out.getvalue().strip()
    print(line, flush=True)
    return float(line.rsplit("p95", 1)[1].split("ms")[0])


def proxy_cost_ms(stack: Stack, building: str) -> float:
    """What the proxy adds to one table request: the same point read, direct and through it."""
    from azure.data.tables import TableClient

    direct_cs = stack.endpoints["storage"]
    proxied_cs = stack.settings["AzureWebJobsStorage"]
    out = []
    for cs in (direct_cs, proxied_cs):
        with TableClient.from_connection_string(cs, tablestore.RESOURCES) as table:
            table.get_entity(building, "res-0000")
            ms = []
            for _ in range(60):
                t0 = time.perf_counter()
                table.get_entity(building, "res-0000")
                ms.append((time.perf_counter() - t0) * 1000)
            out.append(statistics.median(ms))
    return out[1] - out[0]


def run_shape(
    label: str, building_count: int, rooms: int, reads: int, bookings: int, direct: bool
) -> Row:
    blob, queue, table = free_port(), free_port(), free_port()
    with TableCounter(table) as counter, tempfile.TemporaryDirectory() as state:
        settings = dict(QUIET_TIMERS)
        if not direct:
            # The host's connection string: Azurite's, with the table endpoint on the proxy; built
            # by Azurite's own property (no process behind this value: it only formats the string).
            settings["AzureWebJobsStorage"] = Azurite(
                cast(Any, None), blob, queue, counter.port
            ).connection_string
        with start_stack(
            Path(state), azurite_ports=(blob, queue, table), extra_settings=settings
        ) as stack:
            row = measure(stack, counter, label, building_count, rooms, reads, bookings)
            row.counted = not direct
            return row


def measure(
    stack: Stack, counter: TableCounter, label: str, building_count: int, rooms: int,
    reads: int, bookings: int,
) -> Row:  # fmt: skip
    endpoints = stack.endpoints
    api = functions_client(endpoints, client_token(endpoints))
    anon = functions_client(endpoints)
    browser = httpx.Client(
        verify=ssl.create_default_context(cafile=endpoints["caBundle"]), trust_env=False, timeout=30
    )
    run = uuid.uuid4().hex[:6]
    buildings = [f"growth-{run}-{n:02d}" for n in range(building_count)]
    measured = buildings[0]
    tenant = stack.emulator.seed["tenant"]
    connect_application(stack, api, anon, browser, measured, tenant)
    for other in buildings[1:]:
        ensure_building(api, other)
    room = tenant["users"]["boardroom4a"]["mail"].lower()
    calendars = api.get(f"buildings/{measured}/calendars").json()["value"]
    calendar = next(c for c in calendars if c["mailbox"].lower() == room)
    put = api.put(
        f"buildings/{measured}/resources/room",
        json={"name": "Board Room 4A", "kind": "room", "timeZone": "Europe/Amsterdam"},
    )
    assert put.status_code in (200, 201), put.text
    mapped = api.put(
        f"buildings/{measured}/resources/room/mapping",
        json={"calendarId": calendar["id"], "mailbox": room},
    )
    assert mapped.status_code == 200, mapped.text

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=7)
    seed_s = seed(endpoints["storage"], buildings, rooms, day)
    print(
        f"[{label}] seeded {building_count} x {rooms} rooms x {BLOCKS_PER_DAY} blocks "
        f"in {seed_s:.1f} s",
        flush=True,
    )
    floor = floor_p95(stack)
    counter.quiet()
    idle = counter.snapshot()
    time.sleep(2)
    idle_requests = delta(counter.snapshot(), idle)["requests"]

    path = f"buildings/{measured}/availability"
    window = {"from": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "to": (day + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip
    before = counter.snapshot()
    first = api.get(path, params=window)
    assert first.status_code == 200, first.text
    body = first.json()
    blocks = sum(len(r["busy"]) for r in body["resources"])
    assert len(body["resources"]) == rooms + 1 and blocks == rooms * BLOCKS_PER_DAY, (
        len(body["resources"]),
        blocks,
    )
    cold = delta(counter.snapshot(), before)
    before = counter.snapshot()
    read_ms: list[float] = []
    started = time.perf_counter()
    while len(read_ms) < reads and (
        len(read_ms) < 5 or time.perf_counter() - started < READ_BUDGET_SECONDS
    ):
        read_ms.append(timed_ms(lambda: api.get(path, params=window), 200))
    warm = delta(counter.snapshot(), before)

    counter.quiet()
    before_tables, before_graph = counter.snapshot(), graph_stats(stack)["requests"]

    def create(n: int) -> httpx.Response:
        start = day + timedelta(minutes=15 * n)  # 00:00 UTC onwards: clear of the seeded blocks
        booking = {
            "resourceId": "room",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "booker": {"email": "ann@fabrikam.example", "name": "Ann"},
        }
        return api.post(
            f"buildings/{measured}/bookings", json=booking,
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip

    booking_ms = [timed_ms(functools.partial(create, n), 201) for n in range(bookings)]
    counter.quiet()
    time.sleep(0 if counter.snapshot()["requests"] else 3)  # --direct: nothing counted to wait on
    booked_tables = delta(counter.snapshot(), before_tables)
    after_graph = graph_stats(stack)["requests"]
    by_endpoint = after_graph["byEndpoint"]
    ours = sum(
        by_endpoint.get(k, 0) - before_graph["byEndpoint"].get(k, 0) for k in BOOKING_ENDPOINTS
    )
    proxy_ms = proxy_cost_ms(stack, measured)
    print(
        f"[{label}] table requests while idle for 2 s: {idle_requests}\n"
        f"  per cold read: {by_table(cold, 1)}\n  per warm read: {by_table(warm, len(read_ms))}\n"
        f"  per booking: {by_table(booked_tables, bookings)}",
        flush=True,
    )
    for client in (api, anon, browser):
        client.close()
    return Row(
        shape=label,
        floor_p95=floor,
        seed_s=seed_s,
        blocks=blocks,
        read_p50=statistics.median(read_ms),
        read_p95=pct(read_ms, 0.95),
        reads=len(read_ms),
        cold_table_requests=cold["requests"],
        warm_table_requests=warm["requests"] / len(read_ms),
        warm_kib=warm["bytes_down"] / len(read_ms) / 1024,
        booking_p50=statistics.median(booking_ms),
        booking_p95=pct(booking_ms, 0.95),
        bookings=bookings,
        graph_booking=ours / bookings,
        graph_all=(after_graph["total"] - before_graph["total"]) / bookings,
        table_requests_per_booking=booked_tables["requests"] / bookings,
        table_ops_per_booking=booked_tables["operations"] / bookings,
        proxy_ms=proxy_ms,
    )


def print_table(rows: list[Row]) -> None:
    header = (
        "| shape | floor p95 ms | avail p50 / p95 ms (n) | table req/read cold, warm (KiB) "
        "| booking p50 / p95 ms (n) | Graph req/booking: booking, all | table req, ops/booking |"
    )
    print("\n" + header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for r in rows:
        reads = f"{r.cold_table_requests}, {r.warm_table_requests:.1f} ({r.warm_kib:.0f})"
        writes = f"{r.table_requests_per_booking:.1f}, {r.table_ops_per_booking:.1f}"
        print(
            f"| {r.shape} | {r.floor_p95:.1f} | {r.read_p50:.0f} / {r.read_p95:.0f} ({r.reads}) "
            f"| {reads if r.counted else '- (--direct)'} "
            f"| {r.booking_p50:.0f} / {r.booking_p95:.0f} ({r.bookings}) "
            f"| {r.graph_booking:.2f}, {r.graph_all:.2f} "
            f"| {writes if r.counted else '-'} |"
        )
    print(
        f"\navailability: the measured building's whole day ({BLOCKS_PER_DAY} blocks per room); "
        "cold = the first read after seeding, warm = the mean of the timed reads after it. "
        "Table requests as Azurite received them through the counting proxy (a $batch is one "
        "request, its parts are ops); KiB = the answers' bytes per warm read. The proxy adds "
        + ", ".join(f"{r.proxy_ms:.2f}" for r in rows)
        + " ms per table request (median point read through it minus direct, per shape). "
        f"cpu cores: {os.cpu_count()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--reads", type=int, default=30, help="availability reads per shape")
    parser.add_argument("--bookings", type=int, default=20, help="booking creates per shape")
    parser.add_argument("--shapes", type=int, default=len(SHAPES), help="the first N shapes")
    parser.add_argument(
        "--direct", action="store_true",
        help="the host straight on Azurite (no counts): shows what the proxy costs the timings",
    )  # fmt: skip
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = [
        run_shape(*shape, args.reads, args.bookings, args.direct) for shape in SHAPES[: args.shapes]
    ]
    print_table(rows)
    print(f"whole run: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
