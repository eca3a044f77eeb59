"""Buildings (issue 20), the pure parts: the PUT body, the ids of every route, the description."""

from __future__ import annotations

from typing import Any

import pytest

from shared.api.openapi import ID_SCHEMA, openapi_document
from shared.core.errors import ValidationFailed
from shared.core.validate import ROUTE_IDS, check_route, valid_id
from shared.directory.buildings import DEFAULT_HOURS, WEEKDAYS, parse_building, view


def fields(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationFailed) as refused:
        parse_building("b1", body)
    return {e.field: e.message for e in refused.value.errors}


def test_name_and_an_iana_zone_are_required_and_hours_default_to_weekdays() -> None:
    building = parse_building("b1", {"name": " HQ ", "timeZone": "Europe/Amsterdam"})
    assert (building.name, building.time_zone, building.address) == ("HQ", "Europe/Amsterdam", None)
    shown = view(building)["businessHours"]
    assert list(shown) == list(WEEKDAYS)
    assert shown["mon"] == [{"start": "08:00", "end": "18:00"}] and shown["sat"] == []
    assert building.business_hours == DEFAULT_HOURS
    assert fields({}) == {"name": "is required", "timeZone": "is required"}


def test_every_bad_field_is_named_at_once() -> None:
    bad = fields(
        {
            "name": "x" * 201,
            "timeZone": "W. Europe Standard Time",  # a Windows name: IANA only here
            "address": "a" * 501,
            "colour": "red",
            "businessHours": {
                "mon": [{"start": "8:00", "end": "18:00"}],
                "tue": [{"start": "10:00", "end": "09:00"}],
                "wed": [{"start": "08:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}],
                "thu": [{"start": "24:00", "end": "24:00"}],
                "fri": "all day",
                "someday": [],
                "sat": [{"start": "08:00"}],
            },
        }
    )
    assert set(bad) == {
        "name",
        "timeZone",
        "address",
        "colour",
        "businessHours.mon[0].start",
        "businessHours.tue[0].end",
        "businessHours.wed[1].start",
        "businessHours.thu[0].start",
        "businessHours.fri",
        "businessHours.someday",
        "businessHours.sat[0]",
    }
    assert fields({"name": "HQ", "timeZone": "UTC", "businessHours": []}) == {
        "businessHours": "must be an object of weekdays (mon ... sun)"
    }


def test_given_hours_replace_the_default_and_a_day_left_out_is_closed() -> None:
    hours = {"fri": [{"start": "00:00", "end": "12:00"}, {"start": "12:00", "end": "24:00"}]}
    building = parse_building("b1", {"name": "HQ", "timeZone": "UTC", "businessHours": hours})
    shown = view(building)["businessHours"]
    assert shown["fri"] == hours["fri"] and shown["mon"] == []
    # What GET returns can be sent back (`id` is read-only, not refused).
    again = parse_building("b1", {**view(building), "address": None})
    assert view(again) == view(building)


HOSTILE = ["..", ".", "a/b", "\x00", "a'b", "é", "x" * 65, "", "a b", "a%2Fb"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_ids_in_any_path_parameter_are_a_400_naming_it(value: str) -> None:
    for name, field in ROUTE_IDS.items():
        params = {"building": "b1", name: value}
        with pytest.raises(ValidationFailed) as refused:
            check_route(params)
        assert [e.field for e in refused.value.errors] == [field], name


def test_good_ids_pass_and_an_unknown_path_parameter_is_refused() -> None:
    check_route({"building": "b-1.x_2", "resource": "r1", "email": "Ann@Contoso.com"})
    with pytest.raises(ValidationFailed) as refused:
        check_route({"building": "b1", "whatever": "x"})
    assert [e.field for e in refused.value.errors] == ["whatever"]


def test_the_described_id_pattern_is_the_one_enforced() -> None:
    import re

    pattern = re.compile(ID_SCHEMA["pattern"])
    for value in [*HOSTILE, "b1", "a.b", "...a", "A-Z_09", "x" * 64]:
        assert bool(pattern.search(value)) == valid_id(value), value


def test_every_path_parameter_of_an_authenticated_route_has_a_validator() -> None:
    document = openapi_document()
    named = {
        p["name"]
        for ops in document["paths"].values()
        for op in ops.values()
        if op["security"]
        for p in op.get("parameters", [])
        if p["in"] == "path"
    }
    assert named and named <= set(ROUTE_IDS), named - set(ROUTE_IDS)


def test_every_building_scoped_operation_declares_the_404_and_the_400() -> None:
    document = openapi_document()
    scoped = [
        (method, path, op)
        for path, ops in document["paths"].items()
        if path.startswith("/buildings/{building}/")
        for method, op in ops.items()
    ]
    assert len(scoped) > 30
    for method, path, op in scoped:
        assert {"400", "401", "403", "404"} <= set(op["responses"]), (method, path)
    building = document["paths"]["/buildings/{building}"]
    assert set(building) == {"get", "put", "delete"} and "404" in building["get"]["responses"]
    assert "409" in building["delete"]["responses"]
