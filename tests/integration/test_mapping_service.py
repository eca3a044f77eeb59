"""The mapping service (shared/mapping/service.py) with injected collaborators against real Azurite
and the Graph emulator, no Functions host: map a room's calendar, refuse it to a second resource
while it is mapped, unmap it (the calendar is free again), and the sync requests each step queues.
"""

# ruff: noqa: F811 - pytest fixtures imported from the fixture modules are parameters here

from __future__ import annotations

from typing import Any

import pytest

from shared.core.errors import Conflict, Unprocessable
from shared.directory import registry
from shared.graph.guard import MappedCalendar
from shared.mapping import discovery
from shared.mapping.service import MappingDeps, map_resource, unmap
from shared.storage import tablestore
from shared.sync.queue import SyncRequest
from tests.integration.graph_fixtures import graph_emu, tenant  # noqa: F401 - fixtures
from tests.integration.service_fixtures import World, table_service, world  # noqa: F401 - fixtures

pytestmark = pytest.mark.timeout(60)


def deps_for(world: World, sent: list[SyncRequest]) -> MappingDeps:
    return MappingDeps(world.tables, world.connections(), world.graph, sent.append)


def room(world: World, deps: MappingDeps, nick: str) -> dict[str, Any]:
    """The room's entry as discovery lists it (application mode: the Places API, probed)."""
    found = discovery.list_calendars(deps, world.building, {})
    entry = next(c for c in found if c["mailbox"] == world.mailbox(nick))
    assert entry["kind"] == "room" and entry["canEdit"] and entry["id"], entry
    return dict(entry)


def put(world: World, resource: str) -> None:
    body = {"name": resource, "kind": "room", "timeZone": "UTC"}
    registry.put_resource(world.tables, world.building, resource, body)


def test_map_refuse_while_mapped_elsewhere_and_unmap(world: World) -> None:
    sent: list[SyncRequest] = []
    deps = deps_for(world, sent)
    room1 = room(world, deps, "room1")
    body = {"calendarId": room1["id"], "mailbox": room1["mailbox"]}
    put(world, "r1")
    put(world, "r2")

    view = map_resource(deps, world.building, "r1", body, actor="test")
    assert view["sync"]["status"] == "pending"
    mailbox = world.mailbox("room1")
    assert sent == [SyncRequest(world.building, mailbox, "mapped", "r1", True)]
    entity = world.tables(tablestore.RESOURCES).get_entity(world.building, "r1")
    mapped = MappedCalendar.from_entity(entity)
    assert mapped is not None and mapped.calendar_id == room1["id"] and mapped.is_default
    assert mapped.mailbox == mailbox and entity["calendarKind"] == "room"
    # Discovery says which resource holds it.
    assert room(world, deps, "room1")["mappedResourceId"] == "r1"
    # The same PUT again writes nothing; the resource still awaits its first sync, so the
    # request is queued again (harmless: sync coalesces it).
    map_resource(deps, world.building, "r1", body)
    assert sent[-1] == SyncRequest(world.building, mailbox, "mapped", "r1", True)

    # One calendar, one resource: r2 is refused while r1 holds it.
    count = len(sent)
    with pytest.raises(Conflict) as refused:
        map_resource(deps, world.building, "r2", body)
    assert refused.value.reason == "calendar_mapped"
    assert len(sent) == count
    r2 = world.tables(tablestore.RESOURCES).get_entity(world.building, "r2")
    assert MappedCalendar.from_entity(r2) is None

    unmap(deps, world.building, "r1")
    assert sent[-1] == SyncRequest(world.building, mailbox, "unmapped", "r1", True)
    r1 = world.tables(tablestore.RESOURCES).get_entity(world.building, "r1")
    assert MappedCalendar.from_entity(r1) is None
    unmap(deps, world.building, "r1")  # idempotent: nothing to release, nothing queued
    assert sent[-1].reason == "unmapped" and len(sent) == count + 1

    # The calendar is free again.
    assert map_resource(deps, world.building, "r2", body)["sync"]["status"] == "pending"
    assert sent[-1] == SyncRequest(world.building, mailbox, "mapped", "r2", True)


def test_a_calendar_of_another_mailbox_is_refused(world: World) -> None:
    sent: list[SyncRequest] = []
    deps = deps_for(world, sent)
    room1 = room(world, deps, "room1")
    put(world, "r1")
    with pytest.raises(Unprocessable) as refused:
        body = {"calendarId": room1["id"], "mailbox": world.mailbox("room2")}
        map_resource(deps, world.building, "r1", body)
    assert refused.value.reason == "calendar_not_found"
    assert sent == []
