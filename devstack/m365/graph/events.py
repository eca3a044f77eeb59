"""Events: validation, create / update / delete / cancel / respond, expansion and JSON shape.

Rules that differ from a naive fake (each one makes wrong client code fail, as Outlook does):
- unknown properties and bad enum values are refused; unknown time zones → 400; start ≥ end → 400;
- `transactionId`: the same id with the same payload returns the event already created (no
  duplicate); with a different payload → 400 `ErrorDuplicateTransactionId`;
- `changeKey` / `@odata.etag` change on every write; ids are per mailbox; REST ids change on a move;
- extended properties are stored but only returned through `$expand=singleValueExtendedProperties(
  $filter=id eq '…')`; `cancel` is for organizers only.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import html
import json
import re
import uuid
from typing import Any

from . import recurrence as rrule
from .errors import GraphError, bad_request, item_or_malformed
from .model import (
    EventRec,
    ExceptionRec,
    Mailbox,
    new_change_key,
    new_ical_uid,
    new_immutable_id,
    new_rest_id,
    occurrence_ical_uid,
    occurrence_id,
    parse_occurrence_id,
)
from .store import GraphState
from .timezones import format_dttz, iso_utc, parse_dttz

EVENT_PROPERTIES = {
    "id",
    "categories",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "allowNewTimeProposals",
    "attendees",
    "body",
    "bodyPreview",
    "cancelledOccurrences",
    "end",
    "hasAttachments",
    "hideAttendees",
    "iCalUId",
    "importance",
    "isAllDay",
    "isCancelled",
    "isDraft",
    "isOnlineMeeting",
    "isOrganizer",
    "isReminderOn",
    "location",
    "locations",
    "onlineMeeting",
    "onlineMeetingProvider",
    "onlineMeetingUrl",
    "organizer",
    "originalEndTimeZone",
    "originalStart",
    "originalStartTimeZone",
    "recurrence",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "responseStatus",
    "sensitivity",
    "seriesMasterId",
    "showAs",
    "start",
    "subject",
    "transactionId",
    "type",
    "webLink",
    "attachments",
    "calendar",
    "exceptionOccurrences",
    "extensions",
    "instances",
    "multiValueExtendedProperties",
    "singleValueExtendedProperties",
}
# Accepted in a body but owned by the service (clients often echo a fetched event back).
READ_ONLY = {
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "bodyPreview",
    "cancelledOccurrences",
    "hasAttachments",
    "iCalUId",
    "isCancelled",
    "isDraft",
    "isOrganizer",
    "onlineMeeting",
    "onlineMeetingUrl",
    "organizer",
    "originalEndTimeZone",
    "originalStart",
    "originalStartTimeZone",
    "responseStatus",
    "seriesMasterId",
    "type",
    "webLink",
    "calendar",
    "attachments",
    "exceptionOccurrences",
    "extensions",
    "instances",
    "multiValueExtendedProperties",
}
ENUMS = {
    "showAs": ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown"),
    "importance": ("low", "normal", "high"),
    "sensitivity": ("normal", "personal", "private", "confidential"),
    "onlineMeetingProvider": (
        "unknown",
        "skypeForBusiness",
        "skypeForConsumer",
        "teamsForBusiness",
    ),
}
BOOLS = (
    "isAllDay",
    "isReminderOn",
    "responseRequested",
    "allowNewTimeProposals",
    "hideAttendees",
    "isOnlineMeeting",
)
ATTENDEE_TYPES = ("required", "optional", "resource")
LOCATION_TYPES = (
    "default",
    "conferenceRoom",
    "homeAddress",
    "businessAddress",
    "geoCoordinates",
    "streetAddress",
    "hotel",
    "restaurant",
    "localBusiness",
    "postalAddress",
)
UNIQUE_ID_TYPES = ("unknown", "locationStore", "directory", "private", "bing")
BODY_TYPES = ("text", "html")


def canonical(value: Any, allowed: tuple[str, ...]) -> str | None:
    """An enum member as Graph spells it, matched case-insensitively, or None.

    Graph's enum values are case-insensitive on input and come back in the metadata's spelling:
    Microsoft's own examples send "HTML", "Required", "Default" (api-reference/v1.0/api/
    user-post-events.md) and get "html", "required", "default" back.
    """
    if not isinstance(value, str):
        return None
    low = value.lower()
    return next((a for a in allowed if a.lower() == low), None)


MAX_ATTENDEES = 500
NO_TIME = "0001-01-01T00:00:00Z"
_EP_ID = re.compile(
    r"^(String|Integer|Boolean|SystemTime|Double|Binary|Guid|Long|Short|Float|Currency|Object)"
    r"\s+(\{[0-9A-Fa-f-]{36}\}\s+(Name\s+\S.*|Id\s+0x[0-9A-Fa-f]{1,4})|0x[0-9A-Fa-f]{8})$"
)


def _odata_bad(message: str) -> GraphError:
    return GraphError(400, "RequestBodyRead", message)


def _invalid(message: str) -> GraphError:
    return GraphError(400, "ErrorInvalidRequest", message)


# --------------------------------------------------------------------------- validation
def _norm_email(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _odata_bad(f"'{where}' must be an emailAddress object.")
    address = value.get("address")
    name = value.get("name")
    if address is not None and not isinstance(address, str):
        raise _odata_bad(f"'{where}.address' must be a string.")
    if name is not None and not isinstance(name, str):
        raise _odata_bad(f"'{where}.name' must be a string.")
    return {"name": name if name is not None else (address or ""), "address": address or ""}


def _norm_attendees(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _odata_bad("'attendees' must be a collection.")
    if len(value) > MAX_ATTENDEES:
        raise _invalid(f"An event can have at most {MAX_ATTENDEES} attendees.")
    out = []
    for i, att in enumerate(value):
        if not isinstance(att, dict) or "emailAddress" not in att:
            raise _odata_bad(f"attendees[{i}] needs an emailAddress.")
        extra = set(att) - {"emailAddress", "type", "status", "proposedNewTime", "@odata.type"}
        if extra:
            raise _odata_bad(
                f"The property '{sorted(extra)[0]}' does not exist on type 'microsoft.graph.attendee'."
            )
        typ = canonical(att.get("type", "required"), ATTENDEE_TYPES)
        if typ is None:
            raise _odata_bad(f"Invalid attendee type '{att.get('type')}'.")
        email = _norm_email(att["emailAddress"], f"attendees[{i}].emailAddress")
        if not email["address"]:
            raise _invalid("An attendee needs an email address.")
        out.append(
            {"type": typ, "status": {"response": "none", "time": NO_TIME}, "emailAddress": email}
        )
    return out


def _norm_location(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _odata_bad("'location' must be a location object.")
    allowed = {
        "displayName",
        "locationEmailAddress",
        "address",
        "coordinates",
        "locationType",
        "locationUri",
        "uniqueId",
        "uniqueIdType",
        "@odata.type",
    }
    extra = set(value) - allowed
    if extra:
        raise _odata_bad(
            f"The property '{sorted(extra)[0]}' does not exist on type 'microsoft.graph.location'."
        )
    out = {k: v for k, v in value.items() if k != "@odata.type"}
    for key, allowed_values in (
        ("locationType", LOCATION_TYPES),
        ("uniqueIdType", UNIQUE_ID_TYPES),
    ):
        if key in out:
            canon = canonical(out[key], allowed_values)
            if canon is None:
                raise _odata_bad(f"Invalid value '{out[key]}' for property '{key}'.")
            out[key] = canon
    out.setdefault("displayName", "")
    out.setdefault(
        "locationType", "conferenceRoom" if out.get("locationEmailAddress") else "default"
    )
    if out["displayName"] or out.get("locationEmailAddress"):
        out.setdefault("uniqueId", out.get("locationEmailAddress") or out["displayName"])
        out.setdefault(
            "uniqueIdType", "directory" if out.get("locationEmailAddress") else "private"
        )
    else:
        out.setdefault("uniqueIdType", "unknown")
    return out


def _norm_ext_props(value: Any) -> dict[str, tuple[str, str]]:
    if not isinstance(value, list):
        raise _odata_bad("'singleValueExtendedProperties' must be a collection.")
    out: dict[str, tuple[str, str]] = {}
    for prop in value:
        if not isinstance(prop, dict) or not isinstance(prop.get("id"), str):
            raise _odata_bad("An extended property needs an 'id'.")
        pid = " ".join(prop["id"].split())
        if not _EP_ID.match(pid):
            raise _invalid(f"The extended property id '{prop['id']}' is not valid.")
        val = prop.get("value")
        if not isinstance(val, str):
            raise _odata_bad("An extended property 'value' must be a string.")
        out[pid.lower()] = (pid, val)
    return out


def parse_body(body: Any, *, creating: bool) -> dict[str, Any]:
    """Validate an event body; returns the normalized changes (keys as in Graph)."""
    if not isinstance(body, dict):
        raise _odata_bad("The request body must be a JSON object (microsoft.graph.event).")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("@odata.") or key.endswith("@odata.type"):
            continue
        if key not in EVENT_PROPERTIES:
            raise _odata_bad(
                f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure "
                "to only use property names that are defined by the type or mark the type as "
                "open type."
            )
        if key in READ_ONLY:
            continue
        if key == "transactionId" and not creating:
            continue  # can only be set on create
        changes[key] = value
    for key, allowed in ENUMS.items():
        if key in changes:
            canon = canonical(changes[key], allowed)
            if canon is None:
                raise _odata_bad(f"Invalid value '{changes[key]}' for property '{key}'.")
            changes[key] = canon
    for key in BOOLS:
        if key in changes and not isinstance(changes[key], bool):
            raise _odata_bad(f"The property '{key}' must be a boolean.")
    if (
        "subject" in changes
        and changes["subject"] is not None
        and not isinstance(changes["subject"], str)
    ):
        raise _odata_bad("'subject' must be a string.")
    if "body" in changes:
        b = changes["body"]
        kind = canonical(b.get("contentType", "text"), BODY_TYPES) if isinstance(b, dict) else None
        if kind is None:
            raise _odata_bad("'body' must be an itemBody with contentType text or html.")
        changes["body"] = stored_body(kind, str(b.get("content") or ""))
    if "categories" in changes and not (
        isinstance(changes["categories"], list)
        and all(isinstance(c, str) for c in changes["categories"])
    ):
        raise _odata_bad("'categories' must be a collection of strings.")
    if "reminderMinutesBeforeStart" in changes and not isinstance(
        changes["reminderMinutesBeforeStart"], int
    ):
        raise _odata_bad("'reminderMinutesBeforeStart' must be an integer.")
    if "attendees" in changes:
        changes["attendees"] = _norm_attendees(changes["attendees"] or [])
    if "location" in changes:
        changes["location"] = _norm_location(changes["location"] or {})
        changes["locations"] = [changes["location"]] if changes["location"]["displayName"] else []
    elif "locations" in changes:
        locs = changes["locations"] or []
        if not isinstance(locs, list):
            raise _odata_bad("'locations' must be a collection.")
        changes["locations"] = [_norm_location(x) for x in locs]
        changes["location"] = (
            changes["locations"][0] if changes["locations"] else _norm_location({})
        )
    if "singleValueExtendedProperties" in changes:
        changes["singleValueExtendedProperties"] = _norm_ext_props(
            changes["singleValueExtendedProperties"]
        )
    if "transactionId" in changes and not isinstance(changes["transactionId"], str | None):
        raise _odata_bad("'transactionId' must be a string.")
    for key in ("start", "end"):
        if key in changes:
            changes[key] = parse_dttz(changes[key], key)
    return changes


def _check_times(start: dt.datetime, end: dt.datetime, start_tz: str, all_day: bool) -> None:
    if start >= end:
        raise _invalid("The end time of the event must be later than its start time.")
    if all_day:
        from .timezones import zone

        local_s = start.astimezone(zone(start_tz))
        local_e = end.astimezone(zone(start_tz))
        if local_s.time() != dt.time(0) or local_e.time() != dt.time(0):
            raise _invalid(
                "Start and end times of an all-day event must be at midnight in the event's "
                "time zone."
            )


def _payload_hash(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


_DATA_KEYS = (
    "subject",
    "body",
    "importance",
    "sensitivity",
    "showAs",
    "isAllDay",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
    "hideAttendees",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "categories",
    "attendees",
    "location",
    "locations",
)


def _defaults() -> dict[str, Any]:
    return {
        "subject": "",
        "body": {"contentType": "text", "content": ""},
        "importance": "normal",
        "sensitivity": "normal",
        "showAs": "busy",
        "isAllDay": False,
        "isReminderOn": True,
        "reminderMinutesBeforeStart": 15,
        "responseRequested": True,
        "allowNewTimeProposals": True,
        "hideAttendees": False,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "categories": [],
        "attendees": [],
        "location": _norm_location({}),
        "locations": [],
    }


# --------------------------------------------------------------------------- writes
def create_event(
    state: GraphState,
    mb: Mailbox,
    calendar_id: str,
    body: Any,
    *,
    organizer: dict[str, Any] | None = None,
) -> tuple[EventRec, bool]:
    """Create an event; returns (event, created). `created` is False for a transactionId replay."""
    changes = parse_body(body, creating=True)
    txid = changes.get("transactionId")
    digest = _payload_hash(body)
    if txid:
        known = mb.transactions.get(txid)
        if known is not None:
            key, known_digest = known
            if known_digest != digest:
                raise GraphError(
                    400,
                    "ErrorDuplicateTransactionId",
                    "The TransactionId specified in the request has already been used to create "
                    "a different event.",
                )
            existing = mb.events.get(key)
            if existing is not None:
                return existing, False
    if "start" not in changes or "end" not in changes:
        raise _invalid("An event needs both 'start' and 'end'.")
    start, start_tz = changes["start"]
    end, end_tz = changes["end"]
    data = _defaults()
    data.update({k: changes[k] for k in _DATA_KEYS if k in changes})
    _check_times(start, end, start_tz, data["isAllDay"])
    rec_recurrence = None
    if changes.get("recurrence") is not None:
        from .timezones import zone

        rec_recurrence = rrule.normalize(
            changes["recurrence"], start.astimezone(zone(start_tz)).replace(tzinfo=None), start_tz
        )
    now = state.now()
    seq = mb.next_seq()
    rec = EventRec(
        key=uuid.uuid4().hex,
        calendar_id=calendar_id,
        rest_id=new_rest_id(),
        immutable_id=new_immutable_id(),
        ical_uid=new_ical_uid(),
        data=data,
        start=start,
        end=end,
        start_tz=start_tz,
        end_tz=end_tz,
        organizer=organizer or {"emailAddress": {"name": mb.display_name, "address": mb.mail}},
        is_organizer=organizer is None,
        created=now,
        modified=now,
        recurrence=rec_recurrence,
        seq=seq,
        transaction_id=txid,
        ext_props=changes.get("singleValueExtendedProperties", {}),
    )
    if organizer is not None:
        rec.response = "notResponded"
    mb.events[rec.key] = rec
    mb.index(rec)
    if txid:
        mb.transactions[txid] = (rec.key, digest)
    state.changed(mb, rec, "created")
    return rec, True


def update_event(
    state: GraphState, mb: Mailbox, rec: EventRec, occ: dt.datetime | None, body: Any
) -> None:
    changes = parse_body(body, creating=False)
    now = state.now()
    if occ is not None:
        _update_occurrence(state, mb, rec, occ, changes, now)
        return
    start, start_tz = changes.get("start", (rec.start, rec.start_tz))
    end, end_tz = changes.get("end", (rec.end, rec.end_tz))
    all_day = changes.get("isAllDay", rec.data["isAllDay"])
    _check_times(start, end, start_tz, all_day)
    if "recurrence" in changes:
        if changes["recurrence"] is None:
            rec.recurrence = None
            rec.exceptions.clear()
            rec.cancelled.clear()
        else:
            from .timezones import zone

            rec.recurrence = rrule.normalize(
                changes["recurrence"],
                start.astimezone(zone(start_tz)).replace(tzinfo=None),
                start_tz,
            )
    if "attendees" in changes:
        # Keep responses already received from attendees that stay on the meeting.
        old = {a["emailAddress"]["address"].lower(): a for a in rec.data["attendees"]}
        for att in changes["attendees"]:
            prev = old.get(att["emailAddress"]["address"].lower())
            if prev is not None and prev["type"] == att["type"]:
                att["status"] = prev["status"]
    time_changed = (start, end) != (rec.start, rec.end)
    rec.start, rec.start_tz, rec.end, rec.end_tz = start, start_tz, end, end_tz
    rec.data.update({k: changes[k] for k in _DATA_KEYS if k in changes})
    if time_changed and rec.is_organizer:
        # A new time invalidates earlier answers, as Outlook re-sends the request.
        for att in rec.data["attendees"]:
            att["status"] = {"response": "none", "time": NO_TIME}
    if "singleValueExtendedProperties" in changes:
        rec.ext_props.update(changes["singleValueExtendedProperties"])
    rec.touch(now, mb.next_seq())
    state.changed(mb, rec, "updated")


def _update_occurrence(
    state: GraphState,
    mb: Mailbox,
    rec: EventRec,
    occ: dt.datetime,
    changes: dict[str, Any],
    now: dt.datetime,
) -> None:
    if "recurrence" in changes:
        raise _invalid("The recurrence of an occurrence cannot be changed.")
    exc = rec.exceptions.get(occ)
    duration = rec.end - rec.start
    start, start_tz = changes.get(
        "start", ((exc.start, exc.start_tz) if exc else (occ, rec.start_tz))
    )
    end, end_tz = changes.get(
        "end", ((exc.end, exc.end_tz) if exc else (occ + duration, rec.end_tz))
    )
    _check_times(start, end, start_tz, bool(changes.get("isAllDay", rec.data["isAllDay"])))
    _check_boundary(rec, occ, start, end)
    overrides = dict(exc.overrides) if exc else {}
    overrides.update({k: changes[k] for k in _DATA_KEYS if k in changes})
    rec.exceptions[occ] = ExceptionRec(
        overrides, start, end, start_tz, end_tz, new_change_key(), now
    )
    if "singleValueExtendedProperties" in changes:
        rec.ext_props.update(changes["singleValueExtendedProperties"])
    rec.seq = mb.next_seq()
    state.changed(mb, rec, "updated")


def _check_boundary(rec: EventRec, occ: dt.datetime, start: dt.datetime, end: dt.datetime) -> None:
    """ErrorOccurrenceCrossingBoundary: an occurrence can't move onto its neighbours' days."""
    assert rec.recurrence is not None
    duration = rec.end - rec.start
    window_lo = occ - dt.timedelta(days=400)
    window_hi = occ + dt.timedelta(days=400)
    starts = rrule.occurrence_starts(rec.recurrence, rec.start, duration, window_lo, window_hi)
    if occ not in starts:
        return
    i = starts.index(occ)
    prev_day = starts[i - 1].date() if i > 0 else None
    next_day = starts[i + 1].date() if i + 1 < len(starts) else None
    if (prev_day and start.date() <= prev_day) or (next_day and start.date() >= next_day):
        raise GraphError(
            400,
            "ErrorOccurrenceCrossingBoundary",
            # The message event-update.md documents for this code.
            "Modified occurrence is crossing or overlapping adjacent occurrence.",
        )


def delete_event(state: GraphState, mb: Mailbox, rec: EventRec, occ: dt.datetime | None) -> None:
    if occ is not None:
        rec.exceptions.pop(occ, None)
        rec.cancelled.add(occ)
        rec.seq = mb.next_seq()
        rec.change_key = new_change_key()
        state.changed(mb, rec, "updated")
        return
    mb.events.pop(rec.key, None)
    mb.unindex(rec)
    mb.bury(rec, mb.next_seq())
    state.changed(mb, rec, "deleted")


def move_event(state: GraphState, mb: Mailbox, rec: EventRec, calendar_id: str) -> None:
    """Move to another calendar of the same mailbox: the REST id changes, the immutable id not."""
    if rec.calendar_id == calendar_id:
        return
    mb.bury(rec, mb.next_seq())  # the old calendar (and the old REST id) lose the item
    mb.unindex(rec)
    state.changed(mb, rec, "deleted")
    rec.calendar_id = calendar_id
    rec.rest_id = new_rest_id()
    mb.index(rec)
    rec.touch(state.now(), mb.next_seq())
    state.changed(mb, rec, "created")


# The parameters of the event actions ($metadata: cancel(Comment), accept(Comment, SendResponse),
# decline/tentativelyAccept(Comment, SendResponse, ProposedNewTime)). Graph matches them without
# regard to case (Kiota SDKs send the docs' camelCase; the metadata spells them PascalCase).
ACTION_PARAMETERS: dict[str, dict[str, str]] = {
    "cancel": {"comment": "Edm.String"},
    "accept": {"comment": "Edm.String", "sendresponse": "Edm.Boolean"},
    "decline": {
        "comment": "Edm.String",
        "sendresponse": "Edm.Boolean",
        "proposednewtime": "microsoft.graph.timeSlot",
    },
    "tentativelyaccept": {
        "comment": "Edm.String",
        "sendresponse": "Edm.Boolean",
        "proposednewtime": "microsoft.graph.timeSlot",
    },
}
_ACTION_NAMES = {"tentativelyaccept": "tentativelyAccept"}


def action_parameters(action: str, body: Any) -> dict[str, Any]:
    """An event action's body, checked as OData reads it: an object of the action's parameters
    only (400 RequestBodyRead naming the first unknown one, as Graph answers e.g. sendMail with
    an unknown parameter), each of its declared type; keys lowercased. null means absent."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _odata_bad("The request body must be a JSON object of the action's parameters.")
    known = ACTION_PARAMETERS[action]
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = str(key).lower()
        if name not in known:
            raise _odata_bad(
                f"The parameter '{key}' in the request payload is not a valid parameter for the "
                f"operation '{_ACTION_NAMES.get(action, action)}'."
            )
        kind = known[name]
        ok = (
            value is None
            or (kind == "Edm.String" and isinstance(value, str))
            or (kind == "Edm.Boolean" and isinstance(value, bool))
            or (kind == "microsoft.graph.timeSlot" and isinstance(value, dict))
        )
        if not ok:
            raise _odata_bad(
                f"Cannot convert the literal '{value}' to the expected type '{kind}' "
                f"(parameter '{key}')."
            )
        if value is not None:
            out[name] = value
    return out


