"""Fixtures for the admin console's browser tests (tests/e2e/test_console*.py, issue 13).

One local stack and one headless Chromium (Debian's, `executable_path`; never downloaded) per
module; a fresh browser context per test, so every test signs in through the emulator's sign-in
page as a person does. Tests isolate themselves with their own building ids: `sign_in` gives the
demo admin the buildings a test asks for (a directory attribute, as an operator sets it; the
token's `buildings` claim follows) before signing in.

Screenshots go to test-artifacts/console/<test>-<page>.png; `check_a11y` runs axe-core
(axe-playwright-python) on the page and fails on serious or critical violations.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client, user_token
from tests.e2e.sync_fixtures import SYNC_SETTINGS

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
# How long a browser step may take (page loads, the sign-in round trip); a deadline, not a sleep.
STEP_MS = 15_000


def console_url(stack: Stack) -> str:
    return f"{stack.functions_url}/console/"


# ---------------------------------------------------------------- the stack and the browser


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The module's own stack (shared calendars polled every few seconds, as test_sync's)."""
    if not (REPO / "console" / "dist" / "index.html").exists():
        pytest.fail("console/dist is missing: run `make console` first (make test does)")
    running = start_stack(tmp_path_factory.mktemp("console-stack"), extra_settings=SYNC_SETTINGS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no session, no cookies) and one page in it."""
    context = chromium.new_context(
        ignore_https_errors=True,  # the emulator's local CA is not in Chromium's store
        viewport={"width": 1280, "height": 900},
    )
    context.set_default_timeout(STEP_MS)
    tab = context.new_page()
    tab.errors = []  # uncaught page errors, reported on failure
    tab.on("pageerror", lambda err: tab.errors.append(str(err)))
    try:
        yield tab
    finally:
        if tab.errors:
            print(f"page errors in {request.node.name}: {tab.errors}")
        context.close()


@pytest.fixture(scope="module")
def portal_api(console_stack: Stack) -> Iterator[httpx.Client]:
    """Portal.Service on the module's stack: set-up and checks behind the console's back."""
    with functions_client(console_stack.endpoints, client_token(console_stack.endpoints)) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous_api(console_stack: Stack) -> Iterator[httpx.Client]:
    with functions_client(console_stack.endpoints) as client:
        yield client


@pytest.fixture
def building(portal_api: httpx.Client) -> str:
    created = f"cb-{uuid.uuid4().hex[:10]}"
    ensure_building(portal_api, created, "Europe/Amsterdam")
    return created


# ---------------------------------------------------------------- people


def demo_user(stack: Stack, nickname: str) -> dict[str, Any]:
    return dict(stack.emulator.seed["tenant"]["users"][nickname])


def set_buildings(stack: Stack, nickname: str, buildings: list[str]) -> None:
    """The user's `buildings` directory attribute (tokens issued afterwards carry it)."""
    user = demo_user(stack, nickname)
    response = stack.emulator.control.post(
        f"identity/users/{user['userPrincipalName']}/attributes",
        json={"tenant": stack.endpoints["tenantId"], "attributes": {"buildings": buildings}},
    )
    response.raise_for_status()


def api_token_of(stack: Stack, nickname: str) -> str:
    """A person's token for our API (ROPC, as tests/e2e/conftest.py gets them)."""
    user = demo_user(stack, nickname)
    return user_token(stack.endpoints, user["userPrincipalName"], user["password"])


def emulator_sign_in(page: Any, username: str, password: str) -> None:
    """Fill the emulator's sign-in page (Entra's element ids) and submit it."""
    page.wait_for_selector("#i0116")
    page.fill("#i0116", username)
    page.fill("#i0118", password)
    page.click("#idSIButton9")


