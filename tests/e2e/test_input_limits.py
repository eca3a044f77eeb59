"""Input limits found by an attack run (issue 21), over HTTP against the local stack.

Bookings: at least one minute long, start and end in whole seconds (POST and PATCH), else a 400
naming the field.

The session's stack; one building connected to a fresh tenant with the demo rooms mapped.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.booking_fixtures import Booked, booked_building

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
