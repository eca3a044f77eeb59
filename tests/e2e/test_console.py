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
from tests.e2e.console_fixtures import (
    anonymous_api,
    building,
    check_a11y,
    chromium,
    console_stack,
    console_url,
    page,
    portal_api,
    shot,
    sign_in,
    wait_heading,
)

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
