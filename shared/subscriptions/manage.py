"""Graph subscriptions per mailbox: ensure, create, release, recreate, lifecycle work, disconnect.

Subscriptions (GRAPH.md §6, ARCHITECTURE.md §5) are per mailbox: `/users/{mailbox}/events`,
`created,updated,deleted`, with a `lifecycleNotificationUrl` (it cannot be added later, §6.1) and a
per-subscription `clientState` (shared/subscriptions/clientstate.py). Both URLs are the webhook's
routes, or with `BB_NOTIFICATION_DELIVERY=eventhub` Graph's `EventHub:` form (shared/subscriptions/
eventhub.py); the clientState is set and checked either way. `ensure_subscription` creates
one when a mailbox's first calendar is mapped, `release_subscription` deletes it with the last. A
delegated connection can only subscribe to its own account's mailbox (§6.2); for any other mailbox
`ensure_subscription` returns None and the sync worker polls that calendar with delta instead.

A creator first claims the mailbox's index entity (shared/subscriptions/store.py; insert-if-absent,
or replace under its ETag) with status `creating`; a claim older than `CLAIM_TTL` is considered
abandoned (crashed creator) and can be taken over. Lifecycle work (§6.7, queued by the webhook
inbox) is handled by `handle_lifecycle`: renew-and-reauthorize with a PATCH, or recreate + resync.
Renewal on a timer is shared/subscriptions/renewal.py.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from shared.core.errors import BookingBridgeError, Forbidden, GraphError, IdentityError
from shared.core.times import rfc3339_or_none, utc_z
from shared.graph.guard import MappedCalendar
from shared.mapping.service import load_mapped
from shared.storage.keyvault import VersionedKeys
from shared.storage.tablestore import Entity, TableSource
from shared.subscriptions import eventhub, store
from shared.subscriptions.clientstate import client_state
from shared.subscriptions.inbox import LifecycleWork
from shared.subscriptions.store import (
    Record,
    SubscriptionInfo,
    aware,
    info_from,
    normalize_mailbox,
)
from shared.sync.queue import SyncRequest

if TYPE_CHECKING:
    from shared.core.connection import Connection
    from shared.core.settings import Settings
    from shared.graph.client import GraphClient

logger = logging.getLogger(__name__)

MAX_MINUTES = 4230  # Outlook events (GRAPH.md §6.3); Graph refuses more, it does not clamp
# Our clock and Graph's differ a little; asking for exactly the maximum by our clock could be
# "beyond 4230 minutes" by Graph's. Stay this far below it.
CLOCK_SKEW = timedelta(minutes=5)
CHANGE_TYPES = "created,updated,deleted"
CLAIM_TTL = timedelta(minutes=2)  # a create takes ≤ 2 × 10 s of validation plus retries
FAILED_RETRY_AFTER = timedelta(minutes=5)  # a failed create is not retried sooner by ensure


# ---------------------------------------------------------------- pure helpers


def subscription_minutes(configured: int) -> int:
    """The lifetime asked for: the setting, never more than Graph's 4230 minutes."""
    return max(1, min(configured, MAX_MINUTES))


def expiry_for(now: datetime, configured_minutes: int) -> datetime:
    """When a subscription created or renewed `now` should expire (capped, see CLOCK_SKEW)."""
    minutes = subscription_minutes(configured_minutes)
    wanted = now + timedelta(minutes=minutes)
    cap = now + timedelta(minutes=MAX_MINUTES) - CLOCK_SKEW
    return min(wanted, cap).astimezone(UTC).replace(microsecond=0)


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


def failure_reason(err: BookingBridgeError) -> str:
    """The reason code stored on the index entity (and shown by sync health) for a failure."""
    if isinstance(err, IdentityError):
        return "reauth_required" if err.reauth else (err.reason or "identity_error")
    if isinstance(err, GraphError):
        if err.failure.status == 429:
            return "throttled"
        return err.failure.code or f"http{err.failure.status}"
    return err.reason or "error"


