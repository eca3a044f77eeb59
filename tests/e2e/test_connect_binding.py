"""A connect flow finishes only for the account it was started for (issue 21).

The attack: a Building.Admin starts a delegated connect and sends the authorize link to a
colleague with a richer mailbox who consented before; Entra asks her nothing, and without the
binding the building would be connected to *her* mailbox. Every case runs through the real stack:
our routes, the identity emulator's authorize endpoint (auto-consent via `login_hint`, as a
colleague who consented before sees it), Azurite and Key Vault.
"""

# ruff: noqa: F811 - pytest fixtures imported from connect_fixtures are parameters here
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from devstack.stack import Stack
from shared.storage.keyvault import connection_secret_name
from tests.e2e.conftest import functions_client, user_token
from tests.e2e.connect_fixtures import (  # noqa: F401 - fixtures
    admin_token_for,
    browser,
    building,
    canon,
    capi,
    cendpoints,
    cportal_token,
    cstack,
    drive_authorize,
    fresh_tenant,
    query_of,
)

pytestmark = pytest.mark.timeout(120)


def users(cstack: Stack) -> dict[str, Any]:
    return dict(cstack.emulator.seed["tenant"]["users"])


def start(api: httpx.Client, building: str, body: dict[str, Any]) -> str:
    response = api.post(f"buildings/{building}/connection", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["authorizeUrl"])


def finish_as(
    cstack: Stack, browser: httpx.Client, canon: httpx.Client, url: str, upn: str
) -> dict[str, str]:
    """`upn` opens the authorize link (signed in already and consented: no question asked); our
    callback answers; the status (and reason) it sent the browser back to the return URL with."""
    signed_in = url + "&" + urlencode({"login_hint": upn})
    base = cstack.endpoints["functionsBaseUrl"]
    callback = drive_authorize(browser, signed_in, functions_base=base)
    assert "code" in query_of(callback), callback  # Microsoft did issue a code
    response = canon.get(callback.removeprefix(base + "/"))
    assert response.status_code == 302, response.text
    back = query_of(response.headers["location"])
    return {key: back[key] for key in ("status", "reason") if key in back}


def delegated(cstack: Stack, **extra: str) -> dict[str, Any]:
    return {"mode": "delegated", "returnUrl": cstack.endpoints["returnUrl"], **extra}


def connection_of(capi: httpx.Client, building: str) -> dict[str, Any]:
    response = capi.get(f"buildings/{building}/connection")
    assert response.status_code == 200, response.text
    return dict(response.json())


def has_secret(cstack: Stack, building: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    from tests.e2e.test_connect import secret_client

    try:
        secret_client(cstack).get_secret(connection_secret_name(building))
    except ResourceNotFoundError:
        return False
    return True


def connect_records(capi: httpx.Client, building: str) -> list[dict[str, Any]]:
    response = capi.get(f"buildings/{building}/audit")
    assert response.status_code == 200, response.text
    return [r for r in response.json()["value"] if r["operation"].startswith("connect.")]


def test_a_colleague_cannot_finish_a_building_admins_delegated_connect(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    admin_token_for: Callable[[list[str]], str],
) -> None:  # fmt: skip
    bruno, emma = users(cstack)["bruno"], users(cstack)["emma"]
    attacker = functions_client(cstack.endpoints, admin_token_for([building]))
    # Bruno connects his own mailbox: fine.
    own = finish_as(cstack, browser, canon, start(attacker, building, delegated(cstack)),
                    bruno["userPrincipalName"])  # fmt: skip
    assert own["status"] == "connected", own
    before = connection_of(capi, building)
    assert before["account"]["id"] == bruno["id"]
    # He sends the next link to Emma, who signs in without a question: refused, nothing changes.
    url = start(attacker, building, delegated(cstack))
    back = finish_as(cstack, browser, canon, url, emma["userPrincipalName"])
    assert back == {"status": "error", "reason": "account_mismatch"}
    assert connection_of(capi, building) == before  # still Bruno's, not even marked
    assert has_secret(cstack, building)  # Bruno's refresh token, untouched
    records = connect_records(capi, building)
    refused = [r for r in records if r["status"] == 403]
    ok = [r for r in records if r["status"] == 200]
    assert len(refused) == 1 and len(ok) == 1
    assert refused[0]["actor"] == f"admin:{bruno['id']}"
    assert (
        emma["userPrincipalName"] in refused[0]["mailbox"] and emma["id"] in refused[0]["mailbox"]
    )
    assert refused[0]["result"].startswith("refused account_mismatch")
    assert bruno["id"] in refused[0]["result"]  # the expected account is named too
    assert ok[0]["actor"] == f"admin:{bruno['id']}" and bruno["id"] in ok[0]["mailbox"]
    assert ok[0]["connection"]


def test_a_refused_first_connect_stores_nothing(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    admin_token_for: Callable[[list[str]], str],
) -> None:  # fmt: skip
    attacker = functions_client(cstack.endpoints, admin_token_for([building]))
    url = start(attacker, building, delegated(cstack))
    back = finish_as(cstack, browser, canon, url, users(cstack)["emma"]["userPrincipalName"])
    assert back == {"status": "error", "reason": "account_mismatch"}
    assert connection_of(capi, building)["status"] == "disconnected"
    assert not has_secret(cstack, building)
    # The code was redeemed and dropped; the state is spent: the same callback cannot be replayed.
    assert canon.get("oauth/callback", params={"state": query_of(url)["state"], "code": "x"}).status_code == 400  # fmt: skip


def test_a_service_must_name_the_account(cstack: Stack, capi: httpx.Client, building: str) -> None:
    response = capi.post(f"buildings/{building}/connection", json=delegated(cstack))
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in response.json()["errors"]] == ["expectedAccount"]
    for bad in ("not an account", "a@", 42, "x" * 300 + "@example.com"):
        response = capi.post(
            f"buildings/{building}/connection", json=delegated(cstack, expectedAccount=bad)
        )
        assert response.status_code == 400, bad
        assert [e["field"] for e in response.json()["errors"]] == ["expectedAccount"]
    assert connection_of(capi, building)["status"] == "disconnected"


