"""Where connections and connect flows are stored: the `connections` and `oauthflows` tables.

One connection per building (`connections`, PartitionKey the building id as-is, validated by
shared.core.validate.check_building exactly as shared/directory/registry.py does; RowKey
`current`); no secrets in it, ever. Reads are cached per process for `CONNECTION_CACHE_SECONDS`
(every sync round, outbox message and Graph call asks for the connection): this process's own
writes (connect, reconnect, disconnect, reauth, refresh) replace or drop the cached entry at once,
another process's are seen within the bound (docs/DESIGN.md, issue 20). Flows (`oauthflows`, PartitionKey the URL-safe flow id) hold
only non-secret data and are single-use: `take` deletes with If-Match its ETag, so only one
callback wins. Every storage failure becomes `StorageError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.connect.model import Expected, Flow
from shared.core.connection import FULL_ACCESS, Account, Connection
from shared.core.errors import NotFound, StorageError
from shared.storage import tablestore
from shared.webhooks import events as webhook_events

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

CONNECTIONS_TABLE = tablestore.CONNECTIONS
FLOWS_TABLE = tablestore.OAUTH_FLOWS
# How stale another process's view of a connection may be (a disconnect, a reconnect, a refresh
# refused elsewhere). Short: a stale `connected` only costs a Graph or token call that fails on
# its own (the secret is gone, the refresh token revoked); a stale absence delays a new
# connection by this much in processes that have not made it.
CONNECTION_CACHE_SECONDS = 15.0
_CACHE_MAX = 4096  # buildings remembered per process (oldest dropped first)


def _storage_error(action: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    return StorageError(
        "Storage is unavailable", reason="storage",
        log_detail=f"{action}: {type(exc).__name__} {getattr(exc, 'status_code', '')}",
    )  # fmt: skip


class ConnectionRepository:
    """The `connections` table: one row per building. No secrets in here, ever."""

    def __init__(
        self,
        table: Callable[[], TableClient],
        emit: Callable[[str, list[Any]], object] = lambda building, events: 0,
        *,
        cache_seconds: float = CONNECTION_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._table = table
        # Outgoing webhooks (issue 16): connection.reauth_required|restored, handed over before
        # the row changes (shared/webhooks/events.py; DESIGN.md "Outgoing webhooks").
        self.emit = emit
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Connection | None]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._writes = 0  # bumped by every forget(): a read that overlapped a write is not kept

    def get(self, building_id: str) -> Connection | None:
        """The building's connection (cached up to `cache_seconds`; None: not connected)."""
        now = self._clock()
        with self._cache_lock:
            cached = self._cache.get(building_id)
            writes = self._writes
        if cached is not None and now < cached[0]:
            return cached[1]
        entity = self._get_entity(building_id)
        connection = None if entity is None else _connection_from(entity)
        with self._cache_lock:
            if writes == self._writes:
                self._cache[building_id] = (now + self._cache_seconds, connection)
                self._cache.move_to_end(building_id)
                while len(self._cache) > _CACHE_MAX:
                    self._cache.popitem(last=False)
        return connection

    def forget(self, building_id: str) -> None:
        """Drop the cached connection (this process changed the row, or may have)."""
        with self._cache_lock:
            self._writes += 1
            self._cache.pop(building_id, None)

    def _get_entity(self, building_id: str) -> Any:
        return tablestore.get_entity(self._table(), building_id, tablestore.CONNECTION_ROW)

    def save(self, connection: Connection) -> None:
        self.forget(connection.building_id)
        try:
            self._table().upsert_entity(_entity_of(connection), mode=_replace_mode())
        except Exception as exc:
            raise _storage_error("save connection", exc) from exc
        finally:
            self.forget(connection.building_id)  # a get() racing the write must not keep the old

    def delete(self, building_id: str) -> None:
        self.forget(building_id)
        try:
            self._table().delete_entity(building_id, tablestore.CONNECTION_ROW)
        except Exception as exc:
            raise _storage_error("delete connection", exc) from exc
        finally:
            self.forget(building_id)

    def mark_refreshed(self, building_id: str, connection_id: str, when: datetime) -> None:
        self._update_if_same(building_id, connection_id, {"lastRefreshAt": when})

    def mark_reauth(self, building_id: str, connection_id: str, reason: str) -> None:
        def announce(entity: Any) -> None:
            if entity.get("status") != "reauth_required":
                self.emit(building_id, [webhook_events.connection_status(
                    building=building_id, connection_id=connection_id, status="reauth_required",
                    reason=reason, table=CONNECTIONS_TABLE,
                )])  # fmt: skip

        self._update_if_same(
            building_id,
            connection_id,
            {"status": "reauth_required", "reason": reason},
            before=announce,
        )

    def _update_if_same(
        self,
        building_id: str,
        connection_id: str,
        changes: dict[str, Any],
        before: Callable[[Any], None] | None = None,
    ) -> None:
        """Merge `changes` only into the same connection (a reconnect may have replaced it)."""
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        self.forget(building_id)
        entity = self._get_entity(building_id)
        if entity is None or entity.get("connectionId") != connection_id:
            return
        if before is not None:
            before(entity)
        try:
            self._table().update_entity(
                {"PartitionKey": building_id, "RowKey": tablestore.CONNECTION_ROW, **changes},
                mode=UpdateMode.MERGE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            logger.info("connection of %s changed while updating; left as is", building_id)
        except Exception as exc:
            raise _storage_error("update connection", exc) from exc
        finally:
            self.forget(building_id)

    def all(self) -> Iterator[Connection]:
        try:
            for entity in self._table().query_entities(
                "RowKey eq @r", parameters={"r": tablestore.CONNECTION_ROW}
            ):
                yield _connection_from(entity)
        except Exception as exc:
            raise _storage_error("list connections", exc) from exc


class FlowRepository:
    """The `oauthflows` table: short-lived, single-use connect flows."""

    def __init__(self, table: Callable[[], TableClient]) -> None:
        self._table = table

    def add(self, flow: Flow) -> None:
        entity = {
            "PartitionKey": flow.flow_id,
            "RowKey": "flow",
            "building": flow.building_id,
            "caller": flow.caller,
            "mode": flow.mode,
            "returnUrl": flow.return_url,
            "expiresAt": flow.expires_at,
            "keyVersion": flow.key_version,
            "tenant": flow.tenant or "",
            "expectedOid": flow.expected.oid or "",
            "expectedTid": flow.expected.tid or "",
            "expectedAccount": flow.expected.account or "",
            "access": flow.access,
        }
        try:
            self._table().create_entity(entity)
        except Exception as exc:
            raise _storage_error("create flow", exc) from exc

    def take(self, flow_id: str) -> Flow | None:
        """Read and delete a flow; None if absent or if another callback deleted it first."""
        table = self._table()
        entity = tablestore.get_entity(table, flow_id, "flow")
        if entity is None:
            return None
        try:
            if not tablestore.delete_if_unchanged(table, entity):
                return None  # a concurrent callback won: this one is a replay
        except NotFound:
            return None
        return Flow(
            flow_id=flow_id,
            building_id=str(entity["building"]),
            caller=str(entity["caller"]),
            mode=str(entity["mode"]),
            return_url=str(entity["returnUrl"]),
            expires_at=tablestore.stored_time(entity["expiresAt"]),
            key_version=str(entity["keyVersion"]),
            expected=Expected(
                oid=str(entity.get("expectedOid") or "") or None,
                tid=str(entity.get("expectedTid") or "") or None,
                account=str(entity.get("expectedAccount") or "") or None,
            ),
            tenant=str(entity.get("tenant") or "") or None,
            access=str(entity.get("access") or FULL_ACCESS),
        )

    def delete_expired(self, now: datetime) -> int:
        """Flows nobody completed (Table Storage has no TTL). Run by the keep-alive timer."""
        removed = 0
        try:
            table = self._table()
            for entity in table.query_entities(
                "expiresAt lt @now", parameters={"now": now}, select=["PartitionKey", "RowKey"]
            ):  # a cross-partition scan, but a daily one over a table of minutes-old rows
                table.delete_entity(entity["PartitionKey"], entity["RowKey"])
                removed += 1
        except Exception as exc:
            raise _storage_error("sweep flows", exc) from exc
        return removed


def _replace_mode() -> Any:
    from azure.data.tables import UpdateMode

    return UpdateMode.REPLACE


def _entity_of(c: Connection) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": c.building_id,
        "RowKey": tablestore.CONNECTION_ROW,
        "connectionId": c.connection_id,
        "mode": c.mode,
        "status": c.status,
        "tenantId": c.tenant_id,
        "account": json.dumps(c.account.to_json()) if c.account else "",
        "scopes": " ".join(sorted(c.scopes)),
        "reason": c.reason or "",
        "connectedBy": c.connected_by or "",
        "secretName": c.secret_name,
        "access": c.access,
    }
    if c.connected_at:
        entity["connectedAt"] = c.connected_at
    if c.last_refresh_at:
        entity["lastRefreshAt"] = c.last_refresh_at
    return entity


def _connection_from(e: Mapping[str, Any]) -> Connection:
    account = Account.from_json(json.loads(str(e["account"]))) if e.get("account") else None
    return Connection(
        building_id=str(e["PartitionKey"]),
        connection_id=str(e.get("connectionId") or ""),
        mode=str(e.get("mode") or ""),
        status=str(e.get("status") or "error"),
        tenant_id=str(e.get("tenantId") or ""),
        account=account,
        scopes=frozenset(str(e.get("scopes") or "").split()),
        reason=str(e.get("reason") or "") or None,
        connected_at=tablestore.stored_time(e["connectedAt"]) if e.get("connectedAt") else None,
        last_refresh_at=tablestore.stored_time(e["lastRefreshAt"])
        if e.get("lastRefreshAt")
        else None,
        connected_by=str(e.get("connectedBy") or "") or None,
        secret_name=str(e.get("secretName") or ""),
        access=str(e.get("access") or FULL_ACCESS),
    )
