"""Pure parts of the connect feature: return-URL allow-list, derived secrets, AADSTS reasons."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from shared.connect.flows import check_id_claims, missing_scopes, validate_return_url, with_status
from shared.connect.model import ConnectFailed
from shared.connect.tokens import codes_in, reason_for
from shared.core.errors import ValidationFailed
from shared.core.settings import load_settings, origin_of
from shared.graph.permissions import GRAPH_DELEGATED_SCOPES, granted_graph_scopes
from shared.storage.keyvault import (
    connection_secret_name,
    oidc_nonce,
    pkce_challenge,
    pkce_verifier,
)

ORIGINS = ("https://portal.contoso.com", "http://127.0.0.1:7071")


@pytest.mark.parametrize(
    "url",
    [
        "https://portal.contoso.com/buildings/1?tab=m365",
        "https://PORTAL.contoso.com:443/x",
        "http://127.0.0.1:7071/api/health?connected=demo#frag",
    ],
)
def test_allow_listed_return_urls_pass(url: str) -> None:
    assert validate_return_url(url, ORIGINS) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "https://portal.contoso.com.evil.example/",
        "https://portal.contoso.com@evil.example/",
        "https://user@portal.contoso.com/",
        "http://portal.contoso.com/",  # scheme is part of the origin
        "https://portal.contoso.com:8443/",
        "http://127.0.0.1:7072/",
        "//portal.contoso.com/x",
        "/relative",
        "javascript:alert(1)",
        "https://portal.contoso.com\\@evil.example",
        "https://portal.contoso.com/\nLocation: x",
        "",
        None,
        42,
        "https://portal.contoso.com/" + "a" * 3000,
    ],
)
def test_other_return_urls_are_a_field_error(url: object) -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_return_url(url, ORIGINS)
    assert [e.field for e in raised.value.errors] == ["returnUrl"]


def test_status_is_added_to_the_return_url_keeping_query_and_fragment() -> None:
    out = with_status("https://p.example/a?x=1&status=old#f", "error", "consent_declined")
    assert out == "https://p.example/a?x=1&status=error&reason=consent_declined#f"


def test_origin_of() -> None:
    assert origin_of("https://A.example:443/x") == "https://a.example"
    assert origin_of("http://127.0.0.1:7071/api") == "http://127.0.0.1:7071"
    assert origin_of("ftp://x") is None and origin_of("https://x:bad/") is None


def test_default_return_origin_is_the_public_base_url(tmp_path: object) -> None:
    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BB_KEY_VAULT_URL": "https://v.vault.azure.net/",
        "BB_CLIENT_ID": "5b0e7c2e-9d43-4f6a-8a51-3c1f0d2b7e91",
        "BB_PUBLIC_BASE_URL": "https://bb.example/api",
        "BB_API_AUDIENCE": "api://bb",
        "BB_API_TENANT_ID": "3f2c8e1a-6b7d-4c59-9e0a-1d4b5c6e7f80",
    }
    s = load_settings(env)
    assert s.return_url_origins == ("https://bb.example",)
    assert s.client_secret_name == "bookingbridge-client-secret"
    assert s.client_certificate_name is None
    from shared.core.settings import SettingsError

    with pytest.raises(SettingsError) as raised:
        load_settings(
            {**env, "BB_RETURN_URL_ORIGINS": "https://ok.example, https://x.example/path",
             "BB_CLIENT_SECRET_NAME": "bad_name", "BB_KEEPALIVE_SCHEDULE": "daily"}
        )  # fmt: skip
    text = str(raised.value)
    assert "BB_RETURN_URL_ORIGINS" in text and "BB_CLIENT_SECRET_NAME" in text
    assert "BB_KEEPALIVE_SCHEDULE" in text


def test_pkce_verifier_is_rfc7636_and_deterministic() -> None:
    key = b"k" * 32
    v = pkce_verifier(key, "flow-1")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", v)
    assert v == pkce_verifier(key, "flow-1") != pkce_verifier(key, "flow-2")
    assert v != pkce_verifier(b"j" * 32, "flow-1")
    expected = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    assert pkce_challenge(v) == expected and len(expected) == 43
    assert oidc_nonce(key, "flow-1") not in (v, oidc_nonce(key, "flow-2"))


def test_connection_secret_names_are_valid_key_vault_names() -> None:
    assert connection_secret_name("demo-building") == "conn-demo-building"
    for building in ("a.b_c", "x" * 64, "b.1"):
        name = connection_secret_name(building)
        assert re.fullmatch(r"[0-9a-zA-Z-]{1,127}", name)
    assert connection_secret_name("a.b") != connection_secret_name("a_b")


@pytest.mark.parametrize(
    ("error", "codes", "reason"),
    [
        ("invalid_grant", (700082,), "refresh_token_expired"),
        ("invalid_grant", (50173,), "grant_revoked"),
        ("invalid_grant", (70008,), "grant_expired"),
        ("interaction_required", (50076,), "mfa_required"),
        ("interaction_required", (), "interaction_required"),
        ("invalid_grant", (54005,), "code_already_redeemed"),
        ("access_denied", (65004,), "consent_declined"),
        ("consent_required", (65001,), "consent_required"),
        ("invalid_client", (7000215,), "invalid_client_credential"),
        ("weird", (), "identity_error"),
    ],
)
def test_aadsts_codes_map_to_reasons(error: str, codes: tuple[int, ...], reason: str) -> None:
    assert reason_for(error, codes) == reason


def test_codes_are_read_from_error_descriptions() -> None:
    assert codes_in("AADSTS65004: User declined to consent. Trace ID: x") == (65004,)
    assert codes_in(None) == ()


def test_granted_scopes_and_what_is_missing() -> None:
    granted = granted_graph_scopes(
        "https://graph.microsoft.com/Calendars.Read User.Read openid profile offline_access"
    )
    assert granted == {"Calendars.Read", "User.Read"}
    assert missing_scopes(granted) == {"Calendars.ReadWrite"}
    assert not missing_scopes(frozenset(GRAPH_DELEGATED_SCOPES))


def test_id_token_claims_are_checked() -> None:
    tid = "3f2c8e1a-6b7d-4c59-9e0a-1d4b5c6e7f80"
    good = {
        "tid": tid, "oid": "o", "aud": "client", "iss": f"https://login.x/{tid}/v2.0", "nonce": "n1",
    }  # fmt: skip
    check_id_claims(good, client_id="client", authority_host="https://login.x", nonce="n1")
    for bad in (
        {"aud": "other"},
        {"iss": "https://login.x/other/v2.0"},
        {"oid": ""},
        {"tid": "x"},
        {"nonce": "n2"},  # a token of another flow
        {"nonce": None},  # MSAL skips its check when the id token lacks one: we must not
    ):
        with pytest.raises(ConnectFailed):
            check_id_claims(
                {**good, **bad}, client_id="client", authority_host="https://login.x", nonce="n1"
            )


def test_a_refused_origin_names_the_setting_that_allows_it() -> None:
    with pytest.raises(ValidationFailed) as raised:
        validate_return_url("https://evil.example/", ORIGINS)
    assert "BB_RETURN_URL_ORIGINS" in raised.value.errors[0].message
