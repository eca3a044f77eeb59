"""The connection record cached per process (shared/connect/repository.py, issue 20), against real
Azurite: repeated reads cost one table read per bound; this process's own connect, reconnect,
reauth and disconnect are seen at once; another process's within the bound, never later.

Two `ConnectionRepository` objects on one table stand for two processes; each has its own clock
so the bound is crossed without sleeping.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.connect.repository import CONNECTION_CACHE_SECONDS, ConnectionRepository
from shared.core.connection import Connection

pytestmark = pytest.mark.timeout(60)


class Counted:
    """The real TableClient, counting point reads (what the cache is meant to save)."""

    def __init__(self, client: TableClient) -> None:
        self.client = client
        self.reads = 0

    def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self.client.get_entity(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture(scope="module")
def table(azurite: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite)
    client = service.create_table(f"conn{uuid.uuid4().hex[:10]}")
    try:
        yield client
    finally:
        service.delete_table(client.table_name)


class Process:
    """One process's repository, with its own clock."""

    def __init__(self, table: TableClient) -> None:
        self.counted = Counted(table)
        self.now = 1000.0
        self.repo = ConnectionRepository(lambda: self.counted, clock=lambda: self.now)

    def later(self, seconds: float) -> None:
        self.now += seconds


def connection(building: str, status: str = "connected") -> Connection:
    return Connection(building, str(uuid.uuid4()), "application", status, str(uuid.uuid4()))


def test_repeated_reads_cost_one_table_read_per_bound(table: TableClient) -> None:
    one = Process(table)
    building = f"b-{uuid.uuid4().hex[:10]}"
    one.repo.save(connection(building))
    reads = one.counted.reads
    first = one.repo.get(building)
    assert first is not None and one.counted.reads == reads + 1
    for _ in range(50):  # fifty sync rounds and outbox messages in a burst
        assert one.repo.get(building) == first
    assert one.counted.reads == reads + 1
    one.later(CONNECTION_CACHE_SECONDS)
    assert one.repo.get(building) == first and one.counted.reads == reads + 2


def test_this_process_sees_its_own_disconnect_reconnect_and_reauth_at_once(
    table: TableClient,
) -> None:
    one = Process(table)
    building = f"b-{uuid.uuid4().hex[:10]}"
    original = connection(building)
    one.repo.save(original)
    assert one.repo.get(building) == original
    one.repo.mark_reauth(building, original.connection_id, "invalid_grant")
    got = one.repo.get(building)
    assert got is not None and got.status == "reauth_required"
    again = connection(building)
    one.repo.save(again)  # reconnect
    assert one.repo.get(building) == again
    one.repo.delete(building)  # disconnect
    assert one.repo.get(building) is None
    one.repo.save(original)  # connect again
    assert one.repo.get(building) == original


def test_another_process_sees_a_disconnect_and_a_revocation_within_the_bound(
    table: TableClient,
) -> None:
    web, worker = Process(table), Process(table)
    building = f"b-{uuid.uuid4().hex[:10]}"
    made = connection(building)
    web.repo.save(made)
    assert worker.repo.get(building) == made  # cached in the worker from now on
    # Another process learns the refresh token was revoked, then the admin disconnects.
    web.repo.mark_reauth(building, made.connection_id, "invalid_grant")
    assert worker.repo.get(building) == made  # stale, but only within the bound
    worker.later(CONNECTION_CACHE_SECONDS - 0.001)
    assert worker.repo.get(building) == made
    worker.later(0.001)
    seen = worker.repo.get(building)
    assert seen == replace(made, status="reauth_required", reason="invalid_grant")
    web.repo.delete(building)
    worker.later(CONNECTION_CACHE_SECONDS)
    assert worker.repo.get(building) is None
    # A new connection made elsewhere is found within the bound too (absence is cached as well).
    fresh = connection(building)
    web.repo.save(fresh)
    worker.later(CONNECTION_CACHE_SECONDS)
    assert worker.repo.get(building) == fresh
