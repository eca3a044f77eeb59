"""What the identity emulator remembers between requests: pending sign-ins, codes, refresh tokens.

Codes and refresh tokens are opaque random strings (as Entra's are to clients); their meaning lives
here, judged on the emulator clock.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field

from devstack.m365.identity.scopes import ScopeRequest

CODE_LIFETIME = dt.timedelta(minutes=10)
REFRESH_MAX_INACTIVE = dt.timedelta(days=90)
# Refresh tokens sent to a `spa` redirect URI: a fixed 24 h from sign-in, carried over by every
# refresh token redeemed from them (Entra: refresh-tokens.md, v2-oauth2-auth-code-flow.md).
SPA_REFRESH_LIFETIME = dt.timedelta(hours=24)
PENDING_LIFETIME = dt.timedelta(hours=1)


@dataclass
class Pending:
    """An authorize or admin-consent request waiting for the person to sign in and consent."""

    # "authorize" (with prompt=admin_consent also an admin consent) | "adminconsent" | "adminconsent_v1"
    kind: str
    tenant_segment: str
    tenant_id: str | None  # None for organizations/common until someone signs in
    client_id: str
    redirect_uri: str
    scopes: ScopeRequest
    scope_raw: str
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    response_mode: str
    login_hint: str | None
    prompt: str | None
    created: dt.datetime
    user_id: str | None = None
    user_tenant_id: str | None = None


@dataclass
class AuthCode:
    tenant_id: str
    client_id: str
    user_id: str
    redirect_uri: str
    scopes: ScopeRequest
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    issued: dt.datetime
    redeemed: bool = False
    spa: bool = False  # issued to a SPA redirect URI: redeemed cross-origin, no secret, PKCE


@dataclass
class RefreshGrant:
    tenant_id: str
    client_id: str
    user_id: str
    scope_raw: str  # what was asked at authorize (all resources): refresh may switch resource
    issued: dt.datetime
    spa_expires: dt.datetime | None = None  # SPA refresh tokens: the fixed end of the session


@dataclass
class IdentityState:
    pending: dict[str, Pending] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_pending(self, pending: Pending) -> str:
        ctx = secrets.token_urlsafe(24)
        with self.lock:
            self.pending[ctx] = pending
        return ctx

    def get_pending(self, ctx: str, now: dt.datetime) -> Pending | None:
        with self.lock:
            found = self.pending.get(ctx)
        if found is None or now - found.created > PENDING_LIFETIME:
            return None
        return found

    def drop_pending(self, ctx: str) -> None:
        with self.lock:
            self.pending.pop(ctx, None)

    def add_code(self, code: AuthCode) -> str:
        value = "1.AX" + secrets.token_urlsafe(48)
        with self.lock:
            self.codes[value] = code
        return value

    def add_refresh(self, grant: RefreshGrant) -> str:
        value = "1.AR" + secrets.token_urlsafe(64)
        with self.lock:
            self.refresh_tokens[value] = grant
        return value
