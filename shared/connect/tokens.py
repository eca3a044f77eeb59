"""Tokens from the Microsoft identity platform: MSAL for the app, a token provider per connection.

`Identity` wraps one long-lived `msal.ConfidentialClientApplication` per authority (MSAL is built to
be reused: it caches metadata and its HTTP session). MSAL's own token cache is disabled: it would
keep every connected account's refresh token in one process-wide cache; we keep exactly one refresh
token per connection in Key Vault and access tokens per connection in `TokenProvider`.

`TokenProvider` gives the Graph layer an access token for a connection:
- delegated: from the refresh token in Key Vault; the rotated refresh token is written back as a new
  version only when it changed; refreshes of one connection are serialized in-process (GRAPH.md
  pitfall 15); `invalid_grant` / `interaction_required` mark the connection `reauth_required` with a
  reason code (AADSTS → reason, `reason_for`) and pause it;
- application: client credentials for the connection's tenant.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from shared.core.errors import IdentityError
from shared.graph.permissions import GRAPH_DEFAULT_SCOPE, granted_graph_scopes

if TYPE_CHECKING:
    import msal
    import requests

    from shared.core.connection import Connection
    from shared.storage.keyvault import AppCredential

logger = logging.getLogger(__name__)

# Refresh a little before expiry: a token must outlive the Graph request (and its retries).
_EXPIRY_MARGIN_S = 300.0

# AADSTS code → our reason code (GRAPH.md §1.6). Reasons are what admins see in GET connection.
AADSTS_REASONS: dict[int, str] = {
    700082: "refresh_token_expired",
    70008: "grant_expired",
    50173: "grant_revoked",
    70043: "sign_in_frequency",
    50076: "mfa_required",
    50079: "mfa_registration_required",
    50078: "mfa_expired",
    53003: "blocked_by_conditional_access",
    65001: "consent_required",
    65004: "consent_declined",
    90094: "admin_consent_required",
    90095: "admin_consent_required",
    54005: "code_already_redeemed",
    50011: "redirect_uri_mismatch",
    700016: "app_not_in_tenant",
    700011: "app_not_in_tenant",
    7000215: "invalid_client_credential",
    7000222: "client_credential_expired",
    90002: "tenant_not_found",
    50020: "user_not_in_tenant",
    50034: "user_not_in_tenant",
    500011: "graph_not_in_tenant",
    50057: "user_disabled",
    501481: "pkce_mismatch",
}

# OAuth `error` values → reason, when no AADSTS code is known.
ERROR_REASONS: dict[str, str] = {
    "invalid_grant": "invalid_grant",
    "interaction_required": "interaction_required",
    "consent_required": "consent_required",
    "access_denied": "consent_declined",
    "login_required": "login_required",
    "invalid_client": "invalid_client_credential",
    "unauthorized_client": "app_not_in_tenant",
    "invalid_scope": "invalid_scope",
    "temporarily_unavailable": "identity_unavailable",
    "server_error": "identity_unavailable",
}

# Token-endpoint errors after which only a person signing in again helps.
REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required"})


def reason_for(error: str | None, codes: Iterable[int] = ()) -> str:
    """A stable reason code for an identity-platform error (AADSTS code first, then `error`)."""
    for code in codes:
        if code in AADSTS_REASONS:
            return AADSTS_REASONS[code]
    return ERROR_REASONS.get(error or "", "identity_error")


def codes_in(description: str | None) -> tuple[int, ...]:
    """AADSTS codes named at the start of an `error_description` (authorize redirects have no list)."""
    return tuple(int(m) for m in re.findall(r"AADSTS(\d+)", description or ""))


@dataclass(frozen=True)
class TokenResult:
    access_token: str
    expires_at: float  # time.time() seconds
    refresh_token: str | None
    scopes: frozenset[str]
    id_claims: dict[str, Any]

    def __repr__(self) -> str:  # never print tokens, even in a traceback's locals
        return f"TokenResult(scopes={sorted(self.scopes)}, expires_at={self.expires_at})"


class _NoCache:
    """Disables MSAL's in-memory token cache (see module docstring)."""

    def __new__(cls) -> Any:
        import msal

        class NoCache(msal.TokenCache):  # type: ignore[misc]
            def add(self, event: Any, **kwargs: Any) -> None:
                return None

            def modify(self, *args: Any, **kwargs: Any) -> None:
                return None

        return NoCache()


