"""tests.graphmeta: catches what real Graph would not send or accept, and passes what it does.

Each invalid case carries exactly one defect, and the test checks that exactly that problem (with
its path) is reported, so a validator that also raises spurious problems fails as surely as one
that misses the defect. The valid cases are documented Graph examples, each with its source.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
from typing import Any

import pytest

from tests import graphmeta
from tests.graphmeta import (
    has_type,
    property_type,
    type_names,
    validate,
    validate_action_parameters,
    validate_collection,
)

# --------------------------------------------------------------------------------------------
# Documented examples (copied verbatim unless a comment says otherwise)
# --------------------------------------------------------------------------------------------

# Source: microsoftgraph/microsoft-graph-docs-contrib, api-reference/v1.0/api/user-post-events.md
# (commit 007852ace71e63cb76552a3471aa71e7dee5f3e8), "Response 1".
EVENT_RESPONSE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('cd209b0b-3f83-4c35-82d2-d88a61820480')/events/$entity",
    "@odata.etag": 'W/"ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ=="',
    "id": "AAMkAGI1AAAt9AHjAAA=",
    "createdDateTime": "2017-04-15T03:00:50.7579581Z",
    "lastModifiedDateTime": "2017-04-15T03:00:51.245372Z",
    "changeKey": "ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==",
    "categories": [],
    "originalStartTimeZone": "Pacific Standard Time",
    "originalEndTimeZone": "Pacific Standard Time",
    "iCalUId": "040000008200E00074C5B7101A82E00800000000DA2B357D94B5D201000000000000000010000000EC4597557F0CB34EA4CC2887EA7B17C3",
    "reminderMinutesBeforeStart": 15,
    "isReminderOn": True,
    "hasAttachments": False,
    "subject": "Let's go brunch",
    "bodyPreview": "Does late morning work for you?",
    "importance": "normal",
    "sensitivity": "normal",
    "isAllDay": False,
    "isCancelled": False,
    "isOrganizer": True,
    "responseRequested": True,
    "seriesMasterId": None,
    "showAs": "busy",
    "type": "singleInstance",
    "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAGI1AAAt9AHjAAA%3D&exvsurl=1&path=/calendar/item",
    "onlineMeetingUrl": None,
    "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
    "body": {
        "contentType": "html",
        "content": "<html><head></head><body>Does late morning work for you?</body></html>",
    },
    "start": {"dateTime": "2017-04-15T11:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-04-15T12:00:00.0000000", "timeZone": "Pacific Standard Time"},
    "location": {
        "displayName": "Harry's Bar",
        "locationType": "default",
        "uniqueId": "Harry's Bar",
        "uniqueIdType": "private",
    },
    "locations": [
        {"displayName": "Harry's Bar", "locationType": "default", "uniqueIdType": "unknown"}
    ],
    "recurrence": None,
    "attendees": [
        {
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {
                "name": "Samantha Booth",
                "address": "samanthab@contoso.onmicrosoft.com",
            },
        }
    ],
    "organizer": {
        "emailAddress": {"name": "Dana Swope", "address": "danas@contoso.onmicrosoft.com"}
    },
}

# Source: same file, "Request 3" (a recurring event). Note the request spells enum members
# "HTML" and "Monday": Graph reads request enums case-insensitively.
EVENT_REQUEST_RECURRING: dict[str, Any] = {
    "subject": "Let's go for lunch",
    "body": {"contentType": "HTML", "content": "Does noon time work for you?"},
    "start": {"dateTime": "2017-09-04T12:00:00", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-09-04T14:00:00", "timeZone": "Pacific Standard Time"},
    "recurrence": {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
        "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"},
    },
    "location": {"displayName": "Harry's Bar"},
    "attendees": [
        {
            "emailAddress": {"address": "AdeleV@contoso.onmicrosoft.com", "name": "Adele Vance"},
            "type": "required",
        }
    ],
}

# Source: api-reference/v1.0/api/calendar-get.md (commit 03e88f0a15038ae5d280389c654d7d329056dd03).
CALENDAR_RESPONSE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#me/calendars/$entity",
    "@odata.id": "https://graph.microsoft.com/v1.0/users('ddfcd489-628b-40d7-b48b-57002df800e5@1717622f-1d94-4d0c-9d74-709fad664b77')/calendars('AAMkAGI2TGuLAAA=')",
    "id": "AAMkAGI2TGuLAAA=",
    "name": "Calendar",
    "color": "auto",
    "isDefaultCalendar": False,
    "changeKey": "nfZyf7VcrEKLNoU37KWlkQAAA0x0+w==",
    "canShare": True,
    "canViewPrivateItems": True,
    "hexColor": "",
    "canEdit": True,
    "allowedOnlineMeetingProviders": ["teamsForBusiness"],
    "defaultOnlineMeetingProvider": "teamsForBusiness",
    "isTallyingResponses": True,
    "isRemovable": False,
    "owner": {"name": "Samantha Booth", "address": "samanthab@adatum.onmicrosoft.com"},
}

# Source: api-reference/v1.0/api/subscription-post-subscriptions.md
# (commit 028e5429a459bb221e14d2197119f5cb109ceaea), the response.
SUBSCRIPTION_RESPONSE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
    "id": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
    "resource": "me/mailFolders('Inbox')/messages",
    "applicationId": "24d3b144-21ae-4080-943f-7067b395b913",
    "changeType": "created",
    "clientState": "secretClientValue",
    "notificationUrl": "https://webhook.azurewebsites.net/api/send/myNotifyClient",
    "expirationDateTime": "2016-11-20T18:23:45.9356913Z",
    "creatorId": "8ee44408-0679-472c-bc2a-692812af3437",
    "latestSupportedTlsVersion": "v1_2",
    "notificationContentType": "application/json",
}

# Source: concepts/change-notifications-delivery-webhooks.md
# (commit 01c641aced9437aea8a5c1f17fd65078bff7391e), "Change notification example". The docs'
# placeholder "{subscription_guid}" is replaced by a GUID (Edm.Guid); the rest is verbatim,
# including Graph's capitalised "#Microsoft.Graph.Message".
CHANGE_NOTIFICATIONS: dict[str, Any] = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": "secretClientValue",
            "changeType": "created",
            "resource": "users/{user_guid}@{tenant_guid}/messages/{long_id_string}",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": "Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}",
                "@odata.etag": 'W/"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf"',
                "id": "{long_id_string}",
            },
        }
    ]
}

# Source: api-reference/v1.0/api/calendar-getschedule.md
# (commit 0062dd88136b667cdb78d31c29c22b99d78e78ce), the request body.
GET_SCHEDULE_REQUEST: dict[str, Any] = {
    "schedules": ["adelev@contoso.onmicrosoft.com", "meganb@contoso.onmicrosoft.com"],
    "startTime": {"dateTime": "2019-03-15T09:00:00", "timeZone": "Pacific Standard Time"},
    "endTime": {"dateTime": "2019-03-15T18:00:00", "timeZone": "Pacific Standard Time"},
    "availabilityViewInterval": 60,
}


def _busy(start: str, end: str, status: str = "busy") -> dict[str, Any]:
    tz = "Pacific Standard Time"
    return {
        "status": status,
        "start": {"dateTime": f"2019-03-15T{start}:00.0000000", "timeZone": tz},
        "end": {"dateTime": f"2019-03-15T{end}:00.0000000", "timeZone": tz},
    }


# Source: same file, the response (the second schedule's repetitive items built with _busy).
GET_SCHEDULE_RESPONSE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.scheduleInformation)",
    "value": [
        {
            "scheduleId": "adelev@contoso.onmicrosoft.com",
            "availabilityView": "000220000",
            "scheduleItems": [
                {
                    "isPrivate": False,
                    "subject": "Let's go for lunch",
                    "location": "Harry's Bar",
                    **_busy("12:00", "14:00"),
                }
            ],
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "Pacific Standard Time"},
            },
        },
        {
            "scheduleId": "meganb@contoso.onmicrosoft.com",
            "availabilityView": "200220010",
            "scheduleItems": [
                _busy("08:30", "09:30"),
                _busy("12:00", "14:00"),
                _busy("12:00", "13:00", "tentative"),
                _busy("13:00", "14:00"),
                _busy("16:00", "17:00", "tentative"),
            ],
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {
                    "@odata.type": "#microsoft.graph.customTimeZone",
                    "bias": 480,
                    "name": "Customized Time Zone",
                    "standardOffset": {
                        "time": "02:00:00.0000000",
                        "dayOccurrence": 1,
                        "dayOfWeek": "sunday",
                        "month": 11,
                        "year": 0,
                    },
                    "daylightOffset": {
                        "daylightBias": -60,
                        "time": "02:00:00.0000000",
                        "dayOccurrence": 2,
                        "dayOfWeek": "sunday",
                        "month": 3,
                        "year": 0,
                    },
                },
            },
        },
    ],
}

# Source: api-reference/v1.0/api/place-get.md (commit 01c090e78d78f98e7dc6af3eaaf2ab7c8b04782b):
# a roomList returned from /places/{id}, so typed as the abstract place plus @odata.type.
PLACE_ROOMLIST_RESPONSE: dict[str, Any] = {
    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#places/$entity",
    "@odata.type": "#microsoft.graph.roomList",
    "id": "979e9793-3e91-40eb-b18c-0ea937893956",
    "displayName": "Building 2 Rooms",
    "address": None,
    "geoCoordinates": None,
    "phone": "",
    "emailAddress": "Building2Rooms@M365x214355.onmicrosoft.com",
}


@pytest.mark.parametrize(
    ("payload", "type_name", "partial"),
    [
        pytest.param(EVENT_RESPONSE, "microsoft.graph.event", False, id="event-response"),
        pytest.param(EVENT_REQUEST_RECURRING, "event", True, id="event-request-recurring"),
        pytest.param(CALENDAR_RESPONSE, "calendar", False, id="calendar-response"),
        pytest.param(
            CHANGE_NOTIFICATIONS, "changeNotificationCollection", False, id="change-notifications"
        ),
        pytest.param(PLACE_ROOMLIST_RESPONSE, "place", False, id="place-roomlist"),
    ],
)
def test_documented_examples_are_valid(
    payload: dict[str, Any], type_name: str, partial: bool
) -> None:
    assert validate(payload, type_name, partial=partial) == []


def test_documented_getschedule_exchange_is_valid() -> None:
    assert validate_action_parameters(GET_SCHEDULE_REQUEST, "getSchedule", "calendar") == []
    assert validate_collection(GET_SCHEDULE_RESPONSE, "scheduleInformation") == []


def test_documented_subscription_example_has_a_beta_only_property() -> None:
    # The documented v1.0 response shows notificationContentType, which the v1.0 metadata does
    # not declare (it is a beta property): exactly what the validator exists to catch in fixtures.
    assert validate(SUBSCRIPTION_RESPONSE, "subscription") == [
        "notificationContentType: unknown property of microsoft.graph.subscription"
    ]
    trimmed = {k: v for k, v in SUBSCRIPTION_RESPONSE.items() if k != "notificationContentType"}
    assert validate(trimmed, "subscription") == []


# --------------------------------------------------------------------------------------------
# One defect each
# --------------------------------------------------------------------------------------------


def _event(**changes: Any) -> dict[str, Any]:
    event = copy.deepcopy(EVENT_RESPONSE)
    event.update(changes)
    return event


def _room(**changes: Any) -> dict[str, Any]:
    room = {
        "@odata.type": "#microsoft.graph.room",
        "id": "3162F1E1-C4C0-604B-51D8-91DA78989EB1",
        "emailAddress": "cf100@contoso.com",
        "displayName": "Conf Room 100",
        "capacity": 50,
        "bookingType": "standard",
        "tags": ["bigroom"],
    }
    room.update(changes)
    return room


def _notification(**changes: Any) -> dict[str, Any]:
    notification: dict[str, Any] = copy.deepcopy(CHANGE_NOTIFICATIONS["value"][0])
    notification.update(changes)
    return notification


_START = {"dateTime": "2026-12-01T09:00:00", "timeZone": "UTC"}

INVALID: list[Any] = [
    # Unknown properties. event is OpenType in the CSDL, but Exchange rejects undeclared ones.
    pytest.param(
        _event(subjet="typo"),
        "event",
        "subjet: unknown property of microsoft.graph.event",
        id="unknown-property-event",
    ),
    pytest.param(
        _event(Subject="x"),
        "event",
        "Subject: unknown property of microsoft.graph.event (did you mean 'subject'?)",
        id="unknown-property-wrong-case",
    ),
    pytest.param(
        {**CALENDAR_RESPONSE, "colour": "auto"},
        "calendar",
        "colour: unknown property of microsoft.graph.calendar",
        id="unknown-property-calendar",
    ),
    # Wrong JSON types for primitives.
    pytest.param(
        _event(isAllDay="false"),
        "event",
        "isAllDay: expected Edm.Boolean, got 'false'",
        id="bool-as-string",
    ),
    pytest.param(
        _event(reminderMinutesBeforeStart=True),
        "event",
        "reminderMinutesBeforeStart: expected Edm.Int32, got bool",
        id="bool-is-not-int",
    ),
    pytest.param(
        _event(reminderMinutesBeforeStart=15.0),
        "event",
        "reminderMinutesBeforeStart: expected Edm.Int32, got float",
        id="float-is-not-int",
    ),
    pytest.param(
        _event(reminderMinutesBeforeStart=2**31),
        "event",
        "reminderMinutesBeforeStart: expected Edm.Int32 in [-2147483648, 2147483647], got int",
        id="int32-range",
    ),
    pytest.param(
        _event(subject=42), "event", "subject: expected Edm.String, got int", id="string-as-int"
    ),
    # Enums.
    pytest.param(
        _event(showAs="maybe"),
        "event",
        "showAs: 'maybe' is not a member of microsoft.graph.freeBusyStatus (expected one of: "
        "unknown, free, tentative, busy, oof, workingElsewhere)",
        id="enum-not-a-member",
    ),
    pytest.param(
        _event(showAs="Busy"),
        "event",
        "showAs: 'Busy' is not a member of microsoft.graph.freeBusyStatus; responses use the "
        "declared spelling 'busy'",
        id="enum-case-in-response",
    ),
    pytest.param(
        _event(showAs=2),
        "event",
        "showAs: expected microsoft.graph.freeBusyStatus (a member name), got int",
        id="enum-as-number",
    ),
    pytest.param(
        {"policyTip": None, "dlpAction": "notifySender,bogus"},
        "chatMessagePolicyViolation",
        "dlpAction: 'bogus' is not a member of microsoft.graph.chatMessagePolicyViolationDlpActionTypes "
        "(expected one of: none, notifySender, blockAccess, blockAccessExternal)",
        id="flags-enum-bad-member",
    ),
    # Nested complex values and collections.
    pytest.param(
        _event(start={"dateTime": 20261201, "timeZone": "UTC"}),
        "event",
        "start.dateTime: expected Edm.String, got int",
        id="nested-datetimetimezone",
    ),
    pytest.param(
        _event(start={**_START, "tz": "UTC"}),
        "event",
        "start.tz: unknown property of microsoft.graph.dateTimeTimeZone",
        id="nested-unknown-property",
    ),
    pytest.param(
        _event(start="2026-12-01T09:00:00Z"),
        "event",
        "start: expected microsoft.graph.dateTimeTimeZone (object), got str",
        id="complex-as-string",
    ),
    pytest.param(
        _event(
            attendees=[
                EVENT_RESPONSE["attendees"][0],
                {"type": "optionalish", "emailAddress": {"address": "a@contoso.com"}},
            ]
        ),
        "event",
        "attendees[1].type: 'optionalish' is not a member of microsoft.graph.attendeeType "
        "(expected one of: required, optional, resource)",
        id="collection-item-enum",
    ),
    pytest.param(
        _event(attendees=[{"emailAddress": {"address": ["a@contoso.com"]}}]),
        "event",
        "attendees[0].emailAddress.address: expected Edm.String, got array",
        id="collection-item-nested",
    ),
    pytest.param(
        _event(categories="Red category"),
        "event",
        "categories: expected Collection(Edm.String), got str",
        id="collection-as-scalar",
    ),
    pytest.param(
        _event(categories=["Red", 7]),
        "event",
        "categories[1]: expected Edm.String, got int",
        id="collection-item-primitive",
    ),
    # Nullable="false".
    pytest.param(
        _event(start={"dateTime": None, "timeZone": "UTC"}),
        "event",
        "start.dateTime: null not allowed (Edm.String is Nullable=false)",
        id="null-non-nullable-nested",
    ),
    pytest.param(
        _event(id=None),
        "event",
        "id: null not allowed (Edm.String is Nullable=false)",
        id="null-key",
    ),
    pytest.param(
        _event(cancelledOccurrences=None),
        "event",
        "cancelledOccurrences: null not allowed (Collection(Edm.String) is Nullable=false)",
        id="null-non-nullable-collection",
    ),
    pytest.param(
        _room(tags=["a", None]),
        "place",
        "tags[1]: null not allowed (Edm.String is Nullable=false)",
        id="null-item-in-non-nullable-collection",
    ),
    # Dates and times.
    pytest.param(
        _event(createdDateTime="2026-12-01T09:00:00"),
        "event",
        "createdDateTime: expected Edm.DateTimeOffset (e.g. 2026-12-01T09:00:00Z, with Z or "
        "±hh:mm), got '2026-12-01T09:00:00'",
        id="datetimeoffset-without-offset",
    ),
    pytest.param(
        _event(createdDateTime="2026-02-30T09:00:00Z"),
        "event",
        "createdDateTime: expected Edm.DateTimeOffset (e.g. 2026-12-01T09:00:00Z, with Z or "
        "±hh:mm), got '2026-02-30T09:00:00Z'",
        id="datetimeoffset-impossible-date",
    ),
    pytest.param(
        _event(lastModifiedDateTime="Tue, 01 Dec 2026 09:00:00 GMT"),
        "event",
        "lastModifiedDateTime: expected Edm.DateTimeOffset (e.g. 2026-12-01T09:00:00Z, with Z or "
        "±hh:mm), got 'Tue, 01 Dec 2026 09:00:00 GMT'",
        id="datetimeoffset-http-date",
    ),
    pytest.param(
        _event(recurrence={"range": {"type": "endDate", "startDate": "2017/09/04"}}),
        "event",
        "recurrence.range.startDate: expected Edm.Date (YYYY-MM-DD), got '2017/09/04'",
        id="date-format",
    ),
    pytest.param(
        {"scheduleId": "a@contoso.com", "workingHours": {"startTime": "8am"}},
        "scheduleInformation",
        "workingHours.startTime: expected Edm.TimeOfDay (HH:MM:SS[.fffffff]), got '8am'",
        id="time-of-day",
    ),
    pytest.param(
        {"durationBeforeAutomaticDenial": "30 minutes"},
        "accessPackageApprovalStage",
        "durationBeforeAutomaticDenial: expected Edm.Duration (ISO 8601, e.g. PT30M), "
        "got '30 minutes'",
        id="duration",
    ),
    # Other primitives.
    pytest.param(
        {"value": [_notification(subscriptionId="{subscription_guid}")]},
        "changeNotificationCollection",
        "value[0].subscriptionId: expected Edm.Guid (8-4-4-4-12 hex digits), "
        "got '{subscription_guid}'",
        id="guid",
    ),
    pytest.param(
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "id": "AAMkAGI1",
            "name": "menu.txt",
            "contentBytes": "not base64!",
        },
        "attachment",
        "contentBytes: expected Edm.Binary (base64), got 'not base64!'",
        id="binary",
    ),
    # Derived types through @odata.type.
    pytest.param(
        _room(capacity="fifty"),
        "place",
        "capacity: expected Edm.Int32, got 'fifty'",
        id="derived-property-checked",
    ),
    pytest.param(
        _event(**{"@odata.type": "#microsoft.graph.room"}),
        "event",
        "@odata.type: '#microsoft.graph.room' is not microsoft.graph.event or derived from it",
        id="odata-type-not-derived",
    ),
    pytest.param(
        _event(**{"@odata.type": "#microsoft.graph.meeting"}),
        "event",
        "@odata.type: '#microsoft.graph.meeting' is not an entity or complex type of Graph v1.0",
        id="odata-type-unknown",
    ),
    # Annotations and keys.
    pytest.param(
        _event(**{"@etag": "x"}),
        "event",
        "@etag: malformed annotation name (expected namespace.term)",
        id="annotation-not-qualified",
    ),
    pytest.param(
        _event(**{"@odata.nextLink": 5}),
        "event",
        "@odata.nextLink: expected str, got int",
        id="control-information-type",
    ),
    pytest.param(
        {k: v for k, v in CALENDAR_RESPONSE.items() if k != "id"},
        "calendar",
        "(root): missing key property 'id' of microsoft.graph.calendar",
        id="missing-key",
    ),
]


@pytest.mark.parametrize(("payload", "type_name", "expected"), INVALID)
def test_each_defect_is_reported_alone(
    payload: dict[str, Any], type_name: str, expected: str
) -> None:
    assert validate(payload, type_name) == [expected]


def test_abstract_type_needs_odata_type() -> None:
    room = {k: v for k, v in _room().items() if k != "@odata.type"}
    problems = validate(room, "place")
    assert (
        "(root): microsoft.graph.place is abstract: the value needs an @odata.type naming a concrete derived type"
        in problems
    )
    # Without the annotation, room's own properties are unknown on place.
    assert "capacity: unknown property of microsoft.graph.place" in problems
    assert validate(_room(), "place") == []


def test_open_types_accept_undeclared_properties() -> None:
    # resourceData is OpenType and its @odata.type names the changed resource, not a subtype.
    notification = _notification(resourceData={"@odata.type": "#Microsoft.Graph.Event", "x": 1})
    assert validate({"value": [notification]}, "changeNotificationCollection") == []
    # user is OpenType too (directory extension attributes arrive as extension_<app>_<name>).
    user = {"id": "1", "displayName": "Adele", "extension_2b6f_costCenter": "42"}
    assert validate(user, "user") == []


def test_navigation_properties_are_validated_as_their_target_type() -> None:
    expanded = _event(calendar={"id": "AAMkAGI2TGuLAAA=", "name": "Calendar", "color": "blue-ish"})
    assert validate(expanded, "event") == [
        "calendar.color: 'blue-ish' is not a member of microsoft.graph.calendarColor "
        "(expected one of: auto, lightBlue, lightGreen, lightOrange, lightGray, lightYellow, "
        "lightTeal, lightPink, lightBrown, lightRed, maxColor)"
    ]
    assert validate(_event(calendar={"id": "AAMkAGI2TGuLAAA=", "name": "Calendar"}), "event") == []


def test_annotations_can_be_forbidden_except_a_needed_odata_type() -> None:
    problems = validate(EVENT_RESPONSE, "event", allow_annotations=False)
    assert problems == [
        "@odata.context: instance annotations are not allowed here",
        "@odata.etag: instance annotations are not allowed here",
    ]
    # @odata.type stays allowed where the value's type differs from the declared one.
    assert validate(_room(), "place", allow_annotations=False) == []
    assert validate(_room(), "room", allow_annotations=False) == [
        "@odata.type: instance annotations are not allowed here"
    ]


def test_annotation_forms_graph_sends_are_accepted() -> None:
    event = _event(
        **{
            "@odata.type": "#microsoft.graph.event",
            "@removed": {"reason": "deleted"},
            "attendees@odata.navigationLink": "https://graph.microsoft.com/...",
            "@microsoft.graph.tips": "Use $select to choose only the properties your app needs",
        }
    )
    assert validate(event, "event") == []


def test_partial_request_bodies_require_nothing_and_read_enums_case_insensitively() -> None:
    patch = {"showAs": "Free", "body": {"contentType": "HTML", "content": "x"}}
    assert validate(patch, "event", partial=True) == []
    assert validate({"subject": "x"}, "event") == [
        "(root): missing key property 'id' of microsoft.graph.event"
    ]
    # Same checks otherwise.
    assert validate({"showAs": "maybe", "subjet": "x"}, "event", partial=True) == [
        "showAs: 'maybe' is not a member of microsoft.graph.freeBusyStatus (expected one of: "
        "unknown, free, tentative, busy, oof, workingElsewhere)",
        "subjet: unknown property of microsoft.graph.event",
    ]


def test_non_nullable_properties_may_be_absent() -> None:
    # A lifecycle notification carries no changeType or resource, both Nullable="false".
    lifecycle = {
        "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "subscriptionExpirationDateTime": "2026-12-01T09:00:00+01:00",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "clientState": "secretClientValue",
        "lifecycleEvent": "reauthorizationRequired",
    }
    assert validate({"value": [lifecycle]}, "changeNotificationCollection") == []


@pytest.mark.parametrize(
    ("edm_value", "ok"),
    [
        ("2026-12-01T09:00:00Z", True),
        ("2017-04-15T03:00:50.7579581Z", True),
        ("2026-12-01T09:00:00+01:00", True),
        ("2026-12-01T09:00-08:00", True),  # OData allows omitting seconds
        ("0001-01-01T00:00:00Z", True),  # Graph's "never"
        ("2026-12-01T24:00:00Z", False),
        ("2026-12-01T09:00:00+25:00", False),
        ("2026-12-01 09:00:00Z", False),
        ("2026-12-01", False),
    ],
)
def test_datetimeoffset_forms(edm_value: str, ok: bool) -> None:
    problems = validate(_event(createdDateTime=edm_value), "event")
    assert (problems == []) is ok, problems


def test_collection_responses() -> None:
    page = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/events",
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/events?$skip=10",
        "value": [EVENT_RESPONSE, _event(showAs="maybe")],
    }
    assert validate_collection(page, "event") == [
        "value[1].showAs: 'maybe' is not a member of microsoft.graph.freeBusyStatus (expected "
        "one of: unknown, free, tentative, busy, oof, workingElsewhere)"
    ]
    delta = {
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/me/calendarView/delta?$deltatoken=x",
        "value": [{"@removed": {"reason": "deleted"}, "id": "AAMkAGI1AAAt9AHjAAA="}],
    }
    assert validate_collection(delta, "event") == []
    assert validate_collection({"values": []}, "event") == [
        "(root): missing 'value' (the collection's items)",
        "values: unknown member of a collection response",
    ]
    assert validate_collection({"value": {"id": "x"}}, "event") == [
        "value: expected Collection(microsoft.graph.event), got object"
    ]
    assert validate_collection({"value": ["a", "b"]}, "Edm.String") == []


# --------------------------------------------------------------------------------------------
# Action parameters
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "action", "binding", "expected"),
    [
        # The CSDL's own spelling is accepted as well as the documented lowercase one.
        pytest.param(
            {"Schedules": ["a@contoso.com"], "StartTime": _START, "EndTime": _START},
            "getSchedule",
            "calendar",
            [],
            id="getschedule-csdl-spelling",
        ),
        pytest.param(
            {**GET_SCHEDULE_REQUEST, "schedule": ["a@contoso.com"]},
            "getSchedule",
            "microsoft.graph.calendar",
            [
                "schedule: unknown parameter of microsoft.graph.getSchedule (parameters: "
                "Schedules, EndTime, StartTime, AvailabilityViewInterval)"
            ],
            id="getschedule-unknown-parameter",
        ),
        pytest.param(
            {**GET_SCHEDULE_REQUEST, "availabilityViewInterval": "60"},
            "getSchedule",
            "calendar",
            ["availabilityViewInterval: expected Edm.Int32, got '60'"],
            id="getschedule-wrong-type",
        ),
        pytest.param(
            {**GET_SCHEDULE_REQUEST, "startTime": {"dateTime": "2019-03-15T09:00:00", "tz": "x"}},
            "getSchedule",
            "calendar",
            ["startTime.tz: unknown property of microsoft.graph.dateTimeTimeZone"],
            id="getschedule-nested",
        ),
        pytest.param(
            {**GET_SCHEDULE_REQUEST, "Schedules": []},
            "getSchedule",
            "calendar",
            ["Schedules: parameter 'Schedules' given twice (also as 'schedules')"],
            id="getschedule-twice",
        ),
        pytest.param({"comment": "Sorry"}, "cancel", "event", [], id="cancel"),
        pytest.param({"Comment": "Sorry"}, "cancel", "event", [], id="cancel-csdl-spelling"),
        pytest.param(
            {"comment": "Sorry", "sendResponse": True},
            "cancel",
            "event",
            ["sendResponse: unknown parameter of microsoft.graph.cancel (parameters: Comment)"],
            id="cancel-unknown-parameter",
        ),
        pytest.param(
            {
                "comment": "Busy then",
                "sendResponse": True,
                "proposedNewTime": {
                    "start": {"dateTime": "2026-12-02T09:00:00", "timeZone": "UTC"},
                    "end": {"dateTime": "2026-12-02T10:00:00", "timeZone": "UTC"},
                },
            },
            "decline",
            "event",
            [],
            id="decline",
        ),
        pytest.param(
            {"comment": "x", "sendResponse": "yes"},
            "decline",
            "event",
            ["sendResponse: expected Edm.Boolean, got 'yes'"],
            id="decline-wrong-type",
        ),
        pytest.param(
            {"message": "no"},
            "decline",
            "scheduleChangeRequest",
            [],
            id="same-name-other-binding",
        ),
        pytest.param(
            ["a@contoso.com"],
            "getSchedule",
            "calendar",
            ["(root): expected an object of parameters, got array"],
            id="body-not-object",
        ),
    ],
)
def test_action_parameters(payload: Any, action: str, binding: str, expected: list[str]) -> None:
    assert validate_action_parameters(payload, action, binding) == expected


def test_action_lookup_errors_are_the_callers() -> None:
    with pytest.raises(ValueError, match="not an action"):
        validate_action_parameters({}, "getSchedules", "calendar")
    with pytest.raises(ValueError, match="not bound to"):
        validate_action_parameters({}, "getSchedule", "event")


def test_action_bound_to_a_base_type_applies_to_derived_types() -> None:
    # getMemberGroups is declared once, bound to directoryObject; it is invoked on /users/{id}.
    assert (
        validate_action_parameters({"securityEnabledOnly": True}, "getMemberGroups", "user") == []
    )


# --------------------------------------------------------------------------------------------
# Helpers and the data file
# --------------------------------------------------------------------------------------------


def test_type_helpers() -> None:
    names = type_names()
    for name in (
        "microsoft.graph.event",
        "microsoft.graph.changeNotificationCollection",
        "microsoft.graph.changeNotification",
        "microsoft.graph.scheduleInformation",
        "microsoft.graph.freeBusyStatus",
        "microsoft.graph.callRecords.callRecord",
    ):
        assert name in names
    assert has_type("event") and has_type("graph.room") and has_type("#microsoft.graph.place")
    assert not has_type("meeting")
    assert property_type("event", "start") == "microsoft.graph.dateTimeTimeZone"
    assert property_type("event", "attendees") == "Collection(microsoft.graph.attendee)"
    assert property_type("microsoft.graph.event", "id") == "Edm.String"  # inherited from entity
    assert property_type("event", "calendar") == "microsoft.graph.calendar"  # navigation
    assert property_type("event", "subjet") is None
    with pytest.raises(ValueError, match="not an entity or complex type"):
        property_type("meeting", "id")
    with pytest.raises(ValueError, match="not an entity or complex type"):
        validate({}, "freeBusyStatus")


def test_data_file_is_the_published_metadata() -> None:
    # Parse time (about 0.2 s here) is a figure for tests/data/README.md, not an assertion: a
    # wall-clock bound in a test fails on a loaded machine without anything being wrong.
    raw = gzip.decompress(graphmeta.METADATA_PATH.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == graphmeta.METADATA_SHA256
    model = graphmeta._build_model(raw)
    assert len(model.structured) > 2500
