"""CORS headers (shared/api/cors.py) and their settings (issue 22)."""

from __future__ import annotations

import pytest

from shared.api import cors
from shared.core.settings import Settings, SettingsError, load_settings
from tests.unit.test_settings import VALID

PORTAL = "https://portal.contoso.com"
PREFLIGHT = {"Origin": PORTAL, "Access-Control-Request-Method": "PUT"}


def settings(**extra: str) -> Settings:
    return load_settings({**VALID, **extra})


def test_off_by_default_no_cors_headers_for_anyone() -> None:
    s = settings()
    assert s.cors_origins == () and not s.cors_allow_credentials
    assert cors.preflight_headers(s, PREFLIGHT) == {}
    assert cors.response_headers(s, {"Origin": PORTAL}) == {}


def test_a_listed_origin_gets_its_own_origin_back_and_others_nothing() -> None:
    s = settings(BB_CORS_ORIGINS=f"{PORTAL}, http://localhost:5173")
    answer = cors.preflight_headers(s, PREFLIGHT)
    assert answer["Access-Control-Allow-Origin"] == PORTAL and answer["Vary"] == "Origin"
    assert "If-Match" in answer["Access-Control-Allow-Headers"]
    assert "PATCH" in answer["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in answer
    actual = cors.response_headers(s, {"Origin": "http://localhost:5173"})
    assert actual["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "ETag" in actual["Access-Control-Expose-Headers"]
    for other in ("https://portal.contoso.com.evil.example", "https://PORTAL.contoso.com/", "null"):
        # No CORS header, but the answer depends on the Origin, so caches must know.
        assert cors.preflight_headers(s, {**PREFLIGHT, "Origin": other}) == {"Vary": "Origin"}
    assert cors.response_headers(s, {}) == {"Vary": "Origin"}  # same-origin: no Origin sent


def test_star_is_any_origin_without_credentials() -> None:
    s = settings(BB_CORS_ORIGINS="*")
    answer = cors.response_headers(s, {"Origin": "https://anyone.example"})
    assert answer["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer and "Vary" not in answer
    with pytest.raises(SettingsError, match="BB_CORS_ALLOW_CREDENTIALS"):
        settings(BB_CORS_ORIGINS="*", BB_CORS_ALLOW_CREDENTIALS="true")


def test_credentials_only_for_listed_origins_when_asked() -> None:
    s = settings(BB_CORS_ORIGINS=PORTAL, BB_CORS_ALLOW_CREDENTIALS="true")
    assert cors.preflight_headers(s, PREFLIGHT)["Access-Control-Allow-Credentials"] == "true"
    assert cors.response_headers(s, {"Origin": "https://other.example"}) == {"Vary": "Origin"}


@pytest.mark.parametrize("value", ["portal.contoso.com", "https://portal.contoso.com/app", "*, x"])
def test_a_bad_origin_setting_is_named(value: str) -> None:
    with pytest.raises(SettingsError, match="BB_CORS_ORIGINS"):
        settings(BB_CORS_ORIGINS=value)


def test_only_options_with_origin_and_request_method_is_a_preflight() -> None:
    assert cors.is_preflight("OPTIONS", PREFLIGHT)
    assert not cors.is_preflight("OPTIONS", {"Origin": PORTAL})
    assert not cors.is_preflight("PUT", PREFLIGHT)
