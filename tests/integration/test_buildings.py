"""Buildings (issue 20) against a real Azurite: CRUD, what a delete must wait for, the migration of
buildings that have data from before buildings existed, and the per-process existence cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from azure.data.tables import TableServiceClient

from shared.core.errors import NotFound
from shared.directory import companies, people, registry
from shared.directory.buildings import BuildingInUse, Buildings
from shared.storage import tablestore
from tests.integration.service_fixtures import Tables, table_service

__all__ = ["table_service"]

HQ = {"name": "HQ", "timeZone": "Europe/Amsterdam"}
ROOM = {"name": "Room", "kind": "room", "timeZone": "Asia/Tokyo"}


@pytest.fixture
def tables(table_service: TableServiceClient) -> Iterator[Tables]:
    made = Tables(table_service)
    try:
        yield made
    finally:
        made.drop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_crud_and_the_list(tables: Tables) -> None:
    buildings = Buildings(tables)
    view, created = buildings.put("b1", {**HQ, "address": "Herengracht 1"})
    assert created and view["address"] == "Herengracht 1"
    assert buildings.put("b1", HQ) == ({**view, "address": None}, False)
    assert buildings.get("b1")["timeZone"] == "Europe/Amsterdam"
    buildings.put("b2", {"name": "Annex", "timeZone": "UTC"})
    assert [b["id"] for b in buildings.reachable(None).value] == ["b1", "b2"]
    # A Building.Admin's claim: only those that exist, and no id that is not one.
    assert [b["id"] for b in buildings.reachable(["b2", "nope", "..", "b1"]).value] == [
        "b1",
        "b2",
    ]
    buildings.delete("b2")
    buildings.delete("b2")  # gone is gone
    with pytest.raises(NotFound) as missing:
        buildings.get("b2")
    assert missing.value.reason == "building_not_found"


def test_delete_waits_for_what_the_building_holds_and_takes_its_settings(tables: Tables) -> None:
    buildings = Buildings(tables)
    buildings.put("b1", HQ)
    registry.put_resource(tables, "b1", "r1", ROOM)
    companies.put_company(tables, "b1", "contoso", {"name": "C", "domains": ["contoso.com"]})
    people.put_user(tables, "b1", "ann@contoso.com", {"name": "Ann", "companyId": "contoso"})
    tables(tablestore.RESOURCES).update_entity(
        {"PartitionKey": "b1", "RowKey": "r1", "calendarId": "AAMk"}
    )
    tablestore.put_entity(
        tables(tablestore.CONNECTIONS), {"PartitionKey": "b1", "RowKey": "current", "mode": "x"}
    )
    with pytest.raises(BuildingInUse) as in_use:
        buildings.delete("b1")
    assert in_use.value.in_use == ["connection", "mappings", "resources", "users", "companies"]
    assert in_use.value.reason == "building_in_use" and in_use.value.status == 409
    tables(tablestore.CONNECTIONS).delete_entity("b1", "current")
    registry.delete_resource(tables, "b1", "r1")
    people.delete_user(tables, "b1", "ann@contoso.com")
    with pytest.raises(BuildingInUse) as in_use:
        buildings.delete("b1")
    assert in_use.value.in_use == ["companies"]
    companies.delete_company(tables, "b1", "contoso")
    people.put_building_settings(tables, "b1", {"storeExternalSubjects": True})
    buildings.delete("b1")
    # Its settings went with it, so nothing is left to resurrect it as a migrated building.
    assert tablestore.get_entity(tables(tablestore.SETTINGS), "b1", "settings") is None
    assert buildings.find("b1") is None


def test_a_building_with_data_from_before_buildings_is_created_on_first_read(
    tables: Tables,
) -> None:
    buildings = Buildings(tables)
    registry.put_resource(tables, "old", "r1", ROOM)
    registry.put_resource(tables, "old", "r2", {**ROOM, "timeZone": "UTC"})
    assert tablestore.get_entity(tables(tablestore.BUILDINGS), "old", "building") is None
    buildings.require("old")
    migrated = buildings.get("old")
    assert (migrated["name"], migrated["timeZone"]) == ("old", "Asia/Tokyo")  # its first resource
    assert migrated["businessHours"]["mon"] == [{"start": "08:00", "end": "18:00"}]
    assert tablestore.get_entity(tables(tablestore.BUILDINGS), "old", "building") is not None
    # Only settings, or only a company: still a building of the platform, in UTC.
    people.put_building_settings(tables, "s-only", {})
    companies.put_company(tables, "c-only", "c", {"name": "C", "domains": ["c.com"]})
    assert buildings.get("s-only")["timeZone"] == "UTC"
    assert buildings.get("c-only")["timeZone"] == "UTC"
    # Nothing at all: no building.
    with pytest.raises(NotFound):
        buildings.require("never")
    assert tablestore.get_entity(tables(tablestore.BUILDINGS), "never", "building") is None


def test_existence_is_cached_briefly_and_a_delete_here_is_seen_at_once(tables: Tables) -> None:
    clock = Clock()
    here, there = Buildings(tables, clock), Buildings(tables, clock)
    here.put("b1", HQ)
    there.require("b1")
    here.delete("b1")
    with pytest.raises(NotFound):
        here.require("b1")  # this process forgot it at once
    there.require("b1")  # another process still knows it, within the bound
    clock.now += 31
    with pytest.raises(NotFound):
        there.require("b1")


def test_privacy_mode_back_on_forgets_subjects_and_a_failed_scrub_is_redone(tables: Tables) -> None:
    """Issue 15: storeExternalSubjects true -> false calls forget_subjects; when it fails (storage
    down: the PUT answers 503), the mark stays and the retried PUT scrubs; later PUTs do not."""
    from shared.core.errors import BookingBridgeError

    calls: list[str] = []

    def failing(building: str) -> int:
        calls.append(building)
        raise BookingBridgeError("storage down")

    def forget(building: str) -> int:
        calls.append(building)
        return 0

    def put(on: bool, scrub: Callable[[str], int]) -> None:
        people.put_building_settings(
            tables, "b1", {"storeExternalSubjects": on}, forget_subjects=scrub
        )

    put(False, forget)
    assert calls == []  # it was never on: nothing to forget
    put(True, forget)
    assert calls == []
    with pytest.raises(BookingBridgeError):
        put(False, failing)
    assert calls == ["b1"]
    stored = tablestore.get_entity(tables(tablestore.SETTINGS), "b1", people.SETTINGS_ROW_KEY)
    assert stored is not None and stored["forgetSubjectsPending"] is True
    put(False, forget)  # the retry: still off, the mark says the scrub is owed
    assert calls == ["b1", "b1"]
    stored = tablestore.get_entity(tables(tablestore.SETTINGS), "b1", people.SETTINGS_ROW_KEY)
    assert stored is not None and "forgetSubjectsPending" not in stored
    put(False, forget)
    assert calls == ["b1", "b1"]  # done once: later PUTs scan nothing
    assert people.get_building_settings(tables, "b1")["storeExternalSubjects"] is False
