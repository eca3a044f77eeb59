"""The admin console's Go-live check page in a real browser (issue 14's "the console gets a Go-live
check button showing the steps live", in issue 13's console).

The demo admin, signed in through the emulator, opens the page from the Microsoft 365 tile, runs
the check and watches every step turn passed as the run goes on, until the run ends passed and
clean; the page passes axe-core and fits 390 px. A second check started while one runs is a 409
explained with a link to the running one. A step made to fail (Graph refusing writes) shows its
reason in words, the sentence and the fix. Buildings are connected and mapped behind the console's
back, as test_console_sync.py does; the fixtures are console_fixtures.py's.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.console_fixtures import (
    anonymous_api,
    check_a11y,
    chromium,
    console_stack,
    demo_user,
    open_page,
    page,
    portal_api,
    shot,
    sign_in,
    wait_heading,
)
from tests.e2e.sync_fixtures import connect_building_application, map_room, new_building, outlook

__all__ = ["anonymous_api", "chromium", "console_stack", "page", "portal_api"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

STEPS = ["connection", "notifications", "delta", "calendar", "write_through",
         "outlook_to_platform", "cancel"]  # fmt: skip
# A clean check of one resource takes a few seconds on the local stack; a deadline.
RUN_MS = 90_000


def connected_building_with_room(
    stack: Stack, api: httpx.Client, anonymous: httpx.Client, prefix: str, room: str, rid: str
) -> str:
    """A new building connected in application mode with the demo room `room` mapped as `rid`."""
    building = new_building(prefix, api, "Europe/Amsterdam")  # the rooms' zone, shown on the page
    connect_building_application(stack, api, anonymous, building)
    map_room(api, building, rid, demo_user(stack, room)["userPrincipalName"].lower())
    wait_synced(api, building, rid)
    return building


def wait_synced(api: httpx.Client, building: str, rid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        sync = api.get(f"buildings/{building}/resources/{rid}").json()["sync"]
        if sync["status"] == "synced":
            return
        assert time.monotonic() < deadline, sync
        time.sleep(0.2)


def wait_finished(api: httpx.Client, building: str, check_id: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        check = api.get(f"buildings/{building}/checks/{check_id}").json()
        if check["status"] in ("passed", "failed", "abandoned"):
            return check
        assert time.monotonic() < deadline, check
        time.sleep(0.3)


# What the page shows of a run, read in one go: the run's status and each step row's status.
SNAPSHOT = """rid => {
  const run = document.querySelector('[data-check-id]');
  if (!run) return null;
  const rows = [...run.querySelectorAll(`[data-resource-id="${rid}"] [data-step]`)];
  return {
    id: run.getAttribute('data-check-id'),
    status: run.getAttribute('data-check-status'),
    cleanup: run.getAttribute('data-cleanup'),
    steps: Object.fromEntries(rows.map(r => [r.getAttribute('data-step'), r.getAttribute('data-status')])),
  };
}"""


def test_run_the_check_from_the_console_and_see_every_step_pass_live(
    page: Any, console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> None:
    rid = "boardroom-4a"
    b = connected_building_with_room(
        console_stack, portal_api, anonymous_api, "cg", "boardroom4a", rid
    )
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/m365")
    open_page(page, console_stack, b, "m365", "Microsoft 365")
    # The connected tile leads to the check.
    page.get_by_role("link", name="Run the go-live check").click()
    wait_heading(page, "Go-live check")
    page.wait_for_function("() => !document.querySelector('main[aria-busy=true]')")
    assert page.locator("nav [aria-current=page]").inner_text() == "Go-live check"
    # Times in the building's zone, with the zone shown (the room is in Amsterdam).
    assert "Europe/Amsterdam" in page.locator("[data-zone]").inner_text()
    # Every mapped resource is chosen by default.
    assert page.get_by_label("boardroom-4a", exact=False).is_checked()
    check_a11y(page, "checks (before a run)")

    page.get_by_role("button", name="Run go-live check").click()
    page.locator("[data-check-id]").wait_for()
    # Watch the page (not the API) until the run is over: the steps must turn passed one after
    # another while the run goes on, each seen before the run ended.
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + RUN_MS / 1000
    while True:
        snap = page.evaluate(SNAPSHOT, rid)
        if snap and (not seen or snap != seen[-1]):
            seen.append(snap)
        if snap and snap["status"] in ("passed", "failed", "abandoned"):
            break
        assert time.monotonic() < deadline, seen[-1:]
        page.wait_for_timeout(100)
    final = seen[-1]
    assert final["status"] == "passed", final
    assert final["cleanup"] == "clean", final
    assert final["steps"] == {s: "passed" for s in STEPS}, final
    live = [s for s in seen if s["status"] in ("queued", "running")]
    assert live, seen  # the run was shown while it ran
    # Live: the page showed a state where some steps had passed and the rest had not yet (the
    # Outlook -> platform and cancel steps take a second or two; the page polls every second),
    # and passed steps only ever grew; no step was ever shown failed or skipped.
    passed_counts = [sum(v == "passed" for v in s["steps"].values()) for s in live]
    assert any(0 < n < len(STEPS) for n in passed_counts), seen
    assert passed_counts == sorted(passed_counts), seen
    shown = {v for s in seen for v in s["steps"].values()}
    assert shown <= {"pending", "running", "passed"}, seen
    # The rows are in the steps' order, each says Passed with a duration.
    run = page.locator(f'[data-check-id="{final["id"]}"]')
    rows = run.locator(f'[data-resource-id="{rid}"] [data-step]')
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.step)") == STEPS
    for n in range(len(STEPS)):
        text = rows.nth(n).inner_text()
        assert "Passed" in text and (" ms" in text or " s" in text), text
    assert "lag" in run.locator('[data-step="outlook_to_platform"]').inner_text()
    assert "Clean" in run.locator("[data-cleanup-status]").inner_text()
    assert "passed" in run.locator("[data-progress]").inner_text()
    # The recent runs list it; the API agrees.
    page.locator(f'tr[data-check-row="{final["id"]}"][data-status="passed"]').wait_for()
    check = portal_api.get(f"buildings/{b}/checks/{final['id']}").json()
    assert check["status"] == "passed" and check["cleanup"]["status"] == "clean", check
    shot(page, "checks-passed")
    check_a11y(page, "checks (passed)")

    # A reload with ?run= shows the same run; at 390 px it fits without sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    wait_heading(page, "Go-live check")
    page.locator(f'[data-check-id="{final["id"]}"][data-check-status="passed"]').wait_for()
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, f"the checks page scrolls sideways by {overflow} px at 390 px"
    shot(page, "checks-390px")


def test_a_check_already_running_is_explained_with_a_link_to_it(
    page: Any, console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> None:
    rid = "huddle-4b"
    b = connected_building_with_room(
        console_stack, portal_api, anonymous_api, "ch", "huddle4b", rid
    )
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/checks")
    open_page(page, console_stack, b, "checks", "Go-live check")
    assert page.locator("[data-check-id]").count() == 0
    # Someone else starts a check behind the console's back; then the admin presses Run.
    started = portal_api.post(f"buildings/{b}/checks", json={})
    assert started.status_code == 202, started.text
    running = started.json()["id"]
    try:
        page.get_by_role("button", name="Run go-live check").click()
        conflict = page.locator(f'[data-check-running="{running}"]')
        conflict.wait_for()
        assert "already running" in conflict.inner_text(), conflict.inner_text()
        page.locator(f'tr[data-check-row="{running}"]').wait_for()  # and it is listed
        shot(page, "checks-409")
        check_a11y(page, "checks (409)")
        conflict.get_by_role("link", name="see it").click()
        page.locator(f'[data-check-id="{running}"]').wait_for()
        assert f"run={running}" in page.url
        page.locator(f'[data-check-id="{running}"][data-check-status="passed"]').wait_for(
            timeout=RUN_MS
        )
    finally:
        wait_finished(portal_api, b, running)


def test_a_failing_step_shows_its_reason_in_words_the_sentence_and_the_fix(
    page: Any, console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> None:
    """Graph refuses writes to the room (as outside the app's Exchange RBAC scope): the calendar
    step fails with its reason, sentence and fix, the write steps are skipped, the run still
    cleans up. Run with the keyboard only."""
    rid = "focus-3c"
    b = connected_building_with_room(console_stack, portal_api, anonymous_api, "cf", "focus3c", rid)
    mailbox = demo_user(console_stack, "focus3c")["userPrincipalName"].lower()
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/checks")
    open_page(page, console_stack, b, "checks", "Go-live check")
    outlook(console_stack, "POST", "faults", json={
        "method": "POST", "path": "re:/calendars/[^/]+/events$", "status": 403,
        "code": "ErrorAccessDenied", "message": "Access is denied. Check credentials and try again.",
        "mailbox": mailbox,
    })  # fmt: skip
    try:
        page.get_by_role("button", name="Run go-live check").focus()
        page.keyboard.press("Enter")
        run = page.locator("[data-check-id]")
        run.wait_for()
        page.locator('[data-check-id][data-check-status="failed"]').wait_for(timeout=RUN_MS)
    finally:
        outlook(console_stack, "DELETE", "faults")
    resource = run.locator(f'[data-resource-id="{rid}"]')
    assert resource.locator("[data-resource-status]").get_attribute("data-resource-status") == (
        "failed"
    )
    for name in ("connection", "notifications", "delta"):
        resource.locator(f'[data-step="{name}"][data-status="passed"]').wait_for()
    calendar = resource.locator('[data-step="calendar"][data-status="failed"]')
    calendar.wait_for()
    reason = calendar.locator('[data-reason="calendar_write_denied"]')
    assert "Calendar write refused" in reason.inner_text(), reason.inner_text()
    message = calendar.locator(".message").inner_text()
    assert mailbox in message.lower() and "RBAC" in message, message
    fix = calendar.locator(".fix").inner_text()
    assert fix.startswith("Fix:") and "management scope" in fix, fix
    for name in ("write_through", "outlook_to_platform", "cancel"):
        skipped = resource.locator(f'[data-step="{name}"][data-status="skipped"]')
        assert "An earlier step did not pass" in skipped.inner_text(), skipped.inner_text()
    assert run.get_attribute("data-cleanup") == "clean"
    assert "failed" in run.locator("[data-progress]").inner_text()
    shot(page, "checks-failed")
    check_a11y(page, "checks (failed)")
