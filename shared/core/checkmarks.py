"""How a go-live check's test artefacts are marked, so every part of the app can recognise them.

A check (shared/checks/, issue 14) writes real things on the real path: a platform booking, Outlook
events on the mapped calendar, and through sync the busy blocks that mirror them. Each carries the
same three marks, and nothing else in BookingBridge produces them:

- the subject prefix `SUBJECT_PREFIX` (what a person looking at the room calendar sees);
- on events the check writes itself, the single-value extended property `CHECK_PROPERTY_ID`
  (value: the run id) and a `transactionId` `bookingbridge-check:<run>:<resource>:<role>`
  (calendarView delta cannot `$expand` extended properties, GRAPH.md §7.2, but it returns the
  transactionId the app set: that is how sync knows a check's Outlook event, shared/sync/plan.py);
- on the test booking, the booker address `CHECK_BOOKER_EMAIL` (a reserved `.invalid` domain, so
  attribution can never match a company or a user) and an Idempotency-Key derived from the run.

This lives in core, below both sync and the checks package, because sync must recognise the
marks and the checks package depends on sync (ARCHITECTURE.md §0: a shared fact moves down).
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SUBJECT_PREFIX = "[BookingBridge check] "
# One fixed property set GUID (GRAPH.md §4.4), distinct from the bookings' one.
CHECK_PROPERTY_ID = "String {8f3e2b71-6c4d-4a1e-b5f9-2d7c0a9e4b16} Name BookingBridgeCheckRun"
CHECK_BOOKER_EMAIL = "go-live-check@bookingbridge.invalid"
CHECK_BOOKER_NAME = "BookingBridge go-live check"
# Attribution of anything a check made: never a company, never a user (`reason` says why).
CHECK_ATTRIBUTION_REASON = "go_live_check"

_TRANSACTION_PREFIX = "bookingbridge-check:"


def check_transaction_id(run_id: str, resource_id: str, role: str) -> str:
    """The transactionId of an event a check writes itself (`role`: probe, outlook)."""
    return f"{_TRANSACTION_PREFIX}{run_id}:{resource_id}:{role}"


def check_run_of_transaction(value: object) -> str | None:
    """The run id a check's transactionId names, or None when it is not one."""
    if not isinstance(value, str) or not value.startswith(_TRANSACTION_PREFIX):
        return None
    run = value[len(_TRANSACTION_PREFIX) :].split(":", 1)[0]
    return run or None


def check_idempotency_key(run_id: str, resource_id: str) -> str:
    """The Idempotency-Key of a run's test booking: a sweeper finds the booking from the run alone."""
    return f"{_TRANSACTION_PREFIX}{run_id}:{resource_id}:booking"


def is_check_event(event: Mapping[str, Any]) -> bool:
    """A Graph event a check wrote (its transactionId), or one of its bookings' events (subject)."""
    if check_run_of_transaction(event.get("transactionId")) is not None:
        return True
    subject = event.get("subject")
    return isinstance(subject, str) and subject.startswith(SUBJECT_PREFIX)


def check_attribution() -> dict[str, Any]:
    """The attribution stored on a check's busy block (and booking): nobody's."""
    return {
        "kind": "unattributed",
        "companyId": None,
        "userEmail": None,
        "reason": CHECK_ATTRIBUTION_REASON,
    }
