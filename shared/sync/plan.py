"""The pure half of calendar sync: Graph calendarView-delta items + stored busy blocks → actions.

`plan()` decides, `shared.sync.worker` applies (STYLE.md §9, plan then act). Nothing here touches the
network or storage, so every rule below is unit-tested exhaustively (tests/unit/test_sync_plan.py).

Rules, per event id in one round (GRAPH.md §7.3, §4.10, §11):

| the round says (last word per id wins) | stored | action |
|---|---|---|
| an event, busy (`showAs` not `free`), not cancelled, overlapping the window, not ours | absent or different | `Put` the Outlook block |
| the same, identical to what is stored | same | nothing (replays are free) |
| `isCancelled`, `showAs: free`, zero length, or entirely outside the window | an Outlook block | `Remove` it |
| `@removed` | an Outlook block overlapping the window | `Remove` it |
| `@removed` | an Outlook block entirely outside the window, or nothing | nothing (Graph reports changes outside the window as removals) |
| a `seriesMaster` | | nothing: calendarView delta sends each occurrence with its own id |
| `@removed` of a series master Graph confirms deleted (`gone_series`), or a cancelled `seriesMaster` | its occurrences' Outlook blocks (`seriesMasterId`) overlapping the window | `Remove` each: delta may name only the master when a whole series goes |
| our own event: `transactionId` names a platform booking of this resource (its block, or the booking itself while it is created or cancelled), or its id is a platform block's `outlook_event_id` | an Outlook block (imported before we knew) | `Remove` it; never `Put` |
| full round (baseline): nothing about an id | an Outlook block overlapping the window | `Remove` it (Graph no longer has it) |
| a go-live check's own test event (its `transactionId`, shared/core/checkmarks.py) | | as any event, but attributed to nobody (reason `go_live_check`): the check measures how fast it shows up, then deletes it |

Ids are immutable ids (GraphClient sends `Prefer: IdType="ImmutableId"` on every call), so an
event keeps its block when it moves. An Outlook block's id is derived from (mailbox, calendar,
event id): stable across rounds, baselines and processes, and distinct per mapped calendar.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.availability.busy import OUTLOOK_BLOCK_PREFIX, BusyBlock, booking_id_from_transaction
from shared.core.checkmarks import CHECK_ATTRIBUTION_REASON, check_run_of_transaction
from shared.core.times import TimeUnreadable, parse_graph_time, rfc3339_or_none
from shared.directory.attribution import Attribution

logger = logging.getLogger(__name__)

NOT_BUSY = frozenset({"free"})  # freeBusyStatus values that do not make a resource unavailable

RemoveReason = Literal[
    "removed", "cancelled", "free", "outside_window", "empty", "own_booking", "not_in_baseline"
]


@dataclass(frozen=True)
class Target:
    """The mapped calendar a round is about."""

    building_id: str
    resource_id: str
    mailbox: str  # lower-cased, as the mapping stores it
    calendar_id: str


@dataclass(frozen=True)
class Window:
    """The time range a delta token tracks: [start, end), UTC."""

    start: datetime
    end: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start < self.end and end > self.start


@dataclass(frozen=True)
class Put:
    block: BusyBlock
    event_id: str


@dataclass(frozen=True)
class Remove:
    block: BusyBlock
    reason: RemoveReason


Action = Put | Remove


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    seen: int  # items in the round (after de-duplication)
    own: int  # our own events recognised (never imported)
    skipped: int  # unreadable items, series masters, removals we do not track

    @property
    def changes(self) -> int:
        return len(self.actions)


Attributor = Callable[[str | None], Attribution]


def outlook_block_id(mailbox: str, calendar_id: str, event_id: str) -> str:
    """The stable id of the busy block mirroring one event (or occurrence) of a mapped calendar."""
    digest = hashlib.sha256(f"{mailbox}|{calendar_id}|{event_id}".encode()).hexdigest()
    return OUTLOOK_BLOCK_PREFIX + digest[:32]


def organizer_email(item: Mapping[str, Any]) -> str | None:
    organizer = item.get("organizer")
    if not isinstance(organizer, Mapping):
        return None
    email = organizer.get("emailAddress")
    if not isinstance(email, Mapping):
        return None
    address = email.get("address")
    return address if isinstance(address, str) and address.strip() else None


def transaction_bookings(items: Iterable[Mapping[str, Any]]) -> set[str]:
    """Booking ids named by the items' `transactionId`s (candidates for own events)."""
    found = (booking_id_from_transaction(i.get("transactionId")) for i in items)
    return {b for b in found if b}