def cancel_event(state: GraphState, mb: Mailbox, rec: EventRec, occ: dt.datetime | None) -> None:
    if not rec.is_organizer:
        raise _invalid("You need to be an organizer to cancel a meeting.")
    # Cancel = send cancellations and move the organizer's item to Deleted Items.
    delete_event(state, mb, rec, occ)


def respond(
    state: GraphState, mb: Mailbox, rec: EventRec, occ: dt.datetime | None, response: str
) -> None:
    """accept / tentativelyAccept / decline on an attendee's copy."""
    if rec.is_organizer:
        raise _invalid("Your request can't be completed. You can't respond to your own meeting.")
    now = state.now()
    rec.response = response
    rec.response_time = now
    org_addr = rec.organizer.get("emailAddress", {}).get("address", "")
    organizer_mb = state.mailbox_by_address(mb.tenant_id, org_addr)
    if organizer_mb is not None:
        set_attendee_response(state, organizer_mb, rec.ical_uid, mb.mail, response, occ)
    if response == "declined":
        # Declining removes the meeting from the attendee's calendar (Deleted Items).
        delete_event(state, mb, rec, occ)
    else:
        rec.touch(now, mb.next_seq())
        state.changed(mb, rec, "updated")


def set_attendee_response(
    state: GraphState,
    organizer_mb: Mailbox,
    ical_uid: str,
    address: str,
    response: str,
    occ: dt.datetime | None = None,
) -> None:
    """The organizer's copy learns an attendee's answer: the whole series', or with `occ` one
    occurrence's, which becomes an exception of the organizer's series carrying that attendee's
    status (as Outlook tracks an answer to one instance), the rest of the series unchanged."""
    now = state.now()
    for org in organizer_mb.events.values():
        if org.ical_uid != ical_uid or not org.is_organizer:
            continue
        if occ is not None and org.recurrence is not None:
            exc = org.exceptions.get(occ)
            overrides = dict(exc.overrides) if exc else {}
            attendees = copy.deepcopy(overrides.get("attendees", org.data["attendees"]))
            _answer(attendees, address, response, now)
            overrides["attendees"] = attendees
            duration = org.end - org.start
            start, end = (exc.start, exc.end) if exc else (occ, occ + duration)
            start_tz, end_tz = (exc.start_tz, exc.end_tz) if exc else (org.start_tz, org.end_tz)
            org.exceptions[occ] = ExceptionRec(
                overrides, start, end, start_tz, end_tz, new_change_key(), now
            )
        else:
            _answer(org.data["attendees"], address, response, now)
        org.touch(now, organizer_mb.next_seq())
        state.changed(organizer_mb, org, "updated")


