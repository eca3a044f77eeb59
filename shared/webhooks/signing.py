"""Standard Webhooks signatures (https://www.standardwebhooks.com/): secrets and headers.

    secret     `whsec_` + base64(32 random bytes); the HMAC key is the base64-decoded part
    signature  `v1,` + base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))
    header     `webhook-signature`: space-separated `v1,<sig>` entries, one per valid secret
               (two during a rotation's grace period), so a receiver with either secret verifies

Pure functions; the secrets themselves live in Key Vault (shared/webhooks/store.py names them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as pysecrets
from collections.abc import Iterable

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    """A fresh signing secret, `whsec_` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(pysecrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64 signature>` entry."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given (current first)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }
