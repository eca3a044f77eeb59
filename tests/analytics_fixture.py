"""The hand-computed analytics week, shared by the unit test (pure computation) and the e2e test
(the same blocks stored, then asked through the API). docs/ANALYTICS.md walks through it.

Building: Europe/Amsterdam (CET, UTC+1 in early March 2026), default business hours Mon–Fri
08:00–18:00 (600 minutes a weekday), ad hoc below 15 minutes, resources room-a and room-b,
week Mon 2026-03-02 .. Sun 2026-03-08. Local times below; "in"/"out": minutes inside/outside
business hours.

  A1 room-a Tue 09:00–10:30, made Sun 03-01 09:00 (lead 2880, planned), c1: in 90
  A2 room-a Tue 17:30–19:00, made 17:20 (lead 10 < 15: ad hoc), unattributed: in 30, out 60
  B1 room-b Tue 07:00–08:20, made 07:05, after its start (lead -5: ad hoc), c1: in 20, out 60
  B2 room-b Tue 10:00–12:00, made Mon 10:00 (lead 1440, planned), c2, check-in required, never
     checked in, released at 10:10 (its block is gone: only the attendance record): in 10
  A3 room-a Wed 22:00 – Thu 02:00, made Wed 21:45, exactly 15 before (lead 15: planned, the
     boundary), c2: Wed out 120, Thu out 120 (one booking, on Wed; duration 240)
  B3 room-b Thu 12:00–13:00, made 11:45:01, 14 min 59 s before (lead 14: ad hoc), c1, check-in
     required and checked in: in 60
  A4 room-a Sat 10:00–12:00, no createdAt (planned, no lead time), unattributed: out 120 (a
     Saturday has no business hours)
  ignored: room-a Wed 09:00 showAs free; room-b Wed 09:00 a go-live check's test event; room-b
     Fri 09:00 showAs workingElsewhere
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from shared.attendance.model import Attendance
from shared.availability.busy import BusyBlock
from shared.core.checkmarks import CHECK_ATTRIBUTION_REASON
from shared.directory.buildings import DEFAULT_HOURS, Building

ZONE = ZoneInfo("Europe/Amsterdam")
FIRST, LAST = date(2026, 3, 2), date(2026, 3, 8)
RESOURCES = {"room-a": "Room A", "room-b": "Room B"}


def local(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    """March 2026, Amsterdam wall clock, as UTC."""
    return datetime(2026, 3, day, hh, mm, ss, tzinfo=ZONE).astimezone(UTC)


def building(building_id: str) -> Building:
    return Building(building_id, "Analytics HQ", "Europe/Amsterdam",
                    {d: list(v) for d, v in DEFAULT_HOURS.items()})  # fmt: skip


def _block(b: str, resource: str, block_id: str, start: datetime, end: datetime,
           created: datetime | None, company: str | None, **extra: Any) -> BusyBlock:  # fmt: skip
    return BusyBlock(b, resource, block_id, start, end, "platform", booking_id=block_id,
                     company_id=company, created_at=created, **extra)  # fmt: skip


def blocks(b: str) -> list[BusyBlock]:
    check = {"reason": CHECK_ATTRIBUTION_REASON, "companyId": None}
    return [
        _block(b, "room-a", "a1", local(3, 9), local(3, 10, 30), local(1, 9), "c1"),
        _block(b, "room-a", "a2", local(3, 17, 30), local(3, 19), local(3, 17, 20), None),
        _block(b, "room-b", "b1", local(3, 7), local(3, 8, 20), local(3, 7, 5), "c1"),
        _block(b, "room-a", "a3", local(4, 22), local(5, 2), local(4, 21, 45), "c2"),
        _block(b, "room-b", "b3", local(5, 12), local(5, 13), local(5, 11, 45, 1), "c1"),
        _block(b, "room-a", "a4", local(7, 10), local(7, 12), None, None),
        _block(b, "room-a", "free", local(4, 9), local(4, 10), local(1, 9), None, show_as="free"),
        _block(b, "room-b", "chk", local(4, 9), local(4, 10), local(4, 8), None, attribution=check),
        _block(b, "room-b", "else", local(6, 9), local(6, 10), local(1, 9), None,
               show_as="workingElsewhere"),
    ]  # fmt: skip


def records(b: str) -> list[Attendance]:
    return [
        Attendance(b, "room-b", "b2", local(3, 10), local(3, 12), "released", True,
                   company_id="c2", created_at=local(2, 10), booking_id="b2",
                   released_at=local(3, 10, 10)),
        Attendance(b, "room-b", "b3", local(5, 12), local(5, 13), "checked_in", True,
                   company_id="c1", created_at=local(5, 11, 45, 1), booking_id="b3",
                   checked_in_at=local(5, 12, 2)),
    ]  # fmt: skip


def _metrics(**values: Any) -> dict[str, Any]:
    base = {"resources": 2, "businessMinutes": 0, "bookedMinutes": 0,
            "bookedMinutesOutsideHours": 0, "bookingRate": None, "bookings": 0, "adHoc": 0,
            "planned": 0, "checkInRequired": 0, "noShows": 0, "released": 0, "noShowRate": None,
            "medianDurationMinutes": None, "medianLeadMinutes": None}  # fmt: skip
    return {**base, **values}


# The week (groupBy=day), by hand:
#   business minutes: 5 weekdays x 600 = 3000 per resource; 2 resources -> capacity 6000
#   in: Tue 90+30+20+10 = 150, Thu 60 -> 210; out: Tue 60+60, Wed 120, Thu 120, Sat 120 = 480
#   bookingRate = 210 / (2 x 3000) = 0.035
#   bookings 7 (A1 A2 B1 B2 A3 B3 A4); ad hoc 3 (A2 B1 B3); planned 4 (A1 B2 A3 A4)
#   check-in required 2 (B2 B3), no-shows 1 (B2), released 1 (B2): noShowRate 1/2 = 0.5
#   durations [60 80 90 90 120 120 240] -> median 90
#   leads [-5 10 14 15 1440 2880] -> median (14 + 15) / 2 = 14.5
TOTALS = _metrics(businessMinutes=3000, bookedMinutes=210, bookedMinutesOutsideHours=480,
                  bookingRate=0.035, bookings=7, adHoc=3, planned=4, checkInRequired=2,
                  noShows=1, released=1, noShowRate=0.5, medianDurationMinutes=90,
                  medianLeadMinutes=14.5)  # fmt: skip
DAYS = {
    "2026-03-02": _metrics(businessMinutes=600, bookingRate=0.0),
    # Tue: in 150 / (2 x 600) = 0.125; durations [80 90 90 120] -> 90; leads [-5 10 1440 2880]
    # -> (10 + 1440) / 2 = 725
    "2026-03-03": _metrics(businessMinutes=600, bookedMinutes=150, bookedMinutesOutsideHours=120,
                           bookingRate=0.125, bookings=4, adHoc=2, planned=2, checkInRequired=1,
                           noShows=1, released=1, noShowRate=1.0, medianDurationMinutes=90,
                           medianLeadMinutes=725),
    # Wed: A3's 22:00-24:00 only
    "2026-03-04": _metrics(businessMinutes=600, bookedMinutesOutsideHours=120, bookingRate=0.0,
                           bookings=1, planned=1, medianDurationMinutes=240, medianLeadMinutes=15),
    # Thu: A3's 00:00-02:00 (no booking: it started Wed) and B3: 60 / 1200 = 0.05
    "2026-03-05": _metrics(businessMinutes=600, bookedMinutes=60, bookedMinutesOutsideHours=120,
                           bookingRate=0.05, bookings=1, adHoc=1, checkInRequired=1,
                           noShowRate=0.0, medianDurationMinutes=60, medianLeadMinutes=14),
    "2026-03-06": _metrics(businessMinutes=600, bookingRate=0.0),
    # Sat: no business hours -> rate null
    "2026-03-07": _metrics(bookedMinutesOutsideHours=120, bookings=1, planned=1,
                           medianDurationMinutes=120),
    "2026-03-08": _metrics(),
}  # fmt: skip
# By resource: room-a in 90+30 = 120 -> 120/3000 = 0.04; room-b in 20+10+60 = 90 -> 0.03
POPULAR = {
    "most": [{"resourceId": "room-a", "name": "Room A", "bookingRate": 0.04},
             {"resourceId": "room-b", "name": "Room B", "bookingRate": 0.03}],
    "least": [{"resourceId": "room-b", "name": "Room B", "bookingRate": 0.03},
              {"resourceId": "room-a", "name": "Room A", "bookingRate": 0.04}],
}  # fmt: skip
# By company (capacity 6000 each):
#   c1: A1 in 90, B1 in 20 out 60, B3 in 60 -> in 170 (0.0283), out 60, 3 bookings, ad hoc 2
#       (B1 B3), planned 1, required 1 (B3), no-shows 0; durations [60 80 90] -> 80; leads
#       [-5 14 2880] -> 14
#   c2: B2 in 10 (0.0017), A3 out 240, 2 bookings planned, required 1, no-show 1, released 1;
#       durations [120 240] -> 180; leads [15 1440] -> 727.5
#   unattributed: A2 in 30 (0.005) out 60, A4 out 120; ad hoc 1, planned 1; durations [90 120]
#       -> 105; leads [10] -> 10
COMPANIES = {
    "c1": _metrics(businessMinutes=3000, bookedMinutes=170, bookedMinutesOutsideHours=60,
                   bookingRate=0.0283, bookings=3, adHoc=2, planned=1, checkInRequired=1,
                   noShowRate=0.0, medianDurationMinutes=80, medianLeadMinutes=14),
    "c2": _metrics(businessMinutes=3000, bookedMinutes=10, bookedMinutesOutsideHours=240,
                   bookingRate=0.0017, bookings=2, planned=2, checkInRequired=1, noShows=1,
                   released=1, noShowRate=1.0, medianDurationMinutes=180,
                   medianLeadMinutes=727.5),
    "unattributed": _metrics(businessMinutes=3000, bookedMinutes=30,
                             bookedMinutesOutsideHours=180, bookingRate=0.005, bookings=2,
                             adHoc=1, planned=1, medianDurationMinutes=105, medianLeadMinutes=10),
}  # fmt: skip
