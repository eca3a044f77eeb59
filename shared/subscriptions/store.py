"""The `subscriptions` table: a record per Graph subscription and an index entity per mailbox.

| entity | PartitionKey | RowKey | holds |
|---|---|---|---|
| record | subscriptionId | `sub` | building, mailbox, connectionId, tenantId, clientState nonce, key check, createdAt — written once when Graph created it; what the webhook reads |
| index | `b|<building>` | mailbox (escaped) | subscriptionId, status, reason, expiresAt, connectionId, key check, times — one per (building, mailbox); what ensure / release / health / renewal read |

The index entity is also the lock that keeps two callers from creating two subscriptions for one
mailbox (shared/subscriptions/manage.py claims it with status `creating`). Statuses: `creating`,
`active`, `failed` (last create/renew failed: `reason` says why; the renewal timer retries),
`removed` (Graph removed it; being recreated). Every index write here is conditional on the
version read (ETag), so a concurrent change always wins over a stale one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from shared.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from shared.core.times import rfc3339_or_none
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource

TABLE = tablestore.SUBSCRIPTIONS
RECORD_ROW_KEY = "sub"
INDEX_PREFIX = "b"

SubscriptionStatus = Literal["active", "creating", "failed", "removed"]
_STATUSES = frozenset({"active", "creating", "failed", "removed"})


@dataclass(frozen=True)
class SubscriptionInfo:
    """What sync health shows about a mailbox's subscription (never the clientState).

    Only `status == "active"` means Graph notifies us; anything else means "poll meanwhile".
    """

    subscription_id: str | None  # None while being created or after a failed create
    building_id: str
    mailbox: str  # lower-cased
    expires_at: datetime | None
    status: SubscriptionStatus
    reason: str | None  # last error reason code (Graph code or ours); None when healthy
    connection_id: str

    def to_api(self) -> SubscriptionOut:
        return {
            "id": self.subscription_id,
            "expiresAt": tablestore.iso_utc(self.expires_at),
            "status": self.status,
            "reason": self.reason,
        }


class SubscriptionOut(TypedDict):
    id: str | None
    expiresAt: str | None
    status: SubscriptionStatus
    reason: str | None


@dataclass(frozen=True)
class Record:
    """A subscription as the webhook needs it (immutable once written)."""

    subscription_id: str
    building_id: str
    mailbox: str
    connection_id: str
    tenant_id: str
    nonce: str
    key_check: str
    # The Key Vault version of `client-state-key` the clientState was made with: the webhook
    # reads that very version, so a rotation never drops notifications of older subscriptions
    # (empty in records written before issue 20: found by `key_check` among cached versions).
    key_version: str = ""


# ---------------------------------------------------------------- times and keys


def aware(value: Any) -> datetime | None:
    """A stored time (a datetime from the table, or Graph's text) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return rfc3339_or_none(value)


def normalize_mailbox(mailbox: str) -> str:
    value = mailbox.strip().lower()
    if not value or len(value) > 320 or any(c in value for c in "/\\?#"):
        raise ValidationFailed([FieldError("mailbox", "is not a mailbox address or id")])
    return value


def index_partition(building_id: str) -> str:
    return tablestore.join_key(INDEX_PREFIX, building_id)


def mailbox_key(mailbox: str) -> str:
    return tablestore.escape_key(mailbox)


# ---------------------------------------------------------------- records


def record_entity(record: Record, now: datetime) -> Entity:
    """The stored form of a record (PartitionKey = subscription id)."""
    return {
        "PartitionKey": tablestore.escape_key(record.subscription_id),
        "RowKey": RECORD_ROW_KEY,
        "building": record.building_id,
        "mailbox": record.mailbox,
        "connectionId": record.connection_id,
        "tenantId": record.tenant_id,
        "nonce": record.nonce,
        "keyCheck": record.key_check,
        "keyVersion": record.key_version,
        "createdAt": now,
    }


def record_from(entity: Mapping[str, Any]) -> Record:
    return Record(
        subscription_id=tablestore.unescape_key(str(entity["PartitionKey"])),
        building_id=str(entity.get("building") or ""),
        mailbox=str(entity.get("mailbox") or ""),
        connection_id=str(entity.get("connectionId") or ""),
        tenant_id=str(entity.get("tenantId") or "").lower(),
        nonce=str(entity.get("nonce") or ""),
        key_check=str(entity.get("keyCheck") or ""),
        key_version=str(entity.get("keyVersion") or ""),
    )


def put_record(tables: TableSource, record: Record, now: datetime) -> None:
    tablestore.put_entity(tables(TABLE), record_entity(record, now))


def load_record(tables: TableSource, subscription_id: str) -> Record | None:
    entity = tablestore.get_entity(
        tables(TABLE), tablestore.escape_key(subscription_id), RECORD_ROW_KEY
    )
    return record_from(entity) if entity else None


def delete_record(tables: TableSource, subscription_id: str) -> None:
    """Delete a subscription's record (gone already is fine)."""
    _delete_quietly(tables, tablestore.escape_key(subscription_id), RECORD_ROW_KEY)


# ---------------------------------------------------------------- the index


def active_index(
    record: Record, expires: datetime | None, now: datetime, notification_url: str
) -> Entity:
    """The index entity's properties (without keys) once `record`'s subscription exists.
    `notification_url`: where Graph delivers (a webhook URL, or the EventHub: form; no secret),
    so a change of delivery or of the public URL is seen (shared/subscriptions/manage.py)."""
    return {
        "status": "active",
        "subscriptionId": record.subscription_id,
        "expiresAt": expires,
        "connectionId": record.connection_id,
        "keyCheck": record.key_check,
        "notificationUrl": notification_url,
        "reason": "",
        "createdAt": now,
        "updatedAt": now,
    }


def info_from(entity: Mapping[str, Any]) -> SubscriptionInfo:
    status = str(entity.get("status") or "failed")
    return SubscriptionInfo(
        subscription_id=str(entity.get("subscriptionId") or "") or None,
        building_id=tablestore.split_key(str(entity["PartitionKey"]))[1],
        mailbox=tablestore.unescape_key(str(entity["RowKey"])),
        expires_at=aware(entity.get("expiresAt")),
        status=status if status in _STATUSES else "failed",  # type: ignore[arg-type]
        reason=str(entity.get("reason") or "") or None,
        connection_id=str(entity.get("connectionId") or ""),
    )


def get_index(tables: TableSource, building_id: str, mailbox: str) -> Entity | None:
    return tablestore.get_entity(tables(TABLE), index_partition(building_id), mailbox_key(mailbox))


def building_index(tables: TableSource, building_id: str) -> list[Entity]:
    """Every index entity of a building (one partition query)."""
    return tablestore.query_all(
        tables(TABLE), "PartitionKey eq @p", {"p": index_partition(building_id)}
    )


def index_needing_work(tables: TableSource, due: datetime, current_check: str) -> list[Entity]:
    """The index entities of every building that are not active, expire by `due`, or were made
    with another key than `current_check` (one range scan of the `b|` partitions, filtered by
    the service, so a healthy estate costs one query)."""
    # (The space in "@check )" matters: the SDK would read "@check)" as a parameter "check)".)
    return tablestore.query_all(
        tables(TABLE),
        "PartitionKey ge @lo and PartitionKey lt @hi and "
        "(status ne 'active' or expiresAt le @due or keyCheck ne @check )",
        {
            "lo": INDEX_PREFIX + tablestore.KEY_SEPARATOR,
            "hi": INDEX_PREFIX + chr(ord(tablestore.KEY_SEPARATOR) + 1),
            "due": due,
            "check": current_check,
        },
    )


def write_index(
    tables: TableSource, current: Entity | None, new: Entity, building_id: str, mailbox: str
) -> Entity | None:
    """Create (if `current` is None) or replace exactly `current`; None if someone else won."""
    table = tables(TABLE)
    entity = {**new, "PartitionKey": index_partition(building_id), "RowKey": mailbox_key(mailbox)}
    try:
        with tablestore.storage_errors("write subscription index"):
            if current is None:
                meta = table.create_entity(entity)
            else:
                meta = table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=tablestore.etag_of(current),
                    match_condition=MatchConditions.IfNotModified,
                )
    except (Conflict, NotFound):
        return None
    written = _Entity(entity)
    written.metadata = {"etag": (meta or {}).get("etag")}
    return written


