"""Who is calling the API: bearer JWTs from the configured issuer, validated in-app.

Checks signature (RS256 against the issuer's JWKS), issuer, audience, expiry and not-before, then
maps the token to a `Caller`. Two kinds of token, told apart by `scp`:

- App tokens (client credentials: no `scp`; Entra marks them `idtyp: app`) — roles decide:
  - `Portal.Service` — a trusted backend; reaches every building.
  - `Building.Admin` — reaches only the buildings in its `buildings` claim (list or
    comma-separated).
- User tokens (delegated: a `scp` claim, or `idtyp: user`; e.g. the admin console's sign-in) —
  must carry the API's delegated scope `access_as_user` in `scp` (else 403 `missing_scope`: a
  valid token that was not issued for calling this API on the user's behalf, RFC 6750's
  insufficient_scope), and the `Building.Admin` role (else 403 `missing_role`); they reach the
  buildings in their `buildings` claim. A person never gets `Portal.Service`'s global reach, even
  if a token says so: the role is dropped from a user token (issue 13).

Anything else is 401 (no, malformed or invalid token) or 403 (valid token, wrong role or building).
Reasons are logged as codes, never the token. JWKS are cached per process and refetched (at most
every 30 s) when a token names an unknown key id, which is how Entra key rollover shows up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from shared.core.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    import httpx

    from shared.core.settings import Settings

logger = logging.getLogger(__name__)

PORTAL_SERVICE = "Portal.Service"
BUILDING_ADMIN = "Building.Admin"
# The delegated scope the app registration exposes (`{BB_API_AUDIENCE}/access_as_user`).
ACCESS_AS_USER = "access_as_user"
_LEEWAY_S = 60  # clock skew tolerated, as Entra-validating middleware does
_REFETCH_COOLDOWN_S = 30.0
_JWKS_TTL_S = 3600.0


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the API."""

    subject: str  # `oid` of a user or the service principal, else `sub`
    tenant_id: str
    roles: frozenset[str]
    buildings: frozenset[str] | None  # None: every building (Portal.Service)
    name: str | None = None
    delegated: bool = False  # a person's (user) token, not an app's

    @property
    def actor(self) -> str:
        """How audit records name this caller."""
        return f"{'service' if self.buildings is None else 'admin'}:{self.subject}"

    def can_reach(self, building_id: str) -> bool:
        return self.buildings is None or building_id in self.buildings

    def require_building(self, building_id: str) -> None:
        if not self.can_reach(building_id):
            raise Forbidden("This caller may not reach that building", reason="building_forbidden")


class JwksCache:
    """Signing keys of one issuer, fetched lazily; refetched on an unknown `kid`."""

    def __init__(self, fetch: Callable[[], dict[str, Any]]) -> None:
        self._fetch = fetch
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._lock = threading.Lock()

    def key(self, kid: str) -> Any:
        with self._lock:
            age = time.monotonic() - self._fetched_at
            # Refetch when stale, or when a new kid appears (rollover) but not more than once per
            # cooldown: a flood of forged kids must not turn into a flood of JWKS requests.
            if age > _JWKS_TTL_S or (kid not in self._keys and age > _REFETCH_COOLDOWN_S):
                self._load()
            if kid not in self._keys:
                raise Unauthorized("Token signed with an unknown key", reason="unknown_key")
            return self._keys[kid]

    def _load(self) -> None:
        document = self._fetch()
        keys: dict[str, Any] = {}
        for jwk in document.get("keys", []):
            if jwk.get("kty") == "RSA" and "kid" in jwk:
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        self._keys = keys
        self._fetched_at = time.monotonic()


class TokenValidator:
    """Validates bearer tokens for one issuer and a set of accepted audiences."""

    def __init__(self, issuer: str, audiences: Iterable[str], jwks: JwksCache) -> None:
        self.issuer = issuer
        self.audiences = [a for a in audiences if a]
        self.jwks = jwks

    def caller(self, authorization: str | None) -> Caller:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("Malformed bearer token", reason="malformed_token") from exc
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise Unauthorized("Unsupported token signature", reason="bad_algorithm")
        key = self.jwks.key(str(header["kid"]))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audiences,
                issuer=self.issuer,
                leeway=_LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Bearer token expired", reason="token_expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized(
                "Bearer token is for another audience", reason="wrong_audience"
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("Bearer token from another issuer", reason="wrong_issuer") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("Invalid bearer token", reason="invalid_token") from exc
        return caller_from_claims(claims)


def caller_from_claims(claims: dict[str, Any]) -> Caller:
    roles = frozenset(str(r) for r in claims.get("roles") or [])
    subject = str(claims.get("oid") or claims.get("sub") or "")
    tenant = str(claims.get("tid") or "")
    name = claims.get("preferred_username") or claims.get("name")
    if is_user_token(claims):
        scopes = str(claims.get("scp") or "").split()
        if ACCESS_AS_USER not in scopes:
            raise Forbidden(
                f"The user token does not carry the API's delegated scope {ACCESS_AS_USER}",
                reason="missing_scope",
            )
        if BUILDING_ADMIN not in roles:
            raise Forbidden(
                "A signed-in person needs the Building.Admin role", reason="missing_role"
            )
        # Portal.Service-style global access is never offered to people.
        return Caller(
            subject, tenant, roles - {PORTAL_SERVICE}, _buildings(claims), name, delegated=True
        )
    if PORTAL_SERVICE in roles:
        return Caller(subject, tenant, roles, None, name)
    if BUILDING_ADMIN in roles:
        return Caller(subject, tenant, roles, _buildings(claims), name)
    raise Forbidden("The token carries no BookingBridge role", reason="missing_role")


def is_user_token(claims: dict[str, Any]) -> bool:
    """A delegated token (a person signed in): it has `scp`; Entra also marks it `idtyp: user`.
    App-only tokens have no `scp` (and `idtyp: app` where the optional claim is emitted)."""
    return "scp" in claims or claims.get("idtyp") == "user"


def _buildings(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("buildings") or []
    items = raw.split(",") if isinstance(raw, str) else raw
    return frozenset(str(b).strip() for b in items if str(b).strip())


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("A bearer token is required", reason="missing_token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required", reason="missing_token")
    return token.strip()


def validator_for(settings: Settings, http: Callable[[], httpx.Client]) -> TokenValidator:
    """A validator for the configured issuer; `http` gives the client the JWKS are fetched with."""
    tenant_base = f"{settings.authority_host}/{settings.api_tenant_id}"

    def fetch() -> dict[str, Any]:
        config = http().get(f"{tenant_base}/v2.0/.well-known/openid-configuration")
        config.raise_for_status()
        keys = http().get(config.json()["jwks_uri"])
        keys.raise_for_status()
        result: dict[str, Any] = keys.json()
        return result

    # Entra v2 tokens for our API carry the client id as `aud`; v1 ones the identifier URI.
    return TokenValidator(
        f"{tenant_base}/v2.0", [settings.api_audience, settings.client_id], JwksCache(fetch)
    )
