"""The `webhooks` table and the signing secrets in Key Vault.

| entity | PartitionKey | RowKey | holds |
|---|---|---|---|
| endpoint | building | `ep|<webhook id>` | url, events, enabled, health, the Key Vault secret's name and versions |
| delivery | building | `dl|<webhook id>|<delivery id>` | event id and type, the exact body, status, attempts (status code, latency) |
| marker | building | `ev|<webhook id>|<event id>` | the delivery made for that event (de-duplication) |

Delivery ids start with the inverted creation time in milliseconds: one RowKey range query lists
a webhook's deliveries newest first. A delivery and its marker are inserted in one entity group
transaction, so an event handed over twice (its producer retried) makes one delivery per endpoint.

The signing secret is the Key Vault secret `whsec-<hash of building and webhook>`; the table holds
its name and the current and previous *versions* (a rotation writes a new version and keeps the
previous one valid until `previousUntil`), never a secret. `SigningSecrets` caches versions in
memory (a version never changes).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
from datetime import datetime
from typing import Any, Protocol

from azure.data.tables import TransactionOperation, UpdateMode

from shared.core.errors import Conflict, NotFound
from shared.storage import tablestore
from shared.storage.tablestore import Entity
from shared.webhooks.model import Delivery, Endpoint

TABLE = "webhooks"
_EP = "ep"
_DL = "dl"
_EV = "ev"
_TIME_SPAN = 10**13


class DeliveryExists(Exception):
    """The event already has its delivery to this endpoint."""


def new_webhook_id() -> str:
    return "wh" + secrets.token_hex(8)


def new_delivery_id(now: datetime) -> str:
    inverted = _TIME_SPAN - int(now.timestamp() * 1000)
    return f"{inverted:013d}{secrets.token_hex(4)}"


def secret_name(building_id: str, webhook_id: str) -> str:
    digest = hashlib.sha256(f"{building_id}|{webhook_id}".encode()).hexdigest()[:40]
    return f"whsec-{digest}"


def _opt_time(entity: Entity, name: str) -> datetime | None:
    value = entity.get(name)
    return tablestore.stored_time(value) if value else None


def _endpoint_from(entity: Entity) -> Endpoint:
    return Endpoint(
        building_id=str(entity["PartitionKey"]),
        id=tablestore.split_key(str(entity["RowKey"]))[1],
        url=str(entity["url"]),
        events=tuple(tablestore.from_json_property(entity.get("events"), ["*"])),
        enabled=bool(entity.get("enabled", True)),
        description=str(entity.get("description", "")),
        secret_name=str(entity["secretName"]),
        secret_version=str(entity["secretVersion"]),
        previous_version=entity.get("previousVersion") or None,
        previous_until=_opt_time(entity, "previousUntil"),
        created_at=tablestore.stored_time(entity["createdAt"]),
        updated_at=tablestore.stored_time(entity["updatedAt"]),
        failing_since=_opt_time(entity, "failingSince"),
        last_success_at=_opt_time(entity, "lastSuccessAt"),
        last_failure_at=_opt_time(entity, "lastFailureAt"),
        disabled_reason=entity.get("disabledReason") or None,
    )


def _endpoint_entity(endpoint: Endpoint) -> Entity:
    entity: Entity = {
        "PartitionKey": endpoint.building_id,
        "RowKey": tablestore.join_key(_EP, endpoint.id),
        "url": endpoint.url,
        "events": tablestore.json_property(list(endpoint.events)),
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "secretName": endpoint.secret_name,
        "secretVersion": endpoint.secret_version,
        "previousVersion": endpoint.previous_version or "",
        "createdAt": endpoint.created_at,
        "updatedAt": endpoint.updated_at,
        "disabledReason": endpoint.disabled_reason or "",
    }
    for name, value in (
        ("previousUntil", endpoint.previous_until),
        ("failingSince", endpoint.failing_since),
        ("lastSuccessAt", endpoint.last_success_at),
        ("lastFailureAt", endpoint.last_failure_at),
    ):
        if value is not None:
            entity[name] = value
    return entity


def _delivery_from(entity: Entity) -> Delivery:
    _, webhook_id, delivery_id = tablestore.split_key(str(entity["RowKey"]))
    return Delivery(
        building_id=str(entity["PartitionKey"]),
        webhook_id=webhook_id,
        id=delivery_id,
        event_id=str(entity["eventId"]),
        event_type=str(entity["type"]),
        payload=str(entity["payload"]),
        status=str(entity["status"]),
        created_at=tablestore.stored_time(entity["createdAt"]),
        attempts=tuple(tablestore.from_json_property(entity.get("attempts"), [])),
        next_attempt_at=_opt_time(entity, "nextAttemptAt"),
        commit=tablestore.from_json_property(entity.get("commit")) or None,
    )


def _delivery_entity(delivery: Delivery) -> Entity:
    entity: Entity = {
        "PartitionKey": delivery.building_id,
        "RowKey": tablestore.join_key(_DL, delivery.webhook_id, delivery.id),
        "eventId": delivery.event_id,
        "type": delivery.event_type,
        "payload": delivery.payload,
        "status": delivery.status,
        "createdAt": delivery.created_at,
        "attempts": tablestore.json_property(list(delivery.attempts)),
        "commit": tablestore.json_property(dict(delivery.commit)) if delivery.commit else "",
    }
    if delivery.next_attempt_at is not None:
        entity["nextAttemptAt"] = delivery.next_attempt_at
    return entity


class WebhookStore:
    """Endpoints and deliveries in the `webhooks` table (`table` is its TableClient)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    # -- endpoints
    def put_endpoint(self, endpoint: Endpoint) -> None:
        with tablestore.storage_errors("write webhook"):
            self.table.upsert_entity(_endpoint_entity(endpoint), mode=UpdateMode.REPLACE)

    def get_endpoint(self, building_id: str, webhook_id: str) -> Endpoint | None:
        entity = tablestore.get_entity(
            self.table, building_id, tablestore.join_key(_EP, webhook_id)
        )
        return _endpoint_from(entity) if entity else None

    def require_endpoint(self, building_id: str, webhook_id: str) -> Endpoint:
        found = self.get_endpoint(building_id, webhook_id)
        if found is None:
            raise NotFound(f"Webhook {webhook_id} not found")
        return found

    def endpoints(self, building_id: str) -> list[Endpoint]:
        low = tablestore.join_key(_EP, "")
        rows = tablestore.query_all(
            self.table,
            tablestore.PREFIX_FILTER,
            tablestore.prefix_parameters(building_id, low),
        )
        return [_endpoint_from(e) for e in rows]

    def delete_endpoint(self, building_id: str, webhook_id: str) -> None:
        """The endpoint, its deliveries and markers (best effort on the latter two)."""
        rows = [tablestore.join_key(_EP, webhook_id)]
        for prefix in (_DL, _EV):
            low = tablestore.join_key(prefix, webhook_id) + tablestore.KEY_SEPARATOR
            rows += [
                str(e["RowKey"])
                for e in tablestore.query_all(
                    self.table,
                    tablestore.PREFIX_FILTER,
                    tablestore.prefix_parameters(building_id, low),
                    select=["RowKey"],
                )
            ]
        for row in rows:
            with contextlib.suppress(NotFound), tablestore.storage_errors("delete webhook"):
                self.table.delete_entity(building_id, row)

    # -- deliveries
    def add_delivery(self, delivery: Delivery) -> None:
        """Insert a delivery with its event marker, atomically; DeliveryExists if the event
        already has one for this endpoint."""
        marker: Entity = {
            "PartitionKey": delivery.building_id,
            "RowKey": tablestore.join_key(_EV, delivery.webhook_id, delivery.event_id),
            "deliveryId": delivery.id,
        }
        operations = [
            (TransactionOperation.CREATE, marker),
            (TransactionOperation.CREATE, _delivery_entity(delivery)),
        ]
        try:
            with tablestore.storage_errors("write webhook delivery"):
                self.table.submit_transaction(operations)
        except Conflict as exc:
            raise DeliveryExists(delivery.event_id) from exc

    def put_delivery(self, delivery: Delivery) -> None:
        with tablestore.storage_errors("write webhook delivery"):
            self.table.upsert_entity(_delivery_entity(delivery), mode=UpdateMode.REPLACE)

    def get_delivery(self, building_id: str, webhook_id: str, delivery_id: str) -> Delivery | None:
        entity = tablestore.get_entity(
            self.table, building_id, tablestore.join_key(_DL, webhook_id, delivery_id)
        )
        return _delivery_from(entity) if entity else None

    def deliveries(
        self, building_id: str, webhook_id: str, top: int, continuation_token: str | None = None
    ) -> tuple[list[Delivery], str | None]:
        """One page of an endpoint's deliveries, newest first, and the next page's token."""
        low = tablestore.join_key(_DL, webhook_id) + tablestore.KEY_SEPARATOR
        page = tablestore.query_page(
            self.table,
            tablestore.PREFIX_FILTER,
            tablestore.prefix_parameters(building_id, low),
            top=top,
            continuation_token=continuation_token,
        )
        return [_delivery_from(e) for e in page.items], page.continuation_token


class Secrets(Protocol):
    def get_version(self, name: str, version: str | None = None) -> tuple[str, str] | None: ...

    def set(self, name: str, value: str, *, content_type: str = ...) -> str: ...

    def delete(self, name: str) -> None: ...


class SigningSecrets:
    """Webhook signing secrets in Key Vault, each version cached once read."""

    def __init__(self, store: Secrets) -> None:
        self._store = store
        self._cache: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def write(self, name: str, value: str) -> str:
        """A new version of `name`; its version id."""
        secret_id = self._store.set(name, value, content_type="webhook-signing-secret")
        version = secret_id.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            self._cache[(name, version)] = value
        return version

    def read(self, name: str, version: str) -> str:
        with self._lock:
            hit = self._cache.get((name, version))
        if hit is not None:
            return hit
        found = self._store.get_version(name, version)
        if found is None:
            raise NotFound(f"signing secret {name} version {version} is missing")
        with self._lock:
            self._cache[(name, version)] = found[1]
        return found[1]

    def delete(self, name: str) -> None:
        self._store.delete(name)
        with self._lock:
            for key in [k for k in self._cache if k[0] == name]:
                del self._cache[key]
