"""The go-live check end to end (issue 14): `POST /buildings/{b}/checks` on the local stack, the
queue worker running it against the Graph emulator, the real booking, webhook and sync paths.

One stack for the module, with a short Outlook deadline (`BB_CHECKS_OUTLOOK_SECONDS`) so the
failure cases fail on time quickly. Buildings: the demo building (application mode, Board Room
4A) for the clean run and the injected Graph faults; one more application building whose room
was mapped while Graph could not validate the webhook; one delegated building (the admin's own
calendar) whose grant is revoked. After every run, passing or failing: no test event in Outlook
(the emulator's control API), no test booking or busy block in the tables (Azurite).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    SYNC_SETTINGS,
    connect_building_application,
    connect_building_delegated,
    map_discovered,
    outlook,
    service_env,
    wait_sync_quiet,
)

pytestmark = pytest.mark.timeout(150)

OUTLOOK_SECONDS = 5
SETTINGS = {**SYNC_SETTINGS, "BB_CHECKS_OUTLOOK_SECONDS": str(OUTLOOK_SECONDS)}
PASSING = ["connection", "notifications", "delta", "calendar", "write_through",
           "outlook_to_platform", "cancel"]  # fmt: skip


@pytest.fixture(scope="module")
def kstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("checks-stack"), extra_settings=SETTINGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def kapi(kstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(kstack.endpoints, client_token(kstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def env(kstack: Stack) -> Iterator[None]:
    with service_env(kstack):
        yield


@pytest.fixture(scope="module")
def demo(kstack: Stack, kapi: httpx.Client, env: None) -> dict[str, str]:
    """The demo building, connected (application consent) with Board Room 4A mapped."""
    building = kstack.endpoints["buildingId"]
    with functions_client(kstack.endpoints) as anon:
        connect_building_application(kstack, kapi, anon, building)
    room = kstack.emulator.seed["tenant"]["users"]["boardroom4a"]["mail"].lower()
    map_discovered(kapi, building, "boardroom-4a",
                   lambda c: c["mailbox"] == room and c["kind"] == "room")  # fmt: skip
    wait_sync_quiet(kstack, [building], timeout=20)
    return {"building": building, "resource": "boardroom-4a", "mailbox": room}


# ---------------------------------------------------------------- helpers


def run(api: httpx.Client, building: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST a check (202 at once), then poll it until it has finished."""
    started = api.post(f"buildings/{building}/checks", json=body or {})
    assert started.status_code == 202, started.text
    check = started.json()
    assert check["status"] == "queued" and started.headers["Location"].endswith(check["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        got = api.get(f"buildings/{building}/checks/{check['id']}")
        assert got.status_code == 200, got.text
        if got.json()["status"] in ("passed", "failed", "abandoned"):
            return dict(got.json())
        time.sleep(0.2)
    raise AssertionError(f"check {check['id']} did not finish: {got.json()}")


def steps_of(check: dict[str, Any], resource: str) -> dict[str, dict[str, Any]]:
    found = [r for r in check["resources"] if r["resourceId"] == resource]
    assert found, check
    return {s["name"]: s for s in found[0]["steps"]}


def assert_nothing_left(stack: Stack, check: dict[str, Any], building: str, mailbox: str) -> None:
    """No test event in Outlook, no test booking or busy block in storage; clean-up says clean."""
    from shared.core.checkmarks import CHECK_BOOKER_EMAIL, SUBJECT_PREFIX
    from shared.storage import clients, tablestore

    assert check["cleanup"] == {"status": "clean", "leftovers": []}, check["cleanup"]
    events = outlook(stack, "GET", f"users/{mailbox}/events")
    items = events.get("value", events) if isinstance(events, dict) else events
    marked = [e for e in items if str(e.get("subject") or "").startswith(SUBJECT_PREFIX)
              or str(e.get("transactionId") or "").startswith("bookingbridge-check:")]  # fmt: skip
    assert not marked, marked
    bookings = tablestore.query_all(
        clients.table(tablestore.BOOKINGS), "PartitionKey eq @b", {"b": building}
    )
    assert not [b for b in bookings if b.get("bookerEmail") == CHECK_BOOKER_EMAIL], bookings
    booking_ids = {
        s.get("detail", {}).get("bookingId")
        for r in check["resources"] for s in r["steps"]
    } - {None}  # fmt: skip
    assert not [b for b in bookings if b.get("RowKey") in booking_ids]
    busy = tablestore.query_all(
        clients.table(tablestore.BUSY),
        "PartitionKey ge @lo and PartitionKey lt @hi",
        {"lo": building + "|", "hi": building + "}"},
    )
    ours = [
        b for b in busy
        if "go_live_check" in str(b.get("attribution") or "") or b.get("bookingId") in booking_ids
        or b.get("blockId") in booking_ids
    ]  # fmt: skip
    assert not ours, ours


# ---------------------------------------------------------------- a clean run


def test_a_clean_run_passes_every_step_and_leaves_nothing(
    kstack: Stack, kapi: httpx.Client, demo: dict[str, str]
) -> None:
    building = demo["building"]
    started = kapi.post(f"buildings/{building}/checks", json={})
    assert started.status_code == 202, started.text
    first = started.json()
    # One run per building: a second POST while it runs is a 409 naming the running check.
    again = kapi.post(f"buildings/{building}/checks", json={})
    assert again.status_code == 409, again.text
    assert again.headers["content-type"].startswith("application/problem+json")
    assert again.json()["reason"] == "check_running"
    assert again.json()["runningCheckId"] == first["id"] and first["id"] in again.json()["detail"]
    deadline = time.monotonic() + 60
    while True:
        check = kapi.get(f"buildings/{building}/checks/{first['id']}").json()
        if check["status"] not in ("queued", "running") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert check["status"] == "passed", check
    steps = steps_of(check, demo["resource"])
    assert list(steps) == PASSING
    assert all(s["status"] == "passed" for s in steps.values()), steps
    assert steps["write_through"]["graphRequestIds"], steps["write_through"]
    assert steps["outlook_to_platform"]["detail"]["lagSeconds"] < OUTLOOK_SECONDS
    assert steps["notifications"]["detail"]["mode"] == "notifications"
    assert_nothing_left(kstack, check, building, demo["mailbox"])
    listed = kapi.get(f"buildings/{building}/checks").json()["value"]
    assert listed[0]["id"] == first["id"] and "resources" not in listed[0]
    records = kapi.get(f"buildings/{building}/audit", params={"limit": 200}).json()["value"]
    operations = {r["operation"] for r in records if first["id"] in str(r.get("result"))}
    assert {"check.start", "check.run"} <= operations, operations


# ---------------------------------------------------------------- injected failures


def test_a_calendar_write_403_fails_the_calendar_step_with_the_rbac_fix(
    kstack: Stack, kapi: httpx.Client, demo: dict[str, str]
) -> None:
    outlook(kstack, "POST", "faults", json={
        "method": "POST", "path": "re:/calendars/[^/]+/events$", "status": 403,
        "code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again.",
        "mailbox": demo["mailbox"],
    })  # fmt: skip
    try:
        check = run(kapi, demo["building"])
    finally:
        outlook(kstack, "DELETE", "faults")
    steps = steps_of(check, demo["resource"])
    assert check["status"] == "failed"
    assert steps["calendar"]["status"] == "failed", steps
    assert steps["calendar"]["reason"] == "calendar_write_denied"
    assert "RBAC" in steps["calendar"]["message"] and "management scope" in steps["calendar"]["fix"]
    assert all(steps[n]["status"] == "skipped" for n in ("write_through", "outlook_to_platform",
                                                         "cancel"))  # fmt: skip
    assert_nothing_left(kstack, check, demo["building"], demo["mailbox"])


def test_dropped_notifications_fail_the_outlook_step_on_time_naming_notifications(
    kstack: Stack, kapi: httpx.Client, demo: dict[str, str]
) -> None:
    outlook(kstack, "POST", "faults", json={"notifications": {"dropRate": 1.0}})
    try:
        check = run(kapi, demo["building"])
    finally:
        outlook(kstack, "DELETE", "faults")
    steps = steps_of(check, demo["resource"])
    assert steps["notifications"]["status"] == "passed"  # the subscription itself is fine
    assert steps["write_through"]["status"] == "passed"
    step = steps["outlook_to_platform"]
    assert step["status"] == "failed" and step["reason"] == "notifications_not_arriving", step
    assert "notification" in step["message"] and "delta still converges" in step["message"]
    assert step["durationMs"] >= OUTLOOK_SECONDS * 1000
    assert_nothing_left(kstack, check, demo["building"], demo["mailbox"])


def test_an_expired_delta_token_fails_the_delta_step(
    kstack: Stack, kapi: httpx.Client, demo: dict[str, str]
) -> None:
    expired = outlook(
        kstack, "POST", "delta/expire", json={"mode": "gone", "user": demo["mailbox"]}
    )
    assert expired["expired"] >= 1
    check = run(kapi, demo["building"])
    steps = steps_of(check, demo["resource"])
    assert (
        steps["delta"]["status"] == "failed" and steps["delta"]["reason"] == "delta_token_expired"
    )
    assert "410" in steps["delta"]["message"] and "/sync" in steps["delta"]["fix"]
    # The next round re-baselines by itself: the Outlook side still converges.
    assert steps["outlook_to_platform"]["status"] == "passed", steps["outlook_to_platform"]
    assert_nothing_left(kstack, check, demo["building"], demo["mailbox"])


def test_an_unreachable_webhook_fails_the_notifications_step(
    kstack: Stack, kapi: httpx.Client, env: None
) -> None:
    building = f"chk-wh-{time.time_ns() % 10**8}"
    with functions_client(kstack.endpoints) as anon:
        connect_building_application(kstack, kapi, anon, building)
    room = kstack.emulator.seed["tenant"]["users"]["huddle4b"]["mail"].lower()
    # What Graph answers when its validation request cannot reach the notification URL.
    outlook(kstack, "POST", "faults", json={
        "method": "POST", "path": "re:^/?subscriptions$", "status": 400, "code": "InvalidRequest",
        "message": "Subscription validation request failed. Notification endpoint must respond "
                   "with 200 OK to validation request.",
    })  # fmt: skip
    try:
        map_discovered(kapi, building, "huddle-4b",
                       lambda c: c["mailbox"] == room and c["kind"] == "room")  # fmt: skip
        wait_sync_quiet(kstack, [building], timeout=20)
    finally:
        outlook(kstack, "DELETE", "faults")
    check = run(kapi, building)
    step = steps_of(check, "huddle-4b")["notifications"]
    assert step["status"] == "failed" and step["reason"] == "webhook_unreachable", step
    assert "could not reach the notification URL" in step["message"]
    assert "BB_PUBLIC_BASE_URL" in step["fix"] and "reachable from the internet" in step["fix"]
    assert_nothing_left(kstack, check, building, room)


def test_revoked_consent_fails_the_connection_step_with_reconnect(
    kstack: Stack, kapi: httpx.Client, env: None
) -> None:
    users = kstack.emulator.seed["tenant"]["users"]
    admin = users["admin"]
    building = f"chk-del-{time.time_ns() % 10**8}"
    with functions_client(kstack.endpoints) as anon:
        connect_building_delegated(kstack, kapi, anon, building, admin["userPrincipalName"])
    map_discovered(kapi, building, "own",
                   lambda c: c["kind"] == "personal" and c["name"] == "Board Room 4A")  # fmt: skip
    wait_sync_quiet(kstack, [building], timeout=20)
    outlook(kstack, "POST", "grants/revoke",
            json={"tenantId": kstack.endpoints["tenantId"], "user": admin["id"]})  # fmt: skip
    check = run(kapi, building)
    steps = steps_of(check, "own")
    step = steps["connection"]
    assert step["status"] == "failed" and step["reason"] == "consent_revoked", step
    assert "/connection" in step["fix"] and "Reconnect" in step["fix"]
    assert all(s["status"] == "skipped" for n, s in steps.items() if n != "connection")
    assert_nothing_left(kstack, check, building, admin["mail"].lower())


# ---------------------------------------------------------------- a run that dies


class Crash(BaseException):
    """The worker process dying mid-run: no `except Exception` and no clean-up sees it."""


def test_a_crashed_run_leaves_nothing_after_the_next_sweep(
    kstack: Stack, demo: dict[str, str]
) -> None:
    from shared import wiring
    from shared.checks.runner import get_check, run_check, start_check
    from shared.checks.store import CheckStore
    from shared.checks.sweeper import sweep
    from shared.core.checkmarks import SUBJECT_PREFIX

    class Dying(CheckStore):
        beats = 0

        def heartbeat(self, building: str, run_id: str, now: Any) -> None:
            super().heartbeat(building, run_id, now)
            Dying.beats += 1
            if Dying.beats == 7:  # the run's start, then after each of the first 6 steps
                raise Crash

    deps = wiring.check_deps()
    # Run it here, not on the host's queue, so it can die after the Outlook step.
    mine = replace(deps, store=Dying(deps.store.table), enqueue_run=lambda b, r: None)
    building = demo["building"]
    started = start_check(mine, building, {}, actor="test")
    with pytest.raises(Crash):
        run_check(mine, building, started["id"])
    # It died with its test booking and its Outlook test event in place.
    events = outlook(kstack, "GET", f"users/{demo['mailbox']}/events")
    items = events.get("value", events) if isinstance(events, dict) else events
    assert [e for e in items if str(e.get("subject") or "").startswith(SUBJECT_PREFIX)]
    assert get_check(deps, building, started["id"])["status"] == "running"
    # Not dead yet for the sweeper; then as if `stale_after` had passed.
    assert sweep(deps).cleaned == 0
    later = deps.now() + deps.config.stale_after + timedelta(seconds=1)
    result = sweep(replace(deps, now=lambda: later))
    assert result.abandoned == 1 and result.still_left == 0, result
    check = get_check(deps, building, started["id"])
    assert check["status"] == "abandoned"
    assert check["cleanup"] == {"status": "clean", "leftovers": [], "by": "sweeper"}
    assert_nothing_left(kstack, {**check, "cleanup": {"status": "clean", "leftovers": []}},
                        building, demo["mailbox"])  # fmt: skip
    assert deps.store.lock(building) is None  # the next POST may start


def test_a_read_only_connection_runs_the_read_steps_only(
    kstack: Stack, demo: dict[str, str]
) -> None:
    """An application connection granted Calendars.Read alone (no write permission): the write
    steps and the probe write are skipped, the run passes, nothing is written."""
    from shared import wiring
    from shared.checks.runner import get_check, run_check, start_check

    deps = wiring.check_deps()
    real = deps.connections

    class ReadOnly:
        def get(self, building: str) -> Any:
            found = real.get(building)
            return replace(found, scopes=frozenset({"Calendars.Read"})) if found else None

    mine = replace(deps, connections=ReadOnly(), enqueue_run=lambda b, r: None)
    building = demo["building"]
    started = start_check(mine, building, {}, actor="test")
    status = run_check(mine, building, started["id"])
    check = get_check(deps, building, started["id"])
    assert status == "passed", check
    steps = steps_of(check, demo["resource"])
    assert [n for n, s in steps.items() if s["status"] == "passed"] == [
        "connection", "notifications", "delta", "calendar",
    ]  # fmt: skip
    assert steps["connection"]["detail"]["readOnly"] is True
    assert steps["calendar"]["detail"]["probe"].startswith("skipped")
    for name in ("write_through", "outlook_to_platform", "cancel"):
        assert (
            steps[name]["status"] == "skipped" and steps[name]["reason"] == "read_only_connection"
        )
    assert_nothing_left(kstack, check, building, demo["mailbox"])