def _last_word(items: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """One entry per event id: the last the round said about it (replays and duplicates collapse)."""
    final: dict[str, Mapping[str, Any]] = {}
    for item in items:
        event_id = item.get("id")
        if isinstance(event_id, str) and event_id:
            final.pop(event_id, None)  # keep insertion order = order of the last word
            final[event_id] = item
    return final


def _same(a: BusyBlock, b: BusyBlock) -> bool:
    return (
        a.start == b.start
        and a.end == b.end
        and a.show_as == b.show_as
        and a.subject == b.subject
        and a.company_id == b.company_id
        and a.attribution == b.attribution
        and a.outlook_event_id == b.outlook_event_id
        and a.source == b.source
    )


def plan(
    items: Sequence[Mapping[str, Any]],
    stored: Sequence[BusyBlock],
    window: Window,
    target: Target,
    *,
    attribute: Attributor,
    store_subjects: bool,
    full: bool,
    bookings: Collection[str] = (),
    detail: str | None = None,
    gone_series: Collection[str] = (),
) -> Plan:
    """The actions that make the resource's Outlook blocks match this round (table above).

    `items`: every item of the round in order (all pages). `stored`: the resource's blocks
    overlapping the window, both sources (platform blocks identify our own events). `full`: the
    round is a baseline, so stored Outlook blocks it does not mention are gone from Graph.
    `bookings`: ids of platform bookings of this resource without a block (being created, or
    cancelled while their event is being deleted), found by the caller from `transactionId`s.
    `detail`: the provenance the blocks record in `attribution.detail` (`freeBusy`: made from
    getSchedule's status, start and end only, shared/sync/freebusy.py); None for events.
    `gone_series`: series masters this round reports `@removed` that Graph confirmed deleted
    (the caller asked for the master: an `@removed` may also mean "changed outside the window").
    """
    mine = [b for b in stored if b.resource_id == target.resource_id]
    outlook = {b.block_id: b for b in mine if b.source == "outlook"}
    platform_event_ids = {b.outlook_event_id for b in mine if b.source == "platform"}
    platform_bookings = {b.booking_id or b.block_id for b in mine if b.source == "platform"}
    platform_bookings.update(bookings)
    platform_event_ids.discard(None)

    series: dict[str, list[BusyBlock]] = {}
    for b in outlook.values():
        if b.series_master_id:
            series.setdefault(b.series_master_id, []).append(b)

    actions: list[Action] = []
    mentioned: set[str] = set()
    removed: set[str] = set()
    own = skipped = 0

    def remove(block: BusyBlock, why: RemoveReason) -> None:
        if block.block_id not in removed:
            removed.add(block.block_id)
            actions.append(Remove(block, why))

    def remove_series(master_id: str, why: RemoveReason) -> None:
        for b in series.get(master_id, ()):
            if window.overlaps(b.start, b.end):
                mentioned.add(b.block_id)
                remove(b, why)

    final = _last_word(items)
    for event_id, item in final.items():
        block_id = outlook_block_id(target.mailbox, target.calendar_id, event_id)
        current = outlook.get(block_id)
        if "@removed" in item:
            mentioned.add(block_id)
            if current is not None and window.overlaps(current.start, current.end):
                remove(current, "removed")
            elif event_id not in gone_series:
                skipped += 1
            if event_id in gone_series:
                remove_series(event_id, "removed")  # a deleted series: all its occurrences go
            continue
        if item.get("type") == "seriesMaster":
            if item.get("isCancelled") is True:
                remove_series(event_id, "cancelled")
            skipped += 1  # its occurrences come as items of their own
            continue
        booking = booking_id_from_transaction(item.get("transactionId"))
        if event_id in platform_event_ids or (booking is not None and booking in platform_bookings):
            own += 1
            mentioned.add(block_id)
            if current is not None:
                remove(current, "own_booking")
            continue
        try:
            start = parse_graph_time(item.get("start"))
            end = parse_graph_time(item.get("end"))
        except TimeUnreadable as err:
            # Unreadable (an unknown zone included): leave whatever is stored alone (and out of a
            # baseline's removals) rather than guess where the event is.
            logger.warning("sync %s/%s: event times skipped: %s", *_ids(target), err)
            mentioned.add(block_id)
            skipped += 1
            continue
        mentioned.add(block_id)
        show_as = str(item.get("showAs") or "busy")
        reason: RemoveReason | None = None
        if item.get("isCancelled") is True:
            reason = "cancelled"
        elif show_as in NOT_BUSY:
            reason = "free"
        elif end <= start:
            reason = "empty"
        elif not window.overlaps(start, end):
            reason = "outside_window"
        if reason is not None:
            if current is not None:
                remove(current, reason)
            continue
        is_check = check_run_of_transaction(item.get("transactionId")) is not None
        block = _outlook_block(
            item, target, block_id, start, end, show_as, _nobody if is_check else attribute,
            store_subjects, detail,
        )  # fmt: skip
        if block_id in removed:
            continue  # its series was removed in this round; the last word on the series wins
        if current is None or not _same(current, block):
            actions.append(Put(block, event_id))
    if full:
        for block_id, block in outlook.items():
            if block_id not in mentioned and window.overlaps(block.start, block.end):
                remove(block, "not_in_baseline")
    return Plan(tuple(actions), len(final), own, skipped)


def _outlook_block(
    item: Mapping[str, Any],
    target: Target,
    block_id: str,
    start: datetime,
    end: datetime,
    show_as: str,
    attribute: Attributor,
    store_subjects: bool,
    detail: str | None = None,
) -> BusyBlock:
    who = attribute(organizer_email(item))
    subject = item.get("subject") if store_subjects else None
    attribution: dict[str, Any] = {
        "kind": who.kind,
        "companyId": who.company_id,
        "userEmail": who.user_email,
        "reason": who.reason,
    }
    if detail is not None:
        attribution["detail"] = detail
    master = item.get("seriesMasterId")
    return BusyBlock(
        building_id=target.building_id,
        resource_id=target.resource_id,
        block_id=block_id,
        start=start,
        end=end,
        source="outlook",
        show_as=show_as,
        company_id=who.company_id,
        outlook_event_id=str(item["id"]),
        subject=subject if isinstance(subject, str) else None,
        attribution=attribution,
        series_master_id=master if isinstance(master, str) and master else None,
        created_at=rfc3339_or_none(item.get("createdDateTime")),
    )


def _nobody(email: str | None) -> Attribution:
    """A go-live check's test event belongs to no company and no user (never counted)."""
    return Attribution("unattributed", None, None, CHECK_ATTRIBUTION_REASON)


def _ids(target: Target) -> tuple[str, str]:
    return target.building_id, target.resource_id
