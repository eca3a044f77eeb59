"""The busy-block store against a real Azurite: the "no double booking" invariant and the contract
sync relies on (put / remove / blocks).

Each test uses its own building id in one module-wide table, so tests never see each other's blocks.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.availability import busy
from shared.availability.busy import BusyBlock, BusyStore, SlotTaken
from shared.core.errors import Conflict
from shared.storage import tablestore

DAY = datetime(2031, 3, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def table(azurite: str) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite)
    client = service.create_table(f"busy{uuid.uuid4().hex[:10]}")
    try:
        yield client
    finally:
        service.delete_table(client.table_name)


@pytest.fixture
def store(table: TableClient) -> BusyStore:
    return BusyStore(table)


@pytest.fixture
def building() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


def at(hours: float, day: datetime = DAY) -> datetime:
    return day + timedelta(hours=hours)


def block(
    building: str,
    start: datetime,
    end: datetime,
    *,
    block_id: str | None = None,
    resource: str = "room-1",
    source: busy.Source = "platform",
    **extra: Any,
) -> BusyBlock:
    return BusyBlock(
        building_id=building,
        resource_id=resource,
        block_id=block_id or f"bk-{uuid.uuid4().hex[:8]}",
        start=start,
        end=end,
        source=source,
        **extra,
    )


def spans(blocks: list[BusyBlock]) -> list[tuple[str, datetime, datetime]]:
    return [(b.block_id, b.start, b.end) for b in blocks]


def raw_segments(table: TableClient, building: str) -> list[dict[str, Any]]:
    """Every segment row of a building (any day), straight from the table."""
    return [
        e
        for e in table.query_entities("RowKey ge 'r|' and RowKey lt 'r}'")
        if tablestore.split_key(e["PartitionKey"])[0] == building
    ]


def test_claim_then_overlapping_claim_is_refused_and_touching_is_not(
    store: BusyStore, building: str
) -> None:
    first = block(building, at(9), at(10))
    store.claim(first)
    with pytest.raises(SlotTaken) as taken:
        store.claim(block(building, at(9.5), at(11)))
    assert [b.block_id for b in taken.value.conflicting] == [first.block_id]
    assert taken.value.status == 409 and taken.value.reason == "slot_taken"
    # Half-open intervals: 10:00-11:00 only touches 9:00-10:00.
    store.claim(block(building, at(10), at(11)))
    # Another resource is independent.
    store.claim(block(building, at(9), at(10), resource="room-2"))
    assert len(store.blocks(building, at(0), at(24))) == 3


def test_concurrent_claims_on_one_resource_day_exactly_one_wins(
    store: BusyStore, building: str
) -> None:
    contenders = [block(building, at(14), at(15) + timedelta(minutes=i)) for i in range(12)]
    barrier = threading.Barrier(len(contenders))
    won: list[str] = []
    lost: list[str] = []

    def run(candidate: BusyBlock) -> None:
        barrier.wait()
        try:
            store.claim(candidate)
            won.append(candidate.block_id)
        except Conflict:  # SlotTaken, or (rarely) concurrent_update after many lost races
            lost.append(candidate.block_id)

    threads = [threading.Thread(target=run, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 1 and len(lost) == len(contenders) - 1
    assert [b.block_id for b in store.blocks(building, at(0), at(24))] == won


def test_multi_day_block_is_found_from_every_day_and_conflicts_on_a_later_day(
    store: BusyStore, building: str, table: TableClient
) -> None:
    # 22:00 day 1 → 02:00 day 3: three UTC day partitions.
    long = block(building, at(22), at(50), show_as="oof", source="outlook", block_id="o-long")
    store.put(long)
    assert len(raw_segments(table, building)) == 3
    for hour in (23, 30, 49):  # one probe inside each of the three days
        found = store.blocks(building, at(hour), at(hour + 0.5))
        assert spans(found) == [("o-long", at(22), at(50))]
        assert found[0].show_as == "oof" and found[0].source == "outlook"
    # A claim starting on a free day 0 and running into the busy day 1 is refused and leaves nothing.
    with pytest.raises(SlotTaken):
        store.claim(block(building, at(20), at(23), block_id="bk-cross"))
    assert {e["blockId"] for e in raw_segments(table, building)} == {"o-long"}
    # The range query returns the block once, though it spans three partitions of the range.
    assert spans(store.blocks(building, at(0), at(72))) == [("o-long", at(22), at(50))]


def test_multi_day_claim_compensates_when_a_later_day_is_taken(
    store: BusyStore, building: str, table: TableClient
) -> None:
    store.claim(block(building, at(25), at(26), block_id="bk-day2"))
    with pytest.raises(SlotTaken):
        store.claim(block(building, at(20), at(30), block_id="bk-span"))
    # Day 1's segment, committed before day 2 conflicted, was compensated.
    assert {e["blockId"] for e in raw_segments(table, building)} == {"bk-day2"}
    assert spans(store.blocks(building, at(0), at(48))) == [("bk-day2", at(25), at(26))]
    # ... and its index row is gone too, so nothing is left behind.
    index = list(
        table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": busy.index_partition(building, "room-1")}
        )
    )
    assert [e["RowKey"] for e in index] == ["bk-day2"]


def test_moving_a_claim_ignores_itself_and_frees_the_old_slot(
    store: BusyStore, building: str, table: TableClient
) -> None:
    original = block(building, at(9), at(10), block_id="bk-move")
    store.claim(original)
    moved = block(building, at(9.5), at(34), block_id="bk-move")  # overlaps itself, into day 2
    store.claim(moved, replacing=original)
    assert spans(store.blocks(building, at(0), at(48))) == [("bk-move", at(9.5), at(34))]
    assert len(raw_segments(table, building)) == 2
    # The old 9:00-9:30 is free again; the new range is not.
    store.claim(block(building, at(9), at(9.5)))
    with pytest.raises(SlotTaken):
        store.claim(block(building, at(33), at(35)))
    # Moving onto someone else's slot is refused and keeps the booking where it was.
    store.claim(block(building, at(40), at(41), block_id="bk-other"))
    with pytest.raises(SlotTaken):
        store.claim(block(building, at(40), at(40.5), block_id="bk-move"), replacing=moved)
    assert ("bk-move", at(9.5), at(34)) in spans(store.blocks(building, at(0), at(48)))


def test_put_moves_a_block_by_id_and_remove_by_id_needs_no_times(
    store: BusyStore, building: str, table: TableClient
) -> None:
    first = block(building, at(8), at(9), block_id="o-evt", source="outlook", subject="Standup")
    store.put(first)
    store.put(block(building, at(30), at(31), block_id="o-evt", source="outlook", company_id="c1"))
    found = store.blocks(building, at(0), at(48))
    assert spans(found) == [("o-evt", at(30), at(31))]
    assert found[0].company_id == "c1" and found[0].subject is None
    assert len(raw_segments(table, building)) == 1
    # Same times again: still one segment (idempotent upsert).
    store.put(block(building, at(30), at(31), block_id="o-evt", source="outlook"))
    assert len(raw_segments(table, building)) == 1
    store.remove_by_id(building, "room-1", "o-evt")
    assert store.blocks(building, at(0), at(48)) == []
    assert raw_segments(table, building) == []
    store.remove_by_id(building, "room-1", "o-evt")  # already gone: fine
    store.remove(first)


def test_remove_deletes_every_segment_and_is_idempotent(
    store: BusyStore, building: str, table: TableClient
) -> None:
    long = block(building, at(-2), at(49))
    store.claim(long)
    assert len(raw_segments(table, building)) == 4
    store.remove(long)
    store.remove(long)
    assert raw_segments(table, building) == []
    store.claim(block(building, at(0), at(1)))  # the slot is free again


def test_put_bumps_the_lock_so_a_racing_claim_rereads(
    store: BusyStore, building: str, table: TableClient
) -> None:
    """A claim that read before an Outlook block was mirrored must not commit over it."""
    outlook = block(building, at(15), at(16), block_id="o-race", source="outlook")
    claim = block(building, at(15.5), at(16.5), block_id="bk-race")
    store.claim(block(building, at(1), at(2)))  # the lock exists: the claim must update it
    original = table.submit_transaction
    raced = []

    def submit_after_a_put(operations: Any, **kwargs: Any) -> Any:
        # The claim has read (no conflict) and is about to commit: sync mirrors Outlook right now.
        if not raced and any(op[1].get("blockId") == "bk-race" for op in operations):
            raced.append(True)
            table.submit_transaction = original  # type: ignore[method-assign]
            store.put(outlook)
        return original(operations, **kwargs)

    table.submit_transaction = submit_after_a_put  # type: ignore[method-assign]
    try:
        with pytest.raises(SlotTaken) as taken:
            store.claim(claim)
    finally:
        table.submit_transaction = original  # type: ignore[method-assign]
    assert raced and [b.block_id for b in taken.value.conflicting] == ["o-race"]
    assert "bk-race" not in {b.block_id for b in store.blocks(building, at(0), at(24))}


def test_put_never_checks_conflicts_but_claims_see_outlook_blocks(
    store: BusyStore, building: str
) -> None:
    store.claim(block(building, at(9), at(10), block_id="bk-a"))
    # Outlook may really be double-booked: put mirrors it anyway.
    store.put(block(building, at(9), at(10), block_id="o-b", source="outlook"))
    assert [b.block_id for b in store.blocks(building, at(0), at(24))] == ["bk-a", "o-b"]
    with pytest.raises(SlotTaken) as taken:
        store.claim(block(building, at(9.75), at(11)))
    assert {b.block_id for b in taken.value.conflicting} == {"bk-a", "o-b"}


def test_blocks_filters_by_resource_source_and_range_and_orders(
    store: BusyStore, building: str
) -> None:
    resources = [f"res-{i:02d}" for i in range(30)]
    for i, resource in enumerate(resources):
        store.put(
            block(
                building,
                at(i % 5),
                at(i % 5 + 1),
                resource=resource,
                block_id=f"o-{i}",
                source="outlook" if i % 2 else "platform",
                attribution={"kind": "company", "companyId": "c"} if i % 2 else None,
            )
        )
    everything = store.blocks(building, at(0), at(24))
    assert [b.resource_id for b in everything] == resources
    assert everything[1].attribution == {"kind": "company", "companyId": "c"}
    # Prefix queries (few resources), chunked prefix queries (8-21) and a scan (> 21) agree.
    for subset in (resources[3:5], resources[:9], resources[:25]):
        assert [
            b.resource_id for b in store.blocks(building, at(0), at(24), resource_ids=subset)
        ] == subset
    assert store.blocks(building, at(0), at(24), resource_ids=[]) == []
    assert {b.source for b in store.blocks(building, at(0), at(24), source="outlook")} == {
        "outlook"
    }
    # Range: [1:00, 2:00) overlaps only blocks 1:00-2:00 (not 0:00-1:00 or 2:00-3:00).
    assert {b.start for b in store.blocks(building, at(1), at(2))} == {at(1)}
    assert store.blocks(building, at(2), at(1)) == []
    # Key ranges follow RowKey order, not id order: "room" sorts before "room-1" as an id, after
    # it as a key prefix ("room|" > "room-1|"). A read of many resources (4 ranges of 6 here, the
    # first from "room" to "room-1" in id order) must still find every one.
    many = ["room", "room-", "room--", "room---", "room----", "room-1"]
    many += [f"zz{i:02d}" for i in range(16)]
    for name in many:
        store.put(block(building, at(8), at(9), resource=name, block_id=f"o-{name}",
                        source="outlook"))  # fmt: skip
    found = {b.resource_id for b in store.blocks(building, at(0), at(24), resource_ids=many)}
    assert found == set(many)
    # Resource ids with key-unsafe characters round-trip and do not leak into prefixes.
    store.put(block(building, at(6), at(7), resource="room|1/a", block_id="o-x", source="outlook"))
    store.put(block(building, at(6), at(7), resource="room", block_id="o-y", source="outlook"))
    only = store.blocks(building, at(0), at(24), resource_ids=["room"])
    assert [(b.resource_id, b.block_id) for b in only] == [("room", "o-y"), ("room", "o-room")]


def test_naive_times_are_refused(store: BusyStore, building: str) -> None:
    with pytest.raises(ValueError):
        store.claim(block(building, datetime(2031, 1, 1, 9), datetime(2031, 1, 1, 10)))


def test_forget_subjects_clears_only_this_buildings_outlook_subjects(
    store: BusyStore, table: TableClient, building: str
) -> None:
    """Privacy mode back on (issue 15): every segment of a multi-day Outlook block loses its
    subject; a platform block's, and another building's whose id starts the same, keep theirs."""
    outlook = block(building, at(20), at(30), source="outlook", block_id="o-1", subject="Merger")
    later = block(building, at(9, DAY + timedelta(days=200)), at(10, DAY + timedelta(days=200)),
                  source="outlook", block_id="o-2", subject="Offsite")  # fmt: skip
    ours = block(building, at(9), at(10), subject="Platform title")
    neighbour = block(building + "-x", at(9), at(10), source="outlook", subject="Theirs")
    for b in (outlook, later, neighbour):
        store.put(b)
    store.claim(ours)
    assert store.forget_subjects(building) == 3  # o-1 has two segments (two UTC days)
    subjects = {(e["blockId"], e.get("subject")) for e in raw_segments(table, building)}
    assert subjects == {("o-1", None), ("o-2", None), (ours.block_id, "Platform title")}
    (kept,) = store.blocks(building + "-x", at(0), at(24))
    assert kept.subject == "Theirs"
    (still,) = store.blocks(building, at(20), at(21))
    assert still == dataclasses.replace(outlook, subject=None)  # the rest intact
    assert store.forget_subjects(building) == 0
