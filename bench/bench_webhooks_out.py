"""Outgoing webhooks (issue 16): 1,000 events to one receiver; delivery latency and throughput.

Starts the whole local stack (Azurite, the Microsoft 365 emulator, the Functions host running the
unmodified app; the delivery queue polled every 100 ms as in the e2e tests), creates a webhook on
a loopback receiver that verifies every request with the `standardwebhooks` library, then hands
over 1,000 events through `POST .../webhooks/{id}:ping` (8 at a time: each writes the delivery
and its queue message, as every producer does) and waits until all arrived. Prints delivery
latency p50/p99 (from the hand-over's answer to the receiver) and throughput (events per second
from the first hand-over to the last arrival), and checks every request verified and each event
arrived (duplicates, allowed by at-least-once, are counted). A second phase hands 1,000 events
over at once through the producers' `emit` (in this process, on the stack's storage) to a second
receiver and prints the delivery side's own throughput.

Usage: python bench/bench_webhooks_out.py [--events N] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import print_host_floor
from devstack.stack import start_stack


def wait_all(receiver: object, ids: set[str], timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if {r.id for r in receiver.requests()} >= ids:  # type: ignore[attr-defined]
            return
        time.sleep(0.05)


def burst_phase(stack: object, building: str, count: int) -> str:
    """A second receiver gets `count` events handed over at once by a producer (the app's own
    `emit` in this process, on the stack's storage): the delivery side's own throughput."""
    from shared import wiring
    from shared.webhooks.events import stable_id
    from shared.webhooks.model import Event
    from tests.e2e.webhook_fixtures import Receiver

    receiver = Receiver().start()
    try:
        with stack.app_environment():  # type: ignore[attr-defined]
            from shared.webhooks.service import create_webhook

            made = create_webhook(wiring.webhook_deps(), building + "-burst",
                                  {"url": receiver.url, "events": ["booking.synced"]})  # fmt: skip
            receiver.secrets["s"] = made["secret"]
            events = [Event("booking.synced", stable_id("bench", i, time.time()),
                            {"bookingId": f"b{i}", "resourceId": "room", "outlookEventId": None})
                      for i in range(count)]  # fmt: skip
            started = time.time()
            with ThreadPoolExecutor(max_workers=16) as pool:
                list(pool.map(lambda e: wiring.emit_webhook_events(building + "-burst", [e]),
                              events))  # fmt: skip
            handed = time.time() - started
            wait_all(receiver, {e.id for e in events})
        requests = receiver.requests()
    finally:
        receiver.stop()
    last = max(r.at for r in requests)
    ok = all(r.verified_with == ["s"] for r in requests)
    return (f"burst: {count} handed over in {handed:.1f} s by a producer, all delivered in "
            f"{last - started:.1f} s: {count / (last - started):.0f} events/s"
            f"{'' if ok else ' (UNVERIFIED requests!)'}")  # fmt: skip


def main() -> int:
    from tests.e2e.building_fixtures import ensure_building
    from tests.e2e.conftest import client_token, functions_client
    from tests.e2e.webhook_fixtures import WEBHOOK_SETTINGS, Receiver

    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    state = args.state_dir or Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    receiver = Receiver().start()
    with (
        start_stack(state, extra_settings=WEBHOOK_SETTINGS) as stack,
        functions_client(stack.endpoints, client_token(stack.endpoints)) as api,
    ):
        print_host_floor(stack)
        building = "bench-webhooks"
        ensure_building(api, building)
        made = api.post(f"buildings/{building}/webhooks", json={"url": receiver.url})
        assert made.status_code == 201, made.text
        webhook = made.json()["id"]
        receiver.secrets["s"] = made.json()["secret"]
        handed: dict[str, float] = {}

        def ping(_: int) -> None:
            sent = api.post(f"buildings/{building}/webhooks/{webhook}:ping")
            assert sent.status_code == 202, sent.text
            handed[sent.json()["eventId"]] = time.time()

        started = time.time()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(ping, range(args.events)))
        handover_s = time.time() - started
        wait_all(receiver, set(handed))
        requests = receiver.requests()
        burst = burst_phase(stack, building, args.events)
    receiver.stop()
    first: dict[str, float] = {}
    for r in requests:
        first.setdefault(r.id, r.at)
    missing = set(handed) - set(first)
    latencies = sorted((first[i] - handed[i]) * 1000 for i in handed if i in first)
    last = max(first.values()) if first else started
    unverified = [r for r in requests if r.verified_with != ["s"]]
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
    print(f"events: {args.events}, delivered: {len(first)}, requests: {len(requests)} "
          f"(duplicates {len(requests) - len(first)}), unverified: {len(unverified)}, "
          f"missing: {len(missing)}")  # fmt: skip
    print(f"hand-over: {handover_s:.1f} s ({args.events / handover_s:.0f}/s, 8 at a time)")
    print(f"delivery latency: p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {latencies[-1]:.0f} ms")
    print(f"throughput: {len(first) / (last - started):.0f} events/s "
          f"({len(first)} in {last - started:.1f} s, first hand-over to last arrival)")  # fmt: skip
    print(burst)
    return 1 if missing or unverified or "UNVERIFIED" in burst else 0


if __name__ == "__main__":
    raise SystemExit(main())
