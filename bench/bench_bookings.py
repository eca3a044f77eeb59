"""Booking create through the HTTP API of the local stack (availability: bench_availability.py).

Starts its own stack (devstack.stack.start_stack: Azurite, the Microsoft 365 emulator, the
Functions host), connects a building to the demo tenant (application mode) and maps one room, then
measures, through the HTTP API:

- for scale, the local host's floor (bench/floor.py: a GET of one building, auth + one read);
- booking create latency (p50 / p95) on the mapped room, and the Graph requests per booking read
  from the emulator's `GET /_emulator/stats` (booking endpoints: the POST and the calendarView
  after it; sync's own delta rounds are reported apart), each beside its issue 17 target.

    .venv/bin/python bench/bench_bookings.py      (or: make bench / python -m bench bench_bookings)
"""

from __future__ import annotations

import os
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.bench_webhook import disabling, function_names, start_worker_host
from bench.floor import print_host_floor
from devstack.stack import start_stack
from tests.e2e.booking_fixtures import connect_application, graph_stats
from tests.e2e.conftest import client_token, functions_client

BOOKINGS = 50
BOOKING_ENDPOINTS = (
    "GET /users/{id}/calendars/{id}/calendarView",
    "POST /users/{id}/calendars/{id}/events",
)
CREATE_P95_TARGET_MS = 250  # issue 17
CREATE_GRAPH_TARGET = 2.0  # Graph requests per booking, issue 17


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(label: str, ms: list[float], extra: str = "") -> None:
    print(
        f"{label:<46} p50 {statistics.median(ms):7.1f} ms   p95 {pct(ms, 0.95):7.1f} ms"
        f"   (n={len(ms)}){extra}",
        flush=True,
    )


def main() -> None:
    one_host = "--one-host" in sys.argv[1:]
    http, other = function_names()
    # As Flex Consumption runs them (bench_webhook.start_worker_host): the HTTP functions on a
    # host of their own, so each create's own notification and the sync round it causes run on
    # the worker host, not beside the next create. --one-host: everything on one host.
    extra = {} if one_host else disabling(other)
    with (
        tempfile.TemporaryDirectory() as state,
        start_stack(Path(state), extra_settings=extra) as stack,
    ):
        worker = None if one_host else start_worker_host(stack, http, other)
        try:
            run(stack)
        finally:
            if worker is not None:
                worker.stop()
        print(f"hosts: {'one' if one_host else 'HTTP functions apart from queue and timer ones'}")


def run(stack: Any) -> None:
    """Connect, map one room, print the floor, then time the creates."""
    endpoints = stack.endpoints
    api = functions_client(endpoints, client_token(endpoints))
    anon = functions_client(endpoints)
    browser = httpx.Client(
        verify=ssl.create_default_context(cafile=endpoints["caBundle"]), trust_env=False,
        timeout=30,
    )  # fmt: skip
    building = f"bench-{uuid.uuid4().hex[:8]}"
    tenant = stack.emulator.seed["tenant"]
    connect_application(stack, api, anon, browser, building, tenant)
    room = tenant["users"]["boardroom4a"]["mail"].lower()
    calendars = api.get(f"buildings/{building}/calendars").json()["value"]
    calendar = next(c for c in calendars if c["mailbox"].lower() == room)
    api.put(f"buildings/{building}/resources/room",
            json={"name": "Board Room 4A", "kind": "room", "timeZone": "Europe/Amsterdam"})  # fmt: skip
    mapped = api.put(f"buildings/{building}/resources/room/mapping",
                     json={"calendarId": calendar["id"], "mailbox": room})  # fmt: skip
    assert mapped.status_code == 200, mapped.text

    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=14)
    print_host_floor(stack)
    bench_booking_create(stack, api, building, day + timedelta(days=1))
    print(f"cpu cores: {os.cpu_count()}", flush=True)


def bench_booking_create(stack: Any, api: httpx.Client, building: str, day: datetime) -> None:
    """BOOKINGS creates one after another on the mapped room (free 15-minute slots of `day`),
    each expected 201 and synced: latency through the API, and Graph requests per booking from the
    emulator's stats (the booking endpoints; sync's own rounds meanwhile are reported apart)."""
    before = graph_stats(stack)["requests"]
    latencies = []
    for n in range(BOOKINGS):
        start = day + timedelta(hours=n // 4, minutes=15 * (n % 4))
        body = {
            "resourceId": "room",
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "booker": {"email": "ann@fabrikam.example", "name": "Ann"},
        }
        t0 = time.perf_counter()
        response = api.post(
            f"buildings/{building}/bookings", json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        latencies.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 201 and response.json()["syncState"] == "synced", (
            response.text
        )
    after = graph_stats(stack)["requests"]
    by_endpoint = {
        k: after["byEndpoint"].get(k, 0) - before["byEndpoint"].get(k, 0)
        for k in after["byEndpoint"]
    }
    ours = sum(by_endpoint.get(k, 0) for k in BOOKING_ENDPOINTS)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    verdict = "met" if pct(latencies, 0.95) <= CREATE_P95_TARGET_MS else "NOT met"
    report(
        "booking create",
        latencies,
        f"  target p95 <= {CREATE_P95_TARGET_MS} ms: {verdict} "
        f"(load average {load} on {os.cpu_count()} cores)",
    )
    print(
        f"{'booking create: Graph requests/booking':<46} {ours / BOOKINGS:.2f}"
        f"   target <= {CREATE_GRAPH_TARGET:.1f}"
        f"   ({', '.join(f'{k}: {by_endpoint.get(k, 0)}' for k in BOOKING_ENDPOINTS)}); "
        f"all Graph requests meanwhile incl. sync: {after['total'] - before['total']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