@pytest.mark.parametrize("named_by", ["expectedAccount", "loginHint", "object id"])
def test_a_service_flow_finishes_only_for_the_named_account(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    named_by: str,
) -> None:  # fmt: skip
    emma, admin = users(cstack)["emma"], users(cstack)["admin"]
    if named_by == "object id":
        body = delegated(cstack, expectedAccount=emma["id"])
    else:
        body = delegated(cstack, **{named_by: emma["userPrincipalName"].upper()})
    back = finish_as(
        cstack, browser, canon, start(capi, building, body), admin["userPrincipalName"]
    )
    assert back == {"status": "error", "reason": "account_mismatch"}
    assert connection_of(capi, building)["status"] == "disconnected"
    back = finish_as(cstack, browser, canon, start(capi, building, body), emma["userPrincipalName"])
    assert back == {"status": "connected"}
    assert connection_of(capi, building)["account"]["id"] == emma["id"]


def test_the_application_flows_admin_sign_in_is_bound_too(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    admin_token_for: Callable[[list[str]], str],
) -> None:  # fmt: skip
    tenant = cstack.endpoints["tenantId"]
    avery = users(cstack)["admin"]  # a Global Administrator and a Building.Admin
    body = {"mode": "application", "tenant": tenant, "returnUrl": cstack.endpoints["returnUrl"]}
    # Bruno (Building.Admin, not a tenant admin) starts; the tenant's admin finishes: refused.
    bruno_api = functions_client(cstack.endpoints, admin_token_for([building]))
    back = finish_as(cstack, browser, canon, start(bruno_api, building, body),
                     avery["userPrincipalName"])  # fmt: skip
    assert back == {"status": "error", "reason": "account_mismatch"}
    assert connection_of(capi, building)["status"] == "disconnected"
    # A service names the admin, someone else's admin of the same tenant cannot stand in. Here
    # the admin herself finishes: connected, audited with both identities.
    named = {**body, "expectedAccount": avery["userPrincipalName"]}
    back = finish_as(
        cstack, browser, canon, start(capi, building, named), avery["userPrincipalName"]
    )
    assert back == {"status": "connected"}
    shown = connection_of(capi, building)
    assert shown["mode"] == "application" and shown["tenantId"] == tenant
    records = connect_records(capi, building)
    assert {r["status"] for r in records} == {200, 403}
    assert all(r["operation"] == "connect.application" for r in records)
    # Avery starting it as a Building.Admin herself also works (her own oid and tid).
    avery_token = user_token(cstack.endpoints, avery["userPrincipalName"], avery["password"])
    own = functions_client(cstack.endpoints, avery_token)
    other = "demo-building"  # the building in Avery's `buildings` attribute
    back = finish_as(cstack, browser, canon, start(own, other, body), avery["userPrincipalName"])
    assert back == {"status": "connected"}
