"""Deprecated: the old home of shared/subscriptions (removed at the end of issue 12).

The package is split along its seams: `inbox` (the webhook), `clientstate` (the clientState key
and HMAC), `store` (records and the per-mailbox index), `manage` (ensure, create, release,
lifecycle work, the disconnect hook) and `renewal` (the timer). What is left here keeps callers
that still import this module working until they move (every public name of the five).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.storage.keyvault import VersionedKeys
from shared.subscriptions.clientstate import *  # noqa: F403
from shared.subscriptions.inbox import *  # noqa: F403
from shared.subscriptions.inbox import Inbox
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

if TYPE_CHECKING:
    from shared.core.connection import Connection


# ---------------------------------------------------------------- deprecated aliases


def default_keys() -> VersionedKeys:
    """Deprecated alias of `shared.wiring.client_state_keys`."""
    from shared import wiring

    return wiring.client_state_keys()


def default_inbox() -> Inbox:
    """Deprecated alias of `shared.wiring.webhook_inbox`."""
    from shared import wiring

    return wiring.webhook_inbox()


def default_subscription_deps() -> SubscriptionDeps:
    """Deprecated alias of `shared.wiring.subscription_deps`."""
    from shared import wiring

    return wiring.subscription_deps()


def disconnect_hook(connection: Connection) -> None:
    """Deprecated alias of `shared.wiring.delete_subscriptions_hook`."""
    from shared import wiring

    wiring.delete_subscriptions_hook(connection)
