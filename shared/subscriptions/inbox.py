"""The webhook inbox (STYLE.md §8, GRAPH.md §6.6): Graph's notifications in, queue messages out.

`receive()` (the webhook's POST) and shared/subscriptions/eventhub.py (Event Hubs batches) parse
Graph's collections and hand the items to `accept()`, the one path after the carrier: it checks
every item's clientState in constant time against its subscription (records cached in-process,
`RecordCache`), drops and counts unknown subscriptions and bad clientStates, coalesces valid items
into one `SyncRequest` per dirty (building, mailbox), and enqueues them (across concurrent POSTs
in few messages: `shared.sync.queue.GroupSend`).
Lifecycle events (§6.7): `missed` → a sync request; `reauthorizationRequired` and
`subscriptionRemoved` → a `LifecycleWork` message on `LIFECYCLE_QUEUE`, handled off the HTTP path
by shared/subscriptions/manage.py's `handle_lifecycle`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from shared.core.errors import (
    BookingBridgeError,
    DependencyError,
    FieldError,
    SecretStoreError,
    ValidationFailed,
)
from shared.core.jsonbody import parse_json
from shared.storage.keyvault import VersionedKeys
from shared.subscriptions.clientstate import client_state_matches
from shared.subscriptions.store import Record
from shared.sync.queue import SyncRequest

logger = logging.getLogger(__name__)

LIFECYCLE_QUEUE = "graph-lifecycle"  # functions/graph_webhook.py binds the same literal
# Table reads (record cache misses, distinct ids) one webhook POST may cause: bounds what a forged
# POST full of random ids costs. Beyond it a POST that named known subscriptions is answered 503
# before anything is queued, so a genuine one (a cold cache and a huge batch) is retried by Graph
# and finds most records cached; one that named none is forged and dropped with a 202.
MAX_RECORD_READS = 200
MAX_NOTIFICATION_BYTES = 4 * 1024 * 1024  # far above Graph's batches of change notifications
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
_SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")


# ---------------------------------------------------------------- messages and checks


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


VALIDATION_TOKEN_MAX = 2048  # Graph's tokens are far shorter; more is not Graph


def validation_echo(token: str) -> str:
    """The body answering Graph's validation request: the decoded token as is (GRAPH.md §6.4).

    An implausible token (empty or huge) is a 400 naming `validationToken`, in problem+json like
    every other refusal: nothing worth echoing."""
    if not token or len(token) > VALIDATION_TOKEN_MAX:
        raise ValidationFailed(
            [FieldError("validationToken", f"must be 1–{VALIDATION_TOKEN_MAX} characters")]
        )
    return token


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def require_json(content_type: str | None) -> None:
    if not is_json(content_type):
        raise UnsupportedMediaType("Notifications must be application/json", reason="not_json")


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
    key_for: Callable[[Record], bytes | None],
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
        key = key_for(record)
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


# ---------------------------------------------------------------- receiving


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
    keys: VersionedKeys
    # A call's requests all at once (wiring gives a `shared.sync.queue.GroupSend`).
    enqueue: Callable[[Sequence[SyncRequest]], None]
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
    return accept(inbox, items, dropped, via="webhook")


def accept(
    inbox: Inbox,
    items: list[Item],
    dropped: Counter[str],
    *,
    via: str,
    max_reads: int | None = MAX_RECORD_READS,
) -> InboxResult:
    """The one path of parsed notification items, whatever carried them (the webhook's POST,
    a batch of Event Hubs events: shared/subscriptions/eventhub.py): check each against its
    subscription, coalesce, enqueue, log the counts. `via` names the carrier in the log line.

    `max_reads` bounds the table reads (record cache misses) of one call; None: no bound (a
    carrier only Graph can write to, where every id is genuine and the batch bounds the reads).
    """
    looked_up: dict[str, Record | None] = {}  # per distinct id: a repeated id costs nothing
    reads = 0

    def lookup(sub_id: str) -> Record | None:
        nonlocal reads
        if sub_id in looked_up:
            return looked_up[sub_id]
        record = inbox.records.peek(sub_id)
        if record is None and not inbox.records.known_unknown(sub_id):
            if max_reads is not None and reads >= max_reads:
                if any(looked_up.values()):
                    # Genuine traffic on a cold cache: Graph retries, and finds these cached.
                    raise DependencyError(
                        "Too many unknown subscriptions in one request; try again",
                        reason="too_many_unknown_subscriptions",
                        log_detail=f"more than {max_reads} record reads in one POST",
                    )
                # Nothing known so far: forged traffic. 202, so it never makes Graph back off.
                return None
            reads += 1
            record = inbox.records.get(sub_id)
        looked_up[sub_id] = record
        return record

    def key_for(record: Record) -> bytes | None:
        # By the version the record names (issue 20): any version Key Vault still has, cached
        # for good, so subscriptions made before a rotation keep being heard until the renewal
        # timer recreates them with the current key. Older records name only the fingerprint.
        if record.key_version:
            try:
                found = inbox.keys.version(record.key_version)
            except SecretStoreError as err:
                if err.transient:
                    raise  # 503: Graph retries the POST
                return None  # the version is gone or disabled: the grace period is over
            return found.key if found.check == record.key_check else None
        by_check = inbox.keys.by_check(record.key_check)
        return by_check.key if by_check else None

    sorted_ = sort_items(items, lookup, key_for, dropped)
    if sorted_.sync:
        inbox.enqueue(sorted_.sync)
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
        "dropped %s, via %s",
        result.received, result.accepted, result.sync_requests, buildings,
        result.lifecycle_work, result.dropped, via,
    )  # fmt: skip
    return result
