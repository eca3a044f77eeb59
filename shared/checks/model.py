"""The go-live check's pure parts: its steps and their order, what a failure means and how to fix
it, the records a run keeps and their wire shapes. No I/O (tests/unit/test_checks.py).

Steps per mapped resource, in this order (`STEPS`):

| step | proves | kind |
|---|---|---|
| `connection` | the building is connected, Microsoft 365 still honours the grant (delegated: `GET /me`), the granted permissions suffice for the mode | read |
| `notifications` | Graph notifies us: an active subscription for the mailbox that Graph still has, delivering to our notification URL (so it passed Graph's validation handshake); or, for calendars Graph cannot notify (shared with a delegated account), polling is scheduled | read |
| `delta` | the stored delta token of the calendar is still honoured by Graph (an expired one means the next round must re-baseline) | read |
| `calendar` | the mapped calendar is reachable and writable: read through the mapped-calendar guard, then (write modes) a marked `showAs: free` probe event written and deleted | read (+ probe write) |
| `write_through` | a marked test booking, through the real booking service, appears on the Outlook calendar (read back through Graph) | write |
| `outlook_to_platform` | a marked test event written straight to the calendar shows up as busy in availability through the normal notification/delta path; the lag is measured | write |
| `cancel` | the booking cancelled and the event deleted disappear on both sides | write |

The read-only probes of sync state (`notifications`, `delta`) come before anything is written: a
write triggers a sync round, which would replace the delta token being probed. A step whose
prerequisite failed is `skipped` (reason `depends_on_failed`); a read-only connection (no write
permission granted) skips the write steps (`read_only_connection`) and the probe write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, TypedDict

from shared.core.times import utc_z

StepName = Literal[
    "connection", "notifications", "delta", "calendar", "write_through", "outlook_to_platform",
    "cancel",
]  # fmt: skip
STEPS: tuple[StepName, ...] = (
    "connection",
    "notifications",
    "delta",
    "calendar",
    "write_through",
    "outlook_to_platform",
    "cancel",
)
WRITE_STEPS: frozenset[StepName] = frozenset({"write_through", "outlook_to_platform", "cancel"})
# A step runs only when these passed (skipped counts as not passed).
REQUIRES: dict[StepName, tuple[StepName, ...]] = {
    "connection": (),
    "notifications": ("connection",),
    "delta": ("connection",),
    "calendar": ("connection",),
    "write_through": ("calendar",),
    "outlook_to_platform": ("calendar",),
    "cancel": ("write_through",),
}
StepStatus = Literal["passed", "failed", "skipped"]
RunStatus = Literal["queued", "running", "passed", "failed", "abandoned"]
FINISHED: frozenset[str] = frozenset({"passed", "failed", "abandoned"})


# ---------------------------------------------------------------- explanations

# reason code -> (what happened, how to fix it). `{…}` are filled from the step's facts; every
# placeholder a template uses has a default in `explain`.
EXPLANATIONS: dict[str, tuple[str, str]] = {
    "not_connected": (
        "The building is not connected to Microsoft 365.",
        "Connect it: POST /buildings/{building}/connection (delegated sign-in or application "
        "consent by a tenant admin).",
    ),
    "reauth_required": (
        "The connection must be signed in again ({detail}).",
        "Reconnect the building: POST /buildings/{building}/connection and complete the sign-in.",
    ),
    "consent_revoked": (
        "Microsoft 365 no longer honours the building's grant: the consent was revoked or the "
        "connected account's sessions were ended ({detail}).",
        "Reconnect the building: POST /buildings/{building}/connection, sign in and consent "
        "again; syncing resumes by itself once it is connected.",
    ),
    "insufficient_permissions": (
        "The connection lacks permissions its mode needs: {missing}.",
        "Reconnect and grant {missing} (delegated: accept them on the consent screen; "
        "application: a tenant admin consents the app again).",
    ),
    "calendar_not_found": (
        "Graph does not find the mapped calendar of {mailbox} (404 {code}).",
        "Map the resource again to a calendar the connection can see: GET "
        "/buildings/{building}/calendars, then PUT /buildings/{building}/resources/{resource}/mapping.",
    ),
    "calendar_access_denied": (
        "Graph refused to read the calendar of {mailbox} (403 {code}).",
        "Give the app access to {mailbox}: for an application connection add the mailbox to "
        "the Exchange RBAC for Applications scope of the app (infra/README.md); for a delegated "
        "one share the calendar with the connected account.",
    ),
    "calendar_read_only": (
        "The connection can read the calendar of {mailbox} but Graph says it cannot edit it.",
        "Share the calendar with the connected account with edit (or delegate) rights, or map "
        "the resource to a calendar it can edit.",
    ),
    "calendar_write_denied": (
        "Graph refused to write to the calendar of {mailbox} (403 {code}): the mailbox is outside "
        "what the app may write, e.g. outside its Exchange RBAC for Applications scope.",
        "Add {mailbox} to the management scope of the app's 'Application Calendars.ReadWrite' "
        "role assignment (New-ManagementScope / New-ManagementRoleAssignment -App, "
        "infra/README.md), or grant Calendars.ReadWrite; then run the check again.",
    ),
    "throttled": (
        "Microsoft Graph throttled the request (429) for {mailbox}.",
        "Transient: run the check again in a few minutes.",
    ),
    "graph_unavailable": (
        "Microsoft Graph did not answer usefully ({code}).",
        "Transient: run the check again in a few minutes; if it persists see the Microsoft 365 "
        "service health.",
    ),
    "graph_refused": (
        "Microsoft Graph refused the request ({status} {code}).",
        "See the Graph request id in this step and the audit log (GET /buildings/{building}/audit).",
    ),
    "webhook_unreachable": (
        "Graph could not reach the notification URL {url} to validate the subscription of "
        "{mailbox} ({code}): no change notifications are delivered, Outlook bookings only come "
        "back through polling and the reconciliation sweep.",
        "Make BB_PUBLIC_BASE_URL reachable from the internet over HTTPS (nothing in front of "
        "/api/graph/notifications may require sign-in, an IP allow-list or a VPN; it must echo "
        "the validationToken within 10 s); then POST /buildings/{building}/resources/{resource}/sync "
        "re-creates the subscription.",
    ),
    "subscription_failed": (
        "Graph refused the subscription of {mailbox} ({code}).",
        "Fix the cause named by the code, then POST /buildings/{building}/resources/{resource}/sync "
        "re-creates the subscription.",
    ),
    "subscription_missing": (
        "No active Graph subscription watches {mailbox} (status {status}).",
        "POST /buildings/{building}/resources/{resource}/sync creates it; GET /buildings/{building}/sync "
        "shows the subscription's last error.",
    ),
    "subscription_gone": (
        "Graph no longer has the subscription {subscription} of {mailbox} (expired or removed).",
        "POST /buildings/{building}/resources/{resource}/sync re-creates it; if this repeats, check "
        "that the renewal timer (BB_RENEW_SCHEDULE) runs.",
    ),
    "subscription_url_mismatch": (
        "The subscription of {mailbox} delivers to {found}, not to this app's {url}.",
        "BB_PUBLIC_BASE_URL changed since it was created: POST "
        "/buildings/{building}/resources/{resource}/sync re-creates it.",
    ),
    "polling_inactive": (
        "Graph cannot notify about this calendar (shared with a delegated account) and no poll "
        "is scheduled for it.",
        "POST /buildings/{building}/resources/{resource}/sync restarts it; check that the poll "
        "timer (BB_POLL_SCHEDULE) runs.",
    ),
    "never_synced": (
        "The calendar has not completed its first sync round yet.",
        "Wait for it (GET /buildings/{building}/sync) or start it with POST "
        "/buildings/{building}/resources/{resource}/sync, then run the check again.",
    ),
    "delta_token_expired": (
        "Graph no longer accepts the stored delta token of this calendar ({code}): incremental "
        "sync cannot continue from it.",
        "Nothing is lost: the next sync round starts from a new baseline and reconciles. Start it "
        "now with POST /buildings/{building}/resources/{resource}/sync, then run the check again.",
    ),
    "no_free_slot": (
        "No free {minutes}-minute window was found in the {days} days from an hour from now.",
        "Free some time on the resource or run the check later.",
    ),
    "slot_taken": (
        "The test slot {slot} was taken while the check ran (by a booking or an Outlook event).",
        "Run the check again: it picks another free slot.",
    ),
    "write_through_pending": (
        "The test booking was committed but Graph failed transiently while writing its event "
        "({code}); the outbox would retry it.",
        "Transient: run the check again in a few minutes.",
    ),
    "write_through_failed": (
        "The test booking was committed but its Outlook event could not be written ({code}).",
        "See the booking's last error reason above and GET /buildings/{building}/sync "
        "(lastWriteError of the resource).",
    ),
    "event_not_on_calendar": (
        "The booking reports its Outlook event {event} as written, but Graph does not return it "
        "from the mapped calendar.",
        "Check the mapping of the resource (GET /buildings/{building}/resources/{resource}) and the "
        "audit log of the write.",
    ),
    "notifications_not_arriving": (
        "The test event did not show up as busy within {seconds} s: no change notification "
        "brought it. A forced delta round found it after {lag} s, so delta still converges, "
        "but Outlook bookings wait for polling or the reconciliation sweep instead of seconds.",
        "Check Graph's delivery to {url}: it must answer within 3 s (slow or failing endpoints "
        "are throttled, then dropped); GET /buildings/{building}/sync shows the subscription, "
        "the host's log the notifications received; POST "
        "/buildings/{building}/resources/{resource}/sync re-creates the subscription.",
    ),
    "sync_not_converging": (
        "The test event did not show up as busy within {seconds} s, not even after a forced "
        "delta round.",
        "See GET /buildings/{building}/sync (last error, poison messages) and the host's log of "
        "the sync worker.",
    ),
    "removal_not_arriving": (
        "The deleted test event still showed as busy after {seconds} s: no change notification "
        "brought the deletion. A forced delta round removed it after {lag} s, so delta still "
        "converges.",
        "Check Graph's delivery to {url} (answers within 3 s); GET /buildings/{building}/sync "
        "shows the subscription; POST /buildings/{building}/resources/{resource}/sync "
        "re-creates it.",
    ),
    "removal_not_converging": (
        "The deleted test event still showed as busy after {seconds} s, even after a forced "
        "delta round.",
        "See GET /buildings/{building}/sync (last error) and the host's log of the sync worker.",
    ),
    "cancel_event_remains": (
        "The cancelled test booking's Outlook event {event} is still on the calendar.",
        "See the booking's write-through error (GET /buildings/{building}/sync, lastWriteError) "
        "and the audit log.",
    ),
    "cancel_block_remains": (
        "The cancelled test booking still shows as busy in availability.",
        "See the outbox worker's log; the slot is freed once its event is deleted.",
    ),
    "storage_unavailable": (
        "Table or queue storage failed during the step ({code}).",
        "Transient: run the check again; GET /api/health shows the storage components.",
    ),
    "internal_error": (
        "The step failed unexpectedly ({code}).",
        "Run the check again; if it repeats, the host's log names run {run}.",
    ),
    "depends_on_failed": (
        "Skipped: the {after} step did not pass.",
        "Fix the {after} step first.",
    ),
    "read_only_connection": (
        "Skipped: the connection has no write permission (read-only), so only the read steps run.",
        "To validate write-through, connect with Calendars.ReadWrite.",
    ),
    "abandoned": (
        "The run stopped before this resource finished (the worker died or timed out); its test "
        "artefacts were removed by the sweeper.",
        "Run the check again.",
    ),
}

_DEFAULTS = {
    "detail": "no detail",
    "missing": "?",
    "mailbox": "the mailbox",
    "code": "no code",
    "status": "?",
    "url": "the notification URL",
    "subscription": "?",
    "found": "?",
    "minutes": "?",
    "days": "?",
    "slot": "?",
    "event": "?",
    "seconds": "?",
    "lag": "?",
    "run": "?",
    "after": "previous",
    "building": "{building}",
    "resource": "{resource}",
}


class _Facts(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return _DEFAULTS.get(key, "?")


def explain(reason: str, facts: Mapping[str, Any]) -> tuple[str, str]:
    """(sentence, fix) of a reason code, filled from `facts` (unknown reasons: internal_error)."""
    message, fix = EXPLANATIONS.get(reason, EXPLANATIONS["internal_error"])
    values = _Facts({k: v for k, v in facts.items() if v is not None})
    return message.format_map(values), fix.format_map(values)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class StepResult:
    name: StepName
    status: StepStatus
    started_at: datetime
    duration_ms: int = 0
    request_ids: tuple[str, ...] = ()
    reason: str | None = None
    message: str | None = None
    fix: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> StepOut:
        out: StepOut = {
            "name": self.name,
            "status": self.status,
            "startedAt": utc_z(self.started_at, "milliseconds"),
            "durationMs": self.duration_ms,
            "graphRequestIds": list(self.request_ids),
            "reason": self.reason,
            "message": self.message,
            "fix": self.fix,
            "detail": dict(self.detail),
        }
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> StepResult:
        from shared.core.times import parse_rfc3339

        return StepResult(
            name=data["name"],
            status=data["status"],
            started_at=parse_rfc3339(str(data["startedAt"])),
            duration_ms=int(data.get("durationMs") or 0),
            request_ids=tuple(data.get("graphRequestIds") or ()),
            reason=data.get("reason"),
            message=data.get("message"),
            fix=data.get("fix"),
            detail=dict(data.get("detail") or {}),
        )


def failed(
    name: StepName, started: datetime, reason: str, facts: Mapping[str, Any], **kwargs: Any
) -> StepResult:
    message, fix = explain(reason, facts)
    return StepResult(name, "failed", started, reason=reason, message=message, fix=fix, **kwargs)


def skipped(name: StepName, started: datetime, reason: str, facts: Mapping[str, Any]) -> StepResult:
    message, fix = explain(reason, facts)
    return StepResult(name, "skipped", started, reason=reason, message=message, fix=fix)


def blocked_by(name: StepName, done: Mapping[str, StepResult]) -> StepName | None:
    """The first prerequisite of `name` that did not pass (None: the step may run)."""
    for required in REQUIRES[name]:
        result = done.get(required)
        if result is None or result.status != "passed":
            return required
    return None


def resource_status(steps: Sequence[StepResult], *, finished: bool) -> str:
    """`running` until finished; then `failed` if any step failed or was skipped because another
    did, else `passed` (a read-only connection's skipped write steps still pass)."""
    if not finished:
        return "running"
    if any(s.status == "failed" for s in steps):
        return "failed"
    if any(s.status == "skipped" and s.reason == "depends_on_failed" for s in steps):
        return "failed"
    if len(steps) < len(STEPS):
        return "failed"
    return "passed"


@dataclass(frozen=True)
class Artefacts:
    """What a resource's run wrote (or is about to), recorded before each write so the cleanup
    and the sweeper find everything: the slots, the test booking's idempotency key, event ids."""

    slot_start: datetime | None = None
    slot_end: datetime | None = None
    booking_id: str | None = None
    probe_event_id: str | None = None
    outlook_event_id: str | None = None
    booking_event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "slotStart": utc_z(self.slot_start) if self.slot_start else None,
            "slotEnd": utc_z(self.slot_end) if self.slot_end else None,
            "bookingId": self.booking_id,
            "probeEventId": self.probe_event_id,
            "outlookEventId": self.outlook_event_id,
            "bookingEventId": self.booking_event_id,
        }

    @staticmethod
    def from_json(data: Mapping[str, Any] | None) -> Artefacts:
        from shared.core.times import parse_rfc3339

        data = data or {}

        def when(name: str) -> datetime | None:
            raw = data.get(name)
            return parse_rfc3339(str(raw)) if raw else None

        return Artefacts(
            slot_start=when("slotStart"),
            slot_end=when("slotEnd"),
            booking_id=data.get("bookingId"),
            probe_event_id=data.get("probeEventId"),
            outlook_event_id=data.get("outlookEventId"),
            booking_event_id=data.get("bookingEventId"),
        )

    def with_(self, **changes: Any) -> Artefacts:
        return replace(self, **changes)


