"""shared/core/times: Graph dateTimeTimeZone and RFC 3339, read and written one way."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone

import pytest
from tzlocal.windows_tz import win_tz

from devstack.m365.graph.timezones import WINDOWS_TO_IANA
from shared.core import times
from shared.core.times import TimeUnreadable, UnknownTimeZone

# The IANA names Graph documents for dateTimeTimeZone.timeZone, as listed in
# microsoftgraph/microsoft-graph-docs-contrib api-reference/v1.0/resources/datetimetimezone.md
# (copied 2026-12; "Europe/Kyiv (Kiev)" style entries give both spellings), plus the two the
# supportedTimeZones(TimeZoneStandard='Iana') example returns (api/outlookuser-supportedtimezones.md).
GRAPH_IANA = [
    "Etc/GMT+12",
    "Etc/GMT+11",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Santa_Isabel",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/Chihuahua",
    "America/Denver",
    "America/Guatemala",
    "America/Chicago",
    "America/Mexico_City",
    "America/Regina",
    "America/Bogota",
    "America/New_York",
    "America/Indiana/Indianapolis",
    "America/Caracas",
    "America/Asuncion",
    "America/Halifax",
    "America/Cuiaba",
    "America/La_Paz",
    "America/Santiago",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "America/Cayenne",
    "America/Godthab",
    "America/Montevideo",
    "America/Bahia",
    "Etc/GMT+2",
    "Atlantic/Azores",
    "Atlantic/Cape_Verde",
    "Africa/Casablanca",
    "Etc/GMT",
    "Europe/London",
    "Atlantic/Reykjavik",
    "Europe/Berlin",
    "Europe/Budapest",
    "Europe/Paris",
    "Europe/Warsaw",
    "Africa/Lagos",
    "Africa/Windhoek",
    "Europe/Bucharest",
    "Asia/Beirut",
    "Africa/Cairo",
    "Asia/Damascus",
    "Africa/Johannesburg",
    "Europe/Kyiv",
    "Europe/Kiev",
    "Europe/Istanbul",
    "Asia/Jerusalem",
    "Asia/Amman",
    "Asia/Baghdad",
    "Europe/Kaliningrad",
    "Asia/Riyadh",
    "Africa/Nairobi",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Baku",
    "Europe/Moscow",
    "Indian/Mauritius",
    "Asia/Tbilisi",
    "Asia/Yerevan",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Toshkent",
    "Asia/Tashkent",
    "Asia/Kolkata",
    "Asia/Colombo",
    "Asia/Kathmandu",
    "Asia/Astana",
    "Asia/Almaty",
    "Asia/Dhaka",
    "Asia/Yekaterinburg",
    "Asia/Yangon",
    "Asia/Rangoon",
    "Asia/Bangkok",
    "Asia/Novosibirsk",
    "Asia/Shanghai",
    "Asia/Krasnoyarsk",
    "Asia/Singapore",
    "Australia/Perth",
    "Asia/Taipei",
    "Asia/Ulaanbaatar",
    "Asia/Irkutsk",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Australia/Adelaide",
    "Australia/Darwin",
    "Australia/Brisbane",
    "Australia/Sydney",
    "Pacific/Port_Moresby",
    "Australia/Hobart",
    "Asia/Yakutsk",
    "Pacific/Guadalcanal",
    "Asia/Vladivostok",
    "Pacific/Auckland",
    "Etc/GMT-12",
    "Pacific/Fiji",
    "Asia/Magadan",
    "Pacific/Tongatapu",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "US/Samoa",
    "US/Aleutian",
]

# Windows names in Graph's own examples (outlookuser-supportedtimezones.md, mailboxsettings.md,
# the Prefer: outlook.timezone examples in event and calendarView pages).
GRAPH_WINDOWS = [
    "Dateline Standard Time",
    "Samoa Standard Time",
    "UTC-11",
    "Aleutian Standard Time",
    "Pacific Standard Time",
    "Eastern Standard Time",
    "W. Europe Standard Time",
    "UTC",
]

# Instants on which to compare two mappings: winter, summer, and both sides of a southern DST.
PROBES = [datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC)]


@pytest.mark.parametrize("name", sorted(win_tz))
def test_every_cldr_windows_zone_resolves(name: str) -> None:
    assert isinstance(times.zone(name), zoneinfo.ZoneInfo | type(UTC))


@pytest.mark.parametrize("name", sorted(WINDOWS_TO_IANA))
def test_windows_zones_agree_with_the_emulator_table(name: str) -> None:
    # Two independent tables (CLDR via tzlocal; the emulator's own, written from Graph's docs)
    # must name zones with the same offsets, or our reading of Graph and Graph's writing differ.
    ours, theirs = times.zone(name), zoneinfo.ZoneInfo(WINDOWS_TO_IANA[name])
    for probe in PROBES:
        assert probe.astimezone(ours).utcoffset() == probe.astimezone(theirs).utcoffset(), name


@pytest.mark.parametrize("name", GRAPH_IANA + GRAPH_WINDOWS)
def test_every_zone_graph_documents_is_read(name: str) -> None:
    moment = times.parse_graph_time({"dateTime": "2026-12-01T09:00:00.0000000", "timeZone": name})
    assert moment.tzinfo is UTC
    assert abs(moment - datetime(2026, 12, 1, 9, tzinfo=UTC)) <= timedelta(hours=14)


@pytest.mark.parametrize(
    ("zone", "wall", "utc"),
    [
        ("W. Europe Standard Time", "2026-03-29T01:59:59", "2026-03-29T00:59:59"),
        ("W. Europe Standard Time", "2026-03-29T03:00:00", "2026-03-29T01:00:00"),
        ("Europe/Berlin", "2026-10-25T03:30:00", "2026-10-25T02:30:00"),
        ("Pacific Standard Time", "2026-03-08T03:00:00", "2026-03-08T10:00:00"),
        ("Pacific Standard Time", "2026-11-01T00:30:00", "2026-11-01T07:30:00"),
        ("AUS Eastern Standard Time", "2026-04-05T03:30:00", "2026-04-04T17:30:00"),
        ("India Standard Time", "2026-12-01T09:00:00", "2026-12-01T03:30:00"),
        ("Nepal Standard Time", "2026-12-01T09:00:00", "2026-12-01T03:15:00"),
        ("UTC", "2026-12-01T09:00:00.1234567", "2026-12-01T09:00:00.123456"),
        ("Coordinated Universal Time", "2026-12-01T09:00:00", "2026-12-01T09:00:00"),
        ("Asia/Toshkent", "2026-12-01T09:00:00", "2026-12-01T04:00:00"),
    ],
)
def test_wall_times_convert_across_dst_edges(zone: str, wall: str, utc: str) -> None:
    moment = times.parse_graph_time({"dateTime": wall, "timeZone": zone})
    assert moment == datetime.fromisoformat(utc).replace(tzinfo=UTC)


def test_an_offset_inside_datetime_wins() -> None:
    value = {"dateTime": "2026-12-01T09:00:00+02:00", "timeZone": "UTC"}
    assert times.parse_graph_time(value) == datetime(2026, 12, 1, 7, tzinfo=UTC)


@pytest.mark.parametrize("name", ["Mars Standard Time", "Europe/Atlantis", "", "../etc/passwd"])
def test_an_unknown_zone_is_an_error_never_utc(name: str) -> None:
    with pytest.raises(TimeUnreadable) as caught:
        times.parse_graph_time({"dateTime": "2026-12-01T09:00:00", "timeZone": name})
    if name.strip():
        assert isinstance(caught.value, UnknownTimeZone)
        assert caught.value.name == name and repr(name) in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "2026-12-01T09:00:00Z",
        {"dateTime": "2026-12-01T09:00:00"},
        {"dateTime": 5, "timeZone": "UTC"},
        {"dateTime": "tomorrow", "timeZone": "UTC"},
        {"dateTime": "2026-13-01T09:00:00", "timeZone": "UTC"},
        {"dateTime": "2026-12-01", "timeZone": "UTC"},
    ],
)
def test_unreadable_datetimetimezone_values_are_refused(value: object) -> None:
    with pytest.raises(TimeUnreadable):
        times.parse_graph_time(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:00:00Z", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T09:00:00z", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ("2026-12-01T09:00:00.9356913Z", datetime(2026, 12, 1, 9, 0, 0, 935691, tzinfo=UTC)),
        ("2026-12-01T10:30:00+01:30", datetime(2026, 12, 1, 9, tzinfo=UTC)),
        (" 2026-12-01T04:00:00-05:00 ", datetime(2026, 12, 1, 9, tzinfo=UTC)),
    ],
)
def test_rfc3339_with_a_zone_is_read_as_utc(text: str, expected: datetime) -> None:
    parsed = times.parse_rfc3339(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["2026-12-01T09:00:00", "2026-12-01", "", "soon", "2026-12-01T25:00:00Z", None, 17]
)
def test_rfc3339_without_a_zone_or_unreadable_is_refused(text: object) -> None:
    with pytest.raises(TimeUnreadable):
        times.parse_rfc3339(text)


def test_utc_z_writes_seconds_or_milliseconds_and_round_trips() -> None:
    moment = datetime(2026, 12, 1, 10, 0, 0, 987654, tzinfo=timezone(timedelta(hours=1)))
    assert times.utc_z(moment) == "2026-12-01T09:00:00Z"
    assert times.utc_z(moment, "milliseconds") == "2026-12-01T09:00:00.987Z"
    assert times.parse_rfc3339(times.utc_z(moment)) == moment.replace(microsecond=0)
    with pytest.raises(ValueError, match="naive"):
        times.utc_z(datetime(2026, 12, 1, 9))


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        # An ordinary wall time in the resource's zone.
        (datetime(2026, 12, 1, 8, tzinfo=UTC), "Europe/Berlin", ("2026-12-01T09:00:00", "Europe/Berlin")),
        # The repeated hour of the autumn change: two readings, so UTC says which.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "Europe/Berlin", ("2026-10-25T00:30:00", "UTC")),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "Europe/Berlin", ("2026-10-25T01:30:00", "UTC")),
        # Windows names are written as given; an unknown zone falls back to exact UTC.
        (datetime(2026, 12, 1, 17, tzinfo=UTC), "Pacific Standard Time", ("2026-12-01T09:00:00", "Pacific Standard Time")),
        (datetime(2026, 12, 1, 9, tzinfo=UTC), "Nowhere/Special", ("2026-12-01T09:00:00", "UTC")),
    ],
)  # fmt: skip
def test_graph_time_writes_an_unambiguous_wall_time(
    instant: datetime, zone: str, expected: tuple[str, str]
) -> None:
    written = times.graph_time(instant, zone)
    assert (written["dateTime"], written["timeZone"]) == expected
    assert times.parse_graph_time(written) == instant
