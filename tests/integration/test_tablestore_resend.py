"""tablestore.submit_in_chunks against Azurite when a transaction's answer is lost (the
connection breaks after the service committed): a chunk of upserts is sent again and ends as
once; a chunk with anything else is not resent (it names the failure)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableClient

from shared.core.errors import StorageError
from shared.storage import tablestore


class AnswerLost(RequestsTransport):
    """Sends every request; throws away the answer of the first `lose` transactions."""

    def __init__(self, lose: int) -> None:
        super().__init__()
        self.lose = lose
        self.batches = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        if request.url.endswith("$batch"):
            self.batches += 1
            if self.lose > 0:
                self.lose -= 1
                raise ServiceResponseError("Connection reset by peer (after the commit)")
        return response


def _table(azurite: str, transport: AnswerLost) -> TableClient:
    name = f"t{uuid.uuid4().hex[:12]}"
    table = TableClient.from_connection_string(azurite, name, transport=transport, retry_total=0)
    table.create_table()
    return table


def _ops(kind: str, n: int) -> list[tablestore.Operation]:
    return [(kind, {"PartitionKey": "p", "RowKey": f"r{i:03d}", "n": i}) for i in range(n)]


def test_upserts_whose_answer_was_lost_are_sent_again(azurite: str) -> None:
    transport = AnswerLost(lose=2)
    table = _table(azurite, transport)
    assert tablestore.submit_in_chunks(table, _ops("upsert", 150)) == 150
    assert transport.batches == 4  # two chunks, the first sent three times
    assert len(list(table.list_entities())) == 150


def test_creates_are_not_sent_again(azurite: str) -> None:
    transport = AnswerLost(lose=1)
    table = _table(azurite, transport)
    with pytest.raises(StorageError) as failed:
        tablestore.submit_in_chunks(table, _ops("create", 10))
    assert transport.batches == 1 and "chunk 1 of 1" in failed.value.log_detail
    assert len(list(table.list_entities())) == 10  # it had committed: a resend would conflict
