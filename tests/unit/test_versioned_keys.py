"""shared.storage.keyvault.VersionedKeys: the one cache of HMAC keys kept in Key Vault."""

from __future__ import annotations

import pytest

from shared.core.errors import SecretStoreError
from shared.storage.keyvault import VersionedKeys, b64url, key_check


class Vault:
    """Versions of secrets in memory, with read counts (the part of SecretStore the cache uses)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[str]] = {}
        self.reads = 0

    def get_version(self, name: str, version: str | None = None) -> tuple[str, str] | None:
        self.reads += 1
        values = self.versions.get(name, [])
        if version is None:
            return (f"v{len(values)}", values[-1]) if values else None
        n = int(version[1:]) if version[1:].isdigit() else 0
        return (version, values[n - 1]) if 0 < n <= len(values) else None

    def set(self, name: str, value: str, *, content_type: str = "") -> str:
        self.versions.setdefault(name, []).append(value)
        return f"v{len(self.versions[name])}"


def test_created_on_first_use_then_cached() -> None:
    vault = Vault()
    keys = VersionedKeys(vault, "k", reason="k_key")
    first = keys.current()
    assert len(vault.versions["k"]) == 1 and len(first.key) == 32 and first.version == "v1"
    reads = vault.reads
    assert keys.current() is first and keys.version("v1") is first
    assert vault.reads == reads


def test_an_old_version_stays_readable_after_a_rotation() -> None:
    vault = Vault()
    keys = VersionedKeys(vault, "k", reason="k_key")
    old = keys.current()
    vault.set("k", b64url(b"n" * 32))
    assert keys.version("v1") == old
    assert keys.version("v2").key == b"n" * 32


def test_by_check_rereads_the_latest_at_most_once_per_period() -> None:
    vault = Vault()
    now = [100.0]
    keys = VersionedKeys(vault, "k", reason="k_key", reload_after=30.0, clock=lambda: now[0])
    first = keys.current()
    assert keys.by_check(first.check) == first
    vault.set("k", b64url(b"r" * 32))  # another instance rotated
    rotated = key_check(b"r" * 32)
    assert keys.by_check(rotated) is None  # loaded just now: no second read yet
    now[0] += 30.0
    found = keys.by_check(rotated)
    assert found is not None and found.key == b"r" * 32
    assert keys.current() == found  # the latest read becomes the current key
    reads = vault.reads
    assert keys.by_check("forged") is None and vault.reads == reads


def test_a_missing_version_and_an_unusable_value_are_named_errors() -> None:
    vault = Vault()
    keys = VersionedKeys(vault, "k", reason="k_key")
    with pytest.raises(SecretStoreError) as gone:
        keys.version("v7")
    assert gone.value.reason == "k_key_missing" and not gone.value.transient
    vault.set("k", "short")
    with pytest.raises(SecretStoreError) as unusable:
        keys.current()
    assert unusable.value.reason == "k_key"


def test_a_rotation_becomes_current_within_the_bound_and_an_outage_keeps_the_old_key() -> None:
    """current() re-reads the latest version after `current_ttl` (issue 20): a running instance
    moves to a rotated key within that bound; Key Vault failing then keeps the key it has."""
    vault = Vault()
    now = [100.0]
    keys = VersionedKeys(vault, "k", reason="k_key", current_ttl=300.0, clock=lambda: now[0])
    first = keys.current()
    vault.set("k", b64url(b"r" * 32))  # rotated by an operator
    now[0] += 299.0
    assert keys.current() is first  # within the bound: no read
    now[0] += 1.0
    rotated = keys.current()
    assert rotated.version == "v2" and rotated.key == b"r" * 32
    assert keys.version("v1") == first  # the previous version stays usable

    def down(name: str, version: str | None = None) -> tuple[str, str] | None:
        raise SecretStoreError("Key Vault is unreachable", transient=True, reason="kv_down")

    vault.get_version = down  # type: ignore[method-assign]
    now[0] += 300.0
    assert keys.current() is rotated
