"""Check-in and no-show release end to end (issue 15): real time, the real timer, the emulator.

One stack for the module and one timeline, because every release waits out a real grace period
(at least one minute): everything starts 40 s before "now" with `graceMinutes: 1`, so the release
is due 20 s after set-up; the release timer (on a schedule that never fires by itself here) is run
through the host's admin API, twice at once, when it is due.

- `plat-*` (application mode, its own tenant): three platform bookings, one per room: nobody checks
  in to A; B is checked in at once; C is checked in one second before its release is due.
- `out-*` (application mode, another tenant, building `recurringStrikes: 2`): Emma's meeting D
  with Board Room 4A; a daily series S1 with Huddle 4B, whose resource overrides the rule with
  `recurringStrikes: 1`; a daily series S2 with Focus 3C (the building's 2 strikes).
- `del-*` (delegated mode as the demo admin): the admin's own "Board Room 4A" calendar mapped, an
  event E on it.

The clock-driven cases (a strike count reaching 2 occurrences a day apart, exact boundaries of the
check-in window) are in tests/integration/test_attendance_service.py, where the clock is a
parameter.
"""

from __future__ import annotations

import ast
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack.stack import Stack, start_stack
from tests.e2e.booking_fixtures import Booked, booked_building, graph_stats, outlook_events
from tests.e2e.building_fixtures import ensure_building
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import (
    SYNC_SETTINGS,
    HostLog,
    connect_building_delegated,
    map_discovered,
    outlook,
    run_function,
    service_env,
    wait_sync_quiet,
    wait_until,
)

pytestmark = pytest.mark.timeout(300)

GRACE = timedelta(minutes=1)  # the shortest grace period a building may set
STARTED = timedelta(seconds=40)  # how long before set-up's end everything started
RELEASE_TIMER = "release_timer"
DECLINE = "POST /users/{id}/events/{id}/decline"


def _rule(strikes: int | None = None) -> dict[str, Any]:
    return {"enabled": True, "graceMinutes": 1, "earlyMinutes": 15, "recurringStrikes": strikes}


def _z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(subject: str, start: datetime, room_mail: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": "UTC"},
        **extra,
    }  # fmt: skip
    if room_mail is not None:
        body["attendees"] = [{"type": "resource", "emailAddress": {"address": room_mail}}]
    return body


def _daily(start: datetime) -> dict[str, Any]:
    return {
        "recurrence": {
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "startDate": start.date().isoformat(),
                      "numberOfOccurrences": 3},
        }
    }  # fmt: skip


@dataclass
class Run:
    """What set-up made and what the timer did."""

    plat: Booked
    out: Booked
    delegated: str
    start: datetime  # when every booking started
    a: dict[str, Any]  # platform bookings as POST answered
    b: dict[str, Any]
    c: dict[str, Any]
    b_checkins: tuple[httpx.Response, httpx.Response]
    c_checkin: httpx.Response
    c_checkin_at: datetime
    due: datetime
    outlook_ids: dict[str, str]  # D, S1, S2, E -> the o-... booking id of the started occurrence
    counts: Counter[str]  # what the two concurrent timer runs did, from their log lines
    stats_before: dict[str, int]
    stats_after: dict[str, int]
    emma: dict[str, Any]  # the out tenant's Emma (organizer of D, S1, S2)


