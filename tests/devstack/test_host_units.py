"""Unit tests for the local Functions host's pure parts: schedules, route templates, config."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.host.config import (
    HostConfigError,
    HostKeys,
    apply_settings,
    load_host_config,
    resolve_setting_expressions,
)
from devstack.host.routes import RouteTemplate, RouteTemplateError
from devstack.host.schedules import (
    CronSchedule,
    IntervalSchedule,
    ScheduleError,
    parse_schedule,
    parse_timespan,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[arg-type, misc]


# -- NCRONTAB ---------------------------------------------------------------------------------


def occurrences(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(expression)
    found: list[datetime] = []
    moment = start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(moment)
    return found


def test_every_second_and_every_five_minutes() -> None:
    start = utc(2024, 3, 1, 12, 0, 0)
    assert occurrences("* * * * * *", start, 2) == [
        utc(2024, 3, 1, 12, 0, 1),
        utc(2024, 3, 1, 12, 0, 2),
    ]
    assert occurrences("0 */5 * * * *", start, 3) == [
        utc(2024, 3, 1, 12, 5),
        utc(2024, 3, 1, 12, 10),
        utc(2024, 3, 1, 12, 15),
    ]


def test_next_is_strictly_after_and_ignores_microseconds() -> None:
    schedule = parse_schedule("30 * * * * *")
    assert schedule.next_after(utc(2024, 1, 1, 0, 0, 30)) == utc(2024, 1, 1, 0, 1, 30)
    assert schedule.next_after(datetime(2024, 1, 1, 0, 0, 29, 999_000, tzinfo=UTC)) == utc(
        2024, 1, 1, 0, 0, 30
    )


def test_lists_ranges_steps_and_names() -> None:
    # 09:30 and 17:30 on weekdays in January and July.
    expression = "0 30 9,17 * Jan,jul mon-FRI"
    found = occurrences(expression, utc(2024, 1, 5, 18, 0, 0), 3)  # Friday evening
    assert found == [utc(2024, 1, 8, 9, 30), utc(2024, 1, 8, 17, 30), utc(2024, 1, 9, 9, 30)]
    cron = CronSchedule.parse("0 0 8-18/2 * * *")
    assert cron.hours == frozenset({8, 10, 12, 14, 16, 18})
    assert CronSchedule.parse("5/20 * * * * *").seconds == frozenset({5, 25, 45})
    assert CronSchedule.parse("0 0 0 * * Sunday,saturday").weekdays == frozenset({0, 6})
    assert CronSchedule.parse("0 0 0 1 December *").months == frozenset({12})


def test_day_of_month_and_day_of_week_must_both_match() -> None:
    # NCrontab semantics (AND), not Vixie cron's OR: the 13th only when it is a Friday.
    found = occurrences("0 0 0 13 * 5", utc(2024, 1, 1), 2)
    assert found == [utc(2024, 9, 13), utc(2024, 12, 13)]
    assert all(d.weekday() == 4 for d in found)


def test_leap_day_and_month_rollover() -> None:
    assert occurrences("0 0 12 29 2 *", utc(2023, 3, 1), 1) == [utc(2024, 2, 29, 12)]
    assert occurrences("59 59 23 31 12 *", utc(2024, 6, 1), 1) == [utc(2024, 12, 31, 23, 59, 59)]


@pytest.mark.parametrize(
    "expression",
    [
        "0 */5 * * *",  # five fields: NCRONTAB with seconds has six
        "60 * * * * *",
        "* * 24 * * *",
        "* * * 0 * *",
        "* * * * 13 *",
        "* * * * * 7",
        "* * * * * fri-mon",
        "*/0 * * * * *",
        "a * * * * *",
        "1,,2 * * * * *",
        "0 0 0 31 2 *",  # parses, never fires
    ],
)
def test_bad_cron_expressions_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(expression)


def test_timespan_schedules_and_values() -> None:
    schedule = parse_schedule("00:05:00")
    assert isinstance(schedule, IntervalSchedule)
    assert schedule.next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 0, 5)
    assert parse_timespan("1.02:03:04") == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert parse_timespan("00:00:00.5") == timedelta(milliseconds=500)
    for bad in ("00:60:00", "1:2", "abc", "24:00:00"):
        with pytest.raises(ScheduleError):
            parse_timespan(bad)
    with pytest.raises(ScheduleError):
        parse_schedule("00:00:00")


# -- route templates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("items", "/items", {}),
        ("items", "/ITEMS/", {}),  # literals ignore case; one trailing slash is fine
        ("items/{id}", "/items/abc", {"id": "abc"}),
        ("items/{id}", "/items", None),
        ("items/{id}", "/items/a/b", None),
        ("items/{id:int}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/-7", {"id": "-7"}),
        ("items/{id:int}", "/items/4x2", None),
        ("items/{id:int}", "/items/2147483648", None),  # int is 32-bit, as in .NET
        ("items/{id:long}", "/items/2147483648", {"id": "2147483648"}),
        ("items/{name:alpha}", "/items/Abc", {"name": "Abc"}),
        ("items/{name:alpha}", "/items/ab1", None),
        (
            "k/{key:guid}",
            "/k/5f0c7c1e-7d0f-4a3b-9a51-0c1f1f1f1f1f",
            {"key": "5f0c7c1e-7d0f-4a3b-9a51-0c1f1f1f1f1f"},
        ),
        ("k/{key:guid}", "/k/not-a-guid", None),
        ("b/{flag:bool}", "/b/TRUE", {"flag": "TRUE"}),
        ("b/{flag:bool}", "/b/yes", None),
        ("d/{when:datetime}", "/d/2024-05-01T10:00:00", {"when": "2024-05-01T10:00:00"}),
        ("d/{when:datetime}", "/d/yesterday", None),
        ("n/{x:double}", "/n/1.5", {"x": "1.5"}),
        ("n/{x:decimal}", "/n/abc", None),
        ("s/{code:length(3)}", "/s/abc", {"code": "abc"}),
        ("s/{code:length(3)}", "/s/abcd", None),
        ("s/{code:length(2,4)}", "/s/abcd", {"code": "abcd"}),
        ("s/{code:minlength(2)}", "/s/a", None),
        ("s/{code:maxlength(2)}", "/s/abc", None),
        ("r/{n:min(10)}", "/r/9", None),
        ("r/{n:min(10)}", "/r/10", {"n": "10"}),
        ("r/{n:max(10)}", "/r/11", None),
        ("r/{n:range(1,3)}", "/r/3", {"n": "3"}),
        ("r/{n:int:min(1)}", "/r/0", None),
        ("x/{code:regex(^[a-z]{{2}}\\d$)}", "/x/ab1", {"code": "ab1"}),
        ("x/{code:regex(^[a-z]{{2}}\\d$)}", "/x/abc", None),
        ("pages/{page?}", "/pages", {}),
        ("pages/{page?}", "/pages/3", {"page": "3"}),
        ("pages/{page=1}", "/pages", {"page": "1"}),
        ("pages/{page:int?}", "/pages/x", None),
        ("files/{*path}", "/files", {}),
        ("files/{*path}", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{**path}", "/files/a%2Fb/c", {"path": "a/b/c"}),
        ("files/{name}.{ext}", "/files/report.final.pdf", {"name": "report.final", "ext": "pdf"}),
        ("v{version:int}/things", "/v2/things", {"version": "2"}),
        ("v{version:int}/things", "/vx/things", None),
        ("", "/", {}),
        ("a/{b}", "/a/hello%20world", {"b": "hello world"}),
    ],
)
def test_route_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    [
        "items/{id",
        "items/id}",
        "items/{id:nope}",
        "items/{*rest}/more",
        "items/{id?}/more",
        "a/{x}{y}",
        "a/{x}/{X}",
        "a//b",
        "a/{x:length(a)}",
        "a/{*x?}",
    ],
)
def test_bad_route_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate.parse(template)


def test_route_precedence_prefers_the_most_specific() -> None:
    templates = [
        "items/{*rest}",
        "items/{name}",
        "items/{id:int}",
        "items/special",
        "items/{a}.{b}",
    ]
    ordered = sorted(templates, key=lambda t: RouteTemplate.parse(t).precedence)
    assert ordered == [
        "items/special",
        "items/{a}.{b}",
        "items/{id:int}",
        "items/{name}",
        "items/{*rest}",
    ]


# -- configuration ----------------------------------------------------------------------------


def test_host_json_defaults_and_overrides(tmp_path: Path) -> None:
    defaults = load_host_config(tmp_path, {})
    assert defaults.route_prefix == "api"
    assert defaults.queues.max_dequeue_count == 5
    assert defaults.queues.visibility_timeout == timedelta(0)
    assert (defaults.queues.batch_size, defaults.queues.new_batch_threshold) == (16, 8)

    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {"visibilityTimeout": "00:00:10", "batchSize": 4},
                },
            }
        )
    )
    environ = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "azurefunctionsjobhost__Extensions__Queues__MaxDequeueCount": "2",
    }
    config = load_host_config(tmp_path, environ)
    assert config.route_prefix == ""
    assert config.queues.visibility_timeout == timedelta(seconds=1)
    assert config.queues.max_dequeue_count == 2
    assert (config.queues.batch_size, config.queues.new_batch_threshold) == (4, 2)

    (tmp_path / "host.json").write_text('{"extensions": {"queues": {"batchSize": 64}}}')
    with pytest.raises(HostConfigError, match="batchSize"):
        load_host_config(tmp_path, {})


def test_settings_do_not_override_the_environment() -> None:
    environ = {"A": "from-env"}
    skipped = apply_settings({"A": "from-file", "B": "b"}, environ)
    assert environ == {"A": "from-env", "B": "b"}
    assert skipped == ["A"]


def test_setting_expressions() -> None:
    assert resolve_setting_expressions("%Q%-in", "x", {"Q": "work"}) == "work-in"
    with pytest.raises(HostConfigError, match="MISSING"):
        resolve_setting_expressions("%MISSING%", "function f schedule", {})


def test_keys_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.json"
    created = HostKeys.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(created.master_key) >= 32 and created.function_keys["default"]
    assert created.master_key != created.function_keys["default"]
    assert HostKeys.load_or_create(path) == created

    path.write_text('{"functionKeys": {}}')
    with pytest.raises(HostConfigError, match="masterKey"):
        HostKeys.load_or_create(path)


def test_local_servers_listen_with_nagle_off() -> None:
    """The host's and the emulators' sockets: asyncio keeps Nagle off on their connections only
    when the socket says TCP (proto), and connections inherit TCP_NODELAY from it (issue 17: it
    was 40 ms on every call)."""
    import socket

    from devstack.procs import tcp_server_socket

    with tcp_server_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert sock.getsockname()[1] > 0
