"""Deprecated: the connect feature's old single module, now split (shared/connect/service.py
says how). Re-exports for callers not switched yet; removed at the end of issue 12."""

from __future__ import annotations

from shared.connect.flows import (
    check_admin_consent_claims,
    check_id_claims,
    discover_tenant_id,
    missing_scopes,
    tenant_id_from_issuer,
    validate_return_url,
    with_status,
)
from shared.connect.model import ConnectFailed, Expected, Flow
from shared.connect.repository import (
    CONNECTIONS_TABLE,
    FLOWS_TABLE,
    ConnectionRepository,
    FlowRepository,
)
from shared.connect.service import (
    ConnectDeps,
    complete_admin_consent,
    complete_delegated,
    connection_status,
    disconnect,
    keep_alive,
    mark_mappings_not_synced,
    start_connect,
)
from shared.core.connection import Account, Connection

__all__ = [
    "CONNECTIONS_TABLE",
    "FLOWS_TABLE",
    "Account",
    "ConnectDeps",
    "ConnectFailed",
    "Connection",
    "ConnectionRepository",
    "Expected",
    "Flow",
    "FlowRepository",
    "check_admin_consent_claims",
    "check_id_claims",
    "complete_admin_consent",
    "complete_delegated",
    "connection_status",
    "default_deps",
    "disconnect",
    "discover_tenant_id",
    "keep_alive",
    "mark_mappings_not_synced",
    "missing_scopes",
    "reset_default_deps",
    "start_connect",
    "tenant_id_from_issuer",
    "validate_return_url",
    "with_status",
]


def default_deps() -> ConnectDeps:
    """Deprecated alias of `shared.wiring.connect_deps`."""
    from shared import wiring

    return wiring.connect_deps()


def reset_default_deps() -> None:
    """Deprecated alias of `shared.wiring.reset`."""
    from shared import wiring

    wiring.reset()
