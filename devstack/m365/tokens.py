"""Signing and checking the emulator's tokens (RS256 JWTs shaped like Entra ID v2 tokens).

One RSA-2048 key per emulator run: restarting the emulator invalidates every token it issued, as
a key rollover would. `verify` is what Graph and Key Vault use; it reports *why* a token is refused
(`InvalidToken.reason`) so each service can answer in its own error shape.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devstack.m365.clock import Clock

if TYPE_CHECKING:
    from devstack.m365.directory import Directory

REASONS = frozenset(
    {
        "malformed",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "unknown_tenant",
        "revoked",
    }
)
# Entra allows 5 minutes of clock skew when services validate tokens; Graph and Key Vault too.
CLOCK_SKEW = 300
ACCESS_TOKEN_LIFETIME = 3599


class InvalidToken(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        assert reason in REASONS
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.claims: dict[str, Any] = {}  # unverified claims, when they could be read


class TokenService:
    def __init__(self, clock: Clock, directory: Directory | None = None) -> None:
        self.clock = clock
        self.directory = directory
        self.authority_host = ""  # set by the server once its port is known
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)
        self._lock = threading.Lock()
        # `iat` has one-second resolution; revocation needs to know whether a token was issued
        # before or after the revocation within the same second. Keyed by the `uti` claim.
        self._issued_at: dict[str, dt.datetime] = {}

    # ------------------------------------------------------------------ issuing
    def issuer(self, tenant_id: str) -> str:
        return f"{self.authority_host}/{tenant_id}/v2.0"

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256", "kty": "RSA"})
        return {"keys": [jwk]}

    def issue(self, claims: dict[str, Any], lifetime: int = ACCESS_TOKEN_LIFETIME) -> str:
        """Sign `claims`, filling `iat`/`nbf`/`exp`/`uti`/`ver` from the emulator clock."""
        now = self.clock.now()
        ts = int(now.timestamp())
        body = {"iat": ts, "nbf": ts, "exp": ts + lifetime, "ver": "2.0", **claims}
        body.setdefault("uti", uuid.uuid4().hex)
        with self._lock:
            self._issued_at[body["uti"]] = now
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": self.kid})

    def issued_at(self, claims: dict[str, Any]) -> dt.datetime:
        with self._lock:
            precise = self._issued_at.get(str(claims.get("uti", "")))
        return precise or dt.datetime.fromtimestamp(int(claims.get("iat", 0)), dt.UTC)

    # ---------------------------------------------------------------- checking
    def verify(self, token: str, audiences: Iterable[str]) -> dict[str, Any]:
        """Claims of a valid token for one of `audiences`; else `InvalidToken(reason)`.

        Checks in the order a resource server does: shape, signature, audience, issuer/tenant,
        lifetime (on the emulator clock, 5 min skew), then revocation of the user's sessions.
        """
        wanted = {a.rstrip("/") for a in audiences}
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(
                token,
                options={"verify_signature": False, "verify_iat": False, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed", str(exc)) from None
        if header.get("alg") != "RS256":
            raise InvalidToken("malformed", "alg must be RS256")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                # Time claims are judged below on the emulator clock, not this machine's.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise self._fail("bad_signature", unverified) from None
        except jwt.PyJWTError as exc:
            raise self._fail("malformed", unverified, str(exc)) from None
        if header.get("kid") != self.kid:
            raise self._fail("bad_signature", claims, "unknown kid")
        aud = str(claims.get("aud", "")).rstrip("/")
        if aud not in wanted:
            raise self._fail("wrong_audience", claims, aud)
        tid = str(claims.get("tid", ""))
        if self.directory is not None and self.directory.tenant(tid) is None:
            raise self._fail("unknown_tenant", claims, tid)
        if claims.get("iss") != self.issuer(tid):
            raise self._fail("wrong_issuer", claims, str(claims.get("iss")))
        now = self.clock.timestamp()
        if not isinstance(claims.get("exp"), int) or now > claims["exp"] + CLOCK_SKEW:
            raise self._fail("expired", claims)
        if isinstance(claims.get("nbf"), int) and now + CLOCK_SKEW < claims["nbf"]:
            raise self._fail("not_yet_valid", claims)
        if self.directory is not None and "oid" in claims and "scp" in claims:
            cutoff = self.directory.tokens_valid_after(
                tid, str(claims["oid"]), str(claims.get("azp") or claims.get("appid") or "")
            )
            if cutoff is not None and self.issued_at(claims) < cutoff:
                raise self._fail("revoked", claims)
        return claims

    @staticmethod
    def _fail(reason: str, claims: dict[str, Any], detail: str = "") -> InvalidToken:
        error = InvalidToken(reason, detail)
        error.claims = claims
        return error
