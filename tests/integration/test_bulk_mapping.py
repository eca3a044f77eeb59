"""The bulk mapping import (shared/mapping/bulk.py) against real Azurite and the Graph emulator:
every bad row named and nothing written, then the rooms created and mapped through the one
calendar guard, a re-run changing nothing, and a calendar mapped elsewhere refused.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

from typing import Any

import pytest
from azure.data.tables import UpdateMode

from shared.core.errors import ValidationFailed
from shared.directory import registry
from shared.graph.audit import AuditEntry
from shared.graph.guard import MappedCalendar
from shared.mapping import discovery
from shared.mapping.bulk import BULK_MAX, import_mappings
from shared.mapping.places import ImportRejected
from shared.mapping.service import MappingDeps, map_resource
from shared.storage import tablestore
from shared.sync.queue import SyncRequest
from tests.integration.graph_fixtures import graph_emu, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(60)


def deps_for(world: World, sent: list[SyncRequest], audit: list[AuditEntry]) -> MappingDeps:
    return MappingDeps(
        world.tables, world.connections(), world.graph, sent.append, audit=audit.append
    )


def resource(world: World, resource_id: str) -> dict[str, Any] | None:
    return tablestore.get_entity(world.tables(tablestore.RESOURCES), world.building, resource_id)


def test_every_bad_row_is_named_and_nothing_is_written(world: World) -> None:
    sent: list[SyncRequest] = []
    deps = deps_for(world, sent, [])
    rows = [
        {"resourceId": "r1", "mailbox": world.mailbox("room1")},  # fine on its own
        {"resourceId": "r2", "mailbox": f"nobody@{world.tenant.upn('alice').split('@')[1]}"},
        {"resourceId": "r3", "mailbox": world.mailbox("alice")},  # a person, not a room
        {"resourceId": "r1", "mailbox": world.mailbox("room2")},  # r1 twice
        {"resourceId": "r5", "mailbox": world.mailbox("room1").upper()},  # room1 twice
        {"resourceId": "bad id!", "mailbox": "not-an-address", "colour": "red"},
        "a row",
    ]
    with pytest.raises(ImportRejected) as rejected:
        import_mappings(deps, world.building, {"mappings": rows})  # no timeZone: r1 would be new
    by_field = {r["field"]: r["error"] for r in rejected.value.rows}
    assert set(by_field) == {
        "mappings[1].mailbox", "mappings[2].mailbox", "mappings[3].resourceId",
        "mappings[4].mailbox", "mappings[5].resourceId", "mappings[5].mailbox",
        "mappings[5].colour", "mappings[6]", "timeZone",
    }, by_field  # fmt: skip
    assert "calendar_not_found" in by_field["mappings[1].mailbox"]
    assert "is not a room" in by_field["mappings[2].mailbox"]
    assert by_field["mappings[3].resourceId"] == "is also row 0's resource"
    assert by_field["mappings[4].mailbox"] == "is also row 0's mailbox"
    assert by_field["timeZone"] == "is required to create resources"
    assert rejected.value.status == 422 and rejected.value.reason == "rows_rejected"
    assert [e.field for e in rejected.value.errors] == [r["field"] for r in rejected.value.rows]
    # All or nothing: not even row 0 was created or mapped, and no sync was queued.
    assert resource(world, "r1") is None and sent == []


def test_rooms_are_created_mapped_once_and_a_rerun_changes_nothing(world: World) -> None:
    sent: list[SyncRequest] = []
    audit: list[AuditEntry] = []
    deps = deps_for(world, sent, audit)
    registry.put_resource(
        world.tables,
        world.building,
        "kept",
        {"name": "Kept name", "kind": "room", "timeZone": "UTC"},
    )
    body = {
        "timeZone": "Europe/Amsterdam",
        "mappings": [
            {"resourceId": "new-one", "mailbox": world.mailbox("room1")},
            {"resourceId": "kept", "mailbox": world.mailbox("room2"), "name": "ignored"},
        ],
    }
    assert world.graph.guard is not None
    assert world.graph.guard.mapped(world.building) == {}  # cached: nothing mapped yet
    report = import_mappings(deps, world.building, body, actor="admin@test")
    assert report == {
        "created": [{"resourceId": "new-one", "mailbox": world.mailbox("room1")}],
        "updated": [{"resourceId": "kept", "mailbox": world.mailbox("room2")}],
        "unchanged": [],
    }
    made = resource(world, "new-one")
    assert (
        made is not None and made["name"] == "Room One" and made["timeZone"] == "Europe/Amsterdam"
    )
    kept = resource(world, "kept")
    assert kept is not None and kept["name"] == "Kept name" and kept["timeZone"] == "UTC"
    for rid, nick in (("new-one", "room1"), ("kept", "room2")):
        entity = resource(world, rid)
        assert entity is not None and entity["syncStatus"] == "pending"
        mapped = MappedCalendar.from_entity(entity)
        assert mapped is not None and mapped.mailbox == world.mailbox(nick) and mapped.is_default
        assert entity["calendarKind"] == "room"
    # The same calendars as discovery offers, each its room's first full sync queued.
    offered = {c["mailbox"]: c for c in discovery.list_calendars(deps, world.building, {})}
    assert offered[world.mailbox("room1")]["mappedResourceId"] == "new-one"
    assert offered[world.mailbox("room2")]["mappedResourceId"] == "kept"
    assert sorted((s.mailbox, s.resource, s.full) for s in sent) == [
        (world.mailbox("room1"), "new-one", True),
        (world.mailbox("room2"), "kept", True),
    ]
    # A first mapping leaves the guard's cache as it was: it re-reads before refusing, so a
    # request to a calendar mapped since is allowed.
    mapped_now = MappedCalendar.from_entity(resource(world, "new-one") or {})
    assert mapped_now is not None
    events = world.graph.for_calendar(world.connection, mapped_now).get_json(
        f"/users/{world.mailbox('room1')}/calendars/{mapped_now.calendar_id}/events",
        operation="events.list",
    )
    assert events["value"] == []
    assert [a.operation for a in audit] == ["mappings.import"]
    assert audit[0].actor == "admin@test" and "1 created, 1 updated" in (audit[0].result or "")

    again = import_mappings(deps, world.building, body)
    assert again["unchanged"] == [
        {"resourceId": "new-one", "mailbox": world.mailbox("room1")},
        {"resourceId": "kept", "mailbox": world.mailbox("room2")},
    ]
    assert again["created"] == again["updated"] == []


def test_a_calendar_mapped_elsewhere_and_a_paid_resource_are_refused(world: World) -> None:
    sent: list[SyncRequest] = []
    deps = deps_for(world, sent, [])
    room1 = next(
        c for c in discovery.list_calendars(deps, world.building, {})
        if c["mailbox"] == world.mailbox("room1")
    )  # fmt: skip
    registry.put_resource(
        world.tables, world.building, "holder", {"name": "H", "kind": "room", "timeZone": "UTC"}
    )
    map_resource(
        deps, world.building, "holder", {"calendarId": room1["id"], "mailbox": room1["mailbox"]}
    )
    registry.put_resource(
        world.tables, world.building, "paid", {"name": "P", "kind": "room", "timeZone": "UTC", "paid": True}
    )  # fmt: skip
    body = {
        "timeZone": "UTC",
        "mappings": [
            {"resourceId": "other", "mailbox": world.mailbox("room1")},
            {"resourceId": "paid", "mailbox": world.mailbox("room2")},
        ],
    }
    with pytest.raises(ImportRejected) as rejected:
        import_mappings(deps, world.building, body)
    errors = {r["field"]: r["error"] for r in rejected.value.rows}
    assert errors == {
        "mappings[0].mailbox": "its calendar is mapped to resource holder (calendar_mapped)",
        "mappings[1].resourceId": "is a paid resource: it cannot sync (not_supported)",
    }
    assert resource(world, "other") is None
    # The holder's own row is no conflict: mapping it again is `unchanged`.
    again = import_mappings(
        deps,
        world.building,
        {"mappings": [{"resourceId": "holder", "mailbox": world.mailbox("room1")}]},
    )
    assert again["unchanged"] == [{"resourceId": "holder", "mailbox": world.mailbox("room1")}]


@pytest.mark.parametrize("rows", [0, BULK_MAX + 1])
def test_row_count_outside_the_caps_is_a_400(world: World, rows: int) -> None:
    deps = deps_for(world, [], [])
    body = {
        "mappings": [{"resourceId": f"r{n}", "mailbox": f"r{n}@x.example"} for n in range(rows)]
    }
    with pytest.raises(ValidationFailed) as refused:
        import_mappings(deps, world.building, body)
    assert not isinstance(refused.value, ImportRejected)
    assert [e.field for e in refused.value.errors] == ["mappings"]


def test_an_entry_left_by_a_crashed_unmap_is_taken_over(world: World) -> None:
    deps = deps_for(world, [], [])
    room1 = world.mailbox("room1")
    import_mappings(deps, world.building,
                    {"timeZone": "UTC", "mappings": [{"resourceId": "gone", "mailbox": room1}]})  # fmt: skip
    # A crashed unmap: the resource lost its mapping, its calendarindex entry stayed.
    resources = world.tables(tablestore.RESOURCES)
    entity = resources.get_entity(world.building, "gone")
    cleared = {k: v for k, v in entity.items() if k not in registry.MAPPING_PROPERTIES}
    resources.upsert_entity(cleared, mode=UpdateMode.REPLACE)
    report = import_mappings(
        deps,
        world.building,
        {"timeZone": "UTC", "mappings": [{"resourceId": "new", "mailbox": room1}]},
    )
    assert report["created"] == [{"resourceId": "new", "mailbox": room1}]
    taken = MappedCalendar.from_entity(resource(world, "new") or {})
    assert taken is not None and taken.mailbox == room1
