"""The go-live check's pure parts (shared/checks/model.py, shared/core/checkmarks.py, the check
rule of shared/sync/plan.py, the permission reading of shared/checks/steps.py): step order and
prerequisites, every explanation filled, marking, and that sync attributes a check's event to
nobody while still making it busy."""

from __future__ import annotations

import json
import string
from datetime import UTC, datetime, timedelta

import pytest

from shared.checks.model import (
    EXPLANATIONS,
    REQUIRES,
    STEPS,
    WRITE_STEPS,
    Artefacts,
    ResourceRun,
    StepResult,
    blocked_by,
    explain,
    failed,
    resource_status,
    run_status,
    skipped,
)
from shared.checks.runner import decode_message, encode_message
from shared.checks.steps import missing_permissions, write_permitted
from shared.checks.store import new_run_id
from shared.core.checkmarks import (
    CHECK_ATTRIBUTION_REASON,
    SUBJECT_PREFIX,
    check_idempotency_key,
    check_run_of_transaction,
    check_transaction_id,
    is_check_event,
)
from shared.core.connection import Connection
from shared.core.errors import ValidationFailed
from shared.sync.plan import Put
from tests.unit.test_sync_plan import event, run

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------- steps and their order


def test_reads_come_before_writes_and_prerequisites_come_first() -> None:
    assert STEPS[0] == "connection"
    first_write = min(STEPS.index(s) for s in WRITE_STEPS)
    # The sync-state probes run before anything is written (a write triggers a delta round).
    assert STEPS.index("notifications") < first_write and STEPS.index("delta") < first_write
    assert STEPS.index("delta") < STEPS.index("calendar")  # the calendar step's probe writes
    for name, required in REQUIRES.items():
        assert all(STEPS.index(r) < STEPS.index(name) for r in required), name
    assert set(REQUIRES) == set(STEPS)


def passed(name: str) -> StepResult:
    return StepResult(name, "passed", NOW)  # type: ignore[arg-type]


def test_a_failed_prerequisite_blocks_only_what_depends_on_it() -> None:
    done = {"connection": passed("connection"), "calendar": failed("calendar", NOW, "x", {})}
    assert blocked_by("notifications", done) is None
    assert blocked_by("write_through", done) == "calendar"
    assert blocked_by("outlook_to_platform", done) == "calendar"
    assert blocked_by("cancel", done) == "write_through"  # not run at all: not passed
    assert blocked_by("notifications", {}) == "connection"


def test_a_resource_passes_only_when_every_step_ran_and_none_failed() -> None:
    all_passed = [passed(n) for n in STEPS]
    assert resource_status(all_passed, finished=False) == "running"
    assert resource_status(all_passed, finished=True) == "passed"
    read_only = [passed(n) for n in STEPS if n not in WRITE_STEPS] + [
        skipped(n, NOW, "read_only_connection", {}) for n in STEPS if n in WRITE_STEPS
    ]
    assert resource_status(read_only, finished=True) == "passed"
    blocked = [*all_passed[:-1], skipped("cancel", NOW, "depends_on_failed", {"after": "x"})]
    assert resource_status(blocked, finished=True) == "failed"
    assert resource_status(all_passed[:3], finished=True) == "failed"
    one_failed = [*all_passed[:-1], failed("cancel", NOW, "cancel_event_remains", {})]
    assert run_status([ResourceRun("r", tuple(one_failed), finished=True)]) == "failed"
    assert run_status([ResourceRun("r", tuple(all_passed), finished=True)]) == "passed"
    assert run_status([]) == "failed"


# ---------------------------------------------------------------- explanations


@pytest.mark.parametrize("reason", sorted(EXPLANATIONS))
def test_every_reason_has_a_sentence_and_a_fix_with_every_placeholder_known(reason: str) -> None:
    message, fix = EXPLANATIONS[reason]
    names = {f for text in (message, fix) for _, f, _, _ in string.Formatter().parse(text) if f}
    facts = {n: f"<{n}>" for n in names}
    said, how = explain(reason, facts)
    assert said.endswith(".") and how.endswith("."), reason
    assert "{" not in said and "{" not in how, reason
    for name in names:
        assert f"<{name}>" in said + how
    # Facts missing: still a readable sentence, never a KeyError.
    explain(reason, {})