def _answer(attendees: list[dict[str, Any]], address: str, response: str, now: dt.datetime) -> None:
    for att in attendees:
        if att["emailAddress"]["address"].lower() == address.lower():
            att["status"] = {"response": response, "time": iso_utc(now)}


def declined_by(rec: EventRec, address: str) -> set[dt.datetime]:
    """Occurrences of the organizer's series that `address` declined one by one (their
    exceptions carry its declined status): that attendee's copy keeps them removed."""
    out = set()
    for occ, exc in rec.exceptions.items():
        for att in exc.overrides.get("attendees", ()):
            if (
                att["emailAddress"]["address"].lower() == address.lower()
                and att["status"]["response"] == "declined"
            ):
                out.add(occ)
    return out


# --------------------------------------------------------------------------- reads
def resolve(mb: Mailbox, event_id: str) -> tuple[EventRec, dt.datetime | None]:
    rec = mb.find(event_id)
    if rec is not None:
        return rec, None
    parsed = parse_occurrence_id(event_id)
    if parsed is not None:
        master_id, orig = parsed
        master = mb.find(master_id)
        if master is not None and master.recurrence is not None and orig not in master.cancelled:
            duration = master.end - master.start
            starts = rrule.occurrence_starts(
                master.recurrence,
                master.start,
                duration,
                orig - dt.timedelta(seconds=1),
                orig + dt.timedelta(seconds=1),
            )
            if orig in starts:
                return master, orig
    raise item_or_malformed(event_id)


