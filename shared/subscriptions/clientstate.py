"""A subscription's clientState and the Key Vault key it is derived from.

clientState (DESIGN.md "derive them from Key Vault keys"): `b64url(HMAC-SHA256(client-state-key,
"clientState|" + nonce))`, 43 characters. The nonce is random per subscription and stored with the
record; the key is the Key Vault secret `client-state-key`, created on first use, cached in memory
(`keys_in`: shared.storage.keyvault's `VersionedKeys`). Records also store the key's *check* (an
HMAC of a constant under the key, `VersionedKey.check`) so the webhook picks the right key and the
renewal timer recreates subscriptions made with a key that is no longer current (two instances
racing to create the key on first use, or a rotation).
"""

from __future__ import annotations

import hashlib
import hmac

from shared.storage.keyvault import VersionedKeys, VersionedSecrets, b64url

CLIENT_STATE_KEY_NAME = "client-state-key"


def client_state(key: bytes, nonce: str) -> str:
    """The clientState of a subscription: 43 URL-safe characters (Graph allows ≤ 128)."""
    return b64url(hmac.new(key, f"clientState|{nonce}".encode(), hashlib.sha256).digest())


def client_state_matches(key: bytes, nonce: str, given: str) -> bool:
    """Constant-time comparison of a notification's clientState with the expected one."""
    return hmac.compare_digest(client_state(key, nonce).encode(), given.encode("utf-8", "replace"))


def keys_in(store: VersionedSecrets) -> VersionedKeys:
    """The clientState key cache on a Key Vault store (one per process: shared/wiring.py)."""
    return VersionedKeys(store, CLIENT_STATE_KEY_NAME, reason="client_state_key")
