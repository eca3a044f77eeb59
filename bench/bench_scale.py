"""Scale, the SpaceIQ case (issue 17): a tenant of `--rooms` room mailboxes in room lists, an
application connect, every room mapped in one bulk request by room email, and the first full sync
of each, with the Graph emulator enforcing Outlook's limits.

Starts the whole local stack (Azurite, the Microsoft 365 emulator seeded with the demo scenario
plus the generated rooms (devstack/m365/scale.py), the Functions host running the unmodified app,
default settings). The emulator enforces 4 concurrent requests and 10,000 per 10 minutes per app
and mailbox (its defaults, Microsoft's figures) and, stricter than Graph's global 130,000 per 10 s,
the issue's 2,000 requests per second per app. Then:

1. connect the building in application mode (admin consent, through our connect routes);
2. `POST /buildings/{b}/mappings:import` with one row per room (resource id = the room's
   nickname, mailbox = its address), timed;
3. poll `GET /buildings/{b}/sync` every 2 s until every mapping is `synced` (or `--timeout`).

Prints time to every room synced, Graph requests (and per room), 429s the emulator answered, and
throttling errors that surfaced (mappings in `error`, poison messages), each beside its target.

Usage: python bench/bench_scale.py [--rooms 1000] [--timeout 900] [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import print_host_floor
from devstack.m365.scale import room_nick, scaled_scenario
from devstack.stack import Stack, start_stack

TARGET_SECONDS = 600.0  # issue 17: every room Synced within 10 minutes on this machine
APP_PER_SECOND = 2000  # issue 17's per-app rate (Graph documents 130,000 per 10 s)


def emulator_counts(stack: Stack) -> tuple[int, int]:
    """(Graph requests answered, of which 429) since the emulator started."""
    stats = stack.emulator.control.get("stats").json()
    by_status = stats["requests"].get("byStatus", {})
    return int(stats["requests"]["total"]), int(by_status.get("429", 0))


def sync_health(api: httpx.Client, building: str) -> dict[str, Any]:
    response = api.get(f"buildings/{building}/sync", timeout=120)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def run(stack: Stack, api: httpx.Client, rooms: int, timeout: float) -> None:
    from tests.e2e.conftest import functions_client
    from tests.e2e.sync_fixtures import connect_building_application

    control = stack.emulator.control
    throttle = {"perApp": APP_PER_SECOND, "perAppSeconds": 1, "reset": True}
    assert control.post("graph/faults", json={"throttle": throttle}).status_code == 200
    building = f"scale-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    with functions_client(stack.endpoints) as anonymous:
        connect_building_application(stack, api, anonymous, building)
    connected = time.perf_counter() - started
    users = stack.emulator.seed["tenant"]["users"]
    rows = [
        {"resourceId": room_nick(n), "mailbox": users[room_nick(n)]["mail"].lower()}
        for n in range(rooms)
    ]
    lists = api.get(f"buildings/{building}/roomlists")
    assert lists.status_code == 200, lists.text
    requests0, throttled0 = emulator_counts(stack)
    began = time.perf_counter()
    mapped = api.post(
        f"buildings/{building}/mappings:import",
        json={"timeZone": "Europe/Amsterdam", "mappings": rows},
        timeout=max(timeout, 120),
    )
    map_seconds = time.perf_counter() - began
    assert mapped.status_code == 200, mapped.text[:2000]
    report = mapped.json()
    requests1, _ = emulator_counts(stack)
    print(f"connect (application, admin consent): {connected:.1f} s; "
          f"{len(lists.json()['value'])} room lists")  # fmt: skip
    print(f"bulk map {rooms} rooms by email: {map_seconds:.1f} s, {len(report['created'])} created, "
          f"{len(report['updated'])} updated, {len(report['unchanged'])} unchanged, "
          f"{requests1 - requests0} Graph requests")  # fmt: skip

    statuses: Counter[str] = Counter()
    health: dict[str, Any] = {}
    last_print = 0.0
    while time.perf_counter() - began < timeout:
        health = sync_health(api, building)
        statuses = Counter(m["status"] for m in health["mappings"])
        elapsed = time.perf_counter() - began
        if statuses.get("synced", 0) >= rooms:
            break
        if elapsed - last_print >= 30:
            last_print = elapsed
            print(f"  {elapsed:6.0f} s: {dict(statuses)}", flush=True)
        time.sleep(2)
    all_synced = time.perf_counter() - began
    requests2, throttled2 = emulator_counts(stack)
    errors = [m for m in health.get("mappings", []) if m["status"] == "error"]
    reasons = Counter(str(m.get("reason")) for m in errors)
    synced = statuses.get("synced", 0)
    used = requests2 - requests0
    surfaced = len(errors) + int(health.get("poisonMessages", 0))
    done = "every room synced" if synced >= rooms else f"NOT DONE: {dict(statuses)}"
    print(f"\n{'time from bulk map to every room synced':<46} {all_synced:8.1f} s   "
          f"(target <= {TARGET_SECONDS:.0f} s; {done})")  # fmt: skip
    print(f"{'Graph requests (bulk map + first sync)':<46} {used:8d}     "
          f"({used / max(1, rooms):.1f} per room)")  # fmt: skip
    print(f"{'429s answered by the emulator':<46} {throttled2 - throttled0:8d}     "
          "(seen and retried by our client; no target)")  # fmt: skip
    print(f"{'throttling errors surfaced (error + poison)':<46} {surfaced:8d}     "
          f"(target 0){'; reasons ' + json.dumps(reasons) if reasons else ''}")  # fmt: skip
    print(f"({os.cpu_count()} CPUs; emulator limits: 4 concurrent and 10,000 per 10 min per app "
          f"and mailbox, {APP_PER_SECOND} per s per app)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--state-dir", help="keep the stack's files (logs) here")
    args = parser.parse_args()
    from tests.e2e.conftest import client_token, functions_client
    from tests.e2e.sync_fixtures import service_env

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        state = Path(args.state_dir or tmp)
        state.mkdir(parents=True, exist_ok=True)
        scenario = state / f"scale-{args.rooms}.json"
        scenario.write_text(json.dumps(scaled_scenario(args.rooms)))
        t = time.perf_counter()
        stack = start_stack(state, scenario=scenario)
        try:
            with (
                service_env(stack),
                functions_client(stack.endpoints, client_token(stack.endpoints)) as api,
            ):
                print(
                    f"stack with {args.rooms} generated rooms up in {time.perf_counter() - t:.1f} s"
                )
                print_host_floor(stack)
                run(stack, api, args.rooms, args.timeout)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
