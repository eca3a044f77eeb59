"""The go-live check's duration (issue 14): one run over 1 mapped resource, one over 20.

Starts the whole local stack (Azurite, the Microsoft 365 emulator, the Functions host running the
unmodified app, default settings: `BB_CHECKS_CONCURRENCY` 4), seeds a fresh copy of the demo
tenant with 20 more room mailboxes (`room01@` … `room20@`, in the room list, admin consent as in
the demo), connects one building in application mode with one room mapped and another with the
20 new rooms mapped, then runs `POST /buildings/{b}/checks` on each and polls `GET` until it is
done. Prints the wall time from POST to finished, the run's own duration, each step's median
and the Outlook → platform lag (notification path), and checks every step passed and the
clean-up was clean.

Usage: python bench/bench_checks.py [--state-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import print_host_floor
from devstack.stack import Stack, start_stack

ROOMS = 20


def tenant_with_rooms(stack: Stack, count: int) -> dict[str, Any]:
    """A fresh copy of the demo tenant plus `count` room mailboxes (the emulator's seed API)."""
    from tests.e2e.connect_fixtures import DEMO_SCENARIO

    scenario = json.loads(Path(DEMO_SCENARIO).read_text())
    tenant = scenario["tenants"][0]
    tenant.pop("id", None)
    names = [f"room{i:02d}" for i in range(1, count + 1)]
    tenant["users"].extend(
        {"mailNickname": n, "displayName": f"Room {n[4:]}", "type": "room",
         "room": {"capacity": 6, "building": "HQ", "floorNumber": 2, "bookingType": "standard"}}
        for n in names
    )  # fmt: skip
    tenant["roomLists"][0]["rooms"].extend(names)
    text = json.dumps({"tenants": [tenant]})
    for key, app in stack.emulator.seed["apps"].items():
        text = text.replace(f'"app": "{key}"', f'"app": "{app["clientId"]}"')
        text = text.replace(f'"resource": "{key}"', f'"resource": "{app["clientId"]}"')
    return dict(stack.emulator.seed_scenario(json.loads(text), fresh=True)["tenant"])


def building_with(
    stack: Stack, api: httpx.Client, anon: httpx.Client, tenant: dict[str, Any], rooms: list[str]
) -> str:
    from tests.e2e.booking_fixtures import connect_application

    building = f"bench-chk-{uuid.uuid4().hex[:8]}"
    context = ssl.create_default_context(cafile=stack.endpoints["caBundle"])
    with httpx.Client(verify=context, trust_env=False, timeout=30) as browser:
        connect_application(stack, api, anon, browser, building, tenant)
    listed = api.get(f"buildings/{building}/calendars")
    assert listed.status_code == 200, listed.text
    by_mailbox = {
        c["mailbox"].lower(): c for c in listed.json()["value"] if c.get("kind") == "room"
    }
    for room in rooms:
        mailbox = tenant["users"][room]["mail"].lower()
        calendar = by_mailbox[mailbox]
        put = api.put(f"buildings/{building}/resources/{room}",
                      json={"name": calendar["name"], "kind": "room", "timeZone": "Europe/Amsterdam"})  # fmt: skip
        assert put.status_code in (200, 201), put.text
        mapped = api.put(f"buildings/{building}/resources/{room}/mapping",
                         json={"calendarId": calendar["id"], "mailbox": mailbox})  # fmt: skip
        assert mapped.status_code == 200, mapped.text
    return building


def run_check(api: httpx.Client, building: str) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    started = api.post(f"buildings/{building}/checks", json={})
    assert started.status_code == 202, started.text
    check_id = started.json()["id"]
    while True:
        check = api.get(f"buildings/{building}/checks/{check_id}").json()
        if check["status"] not in ("queued", "running"):
            return time.monotonic() - t0, check
        if time.monotonic() - t0 > 600:
            raise AssertionError(f"check {check_id} did not finish")
        time.sleep(0.1)


def report(label: str, wall: float, check: dict[str, Any]) -> bool:
    steps: dict[str, list[int]] = {}
    lags: list[float] = []
    bad = []
    for resource in check["resources"]:
        for step in resource["steps"]:
            steps.setdefault(step["name"], []).append(step["durationMs"])
            if step["status"] != "passed":
                bad.append(f"{resource['resourceId']}/{step['name']}: {step['reason']}")
            if "lagSeconds" in step["detail"]:
                lags.append(float(step["detail"]["lagSeconds"]))
    print(f"{label}: {wall:.2f} s from POST to finished (run {check['durationMs'] / 1000:.2f} s), "
          f"status {check['status']}, clean-up {check['cleanup']['status']}")  # fmt: skip
    medians = ", ".join(f"{n} {statistics.median(v):.0f}" for n, v in steps.items())
    print(f"   step medians (ms): {medians}")
    if lags:
        print(f"   Outlook -> platform lag: median {statistics.median(lags):.2f} s, "
              f"max {max(lags):.2f} s")  # fmt: skip
    for line in bad:
        print(f"   !! {line}")
    return check["status"] == "passed" and check["cleanup"]["status"] == "clean"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=None)
    args = parser.parse_args()
    from tests.e2e.conftest import client_token, functions_client

    state = args.state_dir or Path(tempfile.mkdtemp(prefix="bench-checks-"))
    stack = start_stack(state)
    try:
        with functions_client(stack.endpoints, client_token(stack.endpoints)) as api, \
                functions_client(stack.endpoints) as anon:  # fmt: skip
            print_host_floor(stack)
            tenant = tenant_with_rooms(stack, ROOMS)
            one = building_with(stack, api, anon, tenant, ["boardroom4a"])
            many = building_with(
                stack, api, anon, tenant, [f"room{i:02d}" for i in range(1, ROOMS + 1)]
            )
            time.sleep(3)  # the mappings' first sync rounds (baselines, subscriptions) settle
            ok = report("1 mapped resource", *run_check(api, one))
            ok = report(f"{ROOMS} mapped resources (BB_CHECKS_CONCURRENCY 4)",
                        *run_check(api, many)) and ok  # fmt: skip
    finally:
        stack.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
