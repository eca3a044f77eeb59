"""Timer schedules as Azure Functions reads them: six-field NCRONTAB and TimeSpan.

NCRONTAB is `{second} {minute} {hour} {day} {month} {day-of-week}` (the NCrontab library with
seconds, which is what the Functions timer trigger uses). Each field takes `*`, a number, a range
`a-b`, a step `*/n`, `a-b/n` or `a/n`, and comma-separated lists of those; months and days of the
week also take English names (`Jan`, `January`, `Mon`, `Monday`, case-insensitive). Day of week is
0-6 with Sunday = 0.

Two NCrontab behaviours that differ from Vixie cron, kept on purpose so a schedule that works here
works in Azure: five-field expressions are rejected, and when both day-of-month and day-of-week are
restricted a time must match both (AND, not cron's OR).

A TimeSpan schedule (`hh:mm:ss` or `d.hh:mm:ss`) fires at that fixed interval. All times are UTC
(the Functions default when WEBSITE_TIME_ZONE is unset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH_NAMES = {name: i + 1 for i, name in enumerate(_MONTHS)} | {
    full: i + 1
    for i, full in enumerate(
        [
            "january", "february", "march", "april", "may", "june", "july", "august",
            "september", "october", "november", "december",
        ]
    )
}  # fmt: skip
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAY_NAMES = {name: i for i, name in enumerate(_DAYS)} | {
    full: i
    for i, full in enumerate(
        ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    )
}


class ScheduleError(ValueError):
    """A schedule expression that Azure would refuse to index."""


class Schedule(Protocol):
    """What the timer runner needs from a schedule."""

    @property
    def expression(self) -> str:
        """The schedule as written (after %SETTING% resolution)."""
        ...

    def next_after(self, moment: datetime) -> datetime:
        """The first firing time strictly after `moment` (aware, UTC)."""
        ...


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("second", 0, 59, {}),
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day", 1, 31, {}),
    _Field("month", 1, 12, _MONTH_NAMES),
    _Field("day-of-week", 0, 6, _DAY_NAMES),
)


def _value(text: str, field: _Field) -> int:
    lowered = text.strip().lower()
    if lowered in field.names:
        return field.names[lowered]
    if not lowered.isdigit():
        raise ScheduleError(f"{field.name}: {text!r} is not a number or a known name")
    value = int(lowered)
    if not field.low <= value <= field.high:
        raise ScheduleError(f"{field.name}: {value} is outside {field.low}-{field.high}")
    return value


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{field.name}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field.name}: bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _value(first, field), _value(last, field)
            if low > high:
                # NCrontab has no wrap-around ranges (`fri-mon`); say so instead of firing never.
                raise ScheduleError(f"{field.name}: range {base!r} runs backwards")
        else:
            low = _value(base, field)
            # `a/n` means "from a to the end, every n", as in cron.
            high = field.high if slash else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed six-field NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(
                f"{expression!r}: NCRONTAB needs six fields "
                "({second} {minute} {hour} {day} {month} {day-of-week}), "
                f"got {len(parts)}"
            )
        fields = [_parse_field(text, field) for text, field in zip(parts, _FIELDS, strict=True)]
        schedule = cls(expression, *fields)
        # An expression such as "0 0 0 31 2 *" parses but never fires; Azure refuses it too.
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        return schedule

    def _day_matches(self, moment: datetime) -> bool:
        # Python: Monday = 0; NCRONTAB: Sunday = 0.
        return moment.day in self.days and (moment.weekday() + 1) % 7 in self.weekdays

    def next_after(self, moment: datetime) -> datetime:
        # Walk forward field by field, coarsest first, jumping to the start of the next
        # month/day/hour/minute whenever a field does not match: at most a few thousand steps.
        t = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t.year + 30  # leap-day schedules repeat within 8 years; 30 is generous
        while t.year <= limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        raise ScheduleError(f"{self.expression!r} never fires")


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan as host.json and timer schedules write it: `[d.]hh:mm:ss[.fff]`."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ScheduleError(f"{text!r} is not a TimeSpan ([d.]hh:mm:ss)")
    days, hours, minutes, seconds = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or float(seconds) >= 60:
        raise ScheduleError(f"{text!r} is not a TimeSpan (hours < 24, minutes and seconds < 60)")
    return timedelta(
        days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds)
    )


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule: fires every `interval`, counted from the previous firing."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment.astimezone(UTC) + self.interval


def parse_schedule(expression: str) -> Schedule:
    """Parse a timer schedule (after %SETTING% resolution): NCRONTAB or TimeSpan."""
    text = expression.strip()
    if ":" in text and " " not in text:
        interval = parse_timespan(text)
        if interval <= timedelta(0):
            raise ScheduleError(f"{expression!r}: a TimeSpan schedule must be positive")
        return IntervalSchedule(text, interval)
    return CronSchedule.parse(text)
