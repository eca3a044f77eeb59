"""Graph change notifications: subscriptions per mailbox, the webhook inbox, lifecycle, renewal.

Subscriptions (GRAPH.md §6, ARCHITECTURE.md §5) are per mailbox: `/users/{mailbox}/events`,
`created,updated,deleted`, with a `lifecycleNotificationUrl` (it cannot be added later, §6.1) and a
per-subscription `clientState`. `ensure_subscription` creates one when a mailbox's first calendar
is mapped, `release_subscription` deletes it with the last. A delegated connection can only
subscribe to its own account's mailbox (§6.2); for any other mailbox `ensure_subscription` returns
None and the sync worker polls that calendar with delta instead.

Storage (table `subscriptions`, docs/DESIGN.md):

| entity | PartitionKey | RowKey | holds |
|---|---|---|---|
| record | subscriptionId | `sub` | building, mailbox, connectionId, tenantId, clientState nonce, key check, createdAt — written once when Graph created it; what the webhook reads |
| index | `b|<building>` | mailbox (escaped) | subscriptionId, status, reason, expiresAt, connectionId, key check, times — one per (building, mailbox); what ensure / release / health / renewal read |

The index entity is also the lock that keeps two callers from creating two subscriptions for one
mailbox: a creator first claims it (insert-if-absent, or replace under its ETag) with status
`creating`; a claim older than `CLAIM_TTL` is considered abandoned (crashed creator) and can be
taken over. Statuses: `creating`, `active`, `failed` (last create/renew failed: `reason` says why;
the renewal timer retries), `removed` (Graph removed it; being recreated).

clientState (DESIGN.md "derive them from Key Vault keys"): `b64url(HMAC-SHA256(client-state-key,
"clientState|" + nonce))`, 43 characters. The nonce is random per subscription and stored with the
record; the key is the Key Vault secret `client-state-key`, created on first use, cached in memory
(`ClientStateKeys`). Records also store a *key check* (an HMAC of a constant under the key) so the
webhook picks the right key and the renewal timer recreates subscriptions made with a key that is
no longer current (two instances racing to create the key on first use, or a rotation).

The webhook is a fast inbox (STYLE.md §8, GRAPH.md §6.6): `receive()` checks every item's
clientState in constant time against its subscription (records cached in-process), drops and
counts unknown subscriptions and bad clientStates, coalesces valid items into one `SyncRequest`
per dirty (building, mailbox), and enqueues. Lifecycle events (§6.7): `missed` → a sync request;
`reauthorizationRequired` and `subscriptionRemoved` → a `LifecycleWork` message on
`LIFECYCLE_QUEUE`, handled off the HTTP path by `handle_lifecycle` (renew-and-reauthorize with a
PATCH; recreate + resync). Renewal (`renew_due`): every subscription expiring within the margin is
PATCHed in `$batch` requests of 20 per connection; 404 → recreated and resynced; failures marked
with a reason code for sync health; connections waiting for re-authorisation are skipped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets as pysecrets
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict
from urllib.parse import quote

from shared.core.errors import (
    BookingBridgeError,
    Conflict,
    DependencyError,
    FieldError,
    Forbidden,
    GraphError,
    IdentityError,
    NotFound,
    ValidationFailed,
)
from shared.core.jsonbody import parse_json
from shared.graph.guard import MappedCalendar
from shared.storage import tablestore
from shared.storage.tablestore import Entity, TableSource
from shared.sync.queue import SyncRequest

if TYPE_CHECKING:
    from shared.connect.connections import Connection
    from shared.core.settings import Settings
    from shared.graph.client import BatchResult, GraphClient

logger = logging.getLogger(__name__)

TABLE = tablestore.SUBSCRIPTIONS
RECORD_ROW_KEY = "sub"
INDEX_PREFIX = "b"
LIFECYCLE_QUEUE = "graph-lifecycle"  # functions/graph_webhook.py binds the same literal
CLIENT_STATE_KEY_NAME = "client-state-key"

MAX_MINUTES = 4230  # Outlook events (GRAPH.md §6.3); Graph refuses more, it does not clamp
# Our clock and Graph's differ a little; asking for exactly the maximum by our clock could be
# "beyond 4230 minutes" by Graph's. Stay this far below it.
CLOCK_SKEW = timedelta(minutes=5)
CHANGE_TYPES = "created,updated,deleted"
CLAIM_TTL = timedelta(minutes=2)  # a create takes ≤ 2 × 10 s of validation plus retries
# Table reads (record cache misses, distinct ids) one webhook POST may cause: bounds what a forged
# POST full of random ids costs. Beyond it a POST that named known subscriptions is answered 503
# before anything is queued, so a genuine one (a cold cache and a huge batch) is retried by Graph
# and finds most records cached; one that named none is forged and dropped with a 202.
MAX_RECORD_READS = 200
MAX_NOTIFICATION_BYTES = 4 * 1024 * 1024  # far above Graph's batches of change notifications
FAILED_RETRY_AFTER = timedelta(minutes=5)  # a failed create is not retried sooner by ensure
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
# What MappedCalendar.from_entity reads from a resource entity.
MAPPING_FIELDS = (
    "PartitionKey", "RowKey", "calendarId", "mailbox", "graphMailbox", "calendarIsDefault",
    "tenantId", "paid",
)  # fmt: skip
_SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")

SubscriptionStatus = Literal["active", "creating", "failed", "removed"]
_STATUSES = frozenset({"active", "creating", "failed", "removed"})


# ---------------------------------------------------------------- domain


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


@dataclass(frozen=True)
class LifecycleWork:
    """A lifecycle event to act on outside the webhook's 3-second budget."""

    subscription_id: str
    event: str  # reauthorizationRequired | subscriptionRemoved

    def encode(self) -> str:
        return json.dumps({"subscriptionId": self.subscription_id, "event": self.event})

    @staticmethod
    def decode(text: str) -> LifecycleWork:
        try:
            data = json.loads(text)
            work = LifecycleWork(str(data["subscriptionId"]), str(data["event"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed([FieldError("message", "not lifecycle work")]) from exc
        if work.event not in LIFECYCLE_EVENTS or not _SUBSCRIPTION_ID.match(work.subscription_id):
            raise ValidationFailed([FieldError("message", "not lifecycle work")])
        return work


class UnsupportedMediaType(BookingBridgeError):
    """415: the webhook takes only `application/json` (validation requests aside)."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


# ---------------------------------------------------------------- pure helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def client_state(key: bytes, nonce: str) -> str:
    """The clientState of a subscription: 43 URL-safe characters (Graph allows ≤ 128)."""
    return b64url(hmac.new(key, f"clientState|{nonce}".encode(), hashlib.sha256).digest())


def key_check(key: bytes) -> str:
    """A short, non-secret fingerprint of a key (which key made a clientState)."""
    return b64url(hmac.new(key, b"key-check", hashlib.sha256).digest())[:16]


def client_state_matches(key: bytes, nonce: str, given: str) -> bool:
    """Constant-time comparison of a notification's clientState with the expected one."""
    return hmac.compare_digest(client_state(key, nonce).encode(), given.encode("utf-8", "replace"))


def subscription_minutes(configured: int) -> int:
    """The lifetime asked for: the setting, never more than Graph's 4230 minutes."""
    return max(1, min(configured, MAX_MINUTES))


def expiry_for(now: datetime, configured_minutes: int) -> datetime:
    """When a subscription created or renewed `now` should expire (capped, see CLOCK_SKEW)."""
    minutes = subscription_minutes(configured_minutes)
    wanted = now + timedelta(minutes=minutes)
    cap = now + timedelta(minutes=MAX_MINUTES) - CLOCK_SKEW
    return min(wanted, cap).astimezone(UTC).replace(microsecond=0)


def graph_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_graph_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Graph writes up to 7 fractional digits; Python reads 6.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def normalize_mailbox(mailbox: str) -> str:
    value = mailbox.strip().lower()
    if not value or len(value) > 320 or any(c in value for c in "/\\?#"):
        raise ValidationFailed([FieldError("mailbox", "is not a mailbox address or id")])
    return value


def can_subscribe(connection: Connection, mailbox: str) -> bool:
    """Can this connection subscribe to `mailbox`? Application: any (RBAC decides, Graph says
    403 if not). Delegated: only the signed-in account's own mailbox (GRAPH.md §6.2)."""
    if connection.status != "connected":
        return False
    if connection.mode == "application":
        return True
    account = connection.account
    if account is None:
        return False
    own = {v.lower() for v in (account.id, account.mail, account.user_principal_name) if v}
    return mailbox.lower() in own


def index_partition(building_id: str) -> str:
    return tablestore.join_key(INDEX_PREFIX, building_id)


def validation_echo(token: str) -> str | None:
    """The body answering Graph's validation request: the decoded token as is (GRAPH.md §6.4).

    None when the token is implausible (empty or huge): nothing worth echoing."""
    if not token or len(token) > 2048:
        return None
    return token


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


@dataclass(frozen=True)
class Item:
    """One checked-for-shape notification item."""

    subscription_id: str
    client_state: str
    tenant_id: str | None
    lifecycle_event: str | None  # None: a change notification


def parse_collection(body: bytes) -> tuple[list[Item], Counter[str]]:
    """Graph's `changeNotificationCollection` → well-formed items, and malformed ones counted.

    The body as a whole must be a JSON object with a `value` array (else 400: Graph never sends
    anything else); single bad items are dropped so one odd item cannot block the others.
    """
    data = parse_json(body, max_bytes=MAX_NOTIFICATION_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("value"), list):
        raise ValidationFailed([FieldError("value", "must be an array of notifications")])
    items: list[Item] = []
    dropped: Counter[str] = Counter()
    for raw in data["value"]:
        if not isinstance(raw, dict):
            dropped["malformed"] += 1
            continue
        sub_id = raw.get("subscriptionId")
        state = raw.get("clientState")
        event = raw.get("lifecycleEvent")
        if not isinstance(sub_id, str) or not _SUBSCRIPTION_ID.match(sub_id):
            dropped["malformed"] += 1
            continue
        if not isinstance(state, str) or not state:
            dropped["bad_client_state"] += 1
            continue
        if event is None and not isinstance(raw.get("changeType"), str):
            dropped["malformed"] += 1
            continue
        if event is not None and event not in LIFECYCLE_EVENTS:
            dropped["unknown_lifecycle_event"] += 1
            continue
        tenant = raw.get("tenantId")
        items.append(Item(sub_id, state, tenant if isinstance(tenant, str) else None, event))
    return items, dropped


@dataclass(frozen=True)
class Sorted:
    """What a webhook POST asks us to do, after every item was checked."""

    sync: tuple[SyncRequest, ...]
    lifecycle: tuple[LifecycleWork, ...]
    accepted: int
    dropped: Counter[str]


def sort_items(
    items: Iterable[Item],
    lookup: Callable[[str], Record | None],
    key_for: Callable[[str], bytes | None],
    dropped: Counter[str] | None = None,
) -> Sorted:
    """Check each item against its subscription and coalesce the valid ones.

    One SyncRequest per dirty (building, mailbox): `missed` wins over `notified` (both are a delta
    round; missed says notifications were lost). One LifecycleWork per (subscription, event).
    """
    dropped = Counter(dropped or {})
    dirty: dict[tuple[str, str], str] = {}
    work: dict[tuple[str, str], LifecycleWork] = {}
    accepted = 0
    for item in items:
        record = lookup(item.subscription_id)
        if record is None:
            dropped["unknown_subscription"] += 1
            continue
        key = key_for(record.key_check)
        if key is None:
            dropped["unknown_key"] += 1
            continue
        if not client_state_matches(key, record.nonce, item.client_state):
            dropped["bad_client_state"] += 1
            continue
        if item.tenant_id and record.tenant_id and item.tenant_id.lower() != record.tenant_id:
            dropped["tenant_mismatch"] += 1
            continue
        accepted += 1
        target = (record.building_id, record.mailbox)
        if item.lifecycle_event is None:
            dirty.setdefault(target, "notified")
        elif item.lifecycle_event == "missed":
            dirty[target] = "missed"
        else:
            pair = (record.subscription_id, item.lifecycle_event)
            work.setdefault(pair, LifecycleWork(*pair))
    sync = tuple(
        SyncRequest(building=b, mailbox=m, reason=reason)  # type: ignore[arg-type]
        for (b, m), reason in dirty.items()
    )
    return Sorted(sync, tuple(work.values()), accepted, dropped)


# ---------------------------------------------------------------- the clientState key


class KeyStore(Protocol):
    """The part of shared.storage.keyvault.SecretStore used here."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str, *, content_type: str = ...) -> str: ...


@dataclass(frozen=True)
class StateKey:
    check: str
    key: bytes


class ClientStateKeys:
    """`client-state-key` from Key Vault: created on first use, cached; keys looked up by check.

    A check we do not know makes us re-read the vault (at most every `reload_after` seconds), so a
    key created or rotated by another instance is picked up without a restart.
    """

    def __init__(
        self,
        store: KeyStore,
        *,
        reload_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._reload_after = reload_after
        self._clock = clock
        self._lock = threading.Lock()
        self._current: StateKey | None = None
        self._by_check: dict[str, StateKey] = {}
        self._loaded_at = float("-inf")

    def current(self) -> StateKey:
        if self._current is None:
            with self._lock:
                if self._current is None:
                    self._load(create=True)
        assert self._current is not None
        return self._current

    def by_check(self, check: str) -> bytes | None:
        found = self._by_check.get(check)
        if found is None and self._clock() - self._loaded_at >= self._reload_after:
            with self._lock:
                if check not in self._by_check:
                    self._load(create=False)
            found = self._by_check.get(check)
        return found.key if found else None

    def _load(self, *, create: bool) -> None:
        self._loaded_at = self._clock()
        value = self._store.get(CLIENT_STATE_KEY_NAME)
        if value is None:
            if not create:
                return
            # First use anywhere. A concurrent creator writes another version; we read back the
            # latest, and records made with a losing version are recreated by renewal (key check).
            self._store.set(
                CLIENT_STATE_KEY_NAME, b64url(pysecrets.token_bytes(32)), content_type="hmac-key"
            )
            value = self._store.get(CLIENT_STATE_KEY_NAME) or ""
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) < 16:
            from shared.core.errors import SecretStoreError

            raise SecretStoreError(
                "The clientState key is unusable", transient=False, reason="client_state_key"
            )
        key = StateKey(key_check(raw), raw)
        self._by_check[key.check] = key
        self._current = key


# ---------------------------------------------------------------- storage


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
        "createdAt": now,
    }


def active_index(record: Record, expires: datetime | None, now: datetime) -> Entity:
    """The index entity's properties (without keys) once `record`'s subscription exists."""
    return {
        "status": "active",
        "subscriptionId": record.subscription_id,
        "expiresAt": expires,
        "connectionId": record.connection_id,
        "keyCheck": record.key_check,
        "reason": "",
        "createdAt": now,
        "updatedAt": now,
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
    )


def load_record(tables: TableSource, subscription_id: str) -> Record | None:
    entity = tablestore.get_entity(
        tables(TABLE), tablestore.escape_key(subscription_id), RECORD_ROW_KEY
    )
    return record_from(entity) if entity else None


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_graph_time(value)


def info_from(entity: Mapping[str, Any]) -> SubscriptionInfo:
    status = str(entity.get("status") or "failed")
    return SubscriptionInfo(
        subscription_id=str(entity.get("subscriptionId") or "") or None,
        building_id=tablestore.split_key(str(entity["PartitionKey"]))[1],
        mailbox=tablestore.unescape_key(str(entity["RowKey"])),
        expires_at=_aware(entity.get("expiresAt")),
        status=status if status in _STATUSES else "failed",  # type: ignore[arg-type]
        reason=str(entity.get("reason") or "") or None,
        connection_id=str(entity.get("connectionId") or ""),
    )


def _get_index(tables: TableSource, building_id: str, mailbox: str) -> Entity | None:
    return tablestore.get_entity(
        tables(TABLE), index_partition(building_id), tablestore.escape_key(mailbox)
    )


def _write_index(
    tables: TableSource, current: Entity | None, new: Entity, building_id: str, mailbox: str
) -> Entity | None:
    """Create (if `current` is None) or replace exactly `current`; None if someone else won."""
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

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


def mailbox_key(mailbox: str) -> str:
    return tablestore.escape_key(mailbox)


def _delete_quietly(tables: TableSource, partition_key: str, row_key: str) -> None:
    try:
        with tablestore.storage_errors("delete subscription entity"):
            tables(TABLE).delete_entity(partition_key, row_key)
    except NotFound:
        pass


def mapped_calendars_in(
    tables: TableSource, building_id: str, mailbox: str
) -> list[MappedCalendar]:
    """The building's mapped calendars whose owner is `mailbox` (one partition query)."""
    entities = tablestore.query_all(
        tables(tablestore.RESOURCES),
        "PartitionKey eq @b",
        {"b": building_id},
        select=[*MAPPING_FIELDS],
    )
    found = (MappedCalendar.from_entity(e) for e in entities)
    return [c for c in found if c is not None and c.mailbox == mailbox]


def mailbox_in_use(tables: TableSource, building_id: str, mailbox: str) -> bool:
    """Does any mapped calendar of the building live in `mailbox`?"""
    return bool(mapped_calendars_in(tables, building_id, mailbox))


def watchable(calendars: Iterable[MappedCalendar], mailbox: str) -> MappedCalendar | None:
    """A mapped calendar reached through `mailbox` itself (not a sharee's copy): the calendar
    scope the subscription's creation is made for (the mapped-calendar guard checks it)."""
    return next((c for c in calendars if c.graph_mailbox == mailbox), None)


# ---------------------------------------------------------------- services


class ConnectionLookup(Protocol):
    def get(self, building_id: str) -> Connection | None: ...


@dataclass(frozen=True)
class SubscriptionDeps:
    """Collaborators; `default_subscription_deps()` builds the process's set."""

    settings: Settings
    tables: TableSource
    connections: ConnectionLookup
    graph: GraphClient
    keys: ClientStateKeys
    enqueue: Callable[[SyncRequest], None]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def notification_url(self) -> str:
        return f"{self.settings.public_base_url}/graph/notifications"

    @property
    def lifecycle_url(self) -> str:
        return f"{self.settings.public_base_url}/graph/lifecycle"


def _needs_new(
    index: Mapping[str, Any] | None, connection: Connection, current_check: str, now: datetime
) -> bool:
    """Is the stored subscription (if any) unusable, so that a new one must be created?"""
    if index is None:
        return True
    status = index.get("status")
    if status == "creating":
        claimed = _aware(index.get("claimedAt"))
        return claimed is None or claimed < now - CLAIM_TTL  # abandoned claim
    if status == "failed" and index.get("connectionId") == connection.connection_id:
        # Graph refused moments ago (permissions, throttling): callers that ensure on every
        # round must not hammer it; the renewal timer retries later.
        failed_at = _aware(index.get("updatedAt"))
        if failed_at is not None and failed_at > now - FAILED_RETRY_AFTER:
            return False
    if status != "active" or not index.get("subscriptionId"):
        return True
    expires = _aware(index.get("expiresAt"))
    return (
        expires is None
        or expires <= now  # Graph deleted it silently
        or index.get("connectionId") != connection.connection_id  # reconnected
        or index.get("keyCheck") != current_check  # made with a key we no longer use
    )


def ensure_subscription(
    deps: SubscriptionDeps, building_id: str, mailbox: str
) -> SubscriptionInfo | None:
    """Make sure `mailbox` of the building has a live subscription; idempotent and cheap when it
    has (the connection, one partition query of the building's resources, one point read; no
    Graph call). `mailbox` is a mapping's `mailbox` (whose calendar it is), any case.

    Returns None when the connection cannot subscribe to this mailbox (none, not `connected`,
    delegated and not the account's own mailbox, or no calendar of the building is mapped through
    the mailbox itself, e.g. only a sharee's copy): the caller polls it. Otherwise the subscription
    as stored: `active`, or `creating` (another caller is creating it right now), or `failed`
    with a reason (Graph refused; the renewal timer retries, the caller polls meanwhile).
    Raises only for storage / Key Vault failures (transient: retry the queue message).
    """
    mailbox = normalize_mailbox(mailbox)
    connection = deps.connections.get(building_id)
    if connection is None or not can_subscribe(connection, mailbox):
        return None
    calendar = watchable(mapped_calendars_in(deps.tables, building_id, mailbox), mailbox)
    if calendar is None:  # nothing mapped there, or only through a sharee's copy: poll
        return None
    check = deps.keys.current().check
    now = deps.now()
    index = _get_index(deps.tables, building_id, mailbox)
    if not _needs_new(index, connection, check, now):
        assert index is not None
        return info_from(index)
    claim = _write_index(
        deps.tables,
        index,
        {
            "status": "creating",
            "claimedAt": now,
            "connectionId": connection.connection_id,
            "subscriptionId": "",
            "reason": str(index.get("reason") or "") if index else "",
        },
        building_id,
        mailbox,
    )
    if claim is None:  # another caller claimed or changed it first: theirs is the answer
        latest = _get_index(deps.tables, building_id, mailbox)
        return info_from(latest) if latest else None
    old = str(index.get("subscriptionId") or "") if index else ""
    if old:
        _delete_graph_subscription(deps, connection, old)
    return _create(deps, connection, calendar, claim)


def _create(
    deps: SubscriptionDeps, connection: Connection, calendar: MappedCalendar, claim: Entity
) -> SubscriptionInfo:
    building_id, mailbox = calendar.building_id, calendar.mailbox
    key = deps.keys.current()
    nonce = pysecrets.token_urlsafe(24)
    now = deps.now()
    body = {
        "changeType": CHANGE_TYPES,
        "notificationUrl": deps.notification_url,
        "lifecycleNotificationUrl": deps.lifecycle_url,
        "resource": calendar.mailbox_path("/events"),
        "expirationDateTime": graph_time(expiry_for(now, deps.settings.subscription_minutes)),
        "clientState": client_state(key.key, nonce),
        "latestSupportedTlsVersion": "v1_2",
    }
    try:
        # Through the calendar's scope: the guard lets a subscription be made only on the
        # mailbox of a mapped calendar.
        created = (
            deps.graph.for_calendar(connection, calendar)
            .request(
                "POST",
                "/subscriptions",
                json_body=body,
                mailbox=mailbox,
                operation="subscription.create",
            )
            .json()
        )
    except (GraphError, IdentityError, Forbidden) as err:  # Forbidden: unmapped meanwhile
        reason = _reason(err)
        logger.warning(
            "subscription for building %s not created: %s", building_id, reason
        )  # the mailbox is an address: not logged
        failed = _write_index(
            deps.tables,
            claim,
            {**_plain(claim), "status": "failed", "reason": reason, "updatedAt": now},
            building_id,
            mailbox,
        )
        return info_from(failed or claim)
    sub_id = str(created.get("id") or "")
    expires = parse_graph_time(created.get("expirationDateTime")) or parse_graph_time(
        body["expirationDateTime"]
    )
    record = Record(
        sub_id, building_id, mailbox, connection.connection_id,
        connection.tenant_id.lower(), nonce, key.check,
    )  # fmt: skip
    tablestore.put_entity(deps.tables(TABLE), record_entity(record, now))
    done = _write_index(
        deps.tables,
        claim,
        active_index(record, expires, now),
        building_id,
        mailbox,
    )
    if done is None:
        # Released (or taken over) while Graph was creating it: undo ours, report theirs.
        _delete_graph_subscription(deps, connection, sub_id)
        latest = _get_index(deps.tables, building_id, mailbox)
        if latest is not None:
            return info_from(latest)
        return SubscriptionInfo(None, building_id, mailbox, None, "removed", "released", "")
    logger.info("subscription %s created for building %s", sub_id, building_id)
    return info_from(done)


def _plain(entity: Mapping[str, Any]) -> Entity:
    return {k: v for k, v in entity.items() if k not in ("PartitionKey", "RowKey")}


def _reason(err: BookingBridgeError) -> str:
    if isinstance(err, IdentityError):
        return "reauth_required" if err.reauth else (err.reason or "identity_error")
    if isinstance(err, GraphError):
        if err.failure.status == 429:
            return "throttled"
        return err.failure.code or f"http{err.failure.status}"
    return err.reason or "error"


def _delete_graph_subscription(deps: SubscriptionDeps, connection: Connection, sub_id: str) -> None:
    """DELETE the Graph subscription (404 is fine) and its record; best effort."""
    try:
        deps.graph.request(
            connection,
            "DELETE",
            f"/subscriptions/{quote(sub_id, safe='')}",
            operation="subscription.delete",
        )
    except GraphError as err:
        if err.failure.status != 404:
            logger.warning("deleting subscription %s failed: %s", sub_id, _reason(err))
    except IdentityError as err:
        logger.warning("deleting subscription %s failed: %s", sub_id, _reason(err))
    try:
        _delete_quietly(deps.tables, tablestore.escape_key(sub_id), RECORD_ROW_KEY)
    except BookingBridgeError as err:
        logger.warning("deleting the record of subscription %s failed: %s", sub_id, err.log_detail)


def release_subscription(deps: SubscriptionDeps, building_id: str, mailbox: str) -> bool:
    """Delete the mailbox's subscription if no mapped calendar of the building uses it any more.

    Call it after unmapping. True when a subscription (or a leftover index entry) was removed;
    False when the mailbox is still in use or had none. Graph failures are logged, not raised
    (an orphaned Graph subscription only notifies until it expires, ≤ 3 days, and its
    notifications are harmless: the worker finds no mapped calendar).
    """
    mailbox = normalize_mailbox(mailbox)
    if mailbox_in_use(deps.tables, building_id, mailbox):
        return False
    index = _get_index(deps.tables, building_id, mailbox)
    if index is None:
        return False
    sub_id = str(index.get("subscriptionId") or "")
    connection = deps.connections.get(building_id)
    if sub_id and connection is not None:
        _delete_graph_subscription(deps, connection, sub_id)
    elif sub_id:
        _delete_quietly(deps.tables, tablestore.escape_key(sub_id), RECORD_ROW_KEY)
    # Exactly the version read: an ensure that claimed it meanwhile (a new mapping) keeps it.
    with_etag = _get_index(deps.tables, building_id, mailbox)
    if with_etag is not None and with_etag.get("subscriptionId", "") == index.get(
        "subscriptionId", ""
    ):
        with contextlib.suppress(NotFound):  # gone meanwhile: as good as deleted
            tablestore.delete_if_unchanged(deps.tables(TABLE), with_etag)
    logger.info("subscription %s released for building %s", sub_id or "-", building_id)
    return True


def subscription_for(
    deps: SubscriptionDeps, building_id: str, mailbox: str
) -> SubscriptionInfo | None:
    """The mailbox's subscription for sync health (one point read), or None if it has none."""
    index = _get_index(deps.tables, building_id, normalize_mailbox(mailbox))
    return info_from(index) if index else None


def subscriptions_of(tables: TableSource, building_id: str) -> list[SubscriptionInfo]:
    """Every subscription of a building (one partition query), for sync health pages."""
    entities = tablestore.query_all(
        tables(TABLE), "PartitionKey eq @p", {"p": index_partition(building_id)}
    )
    return [info_from(e) for e in entities]


def delete_all_for_building(deps: SubscriptionDeps, building_id: str) -> int:
    """Delete every subscription of the building (disconnect); best effort, returns how many.

    Runs before the connection is deleted (shared.connect.connections' hook), so Graph can still be told.
    Graph failures are logged; the table entries go regardless.
    """
    table = deps.tables(TABLE)
    entities = tablestore.query_all(
        table, "PartitionKey eq @p", {"p": index_partition(building_id)}
    )
    connection = deps.connections.get(building_id)
    removed = 0
    for entity in entities:
        sub_id = str(entity.get("subscriptionId") or "")
        if sub_id and connection is not None:
            _delete_graph_subscription(deps, connection, sub_id)
        elif sub_id:
            _delete_quietly(deps.tables, tablestore.escape_key(sub_id), RECORD_ROW_KEY)
        _delete_quietly(deps.tables, str(entity["PartitionKey"]), str(entity["RowKey"]))
        removed += 1
    if removed:
        logger.info("deleted %d subscriptions of building %s", removed, building_id)
    return removed


def disconnect_hook(connection: Connection) -> None:
    """For shared.connect.connections' `on_disconnect`: delete the building's subscriptions."""
    delete_all_for_building(default_subscription_deps(), connection.building_id)


# ---------------------------------------------------------------- lifecycle work (queue)


def handle_lifecycle(deps: SubscriptionDeps, work: LifecycleWork) -> str:
    """Act on `reauthorizationRequired` / `subscriptionRemoved` (GRAPH.md §6.7); returns what
    was done (for the log). Stale work (the mailbox has another subscription now, or none) is
    ignored. Transient failures raise, so the queue retries."""
    record = load_record(deps.tables, work.subscription_id)
    if record is None:
        return "unknown"
    index = _get_index(deps.tables, record.building_id, record.mailbox)
    if index is None or index.get("subscriptionId") != work.subscription_id:
        return "stale"
    connection = deps.connections.get(record.building_id)
    if connection is None:
        return "disconnected"
    if connection.status != "connected":
        _mark(deps, index, "failed", "reauth_required")
        return "paused"
    if work.event == "reauthorizationRequired":
        # A renewing PATCH reauthorizes and renews in one call (GRAPH.md §6.3, §6.7).
        try:
            renewed = deps.graph.request(
                connection,
                "PATCH",
                f"/subscriptions/{quote(work.subscription_id, safe='')}",
                json_body={"expirationDateTime": graph_time(_expiry(deps))},
                operation="subscription.renew",
            ).json()
        except GraphError as err:
            if err.failure.status != 404:
                _mark(deps, index, "failed", _reason(err))
                if err.transient:
                    raise
                return "failed"
            return _recreate(deps, record.building_id, record.mailbox, index)
        except IdentityError as err:
            _mark(deps, index, "failed", _reason(err))
            return "failed"
        _mark_renewed(deps, index, parse_graph_time(renewed.get("expirationDateTime")))
        return "reauthorized"
    _mark(deps, index, "removed", "subscription_removed")
    latest = _get_index(deps.tables, record.building_id, record.mailbox)
    return _recreate(deps, record.building_id, record.mailbox, latest)


def _recreate(deps: SubscriptionDeps, building_id: str, mailbox: str, index: Entity | None) -> str:
    """A subscription is gone: recreate it if the mailbox is still mapped, and resync it
    (changes made while nobody was subscribed were never notified)."""
    if not mailbox_in_use(deps.tables, building_id, mailbox):
        release_subscription(deps, building_id, mailbox)
        return "released"
    if index is not None and index.get("status") == "active":
        _mark(deps, index, "removed", "subscription_removed")
    info = ensure_subscription(deps, building_id, mailbox)
    deps.enqueue(SyncRequest(building_id, mailbox, "resync"))
    return "recreated" if info is not None and info.status == "active" else "recreate_failed"


def _expiry(deps: SubscriptionDeps) -> datetime:
    return expiry_for(deps.now(), deps.settings.subscription_minutes)


def _mark(deps: SubscriptionDeps, index: Entity, status: str, reason: str) -> None:
    """Record a status on the index entity if it did not change since it was read."""
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    try:
        with tablestore.storage_errors("update subscription index"):
            deps.tables(TABLE).update_entity(
                {
                    "PartitionKey": index["PartitionKey"],
                    "RowKey": index["RowKey"],
                    "status": status,
                    "reason": reason,
                    "updatedAt": deps.now(),
                },
                mode=UpdateMode.MERGE,
                etag=tablestore.etag_of(index),
                match_condition=MatchConditions.IfNotModified,
            )
    except (Conflict, NotFound):
        pass  # changed meanwhile: whoever changed it knows better


def _mark_renewed(deps: SubscriptionDeps, index: Entity, expires: datetime | None) -> None:
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    try:
        with tablestore.storage_errors("update subscription index"):
            deps.tables(TABLE).update_entity(
                {
                    "PartitionKey": index["PartitionKey"],
                    "RowKey": index["RowKey"],
                    "status": "active",
                    "reason": "",
                    "expiresAt": expires or _expiry(deps),
                    "renewedAt": deps.now(),
                    "updatedAt": deps.now(),
                },
                mode=UpdateMode.MERGE,
                etag=tablestore.etag_of(index),
                match_condition=MatchConditions.IfNotModified,
            )
    except (Conflict, NotFound):
        pass


def _mark_renewed_all(
    deps: SubscriptionDeps, renewed: list[tuple[Entity, datetime | None]]
) -> None:
    """`_mark_renewed` for many index entities of one building: entity group transactions of up
    to 100 (one partition), each entity If-Match the version read; a chunk that meets a
    concurrent change is redone one by one (which then skips just the changed entities)."""
    from azure.core import MatchConditions
    from azure.data.tables import UpdateMode

    table = deps.tables(TABLE)
    now = deps.now()
    for start in range(0, len(renewed), tablestore.TRANSACTION_LIMIT):
        chunk = renewed[start : start + tablestore.TRANSACTION_LIMIT]
        operations: list[tablestore.Operation] = [
            (
                "update",
                {
                    "PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"],
                    "status": "active", "reason": "", "expiresAt": expires or _expiry(deps),
                    "renewedAt": now, "updatedAt": now,
                },
                {"mode": UpdateMode.MERGE, "etag": tablestore.etag_of(entity),
                 "match_condition": MatchConditions.IfNotModified},
            )
            for entity, expires in chunk
        ]  # fmt: skip
        try:
            tablestore.submit_in_chunks(table, operations)
        except (Conflict, NotFound):
            for entity, expires in chunk:
                _mark_renewed(deps, entity, expires)


# ---------------------------------------------------------------- renewal (timer)


@dataclass(frozen=True)
class RenewReport:
    scanned: int = 0
    renewed: int = 0
    recreated: int = 0
    released: int = 0
    failed: int = 0
    skipped: int = 0  # connection missing or waiting for re-authorisation
    batches: int = 0  # `$batch` requests sent

    def to_log(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def due_for_renewal(
    index: Mapping[str, Any], now: datetime, margin: timedelta
) -> Literal["renew", "recreate", "ok"]:
    """What the renewal timer does with one index entity (pure; connection checks aside)."""
    status = index.get("status")
    if status == "creating":
        claimed = _aware(index.get("claimedAt"))
        return "recreate" if claimed is None or claimed < now - CLAIM_TTL else "ok"
    if status != "active" or not index.get("subscriptionId"):
        return "recreate"
    expires = _aware(index.get("expiresAt"))
    if expires is None or expires <= now:
        return "recreate"
    return "renew" if expires <= now + margin else "ok"


def renew_due(deps: SubscriptionDeps) -> RenewReport:
    """Renew subscriptions expiring within the margin (`$batch` PATCHes, 20 per request, per
    connection), recreate missing or failed ones, release ones whose mailbox is no longer mapped.

    Reads the index entities of every building (one range scan of the `b|` partitions, filtered by
    the service to those needing work), so a healthy estate costs one query per run.
    """
    now = deps.now()
    margin = timedelta(minutes=deps.settings.renew_margin_minutes)
    current_check = deps.keys.current().check
    # (The space in "@check )" matters: the SDK would read "@check)" as a parameter "check)".)
    entities = tablestore.query_all(
        deps.tables(TABLE),
        "PartitionKey ge @lo and PartitionKey lt @hi and "
        "(status ne 'active' or expiresAt le @due or keyCheck ne @check )",
        {
            "lo": INDEX_PREFIX + tablestore.KEY_SEPARATOR,
            "hi": INDEX_PREFIX + chr(ord(tablestore.KEY_SEPARATOR) + 1),
            "due": now + margin,
            "check": current_check,
        },
    )
    by_building: dict[str, list[Entity]] = {}
    for entity in entities:
        by_building.setdefault(info_from(entity).building_id, []).append(entity)
    report = RenewReport(scanned=len(entities))
    for building_id, group in by_building.items():
        report = _renew_building(deps, building_id, group, now, margin, current_check, report)
    return report


def _renew_building(
    deps: SubscriptionDeps,
    building_id: str,
    group: list[Entity],
    now: datetime,
    margin: timedelta,
    current_check: str,
    report: RenewReport,
) -> RenewReport:
    from shared.graph.client import BATCH_LIMIT, BatchItem

    connection = deps.connections.get(building_id)
    if connection is None or connection.status != "connected":
        return replace(report, skipped=report.skipped + len(group))
    renew: list[Entity] = []
    recreate: list[Entity] = []
    for entity in group:
        action = due_for_renewal(entity, now, margin)
        if action == "renew" and (
            entity.get("connectionId") != connection.connection_id
            or entity.get("keyCheck") != current_check
        ):
            action = "recreate"
        if action == "renew":
            renew.append(entity)
        elif action == "recreate":
            recreate.append(entity)
    expiry = graph_time(expiry_for(now, deps.settings.subscription_minutes))
    items = [
        BatchItem(
            id=str(n),
            method="PATCH",
            url=f"/subscriptions/{quote(str(e['subscriptionId']), safe='')}",
            body={"expirationDateTime": expiry},
        )
        for n, e in enumerate(renew)
    ]
    renewed = failed = 0
    results: dict[str, BatchResult] = {}
    sent = 0
    if items:
        try:
            results = deps.graph.batch(connection, items)
            sent = -(-len(items) // BATCH_LIMIT)
            # Inner requests are authorised one by one: a token that expired between the batch's
            # own check and an item (or a clock disagreement) fails items with 401. One fresh
            # token and one more try for those, as the Graph layer does for single requests.
            expired = [i for i in items if _token_expired(results.get(i.id))]
            if expired:
                deps.graph.tokens.invalidate(connection)
                results.update(deps.graph.batch(connection, expired))
                sent += -(-len(expired) // BATCH_LIMIT)
        except (GraphError, IdentityError) as err:
            reason = _reason(err)
            logger.warning("renewing subscriptions of building %s failed: %s", building_id, reason)
            for entity in renew:
                _mark(deps, entity, "active", reason)  # still active until it expires
            return replace(
                report,
                failed=report.failed + len(renew),
                batches=report.batches + -(-len(items) // BATCH_LIMIT),
            )
    done: list[tuple[Entity, datetime | None]] = []
    for n, entity in enumerate(renew):
        result = results.get(str(n))
        if result is not None and result.ok:
            body = result.body if isinstance(result.body, dict) else {}
            done.append((entity, parse_graph_time(body.get("expirationDateTime"))))
            renewed += 1
        elif result is not None and result.status == 404:
            recreate.append(entity)  # gone (expired early, deleted by an admin): recreate
        else:
            reason = "missing_response" if result is None else _batch_reason(result)
            _mark(deps, entity, "active", reason)
            failed += 1
    _mark_renewed_all(deps, done)
    recreated = released = 0
    for entity in recreate:
        info = info_from(entity)
        outcome = _recreate(deps, building_id, info.mailbox, entity)
        if outcome == "recreated":
            recreated += 1
        elif outcome == "released":
            released += 1
        else:
            failed += 1
    return replace(
        report,
        renewed=report.renewed + renewed,
        recreated=report.recreated + recreated,
        released=report.released + released,
        failed=report.failed + failed,
        batches=report.batches + sent,
    )


def _token_expired(result: BatchResult | None) -> bool:
    return (
        result is not None
        and result.status == 401
        and result.failure().code == "InvalidAuthenticationToken"
    )


def _batch_reason(result: BatchResult) -> str:
    failure = result.failure()
    return "throttled" if failure.status == 429 else failure.code


# ---------------------------------------------------------------- the webhook inbox


class RecordCache:
    """Subscription records by id, cached in-process (records never change once written).

    Unknown ids are remembered only briefly (`unknown_ttl`): a subscription's first notification
    can race the write of its record (the sync after a subscribe catches up on what is dropped
    then), while forged traffic repeating ids must cost no table read per repeat.
    """

    def __init__(
        self,
        load: Callable[[str], Record | None],
        *,
        ttl: float = 600.0,
        unknown_ttl: float = 30.0,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl
        self._unknown_ttl = unknown_ttl
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, Record]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()

    def get(self, subscription_id: str) -> Record | None:
        now = self._clock()
        with self._lock:
            hit = self._items.get(subscription_id)
            if hit is not None and hit[0] > now:
                self._items.move_to_end(subscription_id)
                return hit[1]
        record = self._load(subscription_id)
        with self._lock:
            if record is not None:
                self._remember(self._items, subscription_id, (now + self._ttl, record))
                self._unknown.pop(subscription_id, None)
            else:
                self._remember(self._unknown, subscription_id, now + self._unknown_ttl)
        return record

    def _remember(self, items: OrderedDict[str, Any], key: str, value: Any) -> None:
        items[key] = value
        items.move_to_end(key)
        while len(items) > self._max:
            items.popitem(last=False)

    def peek(self, subscription_id: str) -> Record | None:
        """The cached record, without reading the table."""
        now = self._clock()
        with self._lock:
            hit = self._items.get(subscription_id)
            return hit[1] if hit is not None and hit[0] > now else None

    def known_unknown(self, subscription_id: str) -> bool:
        """Whether a read found no such record a moment ago (no table read now)."""
        now = self._clock()
        with self._lock:
            until = self._unknown.get(subscription_id)
            return until is not None and until > now

    def forget(self, subscription_id: str) -> None:
        with self._lock:
            self._items.pop(subscription_id, None)
            self._unknown.pop(subscription_id, None)


@dataclass(frozen=True)
class Inbox:
    """What the webhook needs: records, keys and the two queues."""

    records: RecordCache
    keys: ClientStateKeys
    enqueue: Callable[[SyncRequest], None]
    enqueue_lifecycle: Callable[[LifecycleWork], None]


@dataclass(frozen=True)
class InboxResult:
    received: int
    accepted: int
    sync_requests: int
    lifecycle_work: int
    dropped: dict[str, int]


def receive(inbox: Inbox, body: bytes) -> InboxResult:
    """Handle one POST of Graph's `changeNotificationCollection` (change or lifecycle items).

    400 (`ValidationFailed`) for a body that is not such a collection; items that fail a check
    are dropped and counted, never acted on; valid ones become queue messages. A queue failure
    raises (`StorageError`, 503) so Graph retries the POST; messages already sent then repeat,
    which the worker tolerates (duplicates are harmless, STYLE.md §8).
    """
    items, dropped = parse_collection(body)
    looked_up: dict[str, Record | None] = {}  # per distinct id: a repeated id costs nothing
    reads = 0

    def lookup(sub_id: str) -> Record | None:
        nonlocal reads
        if sub_id in looked_up:
            return looked_up[sub_id]
        record = inbox.records.peek(sub_id)
        if record is None and not inbox.records.known_unknown(sub_id):
            if reads >= MAX_RECORD_READS:
                if any(looked_up.values()):
                    # Genuine traffic on a cold cache: Graph retries, and finds these cached.
                    raise DependencyError(
                        "Too many unknown subscriptions in one request; try again",
                        reason="too_many_unknown_subscriptions",
                        log_detail=f"more than {MAX_RECORD_READS} record reads in one POST",
                    )
                # Nothing known so far: forged traffic. 202, so it never makes Graph back off.
                return None
            reads += 1
            record = inbox.records.get(sub_id)
        looked_up[sub_id] = record
        return record

    sorted_ = sort_items(items, lookup, inbox.keys.by_check, dropped)
    for request in sorted_.sync:
        inbox.enqueue(request)
    for work in sorted_.lifecycle:
        inbox.enqueue_lifecycle(work)
    result = InboxResult(
        received=len(items) + sum(dropped.values()),
        accepted=sorted_.accepted,
        sync_requests=len(sorted_.sync),
        lifecycle_work=len(sorted_.lifecycle),
        dropped=dict(sorted_.dropped),
    )
    buildings = sorted({r.building for r in sorted_.sync})
    # Counts, building ids and reason codes only: never a clientState, never an address.
    logger.log(
        logging.WARNING if result.dropped else logging.INFO,
        "graph notifications: %d received, %d accepted, %d sync requests %s, %d lifecycle, "
        "dropped %s",
        result.received, result.accepted, result.sync_requests, buildings,
        result.lifecycle_work, result.dropped,
    )  # fmt: skip
    return result


def require_json(content_type: str | None) -> None:
    if not is_json(content_type):
        raise UnsupportedMediaType("Notifications must be application/json")


# ---------------------------------------------------------------- wiring


def _send(queue_name: str, text: str) -> None:
    from shared.storage import clients

    with tablestore.storage_errors(f"enqueue on {queue_name}"):
        clients.queue(queue_name).send_message(text)


def enqueue_sync(request: SyncRequest) -> None:
    from shared.sync.queue import QUEUE

    _send(QUEUE, request.encode())


def enqueue_lifecycle(work: LifecycleWork) -> None:
    _send(LIFECYCLE_QUEUE, work.encode())


_lock = threading.Lock()
_keys: tuple[int, ClientStateKeys] | None = None
_inbox: tuple[int, Inbox] | None = None


def default_keys() -> ClientStateKeys:
    """The process's key cache on the process's Key Vault store (rebuilt when settings change)."""
    global _keys
    from shared.core.settings import get_settings
    from shared.storage.keyvault import default_store

    marker = id(get_settings())
    with _lock:
        if _keys is None or _keys[0] != marker:
            _keys = (marker, ClientStateKeys(default_store()))
        return _keys[1]


def default_inbox() -> Inbox:
    """The webhook's collaborators (kept across invocations: the record cache is the point)."""
    global _inbox
    from shared.core.settings import get_settings
    from shared.storage import clients

    marker = id(get_settings())
    keys = default_keys()
    with _lock:
        if _inbox is None or _inbox[0] != marker:
            records = RecordCache(lambda sub_id: load_record(clients.table, sub_id))
            _inbox = (marker, Inbox(records, keys, enqueue_sync, enqueue_lifecycle))
        return _inbox[1]


def default_subscription_deps() -> SubscriptionDeps:
    """The process's collaborators (Graph client, tables, queue, Key Vault key)."""
    from shared.connect.connections import default_deps
    from shared.core.settings import get_settings
    from shared.graph.client import default_graph
    from shared.storage import clients

    return SubscriptionDeps(
        settings=get_settings(),
        tables=clients.table,
        connections=default_deps().connections,
        graph=default_graph(),
        keys=default_keys(),
        enqueue=enqueue_sync,
    )