@pytest.fixture(scope="module")
def rstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The release timer runs only when a test runs it: a yearly schedule never fires here.
    settings = {**SYNC_SETTINGS, "BB_RELEASE_SCHEDULE": "0 0 0 1 1 *"}
    running = start_stack(tmp_path_factory.mktemp("release-stack"), extra_settings=settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rapi(rstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(rstack.endpoints, client_token(rstack.endpoints)) as client:
        yield client


@pytest.fixture(scope="module")
def ranon(rstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(rstack.endpoints) as client:
        yield client


def _settings(api: httpx.Client, building: str, rule: dict[str, Any]) -> None:
    put = api.put(f"buildings/{building}/settings", json={"autoRelease": rule})
    assert put.status_code == 200, put.text


def _book(api: httpx.Client, building: str, resource: str, start: datetime) -> dict[str, Any]:
    created = api.post(
        f"buildings/{building}/bookings",
        json={"resourceId": resource, "start": _z(start), "end": _z(start + timedelta(hours=1)),
              "title": "Stand-up", "booker": {"email": "ann@example.com", "name": "Ann"}},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    return dict(created.json())


def _checkin(api: httpx.Client, building: str, booking_id: str, **body: Any) -> httpx.Response:
    return api.post(f"buildings/{building}/bookings/{booking_id}/checkin", json=body or None)


def _outlook_booking(api: httpx.Client, building: str, resource: str, start: datetime) -> str:
    """The o-... id of the resource's Outlook booking starting at `start`, once sync has it."""

    def find() -> str | None:
        listed = api.get(
            f"buildings/{building}/bookings",
            params={"from": _z(start - timedelta(hours=1)), "to": _z(start + timedelta(hours=1)),
                    "resourceId": resource, "source": "outlook"},
        )  # fmt: skip
        assert listed.status_code == 200, listed.text
        found = [b["id"] for b in listed.json()["value"] if b["start"] == _z(start)]
        return found[0] if found else None

    found = wait_until(find, timeout=20)
    assert found, f"sync did not bring {resource}'s Outlook booking at {start}"
    return str(found)


def _sleep_until(when: datetime) -> None:
    wait = (when - datetime.now(UTC)).total_seconds()
    assert wait > 0, f"set-up took too long: {-wait:.1f} s past {when}"
    time.sleep(wait)


def _decline_count(stack: Stack) -> dict[str, int]:
    by_endpoint: dict[str, int] = graph_stats(stack)["requests"]["byEndpoint"]
    return {e: n for e, n in by_endpoint.items() if e.startswith(("POST", "DELETE"))}


def _timer_counts(stack: Stack, runs: int) -> Counter[str]:
    """Run the release timer `runs` times at once; the sum of what the runs logged they did."""
    log = HostLog(stack)
    log.mark()
    for _ in range(runs):
        run_function(stack, RELEASE_TIMER)
    executed = f"Executed 'Functions.{RELEASE_TIMER}'"
    done = wait_until(lambda: len(log.lines(executed)) >= runs and log.lines(executed), timeout=60)
    assert done and len(done) == runs and all("Succeeded" in line for line in done), done
    total: Counter[str] = Counter()
    for line in log.lines("release: {"):
        total.update(ast.literal_eval(line[line.index("release: {") + len("release: ") :]))
    return total


@pytest.fixture(scope="module")
def run(rstack: Stack, rapi: httpx.Client, ranon: httpx.Client) -> Run:
    with (
        service_env(rstack),
        httpx.Client(verify=rstack.endpoints["caBundle"], trust_env=False, timeout=30) as browser,
    ):
        plat = booked_building(rstack, rapi, ranon, browser, time_zone="UTC")
        out = booked_building(rstack, rapi, ranon, browser, time_zone="UTC")
        delegated = f"del-{uuid.uuid4().hex[:8]}"
        ensure_building(rapi, delegated)
        users = rstack.emulator.seed["tenant"]["users"]
        admin = users["admin"]
        connect_building_delegated(rstack, rapi, ranon, delegated, admin["userPrincipalName"])
        own = map_discovered(
            rapi, delegated, "own",
            lambda c: c["kind"] == "personal" and c["name"] == "Board Room 4A",
        )  # fmt: skip
        _settings(rapi, plat.building, _rule())
        _settings(rapi, out.building, _rule(strikes=2))
        _settings(rapi, delegated, _rule())
        huddle = rapi.get(f"buildings/{out.building}/resources/r-huddle4b").json()
        put = rapi.put(
            f"buildings/{out.building}/resources/r-huddle4b",
            json={k: huddle[k] for k in ("name", "kind", "timeZone")} | {"autoRelease": _rule(1)},
        )
        assert put.status_code == 200, put.text
        wait_sync_quiet(rstack, [plat.building, out.building, delegated], timeout=30)

        start = (datetime.now(UTC) - STARTED).replace(microsecond=0)
        due = start + GRACE
        a = _book(rapi, plat.building, "r-boardroom4a", start)
        b = _book(rapi, plat.building, "r-huddle4b", start)
        c = _book(rapi, plat.building, "r-focus3c", start)
        b_checkins = (
            _checkin(rapi, plat.building, b["id"], by="ann@example.com"),
            _checkin(rapi, plat.building, b["id"]),
        )
        emma = out.tenant["users"]["emma"]
        rooms = {r: out.mailbox(f"r-{r}") for r in ("boardroom4a", "huddle4b", "focus3c")}
        outlook(rstack, "POST", f"users/{emma['mail']}/events",
                json=_event("Quarterly plan", start, rooms["boardroom4a"]))  # fmt: skip
        outlook(rstack, "POST", f"users/{emma['mail']}/events",
                json=_event("Daily sync", start, rooms["huddle4b"], **_daily(start)))  # fmt: skip
        outlook(rstack, "POST", f"users/{emma['mail']}/events",
                json=_event("Daily review", start, rooms["focus3c"], **_daily(start)))  # fmt: skip
        outlook(rstack, "POST", f"users/{admin['userPrincipalName']}/events",
                json={**_event("Admin's hold", start, None), "calendarId": own["id"]})  # fmt: skip
        outlook_ids = {
            "D": _outlook_booking(rapi, out.building, "r-boardroom4a", start),
            "S1": _outlook_booking(rapi, out.building, "r-huddle4b", start),
            "S2": _outlook_booking(rapi, out.building, "r-focus3c", start),
            "E": _outlook_booking(rapi, delegated, "own", start),
        }
        # Before anything is due, the timer touches nothing.
        early = _timer_counts(rstack, 1)
        _sleep_until(due - timedelta(seconds=1))
        c_checkin_at = datetime.now(UTC)
        c_checkin = _checkin(rapi, plat.building, c["id"])
        stats_before = _decline_count(rstack)
        _sleep_until(due + timedelta(milliseconds=300))
        counts = _timer_counts(rstack, 2)
        assert early == Counter(), early
        wait_sync_quiet(rstack, [plat.building, out.building, delegated], timeout=30)
        stats_after = _decline_count(rstack)
    return Run(plat, out, delegated, start, a, b, c, b_checkins, c_checkin, c_checkin_at, due,
               outlook_ids, counts, stats_before, stats_after, emma)  # fmt: skip


def _booking(api: httpx.Client, building: str, booking_id: str) -> httpx.Response:
    return api.get(f"buildings/{building}/bookings/{booking_id}")


def _platform_events(stack: Stack, run: Run, room: str) -> list[dict[str, Any]]:
    """The platform bookings' events in a room of `plat`: each room has one, booked by Ann (the
    default subject is "<room> – <booker>"; the emulator's control API lists regular ids, our
    bookings keep immutable ones, so they are found by subject)."""
    events = outlook_events(stack, run.plat.mailbox(f"r-{room}"), run.plat.tenant)
    return [e for e in events if e["subject"].endswith("– Ann") and not e.get("isCancelled")]


def _room_view(stack: Stack, run: Run, room: str) -> list[dict[str, Any]]:
    """The events (singles and series masters) in the room's own calendar from the start on,
    as the emulator holds them."""
    mailbox = run.out.mailbox(f"r-{room}")
    return [
        e for e in outlook_events(stack, mailbox, run.out.tenant)
        if not e.get("isCancelled")
        and e["start"]["dateTime"][:19] >= run.start.strftime("%Y-%m-%dT%H:%M:%S")
    ]  # fmt: skip


def test_the_timer_released_each_no_show_once(rstack: Stack, run: Run) -> None:
    # Two runs at once: A released, D and both series' first occurrences declined, S1's series
    # ended, E counted, B and C marked required; nothing done twice (a loser says contended).
    expected = Counter(released=1, checked_in=2, declined=2, series_declined=1, no_show=1)
    assert {k: v for k, v in run.counts.items() if k != "contended"} == expected, run.counts
    grew = {e: run.stats_after.get(e, 0) - run.stats_before.get(e, 0) for e in run.stats_after}
    # Graph saw three occurrence declines and one series decline, and one event deleted (A's).
    assert grew.get(DECLINE) == 4, grew
    assert (
        grew.get("DELETE /users/{id}/events/{id}", 0)
        + grew.get("DELETE /users/{id}/calendars/{id}/events/{id}", 0)
        == 1
    ), grew
    assert _timer_counts(rstack, 1) == Counter()  # a run after that changes nothing


def test_an_unchecked_platform_booking_is_released_and_leaves_outlook(
    rstack: Stack, rapi: httpx.Client, run: Run
) -> None:
    got = _booking(rapi, run.plat.building, run.a["id"])
    assert got.status_code == 200, got.text
    booking = got.json()
    assert booking["status"] == "released"
    attendance = booking["attendance"]
    assert attendance["state"] == "released" and attendance["required"] is True
    assert attendance["checkedInAt"] is None and attendance["releasedAt"] >= _z(run.due)
    assert _platform_events(rstack, run, "boardroom4a") == []  # cancelled in Outlook
    listed = rapi.get(
        f"buildings/{run.plat.building}/bookings",
        params={"from": _z(run.start - timedelta(hours=1)), "to": _z(run.start + timedelta(hours=2)),
                "status": "released"},
    )  # fmt: skip
    assert [b["id"] for b in listed.json()["value"]] == [run.a["id"]], listed.text
    # The slot is free again: the room can be booked for the rest of the hour.
    free = rapi.get(
        f"buildings/{run.plat.building}/availability",
        params={"from": _z(run.start), "to": _z(run.start + timedelta(hours=1)),
                "resourceId": "r-boardroom4a"},
    )  # fmt: skip
    assert free.json()["resources"][0]["busy"] == [], free.text
    late = _checkin(rapi, run.plat.building, run.a["id"])
    assert late.status_code == 409 and late.json()["reason"] == "booking_released", late.text


def test_checked_in_bookings_stay_and_a_check_in_a_second_before_wins(
    rstack: Stack, rapi: httpx.Client, run: Run
) -> None:
    first, again = run.b_checkins
    assert first.status_code == 201, first.text
    assert first.json()["by"] == "ann@example.com" and first.json()["state"] == "checked_in"
    assert again.status_code == 200 and again.json() == first.json()  # idempotent
    assert run.c_checkin.status_code == 201, run.c_checkin.text
    assert (run.due - run.c_checkin_at).total_seconds() <= 1.2  # a second before it was due
    for booking in (run.b, run.c):
        got = _booking(rapi, run.plat.building, booking["id"]).json()
        assert got["status"] == "confirmed"
        assert got["attendance"]["state"] == "checked_in" and got["attendance"]["required"]
    # Their events are still in the rooms' calendars.
    assert len(_platform_events(rstack, run, "huddle4b")) == 1
    assert len(_platform_events(rstack, run, "focus3c")) == 1
    too_late = _checkin(rapi, run.plat.building, run.b["id"])
    assert too_late.status_code == 200  # checked in already: the stored record, not an error


def test_an_outlook_booking_on_a_room_is_declined_as_the_room(
    rstack: Stack, rapi: httpx.Client, run: Run
) -> None:
    assert _room_view(rstack, run, "boardroom4a") == []  # gone from the room's calendar
    organizer = [
        e for e in outlook_events(rstack, run.emma["mail"], run.out.tenant)
        if e["subject"] == "Quarterly plan"
    ]  # fmt: skip
    (meeting,) = organizer
    (room,) = [a for a in meeting["attendees"] if a["type"] == "resource"]
    assert room["status"]["response"] == "declined"  # the organizer got the room's answer
    gone = _booking(rapi, run.out.building, run.outlook_ids["D"])
    assert gone.status_code == 404  # the block left with the room's copy


def test_recurring_strikes_end_the_series_after_n(
    rstack: Stack, rapi: httpx.Client, run: Run
) -> None:
    # Huddle 4B (its own recurringStrikes: 1): one released occurrence ends the series there.
    assert _room_view(rstack, run, "huddle4b") == []
    # Focus 3C (the building's recurringStrikes: 2): after one, the later occurrences stay.
    left = _room_view(rstack, run, "focus3c")
    assert [e["type"] for e in left] == ["seriesMaster"], left

    def outlook_bookings() -> Counter[str]:
        listed = rapi.get(
            f"buildings/{run.out.building}/bookings",
            params={"from": _z(run.start), "to": _z(run.start + timedelta(days=3)),
                    "source": "outlook"},
        )  # fmt: skip
        assert listed.status_code == 200, listed.text
        return Counter(b["resourceId"] for b in listed.json()["value"])

    # Occurrences 2 and 3 of S2 are still booked; S1's left with its series (sync removed them).
    expected = Counter({"r-focus3c": 2})
    assert wait_until(lambda: outlook_bookings() == expected, timeout=10), outlook_bookings()


def test_a_delegated_booking_is_counted_as_a_no_show_and_left_alone(
    rstack: Stack, rapi: httpx.Client, run: Run
) -> None:
    got = _booking(rapi, run.delegated, run.outlook_ids["E"])
    assert got.status_code == 200, got.text
    attendance = got.json()["attendance"]
    assert (attendance["state"], attendance["reason"], attendance["required"]) == (
        "no_show", "delegated_mode", True,
    )  # fmt: skip
    admin = rstack.emulator.seed["tenant"]["users"]["admin"]
    hold = [
        e for e in outlook_events(rstack, admin["userPrincipalName"], {"id": rstack.endpoints["tenantId"]})
        if e["subject"] == "Admin's hold"
    ]  # fmt: skip
    assert len(hold) == 1 and not hold[0].get("isCancelled")


def test_analytics_count_the_no_shows(rapi: httpx.Client, run: Run) -> None:
    day = run.start.date().isoformat()
    got = rapi.get(f"buildings/{run.plat.building}/analytics", params={"from": day, "to": day})
    assert got.status_code == 200, got.text
    totals = got.json()["totals"]
    # A, B, C all required check-in; A was released.
    assert (totals["bookings"], totals["checkInRequired"], totals["noShows"], totals["released"]) == (
        3, 3, 1, 1,
    ), totals  # fmt: skip
    assert totals["noShowRate"] == 0.3333  # rounded to four places, as documented
