"""Availability's checked copies of building-days (shared/availability/snapshot.py) against a real
Azurite: they answer exactly what `BusyStore.blocks` answers, after any change, from any instance.

Each test uses its own building id in one module-wide table.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from shared.availability import busy
from shared.availability.busy import (
    BusyBlock,
    BusyStore,
    SlotTaken,
    block_entity,
    day_partition,
    utc_days,
)
from shared.availability.service import busy_view
from shared.availability.snapshot import BusySnapshots, Held
from shared.core.errors import Conflict

DAY = datetime(2031, 5, 6, tzinfo=UTC)
RESOURCES = [f"room-{i}" for i in range(6)]


@pytest.fixture(scope="module")
def service(azurite: str) -> TableServiceClient:
    return TableServiceClient.from_connection_string(azurite)


@pytest.fixture(scope="module")
def table(service: TableServiceClient) -> Iterator[TableClient]:
    client = service.create_table(f"snap{uuid.uuid4().hex[:10]}")
    try:
        yield client
    finally:
        service.delete_table(client.table_name)


@pytest.fixture
def building() -> str:
    return f"b-{uuid.uuid4().hex[:10]}"


def instance(service: TableServiceClient, table: TableClient, **kwargs: Any) -> BusySnapshots[Any]:
    """A process of its own: its own table client, store and snapshots on the one table."""
    return BusySnapshots(BusyStore(service.get_table_client(table.table_name)), busy_view, **kwargs)


def shown(held: list[Held[Any]]) -> list[tuple[Any, ...]]:
    return [(h.resource_id, h.block_id, h.start, h.end, h.show_as, h.view) for h in held]


def truth(store: BusyStore, building: str, start: datetime, end: datetime, ids: Any) -> list[Any]:
    found = store.blocks(building, start, end, resource_ids=ids)
    return [(b.resource_id, b.block_id, b.start, b.end, b.show_as, busy_view(b)) for b in found]


def random_block(rng: random.Random, building: str, block_id: str | None = None) -> BusyBlock:
    start = DAY + timedelta(minutes=15 * rng.randrange(0, 4 * 24 * 3))
    length = rng.choice([0, 15, 30, 60, 120, 60 * 20, 60 * 30])  # empty, short, across midnight
    source = rng.choice(["platform", "outlook"])
    return BusyBlock(
        building,
        rng.choice(RESOURCES),
        block_id or f"{'o-' if source == 'outlook' else 'bk'}{rng.randrange(10**9)}",
        start,
        start + timedelta(minutes=length),
        source,  # type: ignore[arg-type]
        show_as=rng.choice(["busy", "tentative", "free", "oof"]),
        company_id=rng.choice([None, "c1", "c2"]),
        subject=rng.choice([None, "Board meeting"]),
        attribution=rng.choice([None, {"detail": "freeBusy"}]),
    )


def test_snapshots_answer_what_the_store_answers_after_random_changes(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    """Claims, moves (same id, other days), puts, removals and half-finished moves (an old
    segment left on another day) in random order; after each, random ranges and resource sets
    (whole building, many, a few) read the same through two warm instances as from the store."""
    rng = random.Random(20261206)
    writer, other = instance(service, table), instance(service, table)
    store = writer.store
    live: dict[str, BusyBlock] = {}
    for step in range(120):
        action = rng.random()
        if action < 0.35 or not live:
            b = random_block(rng, building)
            try:
                store.claim(b) if b.source == "platform" else store.put(b)
                live[b.block_id] = b
            except (SlotTaken, Conflict):
                pass
        elif action < 0.55:
            old = live[rng.choice(sorted(live))]
            moved = random_block(rng, building, old.block_id)
            moved = BusyBlock(**{**moved.__dict__, "resource_id": old.resource_id})
            store.put(moved)
            live[old.block_id] = moved
        elif action < 0.7:
            gone = live.pop(rng.choice(sorted(live)))
            if rng.random() < 0.5:
                store.remove(gone)
            else:
                store.remove_by_id(building, gone.resource_id, gone.block_id)
        elif action < 0.8:
            # A move caught half way: the new segment written, the old one not yet deleted.
            old = live[rng.choice(sorted(live))]
            ghost = random_block(rng, building, old.block_id)
            ghost = BusyBlock(**{**ghost.__dict__, "resource_id": old.resource_id})
            for day in utc_days(ghost.start, ghost.end):
                pk = day_partition(building, day)  # as `put` writes a segment: lock and version too
                table.submit_transaction(
                    [("upsert", block_entity(ghost, pk)), *busy._changed_ops(pk, ghost.resource_id)]
                )
        for _ in range(3):
            start = DAY + timedelta(hours=rng.randrange(-6, 24 * 3))
            end = start + timedelta(hours=rng.choice([1, 5, 24, 30, 72]))
            ids = rng.choice([None, RESOURCES, RESOURCES[:4], RESOURCES[:1], ["nobody"]])
            expected = truth(store, building, start, end, ids)
            for snapshots in (writer, other):
                assert (
                    shown(snapshots.blocks(building, start, end, resource_ids=ids)) == expected
                ), (
                    step,
                    start,
                    end,
                    ids,
                )
    assert writer.held_blocks > 0  # the copies were used, not only the direct path


def test_read_your_writes_across_instances(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    """A change written through one instance is in the very next read of another whose copy of
    the day is warm: claim, move, put, removal, removal by id, privacy scrub."""
    a, b = instance(service, table), instance(service, table)
    start, end = DAY, DAY + timedelta(days=2)

    def read(snapshots: BusySnapshots[Any]) -> list[tuple[str, datetime, datetime]]:
        return [(h.block_id, h.start, h.end) for h in snapshots.blocks(building, start, end)]

    assert read(b) == []
    claimed = BusyBlock(
        building, "room-1", "bk1", DAY + timedelta(hours=9), DAY + timedelta(hours=10), "platform"
    )
    a.store.claim(claimed)
    assert read(b) == [("bk1", claimed.start, claimed.end)]
    moved = BusyBlock(
        building, "room-1", "bk1", DAY + timedelta(hours=33), DAY + timedelta(hours=34), "platform"
    )
    a.store.claim(moved, replacing=claimed)
    assert read(b) == [("bk1", moved.start, moved.end)]
    outlook = BusyBlock(
        building,
        "room-2",
        "o-1",
        DAY + timedelta(hours=23),
        DAY + timedelta(hours=25),
        "outlook",
        subject="Secret",
    )
    a.store.put(outlook)
    assert read(b) == [("bk1", moved.start, moved.end), ("o-1", outlook.start, outlook.end)]
    a.store.remove(moved)
    assert read(b) == [("o-1", outlook.start, outlook.end)]
    a.store.put(BusyBlock(**{**outlook.__dict__, "show_as": "tentative"}))
    assert [h.show_as for h in b.blocks(building, start, end)] == ["tentative"]
    a.store.remove_by_id(building, "room-2", "o-1")
    assert read(b) == []


def test_a_write_during_a_scan_makes_the_next_read_scan_again(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    """The version is read before the day's segments: a write landing between the two leaves a
    copy labelled with the older version, so the next read rescans and shows the write."""
    first = BusyBlock(
        building, "room-1", "bk1", DAY + timedelta(hours=9), DAY + timedelta(hours=10), "platform"
    )
    late = BusyBlock(
        building, "room-1", "bk2", DAY + timedelta(hours=11), DAY + timedelta(hours=12), "platform"
    )
    writer = BusyStore(service.get_table_client(table.table_name))
    writer.claim(first)

    class Racing(BusyStore):
        raced = False

        def day_segments(self, building_id: str, day: date, **kwargs: Any) -> Any:
            found = super().day_segments(building_id, day, **kwargs)
            if not self.raced:  # the write lands after the version read and after the scan
                self.raced = True
                writer.claim(late)
            return found

    snapshots = BusySnapshots(Racing(service.get_table_client(table.table_name)), busy_view)
    window = (DAY, DAY + timedelta(days=1))
    assert [h.block_id for h in snapshots.blocks(building, *window)] == ["bk1"]
    assert [h.block_id for h in snapshots.blocks(building, *window)] == ["bk1", "bk2"]


def test_the_version_row_is_in_no_scan_and_every_write_changes_it(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    store = BusyStore(service.get_table_client(table.table_name))
    day = DAY.date()
    assert store.day_version(building, day) is None
    seen = set()
    b = BusyBlock(
        building,
        "room-1",
        "o-9",
        DAY + timedelta(hours=9),
        DAY + timedelta(hours=10),
        "outlook",
        subject="S",
    )
    writes = [
        lambda: store.put(b),
        lambda: store.forget_subjects(building),
        lambda: store.claim(
            BusyBlock(
                building,
                "room-1",
                "bk9",
                DAY + timedelta(hours=11),
                DAY + timedelta(hours=12),
                "platform",
            )
        ),
        lambda: store.remove_by_id(building, "room-1", "o-9"),
    ]
    for write in writes:
        write()
        version = store.day_version(building, day)
        assert version is not None and version not in seen
        seen.add(version)
    rows = list(
        table.query_entities("PartitionKey eq @pk", parameters={"pk": day_partition(building, day)})
    )
    assert "version" in {r["RowKey"] for r in rows}
    assert [x.block_id for _, x in store.day_segments(building, day)] == ["bk9"]
    assert [x.block_id for x in store.blocks(building, DAY, DAY + timedelta(days=1))] == ["bk9"]
    assert store.forget_subjects(building) == 0
    # a removal of what is already gone changes nothing, so the version stays
    store.remove_by_id(building, "room-1", "o-9")
    assert store.day_version(building, day) in seen


def test_bounded_by_blocks_held_and_a_few_resources_read_directly(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    store = BusyStore(service.get_table_client(table.table_name))
    for d in range(4):
        for r in RESOURCES:
            start = DAY + timedelta(days=d, hours=9)
            store.put(
                BusyBlock(building, r, f"o-{d}-{r}", start, start + timedelta(hours=1), "outlook")
            )
    snapshots = BusySnapshots(store, busy_view, max_blocks=2 * len(RESOURCES))
    week = (DAY, DAY + timedelta(days=4))
    # a few resources, days not held: read by prefix, nothing kept
    assert len(snapshots.blocks(building, *week, resource_ids=["room-1"])) == 4
    assert snapshots.held_blocks == 0
    # the whole building: four days read, at most two kept
    assert len(snapshots.blocks(building, *week)) == 4 * len(RESOURCES)
    assert snapshots.held_blocks == 2 * len(RESOURCES)
    assert len(snapshots.blocks(building, *week)) == 4 * len(RESOURCES)
    assert snapshots.held_blocks <= 2 * len(RESOURCES)


def test_held_copies_keep_no_subject(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    """Privacy: what a copy holds is what availability shows; a subject stored with the building's
    storeExternalSubjects on is not in memory."""
    store = BusyStore(service.get_table_client(table.table_name))
    start = DAY + timedelta(hours=9)
    store.put(
        BusyBlock(
            building,
            "room-1",
            "o-s",
            start,
            start + timedelta(hours=1),
            "outlook",
            subject="Merger talks",
        )
    )
    snapshots = BusySnapshots(store, busy_view)
    (held,) = snapshots.blocks(building, DAY, DAY + timedelta(days=1))
    assert "Merger" not in repr(held)


def test_a_changed_day_reads_again_only_the_resources_that_changed(
    service: TableServiceClient, table: TableClient, building: str
) -> None:
    """After a write to one resource, the day's locks name it and only its segments are read."""
    reads: list[Any] = []

    class Counting(BusyStore):
        def day_segments(self, building_id: str, day: date, **kwargs: Any) -> Any:
            reads.append(kwargs.get("only"))
            return super().day_segments(building_id, day, **kwargs)

    store = Counting(service.get_table_client(table.table_name))
    for r in RESOURCES:
        start = DAY + timedelta(hours=9)
        store.put(BusyBlock(building, r, f"o-{r}", start, start + timedelta(hours=1), "outlook"))
    snapshots = BusySnapshots(store, busy_view)
    window = (DAY, DAY + timedelta(days=1))
    assert len(snapshots.blocks(building, *window)) == len(RESOURCES)
    assert reads == [None]  # the first read: the whole day
    store.remove_by_id(building, "room-3", "o-room-3")
    assert [h.resource_id for h in snapshots.blocks(building, *window)] == [
        r for r in RESOURCES if r != "room-3"
    ]
    assert reads == [None, {"room-3"}]
    assert len(snapshots.blocks(building, *window)) == len(RESOURCES) - 1
    assert reads == [None, {"room-3"}]  # unchanged: no read at all
