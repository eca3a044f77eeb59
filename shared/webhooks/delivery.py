"""Delivering one event to one endpoint: the queue worker's attempt, retries, endpoint health.

A message on `webhook-deliveries` names a delivery (building, webhook, delivery id). The worker
loads it, and if it is still `pending`:

0. if the delivery was written before the change it reports (`commit`), waits (re-queued every
   second) until that change is seen committed, or discards it after COMMIT_WAIT_S;
1. checks the target again (shared/webhooks/ssrf.py) and connects to the checked address only;
2. signs the stored body with the endpoint's current secret (and the previous one during a
   rotation's grace period), `webhook-timestamp` = now, `webhook-id` = the event id (the same on
   every attempt);
3. POSTs it: 10 s timeout, no redirects, at most 64 KiB of the answer read;
4. records the attempt (status code, latency, error), then: 2xx → `delivered`; a timeout, a
   connection failure, 5xx or 429 → a new message visible after `backoff()` (Retry-After
   honoured), while the event is younger than the retry window (26 h); anything else (other 4xx,
   3xx: redirects are not followed) → `failed`, no retry;
5. keeps the endpoint's health: `failingSince` from the first failure after a success; an endpoint
   failing for `disable_after_s` (3 days) is disabled (`disabledReason: failing`).

At least once: a crash after the POST and before the record repeats the attempt, with the same
`webhook-id`, which is what receivers de-duplicate on.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx

from shared.core.errors import FieldError, ValidationFailed
from shared.webhooks import signing
from shared.webhooks.deps import RESPONSE_MAX_BYTES, TIMEOUT_S, WebhookDeps
from shared.webhooks.model import COMMIT_WAIT_S, MAX_ATTEMPTS_KEPT, Attempt, Delivery, Endpoint
from shared.webhooks.ssrf import UnsafeUrl, check_url

logger = logging.getLogger(__name__)
QUEUE = "webhook-deliveries"
RETRY_AFTER_MAX_S = 86400


@dataclass(frozen=True)
class DeliveryMessage:
    building_id: str
    webhook_id: str
    delivery_id: str

    def encode(self) -> str:
        return json.dumps(
            {"b": self.building_id, "w": self.webhook_id, "d": self.delivery_id},
            separators=(",", ":"),
        )

    @staticmethod
    def decode(text: str) -> DeliveryMessage:
        try:
            data = json.loads(text)
            return DeliveryMessage(str(data["b"]), str(data["w"]), str(data["d"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed([FieldError("message", "not a webhook delivery")]) from exc


def backoff(attempt: int, base_s: float, max_s: float, rand: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1 = the first retry): base · 2^(attempt-1), capped
    at max, with "equal jitter" (between half and all of it) so failing endpoints' retries spread."""
    ceiling = min(max_s, base_s * 2 ** min(attempt - 1, 40))
    r = rand or random
    return float(ceiling / 2 + r.uniform(0, ceiling / 2))


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped at a day; None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max((when - now).total_seconds(), 0.0), RETRY_AFTER_MAX_S)


def retryable(status: int | None, error: str | None) -> bool:
    if status is None:
        return error in ("timeout", "connection_error")
    return status == 429 or status >= 500


def _signing_secrets(deps: WebhookDeps, endpoint: Endpoint, now: datetime) -> list[str]:
    found = [deps.secrets.read(endpoint.secret_name, endpoint.secret_version)]
    if endpoint.previous_version and endpoint.previous_until and now < endpoint.previous_until:
        found.append(deps.secrets.read(endpoint.secret_name, endpoint.previous_version))
    return found


def _post(
    deps: WebhookDeps, endpoint: Endpoint, delivery: Delivery, now: datetime
) -> tuple[Attempt, str | None]:
    """One attempt; (the attempt, Retry-After header)."""
    started = time.perf_counter()

    def done(status: int | None, error: str | None) -> Attempt:
        latency = int((time.perf_counter() - started) * 1000)
        return Attempt(now, status, latency, error)

    try:
        target = check_url(
            endpoint.url, allow_loopback=deps.config.allow_loopback, resolve=deps.resolve
        )
    except UnsafeUrl as unsafe:
        # A name that does not resolve now may later (retried); one that resolves to a refused
        # address is never contacted (not retried).
        return done(None, "connection_error" if unsafe.unresolved else "unsafe_url"), None
    body = delivery.payload.encode()
    headers = {
        "content-type": "application/json",
        **signing.headers(
            _signing_secrets(deps, endpoint, now), delivery.event_id, int(now.timestamp()), body
        ),
    }
    # Connect to the address just checked (no second lookup an attacker could re-point), with
    # the name as Host and as TLS server name (certificate checked against it).
    address = target.addresses[0]
    url = httpx.URL(target.url).copy_with(host=address)
    default_port = 443 if target.scheme == "https" else 80
    headers["host"] = target.host if target.port == default_port else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with deps.http.stream(
            "POST",
            url,
            content=body,
            headers=headers,
            timeout=TIMEOUT_S,
            follow_redirects=False,
            extensions=extensions,
        ) as response:
            read = 0
            for chunk in response.iter_bytes():
                read += len(chunk)
                if read >= RESPONSE_MAX_BYTES:
                    break
            error = "redirect_refused" if 300 <= response.status_code < 400 else None
            return done(response.status_code, error), response.headers.get("retry-after")
    except httpx.TimeoutException:
        return done(None, "timeout"), None
    except httpx.HTTPError:
        return done(None, "connection_error"), None


