"""Graph's change and lifecycle notifications through Azure Event Hubs (issue 17): a thin trigger
over shared/subscriptions/eventhub.py, which feeds the webhook's own checks and queues.

Used with `BB_NOTIFICATION_DELIVERY=eventhub`; otherwise infra/app/api.bicep disables the function
(`AzureWebJobs.graph_eventhub_notifications.Disabled`), so no listener starts without a hub. The
hub name and consumer group are literals (infra/ creates exactly these), not setting expressions:
every deployment would have to set those, Event Hubs or not, for the app to index.

Cardinality many: one invocation per batch of events (host.json `eventHubs.maxEventBatchSize`), so
the items of a whole batch are coalesced into one sync request per mailbox. Bad events are dropped
and counted in shared/; an exception here means a transient outage (queue, table, Key Vault), and
the retry policy runs the same batch again before the checkpoint moves past it.
"""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()
EVENT_HUB = "graph-notifications"  # infra/core/messaging/event-hubs.bicep creates it
CONSUMER_GROUP = "bookingbridge"  # ours alone: other readers of the hub keep their own offsets
CONNECTION = "BB_EVENTHUB"  # BB_EVENTHUB__fullyQualifiedNamespace (+ __credential, __clientId)


# Retries of one batch while a dependency is down; the batch is not checkpointed meanwhile, so a
# change is late, never lost. -1: no limit (the exceptions that reach here are all transient).
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:02",
    maximum_interval="00:05:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name=EVENT_HUB,
    connection=CONNECTION,
    consumer_group=CONSUMER_GROUP,
    cardinality="many",
)
def graph_eventhub_notifications(events: list[func.EventHubEvent]) -> None:
    # shared/ is imported when events arrive, not when the app is indexed (STYLE.md rule 1).
    from shared import wiring
    from shared.subscriptions.eventhub import receive_events

    receive_events(wiring.webhook_inbox(), (event.get_body() for event in events))
