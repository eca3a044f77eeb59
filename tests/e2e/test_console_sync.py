"""The admin console in a real browser: Resource sync (map, Synced, Not supported, a 409 on its
row), the bookings timeline updating by itself, CSV import (issue 13's "Done when").

This module's stack polls shared calendars every few seconds (tests/e2e/sync_fixtures.py
SYNC_SETTINGS). Buildings are connected behind the console's back (the connect flow itself is
proven in test_console.py); the admin then works in the console.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.console_fixtures import (
    anonymous_api,
    building,
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
from tests.e2e.sync_fixtures import (
    connect_building_application,
    connect_building_delegated,
    map_discovered,
    new_building,
    outlook,
)

__all__ = ["anonymous_api", "building", "chromium", "console_stack", "page", "portal_api"]

pytestmark = pytest.mark.browser

ZONE = "Europe/Amsterdam"
# A first sync of a shared calendar waits for one polling round (2-4 s here); a deadline.
SYNCED_MS = 30_000


def put_resource(api: httpx.Client, building: str, rid: str, name: str, **extra: Any) -> None:
    body = {"name": name, "kind": "room", "timeZone": ZONE, **extra}
    response = api.put(f"buildings/{building}/resources/{rid}", json=body)
    assert response.status_code in (200, 201), response.text


def discovered(api: httpx.Client, building: str, mailbox: str, kind: str) -> dict[str, Any]:
    found = api.get(f"buildings/{building}/calendars")
    assert found.status_code == 200, found.text
    hits = [c for c in found.json()["value"] if c["mailbox"] == mailbox and c["kind"] == kind]
    assert hits, found.json()
    return dict(hits[0])


def resource_of(api: httpx.Client, building: str, rid: str) -> dict[str, Any]:
    response = api.get(f"buildings/{building}/resources/{rid}")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def delegated_building(
    console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> str:
    """A building connected in delegated mode as the demo admin, who also has the room
    boardroom4a's calendar delegated to him (as Exchange admins give building admins their rooms):
    discovery offers it as a room, beside Olivia's calendar shared with him."""
    admin = demo_user(console_stack, "admin")
    room = demo_user(console_stack, "boardroom4a")
    outlook(
        console_stack, "POST", f"users/{room['userPrincipalName']}/calendars/default/share",
        json={"with": admin["userPrincipalName"], "role": "write"},
    )  # fmt: skip
    building = new_building("cd", portal_api, ZONE)
    connect_building_delegated(
        console_stack, portal_api, anonymous_api, building, admin["userPrincipalName"]
    )
    return building


