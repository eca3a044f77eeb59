"""CORS for browser frontends (portals calling the API from their own origin), issue 22.

Allowed origins are a setting (`BB_CORS_ORIGINS`: exact origins, or `*`; empty = no CORS at all).
The app answers a preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) itself,
as the Functions host's own CORS middleware does on Flex Consumption (docs/DESIGN.md, "CORS"):

- origin allowed: 204 with `Access-Control-Allow-Origin: <that origin>` (`*` for a `*` setting),
  the methods and request headers the API takes, `Access-Control-Max-Age`, `Vary: Origin`;
- origin refused (or CORS off): 204 with no CORS headers, so the browser blocks the call.

Actual responses to an allowed origin carry `Access-Control-Allow-Origin` and
`Access-Control-Expose-Headers` (the headers a portal reads: ETag, Location, Retry-After,
WWW-Authenticate, Idempotent-Replayed). Credentials (`Access-Control-Allow-Credentials`) only for
listed origins, when `BB_CORS_ALLOW_CREDENTIALS` is set; never with `*` (refused at settings load).
Pure functions of (settings, request headers) → response headers; functions/http.py applies them.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.core.settings import Settings

ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ALLOW_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-Match")
EXPOSE_HEADERS = ("ETag", "Location", "Retry-After", "WWW-Authenticate", "Idempotent-Replayed")
MAX_AGE_SECONDS = 600  # browsers cap it anyway (Chromium: 2 h); 10 min bounds a setting change


def _allowed(settings: Settings, origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin value for this request's Origin, or None (no CORS)."""
    if not origin or not settings.cors_origins:
        return None
    if settings.cors_origins == ("*",):
        return "*"
    return origin if origin in settings.cors_origins else None


def _vary(settings: Settings) -> dict[str, str]:
    """With a list of exact origins every answer depends on the Origin (ACAO or not), so every
    answer says so, those without CORS headers too: a cache must not hand one origin's answer to
    another. `*` (the same for everyone) and no CORS need none."""
    return {"Vary": "Origin"} if settings.cors_origins not in ((), ("*",)) else {}


def _common(settings: Settings, allowed: str) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": allowed, **_vary(settings)}
    if allowed != "*" and settings.cors_allow_credentials:
        headers["Access-Control-Allow-Credentials"] = "true"
    return headers


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return (
        method.upper() == "OPTIONS"
        and bool(headers.get("Origin"))
        and bool(headers.get("Access-Control-Request-Method"))
    )


def preflight_headers(settings: Settings, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a 204 answering a preflight (only Vary for a refused origin)."""
    allowed = _allowed(settings, headers.get("Origin"))
    if allowed is None:
        return _vary(settings)
    return {
        **_common(settings, allowed),
        "Access-Control-Allow-Methods": ", ".join(ALLOW_METHODS),
        "Access-Control-Allow-Headers": ", ".join(ALLOW_HEADERS),
        "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
    }


def response_headers(settings: Settings, headers: Mapping[str, str]) -> dict[str, str]:
    """The headers an actual (non-preflight) response adds (only Vary without an allowed
    Origin: same-origin calls and refused origins)."""
    allowed = _allowed(settings, headers.get("Origin"))
    if allowed is None:
        return _vary(settings)
    return {
        **_common(settings, allowed),
        "Access-Control-Expose-Headers": ", ".join(EXPOSE_HEADERS),
    }
