"""The reconciliation tick's policy (shared/sync/polling.py `reconcile_reason`, DESIGN.md issue 17):
a calendar with a healthy subscription is trusted for the trust period after its last successful
round; each loss signal makes the next tick reconcile it; polled calendars need no subscription."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.sync.polling import reconcile_reason

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TRUST = timedelta(hours=4)
STARTED = NOW - timedelta(days=1)  # this process started long before the rounds below


@dataclass(frozen=True)
class Sub:
    status: str = "active"
    reason: str | None = None
    expires_at: datetime | None = NOW + timedelta(days=2)

    def to_api(self) -> dict[str, object]:
        return {}


def healthy(**changes: Any) -> dict[str, Any]:
    """A calendar whose last round (an hour ago) succeeded, watched by a subscription."""
    last = NOW - timedelta(hours=1)
    return {"polled": False, "lastStartedAt": last, "lastSyncAt": last + timedelta(seconds=1),
            **changes}  # fmt: skip


def reason(state: dict[str, Any] | None, sub: Sub | None = Sub(), **kw: Any) -> str | None:
    return reconcile_reason(
        state, lambda: sub, NOW, trust=TRUST, started=kw.get("started", STARTED)
    )


def test_a_healthy_calendar_is_trusted_within_the_trust_period() -> None:
    assert reason(healthy()) is None
    assert reason(healthy(lastStartedAt=NOW - TRUST + timedelta(seconds=1))) is None


def test_the_trust_period_ends_trust() -> None:
    assert reason(healthy(lastStartedAt=NOW - TRUST)) == "trust_expired"


def test_a_calendar_never_synced_is_due() -> None:
    assert reason(None) == "never_synced"
    assert reason({"polled": False}) == "never_synced"


def test_lifecycle_missed_makes_it_due_until_a_round_starts_after_it() -> None:
    signalled = healthy(suspectAt=NOW - timedelta(minutes=5), suspectReason="missed")
    assert reason(signalled) == "missed"
    later = NOW - timedelta(minutes=4)
    assert reason({**signalled, "lastStartedAt": later, "lastSyncAt": later}) is None


def test_changes_no_notification_announced_make_it_due() -> None:
    last = NOW - timedelta(minutes=30)
    found = healthy(lastStartedAt=last, lastSyncAt=last + timedelta(seconds=1),
                    suspectAt=last + timedelta(seconds=1), suspectReason="unannounced_changes")  # fmt: skip
    assert reason(found) == "unannounced_changes"


def test_a_failed_last_round_makes_it_due() -> None:
    state = healthy(lastErrorAt=NOW - timedelta(minutes=10))
    assert reason(state) == "last_round_failed"
    assert reason({**state, "lastSyncAt": NOW - timedelta(minutes=5)}) is None  # recovered


def test_a_failed_renewal_makes_it_due() -> None:
    assert reason(healthy(), Sub(reason="throttled")) == "subscription_failing"


def test_a_subscription_not_watching_or_expired_makes_it_due() -> None:
    assert reason(healthy(), None) == "not_subscribed"
    assert reason(healthy(), Sub(status="removed")) == "not_subscribed"
    assert reason(healthy(), Sub(status="failed")) == "not_subscribed"
    assert reason(healthy(), Sub(expires_at=NOW)) == "subscription_expired"
    assert reason(healthy(), Sub(status="creating")) is None


def test_a_restart_makes_every_earlier_round_due_once() -> None:
    assert reason(healthy(), started=NOW - timedelta(minutes=10)) == "restart"
    # A round after the start (this tick's, or a notification's) ends it.
    assert reason(healthy(), started=NOW - timedelta(hours=2)) is None


def test_a_polled_calendar_needs_no_subscription_and_reads_none() -> None:
    def unread() -> None:
        raise AssertionError("a polled calendar's subscription is not read")

    state = healthy(polled=True)
    assert reconcile_reason(state, unread, NOW, trust=TRUST, started=STARTED) is None


@pytest.mark.parametrize(
    "state",
    [None, healthy(lastErrorAt=NOW), healthy(suspectAt=NOW, suspectReason="missed")],
)
def test_cheaper_signals_decide_without_reading_the_subscription(state: Any) -> None:
    def unread() -> None:
        raise AssertionError("decided before the subscription mattered")

    assert reconcile_reason(state, unread, NOW, trust=TRUST, started=STARTED) is not None