def _needs_new(
    index: Mapping[str, Any] | None,
    connection: Connection,
    current_check: str,
    now: datetime,
    elsewhere: Callable[[Mapping[str, Any]], bool] = lambda index: False,
) -> bool:
    """Is the stored subscription (if any) unusable, so that a new one must be created?"""
    if index is None:
        return True
    status = index.get("status")
    if status == "creating":
        claimed = aware(index.get("claimedAt"))
        return claimed is None or claimed < now - CLAIM_TTL  # abandoned claim
    if status == "failed" and index.get("connectionId") == connection.connection_id:
        # Graph refused moments ago (permissions, throttling): callers that ensure on every
        # round must not hammer it; the renewal timer retries later.
        failed_at = aware(index.get("updatedAt"))
        if failed_at is not None and failed_at > now - FAILED_RETRY_AFTER:
            return False
    if status != "active" or not index.get("subscriptionId"):
        return True
    expires = aware(index.get("expiresAt"))
    return (
        expires is None
        or expires <= now  # Graph deleted it silently
        or index.get("connectionId") != connection.connection_id  # reconnected
        or index.get("keyCheck") != current_check  # made with a key we no longer use
        # Delivered to another URL: lifecycleNotificationUrl cannot be PATCHed, so a new one.
        or elsewhere(index)
    )


# ---------------------------------------------------------------- mapped calendars


def mapped_calendars_in(
    tables: TableSource, building_id: str, mailbox: str
) -> list[MappedCalendar]:
    """The building's mapped calendars whose owner is `mailbox` (one partition query)."""
    return [c for c in load_mapped(tables, building_id).values() if c.mailbox == mailbox]


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

    def forget(self, building_id: str) -> None: ...  # the next get() reads storage


