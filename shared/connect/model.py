"""The connect flow's records: a started flow (`Flow`), who may finish it (`Expected`), and how an
attempt fails (`ConnectFailed`). The connection itself is `shared.core.connection.Connection`.

Flow state is non-secret (shared/connect/service.py's docstring): the PKCE verifier and the nonce
are recomputed from the flow id and the flow key version recorded here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.core.connection import FULL_ACCESS

FLOW_TTL = timedelta(minutes=10)
MODES = ("delegated", "application")


@dataclass(frozen=True)
class Expected:
    """Who may finish a flow (shared/connect/service.py's docstring): the starting admin's own account (`oid` + `tid`),
    or the account a service named (`account`: a user principal name or an object id)."""

    oid: str | None = None
    tid: str | None = None
    account: str | None = None

    def matches(self, claims: Mapping[str, Any]) -> bool:
        oid = str(claims.get("oid") or "").lower()
        if self.oid is not None and (
            oid != self.oid.lower() or str(claims.get("tid") or "").lower() != str(self.tid).lower()
        ):
            return False
        if self.account is None:
            return self.oid is not None  # an unbound flow (none are made) matches nobody
        names = {oid} | {
            str(claims.get(name) or "").lower() for name in ("preferred_username", "upn", "email")
        }
        return self.account.lower() in names - {""}

    def describe(self) -> str:
        """For logs and audit: ids and the named account, nothing else."""
        if self.oid is not None:
            return f"{self.oid}@{self.tid}" + (f" as {self.account}" if self.account else "")
        return str(self.account)


@dataclass(frozen=True)
class Flow:
    flow_id: str
    building_id: str
    caller: str
    mode: str
    return_url: str
    expires_at: datetime
    key_version: str
    expected: Expected
    tenant: str | None = None  # application mode: the tenant id (GUID) an admin must consent in
    access: str = FULL_ACCESS  # the connection's access level (shared/core/connection.py)


class ConnectFailed(Exception):
    """A connect attempt ended without a connection; `reason` goes to the return URL."""

    def __init__(self, reason: str, *, record: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


class AccountMismatch(ConnectFailed):
    """Someone other than the flow's expected account signed in (`Expected`). Nothing of
    the attempt is kept: no connection change, no error shown on the building."""

    def __init__(self, signed_in: str) -> None:
        super().__init__("account_mismatch", record=False)
        self.signed_in = signed_in
