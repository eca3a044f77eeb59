"""The Outlook event of a booking: its body, the Graph writes and reads, and how a failure is classified.

Every request goes through a `CalendarScope` of the resource's mapped calendar (the guard refuses
anything else). Our events carry our marker: a transactionId (`busy.transaction_id`, so a retried
create stays one event) and an extended property with the booking id (so a lost create is found).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from shared.availability.busy import BOOKING_PROPERTY_ID, transaction_id
from shared.availability.busy import booking_id_from_transaction as _booking_of_transaction
from shared.bookings.model import Booking, BookingConfig
from shared.core.errors import DependencyError, Forbidden, GraphError, IdentityError
from shared.core.times import TimeUnreadable, graph_time, parse_graph_time, rfc3339_or_none, utc_z
from shared.graph.client import CalendarScope, GraphClient, RetryPolicy
from shared.graph.guard import MappedCalendar
from shared.storage.tablestore import Entity

logger = logging.getLogger(__name__)

_VIEW_PAGES = 5  # calendarView pages read per check (100 events each); more is not a room

# The request path may not hang on Graph: one retry at most, then the outbox takes over. The worker
# can afford a little more patience; its real backoff is the queue's visibility timeout.
REQUEST_POLICY = RetryPolicy(
    max_attempts=2, base_delay=0.2, max_retry_after=2.0, max_total_wait=2.0
)
WORKER_POLICY = RetryPolicy(
    max_attempts=3, base_delay=0.5, max_retry_after=10.0, max_total_wait=15.0
)


def with_policy(graph: GraphClient, policy: RetryPolicy) -> GraphClient:
    """The same Graph client (guard, tokens, audit, per-mailbox limit) with another retry policy."""
    client = GraphClient(
        graph.http,
        graph.base_url,
        graph.tokens,
        graph.audit,
        policy=policy,
        sleep=graph.sleep,
        now=graph.now,
        guard=graph.guard,
    )
    # One in-process limit of 4 per mailbox, whichever policy a request uses (Outlook counts
    # requests per app and mailbox, not per client object).
    client._slots = graph._slots
    client._slots_lock = graph._slots_lock
    return client


class ConnectionSource(Protocol):
    def get(self, building_id: str) -> Any: ...


def subject_of(
    template: str, *, resource_name: str, booker_name: str, booker_email: str, title: str
) -> str:
    """The event subject; the template was checked at settings load (only these placeholders)."""
    text = template.format(
        resourceName=resource_name, bookerName=booker_name, bookerEmail=booker_email, title=title
    )
    return " ".join(text.split())[:255] or resource_name


class WriteFailed(Exception):
    """One write-through attempt failed; `transient` says whether the outbox should retry."""

    def __init__(self, reason: str, *, transient: bool, status: int = 0, code: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.status = status
        self.code = code

    def record(self, now: datetime, *, reason: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": reason or self.reason,
            "status": self.status,
            "at": utc_z(now),
        }
        if self.code:
            out["code"] = self.code
        return out


def write_failure(err: BaseException, *, creating: bool) -> WriteFailed:
    """Classify a failure of a Graph write: what retries (429/5xx/timeouts, storage hiccups) and
    what a person must fix (403, 404, reauth, an unmapped calendar)."""
    if isinstance(err, WriteFailed):
        return err
    if isinstance(err, GraphError):
        failure = err.failure
        if err.transient:
            return WriteFailed(
                "graph_unavailable", transient=True, status=failure.status, code=failure.code
            )
        reason = {
            401: "reauth_required",
            403: "access_denied",
            404: "calendar_not_found" if creating else "event_not_found",
        }.get(failure.status, "graph_refused")
        return WriteFailed(reason, transient=False, status=failure.status, code=failure.code)
    if isinstance(err, IdentityError):
        reason = "reauth_required" if err.reauth else err.error
        return WriteFailed(reason, transient=err.transient, code=err.error)
    if isinstance(err, Forbidden):  # the mapped-calendar guard
        return WriteFailed(err.reason or "forbidden", transient=False, status=403)
    if isinstance(err, DependencyError):
        return WriteFailed(err.reason or "dependency_unavailable", transient=err.transient)
    raise err


@dataclass(frozen=True)
class Target:
    """Where a booking's event lives: the resource, its mapped calendar, a guarded Graph scope."""

    resource: Entity
    calendar: MappedCalendar
    scope: CalendarScope

    @property
    def name(self) -> str:
        return str(self.resource.get("name") or self.resource["RowKey"])

    @property
    def time_zone(self) -> str:
        return str(self.resource.get("timeZone") or "UTC")


def target_for(connections: ConnectionSource, graph: GraphClient, resource: Entity) -> Target:
    """The resource's write target, or WriteFailed (permanent) when it cannot have one."""
    calendar = MappedCalendar.from_entity(resource)
    if calendar is None:
        raise WriteFailed("not_mapped", transient=False)
    connection = connections.get(str(resource["PartitionKey"]))
    if connection is None:
        raise WriteFailed("not_connected", transient=False)
    if connection.status != "connected":
        raise WriteFailed("reauth_required", transient=False)
    return Target(resource, calendar, graph.for_calendar(connection, calendar))


