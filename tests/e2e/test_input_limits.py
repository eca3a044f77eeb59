"""Input limits found by an attack run (issue 21), over HTTP against the local stack.

Bookings: at least one minute long, start and end in whole seconds (POST and PATCH), else a 400
naming the field. User import: unknown JSON fields and unknown CSV columns are refused like PUT
/users/{email} refuses unknown fields, and nothing is written.

The session's stack; one building connected to a fresh tenant with the demo rooms mapped.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.booking_fixtures import Booked, booked_building
from tests.e2e.building_fixtures import ensure_building

pytestmark = pytest.mark.timeout(180)

ROOM = "r-focus3c"
# Whole hours, far enough ahead that nothing is in the past, near enough for the 730-day horizon.
DAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=30)


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        verify=ssl.create_default_context(cafile=stack.endpoints["caBundle"]),
        trust_env=False,
        timeout=30,
    ) as client:
        yield client


@pytest.fixture(scope="module")
def bb(stack: Stack, api: httpx.Client, anonymous: httpx.Client, browser: httpx.Client) -> Booked:
    return booked_building(stack, api, anonymous, browser)


def z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def body(start: str, end: str) -> dict[str, Any]:
    return {
        "resourceId": ROOM,
        "start": start,
        "end": end,
        "title": "Limits",
        "booker": {"email": "ann@fabrikam.example", "name": "Ann Archer"},
    }


def problem_fields(response: httpx.Response, status: int = 400) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return [e["field"] for e in response.json()["errors"]]


def listed(api: httpx.Client, bb: Booked, day: datetime) -> list[dict[str, Any]]:
    response = api.get(
        f"buildings/{bb.building}/bookings",
        params={"from": z(day), "to": z(day + timedelta(days=1)), "source": "platform"},
    )
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


# ---------------------------------------------------------------- bookings


def test_a_booking_shorter_than_a_minute_is_refused(api: httpx.Client, bb: Booked) -> None:
    path = f"buildings/{bb.building}/bookings"
    start = DAY + timedelta(hours=9)
    one_microsecond = api.post(path, json=body(z(start), z(start)[:-1] + ".000001Z"))
    assert problem_fields(one_microsecond) == ["end"]
    for seconds in (1, 59):
        short = api.post(path, json=body(z(start), z(start + timedelta(seconds=seconds))))
        assert problem_fields(short) == ["end"], seconds
    assert listed(api, bb, DAY) == []  # nothing was booked
    minute = api.post(path, json=body(z(start), z(start + timedelta(minutes=1))))
    assert minute.status_code == 201, minute.text  # exactly one minute is enough
    assert [b["id"] for b in listed(api, bb, DAY)] == [minute.json()["id"]]


def test_fractional_seconds_are_refused(api: httpx.Client, bb: Booked) -> None:
    path = f"buildings/{bb.building}/bookings"
    day = DAY + timedelta(days=1)
    start, end = z(day + timedelta(hours=9)), z(day + timedelta(hours=10))
    assert problem_fields(api.post(path, json=body(start[:-1] + ".5Z", end))) == ["start"]
    assert problem_fields(api.post(path, json=body(start, "2099-01-01T09:00:00.25+01:00"))) == [
        "end"
    ]
    assert problem_fields(api.post(path, json=body(start[:-1] + ".1Z", end[:-1] + ".9Z"))) == [
        "start",
        "end",
    ]
    # Digits Python cannot hold (beyond microseconds) are still a fraction.
    assert problem_fields(api.post(path, json=body(start[:-1] + ".0000001Z", end))) == ["start"]
    assert listed(api, bb, day) == []
    # A fraction of zeros is the whole second it names.
    zeros = api.post(path, json=body(start[:-1] + ".000Z", end))
    assert zeros.status_code == 201, zeros.text
    assert (zeros.json()["start"], zeros.json()["end"]) == (start, end)


def test_a_patch_obeys_the_same_rules(api: httpx.Client, bb: Booked) -> None:
    day = DAY + timedelta(days=2)
    start = day + timedelta(hours=9)
    created = api.post(
        f"buildings/{bb.building}/bookings", json=body(z(start), z(start + timedelta(hours=1)))
    )
    assert created.status_code == 201, created.text
    booking = created.json()
    path = f"buildings/{bb.building}/bookings/{booking['id']}"
    short = api.patch(path, json={"end": z(start + timedelta(seconds=30))})
    assert problem_fields(short) == ["end"]
    moved_short = api.patch(path, json={"start": z(start + timedelta(minutes=59, seconds=1))})
    assert problem_fields(moved_short) == ["end"]  # the kept end is now too close
    assert problem_fields(api.patch(path, json={"start": z(start)[:-1] + ".5Z"})) == ["start"]
    assert problem_fields(
        api.patch(path, json={"end": z(start + timedelta(hours=2))[:-1] + ".000001Z"})
    ) == ["end"]
    unchanged = api.get(path).json()
    assert (unchanged["start"], unchanged["end"], unchanged["updatedAt"]) == (
        booking["start"], booking["end"], booking["updatedAt"]
    )  # fmt: skip
    moved = api.patch(path, json={"start": z(start + timedelta(minutes=59))})
    assert moved.status_code == 200, moved.text  # one minute left: allowed
    assert moved.json()["start"] == z(start + timedelta(minutes=59))


# ---------------------------------------------------------------- user import


@pytest.fixture(scope="module")
def company_building(api: httpx.Client) -> str:
    building = f"b-{uuid.uuid4().hex[:10]}"
    ensure_building(api, building)
    put = api.put(
        f"buildings/{building}/companies/contoso",
        json={"name": "Contoso", "domains": ["contoso.com"]},
    )
    assert put.status_code in (200, 201), put.text
    return building


def users(api: httpx.Client, building: str) -> list[dict[str, Any]]:
    response = api.get(f"buildings/{building}/users")
    assert response.status_code == 200, response.text
    return list(response.json()["value"])


def rejected(response: httpx.Response) -> dict[int, str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    report = response.json()
    assert report["reason"] == "rows_rejected" and report["imported"] == 0, report
    return {r["row"]: r["error"] for r in report["rejected"]}


def test_json_import_refuses_unknown_fields(api: httpx.Client, company_building: str) -> None:
    b = company_building
    rows = [
        {"email": "ann@contoso.com", "name": "Ann", "companyId": "contoso"},
        {"email": "bob@contoso.com", "name": "Bob", "companyId": "contoso", "admin": True},
        {"email": "cy@contoso.com", "name": "Cy", "companyId": "contoso", "Name": "x", "role": 1},
    ]
    refused = api.post(f"buildings/{b}/users:import", json=rows)
    assert rejected(refused) == {
        2: "admin: is not a known field",
        3: "Name: is not a known field; role: is not a known field",
    }
    assert users(api, b) == []  # all or nothing
    # The same refusal as PUT /users/{email}.
    put = api.put(f"buildings/{b}/users/bob@contoso.com", json=rows[1])
    assert problem_fields(put) == ["admin"]


def test_csv_import_refuses_unknown_columns(api: httpx.Client, company_building: str) -> None:
    b = company_building

    def send(text: str) -> httpx.Response:
        return api.post(
            f"buildings/{b}/users:import",
            content=text.encode(),
            headers={"Content-Type": "text/csv"},
        )

    unknown = send("email,name,companyId,admin\nann@contoso.com,Ann,contoso,true\n")
    assert problem_fields(unknown) == ["header"]
    assert "admin" in unknown.json()["errors"][0]["message"]
    twice = send("email,name,companyId,Email\nann@contoso.com,Ann,contoso,eve@contoso.com\n")
    assert problem_fields(twice) == ["header"]
    # A value under no column (past the header, or under a blank header cell) rejects its row.
    stray = send(
        "email,name,companyId,\n"
        "ann@contoso.com,Ann,contoso,\n"
        "bob@contoso.com,Bob,contoso,true\n"
        "cy@contoso.com,Cy,contoso,,admin\n"
    )
    assert rejected(stray) == {
        2: "column 4: is not a known field",
        3: "column 5: is not a known field",
    }
    assert users(api, b) == []
    # Blank trailing columns (a spreadsheet's export) are no columns at all.
    ok = send("email,name,companyId,\nann@contoso.com,Ann,contoso,\n")
    assert ok.status_code == 200 and ok.json() == {"imported": 1, "rejected": []}, ok.text
