"""devstack/azurite.py: one process per service; the queue on disk, whether or not the rest is."""

from __future__ import annotations

from pathlib import Path

from azure.data.tables import TableClient, TableServiceClient
from azure.storage.queue import QueueClient

from devstack.azurite import start_azurite


def _clients(connection_string: str) -> tuple[TableClient, QueueClient]:
    table = TableServiceClient.from_connection_string(connection_string).get_table_client("kept")
    return table, QueueClient.from_connection_string(connection_string, "kept")


def test_a_location_keeps_tables_and_queues_across_a_restart(tmp_path: Path) -> None:
    """`make run` keeps its data in .devstack/azurite: stopping saves every service's database
    (azurite-table saves on SIGINT only), at once, not on its next 5-second autosave."""
    first = start_azurite(location=tmp_path)
    try:
        table, queue = _clients(first.connection_string)
        table.create_table()
        table.create_entity({"PartitionKey": "p", "RowKey": "r", "n": 7})
        queue.create_queue()
        queue.send_message("still here")
    finally:
        first.stop()
    second = start_azurite(location=tmp_path)
    try:
        table, queue = _clients(second.connection_string)
        assert table.get_entity("p", "r")["n"] == 7
        assert [m.content for m in queue.peek_messages()] == ["still here"]
    finally:
        second.stop()


def test_in_memory_means_a_scratch_queue_folder_removed_on_stop() -> None:
    server = start_azurite()
    scratch = server.scratch
    try:
        assert len(server.children) == 3 and server.running()
        assert scratch is not None and scratch.is_dir()
        _, queue = _clients(server.connection_string)
        queue.create_queue()
        queue.send_message("x")
        assert any(scratch.iterdir())  # the queue's database and extents are on disk
    finally:
        server.stop()
    assert not server.running() and not scratch.exists()
