"""`make demo` (devstack/demo.py) end to end: its `main()` against a fresh stack of its own, run
again and again at awkward times of day, must exit 0 each time.

Time: the Functions host takes "now" from this machine's clock, which a test cannot move. The
emulator's clock can move (control API), but the host judges the emulator's tokens on its own
clock: with the emulator ahead by more than the host's leeway (60 s) every bearer token is "not yet
valid" (`nbf`) and the API answers 401, so a moved emulator clock would only test that. (Shifting
the host's clock alone is no better: the sync compares its round times with Azurite's queue
insertion times.) So the demo takes its "now" as an argument (default: this machine's clock, the
host's), and each case sets it to the next moment the given clock shows the given time: ahead of
the host's clock by less than a day. What the demo then books ("tomorrow" for it, at most two days
ahead for the host) is in the future for the host too and well inside its sync window ([today − 1,
today + 60] UTC days), so the host sees what it would see if it were that time; the only thing that
depends on the time of day is the demo's choice of slot, which is what this test is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from devstack import demo
from devstack.stack import Stack, start_stack

pytestmark = pytest.mark.timeout(180)

BUILDING = ZoneInfo(demo.TIME_ZONE)


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Its own stack: the demo uses the demo building and tenant, which other tests share."""
    running = start_stack(tmp_path_factory.mktemp("demo-stack"))
    try:
        yield running
    finally:
        running.stop()


def next_time(zone: ZoneInfo, wall: time, after: datetime) -> datetime:
    """The first instant after `after` at which a clock in `zone` shows `wall` (UTC)."""
    local = after.astimezone(zone)
    for days in range(3):  # a wall time a DST change skips is there again the day after
        candidate = datetime.combine(local.date() + timedelta(days=days), wall, tzinfo=zone)
        exists = candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if candidate.astimezone(UTC) > after and exists == candidate.replace(tzinfo=None):
            return candidate.astimezone(UTC)
    raise AssertionError(f"{wall} never happens in {zone} after {after}")


@pytest.mark.parametrize(
    ("zone", "wall"),
    [
        (BUILDING, time(23, 30)),  # half an hour before the building's tomorrow starts
        (BUILDING, time(23, 30)),  # a rerun: its first free hour is the last run's booking
        (ZoneInfo("UTC"), time(23, 30)),  # the building is already in the next day, UTC is not
        (BUILDING, time(9, 0)),  # a morning, after three runs already booked days ahead
        (BUILDING, time(9, 0)),  # and a rerun of that
    ],
    ids=["23:30-building", "23:30-building-rerun", "23:30-UTC", "09:00-building", "09:00-rerun"],
)
def test_demo_exits_0_at_any_time_of_day(
    demo_stack: Stack, zone: ZoneInfo, wall: time, capsys: pytest.CaptureFixture[str]
) -> None:
    now = next_time(zone, wall, datetime.now(UTC))
    assert now - datetime.now(UTC) < timedelta(days=1)  # ahead of the host's clock, by < a day
    try:
        code = demo.main(demo_stack.endpoints, now=now)
    except SystemExit as stopped:  # demo.check() stops on an unexpected answer
        code = stopped.code
    out = capsys.readouterr().out
    assert code == 0, out
    # The Outlook booking it made lies on the building's tomorrow (of the demo's now), on a full
    # hour of the building's clock, within the demo's day hours.
    found = re.search(r"created in Outlook at: (\S+)", out)
    assert found, out
    start = datetime.fromisoformat(found[1]).astimezone(BUILDING)
    tomorrow = now.astimezone(BUILDING).date() + timedelta(days=1)
    first, last = demo.DAY_HOURS
    assert start.date() == tomorrow, out
    assert start.minute == 0 and first <= start.hour and start.hour + 1 <= last, out
    # Times on the building's clock, privacy mode in words, and a page a person can read last.
    assert f"({start:%a %d %b %H:%M} {demo.TIME_ZONE})" in out, out
    assert f"{start:%a %d %b %H:%M}–{start.hour + 1:02}:00 outlook" in out, out
    assert "Privacy mode: the building's setting storeExternalSubjects is off" in out, out
    console = f"{demo_stack.endpoints['consoleUrl']}#/b/{demo_stack.endpoints['buildingId']}"
    assert out.rstrip().splitlines()[-1].strip() == f"{console}/bookings?date={start.date()}"


def test_free_windows_reads_merged_runs_on_the_buildings_hours() -> None:
    """Pure: one entry per free run, windows on the building's full hours and day hours."""
    now = datetime(2026, 3, 28, 22, 30, tzinfo=UTC)  # Amsterdam 23:30, before the DST change
    runs = [
        {"start": "2026-03-29T04:00:00Z", "end": "2026-03-29T08:30:00Z"},  # 06:00-10:30 (CEST)
        {"start": "2026-03-29T09:15:00Z", "end": "2026-03-29T10:15:00Z"},  # too short on the hour
        {"start": "2026-03-29T15:00:00Z", "end": "2026-03-30T06:00:00Z"},  # 17:00-08:00 next day
    ]
    got = demo.free_windows(runs, timedelta(hours=1), now, BUILDING)
    assert [t.astimezone(BUILDING).strftime("%d %H:%M") for t in got] == [
        "29 07:00", "29 08:00", "29 09:00", "29 17:00", "29 18:00", "30 07:00",
    ]  # fmt: skip
    assert all(t.tzinfo == UTC for t in got)
