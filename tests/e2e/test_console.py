"""The admin console in a real browser (issue 13's "Done when"): sign-in, connect, access.

Headless Debian Chromium driven by Playwright against this module's local stack; every page is
screenshotted under test-artifacts/console/ and checked with axe-core. Mapping, the timeline and
CSV import are in test_console_sync.py (their own stack).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import functions_client
from tests.e2e.console_fixtures import (
    anonymous_api,
    api_token_of,
    building,
    check_a11y,
    chromium,
    click_and_leave,
    console_stack,
    console_url,
    demo_user,
    emulator_sign_in,
    page,
    portal_api,
    shot,
    sign_in,
    through_emulator,
    wait_heading,
)
from tests.e2e.sync_fixtures import map_room, wait_until

__all__ = ["anonymous_api", "building", "chromium", "console_stack", "page", "portal_api"]

pytestmark = pytest.mark.browser


def test_console_is_served_with_its_config(
    console_stack: Stack, anonymous_api: httpx.Client
) -> None:
    index = anonymous_api.get("console/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    config = anonymous_api.get("console/config.json")
    assert config.status_code == 200, config.text
    body = config.json()
    settings = console_stack.settings
    assert body["clientId"] == settings["BB_CLIENT_ID"]
    assert body["scopes"] == [settings["BB_API_AUDIENCE"] + "/access_as_user"]
    assert body["redirectUri"] == console_url(console_stack)
    assert body["authority"] == f"{settings['BB_AUTHORITY_HOST']}/{settings['BB_API_TENANT_ID']}"
    assert "secret" not in config.text.lower()


def test_sign_in_as_the_demo_admin(page: Any, console_stack: Stack) -> None:
    sign_in(page, console_stack, buildings=["demo-building"], shot_as="signin")
    wait_heading(page, "Buildings")
    admin = console_stack.emulator.seed["tenant"]["users"]["admin"]
    assert admin["displayName"] in page.locator("[data-account]").inner_text()
    card = page.locator('[data-building="demo-building"]')
    card.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-building=demo-building] [data-connection]')"
        ".dataset.connection !== 'loading'"
    )
    shot(page, "buildings")
    check_a11y(page, "buildings")


# ---------------------------------------------------------------- Microsoft 365 tile


def connection_of(api: httpx.Client, building: str) -> dict[str, Any]:
    response = api.get(f"buildings/{building}/connection")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_connection_state(page: Any, state: str) -> None:
    page.locator(f'[data-connection="{state}"]').first.wait_for()


def connect_delegated_in_console(page: Any, stack: Stack, shot_as: str | None = None) -> None:
    """On the Microsoft 365 page: Connect (delegated), sign in and consent as the demo admin at
    the emulator, come back to the console."""
    page.get_by_label("Delegated").check()
    click_and_leave(page, page.get_by_role("button", name="Connect", exact=True))
    through_emulator(page, stack, shot_as=shot_as)
    wait_heading(page, "Microsoft 365")


def test_connect_delegated(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/m365")
    wait_heading(page, "Microsoft 365")  # the route survived the sign-in round trip
    wait_connection_state(page, "disconnected")
    shot(page, "m365-disconnected")
    check_a11y(page, "m365 (not connected)")

    connect_delegated_in_console(page, console_stack, shot_as="delegated")
    wait_connection_state(page, "connected")
    tile = page.locator("section.tile")
    admin = demo_user(console_stack, "admin")
    assert "Connected to Microsoft 365" in page.locator("main").inner_text()
    assert admin["userPrincipalName"] in tile.inner_text()
    assert console_stack.endpoints["tenantId"] in tile.inner_text()
    assert "Calendars.ReadWrite" in tile.inner_text()  # the scopes are shown
    shot(page, "m365-connected")
    check_a11y(page, "m365 (connected)")
    connection = connection_of(portal_api, building)
    assert connection["status"] == "connected" and connection["mode"] == "delegated"


def test_connect_application_as_the_tenant_admin(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    admin = demo_user(console_stack, "admin")
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/m365")
    wait_connection_state(page, "disconnected")
    page.get_by_label("Application").check()
    # The Exchange RBAC scoping steps are explained before the admin consents.
    assert "Exchange RBAC" in page.locator("main").inner_text()
    assert "New-ManagementScope" in page.locator("main").inner_text()
    page.get_by_label("Tenant id or domain").fill(console_stack.endpoints["tenantDomain"])
    shot(page, "m365-application-form")
    check_a11y(page, "m365 (application form)")
    click_and_leave(page, page.get_by_role("button", name="Connect", exact=True))
    page.locator("#i0116").wait_for()
    emulator_sign_in(page, admin["userPrincipalName"], admin["password"])
    page.locator("#idBtn_Accept").wait_for()  # permissions reviewed "for your organization"
    shot(page, "application-consent")
    page.click("#idBtn_Accept")
    through_emulator(page, console_stack)
    wait_heading(page, "Microsoft 365")
    wait_connection_state(page, "connected")
    tile = page.locator("section.tile").inner_text()
    assert "Application" in tile and console_stack.endpoints["tenantId"] in tile
    shot(page, "m365-application-connected")
    connection = connection_of(portal_api, building)
    assert connection["status"] == "connected" and connection["mode"] == "application"


def test_revoked_grant_shows_the_reason_and_reconnect_restores_it(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    admin = demo_user(console_stack, "admin")
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/m365")
    wait_connection_state(page, "disconnected")
    connect_delegated_in_console(page, console_stack)
    wait_connection_state(page, "connected")
    # A mapped calendar, so the connection is in use (its subscription, its token refreshes).
    map_room(portal_api, building, "room-1", admin["userPrincipalName"].lower())

    revoked = console_stack.emulator.control.post(
        "graph/grants/revoke",
        json={
            "tenantId": console_stack.endpoints["tenantId"],
            "user": admin["userPrincipalName"],
            "clientId": console_stack.endpoints["app"]["clientId"],
        },
    )
    assert revoked.status_code == 200, revoked.text
    # The product notices by itself (the subscription removed, its token refused).
    seen = wait_until(
        lambda: connection_of(portal_api, building)["status"] == "reauth_required", timeout=30
    )
    assert seen, connection_of(portal_api, building)

    page.reload()
    wait_heading(page, "Microsoft 365")
    wait_connection_state(page, "reauth_required")
    reason = page.locator("[data-reason]")
    assert reason.get_attribute("data-reason") == connection_of(portal_api, building)["reason"]
    words = reason.inner_text()
    assert len(words) > 40 and "_" not in words, words  # plain words, not a reason code
    shot(page, "m365-reauth-required")
    check_a11y(page, "m365 (reauth required)")

    click_and_leave(page, page.get_by_role("button", name="Reconnect"))
    through_emulator(page, console_stack)
    wait_connection_state(page, "connected")
    assert connection_of(portal_api, building)["status"] == "connected"
    shot(page, "m365-reconnected")


# ---------------------------------------------------------------- another building's admin


def test_an_admin_of_another_building_cannot_see_or_change_it(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    # The building exists and is set up by its own admin (here: the portal backend).
    put = portal_api.put(
        f"buildings/{building}/resources/room-1",
        json={"name": "Room 1", "kind": "room", "timeZone": "Europe/Amsterdam"},
    )
    assert put.status_code in (200, 201), put.text
    ensure_building(portal_api, "annex-building")  # bruno's own

    sign_in(page, console_stack, nickname="bruno", buildings=["annex-building"])
    wait_heading(page, "Buildings")
    assert page.locator("[data-building]").evaluate_all(
        "els => els.map(e => e.dataset.building)"
    ) == ["annex-building"]
    switcher = page.locator("#building-switcher option").evaluate_all("os => os.map(o => o.value)")
    assert building not in switcher
    page.evaluate("h => { location.hash = h }", f"#/b/{building}/resources")
    wait_heading(page, "No access")
    assert "Room 1" not in page.locator("main").inner_text()
    shot(page, "no-access")
    check_a11y(page, "no access")

    # Through the API with his own token: refused, and nothing changed.
    token = api_token_of(console_stack, "bruno")
    with functions_client(console_stack.endpoints, token) as bruno:
        assert bruno.get(f"buildings/{building}/resources").status_code == 403
        assert bruno.get(f"buildings/{building}/connection").status_code == 403
        changed = bruno.put(
            f"buildings/{building}/resources/room-1",
            json={"name": "Taken over", "kind": "room", "timeZone": "UTC"},
        )
        assert changed.status_code == 403, changed.text
        assert bruno.delete(f"buildings/{building}/resources/room-1").status_code == 403
        assert bruno.get("buildings/annex-building/resources").status_code == 200
    still = portal_api.get(f"buildings/{building}/resources/room-1")
    assert still.status_code == 200 and still.json()["name"] == "Room 1"


def test_make_run_prints_the_console_and_the_admin_sign_in(console_stack: Stack) -> None:
    from devstack.run import _banner

    endpoints = console_stack.endpoints
    assert endpoints["consoleUrl"] == console_url(console_stack)
    banner = _banner(console_stack, 1.0)
    admin = endpoints["admin"]
    assert console_url(console_stack) in banner
    assert f"sign in as {admin['username']} / {admin['password']}" in banner


def test_sign_out_returns_to_the_sign_in_page(page: Any, console_stack: Stack) -> None:
    sign_in(page, console_stack, buildings=["demo-building"])
    page.get_by_role("button", name="Sign out").click()
    # Through the emulator's end-session endpoint. MSAL names no client_id there, so the emulator
    # (which keeps no session to know the app by) shows Entra's "You signed out" page rather than
    # returning to the post-logout URI; either way the console's session is gone.
    page.wait_for_function(
        "base => (location.href.startsWith(base) && document.querySelector('main.signin'))"
        " || document.querySelector('#signedOut')",
        arg=console_url(console_stack),
    )
    shot(page, "signed-out")
    page.goto(console_url(console_stack))
    page.get_by_role("button", name="Sign in with Microsoft").wait_for()
    assert page.locator("[data-account]").count() == 0
    shot(page, "signin")
    check_a11y(page, "sign-in page")
    # Nothing of the session is left to reuse: the console shows the sign-in page again.
    page.reload()
    page.get_by_role("button", name="Sign in with Microsoft").wait_for()


def test_an_expired_session_asks_to_sign_in_again_without_losing_the_page(
    page: Any, console_stack: Stack, building: str
) -> None:
    admin = demo_user(console_stack, "admin")
    page.clock.install()  # the browser's clock, to let its access token run out
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/people")
    wait_heading(page, "Companies and users")
    # The admin's sessions are revoked (his refresh token dies) and the access token expires.
    revoked = console_stack.emulator.control.post(
        "identity/revoke",
        json={
            "tenant": console_stack.endpoints["tenantId"],
            "user": admin["userPrincipalName"],
            "clientId": console_stack.endpoints["app"]["clientId"],
        },
    )
    assert revoked.status_code == 200, revoked.text
    page.clock.fast_forward("02:00:00")
    page.get_by_role("link", name="Settings").click()
    banner = page.locator('[data-banner="session"]')
    banner.wait_for()
    shot(page, "session-ended")
    check_a11y(page, "session ended")
    click_and_leave(page, page.get_by_role("button", name="Sign in again"))
    # MSAL sends the account as login_hint; the stack's emulator (auto-consent) then completes
    # the sign-in without its page, as Entra's single sign-on would. Its page, if shown, is filled.
    through_emulator(page, console_stack)
    wait_heading(page, "Settings")  # back on the page the admin was on
    assert page.url.endswith(f"#/b/{building}/settings"), page.url
    page.locator("[data-account]").wait_for()


def test_a_network_failure_shows_a_banner_and_retry_recovers(
    page: Any, console_stack: Stack, building: str
) -> None:
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/m365")
    wait_heading(page, "Microsoft 365")
    # The API becomes unreachable (the browser's requests to it fail at the network level).
    page.route("**/api/buildings/**", lambda route: route.abort("internetdisconnected"))
    page.get_by_role("link", name="Resource sync").click()
    banner = page.locator('[data-banner="network"]')
    banner.wait_for()
    assert page.get_by_role("heading", level=1).count() == 1  # a page, not a blank or a trace
    assert "Traceback" not in page.content() and "at Object." not in page.content()
    shot(page, "network-failure")
    check_a11y(page, "network failure")
    page.unroute("**/api/buildings/**")
    banner.get_by_role("button", name="Retry").click()
    wait_heading(page, "Resource sync")
    page.wait_for_function("() => !document.querySelector('main[aria-busy=true]')")
    assert page.locator('[data-banner="network"]').count() == 0


def test_keyboard_skip_link_and_navigation(page: Any, console_stack: Stack, building: str) -> None:
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/m365")
    wait_heading(page, "Microsoft 365")
    # The skip link (first in the page) takes keyboard users past the header and nav.
    skip = page.get_by_role("link", name="Skip to content")
    skip.focus()
    assert skip.is_visible()  # shown when focused
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.closest('main') !== null")
    # The nav's links are followed with the keyboard alone; focus lands on the new page's h1.
    nav = page.get_by_role("navigation", name="Building pages")
    nav.get_by_role("link", name="Settings").focus()
    page.keyboard.press("Enter")
    wait_heading(page, "Settings")
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.tagName === 'H1'"
    )
    assert nav.get_by_role("link", name="Settings").get_attribute("aria-current") == "page"
    page.keyboard.press("Tab")  # onwards into the page's own controls
    assert page.evaluate("() => document.activeElement.closest('main') !== null")


def test_settings_turn_on_no_show_release_and_name_a_bad_value(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    """Issue 15: the auto-release settings and the ad hoc threshold on the Settings page, saved
    through the API; a value out of range is named beside its box and nothing is saved."""
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/settings")
    wait_heading(page, "Settings")
    page.wait_for_function("() => !document.querySelector('main[aria-busy=true]')")
    release = page.get_by_label("Release rooms nobody checked in to")
    assert not release.is_checked()  # opt-in
    assert page.get_by_label("Grace period (minutes)").input_value() == "10"
    release.check()
    page.get_by_label("Grace period (minutes)").fill("7")
    page.get_by_label("End a recurring series after").fill("3")
    page.get_by_label("Ad hoc threshold (minutes)").fill("30")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").first.wait_for()
    check_a11y(page, "settings")
    shot(page, "settings")
    saved = portal_api.get(f"buildings/{building}/settings").json()
    assert saved["autoRelease"] == {
        "enabled": True, "graceMinutes": 7, "earlyMinutes": 15, "recurringStrikes": 3,
    }  # fmt: skip
    assert saved["adHocMinutes"] == 30

    # 300 is beyond the grace period's range: the form does not validate in the browser (its
    # bubbles name no field to assistive tech); the API names the field and the page shows it there.
    grace = page.get_by_label("Grace period (minutes)")
    grace.fill("300")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_selector("[aria-invalid=true]")
    assert grace.get_attribute("aria-invalid") == "true"
    error = page.locator(f"#{grace.get_attribute('id')}-error")
    assert "from 1 to 240" in error.inner_text()
    assert (
        portal_api.get(f"buildings/{building}/settings").json()["autoRelease"]["graceMinutes"] == 7
    )


def test_analytics_page_charts_the_numbers_and_downloads_the_csv(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    """Issue 15: a past Wednesday with two rooms and three bookings (hand-computed below), as
    the Analytics page shows them: summary, every chart with its numbers, the table, and a CSV
    download equal to the API's."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from shared import wiring
    from shared.availability.busy import BusyBlock

    zone = ZoneInfo("Europe/Amsterdam")
    today = datetime.now(zone).date()
    day = today - timedelta(days=7 + (today.weekday() - 2) % 7)  # a Wednesday, 7-13 days ago
    for rid, name in (("ana-board", "Board"), ("ana-huddle", "Huddle")):
        made = portal_api.put(
            f"buildings/{building}/resources/{rid}",
            json={"name": name, "kind": "room", "timeZone": "Europe/Amsterdam"},
        )
        assert made.status_code in (200, 201), made.text

    def local(hour: int, minute: int = 0, days: int = 0) -> datetime:
        when = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        return (when + timedelta(days=days)).astimezone(UTC)

    # Board 09:00-11:00 booked two days ahead (planned); Board 14:00-14:30 booked at 13:55 (ad
    # hoc: 5 min < 15); Huddle 09:00-10:00 booked a day ahead. Business hours 08:00-18:00: 600
    # min per room, 1,200 in all; booked 120 + 30 + 60 = 210 -> rate 210 / 1200 = 17.5 %.
    # Board: 150 / 600 = 25 %, Huddle: 60 / 600 = 10 %. Median duration of 30, 60, 120: 60 min.
    seeded = [
        ("ana-board", local(9), local(11), local(9, days=-2)),
        ("ana-board", local(14), local(14, 30), local(13, 55)),
        ("ana-huddle", local(9), local(10), local(9, days=-1)),
    ]
    with console_stack.app_environment():
        store = wiring.busy_store()
        for n, (rid, start, end, created) in enumerate(seeded):
            store.put(BusyBlock(building, rid, f"o-ana{n}", start, end, "outlook",
                                created_at=created, company_id=None))  # fmt: skip
    query = {"from": day.isoformat(), "to": day.isoformat()}
    api = portal_api.get(f"buildings/{building}/analytics", params={**query, "groupBy": "resource"})
    assert api.status_code == 200, api.text
    totals = api.json()["totals"]
    assert (totals["bookings"], totals["adHoc"], totals["planned"]) == (3, 1, 2)
    assert totals["bookingRate"] == pytest.approx(0.175)
    assert totals["medianDurationMinutes"] == 60

    sign_in(
        page, console_stack, buildings=[building],
        route=f"#/b/{building}/analytics?from={day}&to={day}&groupBy=resource",
    )  # fmt: skip
    wait_heading(page, "Analytics")
    page.wait_for_function("() => !document.querySelector('main[aria-busy=true]')")
    summary = page.locator("[data-analytics=summary]").inner_text()
    assert "17.5%" in summary and "3 (1 ad hoc, 2 planned)" in summary, summary
    for chart in ("booking-rate", "ad-hoc", "no-show", "popular", "unpopular", "companies"):
        assert page.locator(f"figure[data-chart={chart}] svg[role=img]").count() == 1, chart
    popular = page.locator("figure[data-chart=popular] svg").get_attribute("aria-label") or ""
    assert "highest 25% (Board)" in popular and "lowest 10% (Huddle)" in popular, popular
    rows = page.locator("table.analytics tbody tr")
    assert rows.count() == 2
    board = page.locator("tr[data-group=ana-board]").inner_text()
    assert "25%" in board and "2 h 30 min" in board, board
    check_a11y(page, "analytics")
    shot(page, "analytics")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    saved = download.value
    assert saved.suggested_filename == f"analytics-{building}-{day}-to-{day}-by-resource.csv"
    csv_api = portal_api.get(
        f"buildings/{building}/analytics", params={**query, "groupBy": "resource", "format": "csv"}
    )
    assert csv_api.status_code == 200 and csv_api.headers["content-type"].startswith("text/csv")
    with open(saved.path(), "rb") as downloaded:
        assert downloaded.read() == csv_api.content  # byte for byte: BOM and CRLF kept