@pytest.fixture(scope="module")
def application_building(
    console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> str:
    building = new_building("ca", portal_api, ZONE)
    connect_building_application(console_stack, portal_api, anonymous_api, building)
    return building


def row(page: Any, rid: str) -> Any:
    return page.locator(f'tr[data-resource-id="{rid}"]')


def mappings(page: Any) -> Any:
    return page.get_by_role("form", name="Calendar mappings")


def choose_calendar(page: Any, rid: str, mailbox: str, calendar_id: str) -> None:
    """Pick a calendar in a row's dropdown by its value (`<mailbox>|<calendar id>`)."""
    select = row(page, rid).locator("select")
    value = f"{mailbox.lower()}|{calendar_id}"
    assert select.locator(f'option[value="{value}"]').count() == 1, select.inner_html()
    select.select_option(value)


def wait_state(page: Any, rid: str, state: str, timeout: float = SYNCED_MS) -> None:
    row(page, rid).locator(f'[data-state="{state}"]').wait_for(timeout=timeout)


# ---------------------------------------------------------------- Resource sync


def test_map_a_room_mailbox_and_a_shared_calendar_and_both_turn_synced(
    page: Any, console_stack: Stack, portal_api: httpx.Client, delegated_building: str
) -> None:
    b = delegated_building
    room = demo_user(console_stack, "boardroom4a")["userPrincipalName"].lower()
    olivia = demo_user(console_stack, "olivia")["userPrincipalName"].lower()
    put_resource(portal_api, b, "board", "Board room", capacity=12)
    put_resource(portal_api, b, "olivia-desk", "Olivia's office")
    room_cal = discovered(portal_api, b, room, "room")
    shared_cal = discovered(portal_api, b, olivia, "shared")

    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/resources")
    open_page(page, console_stack, b, "resources", "Resource sync")
    wait_state(page, "board", "not_synced")
    wait_state(page, "olivia-desk", "not_synced")
    # The dropdown groups rooms by room list, and has the shared calendar in its own group.
    groups = row(page, "board").locator("optgroup").evaluate_all("gs => gs.map(g => g.label)")
    assert any(g.startswith("Rooms: ") for g in groups), groups
    assert "Shared with the account" in groups, groups
    shot(page, "resources-unmapped")
    check_a11y(page, "resources (unmapped)")

    choose_calendar(page, "board", room, room_cal["id"])
    choose_calendar(page, "olivia-desk", olivia, shared_cal["id"])
    page.get_by_role("button", name="Save", exact=True).click()
    mappings(page).get_by_text("All 2 changes saved.").wait_for()
    # Without a reload the badges move to Synced once the first sync has run.
    wait_state(page, "board", "synced")
    wait_state(page, "olivia-desk", "synced")
    assert "Synced" in row(page, "board").locator("[data-state]").inner_text()
    shot(page, "resources-synced")
    check_a11y(page, "resources (synced)")
    for rid, cal in (("board", room_cal), ("olivia-desk", shared_cal)):
        sync = resource_of(portal_api, b, rid)["sync"]
        assert sync["status"] == "synced" and sync["calendar"]["id"] == cal["id"], sync


def test_a_paid_resource_shows_not_supported_with_no_dropdown(
    page: Any, console_stack: Stack, portal_api: httpx.Client, delegated_building: str
) -> None:
    b = delegated_building
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/resources")
    open_page(page, console_stack, b, "resources", "Resource sync")
    # Added through the console's own form.
    page.get_by_label("Id", exact=True).fill("lounge")
    page.get_by_label("Name", exact=True).fill("Rooftop lounge")
    page.get_by_label("Kind").select_option("amenity")
    page.get_by_label("Paid resource (never synced with Outlook)").check()
    page.get_by_role("button", name="Add resource").click()
    wait_state(page, "lounge", "not_supported", timeout=10_000)
    lounge = row(page, "lounge")
    assert lounge.locator("select").count() == 0
    assert "Not supported" in lounge.locator("[data-state]").inner_text()
    # A free resource beside it has its dropdown.
    put_resource(portal_api, b, "free-room", "Free room")
    page.reload()
    wait_state(page, "free-room", "not_synced")
    assert row(page, "free-room").locator("select").count() == 1
    assert row(page, "lounge").locator("select").count() == 0
    shot(page, "resources-paid")
    stored = resource_of(portal_api, b, "lounge")
    assert stored["paid"] is True and stored["sync"]["status"] == "not_supported"


def test_a_409_calendar_already_mapped_is_explained_on_its_row(
    page: Any, console_stack: Stack, portal_api: httpx.Client, delegated_building: str
) -> None:
    b = delegated_building
    admin = demo_user(console_stack, "admin")["userPrincipalName"].lower()
    own = discovered(portal_api, b, admin, "personal")
    put_resource(portal_api, b, "first", "First room")
    put_resource(portal_api, b, "second", "Second room")
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/resources")
    open_page(page, console_stack, b, "resources", "Resource sync")
    wait_state(page, "second", "not_synced")
    # Meanwhile someone else maps that calendar to the first room (the console's list is stale).
    mapped = portal_api.put(
        f"buildings/{b}/resources/first/mapping", json={"calendarId": own["id"], "mailbox": admin}
    )
    assert mapped.status_code == 200, mapped.text

    choose_calendar(page, "second", admin, own["id"])
    page.get_by_role("button", name="Save", exact=True).click()
    message = row(page, "second").locator(".msg-error")
    message.wait_for()
    words = message.inner_text()
    assert "already mapped to another resource" in words, words
    assert "409" not in words and "{" not in words, words  # words, not a status or JSON
    mappings(page).get_by_text("0 of 1 changes saved; 1 failed (see the rows).").wait_for()
    shot(page, "resources-409")
    check_a11y(page, "resources (409)")
    assert resource_of(portal_api, b, "second")["sync"]["status"] == "not_synced"


# ---------------------------------------------------------------- every page: screenshots, axe

PAGES = [
    ("m365", "Microsoft 365"),
    ("resources", "Resource sync"),
    ("people", "Companies and users"),
    ("settings", "Settings"),
    ("bookings", "Bookings"),
    ("health", "Sync health"),
    ("checks", "Go-live check"),
    ("audit", "Audit trail"),
]


def test_every_page_has_its_heading_and_zone_and_passes_axe(
    page: Any, console_stack: Stack, portal_api: httpx.Client, application_building: str
) -> None:
    b = application_building
    huddle = demo_user(console_stack, "huddle4b")["userPrincipalName"].lower()
    map_discovered(
        portal_api, b, "huddle", lambda c: c["mailbox"] == huddle and c["kind"] == "room"
    )
    sign_in(page, console_stack, buildings=[b, "demo-building"], route=f"#/b/{b}/m365")
    for name, title in PAGES:
        open_page(page, console_stack, b, name, title)
        # Every page says which time zone its times are in (the building's).
        assert page.locator("[data-zone]").count() >= 1, name
        shot(page, name)
        check_a11y(page, name)
    page.evaluate("h => { location.hash = h }", "#/buildings")
    wait_heading(page, "Buildings")
    shot(page, "buildings")
    check_a11y(page, "buildings")


def test_usable_at_390_px_wide(
    page: Any, console_stack: Stack, portal_api: httpx.Client, application_building: str
) -> None:
    b = application_building
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/resources")
    for name, title in PAGES:
        open_page(page, console_stack, b, name, title)
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name}: the page scrolls sideways by {overflow} px at 390 px"
        shot(page, f"{name}-390px")


