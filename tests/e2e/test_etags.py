"""ETag and If-Match on resources and settings, over the local stack (issue 22).

Bookings' ETags are in test_bookings.py (they need a connected building). What a portal does:
read, change, write back with `If-Match: <ETag>`; someone else's write in between → 412 and
nothing changed. Concurrent writers holding the same ETag: exactly one wins (the write is
conditional in storage, not read-then-write).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import functions_client

ROOM = {"name": "Room", "kind": "room", "timeZone": "Europe/Amsterdam"}


def _building(api: httpx.Client) -> str:
    building = f"etag-{uuid.uuid4().hex[:10]}"
    ensure_building(api, building)
    return building


def _precondition_failed(response: httpx.Response) -> None:
    assert response.status_code == 412, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["reason"] == "precondition_failed"


def _opaque(etag: str) -> str:
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/"), etag
    assert "datetime" not in etag and "'" not in etag, etag  # nothing of storage shows
    return etag


def test_resource_etag_if_match_and_412(api: httpx.Client) -> None:
    b = _building(api)
    path = f"buildings/{b}/resources/r1"
    # If-Match on something that does not exist: 412, and nothing is created.
    _precondition_failed(api.put(path, json=ROOM, headers={"If-Match": "*"}))
    assert api.get(path).status_code == 404

    created = api.put(path, json=ROOM)
    assert created.status_code == 201, created.text
    first = _opaque(created.headers["ETag"])
    read = api.get(path)
    assert read.headers["ETag"] == first

    renamed = api.put(path, json={**ROOM, "name": "Renamed"}, headers={"If-Match": first})
    assert renamed.status_code == 200, renamed.text
    second = _opaque(renamed.headers["ETag"])
    assert second != first

    # A portal still holding the first version loses, and changes nothing.
    _precondition_failed(api.put(path, json={**ROOM, "name": "Stale"}, headers={"If-Match": first}))
    _precondition_failed(api.delete(path, headers={"If-Match": first}))
    assert api.get(path).json()["name"] == "Renamed"
    # A list of tags matches if any does; `*` matches whatever exists.
    listed = api.put(path, json=ROOM, headers={"If-Match": f'"nope", {second}'})
    assert listed.status_code == 200, listed.text
    assert api.put(path, json=ROOM, headers={"If-Match": "*"}).status_code == 200

    bad = api.put(path, json=ROOM, headers={"If-Match": "not-quoted"})
    assert bad.status_code == 400, bad.text
    assert [e["field"] for e in bad.json()["errors"]] == ["If-Match"]

    current = api.get(path).headers["ETag"]
    assert api.delete(path, headers={"If-Match": current}).status_code == 204
    assert api.get(path).status_code == 404
    _precondition_failed(api.delete(path, headers={"If-Match": current}))  # gone: nothing matches
    assert api.delete(path).status_code == 204  # without If-Match: idempotent, as before


def test_concurrent_writers_with_one_etag_exactly_one_wins(
    endpoints: dict[str, Any], portal_token: str
) -> None:
    with functions_client(endpoints, portal_token) as api:
        b = _building(api)
        path = f"buildings/{b}/resources/r1"
        etag = api.put(path, json=ROOM).headers["ETag"]

    def write(i: int) -> int:
        with functions_client(endpoints, portal_token) as own:
            body = {**ROOM, "name": f"writer {i}"}
            return own.put(path, json=body, headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(write, range(8)))
    assert statuses == [200] + [412] * 7, statuses
    with functions_client(endpoints, portal_token) as api:
        assert api.get(path).json()["name"].startswith("writer ")


def test_settings_etag_if_match(api: httpx.Client) -> None:
    b = _building(api)
    path = f"buildings/{b}/settings"
    never = api.get(path)
    assert never.status_code == 200 and "ETag" not in never.headers  # defaults have no version
    _precondition_failed(
        api.put(path, json={"storeExternalSubjects": True}, headers={"If-Match": "*"})
    )
    written = api.put(path, json={"storeExternalSubjects": True})
    assert written.status_code == 200, written.text
    etag = _opaque(written.headers["ETag"])
    assert api.get(path).headers["ETag"] == etag
    again = api.put(path, json={"storeExternalSubjects": False}, headers={"If-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    _precondition_failed(
        api.put(path, json={"storeExternalSubjects": True}, headers={"If-Match": etag})
    )
    assert api.get(path).json()["storeExternalSubjects"] is False


@pytest.mark.parametrize("value", ['W/"x"', '"a" "b"', '"a",', "**"])
def test_if_match_that_cannot_match_or_parse(api: httpx.Client, value: str) -> None:
    b = _building(api)
    path = f"buildings/{b}/resources/r1"
    etag = api.put(path, json=ROOM).headers["ETag"]
    response = api.put(path, json=ROOM, headers={"If-Match": value})
    if value.startswith("W/"):
        _precondition_failed(response)  # weak tags never match (strong comparison)
    else:
        assert response.status_code == 400, response.text
    assert api.get(path).headers["ETag"] == etag  # nothing changed either way
