"""The connect flow's pure parts: sign-in URLs, return URLs, id token checks, tenant discovery.

What shared/connect/service.py checks before it trusts a sign-in (its docstring says why): the id
token's audience, issuer, tenant and nonce (`check_id_claims`, `check_admin_consent_claims`), the
account that signed in (`check_account`), the granted scopes (`missing_scopes`), and where the
browser may be sent back to (`validate_return_url`, an exact-origin allow-list).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from shared.connect.model import AccountMismatch, ConnectFailed, Flow
from shared.core.connection import FREE_BUSY, FULL_ACCESS
from shared.core.errors import DependencyError, FieldError, ValidationFailed
from shared.core.settings import Settings, origin_of
from shared.core.validate import GUID
from shared.graph.permissions import (
    GRAPH_DEFAULT_SCOPE,
    GRAPH_DELEGATED_SCOPES,
    OIDC_SCOPES,
    REQUIRED_DELEGATED_SCOPES,
    REQUIRED_FREE_BUSY_SCOPES,
)

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

# The application connect's sign-in: OIDC (id token, no `offline_access`: no refresh token wanted)
# plus `/.default` (static consent to everything the registration requires, delegated and
# application). OIDC scopes may accompany `/.default`; named Graph scopes may not (scopes-oidc.md).
ADMIN_CONSENT_SCOPES: tuple[str, ...] = ("openid", "profile", GRAPH_DEFAULT_SCOPE)
_MAX_URL = 2048


# ---------------------------------------------------------------- who signed in


def signed_in_account(claims: Mapping[str, Any]) -> str:
    """How audit records name the account that signed in: its name (if any) and ids."""
    name = claims.get("preferred_username") or claims.get("upn") or ""
    ids = f"{claims.get('oid')}@{claims.get('tid')}"
    return f"{name} ({ids})" if name else ids


def check_account(flow: Flow, claims: Mapping[str, Any]) -> None:
    if not flow.expected.matches(claims):
        logger.warning(
            "connect of building %s refused: %s signed in, the flow is for %s",
            flow.building_id, signed_in_account(claims), flow.expected.describe(),
        )  # fmt: skip
        raise AccountMismatch(signed_in_account(claims))


# ---------------------------------------------------------------- URLs and claims


def validate_return_url(value: Any, origins: tuple[str, ...]) -> str:
    """The return URL if its origin is allow-listed (exact origin match), else a 400 on returnUrl."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed([FieldError("returnUrl", "is required")])
    url = value.strip()
    if len(url) > _MAX_URL:
        raise ValidationFailed([FieldError("returnUrl", "is too long")])
    parts = urlsplit(url)
    origin = origin_of(url)
    # userinfo (`https://good@evil`) and backslashes are how allow-lists get fooled.
    if (
        origin is None
        or origin not in origins
        or parts.username is not None
        or "\\" in url
        or any(ord(c) < 0x21 for c in url)
    ):
        raise ValidationFailed(
            [FieldError("returnUrl", "origin is not allow-listed (BB_RETURN_URL_ORIGINS)")]
        )
    return url


def with_status(return_url: str, status: str, reason: str | None = None) -> str:
    """The return URL with `status` (and `reason`) added to its query, fragment kept."""
    parts = urlsplit(return_url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k not in ("status", "reason")
    ]  # fmt: skip
    query.append(("status", status))
    if reason:
        query.append(("reason", reason))
    return urlunsplit(parts._replace(query=urlencode(query)))


def missing_scopes(granted: frozenset[str], access: str = FULL_ACCESS) -> frozenset[str]:
    required = REQUIRED_FREE_BUSY_SCOPES if access == FREE_BUSY else REQUIRED_DELEGATED_SCOPES
    return frozenset(required - granted)


def check_id_claims(
    claims: Mapping[str, Any], *, client_id: str, authority_host: str, nonce: str
) -> None:
    """What MSAL does not check for us: audience, issuer of the token's own tenant, tid, oid, and
    the flow's nonce (MSAL skips its nonce check when no id token came back)."""
    tid = str(claims.get("tid") or "")
    if not GUID.match(tid) or not claims.get("oid"):
        raise ConnectFailed("invalid_id_token")
    if claims.get("aud") != client_id:
        raise ConnectFailed("invalid_id_token")
    if claims.get("iss") != f"{authority_host.rstrip('/')}/{tid}/v2.0":
        raise ConnectFailed("invalid_id_token")
    if not hmac.compare_digest(str(claims.get("nonce") or "").encode(), nonce.encode()):
        raise ConnectFailed("nonce_mismatch")