def test_the_issues_failures_say_what_to_do() -> None:
    facts = {
        "building": "b1",
        "resource": "r1",
        "mailbox": "room@x",
        "url": "https://x/api/graph/notifications",
    }
    message, fix = explain("webhook_unreachable", {**facts, "code": "InvalidRequest"})
    assert "Graph could not reach the notification URL https://x/api/graph/notifications" in message
    assert fix.startswith("Make BB_PUBLIC_BASE_URL reachable from the internet")
    message, fix = explain("calendar_write_denied", {**facts, "code": "ErrorAccessDenied"})
    assert "Exchange RBAC" in message and "New-ManagementRoleAssignment" in fix
    message, _ = explain("notifications_not_arriving", {**facts, "seconds": 5, "lag": 6.2})
    assert "no change notification" in message and "delta still converges" in message
    _, fix = explain("delta_token_expired", {**facts, "code": "410 SyncStateNotFound"})
    assert "POST /buildings/b1/resources/r1/sync" in fix
    _, fix = explain("consent_revoked", facts)
    assert fix.startswith("Reconnect the building: POST /buildings/b1/connection")
    step = failed("calendar", NOW, "nonsense", facts)
    assert step.reason == "nonsense" and step.message and step.fix  # unknown: internal_error's


def test_step_and_artefact_records_round_trip() -> None:
    step = failed("delta", NOW, "delta_token_expired", {"code": "410"}, duration_ms=12,
                  request_ids=("r-1",), detail={"a": 1})  # fmt: skip
    assert StepResult.from_json(step.to_json()) == step
    artefacts = Artefacts(NOW, NOW + timedelta(minutes=31), "bk", None, "ev", "ev2")
    assert Artefacts.from_json(artefacts.to_json()) == artefacts
    assert Artefacts.from_json(None) == Artefacts()


def test_run_ids_sort_newest_first_and_messages_round_trip() -> None:
    older, newer = new_run_id(NOW), new_run_id(NOW + timedelta(milliseconds=1))
    assert newer < older and len(newer) == 21
    assert decode_message(encode_message("b1", newer)) == ("b1", newer)
    for bad in (
        "",
        "{}",
        '{"building": "b1", "runId": "x"}',
        json.dumps({"building": "/", "runId": newer}),
    ):
        with pytest.raises(ValidationFailed):
            decode_message(bad)


# ---------------------------------------------------------------- marking


def test_check_marks_are_recognised_and_distinct_from_bookings() -> None:
    tx = check_transaction_id("run1", "room-1", "outlook")
    assert check_run_of_transaction(tx) == "run1"
    assert check_run_of_transaction("bookingbridge:bk1") is None  # a booking's own event
    assert check_run_of_transaction(None) is None
    assert is_check_event({"transactionId": tx})
    assert is_check_event({"subject": SUBJECT_PREFIX + "write-through test"})
    assert not is_check_event({"subject": "Board meeting", "transactionId": "bookingbridge:bk1"})
    assert check_idempotency_key("run1", "room-1") != check_idempotency_key("run1", "room-2")


def test_sync_makes_a_checks_event_busy_but_attributes_it_to_nobody() -> None:
    # Organised by a registered user: an ordinary event would be attributed to them.
    ordinary = run([event("e1")], []).actions[0]
    assert isinstance(ordinary, Put) and ordinary.block.company_id == "contoso"
    item = event("e2", transactionId=check_transaction_id("run1", "room-1", "outlook"))
    put = run([item], []).actions[0]
    assert isinstance(put, Put)
    assert put.block.source == "outlook" and put.block.show_as == "busy"
    assert put.block.company_id is None
    assert put.block.attribution == {"kind": "unattributed", "companyId": None,
                                     "userEmail": None, "reason": CHECK_ATTRIBUTION_REASON}  # fmt: skip


# ---------------------------------------------------------------- permissions


def connection(mode: str, scopes: set[str]) -> Connection:
    return Connection("b1", "c1", mode, "connected", "t1", scopes=frozenset(scopes))


def test_permissions_per_mode() -> None:
    delegated = connection("delegated", {"User.Read", "Calendars.Read", "Calendars.ReadWrite"})
    assert write_permitted(delegated) and not missing_permissions(delegated)
    read_only = connection("delegated", {"User.Read", "Calendars.Read"})
    assert not write_permitted(read_only) and not missing_permissions(read_only)
    assert missing_permissions(connection("delegated", {"Calendars.ReadWrite"})) == [
        "Calendars.Read", "User.Read",
    ]  # fmt: skip
    rbac = connection("application", set())  # scoped by Exchange RBAC alone: the probe tells
    assert write_permitted(rbac) and not missing_permissions(rbac)
    assert not write_permitted(connection("application", {"Calendars.Read"}))
    assert missing_permissions(connection("application", {"Place.Read.All"}))