class _Entity(dict[str, Any]):
    """An entity dict with the `metadata` (ETag) the table client's entities carry."""

    metadata: dict[str, Any]


def plain(entity: Mapping[str, Any]) -> Entity:
    """An entity's properties without its keys."""
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}


def delete_index(tables: TableSource, entity: Mapping[str, Any]) -> None:
    """Delete an index entity whatever its version (gone already is fine)."""
    _delete_quietly(tables, str(entity["PartitionKey"]), str(entity["RowKey"]))


def delete_index_if_unchanged(tables: TableSource, entity: Mapping[str, Any]) -> None:
    """Delete exactly the version read (a concurrent claim keeps it); gone already is fine."""
    with contextlib.suppress(NotFound):
        tablestore.delete_if_unchanged(tables(TABLE), entity)


def mark(tables: TableSource, index: Entity, status: str, reason: str, now: datetime) -> None:
    """Record a status on the index entity if it did not change since it was read."""
    _merge_if_unchanged(tables, index, {"status": status, "reason": reason, "updatedAt": now})


def mark_renewed(tables: TableSource, index: Entity, expires: datetime, now: datetime) -> None:
    _merge_if_unchanged(tables, index, _renewed(expires, now))


def mark_renewed_all(
    tables: TableSource, renewed: list[tuple[Entity, datetime]], now: datetime
) -> None:
    """`mark_renewed` for many index entities of one building: entity group transactions of up
    to 100 (one partition), each entity If-Match the version read; a chunk that meets a
    concurrent change is redone one by one (which then skips just the changed entities)."""
    table = tables(TABLE)
    for start in range(0, len(renewed), tablestore.TRANSACTION_LIMIT):
        chunk = renewed[start : start + tablestore.TRANSACTION_LIMIT]
        operations: list[tablestore.Operation] = [
            (
                "update",
                {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"],
                 **_renewed(expires, now)},
                {"mode": UpdateMode.MERGE, "etag": tablestore.etag_of(entity),
                 "match_condition": MatchConditions.IfNotModified},
            )
            for entity, expires in chunk
        ]  # fmt: skip
        try:
            tablestore.submit_in_chunks(table, operations)
        except (Conflict, NotFound):
            for entity, expires in chunk:
                mark_renewed(tables, entity, expires, now)


def _renewed(expires: datetime, now: datetime) -> Entity:
    return {
        "status": "active",
        "reason": "",
        "expiresAt": expires,
        "renewedAt": now,
        "updatedAt": now,
    }


def _merge_if_unchanged(tables: TableSource, index: Entity, changes: Entity) -> None:
    try:
        with tablestore.storage_errors("update subscription index"):
            tables(TABLE).update_entity(
                {"PartitionKey": index["PartitionKey"], "RowKey": index["RowKey"], **changes},
                mode=UpdateMode.MERGE,
                etag=tablestore.etag_of(index),
                match_condition=MatchConditions.IfNotModified,
            )
    except (Conflict, NotFound):
        pass  # changed meanwhile: whoever changed it knows better


def _delete_quietly(tables: TableSource, partition_key: str, row_key: str) -> None:
    try:
        with tablestore.storage_errors("delete subscription entity"):
            tables(TABLE).delete_entity(partition_key, row_key)
    except NotFound:
        pass