class Identity:
    """The app's MSAL clients, one per authority, created on first use and reused."""

    def __init__(
        self,
        client_id: str,
        authority_host: str,
        credential: Callable[[], AppCredential],
        http_session: requests.Session,
    ) -> None:
        self.client_id = client_id
        self.authority_host = authority_host.rstrip("/")
        self._credential = credential
        self._session = http_session
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._lock = threading.Lock()

    def _app(self, tenant: str) -> msal.ConfidentialClientApplication:
        with self._lock:
            app = self._apps.get(tenant)
            if app is None:
                import msal

                app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self._credential().value,
                    authority=f"{self.authority_host}/{tenant}",
                    instance_discovery=False,  # also lets the local emulator be the authority
                    http_client=self._session,  # trust_env=False: REQUESTS_CA_BUNDLE must not win
                    token_cache=_NoCache(),
                )
                self._apps[tenant] = app
            return app

    def reset(self) -> None:
        """Forget the apps (after a credential rotation: they hold the old secret)."""
        with self._lock:
            self._apps.clear()

    def redeem_code(
        self, code: str, *, scopes: list[str], redirect_uri: str, verifier: str, nonce: str
    ) -> TokenResult:
        def call() -> dict[str, Any]:
            try:
                result: dict[str, Any] = self._app("organizations").acquire_token_by_authorization_code(
                    code, scopes, redirect_uri=redirect_uri, nonce=nonce,
                    data={"code_verifier": verifier},
                )  # fmt: skip
            except ValueError as exc:  # MSAL raises on a nonce mismatch
                raise IdentityError(
                    "The sign-in response did not match this flow", error="nonce_mismatch"
                ) from exc
            return result

        return self._result(self._with_credential_retry(call))

    def refresh(self, tenant: str, refresh_token: str, scopes: list[str]) -> TokenResult:
        return self._result(
            self._with_credential_retry(
                lambda: self._app(tenant).acquire_token_by_refresh_token(refresh_token, scopes)
            )
        )

    def app_token(self, tenant: str) -> TokenResult:
        result = self._with_credential_retry(
            lambda: self._app(tenant).acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
        )
        token = self._result(result)
        roles = _unverified_claims(token.access_token).get("roles") or []
        return TokenResult(token.access_token, token.expires_at, None, frozenset(roles), {})

    def _with_credential_retry(self, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        result = call()
        if result.get("error") == "invalid_client":
            # The secret may have been rotated in Key Vault since the apps were built: reload once.
            self.reset()
            result = call()
        return result

    @staticmethod
    def _result(result: dict[str, Any]) -> TokenResult:
        if "access_token" not in result:
            error = str(result.get("error") or "unknown_error")
            codes = tuple(int(c) for c in result.get("error_codes") or [] if str(c).isdigit())
            codes = codes or codes_in(result.get("error_description"))
            raise IdentityError(
                f"The identity platform refused: {reason_for(error, codes)}",
                error=error,
                codes=codes,
                reauth=error in REAUTH_ERRORS,
            )
        return TokenResult(
            access_token=str(result["access_token"]),
            expires_at=time.time() + float(result.get("expires_in") or 3599),
            refresh_token=result.get("refresh_token"),
            scopes=granted_graph_scopes(result.get("scope")),
            id_claims=dict(result.get("id_token_claims") or {}),
        )


def _unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a Graph app token, for display only (never for a security decision).

    Used to show an application connection's `roles`; Microsoft may make tokens opaque, then
    the connection simply shows no scopes.
    """
    try:
        payload = token.split(".")[1]
        data: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return data
    except (IndexError, ValueError):
        return {}


# ---------------------------------------------------------------- token provider


class ConnectionStore(Protocol):
    """What the provider needs from the connection repository."""

    def get(self, building_id: str) -> Connection | None: ...

    def mark_refreshed(self, building_id: str, connection_id: str, when: datetime) -> None: ...

    def mark_reauth(self, building_id: str, connection_id: str, reason: str) -> None: ...


class SecretAccess(Protocol):
    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str, *, content_type: str = ...) -> str: ...


@dataclass
class _Cached:
    token: str
    expires_at: float


class TokenProvider:
    """Access tokens per connection, cached in memory, refreshed under a per-connection lock."""

    def __init__(
        self,
        identity: Identity,
        secrets: SecretAccess,
        connections: ConnectionStore,
        now: Callable[[], datetime],
    ) -> None:
        self.identity = identity
        self.secrets = secrets
        self.connections = connections
        self.now = now
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def token(self, connection: Connection) -> str:
        key = connection.connection_id
        cached = self._cache.get(key)
        if cached and cached.expires_at - _EXPIRY_MARGIN_S > time.time():
            return cached.token
        with self._lock(key):
            cached = self._cache.get(key)  # another thread may have refreshed meanwhile
            if cached and cached.expires_at - _EXPIRY_MARGIN_S > time.time():
                return cached.token
            result = self._acquire(connection)
            self._cache[key] = _Cached(result.access_token, result.expires_at)
            return result.access_token

    def invalidate(self, connection: Connection) -> None:
        """Drop the cached access token (Graph said 401 InvalidAuthenticationToken)."""
        self._cache.pop(connection.connection_id, None)

    def prime(self, connection: Connection, result: TokenResult) -> None:
        self._cache[connection.connection_id] = _Cached(result.access_token, result.expires_at)

    def refresh_now(self, connection: Connection) -> None:
        """Redeem the refresh token now (keep-alive), whatever the cached access token."""
        with self._lock(connection.connection_id):
            result = self._acquire(connection)
            self._cache[connection.connection_id] = _Cached(result.access_token, result.expires_at)

    def _acquire(self, connection: Connection) -> TokenResult:
        if connection.status != "connected":
            raise IdentityError(
                "The connection needs an administrator to reconnect",
                error="reauth_required"
                if connection.status == "reauth_required"
                else "not_connected",
                reauth=True,
            )
        if connection.mode == "application":
            return self.identity.app_token(connection.tenant_id)
        return self._refresh(connection)

    def _refresh(self, connection: Connection) -> TokenResult:
        refresh_token = self.secrets.get(connection.secret_name)
        if not refresh_token:
            self.connections.mark_reauth(
                connection.building_id, connection.connection_id, "refresh_token_missing"
            )
            raise IdentityError("No refresh token", error="invalid_grant", reauth=True)
        try:
            result = self.identity.refresh(
                connection.tenant_id, refresh_token, sorted(connection.scopes)
            )
        except IdentityError as err:
            if err.reauth:
                reason = reason_for(err.error, err.codes)
                logger.warning(
                    "connection %s of building %s needs reauth: %s",
                    connection.connection_id, connection.building_id, reason,
                )  # fmt: skip
                self.connections.mark_reauth(
                    connection.building_id, connection.connection_id, reason
                )
            raise
        if result.refresh_token and result.refresh_token != refresh_token:
            # Rotation: persist the new one (a new version) before anything else can lose it.
            self.secrets.set(connection.secret_name, result.refresh_token)
        self.connections.mark_refreshed(
            connection.building_id, connection.connection_id, self.now()
        )
        return result
