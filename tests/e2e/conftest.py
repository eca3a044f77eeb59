"""End-to-end fixtures: the whole local stack (devstack.stack.start_stack), as `make run` runs it.

`stack` (and `api`, `anonymous`, `endpoints` on it) is one stack per test session, started only if a
module asks for it; modules that need their own settings or state (connect, bookings, sync, webhook,
convergence, body bounds, demo) start their own module-scoped stack with `start_stack`, so a run of
the whole tier starts several (each costs a few seconds). On a shared stack tests isolate themselves
by using their own building ids, and tenants seeded fresh through the emulator's control API when
they need a pristine tenant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msal
import pytest
import requests

from devstack.procs import free_port as _free_port
from devstack.stack import Stack, start_stack


@pytest.fixture(scope="session")
def portal_origin() -> str:
    """The one origin the session stack lets call it cross-origin (tests/e2e/test_cors.py serves a
    page there); no other test sends it as Origin, so it changes nothing else. Loopback, as a
    browser lets only a loopback page call a loopback API (Local Network Access)."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, portal_origin: str) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("stack"), extra_settings={"BB_CORS_ORIGINS": portal_origin}
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def endpoints(stack: Stack) -> dict[str, Any]:
    return stack.endpoints


def msal_session(ca_bundle: str) -> requests.Session:
    """MSAL ignores `verify=` when REQUESTS_CA_BUNDLE is set (MACHINE.md): give it a session."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session


def client_token(endpoints: dict[str, Any]) -> str:
    """A Portal.Service token, as a portal backend gets it (client credentials, MSAL)."""
    app = msal.ConfidentialClientApplication(
        endpoints["portal"]["clientId"],
        client_credential=endpoints["portal"]["clientSecret"],
        authority=f"{endpoints['authorityHost']}/{endpoints['tenantId']}",
        instance_discovery=False,
        http_client=msal_session(endpoints["caBundle"]),
    )
    result = app.acquire_token_for_client(scopes=[endpoints["portal"]["scope"]])
    assert "access_token" in result, result.get("error_description")
    return str(result["access_token"])


def functions_client(endpoints: dict[str, Any], token: str | None = None) -> httpx.Client:
    """An httpx client on the Functions host, with a bearer token or anonymous."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=endpoints["functionsBaseUrl"] + "/", headers=headers, trust_env=False, timeout=30
    )


@pytest.fixture(scope="session")
def portal_token(endpoints: dict[str, Any]) -> str:
    return client_token(endpoints)


@pytest.fixture(scope="session")
def api(endpoints: dict[str, Any], portal_token: str) -> Iterator[httpx.Client]:
    """An httpx client on the Functions host, authenticated as Portal.Service."""
    with functions_client(endpoints, portal_token) as client:
        yield client


@pytest.fixture(scope="session")
def anonymous(endpoints: dict[str, Any]) -> Iterator[httpx.Client]:
    with functions_client(endpoints) as client:
        yield client


def user_token(endpoints: dict[str, Any], username: str, password: str) -> str:
    """A user's token for the BookingBridge API (ROPC through the portal client).

    Raw token request rather than MSAL: MSAL's ROPC first probes
    `https://<host>/common/userrealm/...` without the authority's port, so it cannot reach an
    emulator on a non-443 port. The interactive flows are proven with MSAL in their own tests.
    """
    response = httpx.post(
        f"{endpoints['authorityHost']}/{endpoints['tenantId']}/oauth2/v2.0/token",
        data={
            "grant_type": "password",
            "client_id": endpoints["portal"]["clientId"],
            "client_secret": endpoints["portal"]["clientSecret"],
            "username": username,
            "password": password,
            "scope": endpoints["portal"]["scope"],
        },
        verify=endpoints["caBundle"],
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def admin_token(stack: Stack, endpoints: dict[str, Any]) -> str:
    """The demo building's admin (Building.Admin, buildings claim = [demo building])."""
    admin = endpoints["admin"]
    return user_token(endpoints, admin["username"], admin["password"])


@pytest.fixture(scope="session")
def other_admin_token(stack: Stack, endpoints: dict[str, Any]) -> str:
    """Building.Admin of another building (`annex-building`), for cross-building refusals."""
    bruno = stack.emulator.seed["tenant"]["users"]["bruno"]
    return user_token(endpoints, bruno["userPrincipalName"], bruno["password"])
