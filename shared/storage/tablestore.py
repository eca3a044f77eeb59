"""Table Storage base every feature reuses: table names, key escaping, errors, paging, transactions.

Deliberately not an ORM. Repositories build plain entity dicts and read them back; this module only
holds what every one of them would otherwise repeat:

- the table names of docs/DESIGN.md ("Table Storage layout");
- reversible escaping of user-supplied values used in PartitionKey / RowKey (`escape_key`), and
  composite keys (`join_key`) whose separator can never occur inside an escaped part;
- `storage_errors()`: azure.core exceptions → our tree (`NotFound`, `Conflict`, `StorageError`);
- `replace_optimistic()`: read-modify-write under an ETag, so concurrent writers never lose updates;
- `query_page()`: one page of a query with an opaque continuation token for the API;
- `submit_in_chunks()`: entity group transactions of ≤ 100 operations of one partition.

Services take a `TableSource` (name → TableClient), normally `shared.storage.clients.table`, so tests can
point them anywhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, cast

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    FieldError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from shared.core.etags import entity_tag
from shared.core.jsonbody import parse_json
from shared.core.times import utc_z

logger = logging.getLogger(__name__)

# Table names (docs/DESIGN.md, "Table Storage layout").
CONNECTIONS = "connections"
OAUTH_FLOWS = "oauthflows"
RESOURCES = "resources"
CALENDAR_INDEX = "calendarindex"
COMPANIES = "companies"
USERS = "users"
SETTINGS = "settings"
BOOKINGS = "bookings"
BUSY = "busy"
SUBSCRIPTIONS = "subscriptions"
DELTA_STATE = "deltastate"
AUDIT = "audit"
BUILDINGS = "buildings"
CONNECTION_ROW = "current"  # the RowKey of a building's one connection in CONNECTIONS

Entity = dict[str, Any]
TableSource = Callable[[str], TableClient]
# ("create" | "upsert" | "update" | "delete", entity[, kwargs such as {"mode": UpdateMode.REPLACE}])
Operation = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]

TRANSACTION_LIMIT = 100  # operations per entity group transaction (service limit)
# The service's next-key markers (the x-ms-continuation-Next* headers: base64 of the key on
# Azurite, `1!<length>!<base64>` on Azure) of keys of at most 1 KiB (service limit): at most about
# 1,400 printable characters. Longer ones reach storage and come back as a 503.
_NEXT_KEY_MARKER = re.compile(r"[\x21-\x7e]{1,1400}")
_MAX_CONTINUATION = 4096  # our base64 of two markers and a little JSON
KEY_SEPARATOR = "|"

# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------

_ESCAPE = "~"
# Forbidden by the service: / \ # ? and control characters (U+0000-U+001F, U+007F-U+009F).
# Also escaped: % and ' (accepted by Azure but broken in point operations on Azure and Azurite,
# see Azure/Azurite#1377), the composite-key separator |, and the escape character itself.
# Lone surrogates are escaped too so that *any* Python str round-trips.
_UNSAFE = re.compile(r"[/\\#?%'|~\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_ESCAPED = re.compile(r"(?:~[0-9A-F]{2})+")
KEY_MAX_CHARS = 512  # the service limit is 1 KiB of UTF-16


def escape_key(value: str) -> str:
    """Make a user-supplied value safe as (part of) a PartitionKey or RowKey; reversible.

    Unsafe characters become `~XX` per UTF-8 byte (`ann#1@x.com` → `ann~231@x.com`); everything
    else, including non-ASCII letters, is kept so keys stay readable in Storage Explorer.
    """
    escaped = _UNSAFE.sub(
        lambda m: "".join(f"{_ESCAPE}{b:02X}" for b in m.group().encode("utf-8", "surrogatepass")),
        value,
    )
    if len(escaped) > KEY_MAX_CHARS:
        raise ValueError(f"key longer than {KEY_MAX_CHARS} characters once escaped")
    return escaped


def unescape_key(key: str) -> str:
    """Inverse of `escape_key`."""
    return _ESCAPED.sub(
        lambda m: bytes.fromhex(m.group().replace(_ESCAPE, "")).decode("utf-8", "surrogatepass"),
        key,
    )


def join_key(*parts: str) -> str:
    """A composite key (`b|20261201`); parts are escaped, so the separator is unambiguous."""
    return KEY_SEPARATOR.join(escape_key(p) for p in parts)


def split_key(key: str) -> list[str]:
    """Inverse of `join_key`."""
    return [unescape_key(p) for p in key.split(KEY_SEPARATOR)]


# ---------------------------------------------------------------------------------------------
# Property helpers
# ---------------------------------------------------------------------------------------------

_PROPERTY_MAX_CHARS = 32 * 1024  # a string property holds at most 64 KiB of UTF-16


def json_property(value: Any) -> str:
    """Store a list or object in one string property (Table Storage has no nested types)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if len(text) > _PROPERTY_MAX_CHARS:
        raise ValueError("value too large for one table property")
    return text


