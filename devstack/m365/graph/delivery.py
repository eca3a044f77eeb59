"""Subscriptions' runtime: validation handshake, change and lifecycle notifications, retries.

Delivery model (documented in README "Graph emulator"):
- each change in a mailbox enqueues one changeNotification per matching subscription; pending
  notifications to one URL coalesce for `notificationBatchMs` and go out as one `value[]` POST;
- a delivery fails if the endpoint answers non-2xx or takes longer than 3 s (Graph's client
  timeout); failures are retried with exponential backoff. Graph retries "for up to 4 hours"; the
  emulator maps those 4 hours onto `retryBudgetSeconds` of real time (default 20 s) — or gives up
  when the emulator clock has moved 4 hours past the first attempt, whichever comes first;
- every attempt's latency is recorded per URL; > 2,900 ms counts as slow, as Graph counts it;
- delegated subscriptions get `reauthorizationRequired` shortly before the token they were created
  or reauthorized with expires; after it expired, delivery pauses (changes are lost, then `missed`
  is sent on reauthorization) until `POST /subscriptions/{id}/reauthorize` or a renewing PATCH;
- expired subscriptions disappear (judged on the emulator clock).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime as dt
import logging
import os
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from .config import GraphConfig
from .errors import GraphError
from .faults import Faults
from .stats import Stats
from .timezones import iso_utc

if TYPE_CHECKING:
    from .model import EventRec, Mailbox

log = logging.getLogger(__name__)

FOUR_HOURS = 4 * 3600.0
EVENT_HUB_PREFIX = "EventHub:"  # Graph's Event Hubs delivery (subscriptions.py checks the form)
EVENT_HUB_KEPT = 1000  # collections recorded per Event Hubs URL (the oldest go first)
# What Graph sends a hub when a subscription is created (Graph's Event Hubs delivery docs): a
# reachability test, every field "NA", which receivers ignore.
_EVENT_HUB_VALIDATION_ITEM: dict[str, Any] = {
    "subscriptionId": "NA",
    "subscriptionExpirationDateTime": "NA",
    "clientState": "NA",
    "changeType": "Validation: Testing client application reachability for subscription",
    "resource": "NA",
    "resourceData": {"@odata.type": "NA", "@odata.id": "NA", "id": "NA"},
}


def is_event_hub(url: str) -> bool:
    return url[: len(EVENT_HUB_PREFIX)].lower() == EVENT_HUB_PREFIX.lower()


@dataclass
class Subscription:
    id: str
    tenant_id: str
    mailbox_user_id: str
    resource: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    expiration: dt.datetime
    client_state: str | None
    application_id: str
    creator_id: str
    delegated: bool
    immutable_ids: bool
    token_expires: float  # emulator POSIX time; only meaningful for delegated subscriptions
    latest_tls: str = "v1_2"
    reauth_sent_for: float = 0.0
    paused: bool = False
    missed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(
                c for c in ("created", "updated", "deleted") if c in self.change_types
            ),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": iso_utc(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
            # Not in the v1.0 $metadata, but in every v1.0 create/get example of Graph's docs
            # (api-reference/v1.0/api/subscription-post-subscriptions.md): Graph sends it.
            "notificationContentType": "application/json",
        }


@dataclass
class Pending:
    items: list[dict[str, Any]] = field(default_factory=list)
    enqueued_at: list[float] = field(default_factory=list)
    scheduled: bool = False


class Host(Protocol):
    """What delivery needs of the Graph state. A protocol, not the state's class, because the
    state owns a Notifier: naming the class here would make the two modules import each other."""

    config: GraphConfig
    faults: Faults
    stats: Stats
    loop: asyncio.AbstractEventLoop | None
    change_hooks: list[Callable[[Mailbox, EventRec, str], None]]

    def now(self) -> dt.datetime: ...

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None: ...


class Notifier:
    def __init__(self, state: Host) -> None:
        self.state = state
        self.subscriptions: dict[str, Subscription] = {}
        self.pending: dict[str, Pending] = {}
        # What Graph would have sent to each Event Hubs URL, one collection per event (no Event
        # Hubs runs here): read and cleared through the control API (GET/DELETE /eventhub).
        self.event_hub_events: dict[str, collections.deque[dict[str, Any]]] = {}
        self._client: httpx.AsyncClient | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        state.change_hooks.append(self.on_change)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.state.loop = asyncio.get_running_loop()
        # Notification endpoints are the developer's local servers (http on loopback, or https
        # with a local certificate); the emulator does not judge their certificates.
        self._client = httpx.AsyncClient(verify=False, trust_env=False)  # noqa: S501
        self._ticker = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        if self._ticker:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._client:
            await self._client.aclose()

    def _spawn(self, coro: Any) -> None:
        loop = self.state.loop
        if loop is None:
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(verify=False, trust_env=False)  # noqa: S501
        return self._client

    # ------------------------------------------------------------------ handshake
    async def validate_endpoint(self, url: str) -> None:
        """Graph's validation handshake: POST ?validationToken=…, expect the exact echo.
        None for Event Hubs: Graph sends the hub a "validation" event instead, ignored by design."""
        if is_event_hub(url):
            self._record_event_hub(url, [_EVENT_HUB_VALIDATION_ITEM])
            return
        token = (
            "Validation: Testing client application reachability for subscription Request-Id: "
            + str(uuid.uuid4())
        )
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        target = f"{url}{sep}validationToken={urllib.parse.quote_plus(token)}"
        timeout = self.state.config.validation_timeout_seconds
        try:
            response = await self.client.post(
                target,
                content=b"",
                headers={"Content-Type": "text/plain; charset=utf-8", "Accept": "text/plain"},
                timeout=timeout,
            )
        except httpx.TimeoutException:
            raise GraphError(
                400, "InvalidRequest", "Subscription validation request timed out."
            ) from None
        except httpx.HTTPError:
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond with "
                "200 OK to validation request.",
            ) from None
        if response.status_code != 200:
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Notification endpoint must respond with "
                "200 OK to validation request.",
            )
        ctype = response.headers.get("content-type", "")
        if response.text != token or not ctype.lower().startswith("text/plain"):
            raise GraphError(
                400,
                "InvalidRequest",
                "Subscription validation request failed. Response must exactly match "
                "validationToken query parameter.",
            )

    # ------------------------------------------------------------------ changes
    def on_change(self, mb: Mailbox, rec: EventRec, change_type: str) -> None:
        now = self.state.now()
        for sub in list(self.subscriptions.values()):
            if (sub.tenant_id, sub.mailbox_user_id) != (mb.tenant_id, mb.user_id):
                continue
            if change_type not in sub.change_types or sub.expiration <= now:
                continue
            if sub.paused:
                sub.missed = True
                self.state.stats.notifications_dropped += 1
                continue
            event_id = rec.immutable_id if sub.immutable_ids else rec.rest_id
            resource = f"Users/{mb.user_id}/Events/{event_id}"
            item = {
                "id": base64.b64encode(os.urandom(12)).decode(),
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": iso_utc(sub.expiration),
                "changeType": change_type,
                "resource": resource,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{rec.change_key}"',
                    "id": event_id,
                },
                "clientState": sub.client_state,
                "tenantId": sub.tenant_id,
            }
            self.enqueue(sub.notification_url, item)

    def enqueue(self, url: str, item: dict[str, Any]) -> None:
        faults = self.state.faults
        stats = self.state.stats
        stats.notifications_enqueued += 1
        if faults.notifications.drop_rate and faults.rng.random() < faults.notifications.drop_rate:
            stats.notifications_dropped += 1
            return
        copies = 1
        if faults.notifications.duplicate_rate and (
            faults.rng.random() < faults.notifications.duplicate_rate
        ):
            copies = 2
            stats.notifications_duplicated += 1
        pending = self.pending.setdefault(url, Pending())
        for _ in range(copies):
            pending.items.append(item)
            pending.enqueued_at.append(time.monotonic())
        if not pending.scheduled:
            pending.scheduled = True
            delay = self.state.config.notification_batch_ms / 1000.0
            delay += faults.notifications.delay_ms / 1000.0
            self.state.call_later(delay, lambda: self._flush(url))

    def _flush(self, url: str) -> None:
        pending = self.pending.pop(url, None)
        if pending is None or not pending.items:
            return
        self._spawn(
            self._deliver(
                url, pending.items, pending.enqueued_at, 0, time.monotonic(), self.state.now()
            )
        )

    async def _deliver(
        self,
        url: str,
        items: list[dict[str, Any]],
        enqueued: list[float],
        attempt: int,
        first_real: float,
        first_clock: dt.datetime,
    ) -> None:
        cfg = self.state.config
        stats = self.state.stats
        if is_event_hub(url):
            # Sent as one event and accepted by the hub at once: nothing to retry.
            self._record_event_hub(url, items)
            stats.url(url).record(0.0, True, cfg.slow_ms)
            stats.notifications_delivered += len(items)
            return
        started = time.monotonic()
        ok = False
        try:
            response = await self.client.post(
                url, json={"value": items}, timeout=cfg.delivery_timeout_seconds
            )
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError:
            ok = False
        elapsed_ms = (time.monotonic() - started) * 1000.0
        stats.url(url).record(elapsed_ms, ok, cfg.slow_ms)
        if ok:
            stats.notifications_delivered += len(items)
            done = time.monotonic()
            stats.change_latency_ms.extend(round((done - t) * 1000.0, 1) for t in enqueued)
            if len(stats.change_latency_ms) > 5000:
                del stats.change_latency_ms[:1000]
            return
        real_spent = time.monotonic() - first_real
        clock_spent = (self.state.now() - first_clock).total_seconds()
        if real_spent >= cfg.retry_budget_seconds or clock_spent >= FOUR_HOURS:
            stats.notifications_dropped += len(items)
            for sub_id in {i["subscriptionId"] for i in items}:
                sub = self.subscriptions.get(sub_id)
                if sub is not None:
                    sub.missed = True
            log.info("dropped %d notifications after %d attempts", len(items), attempt + 1)
            return
        stats.notification_retries += 1
        delay = min(cfg.retry_first_delay_seconds * (2**attempt), 5.0)
        await asyncio.sleep(delay)
        await self._deliver(url, items, enqueued, attempt + 1, first_real, first_clock)

    def _record_event_hub(self, url: str, items: list[dict[str, Any]]) -> None:
        kept = self.event_hub_events.setdefault(url, collections.deque(maxlen=EVENT_HUB_KEPT))
        kept.append({"value": [dict(i) for i in items]})

    # ------------------------------------------------------------------ lifecycle
    def lifecycle(self, sub: Subscription, event: str) -> None:
        if not sub.lifecycle_url:
            return
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": iso_utc(sub.expiration),
            "tenantId": sub.tenant_id,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        self.state.stats.lifecycle_sent[event] += 1
        self._spawn(
            self._deliver(
                sub.lifecycle_url, [item], [time.monotonic()], 0, time.monotonic(), self.state.now()
            )
        )

    def remove(self, sub_id: str, *, notify: bool) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        if notify:
            self.lifecycle(sub, "subscriptionRemoved")
        return True

    def reauthorized(self, sub: Subscription, token_expires: float) -> None:
        sub.token_expires = token_expires
        sub.reauth_sent_for = 0.0
        if sub.paused:
            sub.paused = False
        if sub.missed:
            sub.missed = False
            self.lifecycle(sub, "missed")

    def on_grant_revoked(self, tenant_id: str, user_id: str, client_id: str | None) -> None:
        """Revoked sessions: delegated subscriptions of that user (and app) are removed."""
        for sub in list(self.subscriptions.values()):
            if (
                sub.delegated
                and sub.tenant_id == tenant_id
                and sub.creator_id == user_id
                and (client_id is None or sub.application_id == client_id.lower())
            ):
                self.remove(sub.id, notify=True)

    async def _tick(self) -> None:
        while True:
            try:
                self.check_times()
            except Exception:  # the ticker must survive a bad subscription
                log.exception("subscription ticker failed")
            await asyncio.sleep(0.25)

    def check_times(self) -> None:
        now = self.state.now()
        ts = now.timestamp()
        before = self.state.config.reauthorize_before_seconds
        for sub in list(self.subscriptions.values()):
            if sub.expiration <= now:
                self.subscriptions.pop(sub.id, None)  # expired: Graph deletes it silently
                continue
            if not sub.delegated:
                continue
            if ts >= sub.token_expires - before and sub.reauth_sent_for != sub.token_expires:
                sub.reauth_sent_for = sub.token_expires
                self.lifecycle(sub, "reauthorizationRequired")
            if ts >= sub.token_expires and not sub.paused:
                sub.paused = True