# ---------------------------------------------------------------- CSV import


def test_csv_import_shows_the_rejected_rows_and_writes_nothing(
    page: Any, console_stack: Stack, portal_api: httpx.Client, building: str
) -> None:
    put = portal_api.put(
        f"buildings/{building}/companies/contoso",
        json={"name": "Contoso", "domains": ["contoso.example"]},
    )
    assert put.status_code in (200, 201), put.text
    csv = (
        "email,name,companyId\n"
        "ann@contoso.example,Ann Example,contoso\n"
        "not-an-email,Bob Broken,contoso\n"
        "cy@contoso.example,Cy Nowhere,no-such-company\n"
    )
    sign_in(page, console_stack, buildings=[building], route=f"#/b/{building}/people")
    open_page(page, console_stack, building, "people", "Companies and users")
    page.get_by_label("Or paste CSV").fill(csv)
    page.locator('[data-import="preview"]').wait_for()
    shot(page, "people-import-preview")
    page.get_by_role("button", name="Import users").click()
    rejected = page.locator('[data-import="rejected"]')
    rejected.wait_for()
    bad_rows = rejected.locator("tbody tr")
    assert bad_rows.count() == 2, rejected.inner_text()
    text = rejected.inner_text()
    assert "not-an-email" in text and "no-such-company" in text, text
    assert "ann@contoso.example" not in text  # only the rejected rows are listed
    for n in range(2):
        assert bad_rows.nth(n).locator(".msg-error").inner_text().strip(), text  # each says why
    page.get_by_text("Nothing was imported: 2 rows were rejected").wait_for()
    shot(page, "people-import-rejected")
    check_a11y(page, "people (import rejected)")
    # Nothing was written: not even the good row.
    users = portal_api.get(f"buildings/{building}/users")
    assert users.status_code == 200, users.text
    assert users.json() == {"value": [], "nextLink": None}
    assert portal_api.get(f"buildings/{building}/users/ann@contoso.example").status_code == 404