def occurrences(
    rec: EventRec, window_start: dt.datetime, window_end: dt.datetime
) -> list[tuple[dt.datetime, dt.datetime, dt.datetime]]:
    """(original start, start, end) of the series' instances overlapping the window."""
    assert rec.recurrence is not None
    duration = rec.end - rec.start
    # Exceptions may have moved an instance into the window from a day away; widen the scan.
    starts = rrule.occurrence_starts(
        rec.recurrence,
        rec.start,
        duration,
        window_start - dt.timedelta(days=2),
        window_end + dt.timedelta(days=2),
    )
    out = []
    for orig in starts:
        if orig in rec.cancelled:
            continue
        exc = rec.exceptions.get(orig)
        s, e = (exc.start, exc.end) if exc else (orig, orig + duration)
        if s < window_end and e > window_start:
            out.append((orig, s, e))
    return out


def view_items(
    mb: Mailbox, calendar_ids: set[str], window_start: dt.datetime, window_end: dt.datetime
) -> list[tuple[EventRec, dt.datetime | None, dt.datetime]]:
    """calendarView semantics: singles overlapping the window + expanded instances, by start."""
    out: list[tuple[EventRec, dt.datetime | None, dt.datetime]] = []
    for rec in mb.events.values():
        if rec.calendar_id not in calendar_ids:
            continue
        if rec.recurrence is None:
            if rec.start < window_end and rec.end > window_start:
                out.append((rec, None, rec.start))
        else:
            for orig, s, _e in occurrences(rec, window_start, window_end):
                out.append((rec, orig, s))
    out.sort(key=lambda t: (t[2], t[0].key))
    return out


