"""Key Vault access: refresh tokens per connection, the app's own credential, and derived keys.

Real secrets (a connection's refresh token, the app's client secret or certificate) are one Key Vault
secret each and never leave this module except as return values. Per-flow secrets are not stored at
all: they are HMACs of a long-lived key (DESIGN.md "derive them from Key Vault keys"):

    oauth-flow-key   PKCE verifier = b64url(HMAC-SHA256(key, "pkce|" + flowId))  (43 chars)
                     nonce         = b64url(HMAC-SHA256(key, "nonce|" + flowId))

The flow entity records which *version* of `oauth-flow-key` it was started with, so two instances
racing to create the key (or a rotation) can never break a flow in progress.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets as pysecrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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


# ---------------------------------------------------------------- Key Vault


@dataclass(frozen=True)
class FlowKey:
    version: str
    key: bytes


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
        self._lock = threading.Lock()
        self._flow_keys: dict[str, FlowKey] = {}  # by version, plus "" for the current one

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

    # --- refresh tokens
    def get(self, name: str) -> str | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._call(lambda c: c.get_secret(name).value)
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise _store_error("read", name, exc) from exc

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

    # --- the flow key
    def flow_key(self, version: str | None = None) -> FlowKey:
        """The current flow key (created on first use), or the given version of it."""
        cached = self._flow_keys.get(version or "")
        if cached is not None:
            return cached
        with self._lock:
            try:
                key = self._load_flow_key(version)
            except SecretStoreError:
                raise
            except Exception as exc:
                raise _store_error("read", FLOW_KEY_NAME, exc) from exc
            self._flow_keys[version or ""] = key
            self._flow_keys[key.version] = key
            return key

    def _load_flow_key(self, version: str | None) -> FlowKey:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            secret = self._call(lambda c: c.get_secret(FLOW_KEY_NAME, version))
        except ResourceNotFoundError:
            if version:
                raise SecretStoreError(
                    "The connect flow's key is gone", transient=False, reason="flow_key_missing"
                ) from None
            # First use anywhere: create it. A concurrent creator just makes another version;
            # each flow remembers the version it used, so both keep working.
            self._call(
                lambda c: c.set_secret(
                    FLOW_KEY_NAME, b64url(pysecrets.token_bytes(32)), content_type="hmac-key"
                )
            )
            secret = self._call(lambda c: c.get_secret(FLOW_KEY_NAME))
        value = secret.value or ""
        return FlowKey(
            version=str(secret.properties.version or ""), key=base64.urlsafe_b64decode(value + "==")
        )

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

    def forget_cached(self) -> None:
        with self._lock:
            self._flow_keys.clear()


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


def default_store() -> SecretStore:
    """Deprecated alias of `shared.wiring.secret_store` (removed at the end of issue 12)."""
    from shared import wiring

    return wiring.secret_store()