def from_json_property(value: Any, default: Any = None) -> Any:
    """Read a `json_property`; missing or unreadable → `default` (never fails a read path)."""
    if not isinstance(value, str) or not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        logger.warning("unreadable JSON property ignored")
        return default


def utc_now() -> datetime:
    return datetime.now(UTC)


def stored_time(value: Any) -> datetime:
    """A time read back from a table (a datetime, possibly the SDK's own subclass, or an ISO
    string) as a plain timezone-aware UTC datetime, so it compares equal to the caller's."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError("stored time unreadable")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=UTC,
    )


def iso_utc(value: Any) -> str | None:
    """A stored time (datetime, or an ISO string written by another writer) as RFC 3339 `Z`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return utc_z(value)


def with_etag(entity: Mapping[str, Any], written: Mapping[str, Any] | None) -> TableEntity:
    """`entity` as the SDK reads it back, carrying the ETag a write answered with (`written`:
    what create/update/upsert return), so `etag_of` works on what was just written too."""
    stored = TableEntity(entity)
    stored._metadata = {"etag": (written or {}).get("etag"), "timestamp": None}
    return stored


def etag_of(entity: Mapping[str, Any]) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    return str(etag) if etag else None


def version_tag(entity: Mapping[str, Any] | None) -> str | None:
    """The API's ETag of a stored entity (shared/core/etags.py); None when nothing is stored."""
    etag = etag_of(entity) if entity is not None else None
    return entity_tag(etag) if etag else None


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate azure.core exceptions raised inside into our error tree.

    404 → `NotFound`; 409 (exists) and 412 (ETag changed) → `Conflict` with reason `exists` /
    `modified`; throttling, timeouts, 5xx and connection failures → transient `StorageError`; any
    other refusal (400, 403: our bug or our permissions) → non-transient `StorageError`. `what`
    names the operation in logs (never keys: they may hold email addresses).
    """
    try:
        yield
    except ResourceNotFoundError as exc:
        raise NotFound(f"{what}: not found") from exc
    except ResourceExistsError as exc:
        raise Conflict(f"{what}: already exists", reason="exists") from exc
    except ResourceModifiedError as exc:
        raise Conflict(f"{what}: changed concurrently", reason="modified") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        code = getattr(exc, "error_code", None) or ""
        index = f" at operation {exc.index}" if isinstance(exc, TableTransactionError) else ""
        if status == 404:
            raise NotFound(f"{what}: not found") from exc
        if status in (409, 412):
            reason = "exists" if status == 409 else "modified"
            raise Conflict(f"{what}: {reason}", reason=reason) from exc
        raise StorageError(
            "Storage request failed",
            transient=status in _TRANSIENT,
            reason=code or None,
            log_detail=f"{what}: {status} {code}{index}",
        ) from exc
    except AzureError as exc:  # connection refused/reset, timeouts before any response
        raise StorageError(
            "Storage unreachable", transient=True, log_detail=f"{what}: {type(exc).__name__}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# Reads and writes
# ---------------------------------------------------------------------------------------------


def get_entity(table: TableClient, partition_key: str, row_key: str) -> Entity | None:
    """A point read; None when absent."""
    try:
        with storage_errors(f"read {table.table_name}"):
            return table.get_entity(partition_key, row_key)
    except NotFound:
        return None


def query_all(
    table: TableClient,
    query_filter: str,
    parameters: Mapping[str, Any],
    *,
    select: Sequence[str] | None = None,
) -> list[Entity]:
    """Every entity matching a filter (bounded queries only: one building's companies, ...)."""
    with storage_errors(f"query {table.table_name}"):
        return list(
            table.query_entities(
                query_filter, parameters=dict(parameters), select=list(select) if select else None
            )
        )


def query_first(
    table: TableClient,
    query_filter: str,
    parameters: Mapping[str, Any],
    *,
    select: Sequence[str] = ("RowKey",),
) -> Entity | None:
    """The first entity matching a filter, or None ("is there any ...?").

    Follows continuation tokens: a filtered scan may answer pages with no entities before a match.
    """
    with storage_errors(f"query {table.table_name}"):
        found = table.query_entities(
            query_filter, parameters=dict(parameters), select=list(select), results_per_page=1
        )
        return next(iter(found), None)


def put_entity(table: TableClient, entity: Mapping[str, Any]) -> bool:
    """Create or fully replace an entity; True when it was created (201 vs 200)."""
    with storage_errors(f"write {table.table_name}"):
        try:
            table.create_entity(entity)
            return True
        except ResourceExistsError:
            table.upsert_entity(entity, mode=UpdateMode.REPLACE)
            return False


def replace_optimistic(
    table: TableClient,
    partition_key: str,
    row_key: str,
    build: Callable[[Entity | None], Entity | None],
    *,
    attempts: int = 5,
) -> tuple[Entity | None, bool]:
    """Read-modify-write under the entity's ETag; retried when another writer got there first.

    `build(current)` gets the stored entity (or None) and returns the full new entity, or None to
    leave storage as it is. It may raise our errors (e.g. a state-dependent 422). Returns
    (the written or unchanged entity, with its new ETag (`etag_of`), created). A replace never drops properties `build` kept,
    which is how one feature's fields survive another feature's writes to the same entity.
    """
    what = f"write {table.table_name}"
    for _ in range(attempts):
        current = get_entity(table, partition_key, row_key)
        new = build(current)
        if new is None:
            return current, False
        new = {**new, "PartitionKey": partition_key, "RowKey": row_key}
        with storage_errors(what):
            try:
                if current is None:
                    return with_etag(new, table.create_entity(new)), True
                written = table.update_entity(
                    new,
                    mode=UpdateMode.REPLACE,
                    etag=etag_of(current),
                    match_condition=MatchConditions.IfNotModified,
                )
                return with_etag(new, written), False
            except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
                continue  # lost a race: read again and rebuild
    raise Conflict("The item is being changed concurrently; try again", reason="concurrent_update")


def delete_if_unchanged(table: TableClient, entity: Mapping[str, Any]) -> bool:
    """Delete exactly the version that was read; False if it changed (or vanished) meanwhile."""
    with storage_errors(f"delete {table.table_name}"):
        try:
            table.delete_entity(
                entity["PartitionKey"],
                entity["RowKey"],
                etag=etag_of(entity),
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except ResourceModifiedError:
            return False


# ---------------------------------------------------------------------------------------------
# Paging
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list[Entity]
    continuation_token: str | None  # opaque to API callers; None on the last page


def encode_continuation(token: Mapping[str, Any] | None) -> str | None:
    if not token:
        return None
    raw = json.dumps({"pk": token.get("PartitionKey"), "rk": token.get("RowKey")})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continuation(token: str | None, *, field: str = "continuationToken") -> dict[str, Any]:
    """The service's token back from our opaque form; 400 naming `field` if it is not ours."""
    if not token:
        return {}
    invalid = ValidationFailed([FieldError(field, "is not a valid continuation token")])
    if len(token) > _MAX_CONTINUATION:
        raise invalid
    try:
        raw = parse_json(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)), field=field)
    except (ValueError, binascii.Error, ValidationFailed) as exc:
        raise invalid from exc
    # The service's own tokens hold two table keys; anything else (an overlong or odd key would
    # reach storage and come back as a 503) is not a token we issued.
    if (
        not isinstance(raw, dict)
        or set(raw) != {"pk", "rk"}
        or not _continuation_key(raw["pk"])
        or not (raw["rk"] is None or _continuation_key(raw["rk"]))
    ):
        raise invalid
    return {"PartitionKey": raw["pk"], "RowKey": raw["rk"]}


