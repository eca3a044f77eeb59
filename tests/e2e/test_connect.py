"""Connecting a building to Microsoft 365 through the whole local stack (real MSAL, SecretClient).

The admin's browser is an httpx client driving the identity emulator's pages; the app runs in the
devstack Functions host. Clock-driven cases (token expiry, inactivity) move the emulator clock;
our own flow TTL is judged on our clock, so that case calls the service in-process with a moved
`now` against the same stack (real Azurite, Key Vault and emulator).
"""

# ruff: noqa: F811 - pytest fixtures imported from connect_fixtures are parameters here
from __future__ import annotations

import dataclasses
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import functions_client
from tests.e2e.connect_fixtures import (  # noqa: F401 - fixtures
    admin_token_for,
    browser,
    building,
    canon,
    capi,
    cendpoints,
    connect_application,
    cportal_token,
    cstack,
    drive_authorize,
    fresh_tenant,
    mint_api_token,
    query_of,
    service_env,
)

pytestmark = pytest.mark.timeout(120)

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
WRITE_SCOPES = {"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadWrite.Shared", "User.Read"}


def start(capi: httpx.Client, building: str, body: dict[str, Any]) -> str:
    response = capi.post(f"buildings/{building}/connection", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["authorizeUrl"])


def connect_delegated(
    capi: httpx.Client,
    canon: httpx.Client,
    browser: httpx.Client,
    endpoints: dict[str, Any],
    building: str,
    *,
    login_hint: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> str:
    """Run a delegated connect; return where our callback sent the browser."""
    body: dict[str, Any] = {"mode": "delegated", "returnUrl": endpoints["returnUrl"]}
    if login_hint:
        body["loginHint"] = login_hint
    else:  # a service names the account that is to sign in (issue 21)
        body["expectedAccount"] = username
    callback = drive_authorize(
        browser, start(capi, building, body), username=username, password=password,
        functions_base=endpoints["functionsBaseUrl"],
    )  # fmt: skip
    response = canon.get(callback.removeprefix(endpoints["functionsBaseUrl"] + "/"))
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


def status(capi: httpx.Client, building: str) -> dict[str, Any]:
    response = capi.get(f"buildings/{building}/connection")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------- connecting


def test_delegated_connect_through_the_sign_in_page(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str
) -> None:
    tenant = fresh_tenant(cstack)
    admin = tenant["users"]["admin"]
    done = connect_delegated(
        capi, canon, browser, cstack.endpoints, building,
        username=admin["userPrincipalName"], password=admin["password"],
    )  # fmt: skip
    assert query_of(done)["status"] == "connected", done
    assert done.startswith(cstack.endpoints["returnUrl"].split("?")[0])
    shown = status(capi, building)
    assert shown["status"] == "connected"
    assert shown["mode"] == "delegated"
    assert shown["tenantId"] == tenant["id"]
    assert shown["account"]["id"] == admin["id"]
    assert shown["account"]["mail"] == admin["mail"]
    assert set(shown["scopes"]) >= WRITE_SCOPES
    assert shown["connectedAt"] and shown["lastRefreshAt"] and shown["reason"] is None


def test_delegated_connect_with_auto_consent(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str
) -> None:
    tenant = fresh_tenant(cstack)
    emma = tenant["users"]["emma"]  # not an admin: Place.Read.All is admin-consented tenant-wide
    done = connect_delegated(
        capi, canon, browser, cstack.endpoints, building, login_hint=emma["userPrincipalName"]
    )
    assert query_of(done)["status"] == "connected", done
    shown = status(capi, building)
    assert shown["account"]["userPrincipalName"] == emma["userPrincipalName"]
    assert "Place.Read.All" in shown["scopes"]


def test_application_connect_is_an_oidc_sign_in_with_prompt_admin_consent(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str
) -> None:
    tenant = fresh_tenant(cstack, admin_consent=False)
    admin = tenant["users"]["admin"]
    url = start(
        capi, building,
        {"mode": "application", "tenant": tenant["domain"], "returnUrl": cstack.endpoints["returnUrl"],
         "expectedAccount": admin["userPrincipalName"]},
    )  # fmt: skip
    # The domain was resolved to the tenant id: the admin signs in to exactly that tenant.
    assert urlsplit(url).path == f"/{tenant['id']}/oauth2/v2.0/authorize"
    q = query_of(url)
    assert q["prompt"] == "admin_consent" and q["response_type"] == "code"
    assert q["scope"] == "openid profile https://graph.microsoft.com/.default"
    assert q["redirect_uri"] == cstack.settings["BB_PUBLIC_BASE_URL"] + "/oauth/adminconsent"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["nonce"] and q["state"]
    callback = drive_authorize(
        browser, url, username=admin["userPrincipalName"], password=admin["password"],
        functions_base=cstack.endpoints["functionsBaseUrl"],
    )  # fmt: skip
    remember(callback)
    assert {"code", "state"} <= set(query_of(callback)) and "tenant" not in query_of(callback)
    response = canon.get(callback_path(callback, cstack.endpoints))
    assert response.status_code == 302
    assert query_of(response.headers["location"])["status"] == "connected"
    shown = status(capi, building)
    assert shown["status"] == "connected" and shown["mode"] == "application"
    assert shown["tenantId"] == tenant["id"]
    assert shown["account"] is None
    # The emulator recorded the admin's tenant-wide consent: the app's own token carries roles.
    assert {"Calendars.ReadWrite", "Calendars.Read"} <= set(shown["scopes"])
    # The admin's delegated tokens from the code were not kept: no secret for this building.
    from azure.core.exceptions import ResourceNotFoundError

    from shared.storage.keyvault import connection_secret_name

    with pytest.raises(ResourceNotFoundError):
        secret_client(cstack).get_secret(connection_secret_name(building))
    # A replayed callback (same state and code) is refused and changes nothing.
    assert canon.get(callback_path(callback, cstack.endpoints)).status_code == 400
    assert status(capi, building)["status"] == "connected"


# ---------------------------------------------------------------- the application connect's checks
TID, OTHER, HOST = (
    "6F1B2C3D-0000-4000-8000-00000000000A",
    "0b2c3d4e-0000-4000-8000-00000000000b",
    "https://login.example",
)


def test_admin_consent_id_token_must_name_this_flow_and_the_requested_tenant() -> None:
    from shared.connect.flows import check_admin_consent_claims
    from shared.connect.model import ConnectFailed

    good = {"aud": "client", "iss": f"{HOST}/{TID}/v2.0", "tid": TID, "oid": "o1", "nonce": "n1"}

    def check(claims: dict[str, Any]) -> None:
        check_admin_consent_claims(
            claims, client_id="client", authority_host=HOST, tenant_id=TID.lower(), nonce="n1"
        )

    check(good)  # a tenant id compares case-insensitively
    for changes, reason in (
        ({"nonce": "n2"}, "nonce_mismatch"),
        ({"nonce": None}, "nonce_mismatch"),
        ({"tid": OTHER, "iss": f"{HOST}/{OTHER}/v2.0"}, "tenant_mismatch"),
        ({"aud": "another-client"}, "invalid_id_token"),
        ({"iss": f"{HOST}/{OTHER}/v2.0"}, "invalid_id_token"),
        ({"tid": "contoso.example"}, "invalid_id_token"),
        ({"oid": None}, "invalid_id_token"),
    ):
        with pytest.raises(ConnectFailed) as raised:
            check({**good, **changes})
        assert raised.value.reason == reason, changes
    with pytest.raises(ConnectFailed):
        check({})  # no id token came back at all


def test_tenant_id_from_the_openid_configuration_issuer() -> None:
    from shared.connect.flows import tenant_id_from_issuer

    assert tenant_id_from_issuer(f"{HOST}/{TID}/v2.0", HOST + "/") == TID.lower()
    for issuer in (
        f"{HOST}/{{tenantid}}/v2.0",  # the multi-tenant placeholder
        f"https://evil.example/{TID}/v2.0",
        f"{HOST}/{TID}",
        f"{HOST}/{TID}/x/v2.0",
        f"{HOST}.evil.example/{TID}/v2.0",
        "",
    ):
        assert tenant_id_from_issuer(issuer, HOST) is None, issuer


# ---------------------------------------------------------------- what the token scan looks for

SEEN: dict[str, set[str]] = {"code": set(), "state": set(), "refresh": set(), "access": set()}


def remember(callback_or_done: str) -> None:
    q = query_of(callback_or_done)
    for key in ("code", "state"):
        if q.get(key):
            SEEN[key].add(q[key])


def secret_client(stack: Stack) -> Any:
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    s = stack.settings
    credential = ClientSecretCredential(
        s["AZURE_TENANT_ID"], s["AZURE_CLIENT_ID"], s["AZURE_CLIENT_SECRET"],
        authority=s["BB_AUTHORITY_HOST"], disable_instance_discovery=True,
        connection_verify=s["BB_CA_BUNDLE"],
    )  # fmt: skip
    return SecretClient(
        s["BB_KEY_VAULT_URL"], credential, verify_challenge_resource=False,
        connection_verify=s["BB_CA_BUNDLE"],
    )  # fmt: skip


def refresh_token_versions(stack: Stack, building: str) -> list[str]:
    from shared.storage.keyvault import connection_secret_name

    client = secret_client(stack)
    name = connection_secret_name(building)
    values = [
        client.get_secret(name, p.version).value
        for p in client.list_properties_of_secret_versions(name)
    ]
    SEEN["refresh"].update(v for v in values if v)
    return [v for v in values if v]


def delegated_callback(
    cstack: Stack, capi: httpx.Client, browser: httpx.Client, building: str, login_hint: str
) -> str:
    """Start a delegated connect and drive the authorize pages (auto-consent); the callback URL
    Microsoft sends the browser to, remembered for the token scan, not yet followed."""
    body = {
        "mode": "delegated",
        "returnUrl": cstack.endpoints["returnUrl"],
        "loginHint": login_hint,
    }
    callback = drive_authorize(
        browser, start(capi, building, body), functions_base=cstack.endpoints["functionsBaseUrl"]
    )
    remember(callback)
    return callback


def connect_and_remember(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    login_hint: str,
) -> str:  # fmt: skip
    callback = delegated_callback(cstack, capi, browser, building, login_hint)
    response = canon.get(callback.removeprefix(cstack.endpoints["functionsBaseUrl"] + "/"))
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


@pytest.fixture(scope="module")
def demo_admin(cstack: Stack) -> str:
    return str(cstack.endpoints["admin"]["username"])


# ---------------------------------------------------------------- security


def callback_path(callback: str, endpoints: dict[str, Any]) -> str:
    return callback.removeprefix(endpoints["functionsBaseUrl"] + "/")


def assert_nothing_stored(capi: httpx.Client, building: str) -> None:
    assert status(capi, building)["status"] == "disconnected"


def test_replayed_state_is_refused(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str,
) -> None:  # fmt: skip
    callback = delegated_callback(cstack, capi, browser, building, demo_admin)
    first = canon.get(callback_path(callback, cstack.endpoints))
    assert query_of(first.headers["location"])["status"] == "connected"
    replay = canon.get(callback_path(callback, cstack.endpoints))
    assert replay.status_code == 400
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert replay.json()["errors"][0]["field"] == "state"


def test_tampered_or_missing_state_is_refused(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str,
) -> None:  # fmt: skip
    callback = delegated_callback(cstack, capi, browser, building, demo_admin)
    q = query_of(callback)
    tampered = q["state"][:-2] + ("AA" if not q["state"].endswith("AA") else "BB")
    for params in ({**q, "state": tampered}, {"code": q["code"]}, {**q, "state": "x' or 1=1"}):
        response = canon.get("oauth/callback", params=params)
        assert response.status_code == 400, response.text
    assert_nothing_stored(capi, building)


def test_expired_state_is_refused_on_our_clock(
    cstack: Stack, service_env: None, building: str
) -> None:
    from shared import wiring
    from shared.api.auth import Caller
    from shared.connect import service
    from shared.core.errors import ValidationFailed

    deps = wiring.connect_deps()
    caller = Caller("tester", "t", frozenset({"Portal.Service"}), None)
    body = {
        "mode": "delegated",
        "returnUrl": cstack.endpoints["returnUrl"],
        "expectedAccount": "someone@example.com",
    }
    url = service.start_connect(deps, building, caller, body)
    state = query_of(url)["state"]
    SEEN["state"].add(state)
    later = dataclasses.replace(deps, now=lambda: datetime.now(UTC) + timedelta(minutes=11))
    with pytest.raises(ValidationFailed):
        service.complete_delegated(later, {"state": state, "code": "irrelevant"})
    with pytest.raises(ValidationFailed):  # and it is gone: expiry consumed it
        service.complete_delegated(deps, {"state": state, "code": "irrelevant"})
    assert deps.connections.get(building) is None


def test_a_state_completes_only_its_own_building_and_mode(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str,
) -> None:  # fmt: skip
    other = building + "-other"
    ensure_building(capi, other)
    callback = delegated_callback(cstack, capi, browser, building, demo_admin)
    q = query_of(callback)
    # A delegated state on the admin-consent endpoint (mode confusion) is refused and consumed.
    wrong = canon.get(
        "oauth/adminconsent", params={"state": q["state"], "tenant": cstack.endpoints["tenantId"],
                                      "admin_consent": "True"},
    )  # fmt: skip
    assert wrong.status_code == 400
    assert_nothing_stored(capi, building)
    assert_nothing_stored(capi, other)


def test_forged_admin_consent_callback_naming_a_consented_tenant_is_refused(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client,
    admin_token_for: Any, building: str,
) -> None:  # fmt: skip
    """The hole: a Building.Admin of A names tenant T, which consented for another customer's
    building B, and forges Microsoft's v2 admin-consent answer for their own flow."""
    victim = fresh_tenant(cstack, admin_consent=False)
    other_building = building + "-b"
    _, done = connect_application(
        capi, canon, browser, cstack.endpoints, other_building, victim["domain"],
        login_hint=victim["users"]["admin"]["userPrincipalName"],
    )  # fmt: skip
    assert query_of(done)["status"] == "connected"  # T has consented (for building B)
    attacker = functions_client(cstack.endpoints, admin_token_for([building]))
    for asked in (victim["id"], cstack.endpoints["tenantId"]):  # T itself, or any tenant
        started = attacker.post(
            f"buildings/{building}/connection",
            json={"mode": "application", "tenant": asked, "returnUrl": cstack.endpoints["returnUrl"]},
        )  # fmt: skip
        assert started.status_code == 200, started.text
        state = query_of(started.json()["authorizeUrl"])["state"]
        SEEN["state"].add(state)
        forged = {"state": state, "admin_consent": "True", "tenant": victim["id"]}
        response = canon.get("oauth/adminconsent", params={**forged, "scope": GRAPH_DEFAULT})
        assert response.status_code == 302, response.text
        back = query_of(response.headers["location"])
        assert back["status"] == "error" and back["reason"] == "consent_unverifiable"
        assert canon.get("oauth/adminconsent", params=forged).status_code == 400  # consumed
    assert_nothing_stored(capi, building)
    # Building B keeps its connection.
    shown = status(capi, other_building)
    assert shown["status"] == "connected" and shown["tenantId"] == victim["id"]


@pytest.mark.parametrize("signed_in_to", ["own tenant", "organizations"])
def test_the_id_token_tenant_must_be_the_requested_tenant(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    signed_in_to: str,
) -> None:  # fmt: skip
    """An admin of their own tenant X edits the sign-in URL (state, nonce and PKCE intact) to
    consent in X instead of the requested T: a real code of this flow, but `tid` is X."""
    requested = fresh_tenant(cstack)
    own = fresh_tenant(cstack)
    url = start(
        capi, building,
        {"mode": "application", "tenant": requested["id"], "returnUrl": cstack.endpoints["returnUrl"],
         "expectedAccount": own["users"]["admin"]["userPrincipalName"]},  # only the tenant is wrong
    )  # fmt: skip
    segment = own["id"] if signed_in_to == "own tenant" else "organizations"
    edited = url.replace(f"/{requested['id']}/oauth2/", f"/{segment}/oauth2/", 1)
    edited += "&" + urlencode({"login_hint": own["users"]["admin"]["userPrincipalName"]})
    callback = drive_authorize(browser, edited, functions_base=cstack.endpoints["functionsBaseUrl"])
    remember(callback)
    assert "code" in query_of(callback)  # Microsoft did issue a code, for tenant X
    response = canon.get(callback_path(callback, cstack.endpoints))
    back = query_of(response.headers["location"])
    assert back["status"] == "error" and back["reason"] == "tenant_mismatch"
    shown = status(capi, building)
    assert shown["status"] == "error" and shown["reason"] == "tenant_mismatch"
    assert shown["tenantId"] == requested["id"] and shown["scopes"] == []


def test_a_non_admin_cannot_complete_an_application_connect(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str
) -> None:
    # The tenant has consented already (seeded): prompt=admin_consent still needs an admin.
    tenant = fresh_tenant(cstack)
    for user in ("emma", "bruno"):
        callback, done = connect_application(
            capi, canon, browser, cstack.endpoints, building, tenant["id"],
            login_hint=tenant["users"][user]["userPrincipalName"],
        )  # fmt: skip
        assert "code" not in query_of(callback) and query_of(callback)["error"]
        assert query_of(done)["status"] == "error"
        assert query_of(done)["reason"] == "admin_consent_required"
    shown = status(capi, building)
    assert shown["status"] == "error" and shown["reason"] == "admin_consent_required"
    assert shown["scopes"] == []


def test_application_connect_needs_one_existing_tenant(
    cstack: Stack, capi: httpx.Client, building: str
) -> None:
    for tenant, message in (
        ("organizations", "must be the tenant id or a verified domain"),
        ("common", "must be the tenant id or a verified domain"),
        ("no-such-tenant.example", "no Microsoft Entra tenant has this domain"),  # discovery: 400
    ):
        response = capi.post(
            f"buildings/{building}/connection",
            json={"mode": "application", "tenant": tenant, "returnUrl": cstack.endpoints["returnUrl"],
                  "expectedAccount": "admin@example.com"},
        )  # fmt: skip
        assert response.status_code == 400, tenant
        assert response.json()["errors"] == [{"field": "tenant", "message": message}]
    assert_nothing_stored(capi, building)


def test_open_redirect_return_url_is_refused(capi: httpx.Client, building: str) -> None:
    for bad in (
        "https://evil.example/steal",
        "http://127.0.0.1:1/api/health",  # same host, other port: another origin
        "https://evil.example\\@127.0.0.1/",
        "javascript:alert(1)",
        "/relative/path",
    ):
        response = capi.post(
            f"buildings/{building}/connection",
            json={"mode": "delegated", "returnUrl": bad, "expectedAccount": "admin@example.com"},
        )
        assert response.status_code == 400, bad
        assert [e["field"] for e in response.json()["errors"]] == ["returnUrl"]
    assert_nothing_stored(capi, building)


def test_bearer_tokens_are_required_and_checked(
    cstack: Stack, canon: httpx.Client, building: str
) -> None:
    path = f"buildings/{building}/connection"
    body = {"mode": "delegated", "returnUrl": cstack.endpoints["returnUrl"]}
    missing = canon.post(path, json=body)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="BookingBridge"'
    forged = mint_api_token(cstack, roles=["Portal.Service"]).rsplit(".", 1)[0] + ".AAAA"
    expired = mint_api_token(cstack, roles=["Portal.Service"], lifetime=-600)
    wrong_aud = mint_api_token(cstack, roles=["Portal.Service"], audience="api://other")
    for token in (forged, expired, wrong_aud, "not-a-jwt"):
        for method in ("POST", "GET", "DELETE"):
            response = canon.request(
                method, path, json=body if method == "POST" else None,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            assert response.status_code == 401, (method, response.text)
            assert response.headers["WWW-Authenticate"] == (
                'Bearer realm="BookingBridge", error="invalid_token"'
            )
    assert canon.get(f"buildings/{building}/audit").status_code == 401


def test_building_admin_of_another_building_is_forbidden(
    cstack: Stack, canon: httpx.Client, capi: httpx.Client, building: str
) -> None:
    # The emulator's helper cannot add a `buildings` claim yet: an admin with no buildings is an
    # admin of "another building" for every building.
    token = mint_api_token(cstack, roles=["Building.Admin"])
    headers = {"Authorization": f"Bearer {token}"}
    body = {"mode": "delegated", "returnUrl": cstack.endpoints["returnUrl"]}
    path = f"buildings/{building}/connection"
    assert canon.post(path, json=body, headers=headers).status_code == 403
    assert canon.get(path, headers=headers).status_code == 403
    assert canon.delete(path, headers=headers).status_code == 403
    assert canon.get(f"buildings/{building}/audit", headers=headers).status_code == 403
    assert_nothing_stored(capi, building)


def test_building_admin_scoped_tokens(
    cstack: Stack, canon: httpx.Client, admin_token_for: Any, building: str
) -> None:
    mine = admin_token_for([building])
    theirs = admin_token_for([building + "-x"])
    path = f"buildings/{building}/connection"
    assert canon.get(path, headers={"Authorization": f"Bearer {mine}"}).status_code == 200
    assert canon.get(path, headers={"Authorization": f"Bearer {theirs}"}).status_code == 403


# ---------------------------------------------------------------- lifecycle


def test_disconnect_deletes_the_secret_and_shows_disconnected(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str,
) -> None:  # fmt: skip
    done = connect_and_remember(cstack, capi, canon, browser, building, demo_admin)
    assert query_of(done)["status"] == "connected"
    assert refresh_token_versions(cstack, building)
    assert capi.delete(f"buildings/{building}/connection").status_code == 204
    assert status(capi, building)["status"] == "disconnected"
    from azure.core.exceptions import ResourceNotFoundError

    from shared.storage.keyvault import connection_secret_name

    with pytest.raises(ResourceNotFoundError):
        secret_client(cstack).get_secret(connection_secret_name(building))
    assert capi.delete(f"buildings/{building}/connection").status_code == 204  # idempotent
    # Reconnecting reuses the name (the deleted secret was purged or is recovered).
    done = connect_and_remember(cstack, capi, canon, browser, building, demo_admin)
    assert query_of(done)["status"] == "connected"


def test_refresh_rotates_and_survives_access_token_expiry(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str, service_env: None,
) -> None:  # fmt: skip
    from shared import wiring

    connect_and_remember(cstack, capi, canon, browser, building, demo_admin)
    before = status(capi, building)["lastRefreshAt"]
    assert len(refresh_token_versions(cstack, building)) == 1
    deps = wiring.connect_deps()
    graph = wiring.graph_client()
    connection = deps.connections.get(building)
    assert connection is not None
    me = graph.get_json(connection, "/me", actor="test")  # this process has no token: refresh
    assert me["userPrincipalName"].lower() == demo_admin.lower()
    assert len(refresh_token_versions(cstack, building)) == 2  # rotated and persisted
    cstack.emulator.advance_clock(3599 + 600)  # past the access token's lifetime (+ skew)
    me = graph.get_json(connection, "/me", actor="test")  # 401 → refresh once → retry
    assert me["id"] == connection.account.id if connection.account else False
    assert len(refresh_token_versions(cstack, building)) == 3
    SEEN["access"].update(c.token for c in deps.tokens._cache.values())
    shown = status(capi, building)
    assert shown["status"] == "connected" and shown["lastRefreshAt"] >= before
    records = capi.get(f"buildings/{building}/audit", params={"limit": 10}).json()["value"]
    assert records and records[0]["operation"] == "GET /me" and records[0]["result"] == "ok"
    assert records[0]["requestId"] and records[0]["actor"] == "test"


def test_revoked_grant_needs_reauth_and_reconnect_restores(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    service_env: None,
) -> None:  # fmt: skip
    from shared import wiring
    from shared.core.errors import IdentityError

    tenant = fresh_tenant(cstack)
    olivia = tenant["users"]["olivia"]
    connect_and_remember(cstack, capi, canon, browser, building, olivia["userPrincipalName"])
    refresh_token_versions(cstack, building)
    revoke = cstack.emulator.control.post(
        "identity/revoke", json={"tenant": tenant["id"], "user": olivia["id"]}
    )
    assert revoke.status_code == 200, revoke.text
    deps = wiring.connect_deps()
    connection = deps.connections.get(building)
    assert connection is not None
    with pytest.raises(IdentityError) as raised:
        wiring.graph_client().get_json(connection, "/me")
    assert raised.value.reauth
    shown = status(capi, building)
    assert shown["status"] == "reauth_required" and shown["reason"] == "grant_revoked"
    done = connect_and_remember(cstack, capi, canon, browser, building, olivia["userPrincipalName"])
    assert query_of(done)["status"] == "connected"
    assert status(capi, building)["status"] == "connected"


def test_inactive_refresh_token_needs_reauth_and_reconnect_restores(
    cstack: Stack, capi: httpx.Client, canon: httpx.Client, browser: httpx.Client, building: str,
    demo_admin: str, service_env: None,
) -> None:  # fmt: skip
    from shared import wiring
    from shared.core.errors import IdentityError

    connect_and_remember(cstack, capi, canon, browser, building, demo_admin)
    refresh_token_versions(cstack, building)
    cstack.emulator.advance_clock(91 * 86400)
    deps = wiring.connect_deps()
    connection = deps.connections.get(building)
    assert connection is not None
    with pytest.raises(IdentityError):
        deps.tokens.refresh_now(connection)  # what the keep-alive timer does
    shown = status(capi, building)
    assert shown["status"] == "reauth_required"
    assert shown["reason"] == "refresh_token_expired"
    done = connect_and_remember(cstack, capi, canon, browser, building, demo_admin)
    assert query_of(done)["status"] == "connected"
    assert status(capi, building)["status"] == "connected"


# ---------------------------------------------------------------- no token material anywhere


def test_no_token_material_in_logs_or_tables(
    cstack: Stack, service_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    from azure.data.tables import TableServiceClient

    from shared import wiring
    from shared.storage.keyvault import oidc_nonce, pkce_verifier

    caplog.set_level(logging.DEBUG)
    # flows started with older key versions: none (one version)
    key = wiring.connect_deps().flow_keys.current().key
    # States are flow ids: public (they travel in URLs) and the oauthflows PartitionKey by design.
    needles: dict[str, set[str]] = {k: set(v) for k, v in SEEN.items() if k != "state"}
    needles["verifier"] = {pkce_verifier(key, s) for s in SEEN["state"]}
    needles["nonce"] = {oidc_nonce(key, s) for s in SEEN["state"]}
    needles["secret"] = {cstack.settings["AZURE_CLIENT_SECRET"]}
    assert needles["code"] and needles["refresh"] and needles["access"]
    haystacks: dict[str, str] = {}
    for log in (cstack.state_dir / "logs").glob("*.log"):
        haystacks[log.name] = log.read_text(errors="replace")
    service = TableServiceClient.from_connection_string(cstack.settings["AzureWebJobsStorage"])
    for table in service.list_tables():
        rows = service.get_table_client(table.name).list_entities()
        haystacks[f"table {table.name}"] = "\n".join(repr(dict(e)) for e in rows)
    haystacks["captured logging"] = caplog.text
    assert haystacks["table connections"] and haystacks["table audit"]
    leaks = [
        (kind, where)
        for kind, values in needles.items()
        for value in values
        for where, text in haystacks.items()
        if len(value) >= 16 and value in text
    ]
    assert not leaks, leaks
    assert not re.search(r"eyJ[A-Za-z0-9_-]{20,}\.eyJ", haystacks.get("functions.log", ""))
