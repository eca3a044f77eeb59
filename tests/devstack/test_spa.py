"""The identity emulator's single-page-application platform, as MSAL Browser meets it in Entra.

A code or refresh token issued to a `spa` redirect URI is redeemed by the browser: cross-origin
(an `Origin` header, answered with CORS headers), as a public client (PKCE, no secret), and its
refresh tokens end 24 h after sign-in whatever is refreshed in between. A `web` redirect URI's
code redeemed cross-origin is Entra's AADSTS9002326. Driven over raw HTTPS (MSAL Browser's
requests, form-encoded); the browser itself is in tests/e2e (the console).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
import pytest

from devstack.m365 import RunningEmulator
from tests.integration import emulator_fixtures
from tests.integration.emulator_fixtures import REDIRECT_URI, https_client, jwks

m365 = emulator_fixtures.m365

SPA_URI = "http://127.0.0.1:7071/api/console/"
ORIGIN = "http://127.0.0.1:7071"
API_SCOPE = "api://bookingbridge/access_as_user"
SCOPES = f"{API_SCOPE} openid profile offline_access"


@pytest.fixture
def demo(m365: RunningEmulator) -> dict[str, Any]:
    return m365.seed_scenario("demo", fresh=True)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize(
    m365: RunningEmulator,
    demo: dict[str, Any],
    *,
    redirect_uri: str = SPA_URI,
    challenge: str | None = None,
    user: str = "admin",
    scope: str = SCOPES,
) -> str:
    """A code for `user` (auto-consent with login_hint), as MSAL Browser asks for one."""
    tenant = demo["tenant"]
    params = {
        "client_id": demo["apps"]["bookingbridge"]["clientId"],
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": "s1",
        "nonce": "n1",
        "response_mode": "fragment",
        "login_hint": tenant["users"][user]["userPrincipalName"],
        "client_info": "1",
    }
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    with https_client(m365) as client:
        response = client.get(
            f"{m365.base_url}/{tenant['id']}/oauth2/v2.0/authorize?{urlencode(params)}"
        )
    assert response.status_code == 302, response.text[:300]
    location = response.headers["location"]
    assert location.startswith(redirect_uri)
    query = urlsplit(location).fragment or urlsplit(location).query
    answer = dict(parse_qsl(query))
    assert answer.get("state") == "s1", answer
    return answer["code"]


def token(
    m365: RunningEmulator,
    demo: dict[str, Any],
    form: dict[str, str],
    *,
    origin: str | None = ORIGIN,
) -> httpx.Response:
    headers = {"Origin": origin} if origin else {}
    body = {"client_id": demo["apps"]["bookingbridge"]["clientId"], **form}
    with https_client(m365) as client:
        return client.post(
            f"{m365.base_url}/{demo['tenant']['id']}/oauth2/v2.0/token", data=body, headers=headers
        )


def redeem(
    m365: RunningEmulator,
    demo: dict[str, Any],
    code: str,
    verifier: str | None,
    *,
    origin: str | None = ORIGIN,
    redirect_uri: str = SPA_URI,
    **extra: str,
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "scope": SCOPES,
        "client_info": "1",
        **extra,
    }
    if verifier:
        form["code_verifier"] = verifier
    return token(m365, demo, form, origin=origin)


def error_code(response: httpx.Response) -> int:
    codes: list[int] = response.json()["error_codes"]
    return codes[0]


def claims(m365: RunningEmulator, demo: dict[str, Any], access_token: str) -> dict[str, Any]:
    keys = jwt.PyJWKSet.from_dict(jwks(m365, demo["tenant"]["id"]))
    decoded: dict[str, Any] = jwt.decode(
        access_token,
        keys.keys[0].key,
        algorithms=["RS256"],
        audience=demo["apps"]["bookingbridge"]["clientId"],
        issuer=f"{m365.base_url}/{demo['tenant']['id']}/v2.0",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    return decoded


def test_spa_sign_in_gives_a_user_token_for_the_api(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    assert demo["apps"]["bookingbridge"]["spaRedirectUris"] == [SPA_URI]
    assert "access_as_user" in demo["apps"]["bookingbridge"]["scopes"]
    verifier, challenge = pkce()
    code = authorize(m365, demo, challenge=challenge)
    response = redeem(m365, demo, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    body = response.json()
    assert body["scope"].split()[0] == API_SCOPE
    assert body["refresh_token_expires_in"] == 24 * 3600
    assert body["id_token"] and body["client_info"]
    access = claims(m365, demo, body["access_token"])
    admin = demo["tenant"]["users"]["admin"]
    assert access["scp"] == "access_as_user"
    assert access["roles"] == ["Building.Admin"]
    assert access["buildings"] == ["demo-building"]
    assert access["oid"] == admin["id"] and access["tid"] == demo["tenant"]["id"]
    assert access["preferred_username"] == admin["userPrincipalName"]


def test_spa_code_is_redeemed_only_cross_origin_without_a_secret_and_with_pkce(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    verifier, challenge = pkce()
    same_origin = redeem(
        m365, demo, authorize(m365, demo, challenge=challenge), verifier, origin=None
    )
    assert same_origin.status_code == 400 and error_code(same_origin) == 9002327
    assert same_origin.json()["error"] == "invalid_request"
    assert "access-control-allow-origin" not in same_origin.headers
    assert (
        "may only be redeemed via cross-origin requests" in same_origin.json()["error_description"]
    )

    secret = demo["apps"]["bookingbridge"]["clientSecret"]
    with_secret = redeem(
        m365, demo, authorize(m365, demo, challenge=challenge), verifier, client_secret=secret
    )
    assert with_secret.status_code == 401 and error_code(with_secret) == 700025
    assert with_secret.headers["access-control-allow-origin"] == ORIGIN  # readable by the SPA

    no_pkce = redeem(m365, demo, authorize(m365, demo), None)
    assert no_pkce.status_code == 400 and error_code(no_pkce) == 9002325
    assert no_pkce.headers["access-control-allow-origin"] == ORIGIN

    wrong = redeem(m365, demo, authorize(m365, demo, challenge=challenge), pkce()[0])
    assert error_code(wrong) == 501481 and wrong.headers["access-control-allow-origin"] == ORIGIN


def test_web_redirect_uri_redeemed_cross_origin_is_aadsts9002326(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    verifier, challenge = pkce()
    code = authorize(m365, demo, redirect_uri=REDIRECT_URI, challenge=challenge)
    secret = demo["apps"]["bookingbridge"]["clientSecret"]
    response = redeem(m365, demo, code, verifier, redirect_uri=REDIRECT_URI, client_secret=secret)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert error_code(response) == 9002326
    assert response.json()["error_description"].startswith(
        "AADSTS9002326: Cross-origin token redemption is permitted only for the "
        f"'Single-Page Application' client-type. Request origin: '{ORIGIN}'."
    )
    assert "access-control-allow-origin" not in response.headers
    # Client credentials from a browser: refused the same way (no secret in a browser).
    cc = token(
        m365, demo,
        {"grant_type": "client_credentials", "client_secret": secret,
         "scope": "https://graph.microsoft.com/.default"},
    )  # fmt: skip
    assert cc.status_code == 400 and error_code(cc) == 9002326


def test_spa_refresh_tokens_last_24_hours_from_sign_in(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    verifier, challenge = pkce()
    first = redeem(m365, demo, authorize(m365, demo, challenge=challenge), verifier).json()
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "scope": SCOPES,
    }

    no_origin = token(m365, demo, refresh, origin=None)
    assert no_origin.status_code == 400 and error_code(no_origin) == 9002327

    m365.advance_clock(23 * 3600)
    renewed = token(m365, demo, refresh)
    assert renewed.status_code == 200, renewed.text
    assert renewed.headers["access-control-allow-origin"] == ORIGIN
    # The new refresh token carries the original expiry over (about 1 h left), not a fresh 24 h.
    assert 3000 <= renewed.json()["refresh_token_expires_in"] <= 3600
    m365.advance_clock(3601)
    later = {**refresh, "refresh_token": renewed.json()["refresh_token"]}
    expired = token(m365, demo, later)
    assert expired.status_code == 400 and error_code(expired) == 700084
    assert expired.json()["error"] == "invalid_grant"
    assert expired.headers["access-control-allow-origin"] == ORIGIN


def test_cors_preflight_discovery_and_keys(m365: RunningEmulator, demo: dict[str, Any]) -> None:
    tenant = demo["tenant"]["id"]
    with https_client(m365) as client:
        url = f"{m365.base_url}/{tenant}/oauth2/v2.0/token"
        asked = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        preflight = client.options(url, headers={"Origin": ORIGIN, **asked})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "content-type"
        stranger = client.options(url, headers={"Origin": "https://evil.example", **asked})
        assert "access-control-allow-origin" not in stranger.headers
        config = client.get(
            f"{m365.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
            headers={"Origin": ORIGIN},
        )
        assert config.headers["access-control-allow-origin"] == "*"
        keys = client.get(config.json()["jwks_uri"], headers={"Origin": ORIGIN})
        assert keys.headers["access-control-allow-origin"] == "*"
        # A web (confidential) redemption is never answered with CORS headers.
        web = client.post(url, data={"client_id": demo["apps"]["bookingbridge"]["clientId"]})
        assert "access-control-allow-origin" not in web.headers


def test_sign_out_returns_only_to_a_registered_uri(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    client_id = demo["apps"]["bookingbridge"]["clientId"]
    url = f"{m365.base_url}/{demo['tenant']['id']}/oauth2/v2.0/logout"
    with https_client(m365) as client:
        back = client.get(url, params={"client_id": client_id, "post_logout_redirect_uri": SPA_URI})
        assert back.status_code == 302 and back.headers["location"] == SPA_URI
        page = client.get(
            url,
            params={"client_id": client_id, "post_logout_redirect_uri": "https://evil.example/"},
        )
        assert page.status_code == 200 and 'id="signedOut"' in page.text


def test_spa_redirect_uris_at_seed_time(m365: RunningEmulator) -> None:
    seeded = m365.seed_scenario(
        "demo",
        fresh=True,
        spa_redirect_uris={"bookingbridge": ["http://127.0.0.1:9999/api/console/"]},
    )
    assert seeded["apps"]["bookingbridge"]["spaRedirectUris"] == [
        "http://127.0.0.1:9999/api/console/"
    ]
    both = m365.control.post(
        "seed",
        json={
            "scenario": "demo",
            "fresh": True,
            "spaRedirectUris": {"bookingbridge": [REDIRECT_URI]},
        },
    )
    assert both.status_code == 400 and "both a web and a spa URI" in both.text


def test_portal_user_tokens_carry_the_api_scope(
    m365: RunningEmulator, demo: dict[str, Any]
) -> None:
    """The demo's portal client (ROPC, `.default`: everything consented) gets `access_as_user`,
    so the API takes its user tokens as the console's (tests/e2e mint admins this way)."""
    admin = demo["tenant"]["users"]["admin"]
    portal = demo["apps"]["portal"]
    response = token(
        m365, {**demo, "apps": {"bookingbridge": portal}},
        {"grant_type": "password", "client_secret": portal["clientSecret"],
         "username": admin["userPrincipalName"], "password": admin["password"],
         "scope": "api://bookingbridge/.default"},
        origin=None,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    access = claims(m365, demo, response.json()["access_token"])
    assert access["scp"] == "access_as_user" and access["roles"] == ["Building.Admin"]
