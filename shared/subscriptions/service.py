"""Deprecated: the old home of shared/subscriptions (removed at the end of issue 12).

The package is split along its seams: `inbox` (the webhook), `clientstate` (the clientState key
and HMAC), `store` (records and the per-mailbox index), `manage` (ensure, create, release,
lifecycle work, the disconnect hook) and `renewal` (the timer). What is left here keeps callers
that still import this module working until they move (every public name of the five).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from shared.storage import tablestore
from shared.subscriptions import manage
from shared.subscriptions.clientstate import *  # noqa: F403
from shared.subscriptions.clientstate import ClientStateKeys
from shared.subscriptions.inbox import *  # noqa: F403
from shared.subscriptions.inbox import LIFECYCLE_QUEUE, Inbox, LifecycleWork, RecordCache
from shared.subscriptions.manage import (  # noqa: F401
    CHANGE_TYPES,
    CLAIM_TTL,
    CLOCK_SKEW,
    FAILED_RETRY_AFTER,
    MAX_MINUTES,
    SubscriptionDeps,
    can_subscribe,
    delete_all_for_building,
    ensure_subscription,
    expiry_for,
    handle_lifecycle,
    release_subscription,
    subscription_for,
)
from shared.subscriptions.renewal import *  # noqa: F403
from shared.subscriptions.store import *  # noqa: F403
from shared.subscriptions.store import load_record
from shared.sync.queue import SyncRequest

if TYPE_CHECKING:
    from shared.connect.connections import Connection


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


def disconnect_hook(connection: Connection) -> None:
    """For shared.connect.connections' `on_disconnect`: delete the building's subscriptions."""
    manage.disconnect_hook(default_subscription_deps(), connection)