def deliver(deps: WebhookDeps, message: DeliveryMessage) -> str:
    """Process one delivery message; what happened, for the log."""
    store = deps.store
    endpoint = store.get_endpoint(message.building_id, message.webhook_id)
    delivery = store.get_delivery(message.building_id, message.webhook_id, message.delivery_id)
    if endpoint is None or delivery is None:
        return "gone"
    if delivery.status != "pending":
        return f"already {delivery.status}"
    now = deps.clock()
    if delivery.commit is not None:
        # Written before the change it reports: send only once that change is committed.
        if not deps.committed(delivery.commit):
            if (now - delivery.created_at).total_seconds() < COMMIT_WAIT_S:
                deps.enqueue(message.encode(), 1)
                return "waiting for its change to commit"
            store.put_delivery(replace(delivery, status="discarded", commit=None))
            return "discarded: its change never committed"
        delivery = replace(delivery, commit=None)
    if not endpoint.enabled:
        store.put_delivery(replace(delivery, status="failed", next_attempt_at=None,
                                   attempts=_kept(delivery, Attempt(now, None, 0, "disabled"))))  # fmt: skip
        return "endpoint disabled"
    attempt, retry_after = _post(deps, endpoint, delivery, now)
    attempts = _kept(delivery, attempt)
    ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
    if ok:
        store.put_delivery(replace(delivery, status="delivered", attempts=attempts,
                                   next_attempt_at=None))  # fmt: skip
        _health(deps, endpoint, now, success=True)
        return f"delivered ({attempt.status_code}, {attempt.latency_ms} ms)"
    outcome = f"{attempt.status_code or attempt.error}"
    age = (now - delivery.created_at).total_seconds()
    if retryable(attempt.status_code, attempt.error) and age < deps.config.retry_window_s:
        delay = backoff(len(attempts), deps.config.retry_base_s, deps.config.retry_max_s)
        honoured = retry_after_seconds(retry_after, now)
        if honoured is not None:
            delay = max(delay, honoured)
        next_at = now + timedelta(seconds=delay)
        store.put_delivery(replace(delivery, attempts=attempts, next_attempt_at=next_at))
        deps.enqueue(message.encode(), delay)
        disabled = _health(deps, endpoint, now, success=False)
        return f"{outcome}: retry in {delay:.1f} s" + (" (endpoint disabled)" if disabled else "")
    store.put_delivery(replace(delivery, status="failed", attempts=attempts, next_attempt_at=None))
    _health(deps, endpoint, now, success=False)
    return f"{outcome}: failed, not retried"


def _kept(delivery: Delivery, attempt: Attempt) -> tuple[dict[str, object], ...]:
    return (*delivery.attempts, attempt.to_json())[-MAX_ATTEMPTS_KEPT:]


def _health(deps: WebhookDeps, endpoint: Endpoint, now: datetime, *, success: bool) -> bool:
    """Update the endpoint's health; True when this failure disabled it."""
    current = deps.store.get_endpoint(endpoint.building_id, endpoint.id) or endpoint
    if success:
        if (
            current.failing_since is None
            and current.last_success_at
            and (now - current.last_success_at) < timedelta(minutes=1)
        ):
            return False  # healthy and recently recorded: spare the write
        deps.store.put_endpoint(replace(current, failing_since=None, last_success_at=now))
        return False
    since = current.failing_since or now
    disable = current.enabled and (now - since).total_seconds() >= deps.config.disable_after_s
    updated = replace(current, failing_since=since, last_failure_at=now)
    if disable:
        updated = replace(updated, enabled=False, disabled_reason="failing")
        logger.warning(
            "webhook %s of %s disabled: failing since %s", endpoint.id, endpoint.building_id, since
        )
    deps.store.put_endpoint(updated)
    return disable
