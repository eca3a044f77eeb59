"""bench/bench_growth.py's counting proxy in front of Azurite's table endpoint (issue 17): what the
real TableClient sends through it is answered as without it, and counted as the bench reports it
(a $batch is one request and as many operations as its parts; reads, writes and tables named)."""

from __future__ import annotations

import uuid
from typing import Any, cast

from azure.data.tables import TableClient

from bench.bench_growth import TableCounter, delta
from devstack.azurite import Azurite


def test_counts_requests_operations_and_tables(azurite_server: Azurite) -> None:
    table_name = f"t{uuid.uuid4().hex[:10]}"
    with TableCounter(azurite_server.table_port) as counter:
        proxied = Azurite(
            cast(Any, None), azurite_server.blob_port, azurite_server.queue_port, counter.port
        ).connection_string
        with TableClient.from_connection_string(proxied, table_name) as table:
            table.create_table()
            before = counter.snapshot()
            table.create_entity({"PartitionKey": "p", "RowKey": "one", "v": 1})
            table.submit_transaction(
                [("upsert", {"PartitionKey": "p", "RowKey": f"r{i}", "v": i}) for i in range(3)]
            )
            assert table.get_entity("p", "r2")["v"] == 2
            assert len(list(table.query_entities("PartitionKey eq 'p'"))) == 4
            counted = delta(counter.snapshot(), before)

    assert counted["requests"] == 4
    assert counted["batches"] == 1
    assert counted["operations"] == 6  # 1 insert + 3 in the batch + 1 point read + 1 query
    assert counted["reads"] == 2 and counted["writes"] == 4
    assert counted[f"write {table_name}"] == 4 and counted[f"read {table_name}"] == 2
    assert counted["bytes_down"] > 0