def click_and_leave(page: Any, target: Any, timeout: float = STEP_MS / 1000) -> None:
    """Click `target` (a locator) and wait until the page has navigated away from the document
    it was on (to the identity platform, or straight back through its redirects)."""
    import time

    navigated: list[str] = []

    def seen(frame: Any) -> None:
        if frame == page.main_frame:
            navigated.append(frame.url)

    page.on("framenavigated", seen)
    try:
        target.click()
        deadline = time.monotonic() + timeout
        while not navigated:
            assert time.monotonic() < deadline, "the click did not leave the page"
            page.wait_for_timeout(50)
    finally:
        page.remove_listener("framenavigated", seen)


def through_emulator(
    page: Any, stack: Stack, nickname: str = "admin", shot_as: str | None = None
) -> None:
    """After the console sent the browser to Microsoft: sign in and consent on the emulator's
    pages as the demo user `nickname` where they are shown (with a login_hint, or a session, the
    identity platform may complete without them), until the browser is back on the console."""
    user = demo_user(stack, nickname)
    back = console_url(stack)
    for _ in range(4):
        page.wait_for_function(
            "base => (location.href.startsWith(base) && document.readyState !== 'loading')"
            " || document.querySelector('#i0116, #idBtn_Accept')",
            arg=back,
        )
        if page.url.startswith(back):
            return
        if page.locator("#i0116").count():
            if shot_as:
                shot(page, shot_as)
            emulator_sign_in(page, user["userPrincipalName"], user["password"])
        elif page.locator("#idBtn_Accept").count():
            if shot_as:
                shot(page, shot_as + "-consent")
            page.click("#idBtn_Accept")
        page.wait_for_load_state("domcontentloaded")
    raise AssertionError(f"the emulator never sent the browser back to the console: {page.url}")


def sign_in(
    page: Any,
    stack: Stack,
    *,
    nickname: str = "admin",
    buildings: list[str] | None = None,
    route: str = "#/buildings",
    shot_as: str | None = None,
) -> None:
    """Open the console at `route`, sign in through the emulator as the demo user `nickname`
    (with `buildings` as their buildings claim when given) and wait for the signed-in shell."""
    if buildings is not None:
        set_buildings(stack, nickname, buildings)
    page.goto(console_url(stack) + route)
    button = page.get_by_role("button", name="Sign in with Microsoft")
    button.wait_for()
    if shot_as:
        shot(page, shot_as)
    click_and_leave(page, button)
    page.locator("#i0116").wait_for()  # a fresh browser: the emulator's sign-in page
    through_emulator(page, stack, nickname, shot_as=shot_as + "-emulator" if shot_as else None)
    page.wait_for_selector("[data-account]")


def wait_heading(page: Any, text: str) -> None:
    page.get_by_role("heading", level=1, name=text).wait_for()


def open_page(page: Any, stack: Stack, building: str, name: str, title: str) -> None:
    """Go to a building page by its hash route (no reload: the router follows the hash)."""
    page.evaluate("h => { location.hash = h }", f"#/b/{building}/{name}")
    wait_heading(page, title)
    page.wait_for_function("() => !document.querySelector('main[aria-busy=true]')")


# ---------------------------------------------------------------- evidence


def shot(page: Any, name: str) -> Path:
    """A full-page screenshot test-artifacts/console/<test>-<name>.png (the test from pytest)."""
    import os

    test = os.environ.get("PYTEST_CURRENT_TEST", "console").split("::")[-1].split(" ")[0]
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", test)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{test}-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_a11y(page: Any, name: str) -> None:
    """axe-core on the page as it is now: no serious or critical violation (others printed)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = results.response["violations"]
    bad = [v for v in violations if v.get("impact") in ("serious", "critical")]
    for v in violations:
        targets = [", ".join(n["target"]) for n in v["nodes"]][:5]
        print(f"axe {name}: {v['id']} ({v.get('impact')}): {v['help']} at {targets}")
    assert not bad, f"axe-core on {name}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + str([", ".join(n["target"]) for n in v["nodes"]][:5])
        for v in bad
    )
