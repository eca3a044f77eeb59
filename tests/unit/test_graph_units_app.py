"""Pure parts of the Graph access layer: retry policy, Retry-After, idempotency, batch splitting,
and the client's behaviour over httpx.MockTransport (no network)."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from shared.core.connection import Connection
from shared.core.errors import GraphError
from shared.graph.client import (
    BatchItem,
    GraphClient,
    RetryPolicy,
    chunks,
    is_idempotent,
    mailbox_of,
    parse_retry_after,
)

CONN = Connection("b1", "c1", "application", "connected", "t1")


def test_backoff_grows_is_jittered_and_bounded() -> None:
    p = RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=4, max_total_wait=100)
    lo = [p.delay(a, None, 0, rand=lambda: 0.0) for a in range(1, 5)]
    hi = [p.delay(a, None, 0, rand=lambda: 1.0) for a in range(1, 5)]
    assert lo == [0.25, 0.5, 1.0, 2.0]
    assert hi == [0.5, 1.0, 2.0, 4.0]
    assert p.delay(5, None, 0) is None  # max attempts


def test_retry_after_is_honoured_with_jitter_and_bounds() -> None:
    p = RetryPolicy(max_retry_after=60, max_total_wait=30, jitter=0.2)
    assert p.delay(1, 5, 0, rand=lambda: 0.0) == 5
    assert p.delay(1, 5, 0, rand=lambda: 1.0) == pytest.approx(6)
    assert p.delay(1, 120, 0) is None  # too long: the caller (queue) retries later
    assert p.delay(1, 10, 25, rand=lambda: 0.0) is None  # total wait bound
    zero = p.delay(1, 0, 0, rand=lambda: 0.0)
    assert zero is not None and zero > 0  # "Retry-After: 0" still backs off a little


def test_parse_retry_after() -> None:
    assert parse_retry_after("10") == 10
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_idempotency() -> None:
    assert is_idempotent("GET", None) and is_idempotent("delete", None)
    assert not is_idempotent("POST", {"subject": "x"})
    assert is_idempotent("POST", {"transactionId": "t"})


def test_mailbox_of() -> None:
    assert mailbox_of("/users/Room@X.com/events") == "room@x.com"
    assert mailbox_of("/me/calendars") == "me"
    assert mailbox_of("/$batch") == "-"


def _items(n: int, chain: dict[int, int] | None = None) -> list[BatchItem]:
    chain = chain or {}
    return [
        BatchItem(str(i), "GET", f"/users/u/events/{i}",
                  depends_on=(str(chain[i]),) if i in chain else ())
        for i in range(n)
    ]  # fmt: skip


def test_batches_are_at_most_twenty() -> None:
    groups = chunks(_items(45))
    assert [len(g) for g in groups] == [20, 20, 5]
    assert [i.id for g in groups for i in g] == [str(i) for i in range(45)]


def test_depends_on_chains_stay_in_one_batch() -> None:
    groups = chunks(_items(25, {19: 18, 20: 19, 21: 20}))
    where = {i.id: n for n, g in enumerate(groups) for i in g}
    assert where["18"] == where["19"] == where["20"] == where["21"]
    assert all(len(g) <= 20 for g in groups)
    with pytest.raises(ValueError):
        chunks([BatchItem("a", "GET", "/x", depends_on=("zz",))])


class Tokens:
    def __init__(self) -> None:
        self.invalidated = 0

    def token(self, connection: Connection) -> str:
        return f"t{self.invalidated}"

    def invalidate(self, connection: Connection) -> None:
        self.invalidated += 1


def client(
    handler: Any, tokens: Tokens | None = None, **policy: Any
) -> tuple[GraphClient, list[float]]:
    slept: list[float] = []
    http = httpx.Client(transport=httpx.MockTransport(handler))
    g = GraphClient(http, "https://graph.test/v1.0", tokens or Tokens(), None,
                    RetryPolicy(**policy), sleep=slept.append)  # fmt: skip
    return g, slept


def graph_error(status: int, code: str, retry_after: str | None = None) -> httpx.Response:
    headers = {"request-id": "r1"} | ({"Retry-After": retry_after} if retry_after else {})
    return httpx.Response(status, headers=headers, json={"error": {"code": code, "message": "m"}})


def test_every_request_carries_immutable_ids_and_a_client_request_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    g, _ = client(handler)
    g.request(CONN, "GET", "/users/r@x/events", headers={"Prefer": 'outlook.timezone="UTC"'})
    assert seen[0].headers["Prefer"] == 'IdType="ImmutableId", outlook.timezone="UTC"'
    assert len(seen[0].headers["client-request-id"]) == 36
    assert seen[0].headers["Authorization"] == "Bearer t0"


def test_429_is_retried_after_retry_after_then_succeeds() -> None:
    answers = iter([graph_error(429, "ApplicationThrottled", "2"), httpx.Response(200, json={})])
    g, slept = client(lambda r: next(answers), jitter=0.0)
    assert (
        g.request(CONN, "POST", "/users/r@x/events", json_body={"subject": "x"}).status_code == 200
    )
    assert slept == [2.0]


def test_a_permanent_503_ends_in_graph_error_after_the_bound() -> None:
    calls = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(calls)
        return graph_error(503, "ServiceUnavailable")

    g, slept = client(handler, max_attempts=4)
    with pytest.raises(GraphError) as raised:
        g.request(CONN, "GET", "/users/r@x/events")
    assert raised.value.failure.status == 503 and raised.value.failure.request_id == "r1"
    assert next(calls) == 4 and len(slept) == 3


def test_post_without_transaction_id_is_not_retried_on_503() -> None:
    calls = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        next(calls)
        return graph_error(503, "ServiceUnavailable")

    g, _ = client(handler)
    with pytest.raises(GraphError):
        g.request(CONN, "POST", "/users/r@x/events", json_body={"subject": "s"})
    assert next(calls) == 1


def test_401_invalid_token_refreshes_once() -> None:
    tokens = Tokens()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) < 3:
            return graph_error(401, "InvalidAuthenticationToken")
        return httpx.Response(200, json={})

    g, _ = client(handler, tokens)
    with pytest.raises(GraphError) as raised:
        g.request(CONN, "GET", "/me")
    assert raised.value.failure.status == 401 and seen == ["Bearer t0", "Bearer t1"]


def test_errors_are_mapped_without_retry() -> None:
    g, slept = client(lambda r: graph_error(404, "ErrorItemNotFound"))
    with pytest.raises(GraphError) as raised:
        g.request(CONN, "GET", "/users/r@x/events/1")
    assert raised.value.failure.code == "ErrorItemNotFound" and not raised.value.transient
    assert slept == []


def test_batch_retries_throttled_items_only() -> None:
    rounds: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        import json

        ids = [r["id"] for r in json.loads(request.content)["requests"]]
        rounds.append(ids)
        out = []
        for i in ids:
            throttled = len(rounds) == 1 and i in ("2", "3")
            out.append({"id": i, "status": 429 if throttled else 200,
                        "headers": {"Retry-After": "1"} if throttled else {}, "body": {"i": i}})  # fmt: skip
        return httpx.Response(200, json={"responses": out})

    g, slept = client(handler, jitter=0.0)
    results = g.batch(CONN, _items(25))
    assert all(r.status == 200 for r in results.values()) and len(results) == 25
    assert rounds[0] == [str(i) for i in range(20)] and rounds[1] == ["2", "3"]
    assert slept == [1.0]
