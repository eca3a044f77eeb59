"""A subscription's clientState and the Key Vault key it is derived from.

clientState (DESIGN.md "derive them from Key Vault keys"): `b64url(HMAC-SHA256(client-state-key,
"clientState|" + nonce))`, 43 characters. The nonce is random per subscription and stored with the
record; the key is the Key Vault secret `client-state-key`, created on first use, cached in memory
(`ClientStateKeys`). Records also store a *key check* (an HMAC of a constant under the key) so the
webhook picks the right key and the renewal timer recreates subscriptions made with a key that is
no longer current (two instances racing to create the key on first use, or a rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as pysecrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from shared.core.errors import SecretStoreError
from shared.storage.keyvault import b64url

CLIENT_STATE_KEY_NAME = "client-state-key"


def client_state(key: bytes, nonce: str) -> str:
    """The clientState of a subscription: 43 URL-safe characters (Graph allows ≤ 128)."""
    return b64url(hmac.new(key, f"clientState|{nonce}".encode(), hashlib.sha256).digest())


def key_check(key: bytes) -> str:
    """A short, non-secret fingerprint of a key (which key made a clientState)."""
    return b64url(hmac.new(key, b"key-check", hashlib.sha256).digest())[:16]


def client_state_matches(key: bytes, nonce: str, given: str) -> bool:
    """Constant-time comparison of a notification's clientState with the expected one."""
    return hmac.compare_digest(client_state(key, nonce).encode(), given.encode("utf-8", "replace"))


class KeyStore(Protocol):
    """The part of shared.storage.keyvault.SecretStore used here."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str, *, content_type: str = ...) -> str: ...


@dataclass(frozen=True)
class StateKey:
    check: str
    key: bytes


class ClientStateKeys:
    """`client-state-key` from Key Vault: created on first use, cached; keys looked up by check.

    A check we do not know makes us re-read the vault (at most every `reload_after` seconds), so a
    key created or rotated by another instance is picked up without a restart.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        reload_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._reload_after = reload_after
        self._clock = clock
        self._lock = threading.Lock()
        self._current: StateKey | None = None
        self._by_check: dict[str, StateKey] = {}
        self._loaded_at = float("-inf")

    def current(self) -> StateKey:
        if self._current is None:
            with self._lock:
                if self._current is None:
                    self._load(create=True)
        assert self._current is not None
        return self._current

    def by_check(self, check: str) -> bytes | None:
        found = self._by_check.get(check)
        if found is None and self._clock() - self._loaded_at >= self._reload_after:
            with self._lock:
                if check not in self._by_check:
                    self._load(create=False)
            found = self._by_check.get(check)
        return found.key if found else None

    def _load(self, *, create: bool) -> None:
        self._loaded_at = self._clock()
        value = self._store.get(CLIENT_STATE_KEY_NAME)
        if value is None:
            if not create:
                return
            # First use anywhere. A concurrent creator writes another version; we read back the
            # latest, and records made with a losing version are recreated by renewal (key check).
            self._store.set(
                CLIENT_STATE_KEY_NAME, b64url(pysecrets.token_bytes(32)), content_type="hmac-key"
            )
            value = self._store.get(CLIENT_STATE_KEY_NAME) or ""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) < 16:
            raise SecretStoreError(
                "The clientState key is unusable", transient=False, reason="client_state_key"
            )
        key = StateKey(key_check(raw), raw)
        self._by_check[key.check] = key
        self._current = key
