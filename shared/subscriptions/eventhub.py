"""Graph's notifications through Azure Event Hubs (issue 17; DESIGN.md "Event Hubs delivery").

With `BB_NOTIFICATION_DELIVERY=eventhub` subscriptions are created with `notification_url()` as
both their `notificationUrl` and `lifecycleNotificationUrl`: `EventHub:<Key Vault secret URL>
?tenantId=<tenant>`. Graph reads the hub's send connection string from that secret and sends each
collection it would have POSTed (change and lifecycle items alike, the same `{"value": [...]}`)
as one event; there is no validation handshake, only a "validation" event to ignore.

`receive_events()` takes a batch of event bodies (functions/graph_eventhub.py, cardinality many)
into the webhook's own path (shared/subscriptions/inbox.py `accept`): every item's clientState is
checked against its subscription, valid items are coalesced across the whole batch and queued. An
event that is not a collection is dropped and counted, never raised: one bad event must not stop
the batch (a raise makes the host retry the batch, and a bad event would never get better). Only
transient failures (a queue, table or Key Vault outage) raise, so the host's retry policy runs
the batch again before its checkpoint moves: duplicates are harmless, lost changes are not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from urllib.parse import quote

from shared.core.errors import PayloadTooLarge, ValidationFailed
from shared.core.settings import Settings
from shared.subscriptions.inbox import Inbox, InboxResult, Item, accept, parse_collection

# Graph's "validation" event, sent to the hub when a subscription is created (Graph docs,
# change-notifications-delivery-event-hubs): every field is "NA". Not a subscription we know.
VALIDATION_PLACEHOLDER = "NA"


def notification_url(settings: Settings) -> str:
    """Graph's `EventHub:` notification URL for the configured Key Vault secret and tenant."""
    assert settings.eventhub_secret_url and settings.eventhub_tenant  # load_settings checks
    return f"EventHub:{settings.eventhub_secret_url}?tenantId={quote(settings.eventhub_tenant)}"


def receive_events(inbox: Inbox, bodies: Iterable[bytes]) -> InboxResult:
    """One batch of Event Hubs events, each a Graph notification collection, through `accept`.

    No bound on record reads (`max_reads=None`): unlike the anonymous webhook, only holders of
    the hub's send key (Graph) can put events here, so every id is worth a read and the batch
    size (host.json `maxEventBatchSize`) bounds them.
    """
    items: list[Item] = []
    dropped: Counter[str] = Counter()
    for body in bodies:
        try:
            found, bad = parse_collection(body)
        except (ValidationFailed, PayloadTooLarge):
            dropped["malformed_event"] += 1
            continue
        dropped.update(bad)
        for item in found:
            if item.subscription_id == VALIDATION_PLACEHOLDER:
                continue  # Graph's reachability test of the hub: nothing to do, nothing wrong
            items.append(item)
    return accept(inbox, items, dropped, via="eventhub", max_reads=None)