@dataclass(frozen=True)
class ResourceRun:
    resource_id: str
    steps: tuple[StepResult, ...] = ()
    artefacts: Artefacts = field(default_factory=Artefacts)
    current: StepName | None = None
    finished: bool = False

    def to_api(self) -> ResourceOut:
        return {
            "resourceId": self.resource_id,
            "status": resource_status(self.steps, finished=self.finished),
            "currentStep": self.current,
            "steps": [s.to_json() for s in self.steps],
        }


@dataclass(frozen=True)
class Run:
    building_id: str
    id: str
    status: RunStatus
    created_at: datetime
    actor: str
    resource_ids: tuple[str, ...]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    cleanup: Mapping[str, Any] = field(default_factory=dict)

    def to_api(self, resources: Sequence[ResourceRun] | None = None) -> CheckOut:
        duration = None
        if self.started_at and self.finished_at:
            duration = int((self.finished_at - self.started_at).total_seconds() * 1000)
        out: CheckOut = {
            "id": self.id,
            "building": self.building_id,
            "status": self.status,
            "createdAt": utc_z(self.created_at, "milliseconds"),
            "startedAt": utc_z(self.started_at, "milliseconds") if self.started_at else None,
            "finishedAt": utc_z(self.finished_at, "milliseconds") if self.finished_at else None,
            "durationMs": duration,
            "actor": self.actor,
            "resourceIds": list(self.resource_ids),
            "cleanup": dict(self.cleanup) or None,
        }
        if resources is not None:
            out["resources"] = [r.to_api() for r in resources]
        return out


def run_status(resources: Sequence[ResourceRun]) -> RunStatus:
    statuses = {r.to_api()["status"] for r in resources}
    return "passed" if statuses <= {"passed"} and resources else "failed"


# ---------------------------------------------------------------- wire shapes


class StepOut(TypedDict):
    name: str
    status: str
    startedAt: str
    durationMs: int
    graphRequestIds: list[str]
    reason: str | None
    message: str | None
    fix: str | None
    detail: dict[str, Any]


class ResourceOut(TypedDict):
    resourceId: str
    status: str
    currentStep: str | None
    steps: list[StepOut]


class _CheckOutBase(TypedDict):
    id: str
    building: str
    status: str
    createdAt: str
    startedAt: str | None
    finishedAt: str | None
    durationMs: int | None
    actor: str
    resourceIds: list[str]
    cleanup: dict[str, Any] | None


class CheckOut(_CheckOutBase, total=False):
    resources: list[ResourceOut]


class CheckListOut(TypedDict):
    value: list[CheckOut]
