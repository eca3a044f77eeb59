"""The `webhooks` table against Azurite: endpoints round-trip, deliveries newest first, and an
event handed over twice makes one delivery (the marker in the same transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.webhooks.model import Delivery, Endpoint
from shared.webhooks.store import DeliveryExists, WebhookStore, new_delivery_id

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def table(azurite: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite)
    client = service.create_table(f"webhooks{uuid.uuid4().hex[:10]}")
    try:
        yield client
    finally:
        service.delete_table(client.table_name)


def test_endpoints_and_deliveries_round_trip_and_events_are_de_duplicated(
    table: TableClient,
) -> None:
    store = WebhookStore(table)
    building = f"b-{uuid.uuid4().hex[:8]}"
    endpoint = Endpoint(building, "wh0123456789abcdef", "https://x.example/h", ("*",), True, "d",
                        "whsec-abc", "v1", "v0", T0 + timedelta(hours=1), T0, T0)  # fmt: skip
    store.put_endpoint(endpoint)
    assert store.endpoints(building) == [endpoint]
    first = Delivery(building, endpoint.id, new_delivery_id(T0), "msg_a", "webhook.ping", "{}",
                     "pending", T0, commit={"kind": "entity", "expect": {"a": 1}})  # fmt: skip
    store.add_delivery(first)
    with pytest.raises(DeliveryExists):
        store.add_delivery(replace(first, id=new_delivery_id(T0 + timedelta(seconds=1))))
    later = replace(first, id=new_delivery_id(T0 + timedelta(seconds=5)), event_id="msg_b")
    store.add_delivery(later)
    found, token = store.deliveries(building, endpoint.id, 10)
    assert [d.event_id for d in found] == ["msg_b", "msg_a"] and token is None
    got = store.get_delivery(building, endpoint.id, first.id)
    assert got is not None and got.commit == {"kind": "entity", "expect": {"a": 1}}
    store.delete_endpoint(building, endpoint.id)
    assert store.endpoints(building) == [] and store.deliveries(building, endpoint.id, 10) == (
        [],
        None,
    )