def event_payload(
    booking: Booking, resource_name: str, time_zone: str, config: BookingConfig, *, creating: bool
) -> dict[str, Any]:
    """The Outlook event of a booking: subject per template, times in the resource's zone, the
    resource as location, our marker (transactionId + extended property), no attendees unless
    `invite_booker` (nobody gets mail we were not asked to send)."""
    body: dict[str, Any] = {
        "subject": subject_of(
            config.subject_template,
            resource_name=resource_name,
            booker_name=booking.booker_name,
            booker_email=booking.booker_email,
            title=booking.title,
        ),
        "start": graph_time(booking.start, time_zone),
        "end": graph_time(booking.end, time_zone),
        "location": {"displayName": resource_name},
        "showAs": "busy",
        "body": {
            "contentType": "text",
            "content": f"Booked through BookingBridge by {booking.booker_name}.",
        },
    }
    if creating:
        body["transactionId"] = transaction_id(booking.id)
        body["isReminderOn"] = False
        body["singleValueExtendedProperties"] = [{"id": BOOKING_PROPERTY_ID, "value": booking.id}]
        if config.invite_booker:
            body["attendees"] = [
                {
                    "emailAddress": {"address": booking.booker_email, "name": booking.booker_name},
                    "type": "required",
                }
            ]
    return body


def find_event(target: Target, booking_id: str) -> str | None:
    """The id of the booking's event in the mapped calendar (by our extended property), if any."""
    prop_filter = (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{BOOKING_PROPERTY_ID}' "
        f"and ep/value eq '{booking_id}')"
    )
    found = target.scope.get_json(
        target.calendar.calendar_path("/events"),
        params={"$filter": prop_filter, "$select": "id", "$top": "5"},
        operation="booking.find",
    )
    for event in found.get("value", []) if isinstance(found, Mapping) else []:
        if event.get("id"):
            return str(event["id"])
    return None


def create_event(
    target: Target, booking: Booking, config: BookingConfig, actor: str
) -> dict[str, Any]:
    """POST the event (idempotent through its transactionId); returns Graph's event."""
    payload = event_payload(booking, target.name, target.time_zone, config, creating=True)
    try:
        event: dict[str, Any] = target.scope.request(
            "POST",
            target.calendar.calendar_path("/events"),
            json_body=payload,
            operation="booking.create",
            actor=actor,
        ).json()
        return event
    except GraphError as err:
        if err.failure.code != "ErrorDuplicateTransactionId":
            raise
    # Created before with other details (the booking changed between attempts): find and update.
    event_id = find_event(target, booking.id)
    if event_id is None:
        raise WriteFailed("duplicate_transaction", transient=False, status=400)
    return update_event(target, replace(booking, outlook_event_id=event_id), config, actor)


def update_event(
    target: Target, booking: Booking, config: BookingConfig, actor: str
) -> dict[str, Any]:
    payload = event_payload(booking, target.name, target.time_zone, config, creating=False)
    event: dict[str, Any] = target.scope.request(
        "PATCH",
        target.calendar.calendar_path(f"/events/{booking.outlook_event_id}"),
        json_body=payload,
        operation="booking.update",
        actor=actor,
    ).json()
    return event


def delete_event(target: Target, event_id: str, actor: str) -> None:
    """DELETE our event (we organise our own writes, GRAPH.md §4.6); gone already is success."""
    try:
        target.scope.request(
            "DELETE",
            target.calendar.calendar_path(f"/events/{event_id}"),
            operation="booking.delete",
            actor=actor,
        )
    except GraphError as err:
        if err.failure.status != 404:
            raise


@dataclass(frozen=True)
class OutlookEvent:
    id: str
    start: datetime
    end: datetime
    created: datetime | None


def outlook_conflicts(
    target: Target, start: datetime, end: datetime, *, own_event_id: str | None
) -> list[OutlookEvent]:
    """Busy Outlook events of the mapped calendar overlapping [start, end) that are not ours.

    Ours (any BookingBridge transactionId) are governed by the busy table, not by this check.
    """
    params: dict[str, str] | None = {
        "startDateTime": utc_z(start),
        "endDateTime": utc_z(end),
        "$top": "100",
    }
    path = target.calendar.calendar_path("/calendarView")
    found: list[OutlookEvent] = []
    for _ in range(_VIEW_PAGES):
        page = target.scope.get_json(
            path,
            params=params,
            headers={"Prefer": 'outlook.timezone="UTC"'},
            operation="booking.check",
        )
        for event in page.get("value", []):
            if (
                event.get("id") == own_event_id
                or event.get("isCancelled")
                or str(event.get("showAs") or "busy") == "free"
                or _booking_of_transaction(event.get("transactionId")) is not None
            ):
                continue
            try:
                e_start = parse_graph_time(event.get("start"))
                e_end = parse_graph_time(event.get("end"))
            except TimeUnreadable as err:
                # calendarView returned it, so it overlaps the slot; a time we cannot read must
                # not free the slot, so it counts as a conflict over the whole slot.
                logger.warning("booking.check: event %s has %s", event.get("id"), err)
                e_start, e_end = start, end
            if not (e_start < end and start < e_end):
                continue
            created = rfc3339_or_none(event.get("createdDateTime"))
            found.append(OutlookEvent(str(event.get("id")), e_start, e_end, created))
        next_link = page.get("@odata.nextLink")
        if not next_link:
            break
        path, params = str(next_link), None
    return found


def created_before(ours: datetime | None, others: list[OutlookEvent]) -> bool:
    """Was any of `others` (Outlook events overlapping our new event) created before ours?

    The create's only check against Outlook bookings sync has not brought in yet, so it reads
    doubt against us: a creation time that is missing on either side, or the same instant as
    ours, counts as earlier (ours gives way, as a check before the write would have refused it).
    """
    return any(ours is None or o.created is None or o.created <= ours for o in others)
