"""Pure parts of shared/subscriptions/: clientState derivation, expiry, coalescing, renewal choice.

Storage, Key Vault and Graph are tested in tests/integration/test_subscriptions_service.py, the
webhook over HTTP in tests/e2e/test_webhook.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.core.connection import Account, Connection
from shared.core.errors import ValidationFailed, problem
from shared.core.times import rfc3339_or_none, utc_z
from shared.storage.keyvault import key_check
from shared.subscriptions.clientstate import client_state, client_state_matches
from shared.subscriptions.inbox import (
    LIFECYCLE_QUEUE,
    LifecycleWork,
    RecordCache,
    Sorted,
    UnsupportedMediaType,
    is_json,
    parse_collection,
    sort_items,
    validation_echo,
)
from shared.subscriptions.manage import (
    CLAIM_TTL,
    CLOCK_SKEW,
    FAILED_RETRY_AFTER,
    MAX_MINUTES,
    can_subscribe,
    expiry_for,
)
from shared.subscriptions.manage import _needs_new as needs_new
from shared.subscriptions.renewal import due_for_renewal
from shared.subscriptions.store import Record

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------- clientState


def test_client_state_is_a_43_char_url_safe_hmac_of_the_nonce() -> None:
    state = client_state(KEY, "nonce-1")
    assert len(state) == 43 <= 128
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", state)
    assert client_state(KEY, "nonce-1") == state  # recomputable at the webhook
    assert client_state(KEY, "nonce-2") != state
    assert client_state(OTHER_KEY, "nonce-1") != state
    assert "nonce-1" not in state


def test_client_state_matches_only_the_exact_value() -> None:
    state = client_state(KEY, "n")
    assert client_state_matches(KEY, "n", state)
    assert not client_state_matches(KEY, "n", state[:-1])
    assert not client_state_matches(KEY, "n", state + "x")
    assert not client_state_matches(KEY, "other", state)
    assert not client_state_matches(OTHER_KEY, "n", state)
    assert not client_state_matches(KEY, "n", "é" * 43)  # non-ASCII never raises


def test_key_check_identifies_a_key_without_revealing_it() -> None:
    assert key_check(KEY) == key_check(bytes(KEY))
    assert key_check(KEY) != key_check(OTHER_KEY)
    assert len(key_check(KEY)) == 16
    assert KEY.hex()[:8] not in key_check(KEY)


# ---------------------------------------------------------------- expiry


@pytest.mark.parametrize("minutes", [4230, 4231, 10_000, 525_600])
def test_expiry_never_beyond_4230_minutes(minutes: int) -> None:
    expiry = expiry_for(NOW, minutes)
    assert expiry <= NOW + timedelta(minutes=MAX_MINUTES)
    assert expiry == NOW + timedelta(minutes=MAX_MINUTES) - CLOCK_SKEW


def test_expiry_follows_a_shorter_setting() -> None:
    assert expiry_for(NOW, 60) == NOW + timedelta(minutes=60)
    assert expiry_for(NOW, 1440) == NOW + timedelta(days=1)


def test_graph_times_round_trip_with_seven_fraction_digits() -> None:
    assert utc_z(NOW) == "2026-12-01T09:00:00Z"
    assert rfc3339_or_none("2026-12-01T09:00:00.1234567Z") == NOW.replace(microsecond=123456)
    assert rfc3339_or_none("2026-12-01T10:00:00+01:00") == NOW
    assert rfc3339_or_none("yesterday") is None
    assert rfc3339_or_none(None) is None


# ---------------------------------------------------------------- who may subscribe


def _connection(mode: str, status: str = "connected") -> Connection:
    account = Account("00000000-0000-0000-0000-0000000000aa", "Ada", "Ada@Contoso.example",
                      "ada@contoso.onmicrosoft.example")  # fmt: skip
    return Connection("b1", "c1", mode, status, "t1", account=account)


def test_application_connections_subscribe_to_any_mailbox() -> None:
    assert can_subscribe(_connection("application"), "boardroom4a@contoso.example")


def test_delegated_connections_subscribe_only_to_their_own_mailbox() -> None:
    delegated = _connection("delegated")
    assert can_subscribe(delegated, "ada@contoso.example")
    assert can_subscribe(delegated, "ADA@CONTOSO.ONMICROSOFT.EXAMPLE")
    assert can_subscribe(delegated, "00000000-0000-0000-0000-0000000000aa")
    assert not can_subscribe(delegated, "olivia@contoso.example")  # shared to Ada: polled


def test_paused_connections_subscribe_to_nothing() -> None:
    assert not can_subscribe(_connection("application", "reauth_required"), "room@x.example")


# ---------------------------------------------------------------- the inbox's pure half


def _record(sub_id: str, building: str = "b1", mailbox: str = "room@x.example") -> Record:
    return Record(sub_id, building, mailbox, "c1", "t1", f"nonce-{sub_id}", key_check(KEY))


RECORDS = {
    "s1": _record("s1"),
    "s2": _record("s2", mailbox="other@x.example"),
    "s3": _record("s3", building="b2"),
}


def _item(sub_id: str, *, state: str | None = None, event: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {
        "subscriptionId": sub_id,
        "clientState": state if state is not None else client_state(KEY, f"nonce-{sub_id}"),
        "tenantId": "T1",
    }
    if event:
        item["lifecycleEvent"] = event
    else:
        item.update(changeType="updated", resource=f"Users/u/Events/{sub_id}")
    return item


def _sort(*items: dict[str, object]) -> Sorted:
    parsed, dropped = parse_collection(json.dumps({"value": list(items)}).encode())
    keys = {key_check(KEY): KEY}
    return sort_items(parsed, RECORDS.get, lambda r: keys.get(r.key_check), dropped)


def test_items_of_one_mailbox_coalesce_into_one_sync_request() -> None:
    result = _sort(_item("s1"), _item("s1"), _item("s1"), _item("s2"), _item("s3"))
    assert result.accepted == 5
    requests = sorted((r.building, r.mailbox, r.reason) for r in result.sync)
    assert requests == [
        ("b1", "other@x.example", "notified"),
        ("b1", "room@x.example", "notified"),
        ("b2", "room@x.example", "notified"),
    ]


def test_bad_client_state_unknown_subscription_and_other_tenant_are_dropped_and_counted() -> None:
    forged = client_state(OTHER_KEY, "nonce-s1")
    other_tenant = {**_item("s2"), "tenantId": "t9"}
    result = _sort(_item("s1", state=forged), _item("nope"), other_tenant, _item("s3"))
    assert [(r.building, r.mailbox) for r in result.sync] == [("b2", "room@x.example")]
    assert result.dropped == Counter(bad_client_state=1, unknown_subscription=1, tenant_mismatch=1)


def test_malformed_items_are_dropped_but_do_not_block_the_others() -> None:
    result = _sort(
        {"subscriptionId": "s1", "changeType": "updated"},  # no clientState
        {"clientState": "x", "changeType": "updated"},  # no subscription id
        {"subscriptionId": "../../x", "clientState": "x", "changeType": "updated"},
        _item("s1", event="somethingElse"),
        _item("s2"),
    )
    assert [r.mailbox for r in result.sync] == ["other@x.example"]
    assert result.dropped == Counter(bad_client_state=1, malformed=2, unknown_lifecycle_event=1)


def test_lifecycle_items_become_work_or_a_missed_sync() -> None:
    result = _sort(
        _item("s1", event="reauthorizationRequired"),
        _item("s1", event="reauthorizationRequired"),  # duplicate: one piece of work
        _item("s2", event="subscriptionRemoved"),
        _item("s3"),
        _item("s3", event="missed"),  # missed wins over notified for the same mailbox
    )
    assert set(result.lifecycle) == {
        LifecycleWork("s1", "reauthorizationRequired"),
        LifecycleWork("s2", "subscriptionRemoved"),
    }
    assert [(r.building, r.reason) for r in result.sync] == [("b2", "missed")]


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b'{"value": {}}', b'{"values": []}', b"\xff\xfe", b'"text"']
)
def test_a_body_that_is_no_notification_collection_is_a_400(body: bytes) -> None:
    with pytest.raises(ValidationFailed) as raised:
        parse_collection(body)
    assert problem(raised.value)[0] == 400


def test_only_application_json_is_accepted() -> None:
    assert is_json("application/json")
    assert is_json("application/json; charset=utf-8")
    assert not is_json("text/plain; charset=utf-8")
    assert not is_json(None)
    assert problem(UnsupportedMediaType("x"))[0] == 415


def test_validation_token_is_echoed_decoded() -> None:
    # The request Graph sends (GRAPH.md §6.4): `+` is a space, %3a a colon.
    url = (
        "https://x/api/graph/notifications?validationToken=Validation%3a+Testing+client+"
        "application+reachability+for+subscription+Request-Id%3a+5731e5c5-0000"
    )
    token = parse_qs(urlsplit(url).query)["validationToken"][0]
    assert validation_echo(token) == (
        "Validation: Testing client application reachability for subscription "
        "Request-Id: 5731e5c5-0000"
    )
    for implausible in ("", "x" * 5000):
        with pytest.raises(ValidationFailed) as raised:
            validation_echo(implausible)
        assert [e.field for e in raised.value.errors] == ["validationToken"]


def test_lifecycle_work_round_trips_and_refuses_garbage() -> None:
    work = LifecycleWork("7f105c7d-2dc5-4530-97cd-4e7ae6534c07", "subscriptionRemoved")
    assert LifecycleWork.decode(work.encode()) == work
    for text in ("", "{}", '{"subscriptionId": "a", "event": "missed!"}', "[1]"):
        with pytest.raises(ValidationFailed):
            LifecycleWork.decode(text)


def test_the_trigger_binds_the_lifecycle_queue_by_the_same_name() -> None:
    from functions import graph_webhook

    assert graph_webhook.LIFECYCLE_QUEUE == LIFECYCLE_QUEUE


# ---------------------------------------------------------------- record cache


def test_record_cache_keeps_hits_not_misses_and_expires() -> None:
    loads: list[str] = []
    clock = [0.0]

    def load(sub_id: str) -> Record | None:
        loads.append(sub_id)
        return RECORDS.get(sub_id)

    cache = RecordCache(load, ttl=10, max_entries=2, clock=lambda: clock[0])
    assert cache.get("s1") == RECORDS["s1"]
    assert cache.get("s1") == RECORDS["s1"]
    assert cache.get("nope") is None
    assert cache.get("nope") is None  # a subscription's record may appear any moment
    assert loads == ["s1", "nope", "nope"]
    clock[0] = 11
    cache.get("s1")
    assert loads[-1] == "s1"  # expired: read again
    cache.get("s2")
    cache.get("s3")  # bound of 2: s1 (least recently used) goes
    cache.get("s1")
    assert loads[-1] == "s1"


# ---------------------------------------------------------------- renewal choice


def _index(**fields: object) -> dict[str, object]:
    return {"status": "active", "subscriptionId": "s1", **fields}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"expiresAt": NOW + timedelta(hours=30)}, "ok"),
        ({"expiresAt": NOW + timedelta(hours=23)}, "renew"),
        ({"expiresAt": NOW - timedelta(seconds=1)}, "recreate"),  # Graph deleted it already
        ({"expiresAt": None}, "recreate"),
        ({"status": "failed", "expiresAt": NOW + timedelta(hours=30)}, "recreate"),
        ({"status": "removed"}, "recreate"),
        ({"subscriptionId": "", "expiresAt": NOW + timedelta(hours=30)}, "recreate"),
        ({"status": "creating", "claimedAt": NOW - timedelta(seconds=30)}, "ok"),
        ({"status": "creating", "claimedAt": NOW - CLAIM_TTL - timedelta(seconds=1)}, "recreate"),
    ],
)
def test_what_the_renewal_timer_does_with_a_subscription(
    fields: dict[str, object], expected: str
) -> None:
    assert due_for_renewal(_index(**fields), NOW, timedelta(hours=24)) == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, False),  # live, this connection, current key
        ({"expiresAt": NOW}, True),  # expired: Graph deleted it
        ({"connectionId": "old"}, True),  # the building reconnected
        ({"keyCheck": "old"}, True),  # made with a key no longer current
        ({"status": "removed"}, True),
        ({"status": "failed", "updatedAt": NOW - timedelta(minutes=1)}, False),  # backing off
        ({"status": "failed", "updatedAt": NOW - FAILED_RETRY_AFTER - timedelta(seconds=1)}, True),
        ({"status": "failed", "updatedAt": NOW, "connectionId": "old"}, True),  # new connection
        ({"status": "creating", "claimedAt": NOW}, False),  # someone is creating it
        ({"status": "creating", "claimedAt": NOW - CLAIM_TTL - timedelta(seconds=1)}, True),
    ],
)
def test_when_ensure_creates_a_new_subscription(fields: dict[str, object], expected: bool) -> None:
    index = {
        "status": "active", "subscriptionId": "s1", "expiresAt": NOW + timedelta(days=2),
        "connectionId": "c1", "keyCheck": key_check(KEY), **fields,
    }  # fmt: skip
    assert needs_new(index, _connection("application"), key_check(KEY), NOW) is expected
    assert needs_new(None, _connection("application"), key_check(KEY), NOW) is True


def test_record_cache_peek_never_reads() -> None:
    loads: list[str] = []
    cache = RecordCache(lambda s: loads.append(s) or RECORDS.get(s))
    assert cache.peek("s1") is None and loads == []
    cache.get("s1")
    assert cache.peek("s1") == RECORDS["s1"] and loads == ["s1"]
