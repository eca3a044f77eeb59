"""Fixtures and helpers for the connect tests (tests/e2e/test_connect.py).

The connect tests move the emulator clock by days, so they run on their own stack (module scope)
instead of the session's: other features' tests never see a clock 91 days ahead.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from devstack.stack import DEMO_SCENARIO, Stack, start_stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client


@pytest.fixture(scope="module")
def cstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("connect-stack"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def cendpoints(cstack: Stack) -> dict[str, Any]:
    return cstack.endpoints


@pytest.fixture(scope="module")
def cportal_token(cendpoints: dict[str, Any]) -> str:
    return client_token(cendpoints)


@pytest.fixture(scope="module")
def capi(cendpoints: dict[str, Any], cportal_token: str) -> Iterator[httpx.Client]:
    with functions_client(cendpoints, cportal_token) as client:
        yield client


@pytest.fixture(scope="module")
def canon(cendpoints: dict[str, Any]) -> Iterator[httpx.Client]:
    with functions_client(cendpoints) as client:
        yield client


@pytest.fixture(scope="module")
def browser(cendpoints: dict[str, Any]) -> Iterator[httpx.Client]:
    """The admin's browser: talks to the emulator over TLS, follows no redirect by itself."""
    with httpx.Client(verify=cendpoints["caBundle"], trust_env=False, timeout=30) as client:
        yield client


@pytest.fixture
def building(capi: httpx.Client) -> str:
    created = f"b-{uuid.uuid4().hex[:10]}"
    ensure_building(capi, created)
    return created


@pytest.fixture
def admin_token_for(cstack: Stack) -> Callable[[list[str]], str]:
    """A Building.Admin user token whose `buildings` claim lists the given buildings.

    The demo's second building admin gets the buildings set as its directory attribute (as a
    directory admin would), then signs in (ROPC): the claim comes from the emulator's real
    optional-claims path, not from a minted token.
    """
    from tests.e2e.conftest import user_token

    bruno = cstack.emulator.seed["tenant"]["users"]["bruno"]

    def mint(buildings: list[str]) -> str:
        response = cstack.emulator.control.post(
            f"identity/users/{bruno['userPrincipalName']}/attributes",
            json={"tenant": cstack.endpoints["tenantId"], "attributes": {"buildings": buildings}},
        )
        response.raise_for_status()
        return user_token(cstack.endpoints, bruno["userPrincipalName"], bruno["password"])

    return mint


def mint_api_token(
    stack: Stack, *, roles: list[str], lifetime: int = 3599, audience: str | None = None
) -> str:
    """An app token for our API minted by the emulator's test helper (any roles and lifetime)."""
    endpoints = stack.endpoints
    response = stack.emulator.control.post(
        "graph/token",
        json={
            "tenantId": endpoints["tenantId"],
            "clientId": endpoints["portal"]["clientId"],
            "roles": roles,
            "audience": audience or stack.settings["BB_API_AUDIENCE"],
            "lifetime": lifetime,
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


# ---------------------------------------------------------------- the browser side


def drive_authorize(
    browser: httpx.Client,
    authorize_url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    functions_base: str,
) -> str:
    """Follow the identity emulator (sign-in and consent pages when shown) until it redirects
    back to our app; return that redirect (our callback URL with code/state or error)."""
    response = browser.get(authorize_url)
    for _ in range(6):
        if response.status_code in (302, 303):
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(functions_base):
                return location
            response = browser.get(location)
            continue
        assert response.status_code == 200, response.text[:500]
        page = response.text
        action, fields = _form(page, str(response.url))
        if 'name="loginfmt"' in page:
            assert username and password, "the sign-in page needs credentials"
            fields.update({"loginfmt": username, "passwd": password})
        elif 'id="idBtn_Accept"' in page:
            fields["decision"] = "accept"
        else:
            raise AssertionError(f"unexpected page: {page[:300]}")
        response = browser.post(action, data=fields)
    raise AssertionError("the emulator never redirected back")


def connect_application(
    api: httpx.Client,
    anonymous: httpx.Client,
    browser: httpx.Client,
    endpoints: dict[str, Any],
    building: str,
    tenant: str,
    *,
    login_hint: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> tuple[str, str]:
    """Run an application connect (admin consent by a tenant administrator): start it with `api`
    (an admin of `building`), drive the emulator's pages (or auto-consent with `login_hint`), let
    our `/oauth/adminconsent` finish it. Return (the callback URL Microsoft sent the browser to,
    where our callback then sent it)."""
    body: dict[str, Any] = {
        "mode": "application",
        "tenant": tenant,
        "returnUrl": endpoints["returnUrl"],
    }
    if login_hint:
        body["loginHint"] = login_hint
    elif username:  # a service names the account that is to sign in (issue 21)
        body["expectedAccount"] = username
    ensure_building(api, building)
    started = api.post(f"buildings/{building}/connection", json=body)
    assert started.status_code == 200, started.text
    callback = drive_authorize(
        browser, started.json()["authorizeUrl"], username=username, password=password,
        functions_base=endpoints["functionsBaseUrl"],
    )  # fmt: skip
    response = anonymous.get(callback.removeprefix(endpoints["functionsBaseUrl"] + "/"))
    assert response.status_code == 302, response.text
    return callback, str(response.headers["location"])


def _form(page: str, base: str) -> tuple[str, dict[str, str]]:
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action, page[:300]
    fields = {
        unescape(m.group(1)): unescape(m.group(2))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    }
    return urljoin(base, unescape(action.group(1))), fields


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def fresh_tenant(stack: Stack, *, admin_consent: bool = True) -> dict[str, Any]:
    """A new tenant (demo users and rooms) for the stack's existing app registrations."""
    scenario = json.loads(Path(DEMO_SCENARIO).read_text())
    app_ids = {key: app["clientId"] for key, app in stack.emulator.seed["apps"].items()}
    tenant = scenario["tenants"][0]
    tenant.pop("id", None)
    if not admin_consent:
        tenant["adminConsents"] = []
    text = json.dumps({"tenants": [tenant]})
    for key, client_id in app_ids.items():
        text = text.replace(f'"app": "{key}"', f'"app": "{client_id}"')
        text = text.replace(f'"resource": "{key}"', f'"resource": "{client_id}"')
    result = stack.emulator.seed_scenario(json.loads(text), fresh=True)
    return dict(result["tenant"])


# ---------------------------------------------------------------- in-process service


@pytest.fixture(scope="module")
def service_env(cstack: Stack) -> Iterator[None]:
    """Point shared/ in this test process at the connect stack (for clock-driven service calls)."""
    with cstack.app_environment():
        yield
