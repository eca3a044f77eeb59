"""Key Vault access: refresh tokens per connection, the app's own credential, and derived keys.

Real secrets (a connection's refresh token, the app's client secret or certificate) are one Key Vault
secret each and never leave this module except as return values. Per-flow secrets are not stored at
all: they are HMACs of a long-lived key (DESIGN.md "derive them from Key Vault keys"):

    oauth-flow-key   PKCE verifier = b64url(HMAC-SHA256(key, "pkce|" + flowId))  (43 chars)
                     nonce         = b64url(HMAC-SHA256(key, "nonce|" + flowId))

The flow entity records which *version* of `oauth-flow-key` it was started with, so two instances
racing to create the key (or a rotation) can never break a flow in progress.

Such keys (`oauth-flow-key`, the subscriptions' `client-state-key`) are read through one cache,
`VersionedKeys`: created on first use, each version cached by its Key Vault version and by its
non-secret fingerprint (`key_check`), the latest re-read when an unknown fingerprint shows up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets as pysecrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shared.core.errors import SecretStoreError

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

logger = logging.getLogger(__name__)

T = TypeVar("T")
FLOW_KEY_NAME = "oauth-flow-key"
_UNSAFE = re.compile(r"[^0-9a-zA-Z-]")


# ---------------------------------------------------------------- pure derivations


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(key: bytes, label: str, flow_id: str) -> str:
    return b64url(hmac.new(key, f"{label}|{flow_id}".encode(), hashlib.sha256).digest())


def pkce_verifier(key: bytes, flow_id: str) -> str:
    """RFC 7636 verifier (43 chars of the unreserved alphabet), recomputable at the callback."""
    return _mac(key, "pkce", flow_id)


def pkce_challenge(verifier: str) -> str:
    """S256 challenge of a verifier."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def oidc_nonce(key: bytes, flow_id: str) -> str:
    return _mac(key, "nonce", flow_id)


def connection_secret_name(building_id: str) -> str:
    """`conn-<building>`: Key Vault names allow only 0-9a-zA-Z- (≤127), so other ids get a hash."""
    safe = _UNSAFE.sub("-", building_id)
    if safe == building_id and len(safe) <= 100:
        return f"conn-{safe}"
    digest = hashlib.sha256(building_id.encode()).hexdigest()[:16]
    return f"conn-{safe[:80]}-{digest}"


def key_check(key: bytes) -> str:
    """A short, non-secret fingerprint of a key (which key made a stored value)."""
    return b64url(hmac.new(key, b"key-check", hashlib.sha256).digest())[:16]


# ---------------------------------------------------------------- Key Vault


@dataclass(frozen=True)
class VersionedKey:
    """One version of an HMAC key kept in Key Vault."""

    version: str  # the Key Vault version of the secret
    key: bytes

    @property
    def check(self) -> str:
        return key_check(self.key)


@dataclass(frozen=True)
class AppCredential:
    """What MSAL takes as `client_credential`: a secret string or a certificate dict."""

    kind: str  # "secret" | "certificate"
    value: Any


class SecretStore:
    """Typed access to the secrets BookingBridge keeps in Key Vault, with in-memory caching.

    Every Azure SDK error becomes `SecretStoreError` (names only in logs, never values).
    """

    def __init__(
        self, client: Callable[[], SecretClient], reset: Callable[[], None] | None = None
    ) -> None:
        self._client_factory = client
        self._reset = reset

    @property
    def _client(self) -> SecretClient:
        return self._client_factory()

    def _call(self, op: Callable[[SecretClient], T]) -> T:
        """Run `op`; if Key Vault rejects our (cached, unexpired-looking) token, rebuild the
        client and credential once. Happens when the vault's clock and ours disagree about a
        token's expiry, or the token was revoked early."""
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return op(self._client)
        except ClientAuthenticationError:
            if self._reset is None:
                raise
            logger.warning("Key Vault refused our token; rebuilding the client once")
            self._reset()
            return op(self._client)

    # --- refresh tokens, keys
    def get(self, name: str) -> str | None:
        found = self.get_version(name)
        return None if found is None else found[1]

    def get_version(self, name: str, version: str | None = None) -> tuple[str, str] | None:
        """(version, value) of the given version, or of the latest; None if there is none."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = self._call(lambda c: c.get_secret(name, version))
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise _store_error("read", name, exc) from exc
        return str(secret.properties.version or ""), secret.value or ""

    def set(self, name: str, value: str, *, content_type: str = "refresh-token") -> str:
        """Write a new version; recover a soft-deleted secret of that name first (reconnect)."""
        from azure.core.exceptions import ResourceExistsError

        try:
            try:
                return self._call(
                    lambda c: str(c.set_secret(name, value, content_type=content_type).id)
                )
            except ResourceExistsError:
                # Deleted but recoverable (soft-delete, purge protection): recover, then write.
                self._call(lambda c: c.begin_recover_deleted_secret(name).wait())
                return self._call(
                    lambda c: str(c.set_secret(name, value, content_type=content_type).id)
                )
        except Exception as exc:
            raise _store_error("write", name, exc) from exc

    def delete(self, name: str) -> None:
        """Delete (and purge where the vault allows it, so the name can be reused at once)."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            self._call(lambda c: c.begin_delete_secret(name).wait())
        except ResourceNotFoundError:
            return
        except Exception as exc:
            raise _store_error("delete", name, exc) from exc
        try:
            self._call(lambda c: c.purge_deleted_secret(name))
        except HttpResponseError as exc:  # purge protection: reconnect recovers instead
            logger.info("secret %s deleted, not purged (%s)", name, exc.status_code)

    # --- the app's credential
    def app_credential(self, secret_name: str, certificate_name: str | None) -> AppCredential:
        if certificate_name:
            pem = self.get(certificate_name)
            if not pem:
                raise SecretStoreError(
                    "The app certificate is missing", transient=False, reason="credential_missing",
                    log_detail=f"secret {certificate_name} not found",
                )  # fmt: skip
            return AppCredential("certificate", certificate_credential(pem))
        secret = self.get(secret_name)
        if not secret:
            raise SecretStoreError(
                "The app's client secret is missing", transient=False, reason="credential_missing",
                log_detail=f"secret {secret_name} not found",
            )  # fmt: skip
        return AppCredential("secret", secret)