@dataclass(frozen=True)
class SubscriptionDeps:
    """Collaborators; `shared.wiring.subscription_deps()` builds the process's set."""

    settings: Settings
    tables: TableSource
    connections: ConnectionLookup
    graph: GraphClient
    keys: VersionedKeys
    enqueue: Callable[[SyncRequest], None]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def notification_url(self) -> str:
        if self.settings.notification_delivery == "eventhub":
            return eventhub.notification_url(self.settings)
        return self.webhook_url

    @property
    def webhook_url(self) -> str:
        return f"{self.settings.public_base_url}/graph/notifications"

    def delivers_elsewhere(self, index: Mapping[str, Any]) -> bool:
        """Was this subscription made for another notification URL than today's (delivery
        switched between webhook and Event Hubs, or a new public URL)? Index entities written
        before the URL was stored (issue 17) were all made for the webhook."""
        made_for = str(index.get("notificationUrl") or self.webhook_url)
        return made_for != self.notification_url

    @property
    def lifecycle_url(self) -> str:
        # Through Event Hubs, lifecycle events share the hub (and the trigger) with changes: the
        # collection's items say which they are, as they do on the webhook.
        if self.settings.notification_delivery == "eventhub":
            return eventhub.notification_url(self.settings)
        return f"{self.settings.public_base_url}/graph/lifecycle"

    def expiry(self) -> datetime:
        """When a subscription created or renewed now should expire."""
        return expiry_for(self.now(), self.settings.subscription_minutes)


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
    index = store.get_index(deps.tables, building_id, mailbox)
    if not _needs_new(index, connection, check, now, deps.delivers_elsewhere):
        assert index is not None
        return info_from(index)
    claim = store.write_index(
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
        latest = store.get_index(deps.tables, building_id, mailbox)
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
        "expirationDateTime": utc_z(expiry_for(now, deps.settings.subscription_minutes)),
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
        if _disconnected_meanwhile(deps, connection):
            return _abandon(deps, claim, building_id, mailbox)
        reason = failure_reason(err)
        logger.warning(
            "subscription for building %s not created: %s", building_id, reason
        )  # the mailbox is an address: not logged
        failed = store.write_index(
            deps.tables,
            claim,
            {**store.plain(claim), "status": "failed", "reason": reason, "updatedAt": now},
            building_id,
            mailbox,
        )
        return info_from(failed or claim)
    sub_id = str(created.get("id") or "")
    if _disconnected_meanwhile(deps, connection):
        # The disconnect's sweep ran before our claim, so nobody else will delete this one.
        _delete_graph_subscription(deps, connection, sub_id)
        return _abandon(deps, claim, building_id, mailbox)
    expires = rfc3339_or_none(created.get("expirationDateTime")) or rfc3339_or_none(
        body["expirationDateTime"]
    )
    record = Record(
        sub_id, building_id, mailbox, connection.connection_id,
        connection.tenant_id.lower(), nonce, key.check, key.version,
    )  # fmt: skip
    store.put_record(deps.tables, record, now)
    done = store.write_index(
        deps.tables,
        claim,
        store.active_index(record, expires, now, deps.notification_url),
        building_id,
        mailbox,
    )
    if done is None:
        # Released (or taken over) while Graph was creating it: undo ours, report theirs.
        _delete_graph_subscription(deps, connection, sub_id)
        latest = store.get_index(deps.tables, building_id, mailbox)
        if latest is not None:
            return info_from(latest)
        return SubscriptionInfo(None, building_id, mailbox, None, "removed", "released", "")
    logger.info("subscription %s created for building %s", sub_id, building_id)
    return info_from(done)


def _disconnected_meanwhile(deps: SubscriptionDeps, connection: Connection) -> bool:
    """Was the building disconnected (or reconnected) while Graph was creating a subscription?
    A fresh read, not the per-process cache: a disconnect elsewhere must be seen here."""
    deps.connections.forget(connection.building_id)
    current = deps.connections.get(connection.building_id)
    return current is None or current.connection_id != connection.connection_id


def _abandon(
    deps: SubscriptionDeps, claim: Entity, building_id: str, mailbox: str
) -> SubscriptionInfo:
    """Drop our claim (exactly our version: a newer claim keeps it) and report nothing there."""
    store.delete_index_if_unchanged(deps.tables, claim)
    return SubscriptionInfo(None, building_id, mailbox, None, "removed", "disconnected", "")


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
            logger.warning("deleting subscription %s failed: %s", sub_id, failure_reason(err))
    except IdentityError as err:
        logger.warning("deleting subscription %s failed: %s", sub_id, failure_reason(err))
    try:
        store.delete_record(deps.tables, sub_id)
    except BookingBridgeError as err:
        logger.warning("deleting the record of subscription %s failed: %s", sub_id, err.log_detail)


def _forget(deps: SubscriptionDeps, connection: Connection | None, sub_id: str) -> None:
    """A subscription is no longer wanted: tell Graph if we still can, and drop its record."""
    if sub_id and connection is not None:
        _delete_graph_subscription(deps, connection, sub_id)
    elif sub_id:
        store.delete_record(deps.tables, sub_id)


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
    index = store.get_index(deps.tables, building_id, mailbox)
    if index is None:
        return False
    sub_id = str(index.get("subscriptionId") or "")
    _forget(deps, deps.connections.get(building_id), sub_id)
    # Exactly the version read: an ensure that claimed it meanwhile (a new mapping) keeps it.
    with_etag = store.get_index(deps.tables, building_id, mailbox)
    if with_etag is not None and with_etag.get("subscriptionId", "") == index.get(
        "subscriptionId", ""
    ):
        store.delete_index_if_unchanged(deps.tables, with_etag)
    logger.info("subscription %s released for building %s", sub_id or "-", building_id)
    return True


def subscription_for(
    deps: SubscriptionDeps, building_id: str, mailbox: str
) -> SubscriptionInfo | None:
    """The mailbox's subscription for sync health (one point read), or None if it has none."""
    index = store.get_index(deps.tables, building_id, normalize_mailbox(mailbox))
    return info_from(index) if index else None


def delete_all_for_building(deps: SubscriptionDeps, building_id: str) -> int:
    """Delete every subscription of the building (disconnect); best effort, returns how many.

    Runs before the connection is deleted (shared.connect.service's hook), so Graph can still
    be told. Graph failures are logged; the table entries go regardless.
    """
    entities = store.building_index(deps.tables, building_id)
    connection = deps.connections.get(building_id)
    for entity in entities:
        _forget(deps, connection, str(entity.get("subscriptionId") or ""))
        store.delete_index(deps.tables, entity)
    if entities:
        logger.info("deleted %d subscriptions of building %s", len(entities), building_id)
    return len(entities)


def disconnect_hook(deps: SubscriptionDeps, connection: Connection) -> None:
    """For shared.connect.service's `on_disconnect` (bound to its deps by shared/wiring.py):
    delete the building's subscriptions while the connection's credentials still work."""
    delete_all_for_building(deps, connection.building_id)


# ---------------------------------------------------------------- lifecycle work (queue)


def handle_lifecycle(deps: SubscriptionDeps, work: LifecycleWork) -> str:
    """Act on `reauthorizationRequired` / `subscriptionRemoved` (GRAPH.md §6.7); returns what
    was done (for the log). Stale work (the mailbox has another subscription now, or none) is
    ignored. Transient failures raise, so the queue retries."""
    record = store.load_record(deps.tables, work.subscription_id)
    if record is None:
        return "unknown"
    index = store.get_index(deps.tables, record.building_id, record.mailbox)
    if index is None or index.get("subscriptionId") != work.subscription_id:
        return "stale"
    connection = deps.connections.get(record.building_id)
    if connection is None:
        return "disconnected"
    if connection.status != "connected":
        store.mark(deps.tables, index, "failed", "reauth_required", deps.now())
        return "paused"
    if work.event == "reauthorizationRequired":
        # A renewing PATCH reauthorizes and renews in one call (GRAPH.md §6.3, §6.7).
        try:
            renewed = deps.graph.request(
                connection,
                "PATCH",
                f"/subscriptions/{quote(work.subscription_id, safe='')}",
                json_body={"expirationDateTime": utc_z(deps.expiry())},
                operation="subscription.renew",
            ).json()
        except GraphError as err:
            if err.failure.status != 404:
                store.mark(deps.tables, index, "failed", failure_reason(err), deps.now())
                if err.transient:
                    raise
                return "failed"
            return recreate(deps, record.building_id, record.mailbox, index)
        except IdentityError as err:
            store.mark(deps.tables, index, "failed", failure_reason(err), deps.now())
            return "failed"
        expires = rfc3339_or_none(renewed.get("expirationDateTime")) or deps.expiry()
        store.mark_renewed(deps.tables, index, expires, deps.now())
        return "reauthorized"
    store.mark(deps.tables, index, "removed", "subscription_removed", deps.now())
    latest = store.get_index(deps.tables, record.building_id, record.mailbox)
    return recreate(deps, record.building_id, record.mailbox, latest)


def recreate(deps: SubscriptionDeps, building_id: str, mailbox: str, index: Entity | None) -> str:
    """A subscription is gone: recreate it if the mailbox is still mapped, and resync it
    (changes made while nobody was subscribed were never notified)."""
    if not mailbox_in_use(deps.tables, building_id, mailbox):
        release_subscription(deps, building_id, mailbox)
        return "released"
    if index is not None and index.get("status") == "active":
        store.mark(deps.tables, index, "removed", "subscription_removed", deps.now())
    info = ensure_subscription(deps, building_id, mailbox)
    deps.enqueue(SyncRequest(building_id, mailbox, "resync"))
    return "recreated" if info is not None and info.status == "active" else "recreate_failed"
