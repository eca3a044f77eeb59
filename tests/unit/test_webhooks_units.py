"""Outgoing webhooks' pure parts: signatures (checked with the `standardwebhooks` library, not
our code), SSRF address checks, backoff and Retry-After."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks import signing
from shared.webhooks.delivery import backoff, retry_after_seconds, retryable
from shared.webhooks.ssrf import UnsafeUrl, address_allowed, check_url


def test_a_new_secret_is_whsec_and_32_bytes() -> None:
    import base64

    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_signatures_verify_with_the_library_and_each_rotated_secret() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    body = json.dumps({"type": "webhook.ping", "data": {"building": "b1"}}).encode()
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([new, old], "msg_1", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)
    only_new = signing.headers([new], "msg_1", now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(body, only_new)


def test_the_library_refuses_a_forged_body_and_an_old_timestamp() -> None:
    secret = signing.new_secret()
    body = b'{"type":"webhook.ping"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signing.headers([secret], "msg_2", now, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"type":"booking.failed"}', headers)
    stale = signing.headers([secret], "msg_2", now - 3600, body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fd00:ec2::254", "fc00::1", "::ffff:10.0.0.1",  # noqa: S104
     "::ffff:127.0.0.1", "2002:a00:1::", "64:ff9b::a9fe:a9fe", "240.0.0.1", "198.18.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), allow_loopback=False)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(ipaddress.ip_address(address), allow_loopback=False)


def test_loopback_only_when_allowed_and_http_only_to_loopback() -> None:
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert address_allowed(ipaddress.ip_address("::ffff:127.0.0.1"), allow_loopback=True)
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    check_url("http://127.0.0.1:8080/hook", allow_loopback=True)
    with pytest.raises(UnsafeUrl):
        check_url("http://127.0.0.1:8080/hook", allow_loopback=False)
    public = lambda host, port: ["93.184.215.14"]  # noqa: E731
    with pytest.raises(UnsafeUrl):
        check_url("http://example.com/hook", allow_loopback=True, resolve=public)
    assert check_url("https://example.com/h", allow_loopback=False, resolve=public).addresses == (
        "93.184.215.14",
    )


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    mixed = lambda host, port: ["93.184.215.14", "10.0.0.5"]  # noqa: E731
    with pytest.raises(UnsafeUrl) as info:
        check_url("https://rebind.example/h", allow_loopback=False, resolve=mixed)
    assert info.value.status == 422 and info.value.reason == "unsafe_url"


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "https://user:pw@example.com/", "https:///x", "not a url", ""]
)
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        check_url(url, allow_loopback=True, resolve=lambda h, p: ["93.184.215.14"])


def test_backoff_doubles_with_jitter_and_caps() -> None:
    rand = random.Random(1)
    for attempt, ceiling in ((1, 30), (2, 60), (3, 120), (10, 7200), (30, 7200)):
        delay = backoff(attempt, 30, 7200, rand)
        assert ceiling / 2 <= delay <= ceiling
    # 26 h of retries with the defaults is more than a dozen attempts, each at most 2 h apart.
    total, attempt = 0.0, 0
    while total < 24 * 3600:
        attempt += 1
        total += backoff(attempt, 30, 7200, rand)
    assert attempt >= 12


def test_retry_after_seconds_and_dates_and_what_is_retried() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("999999", now) == 86400
    date = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_seconds(date, now) == pytest.approx(90)
    assert retry_after_seconds("soon", now) is None
    assert retryable(500, None) and retryable(503, None) and retryable(429, None)
    assert retryable(None, "timeout") and retryable(None, "connection_error")
    assert not retryable(400, None) and not retryable(404, None) and not retryable(301, None)
    assert not retryable(None, "unsafe_url")


def test_the_sync_plan_becomes_outlook_booking_events_with_stable_ids() -> None:
    from shared.availability.busy import BusyBlock
    from shared.sync.plan import Plan, Put, Remove
    from shared.sync.worker import outlook_events

    t = datetime(2026, 12, 8, 9, tzinfo=UTC)
    new = BusyBlock("b1", "room", "o-new", t, t + timedelta(hours=1), "outlook",
                    attribution={"kind": "user", "userEmail": "e@x.example"})  # fmt: skip
    moved = BusyBlock("b1", "room", "o-old", t, t + timedelta(hours=2), "outlook")
    gone = BusyBlock("b1", "room", "o-gone", t, t + timedelta(hours=1), "outlook")
    slid = BusyBlock("b1", "room", "o-slid", t, t + timedelta(hours=1), "outlook")
    ours = BusyBlock("b1", "room", "bk1", t, t + timedelta(hours=1), "platform")
    plan = Plan((Put(new, "e1"), Put(moved, "e2"), Remove(gone, "cancelled"),
                 Remove(slid, "outside_window"), Put(ours, "e3")), 5, 0, 0)  # fmt: skip
    events = outlook_events(plan, {"o-old", "o-gone", "o-slid", "bk1"})
    assert [e.type for e in events] == ["outlook_booking.created", "outlook_booking.updated",
                                        "outlook_booking.cancelled"]  # fmt: skip
    assert events[0].data["attribution"] == {"kind": "user", "userEmail": "e@x.example"}
    assert events[0].commit == {"kind": "busy_block", "building": "b1", "resource": "room",
                                "block": "o-new", "exists": True}  # fmt: skip
    assert events[1].commit is not None and events[1].commit["start"] == "2026-12-08T09:00:00Z"
    again = outlook_events(plan, {"o-old", "o-gone", "o-slid", "bk1"})
    assert [e.id for e in again] == [e.id for e in events]  # a re-run hands over the same ids
    assert len({e.id for e in events}) == 3
