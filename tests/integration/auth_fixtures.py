"""API bearer tokens for integration tests, in one place.

Today a test-only RSA key signs the tokens and `shared.wiring.token_validator` is replaced by a
validator that trusts that key (`caller_for` looks the validator up at call time). When the identity
emulator issues API tokens, switch `api_tokens` to emulator-issued tokens here; tests only use the
`ApiTokens` methods and do not change.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import shared.wiring
from shared.api.auth import BUILDING_ADMIN, PORTAL_SERVICE, JwksCache, TokenValidator

TENANT = "0a0a0a0a-0000-4000-8000-000000000001"
ISSUER = f"https://login.test.invalid/{TENANT}/v2.0"
AUDIENCE = "api://bookingbridge-test"
KID = "test-key-1"


@functools.cache
def _signing_key() -> tuple[Any, dict[str, Any]]:
    """One RSA key per test session (generating one costs ~50 ms)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update({"kid": KID, "use": "sig", "alg": "RS256"})
    return private, jwk


@dataclass(frozen=True)
class ApiTokens:
    """Makes `Authorization` headers for the API's two roles (and for a token with no role)."""

    issuer: str = ISSUER
    audience: str = AUDIENCE

    def token(self, roles: Iterable[str], **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": str(uuid.uuid4()),
            "tid": TENANT,
            "roles": list(roles),
            **claims,
        }
        return jwt.encode(body, _signing_key()[0], algorithm="RS256", headers={"kid": KID})

    def service(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token([PORTAL_SERVICE])}

    def admin(self, *buildings: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token([BUILDING_ADMIN], buildings=buildings)}

    def no_role(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token([])}


@pytest.fixture
def api_tokens(monkeypatch: pytest.MonkeyPatch) -> ApiTokens:
    """Tokens the app under test accepts (its validator swapped for one trusting the test key)."""
    tokens = ApiTokens()
    jwk = _signing_key()[1]
    validator = TokenValidator(ISSUER, [AUDIENCE], JwksCache(lambda: {"keys": [jwk]}))
    monkeypatch.setattr(shared.wiring, "token_validator", lambda: validator)
    return tokens
