"""A building's connection to Microsoft 365: the record every layer passes around.

`Connection` says which building is connected to which tenant (and, delegated, which account),
how, and since when. It lives here, below both the Graph layer and the connect feature, because
both need it and the Graph layer must not depend on connect: shared/graph types its requests
against it (ids for audit and per-mailbox limits, the account for the mapped-calendar guard),
shared/connect makes, stores and refreshes it (shared/connect/service.py, repository.py). A
Protocol in shared/graph would not do: the token provider the Graph client calls needs the whole
record (mode, status, secret name), so the client and the provider must agree on one type.

Plain data only: no storage, no I/O, no API shape (those are the connect feature's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# What a connection may do with calendars (issue 19): `full` reads and writes its mapped calendars;
# `freeBusy` only reads free/busy (getSchedule), so its mappings are read-only.
FULL_ACCESS = "full"
FREE_BUSY = "freeBusy"
ACCESS_LEVELS = (FULL_ACCESS, FREE_BUSY)


@dataclass(frozen=True)
class Account:
    """The connected (delegated) account, as Graph's `GET /me` describes it."""

    id: str
    display_name: str | None
    mail: str | None
    user_principal_name: str | None

    @staticmethod
    def from_json(user: Mapping[str, Any]) -> Account:
        """From Graph's user shape (`/me`), also the stored form (`to_json`)."""
        return Account(
            id=str(user.get("id") or ""),
            display_name=user.get("displayName"),
            mail=user.get("mail"),
            user_principal_name=user.get("userPrincipalName"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "mail": self.mail,
            "userPrincipalName": self.user_principal_name,
        }


@dataclass(frozen=True)
class Connection:
    building_id: str
    connection_id: str  # new per connect: audit records and in-process caches key on it
    mode: str  # "delegated" | "application"
    status: str  # "connected" | "reauth_required" | "error"
    tenant_id: str
    account: Account | None = None
    scopes: frozenset[str] = frozenset()
    reason: str | None = None
    connected_at: datetime | None = None
    last_refresh_at: datetime | None = None
    connected_by: str | None = None
    secret_name: str = ""  # delegated: the Key Vault secret holding the refresh token
    access: str = FULL_ACCESS  # FULL_ACCESS or FREE_BUSY

    @property
    def free_busy_only(self) -> bool:
        return self.access == FREE_BUSY