# ---------------------------------------------------------------- the bookings timeline

# The promise: an Outlook booking is on the open timeline within 5 s, without a reload.
OUTLOOK_ON_TIMELINE_MS = 5_000


def _local(day: date, hour: int) -> dict[str, str]:
    """A Graph dateTimeTimeZone at `hour` of `day` in the building's zone."""
    return {"dateTime": f"{day.isoformat()}T{hour:02d}:00:00", "timeZone": ZONE}


def _z(day: date, hour: int) -> str:
    when = datetime.combine(day, time(hour), tzinfo=ZoneInfo(ZONE)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_an_outlook_booking_appears_on_the_timeline_within_5_s_without_a_reload(
    page: Any, console_stack: Stack, portal_api: httpx.Client, anonymous_api: httpx.Client
) -> None:
    b = new_building("ct", portal_api, ZONE)
    connect_building_application(console_stack, portal_api, anonymous_api, b)
    room = demo_user(console_stack, "focus3c")["userPrincipalName"].lower()
    emma = demo_user(console_stack, "emma")["userPrincipalName"]
    put_resource(portal_api, b, "focus", "Focus room 3C", capacity=4)
    cal = discovered(portal_api, b, room, "room")
    mapped = portal_api.put(
        f"buildings/{b}/resources/focus/mapping", json={"calendarId": cal["id"], "mailbox": room}
    )
    assert mapped.status_code == 200, mapped.text
    domain = console_stack.endpoints["tenantDomain"]
    company = portal_api.put(
        f"buildings/{b}/companies/contoso", json={"name": "Contoso", "domains": [domain]}
    )
    assert company.status_code in (200, 201), company.text
    # Tomorrow in the building's zone: platform bookings must be in the future, whatever the hour.
    day = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=1)
    platform = portal_api.post(
        f"buildings/{b}/bookings",
        headers={"Idempotency-Key": f"console-{b}"},
        json={"resourceId": "focus", "start": _z(day, 9), "end": _z(day, 10),
              "title": "Platform stand-up",
              "booker": {"email": f"liam@{domain}", "name": "Liam"}},
    )  # fmt: skip
    assert platform.status_code == 201, platform.text

    sign_in(page, console_stack, buildings=[b], route=f"#/b/{b}/bookings?date={day}")
    wait_heading(page, "Bookings")
    assert page.locator("#booking-day").input_value() == day.isoformat()
    track = page.locator('[data-timeline-resource="focus"]')
    track.locator('li[data-booking-source="platform"]').wait_for()
    assert track.locator('li[data-booking-source="outlook"]').count() == 0
    shot(page, "bookings-before")
    check_a11y(page, "bookings")
    page.evaluate("() => { window.__sameDocument = true }")  # gone if the page reloads

    outlook(
        console_stack, "POST", f"users/{emma}/events",
        json={"subject": "Design review", "start": _local(day, 14), "end": _local(day, 15),
              "attendees": [{"type": "resource", "emailAddress": {"address": room}}]},
    )  # fmt: skip
    block = track.locator('li[data-booking-source="outlook"]')
    block.wait_for(timeout=OUTLOOK_ON_TIMELINE_MS)
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    spoken = block.inner_text() + " " + (block.get_attribute("title") or "")
    # Attributed to the company whose email domain the booker has, and said so.
    assert "contoso" in spoken.lower() and "email domain" in spoken, spoken
    row = page.locator('tr[data-booking-source="outlook"]')
    assert "contoso" in row.inner_text().lower(), row.inner_text()
    assert "Platform stand-up" in page.locator('tr[data-booking-source="platform"]').inner_text()
    shot(page, "bookings-outlook-arrived")
