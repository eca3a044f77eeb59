"""functions/queues.py: a queue trigger's message is decoded, or dropped (logged) when it is not
one of that queue's messages."""

from __future__ import annotations

import logging

import azure.functions as func
import pytest

from functions.queues import decode_or_drop
from shared.sync.queue import SyncRequest


def message(body: bytes) -> func.QueueMessage:
    return func.QueueMessage(id="m-1", body=body)


def test_a_readable_message_is_decoded() -> None:
    request = SyncRequest("b1", "room@x.example", "notified", resource="r1")
    decoded = decode_or_drop(message(request.encode().encode()), SyncRequest.decode, "sync", "x")
    assert decoded == request


@pytest.mark.parametrize("body", [b"not json", b'{"building": "b1"}', b"\xff\xfe{"])
def test_an_unreadable_message_is_dropped_and_logged(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="functions.queues"):
        assert decode_or_drop(message(body), SyncRequest.decode, "sync", "a sync request") is None
    assert "sync: message m-1 is not a sync request; dropped" in caplog.text


def test_other_failures_are_not_swallowed() -> None:
    def broken(text: str) -> SyncRequest:
        raise RuntimeError("a bug, not a bad message")

    with pytest.raises(RuntimeError):
        decode_or_drop(message(b"{}"), broken, "sync", "a sync request")