def item_key(rec: EventRec, occ: dt.datetime | None) -> str:
    return rec.key if occ is None else f"{rec.key}@{int(occ.timestamp())}"


def item_change_key(rec: EventRec, occ: dt.datetime | None) -> str:
    if occ is None:
        return rec.change_key
    exc = rec.exceptions.get(occ)
    return rec.change_key + (exc.change_key if exc else "")


def item_id(rec: EventRec, occ: dt.datetime | None, immutable: bool) -> str:
    base = rec.immutable_id if immutable else rec.rest_id
    return base if occ is None else occurrence_id(base, occ)


# How Exchange stores an HTML body: as a whole document (api-reference/v1.0/api/user-post-events.md
# and event-get.md show the created/fetched event's body wrapped like this).
HTML_HEAD = (
    '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    "\r\n</head>\r\n<body>\r\n"
)
HTML_TAIL = "\r\n</body>\r\n</html>\r\n"


def stored_body(kind: str, content: str) -> dict[str, str]:
    """The body as Exchange keeps it: an HTML fragment becomes a document; text stays text."""
    if kind == "html" and content.strip() and not re.match(r"\s*(<!doctype|<html)", content, re.I):
        content = HTML_HEAD + content + HTML_TAIL
    return {"contentType": kind, "content": content}