class VersionedSecrets(Protocol):
    """The part of `SecretStore` that `VersionedKeys` uses (tests pass fakes)."""

    def get_version(self, name: str, version: str | None = None) -> tuple[str, str] | None: ...

    def set(self, name: str, value: str, *, content_type: str = ...) -> str: ...


# How long an instance keeps using the key it knows as current before asking Key Vault for the
# latest version: the bound on how late a rotation is seen (docs/DESIGN.md, issue 20).
CURRENT_KEY_TTL_SECONDS = 300.0


class VersionedKeys:
    """An HMAC key kept as the Key Vault secret `name`: created on first use, versions cached.

    - `current()`: the latest version, created if the secret does not exist yet, re-read at
      most every `current_ttl` seconds, so a rotation (a new version set in Key Vault) becomes
      current in every running instance within that bound. Two instances racing to create it
      just make two versions; whatever was made with either stays valid, because users record
      which version (`version`) or fingerprint (`check`) they used.
    - `version(v)`: a given version (versions never change, so they are cached for good).
    - `by_check(check)`: the version with this fingerprint; an unknown one makes us re-read the
      latest (at most every `reload_after` seconds), so a key created or rotated by another
      instance is found without a restart, and a flood of forged checks costs one read per period.

    Errors are `SecretStoreError` with reason `reason` (an unusable value) or `<reason>_missing`
    (a version that is gone).
    """

    def __init__(
        self,
        store: VersionedSecrets,
        name: str,
        *,
        reason: str,
        reload_after: float = 30.0,
        current_ttl: float = CURRENT_KEY_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.name = name
        self._reason = reason
        self._reload_after = reload_after
        self._current_ttl = current_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._current: VersionedKey | None = None
        self._by_version: dict[str, VersionedKey] = {}
        self._by_check: dict[str, VersionedKey] = {}
        self._loaded_at = float("-inf")

    def current(self) -> VersionedKey:
        current = self._current
        if current is None or self._clock() - self._loaded_at >= self._current_ttl:
            with self._lock:
                current = self._current
                if current is None:
                    current = self._load_latest(create=True)
                elif self._clock() - self._loaded_at >= self._current_ttl:
                    try:
                        current = self._load_latest(create=False) or current
                    except SecretStoreError as err:
                        # Key Vault unreachable (or a bad new version): the key we have is
                        # still valid; retry after another period.
                        logger.warning("%s: latest version not read: %s", self.name, err.reason)
                        self._loaded_at = self._clock()
        assert current is not None  # _load_latest(create=True) returns a key or raises
        return current

    def version(self, version: str) -> VersionedKey:
        found = self._by_version.get(version)
        if found is None:
            with self._lock:
                found = self._by_version.get(version) or self._load(version)
        return found

    def by_check(self, check: str) -> VersionedKey | None:
        found = self._by_check.get(check)
        if found is None and self._clock() - self._loaded_at >= self._reload_after:
            with self._lock:
                if check not in self._by_check:
                    self._load_latest(create=False)
            found = self._by_check.get(check)
        return found

    def _load(self, version: str) -> VersionedKey:
        found = self._store.get_version(self.name, version)
        if found is None:
            raise SecretStoreError(
                "A key this app needs is gone", transient=False, reason=f"{self._reason}_missing",
                log_detail=f"{self.name} version {version} not found",
            )  # fmt: skip
        return self._remember(*found)

    def _load_latest(self, *, create: bool) -> VersionedKey | None:
        self._loaded_at = self._clock()
        found = self._store.get_version(self.name)
        if found is None:
            if not create:
                return None
            self._store.set(self.name, b64url(pysecrets.token_bytes(32)), content_type="hmac-key")
            found = self._store.get_version(self.name) or ("", "")
        self._current = self._remember(*found)
        return self._current

    def _remember(self, version: str, value: str) -> VersionedKey:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) < 16:
            raise SecretStoreError(
                "A key this app needs is unusable", transient=False, reason=self._reason,
                log_detail=f"{self.name} version {version} is not a key",
            )  # fmt: skip
        key = VersionedKey(version, raw)
        self._by_version[version] = key
        self._by_check[key.check] = key
        return key


def certificate_credential(pem: str) -> dict[str, str]:
    """MSAL's certificate credential from a PEM holding a private key and its certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise SecretStoreError(
            "The app certificate is not a PEM certificate", transient=False,
            reason="credential_invalid",
        ) from exc  # fmt: skip
    if "PRIVATE KEY-----" not in pem:
        raise SecretStoreError(
            "The app certificate has no private key", transient=False, reason="credential_invalid"
        )
    return {
        "private_key": pem,
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 - Entra's x5t is SHA-1
        "public_certificate": pem,
    }


def _store_error(action: str, name: str, exc: Exception) -> SecretStoreError:
    status = getattr(exc, "status_code", None)
    transient = status is None or status >= 500 or status == 429
    return SecretStoreError(
        "Key Vault is unavailable" if transient else "Key Vault refused the request",
        transient=transient,
        reason="key_vault",
        log_detail=f"{action} {name}: {type(exc).__name__} {status}",
    )