def _continuation_key(value: Any) -> bool:
    return isinstance(value, str) and _NEXT_KEY_MARKER.fullmatch(value) is not None


# The rows of one partition whose RowKey starts with a prefix: [prefix, prefix with its last
# character bumped). Pass PREFIX_FILTER with prefix_parameters(partition, prefix).
PREFIX_FILTER = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"


def prefix_parameters(partition_key: str, prefix: str) -> dict[str, str]:
    return {"pk": partition_key, "lo": prefix, "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


def query_page(
    table: TableClient,
    query_filter: str,
    parameters: Mapping[str, Any],
    *,
    top: int,
    continuation_token: str | None = None,
    select: Sequence[str] | None = None,
) -> Page:
    """One page of at most `top` entities. The service may return fewer (even none) with a token
    when a scan hits its time or partition limits; callers just follow the token."""
    service_token = decode_continuation(continuation_token)
    with storage_errors(f"query {table.table_name}"):
        # The SDK's stubs say the token is a str; for tables it is {PartitionKey, RowKey}.
        pages: Any = table.query_entities(
            query_filter,
            parameters=dict(parameters),
            results_per_page=top,
            select=list(select) if select else None,
        ).by_page(continuation_token=cast(Any, service_token or None))
        items: list[Entity] = list(next(pages, []))
        next_token = pages.continuation_token
    return Page(items, encode_continuation(next_token))


# ---------------------------------------------------------------------------------------------
# Transactions
# ---------------------------------------------------------------------------------------------


def chunk_operations(operations: Sequence[Operation]) -> list[list[Operation]]:
    """Group operations by partition (keeping order within each) into chunks of ≤ 100."""
    chunks: list[list[Operation]] = []
    for _, group in groupby(
        sorted(operations, key=lambda op: str(op[1]["PartitionKey"])),
        key=lambda op: str(op[1]["PartitionKey"]),
    ):
        ops = list(group)
        chunks.extend(ops[i : i + TRANSACTION_LIMIT] for i in range(0, len(ops), TRANSACTION_LIMIT))
    return chunks


# A chunk of upserts whose connection broke (no answer: it may or may not have committed) is
# sent again: upserting the same entities twice leaves what once does. Azurite resets connections
# under concurrent transactions to one partition; networks do too.
_RESENDS = 2
_RESEND_PAUSE = 0.2  # seconds, times the attempt


def _connection_lost(err: BookingBridgeError) -> bool:
    cause = err.__cause__
    return isinstance(cause, AzureError) and not isinstance(cause, HttpResponseError)


def submit_in_chunks(
    table: TableClient, operations: Sequence[Operation], *, workers: int = 1
) -> int:
    """Commit operations as entity group transactions of ≤ 100 operations of one partition.

    Each chunk is atomic; the whole is not. The first failing chunk raises (mapped by
    `storage_errors`: e.g. `Conflict` when a `create` met an existing entity, `StorageError` when
    the service failed) and `log_detail` says how many chunks were committed before it. Chunks of
    idempotent operations (upsert, delete) can simply be resubmitted; a caller that needs
    all-or-nothing must fit in one chunk. With `workers` > 1 chunks run concurrently (the table
    client is thread-safe); then several chunks may have committed when one fails.
    Returns the number of operations committed.
    """
    chunks = chunk_operations(operations)
    what = f"transaction on {table.table_name}"

    def submit(numbered: tuple[int, list[Operation]]) -> int:
        number, chunk = numbered
        resendable = all(op[0] == "upsert" for op in chunk)
        for attempt in range(_RESENDS + 1):
            try:
                with storage_errors(what):
                    table.submit_transaction(chunk)
                return len(chunk)
            except BookingBridgeError as err:
                if resendable and attempt < _RESENDS and _connection_lost(err):
                    time.sleep(_RESEND_PAUSE * (attempt + 1))
                    continue
                err.log_detail = f"{err.log_detail} (chunk {number} of {len(chunks)})".strip()
                raise
        raise AssertionError("unreachable")  # the loop returns or raises

    if workers <= 1 or len(chunks) <= 1:
        return sum(map(submit, enumerate(chunks, 1)))  # lazy: stops at the first failure
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # map() re-raises the first failure in chunk order once the running chunks finish.
        return sum(pool.map(submit, enumerate(chunks, 1)))