def check_admin_consent_claims(
    claims: Mapping[str, Any], *, client_id: str, authority_host: str, tenant_id: str, nonce: str
) -> None:
    """The id token of an application connect: issued to us, for this flow, in the tenant asked for.

    Entra completes `prompt=admin_consent` only for an administrator of the tenant signed in to,
    so a valid id token of this flow (`nonce`) whose `tid` is the requested tenant proves that an
    administrator of that tenant consented in this flow.
    """
    check_id_claims(claims, client_id=client_id, authority_host=authority_host, nonce=nonce)
    if str(claims["tid"]).lower() != tenant_id.lower():
        raise ConnectFailed("tenant_mismatch")


def tenant_id_from_issuer(issuer: str, authority_host: str) -> str | None:
    """The tenant id in an OpenID configuration's `issuer` (`{authority}/{tid}/v2.0`), else None."""
    prefix, suffix = authority_host.rstrip("/") + "/", "/v2.0"
    if not issuer.startswith(prefix) or not issuer.endswith(suffix):
        return None
    tid = issuer[len(prefix) : -len(suffix)]
    return tid.lower() if GUID.match(tid) else None


def _authorize_url(
    settings: Settings,
    *,
    tenant: str,
    redirect_uri: str,
    scopes: tuple[str, ...],
    state: str,
    challenge: str,
    nonce: str,
    login_hint: str | None,
    prompt: str | None = None,
) -> str:
    params = {
        "client_id": settings.client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "response_mode": "query",
        "scope": " ".join(scopes),
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if prompt:
        params["prompt"] = prompt
    if login_hint:
        params["login_hint"] = login_hint
    return f"{settings.authority_host}/{tenant}/oauth2/v2.0/authorize?{urlencode(params)}"


def authorize_url(
    settings: Settings,
    *,
    state: str,
    challenge: str,
    nonce: str,
    login_hint: str | None,
    scopes: tuple[str, ...] = GRAPH_DELEGATED_SCOPES,
) -> str:
    # `organizations`: work and school accounts of any tenant (calendars need Exchange Online).
    return _authorize_url(
        settings, tenant="organizations", redirect_uri=callback_uri(settings),
        scopes=(*OIDC_SCOPES, *scopes), state=state, challenge=challenge,
        nonce=nonce, login_hint=login_hint,
    )  # fmt: skip


def admin_authorize_url(
    settings: Settings,
    *,
    tenant_id: str,
    state: str,
    challenge: str,
    nonce: str,
    login_hint: str | None,
) -> str:
    """The application connect's sign-in: an administrator of `tenant_id` consents for it.

    The tenant id in the path makes Entra sign the admin in to that tenant (`tid` of the id
    token); the redirect URI stays `/oauth/adminconsent` (registered, and API.md's path).
    """
    return _authorize_url(
        settings, tenant=tenant_id, redirect_uri=admin_consent_uri(settings),
        scopes=ADMIN_CONSENT_SCOPES, state=state, challenge=challenge, nonce=nonce,
        login_hint=login_hint, prompt="admin_consent",
    )  # fmt: skip


def discover_tenant_id(http: httpx.Client, authority_host: str, domain: str) -> str | None:
    """The id of the tenant owning a verified domain, from its OpenID configuration; None if
    Entra knows no such tenant (400 AADSTS90002)."""
    import httpx

    url = f"{authority_host.rstrip('/')}/{domain}/v2.0/.well-known/openid-configuration"
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise _discovery_failed(type(exc).__name__) from exc
    if response.status_code in (400, 404):
        return None
    issuer = None
    if response.status_code == 200:
        with contextlib.suppress(ValueError, AttributeError):
            issuer = response.json().get("issuer")
    tid = tenant_id_from_issuer(str(issuer or ""), authority_host)
    if tid is None:
        raise _discovery_failed(f"{response.status_code}, issuer {issuer!r}")
    return tid


def _discovery_failed(detail: str) -> DependencyError:
    return DependencyError(
        "The Microsoft identity platform is unavailable; try again",
        reason="identity_unavailable", log_detail=f"tenant discovery: {detail}",
    )  # fmt: skip


def callback_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/oauth/callback"


def admin_consent_uri(settings: Settings) -> str:
    return f"{settings.public_base_url}/oauth/adminconsent"
