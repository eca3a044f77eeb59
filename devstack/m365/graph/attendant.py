"""The room mailbox's resource booking attendant.

When an organizer's meeting invites a room mailbox as a `resource` attendee, the attendant answers
after a short delay (`attendantDelayMs`, default 100–300 ms): it declines on a conflict with an
event already in the room's calendar or when the room's policy says no, otherwise it accepts and
writes the room's own copy of the meeting (own id, same iCalUId). Either way the organizer's copy
gets the room attendee's `status.response`. Reschedules are re-evaluated; cancelling or deleting
the organizer's event removes the room's copy.

Room policy keys (scenario `users[].room`): `automateProcessing` ("AutoAccept" default, or "None"
= never answers), `allowConflicts` (false), `maxDurationMinutes` (1440), `bookingWindowInDays`
(180), `allowRecurringMeetings` (true), and how the room's copy is rewritten (`_as_processed`):
`addOrganizerToSubject`, `deleteSubject`, `deleteComments`, `removePrivateProperty` (all true, as
Exchange Online's Set-CalendarProcessing defaults).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import uuid

from . import recurrence as rrule
from .events import declined_by, occurrences
from .model import EventRec, Mailbox, new_immutable_id, new_rest_id
from .store import GraphState


def install(state: GraphState) -> None:
    def hook(mb: Mailbox, rec: EventRec, change_type: str) -> None:
        if mb.is_room or not rec.is_organizer:
            return
        if change_type == "deleted":
            for room in _room_mailboxes(state, mb, rec):
                if room.is_room:
                    _remove_copy(state, room, mb, rec)
                else:
                    _cancel_copy(state, room, mb, rec)
            return
        _invite_people(state, mb, rec)
        rooms = {r.user_id: r for r in _room_mailboxes(state, mb, rec)}
        for att in rec.data["attendees"]:
            invitee = state.mailbox_by_address(mb.tenant_id, att["emailAddress"]["address"])
            if invitee is None or not invitee.is_room or att["type"] != "resource":
                continue
            if att["status"]["response"] == "none":
                _schedule(state, mb, rec, invitee)
            elif att["status"]["response"] == "accepted":
                _sync_copy(state, invitee, mb, rec)
        # Rooms dropped from the attendee list release their booking.
        invited = {
            a["emailAddress"]["address"].lower()
            for a in rec.data["attendees"]
            if a["type"] == "resource"
        }
        for room in rooms.values():
            if not room.is_room:
                continue
            if room.mail.lower() not in invited and room.upn.lower() not in invited:
                _remove_copy(state, room, mb, rec)

    state.change_hooks.append(hook)


def _room_mailboxes(state: GraphState, mb: Mailbox, rec: EventRec) -> list[Mailbox]:
    """Mailboxes (rooms and people) holding a copy of this meeting, still invited or not."""
    out = []
    for (tid, _uid), room in list(state.mailboxes.items()):
        if tid == mb.tenant_id and any(
            e.origin == (mb.user_id, rec.key) for e in room.events.values()
        ):
            out.append(room)
    return out


def _schedule(state: GraphState, org: Mailbox, rec: EventRec, room: Mailbox) -> None:
    lo, hi = state.config.attendant_delay_ms
    delay = random.uniform(lo, hi) / 1000.0

    def run() -> None:
        with state.lock:
            current = org.events.get(rec.key)
            if current is None:
                return
            att = _attendee(current, room)
            # Already answered (an earlier evaluation ran) or no longer invited: nothing to do.
            if att is None or att["status"]["response"] != "none":  # type: ignore[index]
                return
            _decide(state, org, current, room)

    state.call_later(delay, run)


def _attendee(rec: EventRec, room: Mailbox) -> dict[str, object] | None:
    for att in rec.data["attendees"]:
        if att["emailAddress"]["address"].lower() in (room.mail.lower(), room.upn.lower()):
            return att  # type: ignore[no-any-return]
    return None


def _decide(state: GraphState, org: Mailbox, rec: EventRec, room: Mailbox) -> None:
    from .events import set_attendee_response

    policy = room.room_policy
    if str(policy.get("automateProcessing", "AutoAccept")).lower() == "none":
        return
    accept = _acceptable(state, room, org, rec, policy)
    if accept:
        _sync_copy(state, room, org, rec, create=True)
    else:
        _remove_copy(state, room, org, rec)
    set_attendee_response(state, org, rec.ical_uid, room.mail, "accepted" if accept else "declined")


def _instances(
    rec: EventRec, horizon: dt.datetime, now: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime]]:
    if rec.recurrence is None:
        return [(rec.start, rec.end)]
    return [(s, e) for _o, s, e in occurrences(rec, now - dt.timedelta(days=1), horizon)]


def _acceptable(
    state: GraphState, room: Mailbox, org: Mailbox, rec: EventRec, policy: dict[str, object]
) -> bool:
    now = state.now()
    window_days = int(policy.get("bookingWindowInDays", 180))  # type: ignore[call-overload]
    horizon = now + dt.timedelta(days=window_days)
    if rec.start > horizon:
        return False
    max_minutes = int(policy.get("maxDurationMinutes", 1440))  # type: ignore[call-overload]
    if (rec.end - rec.start) > dt.timedelta(minutes=max_minutes):
        return False
    if rec.recurrence is not None and not policy.get("allowRecurringMeetings", True):
        return False
    if (
        rec.recurrence is not None
        and rrule.last_occurrence_end(rec.recurrence, rec.start, rec.end - rec.start) is None
        and not policy.get("allowNoEnd", True)
    ):
        return False
    if policy.get("allowConflicts", False):
        return True
    mine = _instances(rec, horizon, now)
    default = room.default_calendar.id
    for other in room.events.values():
        if other.calendar_id != default or other.origin == (org.user_id, rec.key):
            continue
        if other.is_cancelled or other.data.get("showAs") == "free":
            continue
        for s, e in _instances(other, horizon, now):
            if any(s < me and e > ms for ms, me in mine):
                return False
    return True


def _invite_people(state: GraphState, org: Mailbox, rec: EventRec) -> None:
    """Exchange delivers the meeting to attendees in the tenant: each gets its own copy."""
    for att in rec.data["attendees"]:
        if att["type"] == "resource" or att["status"]["response"] == "declined":
            continue
        person = state.mailbox_by_address(org.tenant_id, att["emailAddress"]["address"])
        if person is None or person.is_room or person.user_id == org.user_id:
            continue
        _sync_copy(state, person, org, rec, create=True, response="notResponded")


def _cancel_copy(state: GraphState, person: Mailbox, org: Mailbox, rec: EventRec) -> None:
    """Attendees keep a cancelled meeting (isCancelled) until they remove it, as in Outlook."""
    existing = next((e for e in person.events.values() if e.origin == (org.user_id, rec.key)), None)
    if existing is not None and not existing.is_cancelled:
        existing.is_cancelled = True
        existing.touch(state.now(), person.next_seq())
        state.changed(person, existing, "updated")


def _sync_copy(
    state: GraphState,
    room: Mailbox,
    org: Mailbox,
    rec: EventRec,
    *,
    create: bool = False,
    response: str = "accepted",
) -> None:
    existing = next((e for e in room.events.values() if e.origin == (org.user_id, rec.key)), None)
    now = state.now()
    data = _as_processed(room, rec)
    # Occurrences this mailbox declined one by one stay out of its copy whatever else changes.
    declined = declined_by(rec, room.mail)
    cancelled = set(rec.cancelled) | declined
    exceptions = {k: v for k, v in rec.exceptions.items() if k not in declined}
    if existing is None:
        if not create:
            return
        copy_rec = EventRec(
            key=uuid.uuid4().hex,
            calendar_id=room.default_calendar.id,
            rest_id=new_rest_id(),
            immutable_id=new_immutable_id(),
            ical_uid=rec.ical_uid,
            data=data,
            start=rec.start,
            end=rec.end,
            start_tz=rec.start_tz,
            end_tz=rec.end_tz,
            organizer=copy.deepcopy(rec.organizer),
            is_organizer=False,
            created=now,
            modified=now,
            recurrence=copy.deepcopy(rec.recurrence),
            response=response,
            response_time=now if response == "accepted" else None,
            exceptions=copy.deepcopy(exceptions),
            cancelled=cancelled,
            seq=room.next_seq(),
            origin=(org.user_id, rec.key),
        )
        room.events[copy_rec.key] = copy_rec
        room.index(copy_rec)
        state.changed(room, copy_rec, "created")
        return
    same = (
        existing.data == data
        and existing.start == rec.start
        and existing.end == rec.end
        and existing.recurrence == rec.recurrence
        and existing.cancelled == cancelled
        and set(existing.exceptions) == set(exceptions)
    )
    if same:
        return
    existing.data = data
    existing.start, existing.end = rec.start, rec.end
    existing.start_tz, existing.end_tz = rec.start_tz, rec.end_tz
    existing.recurrence = copy.deepcopy(rec.recurrence)
    existing.exceptions = copy.deepcopy(exceptions)
    existing.cancelled = cancelled
    existing.touch(now, room.next_seq())
    state.changed(room, existing, "updated")


def _as_processed(mailbox: Mailbox, rec: EventRec) -> dict[str, object]:
    """The meeting's data as the mailbox keeps it. A room's resource booking attendant rewrites
    its copy per the room's calendar processing (Set-CalendarProcessing, Exchange Online defaults
    all true): AddOrganizerToSubject + DeleteSubject → the subject is the organizer's name,
    DeleteSubject alone → empty, AddOrganizerToSubject alone → "organizer subject";
    DeleteComments → no body; RemovePrivateProperty → a private meeting is normal in the room.
    People's copies are the organizer's data unchanged."""
    data: dict[str, object] = copy.deepcopy(rec.data)
    if not mailbox.is_room:
        return data
    policy = mailbox.room_policy
    organizer = str(rec.organizer.get("emailAddress", {}).get("name") or "")
    subject = str(rec.data.get("subject") or "")
    add_organizer = bool(policy.get("addOrganizerToSubject", True))
    if policy.get("deleteSubject", True):
        subject = organizer if add_organizer else ""
    elif add_organizer:
        subject = f"{organizer} {subject}".strip()
    data["subject"] = subject
    if policy.get("deleteComments", True):
        data["body"] = {"contentType": "html", "content": ""}
    if policy.get("removePrivateProperty", True) and data.get("sensitivity") == "private":
        data["sensitivity"] = "normal"
    return data


def _remove_copy(state: GraphState, room: Mailbox, org: Mailbox, rec: EventRec) -> None:
    from .events import delete_event

    existing = next((e for e in room.events.values() if e.origin == (org.user_id, rec.key)), None)
    if existing is not None:
        delete_event(state, room, existing, None)