def html_to_text(content: str) -> str:
    text = re.sub(r"(?is)<(head|style|script)\b.*?</\1\s*>", "", content)
    text = re.sub(r"(?i)<br\s*/?>|</(p|div|tr|li|h[1-6])\s*>", "\r\n", text)
    text = html.unescape(re.sub(r"<[^>]+>", "", text)).replace("\xa0", " ")
    lines = [line.strip() for line in re.split(r"\r?\n", text)]
    return "\r\n".join(line for line in lines if line)


def text_to_html(content: str) -> str:
    if not content:
        return ""
    escaped = html.escape(content, quote=False).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return HTML_HEAD + '<div class="PlainText">' + escaped + "</div>" + HTML_TAIL


def render_body(body: dict[str, Any], want: str | None) -> dict[str, str]:
    """`Prefer: outlook.body-content-type`: "text" converts HTML to text; without the header (or
    with "html") the body comes back as HTML, text bodies converted (event-get.md: "If the header
    is not specified, the body property is returned in HTML format")."""
    kind, content = str(body.get("contentType", "text")), str(body.get("content", ""))
    if want == "text":
        return {
            "contentType": "text",
            "content": html_to_text(content) if kind == "html" else content,
        }
    return {"contentType": "html", "content": text_to_html(content) if kind == "text" else content}


