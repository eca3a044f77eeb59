"""The identity emulator driven by the real MSAL and azure-identity over HTTPS.

Every token is verified with PyJWT against the JWKS fetched from the emulator; every error case
checks the OAuth `error`, the AADSTS code in `error_codes` and that MSAL hands it back unchanged.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import msal
import pytest
from azure.identity import ClientSecretCredential

from devstack.m365 import RunningEmulator
from devstack.m365.control import load_scenario
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.integration import emulator_fixtures
from tests.integration.emulator_fixtures import (
    ADMIN_CONSENT_URI,
    GRAPH_SCOPES,
    REDIRECT_URI,
    RedirectReceiver,
    https_client,
    jwks,
    msal_app,
    redirect_params,
    submit_form,
)

# Fixtures shared with other emulator tests (the names are what tests ask for).
fresh_demo = emulator_fixtures.fresh_demo
m365 = emulator_fixtures.m365
redirect_receiver = emulator_fixtures.redirect_receiver

GRAPH = "https://graph.microsoft.com"
# MSAL recommends form_post; the product (and most tests) use the default query response mode.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


def verify(m365: RunningEmulator, token: str, tenant_id: str, audience: str) -> dict[str, Any]:
    keys = jwt.PyJWKSet.from_dict(jwks(m365, tenant_id))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    # The emulator's clock may be ahead of this machine's (tests advance it): no exp check here.
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=f"{m365.base_url}/{tenant_id}/v2.0",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return claims


def app_for(m365: RunningEmulator, seed: dict[str, Any], key: str = "bookingbridge") -> Any:
    app = seed["apps"][key]
    return msal_app(m365, seed["tenant"]["id"], app["clientId"], app["clientSecret"])


def sign_in_interactively(
    m365: RunningEmulator, flow: dict[str, Any], username: str, password: str
) -> tuple[httpx.Response, httpx.Response]:
    """Drive the sign-in and consent pages like a browser; return (consent page, final redirect)."""
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        assert page.status_code == 200 and 'id="i0116"' in page.text
        consent = submit_form(client, page, {"loginfmt": username, "passwd": password})
        assert consent.status_code == 200, consent.text[:300]
        assert 'id="idBtn_Accept"' in consent.text
        done = submit_form(client, consent, {"decision": "accept"})
    return consent, done


def auto_code(m365: RunningEmulator, flow: dict[str, Any]) -> dict[str, str]:
    """Auto-consent: `login_hint` in the flow makes /authorize redirect straight back."""
    with https_client(m365) as client:
        return redirect_params(client.get(flow["auth_uri"]), flow["redirect_uri"])


def test_discovery_for_guid_domain_and_multi_tenant_segments(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    tenant = fresh_demo["tenant"]
    with https_client(m365) as client:
        for segment in (tenant["id"], tenant["domain"]):
            config = client.get(f"{m365.base_url}/{segment}/v2.0/.well-known/openid-configuration")
            assert config.json()["issuer"] == f"{m365.base_url}/{tenant['id']}/v2.0"
        for segment in ("organizations", "common"):
            config = client.get(f"{m365.base_url}/{segment}/v2.0/.well-known/openid-configuration")
            assert config.json()["issuer"] == f"{m365.base_url}/{{tenantid}}/v2.0"
        unknown = client.get(f"{m365.base_url}/nope.example/v2.0/.well-known/openid-configuration")
        assert unknown.status_code == 400 and unknown.json()["error_codes"] == [90002]


def test_auth_code_flow_with_sign_in_and_consent_pages(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    tenant, user = fresh_demo["tenant"], fresh_demo["tenant"]["users"]["emma"]
    app = app_for(m365, fresh_demo)
    flow = app.initiate_auth_code_flow([*GRAPH_SCOPES, "email"], redirect_uri=REDIRECT_URI)
    assert "code_challenge_method=S256" in flow["auth_uri"]
    consent, done = sign_in_interactively(m365, flow, user["userPrincipalName"], user["password"])
    assert "Calendars.ReadWrite.Shared" in consent.text
    result = app.acquire_token_by_auth_code_flow(flow, redirect_params(done, REDIRECT_URI))
    assert "error" not in result, result
    assert result["expires_in"] == 3599 and result["refresh_token"]
    access = verify(m365, result["access_token"], tenant["id"], GRAPH)
    assert access["tid"] == tenant["id"] and access["oid"] == user["id"]
    assert set(access["scp"].split()) == set(GRAPH_SCOPES)
    assert access["azp"] == fresh_demo["apps"]["bookingbridge"]["clientId"]
    ident = verify(
        m365, result["id_token"], tenant["id"], fresh_demo["apps"]["bookingbridge"]["clientId"]
    )
    # MSAL sends the SHA-256 of its nonce; the id token must carry exactly what was sent.
    assert ident["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert ident["preferred_username"] == user["userPrincipalName"]
    assert ident["oid"] == user["id"] and ident["email"] == user["mail"]
    account = app.get_accounts()[0]
    assert account["home_account_id"] == f"{user['id']}.{tenant['id']}"

    # Consent is remembered: the next sign-in goes straight back with a code.
    flow2 = app.initiate_auth_code_flow([*GRAPH_SCOPES, "email"], redirect_uri=REDIRECT_URI)
    with https_client(m365) as client:
        page = client.get(flow2["auth_uri"])
        back = submit_form(client, page, {"loginfmt": user["mail"], "passwd": user["password"]})
    assert "error" not in app.acquire_token_by_auth_code_flow(
        flow2, redirect_params(back, REDIRECT_URI)
    )


def test_wrong_password_shows_the_page_again(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    app = app_for(m365, fresh_demo)
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=REDIRECT_URI)
    user = fresh_demo["tenant"]["users"]["emma"]
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        again = submit_form(client, page, {"loginfmt": user["mail"], "passwd": "wrong"})
    assert again.status_code == 200 and "AADSTS50126" in again.text


def test_auto_consent_refresh_after_expiry_and_old_refresh_token_still_works(
    m365: RunningEmulator, fresh_demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, user = fresh_demo["tenant"], fresh_demo["tenant"]["users"]["admin"]
    cache = msal.SerializableTokenCache()
    app = app_for(m365, fresh_demo)
    app.token_cache = cache
    scopes = [*GRAPH_SCOPES, "Place.Read.All"]
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, login_hint=user["mail"])
    first = app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))
    assert "error" not in first, first
    assert "Place.Read.All" in first["scope"].split()
    account = app.get_accounts()[0]
    # BookingBridge's own API: the admin's app role shows in the id token.
    ident = verify(
        m365, first["id_token"], tenant["id"], fresh_demo["apps"]["bookingbridge"]["clientId"]
    )
    assert ident["roles"] == ["Building.Admin"]

    m365.advance_clock(3600)
    # MSAL judges expiry on this machine's clock: move it as far as the emulator's.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    second = app.acquire_token_silent(scopes, account=account)
    monkeypatch.undo()
    assert second is not None and second["token_source"] == "identity_provider"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]  # rotated
    claims = verify(m365, second["access_token"], tenant["id"], GRAPH)
    assert claims["oid"] == user["id"]

    # The replaced refresh token is not revoked (as Entra): it still redeems.
    again = app.acquire_token_by_refresh_token(first["refresh_token"], scopes)
    assert "error" not in again, again


def test_form_post_response_mode(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    app = app_for(m365, fresh_demo)
    user = fresh_demo["tenant"]["users"]["emma"]
    flow = app.initiate_auth_code_flow(
        GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"], response_mode="form_post"
    )
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
    assert page.status_code == 200 and f'action="{REDIRECT_URI}"' in page.text
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, fields)


def test_client_credentials_graph_and_api(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    tenant = fresh_demo["tenant"]
    graph = app_for(m365, fresh_demo).acquire_token_for_client([f"{GRAPH}/.default"])
    assert "error" not in graph, graph
    claims = verify(m365, graph["access_token"], tenant["id"], GRAPH)
    assert claims["roles"] == ["Calendars.Read", "Calendars.ReadWrite", "Place.Read.All"]
    assert "scp" not in claims and claims["idtyp"] == "app"

    api = fresh_demo["apps"]["bookingbridge"]
    portal = app_for(m365, fresh_demo, "portal").acquire_token_for_client(
        [f"{api['identifierUri']}/.default"]
    )
    assert "error" not in portal, portal
    claims = verify(m365, portal["access_token"], tenant["id"], api["clientId"])
    assert claims["roles"] == ["Portal.Service"]
    assert claims["azp"] == fresh_demo["apps"]["portal"]["clientId"]


def test_azure_identity_client_secret_credential(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    tenant, app = fresh_demo["tenant"], fresh_demo["apps"]["bookingbridge"]
    credential = ClientSecretCredential(
        tenant["id"],
        app["clientId"],
        app["clientSecret"],
        authority=m365.base_url,
        disable_instance_discovery=True,
        connection_verify=m365.ca_bundle,
    )
    token = credential.get_token("https://vault.azure.net/.default")
    claims = verify(m365, token.token, tenant["id"], "https://vault.azure.net")
    assert claims["appid"] == app["clientId"]
    assert token.expires_on > time.time() + 3000


# ---------------------------------------------------------------------------- error cases
def assert_error(result: dict[str, Any], error: str, code: int) -> None:
    assert result.get("error") == error, result
    assert result.get("error_codes") == [code], result
    assert f"AADSTS{code}" in result["error_description"]


def test_code_is_single_use(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    app = app_for(m365, fresh_demo)
    user = fresh_demo["tenant"]["users"]["emma"]
    flow = app.initiate_auth_code_flow(
        GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    response = auto_code(m365, flow)
    assert "error" not in app.acquire_token_by_auth_code_flow(dict(flow), response)
    assert_error(app.acquire_token_by_auth_code_flow(dict(flow), response), "invalid_grant", 54005)


def test_bad_verifier_redirect_mismatch_and_expired_code(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    app = app_for(m365, fresh_demo)
    user = fresh_demo["tenant"]["users"]["emma"]

    def flow() -> tuple[dict[str, Any], dict[str, str]]:
        f = app.initiate_auth_code_flow(
            GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"]
        )
        return f, auto_code(m365, f)

    f, response = flow()
    f["code_verifier"] = "x" * 43
    assert_error(app.acquire_token_by_auth_code_flow(f, response), "invalid_grant", 501481)

    f, response = flow()
    f["redirect_uri"] = ADMIN_CONSENT_URI  # registered, but not the one the code was issued to
    assert_error(app.acquire_token_by_auth_code_flow(f, response), "invalid_grant", 500112)

    f, response = flow()
    m365.advance_clock(601)
    assert_error(app.acquire_token_by_auth_code_flow(f, response), "invalid_grant", 70008)


def test_unregistered_redirect_uri_is_an_error_page_not_a_redirect(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    app = app_for(m365, fresh_demo)
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri="https://evil.example/cb")
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
    assert page.status_code == 400 and "location" not in page.headers
    assert "AADSTS50011" in page.text


def test_refresh_token_expires_after_90_days_of_inactivity(
    m365: RunningEmulator, fresh_demo: dict[str, Any]
) -> None:
    app = app_for(m365, fresh_demo)
    user = fresh_demo["tenant"]["users"]["emma"]
    flow = app.initiate_auth_code_flow(
        GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    result = app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))
    m365.advance_clock(91 * 86400)
    assert_error(
        app.acquire_token_by_refresh_token(result["refresh_token"], GRAPH_SCOPES),
        "invalid_grant",
        700082,
    )


def test_revoked_grant(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    app = app_for(m365, fresh_demo)
    tenant, user = fresh_demo["tenant"], fresh_demo["tenant"]["users"]["emma"]
    flow = app.initiate_auth_code_flow(
        GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    result = app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))
    revoked = m365.control.post(
        "identity/revoke",
        json={
            "tenant": tenant["id"],
            "user": user["userPrincipalName"],
            "clientId": fresh_demo["apps"]["bookingbridge"]["clientId"],
        },
    )
    assert revoked.status_code == 200
    assert_error(
        app.acquire_token_by_refresh_token(result["refresh_token"], GRAPH_SCOPES),
        "invalid_grant",
        50173,
    )
    # Signing in again after the revocation works.
    flow = app.initiate_auth_code_flow(
        GRAPH_SCOPES, redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))


def test_unknown_client_and_bad_secret(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    tenant, app = fresh_demo["tenant"], fresh_demo["apps"]["bookingbridge"]
    unknown = msal_app(m365, tenant["id"], str(uuid.uuid4()), "whatever")
    assert_error(
        unknown.acquire_token_for_client([f"{GRAPH}/.default"]), "unauthorized_client", 700016
    )
    bad = msal_app(m365, tenant["id"], app["clientId"], "not-the-secret")
    assert_error(bad.acquire_token_for_client([f"{GRAPH}/.default"]), "invalid_client", 7000215)


def test_client_credentials_scope_rules(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    tenant, app = fresh_demo["tenant"], fresh_demo["apps"]["bookingbridge"]
    with https_client(m365) as client:

        def token(segment: str, scope: str) -> httpx.Response:
            return client.post(
                f"{m365.base_url}/{segment}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": app["clientId"],
                    "client_secret": app["clientSecret"],
                    "scope": scope,
                },
            )

        not_default = token(tenant["id"], f"{GRAPH}/Calendars.Read")
        assert not_default.status_code == 400
        assert not_default.json()["error_codes"] == [1002012]
        two = token(tenant["id"], f"{GRAPH}/.default https://vault.azure.net/.default")
        assert two.json()["error_codes"] == [28000]
        common = token("common", f"{GRAPH}/.default")
        assert common.json()["error_codes"] == [9001023]
        basic = client.post(
            f"{m365.base_url}/{tenant['id']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "scope": f"{GRAPH}/.default"},
            auth=(app["clientId"], app["clientSecret"]),
        )
        assert basic.status_code == 200, basic.text


def _no_admin_consent_scenario() -> dict[str, Any]:
    scenario = copy.deepcopy(load_scenario("demo"))
    for tenant in scenario["tenants"]:
        tenant["adminConsents"] = []
    return scenario


def test_missing_consent(m365: RunningEmulator) -> None:
    seed = m365.seed_scenario(_no_admin_consent_scenario(), fresh=True)
    app = app_for(m365, seed)
    user = seed["tenant"]["users"]["emma"]
    # A non-admin cannot consent to the admin-only Place.Read.All: consent_required redirect.
    flow = app.initiate_auth_code_flow(
        [*GRAPH_SCOPES, "Place.Read.All"], redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    response = auto_code(m365, flow)
    assert response["error"] == "consent_required"
    assert response["error_description"].startswith("AADSTS65001")
    assert response["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert result["error"] == "consent_required"

    # A token for a scope never consented: invalid_grant / AADSTS65001 from /token.
    flow = app.initiate_auth_code_flow(
        ["User.Read"], redirect_uri=REDIRECT_URI, login_hint=user["mail"]
    )
    granted = app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))
    assert "error" not in granted, granted
    result = app.acquire_token_by_refresh_token(granted["refresh_token"], ["Calendars.ReadWrite"])
    assert_error(result, "invalid_grant", 65001)
    assert result["suberror"] == "consent_required"

    # Client credentials without admin consent: a token without roles.
    token = app.acquire_token_for_client([f"{GRAPH}/.default"])
    assert "roles" not in verify(m365, token["access_token"], seed["tenant"]["id"], GRAPH)


def test_declining_consent(m365: RunningEmulator, fresh_demo: dict[str, Any]) -> None:
    app = app_for(m365, fresh_demo)
    user = fresh_demo["tenant"]["users"]["liam"]
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=REDIRECT_URI)
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        consent = submit_form(client, page, {"loginfmt": user["mail"], "passwd": user["password"]})
        declined = submit_form(client, consent, {"decision": "cancel"})
    response = redirect_params(declined, REDIRECT_URI)
    assert response["error"] == "access_denied"
    assert response["error_description"].startswith("AADSTS65004")


def test_admin_consent_v2_and_v1(m365: RunningEmulator) -> None:
    seed = m365.seed_scenario(_no_admin_consent_scenario(), fresh=True)
    tenant, app = seed["tenant"], seed["apps"]["bookingbridge"]
    admin, emma = tenant["users"]["admin"], tenant["users"]["emma"]
    with https_client(m365) as client:

        def consent(path: str, login_hint: str | None, **extra: str) -> httpx.Response:
            params = {
                "client_id": app["clientId"],
                "redirect_uri": ADMIN_CONSENT_URI,
                "state": "s1",
            }
            if login_hint:
                params["login_hint"] = login_hint
            return client.get(f"{m365.base_url}/{tenant['id']}/{path}", params={**params, **extra})

        denied = redirect_params(
            consent("v2.0/adminconsent", emma["mail"], scope=f"{GRAPH}/.default"),
            ADMIN_CONSENT_URI,
        )
        assert denied["error"] == "consent_required" and denied["admin_consent"] == "True"

        # Interactive: sign in as the admin, review, accept.
        page = consent("v2.0/adminconsent", None, scope=f"{GRAPH}/.default")
        review = submit_form(client, page, {"loginfmt": admin["mail"], "passwd": admin["password"]})
        assert "Calendars.ReadWrite (Application" in review.text
        done = redirect_params(
            submit_form(client, review, {"decision": "accept"}), ADMIN_CONSENT_URI
        )
        assert done == {
            "admin_consent": "True",
            "tenant": tenant["id"],
            "scope": f"{GRAPH}/.default",
            "state": "s1",
        }
        v1 = redirect_params(consent("adminconsent", admin["mail"]), ADMIN_CONSENT_URI)
        assert v1 == {"tenant": tenant["id"], "state": "s1", "admin_consent": "True"}

    token = app_for(m365, seed).acquire_token_for_client([f"{GRAPH}/.default"])
    claims = verify(m365, token["access_token"], tenant["id"], GRAPH)
    assert claims["roles"] == ["Calendars.Read", "Calendars.ReadWrite", "Place.Read.All"]
    # And now a non-admin may sign in with Place.Read.All (tenant-wide delegated grant).
    flow = app_for(m365, seed).initiate_auth_code_flow(
        ["Place.Read.All"], redirect_uri=REDIRECT_URI, login_hint=emma["mail"]
    )
    assert "code" in auto_code(m365, flow)


def admin_consent_flow(
    m365: RunningEmulator, seed: dict[str, Any], login_hint: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """An OpenID Connect sign-in with prompt=admin_consent, as BookingBridge's application connect
    sends it (tenant id in the path, `/.default`, redirect to the admin-consent URI)."""
    app = app_for(m365, seed)
    flow = app.initiate_auth_code_flow(
        [f"{GRAPH}/.default"], redirect_uri=ADMIN_CONSENT_URI, prompt="admin_consent",
        login_hint=login_hint,
    )  # fmt: skip
    assert "prompt=admin_consent" in flow["auth_uri"]
    return app, flow


def test_prompt_admin_consent_by_an_admin_records_tenant_wide_consent(
    m365: RunningEmulator,
) -> None:
    seed = m365.seed_scenario(_no_admin_consent_scenario(), fresh=True)
    tenant, client_id = seed["tenant"], seed["apps"]["bookingbridge"]["clientId"]
    admin, emma = tenant["users"]["admin"], tenant["users"]["emma"]
    app, flow = admin_consent_flow(m365, seed)
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        review = submit_form(client, page, {"loginfmt": admin["mail"], "passwd": admin["password"]})
        # The admin reviews for the organization: application and delegated permissions.
        assert "review for your organization" in review.text
        assert "Calendars.ReadWrite (Application, Microsoft Graph)" in review.text
        assert "Place.Read.All (Delegated, Microsoft Graph)" in review.text
        # (another MSAL app: MSAL would serve the next client-credentials call from its cache)
        nothing_yet = app_for(m365, seed).acquire_token_for_client([f"{GRAPH}/.default"])
        assert "roles" not in verify(m365, nothing_yet["access_token"], tenant["id"], GRAPH)
        done = redirect_params(
            submit_form(client, review, {"decision": "accept"}), ADMIN_CONSENT_URI
        )
    # An ordinary OIDC response: a code and the state, no forgeable `tenant` parameter.
    assert set(done) == {"code", "state", "session_state"} and done["state"] == flow["state"]
    result = app.acquire_token_by_auth_code_flow(flow, done)
    assert "error" not in result, result
    ident = verify(m365, result["id_token"], tenant["id"], client_id)
    assert ident["tid"] == tenant["id"] and ident["oid"] == admin["id"]
    assert ident["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()

    # Recorded tenant-wide: the app's application permissions ...
    token = app.acquire_token_for_client([f"{GRAPH}/.default"])
    claims = verify(m365, token["access_token"], tenant["id"], GRAPH)
    assert claims["roles"] == ["Calendars.Read", "Calendars.ReadWrite", "Place.Read.All"]
    # ... and its delegated ones for everyone: a non-admin gets the admin-only Place.Read.All.
    flow = app.initiate_auth_code_flow(
        ["Place.Read.All"], redirect_uri=REDIRECT_URI, login_hint=emma["mail"]
    )
    assert "code" in auto_code(m365, flow)

    # Auto-consent with the admin's login_hint completes at once, like the other flows.
    app, flow = admin_consent_flow(m365, seed, login_hint=admin["mail"])
    result = app.acquire_token_by_auth_code_flow(flow, auto_code(m365, flow))
    assert verify(m365, result["id_token"], tenant["id"], client_id)["tid"] == tenant["id"]

    # Cancelling the review: access_denied (AADSTS65004), nothing issued.
    app, flow = admin_consent_flow(m365, seed)
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        review = submit_form(client, page, {"loginfmt": admin["mail"], "passwd": admin["password"]})
        cancelled = redirect_params(
            submit_form(client, review, {"decision": "cancel"}), ADMIN_CONSENT_URI
        )
    assert cancelled["error"] == "access_denied" and "code" not in cancelled
    assert cancelled["error_description"].startswith("AADSTS65004")


def test_prompt_admin_consent_refuses_non_admins(m365: RunningEmulator) -> None:
    # Even where an admin already consented (the demo seeds it), prompt=admin_consent needs an
    # admin: a non-admin's sign-in must never come back with a code.
    seed = m365.seed_scenario("demo", fresh=True)
    emma = seed["tenant"]["users"]["emma"]
    app, flow = admin_consent_flow(m365, seed, login_hint=emma["mail"])
    auto = auto_code(m365, flow)
    assert auto["error"] == "consent_required" and "code" not in auto
    assert auto["error_description"].startswith("AADSTS90094")
    assert auto["state"] == flow["state"]

    app, flow = admin_consent_flow(m365, seed)
    with https_client(m365) as client:
        page = client.get(flow["auth_uri"])
        approval = submit_form(client, page, {"loginfmt": emma["mail"], "passwd": emma["password"]})
        assert "Need admin approval" in approval.text and "AADSTS90094" in approval.text
        assert 'id="idBtn_Accept"' not in approval.text
        # Even a forged "accept" from the approval page is refused.
        left = redirect_params(
            submit_form(client, approval, {"decision": "accept"}), ADMIN_CONSENT_URI
        )
    assert left["error"] == "consent_required" and "code" not in left

    # Without any admin consent, a refused non-admin leaves nothing granted.
    bare = m365.seed_scenario(_no_admin_consent_scenario(), fresh=True)
    liam = bare["tenant"]["users"]["liam"]
    app, flow = admin_consent_flow(m365, bare, login_hint=liam["mail"])
    assert auto_code(m365, flow)["error"] == "consent_required"
    token = app.acquire_token_for_client([f"{GRAPH}/.default"])
    assert "roles" not in verify(m365, token["access_token"], bare["tenant"]["id"], GRAPH)


@pytest.mark.browser
def test_sign_in_and_consent_in_headless_chromium(
    m365: RunningEmulator, redirect_receiver: RedirectReceiver
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    seed = m365.seed_scenario(
        "demo", fresh=True, redirect_uris={"bookingbridge": [redirect_receiver.url]}
    )
    app = app_for(m365, seed)
    user = seed["tenant"]["users"]["emma"]
    flow = app.initiate_auth_code_flow(GRAPH_SCOPES, redirect_uri=redirect_receiver.url)
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True)
            page = context.new_page()
            page.goto(flow["auth_uri"])
            page.fill("#i0116", user["userPrincipalName"])
            page.fill("#i0118", user["password"])
            page.screenshot(path=str(artifacts / "signin.png"))
            page.click("#idSIButton9")
            page.wait_for_selector("#idBtn_Accept")
            assert "Calendars.ReadWrite.Shared" in page.inner_text("#permissions")
            page.screenshot(path=str(artifacts / "consent.png"))
            page.click("#idBtn_Accept")
            page.wait_for_selector("#done")
        finally:
            browser.close()
    assert len(redirect_receiver.requests) == 1
    response = redirect_receiver.requests[0]
    result = app.acquire_token_by_auth_code_flow(flow, response)
    assert "error" not in result, json.dumps({k: v for k, v in result.items() if "token" not in k})
    assert verify(m365, result["access_token"], seed["tenant"]["id"], GRAPH)["oid"] == user["id"]
