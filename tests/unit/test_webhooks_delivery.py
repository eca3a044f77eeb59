"""The delivery worker with an in-memory store and httpx.MockTransport: what is retried, when,
what is not, the 3-day disable, and deliveries that wait for their change to commit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.webhooks import signing
from shared.webhooks.delivery import DeliveryMessage, deliver
from shared.webhooks.deps import WebhookConfig, WebhookDeps
from shared.webhooks.model import Delivery, Endpoint

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SECRET = signing.new_secret()
CONFIG = WebhookConfig(allow_loopback=False, retry_base_s=30, retry_max_s=7200,
                       retry_window_s=93600, disable_after_s=3 * 86400, secret_grace_s=86400)  # fmt: skip


class Store:
    def __init__(self, endpoint: Endpoint, delivery: Delivery) -> None:
        self.endpoint, self.delivery = endpoint, delivery

    def get_endpoint(self, b: str, w: str) -> Endpoint | None:
        return self.endpoint

    def put_endpoint(self, e: Endpoint) -> None:
        self.endpoint = e

    def get_delivery(self, b: str, w: str, d: str) -> Delivery | None:
        return self.delivery

    def put_delivery(self, d: Delivery) -> None:
        self.delivery = d


class Secrets:
    def read(self, name: str, version: str) -> str:
        return SECRET


def world(
    answer: httpx.Response | Exception,
    *,
    now: datetime = T0,
    commit: Any = None,
    committed: bool = True,
    failing_since: datetime | None = None,
) -> tuple[WebhookDeps, Store, list[tuple[str, float]], list[httpx.Request]]:
    endpoint = Endpoint("b1", "wh1", "https://hooks.example/in", ("*",), True, "", "whsec-x",
                        "v1", None, None, T0, T0, failing_since=failing_since)  # fmt: skip
    delivery = Delivery("b1", "wh1", "d1", "msg_1", "webhook.ping", '{"type":"webhook.ping"}',
                        "pending", T0, commit=commit)  # fmt: skip
    store = Store(endpoint, delivery)
    queued: list[tuple[str, float]] = []
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    deps = WebhookDeps(
        store=store,  # type: ignore[arg-type]
        secrets=Secrets(),  # type: ignore[arg-type]
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        enqueue=lambda m, d: queued.append((m, d)),
        resolve=lambda host, port: ["93.184.215.14"],
        clock=lambda: now,
        config=CONFIG,
        committed=lambda check: committed,
    )
    return deps, store, queued, seen


MSG = DeliveryMessage("b1", "wh1", "d1")


def test_a_2xx_is_delivered_signed_to_the_checked_address_with_the_name_as_host() -> None:
    deps, store, queued, seen = world(httpx.Response(204), now=datetime.now(UTC))
    assert deliver(deps, MSG).startswith("delivered")
    assert store.delivery.status == "delivered" and not queued
    (request,) = seen
    assert request.url.host == "93.184.215.14" and request.headers["host"] == "hooks.example"
    assert request.extensions["sni_hostname"] == "hooks.example"
    headers = {k: v for k, v in request.headers.items()}
    assert Webhook(SECRET).verify(request.content, headers)
    assert headers["webhook-id"] == "msg_1"


@pytest.mark.parametrize("answer", [httpx.Response(503), httpx.Response(429),
                                    httpx.ReadTimeout("slow"), httpx.ConnectError("down")])  # fmt: skip
def test_timeouts_5xx_and_429_are_retried_with_backoff(answer: Any) -> None:
    deps, store, queued, _ = world(answer)
    assert "retry in" in deliver(deps, MSG)
    assert store.delivery.status == "pending" and len(queued) == 1
    assert 15 <= queued[0][1] <= 30  # the first retry: half to all of 30 s
    assert store.endpoint.failing_since == T0


def test_retry_after_is_honoured() -> None:
    deps, _, queued, _ = world(httpx.Response(429, headers={"Retry-After": "600"}))
    deliver(deps, MSG)
    assert queued[0][1] == 600


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301, 302])
def test_other_4xx_and_redirects_are_not_retried(status: int) -> None:
    answer = httpx.Response(status, headers={"Location": "http://169.254.169.254/"})
    deps, store, queued, seen = world(answer)
    assert "not retried" in deliver(deps, MSG)
    assert store.delivery.status == "failed" and not queued and len(seen) == 1


def test_retries_stop_after_the_window() -> None:
    later = T0 + timedelta(seconds=CONFIG.retry_window_s + 1)
    deps, store, queued, _ = world(httpx.Response(500), now=later)
    deliver(deps, MSG)
    assert store.delivery.status == "failed" and not queued


def test_an_endpoint_failing_for_3_days_is_disabled_and_a_success_clears_it() -> None:
    now = T0 + timedelta(days=3, seconds=1)
    deps, store, _, _ = world(httpx.Response(500), now=now, failing_since=T0)
    store.delivery = replace(store.delivery, created_at=now)
    assert "endpoint disabled" in deliver(deps, MSG)
    assert store.endpoint.status == "disabled" and store.endpoint.disabled_reason == "failing"
    store.delivery = replace(store.delivery, status="pending")
    assert deliver(deps, MSG) == "endpoint disabled"
    assert store.delivery.status == "failed"
    deps2, store2, _, _ = world(httpx.Response(200), failing_since=T0)
    deliver(deps2, MSG)
    assert store2.endpoint.failing_since is None and store2.endpoint.status == "active"


def test_a_delivery_waits_for_its_change_and_is_discarded_if_it_never_commits() -> None:
    check = {"kind": "entity", "table": "t", "pk": "b1", "rk": "x", "expect": {"a": 1}}
    deps, store, queued, seen = world(httpx.Response(200), commit=check, committed=False)
    assert deliver(deps, MSG) == "waiting for its change to commit"
    assert queued == [(MSG.encode(), 1)] and not seen and store.delivery.status == "pending"
    late = T0 + timedelta(seconds=61)
    deps, store, queued, seen = world(httpx.Response(200), commit=check, committed=False,
                                      now=late)  # fmt: skip
    assert deliver(deps, MSG).startswith("discarded")
    assert store.delivery.status == "discarded" and not seen
    deps, store, _, seen = world(httpx.Response(200), commit=check, committed=True)
    assert deliver(deps, MSG).startswith("delivered") and len(seen) == 1


def test_a_target_re_pointed_at_a_private_address_is_not_contacted() -> None:
    deps, store, _, seen = world(httpx.Response(200))
    deps = replace(deps, resolve=lambda host, port: ["10.0.0.7"])
    assert "not retried" in deliver(deps, MSG)
    assert not seen and store.delivery.attempts[-1]["error"] == "unsafe_url"


def test_a_name_that_does_not_resolve_now_is_retried() -> None:
    deps, store, queued, seen = world(httpx.Response(200))

    def no_dns(host: str, port: int) -> list[str]:
        raise OSError("temporary failure in name resolution")

    deps = replace(deps, resolve=no_dns)
    assert "retry in" in deliver(deps, MSG)
    assert not seen and len(queued) == 1
    assert store.delivery.attempts[-1]["error"] == "connection_error"
