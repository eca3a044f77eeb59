from __future__ import annotations

import threading
import time

import pytest

from shared.core.errors import StorageError, ValidationFailed
from shared.sync.queue import MAX_BATCH_CHARS, GroupSend, SyncRequest, decode_all, encode_batches


def test_round_trip_and_mailbox_lower_cased() -> None:
    request = SyncRequest("b1", "Room@Contoso.example", "mapped", resource="r1", full=True)
    decoded = SyncRequest.decode(request.encode())
    assert decoded == SyncRequest("b1", "room@contoso.example", "mapped", "r1", True)


@pytest.mark.parametrize("text", ["", "{}", '{"building":"b","mailbox":"m","reason":"x"}', "[1]"])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        SyncRequest.decode(text)


def _requests(n: int, building: str = "b1") -> list[SyncRequest]:
    return [SyncRequest(building, f"room{i}@contoso.example", "notified") for i in range(n)]


def test_batches_round_trip_and_stay_under_the_message_size() -> None:
    requests = _requests(400, building="b" * 64)
    texts = encode_batches(requests)
    assert len(texts) > 1 and all(len(t) <= MAX_BATCH_CHARS for t in texts)
    assert [r for t in texts for r in decode_all(t)] == requests
    # One request is a message of its own, readable as before.
    (single,) = encode_batches(requests[:1])
    assert SyncRequest.decode(single) == requests[0] == decode_all(single)[0]


@pytest.mark.parametrize(
    "text", ['{"requests":[]}', '{"requests":{}}', '{"requests":[{"building":"b"}]}', "nope"]
)
def test_garbage_batches_are_refused(text: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_all(text)


def test_group_send_collects_requests_while_a_send_is_on_its_way() -> None:
    sent: list[list[SyncRequest]] = []
    first_in_flight = threading.Event()
    release = threading.Event()

    def send(requests: list[SyncRequest]) -> None:
        sent.append(requests)
        if len(sent) == 1:
            first_in_flight.set()
            release.wait(5)

    group = GroupSend(send)
    requests = _requests(21)
    returned: list[int] = []

    def call(i: int) -> None:
        group([requests[i], requests[i]])  # a repeat within a call is sent once
        returned.append(i)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert first_in_flight.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 21)]
    for t in others:
        t.start()
    time.sleep(0.2)
    assert returned == []  # nobody returns before their requests were sent
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert sorted(returned) == list(range(21))
    # The first alone, then the twenty that waited for it in one message.
    assert len(sent) == 2 and sent[0] == [requests[0]]
    assert sorted(sent[1], key=requests.index) == requests[1:]  # each once


def test_a_failed_send_fails_its_callers_only() -> None:
    calls = 0
    first_in_flight = threading.Event()
    release = threading.Event()

    def send(requests: list[SyncRequest]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            first_in_flight.set()
            release.wait(5)
        if calls == 2:
            raise StorageError("queue unavailable", reason="queue")

    group = GroupSend(send)
    outcome: dict[str, str] = {}

    def call(name: str, request: SyncRequest) -> None:
        try:
            group([request])
            outcome[name] = "sent"
        except StorageError:
            outcome[name] = "failed"

    a, b, c = _requests(3)
    first = threading.Thread(target=call, args=("first", a))
    first.start()
    assert first_in_flight.wait(5)
    waiting = [threading.Thread(target=call, args=(n, r)) for n, r in (("b", b), ("c", c))]
    for t in waiting:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in [first, *waiting]:
        t.join(5)
    # b and c went in the second send together, which failed: both fail (a 503, Graph retries).
    assert outcome == {"first": "sent", "b": "failed", "c": "failed"}
    group([a])  # and the sender is free again
    assert calls == 3


@pytest.mark.parametrize("length", range(40, 60))
def test_a_batch_with_its_wrapper_stays_under_the_size(length: int) -> None:
    # Batches filled to the brim: the wrapper `{"requests":[...]}` counts as well.
    requests = [SyncRequest("b1", f"{i:0{length}d}@x.example", "notified") for i in range(800)]
    texts = encode_batches(requests)
    assert max(len(t) for t in texts) <= MAX_BATCH_CHARS
    assert [r for t in texts for r in decode_all(t)] == requests
