"""getSchedule: free/busy for up to 100 schedules (20 documented) over a window under 62 days.

Reads each entity's default calendar; `availabilityView` has one digit per interval (0 free,
1 tentative, 2 busy, 3 oof, 4 workingElsewhere — the strongest status in the slot wins). Unknown
addresses get a per-schedule `error` with HTTP 200, as Graph does.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from .errors import GraphError
from .events import view_items
from .model import Mailbox
from .permissions import Caller, app_permissions
from .store import WRITE_ROLES, GraphState
from .timezones import format_dttz, parse_dttz

# Observed, not documented: calendar-getschedule.md says 20 schedules, Graph takes 100 and refuses
# 101 with ErrorMailboxDataArrayTooBig (microsoftgraph/microsoft-graph-docs-contrib#5895 quotes the
# error). The emulator follows Graph; product code keeps to the documented 20 (GRAPH.md §5.2).
MAX_SCHEDULES = 100
DIGIT = {"free": 0, "tentative": 1, "busy": 2, "oof": 3, "workingElsewhere": 4, "unknown": 0}
STRENGTH = {"free": 0, "unknown": 0, "workingElsewhere": 1, "tentative": 2, "busy": 3, "oof": 4}


def _bad(message: str) -> GraphError:
    return GraphError(400, "ErrorInvalidParameter", message)


def get_schedule(
    state: GraphState, caller: Caller, tenant_id: str, body: Any, tz: str | None
) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
    # Parameter names as the docs spell them (`schedules`) or as the metadata does (`Schedules`,
    # what Kiota SDKs send: the v1.0 $metadata action getSchedule); Graph takes either.
    body = {str(k).lower(): v for k, v in body.items()}
    schedules = body.get("schedules")
    if (
        not isinstance(schedules, list)
        or not schedules
        or not all(isinstance(s, str) for s in schedules)
    ):
        raise _bad("The 'schedules' parameter must be a non-empty collection of SMTP addresses.")
    if len(schedules) > MAX_SCHEDULES:
        raise GraphError(
            400,
            "ErrorMailboxDataArrayTooBig",
            "There are too many target users in the EmailAddress array. The allowed size = "
            f"{MAX_SCHEDULES}; the actual size = {len(schedules)}.",
        )
    if "starttime" not in body or "endtime" not in body:
        raise _bad("Both 'startTime' and 'endTime' are required.")
    start, _ = parse_dttz(body["starttime"], "startTime")
    end, _ = parse_dttz(body["endtime"], "endTime")
    if end <= start:
        raise _bad("The 'endTime' must be later than 'startTime'.")
    if end - start >= dt.timedelta(days=62):
        raise _bad("The requested time window must be shorter than 62 days.")
    interval = body.get("availabilityviewinterval", 30)
    if isinstance(interval, str) and interval.strip().isdigit():
        # An Edm.Int32 as a JSON string, as Microsoft's free/busy page sends it
        # (graph-docs concepts/outlook-get-free-busy-schedule.md: "availabilityViewInterval": "15").
        interval = int(interval)
    if not isinstance(interval, int) or isinstance(interval, bool) or not 5 <= interval <= 1440:
        raise _bad("availabilityViewInterval must be between 5 and 1440 minutes.")
    out_tz = tz or "UTC"
    value = []
    for address in schedules:
        mb = state.mailbox(tenant_id, address)
        if mb is None:
            value.append(
                {
                    "scheduleId": address,
                    "availabilityView": "",
                    "scheduleItems": [],
                    "error": {
                        "message": f"Unable to resolve e-mail address {address} to an Active "
                        "Directory object.",
                        "responseCode": "5009",
                    },
                }
            )
            continue
        value.append(_one(state, caller, mb, address, start, end, interval, out_tz))
    return {
        "@odata.context": f"{state.emulator.base_url}/v1.0/"
        "$metadata#Collection(microsoft.graph.scheduleInformation)",
        "value": value,
    }


# Exchange folder permission levels (Add-MailboxFolderPermission -AccessRights) above free/busy:
# from LimitedDetails up, a calendar's reader sees subjects and locations; AvailabilityOnly and
# None show free/busy only (L:/powershell/module/exchange/add-mailboxfolderpermission).
DETAIL_LEVELS = frozenset(
    {
        "LimitedDetails", "Reviewer", "Contributor", "NonEditingAuthor", "Author",
        "PublishingAuthor", "Editor", "PublishingEditor", "Owner",
    }
)  # fmt: skip
DETAIL_SHARE_ROLES = frozenset({"limitedRead", "read", "write", *WRITE_ROLES})
# Every application calendar permission reads subjects through /events (Calendars.ReadBasic.All
# too: it omits only bodies, attachments and extensions), so getSchedule hides nothing from them.
APP_DETAILS = frozenset({"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic.All"})


def sees_details(state: GraphState, caller: Caller, mb: Mailbox) -> bool:
    """Whether getSchedule shows this caller subjects and locations of `mb`'s events: only with
    more than free/busy rights on the mailbox (the issue-19 rule, as Outlook's scheduling
    assistant shows it). Delegated: the owner, a share above `freeBusyRead`, or a "Default"
    folder permission above AvailabilityOnly. Application: any calendar permission on the
    mailbox (tenant-wide or by Exchange RBAC; APP_DETAILS). Not documented by Microsoft either
    way: the emulator assumes what the permissions can read anyway, so a client that must not
    keep subjects has to drop them itself (BookingBridge's free/busy sync does)."""
    if mb.default_permission in DETAIL_LEVELS:
        return True
    if caller.is_app:
        return bool(app_permissions(state, caller, mb) & APP_DETAILS)
    if caller.user_id == mb.user_id:
        return True
    return state.share_role(mb, mb.default_calendar.id, caller.user_id or "") in DETAIL_SHARE_ROLES


def _one(
    state: GraphState,
    caller: Caller,
    mb: Mailbox,
    address: str,
    start: dt.datetime,
    end: dt.datetime,
    interval: int,
    tz: str,
) -> dict[str, Any]:
    default = mb.default_calendar.id
    items = []
    slots = math.ceil((end - start).total_seconds() / (interval * 60))
    view = [0] * slots
    strength = [0] * slots
    details = sees_details(state, caller, mb)
    for rec, occ, _s in view_items(mb, {default}, start, end):
        data = dict(rec.data)
        s, e = rec.start, rec.end
        if occ is not None:
            exc = rec.exceptions.get(occ)
            s, e = (exc.start, exc.end) if exc else (occ, occ + (rec.end - rec.start))
            if exc:
                data.update(exc.overrides)
        if rec.is_cancelled:
            continue
        status = data.get("showAs", "busy")
        item: dict[str, Any] = {
            "isPrivate": data.get("sensitivity") == "private",
            "status": status,
            "start": format_dttz(s, tz),
            "end": format_dttz(e, tz),
        }
        if details and data.get("sensitivity") in ("normal", "personal"):
            item["subject"] = data.get("subject", "")
            item["location"] = data.get("location", {}).get("displayName", "")
        items.append(item)
        for i in range(slots):
            slot_s = start + dt.timedelta(minutes=interval * i)
            slot_e = slot_s + dt.timedelta(minutes=interval)
            if s < slot_e and e > slot_s and STRENGTH.get(status, 0) > strength[i]:
                strength[i] = STRENGTH[status]
                view[i] = DIGIT.get(status, 0)
    return {
        "scheduleId": address,
        "availabilityView": "".join(str(d) for d in view),
        "scheduleItems": items,
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            # In the Prefer: outlook.timezone zone, as calendar-getschedule.md's example shows.
            "timeZone": {"name": tz},
        },
    }
