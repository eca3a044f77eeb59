"""What the release timer does with one started booking (pure: no I/O).

`decide` reads one busy block (or, for a release a crash left half done, the block as its
`releasing` record remembers it), the no-show release that applies to its resource, its
attendance record, the resource's calendar kind and the building's connection mode:

    auto-release off, not busy/tentative/oof, a go-live check's ......... ignore
    before start + grace ................................................. wait
    started a day or more ago (the timer was down that long) ............. ignore
    checked in, not yet marked required .................................. require
    checked in and required, released, no_show .......................... ignore
    releasing, claimed by another instance less than CLAIM_LEASE ago ...... ignore `claimed`
    over before anyone looked (no record yet, end passed) ................ no_show `ended`
    platform booking ..................................................... release
    Outlook booking, delegated connection ................................ no_show `delegated_mode`
    Outlook booking, not a room mailbox (personal, shared calendar) ...... no_show `not_a_room_mailbox`
    Outlook booking on a room mailbox connected in application mode ...... decline

"The room is the organizer" can only be learnt from the event itself, so the decline step reads
it first (service.py) and turns into no_show `room_is_organizer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.attendance.model import Attendance
from shared.availability.busy import BusyBlock
from shared.directory.people import AutoRelease

# Graph's freeBusyStatus values that hold a room: free and workingElsewhere never block it.
HOLDING_SHOW_AS = frozenset({"busy", "tentative", "oof"})
# The timer looks back this far: a release is news only while the meeting may still be on.
LOOKBACK = timedelta(days=1)
# A timer instance's claim on a release lasts this long: longer than one release takes (a read
# and a decline, each with the Graph client's retries), short enough that a crashed instance's
# claim is taken over within a couple of ticks.
CLAIM_LEASE = timedelta(minutes=2)

Action = Literal["ignore", "wait", "require", "no_show", "release", "decline"]


@dataclass(frozen=True)
class Situation:
    block: BusyBlock
    rule: AutoRelease  # the resource's effective no-show release
    record: Attendance | None
    calendar_kind: str | None  # the mapping's calendarKind: room, personal, shared
    connection_mode: str | None  # application | delegated (None: not connected)
    is_check: bool = False  # a go-live check's test booking or event


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str | None = None


def release_due(block_start: datetime, rule: AutoRelease) -> datetime:
    """When a booking without a check-in is released (and check-in closes)."""
    return block_start + timedelta(minutes=rule.grace_minutes)


def check_in_opens(block_start: datetime, rule: AutoRelease) -> datetime:
    return block_start - timedelta(minutes=rule.early_minutes)


def decide(situation: Situation, now: datetime) -> Decision:
    block, rule, record = situation.block, situation.rule, situation.record
    if not rule.enabled or situation.is_check or block.show_as not in HOLDING_SHOW_AS:
        return Decision("ignore")
    if now < release_due(block.start, rule):
        return Decision("wait")
    if now >= block.start + LOOKBACK:
        return Decision("ignore", "too_old")
    if record is not None:
        if record.state == "checked_in":
            return Decision("ignore") if record.required else Decision("require")
        if record.state != "releasing":
            return Decision("ignore")  # released or no_show: decided for good
        if record.claimed_at is not None and now < record.claimed_at + CLAIM_LEASE:
            return Decision("ignore", "claimed")  # another instance is releasing it
        # releasing, the lease over: a release that did not finish (a Graph failure, a crash)
    elif now >= block.end:
        return Decision("no_show", "ended")  # nothing left to release: counted, not touched
    if block.source == "platform":
        return Decision("release")
    if situation.connection_mode != "application":
        return Decision("no_show", "delegated_mode")
    if situation.calendar_kind != "room":
        return Decision("no_show", "not_a_room_mailbox")
    return Decision("decline")
