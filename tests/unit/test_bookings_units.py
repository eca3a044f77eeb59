"""Pure logic of bookings, availability and the outbox: ids, time parsing, free slots across DST,
event payload details, failure classification, retry bound and backoff."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.availability.busy import (
    BOOKING_PROPERTY_ID,
    BusyBlock,
    booking_id_from_transaction,
    transaction_id,
    utc_days,
)
from shared.availability.service import (
    free_runs,
    parse_instant,
    parse_query,
    parse_range,
    slot_boundaries,
)
from shared.bookings import service as bookings
from shared.bookings.model import (
    Booking,
    BookingConfig,
    idempotency_row,
    new_booking_id,
    parse_create,
    parse_update,
)
from shared.bookings.outbox import OutboxMessage, backoff
from shared.bookings.outlook import (
    OutlookEvent,
    WriteFailed,
    created_before,
    event_payload,
    subject_of,
    write_failure,
)
from shared.bookings.service import failed_attempt
from shared.core.errors import GraphError, GraphFailure, IdentityError, ValidationFailed
from shared.core.settings import SettingsError, load_settings
from shared.core.times import TimeUnreadable, graph_time, parse_graph_time, rfc3339_or_none, utc_z

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AMS = zoneinfo.ZoneInfo("Europe/Amsterdam")


def fields(err: ValidationFailed) -> set[str]:
    return {e.field for e in err.errors}


# --- ids ----------------------------------------------------------------------------------------


def test_booking_ids_sort_by_time_and_carry_80_random_bits() -> None:
    earlier = new_booking_id(NOW, random_bits=(1 << 80) - 1)
    later = new_booking_id(NOW + timedelta(milliseconds=1), random_bits=0)
    assert earlier < later  # time first, whatever the random part
    assert len(earlier) == 26 and earlier.isalnum() and earlier == earlier.lower()
    assert new_booking_id(NOW, random_bits=1) != new_booking_id(NOW, random_bits=2)
    drawn = {new_booking_id(NOW) for _ in range(1000)}
    assert len(drawn) == 1000  # the random part comes from os.urandom


def test_transaction_ids_round_trip_and_foreign_ones_are_not_ours() -> None:
    assert booking_id_from_transaction(transaction_id("abc")) == "abc"
    assert booking_id_from_transaction("someone-else:abc") is None
    assert booking_id_from_transaction("bookingbridge:") is None
    assert booking_id_from_transaction(None) is None


# --- time parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T09:00:00+01:00", datetime(2026, 12, 1, 8, 0, tzinfo=UTC)),
        ("2026-12-01T09:00:00Z", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01t09:00:00.1234567z", datetime(2026, 12, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        # an unencoded "+" in a query string arrives as a space
        ("2026-12-01T09:00:00 05:30", datetime(2026, 12, 1, 3, 30, tzinfo=UTC)),
    ],
)
def test_rfc3339_with_offset_is_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_instant("start", text) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-12-01T09:00:00", "2026-12-01", "2026-12-01T09:00Z", "tomorrow", "", None, 1700000000,
     "2026-13-01T09:00:00Z"],
)  # fmt: skip
def test_times_without_offset_or_malformed_are_refused_naming_the_field(text: Any) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_instant("from", text)
    assert fields(err.value) == {"from"}


def test_range_is_required_ordered_and_bounded() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_range({})
    assert fields(err.value) == {"from", "to"}
    with pytest.raises(ValidationFailed) as err:
        parse_range({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"})
    assert fields(err.value) == {"to"}
    with pytest.raises(ValidationFailed):
        parse_range({"from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:01Z"})
    start, end = parse_range({"from": "2026-12-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"})
    assert end - start == timedelta(days=31)


def test_availability_query_names_every_bad_parameter() -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_query({"from": "x", "to": "2026-12-01T00:00:00Z", "slotMinutes": "4",
                     "resourceId": "a/b"})  # fmt: skip
    assert fields(err.value) == {"from", "slotMinutes", "resourceId"}
    for bad in ("241", "30.0", "-5", "abc"):
        with pytest.raises(ValidationFailed):
            parse_query({"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z",
                         "slotMinutes": bad})  # fmt: skip
    ok = parse_query({"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z",
                      "slotMinutes": "15"})  # fmt: skip
    assert ok.slot_minutes == 15 and ok.resource_id is None


def test_graph_times_in_utc_or_a_named_zone() -> None:
    assert parse_graph_time({"dateTime": "2026-12-08T07:00:00.0000000", "timeZone": "UTC"}) == (
        datetime(2026, 12, 8, 7, 0, tzinfo=UTC)
    )
    assert parse_graph_time(
        {"dateTime": "2026-12-08T08:00:00", "timeZone": "Europe/Amsterdam"}
    ) == datetime(2026, 12, 8, 7, 0, tzinfo=UTC)
    assert rfc3339_or_none("2026-11-22T05:14:21.0713450Z") == datetime(
        2026, 11, 22, 5, 14, 21, 71345, tzinfo=UTC
    )
    assert rfc3339_or_none(None) is None and rfc3339_or_none("junk") is None
    with pytest.raises(TimeUnreadable):
        parse_graph_time({"dateTime": "junk"})


# --- free slots ---------------------------------------------------------------------------------


def block(start: datetime, end: datetime, show_as: str = "busy") -> BusyBlock:
    return BusyBlock("b", "r", f"x-{start.isoformat()}", start, end, "outlook", show_as=show_as)


def test_free_runs_follow_the_local_grid_and_skip_busy_and_partial_slots() -> None:
    # 08:00-12:00 Amsterdam (UTC+1 in December) = 07:00-11:00 UTC; busy 09:10-09:50 local.
    start = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    end = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)
    busy = [
        block(datetime(2026, 12, 1, 8, 10, tzinfo=UTC), datetime(2026, 12, 1, 8, 50, tzinfo=UTC)),
        # free-as-status blocks do not make the resource unavailable
        block(datetime(2026, 12, 1, 10, 0, tzinfo=UTC), datetime(2026, 12, 1, 11, 0, tzinfo=UTC),
              show_as="free"),
    ]  # fmt: skip
    edges = slot_boundaries(start, end, 30, AMS)
    runs = [(utc_z(s), utc_z(e)) for s, e in free_runs(start, end, busy, edges)]
    # 09:00-10:00 local is taken by the 09:10-09:50 block (both half hours touch it).
    assert runs == [
        ("2026-12-01T07:00:00Z", "2026-12-01T08:00:00Z"),
        ("2026-12-01T09:00:00Z", "2026-12-01T11:00:00Z"),
    ]


def test_grid_is_aligned_to_local_time_not_utc() -> None:
    kolkata = zoneinfo.ZoneInfo("Asia/Kolkata")  # UTC+05:30
    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    end = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    edges = slot_boundaries(start, end, 60, kolkata)
    # Local hours (06:00, 07:00 IST) are UTC half hours.
    assert [utc_z(e) for e in edges] == ["2026-12-01T00:30:00Z", "2026-12-01T01:30:00Z"]
    runs = free_runs(start, end, [], edges)
    assert [(utc_z(s), utc_z(e)) for s, e in runs] == [
        ("2026-12-01T00:30:00Z", "2026-12-01T01:30:00Z")
    ]


def test_grid_survives_the_dst_change() -> None:
    # 2026-10-25: Amsterdam goes from UTC+2 to UTC+1 at 03:00 local (01:00 UTC).
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    end = datetime(2026, 10, 25, 4, 0, tzinfo=UTC)
    edges = slot_boundaries(start, end, 60, AMS)
    local_hours = [e.astimezone(AMS).strftime("%H:%M") for e in edges]
    assert all(h.endswith(":00") for h in local_hours)
    assert len(edges) == len(set(edges)) == 7  # hourly instants, the repeated hour included
    whole_day = slot_boundaries(
        datetime(2026, 10, 24, 22, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 23, 0, tzinfo=UTC),
        30,
        AMS,
    )
    assert len(whole_day) == 25 * 2 + 1  # a 25-hour day
    # 2026-03-29: 02:00-03:00 local never happens; a 45-minute grid skips 02:15 and stays put.
    spring = slot_boundaries(
        datetime(2026, 3, 28, 23, 0, tzinfo=UTC), datetime(2026, 3, 29, 4, 0, tzinfo=UTC), 45, AMS
    )
    local = [e.astimezone(AMS).strftime("%H:%M") for e in spring]
    assert local == ["00:00", "00:45", "01:30", "03:00", "03:45", "04:30", "05:15", "06:00"]


def test_a_fully_busy_range_has_no_free_time_and_an_empty_one_is_one_run() -> None:
    start = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    end = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    edges = slot_boundaries(start, end, 15, zoneinfo.ZoneInfo("UTC"))
    assert free_runs(start, end, [block(start - timedelta(hours=1), end)], edges) == []
    assert free_runs(start, end, [], edges) == [(start, end)]


def test_utc_days_of_a_block() -> None:
    assert len(utc_days(NOW, NOW + timedelta(hours=1))) == 1
    midnight = datetime(2026, 12, 2, tzinfo=UTC)
    assert len(utc_days(midnight - timedelta(hours=1), midnight)) == 1  # end is exclusive
    assert len(utc_days(midnight - timedelta(hours=1), midnight + timedelta(seconds=1))) == 2
    with pytest.raises(ValueError):
        utc_days(NOW, NOW + timedelta(days=500))


# --- booking requests ---------------------------------------------------------------------------

GOOD = {
    "resourceId": "room-1",
    "start": "2026-12-01T09:00:00+01:00",
    "end": "2026-12-01T10:00:00+01:00",
    "title": "Planning",
    "booker": {"email": "Ann@Contoso.com", "name": "Ann"},
}


def test_a_valid_create_request_is_normalised() -> None:
    request = parse_create(GOOD, NOW)
    assert request.start == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert request.booker_email == "ann@contoso.com"
    assert request.fingerprint() == parse_create(dict(GOOD), NOW).fingerprint()
    other = parse_create({**GOOD, "title": "Other"}, NOW)
    assert other.fingerprint() != request.fingerprint()


@pytest.mark.parametrize(
    ("change", "bad"),
    [
        ({"start": "2026-12-01T10:00:00+01:00"}, {"end"}),  # start == end
        ({"end": "2026-12-01T09:00:59+01:00"}, {"end"}),  # shorter than a minute
        ({"start": "2026-12-01T09:00:00.5+01:00"}, {"start"}),  # a fraction of a second
        ({"end": "2026-12-01T10:00:00.0000001+01:00"}, {"end"}),  # finer than microseconds
        ({"end": "2026-12-20T10:00:00+01:00"}, {"end"}),  # longer than 14 days
        ({"start": "2026-11-01T09:00:00Z", "end": "2026-11-01T10:00:00Z"}, {"end"}),  # past
        ({"start": "2029-01-01T09:00:00Z", "end": "2029-01-01T10:00:00Z"}, {"start"}),  # too far
        ({"start": "2026-12-01T09:00:00"}, {"start"}),  # no offset
        ({"resourceId": "../x"}, {"resourceId"}),
        ({"booker": {"email": "not-an-address", "name": ""}}, {"booker.email", "booker.name"}),
        ({"booker": None}, {"booker"}),
        ({"colour": "red"}, {"colour"}),
        ({"title": "x" * 256}, {"title"}),
    ],
)
def test_bad_create_requests_name_each_bad_field(change: dict[str, Any], bad: set[str]) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_create({**GOOD, **change}, NOW)
    assert fields(err.value) == bad


def test_update_validates_the_merged_booking() -> None:
    current = Booking(
        "b", "id1", "room-1", datetime(2026, 12, 1, 8, tzinfo=UTC),
        datetime(2026, 12, 1, 9, tzinfo=UTC), "T", "ann@x.com", "Ann", "confirmed", "synced",
        NOW, NOW,
    )  # fmt: skip
    moved = parse_update({"start": "2026-12-01T08:30:00Z"}, current, NOW)
    assert moved.start == datetime(2026, 12, 1, 8, 30, tzinfo=UTC) and moved.end == current.end
    assert parse_update({"end": "2026-12-01T08:01:00.000Z"}, current, NOW).end == datetime(
        2026, 12, 1, 8, 1, tzinfo=UTC
    )  # one minute, and a fraction of zeros is a whole second
    with pytest.raises(ValidationFailed) as err:
        parse_update({"end": "2026-12-01T08:00:30Z"}, current, NOW)  # 30 s after the kept start
    assert fields(err.value) == {"end"}
    with pytest.raises(ValidationFailed) as err:
        parse_update({"start": "2026-12-01T09:30:00Z"}, current, NOW)  # after the kept end
    assert fields(err.value) == {"end"}
    with pytest.raises(ValidationFailed):
        parse_update({}, current, NOW)
    with pytest.raises(ValidationFailed):
        parse_update({"resourceId": "other"}, current, NOW)


def test_idempotency_keys_are_hashed_and_bounded() -> None:
    row = idempotency_row("order-42")
    assert row is not None and row.startswith("idem|") and "order-42" not in row
    assert idempotency_row("order-42") == row and idempotency_row("order-43") != row
    assert idempotency_row(None) is None and idempotency_row("") is None
    with pytest.raises(ValidationFailed) as err:
        idempotency_row("x" * 256)
    assert fields(err.value) == {"Idempotency-Key"}


# --- the Outlook event ----------------------------------------------------------------------------


def test_event_times_are_in_the_resource_zone_unless_ambiguous() -> None:
    winter = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert graph_time(winter, "Europe/Amsterdam") == {
        "dateTime": "2026-12-01T09:00:00",
        "timeZone": "Europe/Amsterdam",
    }
    # 02:30 local happens twice on 2026-10-25: sent in UTC so Graph cannot pick the wrong one.
    repeated = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert graph_time(repeated, "Europe/Amsterdam") == {
        "dateTime": "2026-10-25T00:30:00",
        "timeZone": "UTC",
    }
    assert graph_time(winter, "Not/AZone")["timeZone"] == "UTC"


def test_the_event_payload_carries_our_marker_and_invites_nobody_by_default() -> None:
    booking = Booking(
        "b", "01booking", "r", datetime(2026, 12, 1, 8, tzinfo=UTC),
        datetime(2026, 12, 1, 9, tzinfo=UTC), "Secret", "ann@x.com", "Ann", "confirmed",
        "pending", NOW, NOW,
    )  # fmt: skip
    created = event_payload(booking, "Room 1", "Europe/Amsterdam", BookingConfig(),
                            creating=True)  # fmt: skip
    assert created["transactionId"] == transaction_id("01booking")
    assert created["singleValueExtendedProperties"] == [
        {"id": BOOKING_PROPERTY_ID, "value": "01booking"}
    ]
    assert "attendees" not in created and created["showAs"] == "busy"
    assert created["start"] == {"dateTime": "2026-12-01T09:00:00", "timeZone": "Europe/Amsterdam"}
    assert created["subject"] == "Room 1 – Ann" and "Secret" not in str(created)
    invited = event_payload(booking, "Room 1", "UTC", BookingConfig(invite_booker=True),
                            creating=True)  # fmt: skip
    assert invited["attendees"] == [
        {"emailAddress": {"address": "ann@x.com", "name": "Ann"}, "type": "required"}
    ]
    # transactionId can only be set on create (Graph refuses it on PATCH).
    patch = event_payload(booking, "Room 1", "UTC", BookingConfig(), creating=False)
    assert "transactionId" not in patch and "attendees" not in patch


def test_subject_never_shows_more_than_configured() -> None:
    default = BookingConfig().subject_template
    text = subject_of(
        default, resource_name="Board Room", booker_name="Ann", booker_email="ann@x.com",
        title="Secret merger",
    )  # fmt: skip
    assert text == "Board Room – Ann"
    assert "Secret" not in text and "ann@x.com" not in text
    assert subject_of("{title}", resource_name="R", booker_name="A", booker_email="e",
                      title="  ") == "R"  # fmt: skip


def test_subject_template_setting_is_checked_at_load() -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "BB_KEY_VAULT_URL": "https://v.vault.azure.net/",
        "BB_CLIENT_ID": "0a0a0a0a-0000-4000-8000-000000000002",
        "BB_PUBLIC_BASE_URL": "https://x.example/api",
        "BB_API_AUDIENCE": "api://bb",
        "BB_API_TENANT_ID": "0a0a0a0a-0000-4000-8000-000000000001",
    }
    loaded = load_settings({**base, "BB_BOOKING_SUBJECT": "{title} ({resourceName})"})
    assert loaded.booking_subject == "{title} ({resourceName})" and loaded.live_check is True
    for bad in ("{bookerPhone}", "{resourceName", "{0}"):
        with pytest.raises(SettingsError) as err:
            load_settings({**base, "BB_BOOKING_SUBJECT": bad})
        assert "BB_BOOKING_SUBJECT" in str(err.value)
    with pytest.raises(SettingsError):
        load_settings({**base, "BB_LIVE_CHECK": "maybe"})
    with pytest.raises(SettingsError):
        load_settings({**base, "BB_OUTBOX_BACKOFF_SECONDS": "60",
                       "BB_OUTBOX_BACKOFF_MAX_SECONDS": "30"})  # fmt: skip
    assert load_settings({**base, "BB_LIVE_CHECK": "false"}).live_check is False


# --- failures, bound, backoff --------------------------------------------------------------------


def graph_error(status: int, code: str = "x") -> GraphError:
    return GraphError(GraphFailure(status=status, code=code))


@pytest.mark.parametrize(
    ("err", "transient", "reason"),
    [
        (graph_error(429), True, "graph_unavailable"),
        (graph_error(503), True, "graph_unavailable"),
        (graph_error(0, "ReadTimeout"), True, "graph_unavailable"),
        (graph_error(403, "ErrorAccessDenied"), False, "access_denied"),
        (graph_error(404, "ErrorItemNotFound"), False, "calendar_not_found"),
        (graph_error(400, "ErrorInvalidRequest"), False, "graph_refused"),
        (IdentityError("x", error="invalid_grant", reauth=True), False, "reauth_required"),
        (IdentityError("x", error="temporarily_unavailable"), True, "temporarily_unavailable"),
    ],
)
def test_write_failures_split_into_retry_and_fix(
    err: Exception, transient: bool, reason: str
) -> None:
    failed = write_failure(err, creating=True)
    assert (failed.transient, failed.reason) == (transient, reason)


def test_retries_stop_at_the_bound_with_a_reason() -> None:
    config = BookingConfig(max_attempts=3)
    booking = Booking(
        "b", "id1", "r", NOW, NOW + timedelta(hours=1), "", "a@x.com", "A", "confirmed",
        "pending", NOW, NOW,
    )  # fmt: skip
    outage = WriteFailed("graph_unavailable", transient=True, status=503, code="ServiceUnavailable")
    first = failed_attempt(config, booking, outage, NOW)
    second = failed_attempt(config, first, outage, NOW)
    assert (first.sync_state, second.sync_state) == ("pending", "pending")
    third = failed_attempt(config, second, outage, NOW)
    assert third.sync_state == "failed" and third.attempts == 3
    assert third.last_error == {
        "reason": "retries_exhausted", "status": 503, "code": "ServiceUnavailable",
        "at": utc_z(NOW),
    }  # fmt: skip
    denied = failed_attempt(config, booking, WriteFailed("access_denied", transient=False,
                                                         status=403), NOW)  # fmt: skip
    assert denied.sync_state == "failed" and denied.attempts == 1
    assert denied.last_error is not None and denied.last_error["reason"] == "access_denied"


def test_backoff_doubles_up_to_the_ceiling() -> None:
    assert [backoff(n, base=30, ceiling=900) for n in range(1, 8)] == [
        30, 60, 120, 240, 480, 900, 900
    ]  # fmt: skip
    assert sum(backoff(n, base=30, ceiling=900) for n in range(1, 8)) == 2730  # ≈ 45 min bound
    assert backoff(40, base=3600, ceiling=10**9) == 7 * 24 * 3600  # the queue's limit


def test_outbox_messages_round_trip_and_junk_is_refused() -> None:
    message = OutboxMessage("b1", "01abc", "update")
    assert OutboxMessage.decode(message.encode()) == message
    assert '"bookingId":"01abc"' in message.encode()
    for junk in ("", "{}", '{"building":"b","bookingId":"x","op":"explode"}', "[1]"):
        with pytest.raises(ValidationFailed):
            OutboxMessage.decode(junk)


def test_module_exports_the_services() -> None:
    for name in bookings.__all__:
        assert hasattr(bookings, name)


def test_an_outlook_event_created_before_ours_or_when_unknown_makes_ours_give_way() -> None:
    """The create's check after its POST (issue 17): the only check against Outlook bookings sync
    has not brought in, so doubt counts against ours."""
    ours = datetime(2026, 12, 1, 9, 0, 0, 500_000, tzinfo=UTC)
    slot = (datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 11, tzinfo=UTC))

    def other(created: datetime | None) -> OutlookEvent:
        return OutlookEvent("AAMk-other", *slot, created)

    assert created_before(ours, []) is False
    assert created_before(ours, [other(ours + timedelta(microseconds=1))]) is False
    assert created_before(ours, [other(ours - timedelta(microseconds=1))]) is True
    assert created_before(ours, [other(ours)]) is True  # the same instant: cannot tell
    assert created_before(ours, [other(None)]) is True  # no creation time: cannot tell
    assert created_before(None, [other(ours + timedelta(seconds=5))]) is True
    later, earlier = other(ours + timedelta(seconds=1)), other(ours - timedelta(seconds=1))
    assert created_before(ours, [later, earlier]) is True
