"""The emulator's shared state: one clock, one directory, one token service and the parts' states.

Parts reach each other through this object (Graph asks the directory about grants, the identity
emulator signs with the token service, ...). It is created once per emulator process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devstack.m365.clock import Clock
from devstack.m365.directory import Directory
from devstack.m365.tokens import TokenService


@dataclass
class Emulator:
    clock: Clock
    directory: Directory
    tokens: TokenService
    auto_consent: bool = True
    base_url: str = ""  # https://127.0.0.1:<port>, set once the port is bound
    key_vault_url: str = ""  # https://127.0.0.1:<kvport>/
    key_vault_tenant: str | None = None  # id/domain of the vault's tenant; None = first seeded
    identity: Any = None
    graph: Any = None
    keyvault: Any = None
    last_seed: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, *, auto_consent: bool = True, key_vault_tenant: str | None = None) -> Emulator:
        clock = Clock()
        directory = Directory(clock)
        return cls(
            clock=clock,
            directory=directory,
            tokens=TokenService(clock, directory),
            auto_consent=auto_consent,
            key_vault_tenant=key_vault_tenant,
        )

    def set_base_urls(self, base_url: str, key_vault_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.key_vault_url = key_vault_url.rstrip("/") + "/"
        self.tokens.authority_host = self.base_url

    def vault_tenant_id(self) -> str | None:
        """The tenant owning the vault: the configured one, else the first tenant seeded."""
        if self.key_vault_tenant:
            tenant = self.directory.tenant(self.key_vault_tenant)
            return tenant.id if tenant else None
        first = next(iter(self.directory.tenants.values()), None)
        return first.id if first else None