def _preview(body: dict[str, Any]) -> str:
    text = body.get("content", "")
    if body.get("contentType") == "html":
        text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return " ".join(text.split())[:255]


def event_json(
    state: GraphState,
    mb: Mailbox,
    rec: EventRec,
    occ: dt.datetime | None = None,
    *,
    tz: str | None = None,
    immutable: bool = False,
    select: list[str] | None = None,
    expand_ext: list[str] | None = None,
    body_type: str | None = None,
) -> dict[str, Any]:
    data = dict(rec.data)
    start, end, stz, etz = rec.start, rec.end, rec.start_tz, rec.end_tz
    modified = rec.modified
    etype = "seriesMaster" if rec.recurrence is not None else "singleInstance"
    ical = rec.ical_uid
    series_master_id = None
    original_start = None
    if occ is not None:
        duration = rec.end - rec.start
        start, end = occ, occ + duration
        etype = "occurrence"
        exc = rec.exceptions.get(occ)
        if exc is not None:
            data.update(exc.overrides)
            start, end, stz, etz = exc.start, exc.end, exc.start_tz, exc.end_tz
            etype = "exception"
            modified = exc.modified
        ical = occurrence_ical_uid(rec.ical_uid, occ)
        series_master_id = rec.immutable_id if immutable else rec.rest_id
        original_start = iso_utc(occ)
    eid = item_id(rec, occ, immutable)
    ck = item_change_key(rec, occ)
    out_tz = tz or "UTC"
    out: dict[str, Any] = {
        "@odata.etag": f'W/"{ck}"',
        "id": eid,
        "createdDateTime": iso_utc(rec.created),
        "lastModifiedDateTime": iso_utc(modified),
        "changeKey": ck,
        "categories": list(data["categories"]),
        "originalStartTimeZone": stz,
        "originalEndTimeZone": etz,
        "iCalUId": ical,
        "reminderMinutesBeforeStart": data["reminderMinutesBeforeStart"],
        "isReminderOn": data["isReminderOn"],
        "hasAttachments": False,
        "subject": data["subject"],
        "bodyPreview": _preview(data["body"]),
        "importance": data["importance"],
        "sensitivity": data["sensitivity"],
        "isAllDay": data["isAllDay"],
        "isCancelled": rec.is_cancelled,
        "isOrganizer": rec.is_organizer,
        "responseRequested": data["responseRequested"],
        "seriesMasterId": series_master_id,
        "showAs": data["showAs"],
        "type": etype,
        "webLink": f"https://outlook.office365.com/owa/?itemid={eid}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": data["isOnlineMeeting"],
        "onlineMeetingProvider": data["onlineMeetingProvider"],
        "allowNewTimeProposals": data["allowNewTimeProposals"],
        "isDraft": False,
        "hideAttendees": data["hideAttendees"],
        "responseStatus": {
            "response": rec.response,
            "time": iso_utc(rec.response_time) if rec.response_time else NO_TIME,
        },
        "body": render_body(data["body"], body_type),
        "start": format_dttz(start, out_tz),
        "end": format_dttz(end, out_tz),
        "location": dict(data["location"]),
        "locations": [dict(x) for x in data["locations"]],
        "recurrence": rec.recurrence if occ is None else None,
        "attendees": [json.loads(json.dumps(a)) for a in data["attendees"]],
        "organizer": json.loads(json.dumps(rec.organizer)),
        "onlineMeeting": None,
    }
    if original_start is not None:
        out["originalStart"] = original_start
    # Always present, null unless set on create (event-delta.md's example: "transactionId": null).
    out["transactionId"] = rec.transaction_id
    if expand_ext is not None:
        wanted = {" ".join(x.split()).lower() for x in expand_ext}
        props = [
            {"id": pid, "value": val} for low, (pid, val) in rec.ext_props.items() if low in wanted
        ]
        if props:
            out["singleValueExtendedProperties"] = props
    if select:
        keep = {s.strip() for s in select} | {"id", "@odata.etag"}
        out = {k: v for k, v in out.items() if k in keep}
    return out


def ext_prop_matches(rec: EventRec, prop_id: str, value: str | None) -> bool:
    found = rec.ext_props.get(" ".join(prop_id.split()).lower())
    return found is not None and (value is None or found[1] == value)


def bad_filter(text: str) -> GraphError:
    return bad_request(f"Invalid filter clause: {text}")
