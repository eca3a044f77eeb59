"""What the release timer does with one started booking (shared/attendance/decide.py): pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.attendance.decide import (
    CLAIM_LEASE,
    Decision,
    Situation,
    check_in_opens,
    decide,
    release_due,
)
from shared.attendance.model import Attendance
from shared.availability.busy import BusyBlock
from shared.directory.people import AutoRelease

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ON = AutoRelease(enabled=True, grace_minutes=10, early_minutes=15)


def block(source: str = "outlook", **fields: object) -> BusyBlock:
    return BusyBlock(
        "b1", "r1", "o-1" if source == "outlook" else "bk1", START, START + timedelta(hours=1),
        source, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def record(state: str, required: bool = False, claimed_at: datetime | None = None) -> Attendance:
    b = block()
    return Attendance(
        "b1", "r1", b.block_id, b.start, b.end, state, required,  # type: ignore[arg-type]
        claimed_at=claimed_at,
    )  # fmt: skip


def situation(**fields: object) -> Situation:
    base = Situation(block(), ON, None, "room", "application")
    return replace(base, **fields)  # type: ignore[arg-type]


AFTER_GRACE = START + timedelta(minutes=10)


@pytest.mark.parametrize(
    ("fields", "now", "expected"),
    [
        ({}, AFTER_GRACE, Decision("decline")),
        ({}, AFTER_GRACE - timedelta(seconds=1), Decision("wait")),
        ({"rule": replace(ON, enabled=False)}, AFTER_GRACE, Decision("ignore")),
        ({"is_check": True}, AFTER_GRACE, Decision("ignore")),
        ({"block": block(show_as="free")}, AFTER_GRACE, Decision("ignore")),
        ({"block": block(show_as="workingElsewhere")}, AFTER_GRACE, Decision("ignore")),
        ({"block": block(show_as="tentative")}, AFTER_GRACE, Decision("decline")),
        ({"block": block(show_as="oof")}, AFTER_GRACE, Decision("decline")),
        ({}, START + timedelta(days=1), Decision("ignore", "too_old")),
        ({}, START + timedelta(hours=1), Decision("no_show", "ended")),
        ({"block": block("platform")}, AFTER_GRACE, Decision("release")),
        ({"connection_mode": "delegated"}, AFTER_GRACE, Decision("no_show", "delegated_mode")),
        ({"connection_mode": None}, AFTER_GRACE, Decision("no_show", "delegated_mode")),
        ({"calendar_kind": "personal"}, AFTER_GRACE, Decision("no_show", "not_a_room_mailbox")),
        ({"calendar_kind": "shared"}, AFTER_GRACE, Decision("no_show", "not_a_room_mailbox")),
        # A platform booking is ours to cancel whatever the connection mode.
        (
            {"block": block("platform"), "connection_mode": "delegated"},
            AFTER_GRACE,
            Decision("release"),
        ),
        ({"record": record("checked_in")}, AFTER_GRACE, Decision("require")),
        ({"record": record("checked_in", True)}, AFTER_GRACE, Decision("ignore")),
        ({"record": record("released", True)}, AFTER_GRACE, Decision("ignore")),
        ({"record": record("no_show", True)}, AFTER_GRACE, Decision("ignore")),
        # A claim left half done is carried on, even after the end.
        ({"record": record("releasing", True)}, AFTER_GRACE, Decision("decline")),
        (
            {"record": record("releasing", True)},
            START + timedelta(hours=2),
            Decision("decline"),
        ),
        (
            {"record": record("releasing", True), "connection_mode": "delegated"},
            AFTER_GRACE,
            Decision("no_show", "delegated_mode"),
        ),
        # Another instance's claim is left to it while its lease lasts, and taken over after.
        (
            {"record": record("releasing", True, claimed_at=AFTER_GRACE)},
            AFTER_GRACE + CLAIM_LEASE - timedelta(seconds=1),
            Decision("ignore", "claimed"),
        ),
        (
            {"record": record("releasing", True, claimed_at=AFTER_GRACE)},
            AFTER_GRACE + CLAIM_LEASE,
            Decision("decline"),
        ),
        # A checked-in booking is only marked once its grace period is over.
        ({"record": record("checked_in")}, AFTER_GRACE - timedelta(minutes=1), Decision("wait")),
    ],
)
def test_decide(fields: dict[str, object], now: datetime, expected: Decision) -> None:
    assert decide(situation(**fields), now) == expected


def test_check_in_window_is_the_rules() -> None:
    assert check_in_opens(START, ON) == START - timedelta(minutes=15)
    assert release_due(START, replace(ON, grace_minutes=25)) == START + timedelta(minutes=25)
