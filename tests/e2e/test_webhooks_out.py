"""Outgoing webhooks end to end (issue 16): the local stack's host delivers from its queue to a
receiver on loopback that verifies every request with the `standardwebhooks` library.

One stack for the module, with short retry delays (webhook_fixtures.WEBHOOK_SETTINGS). Each test
uses its own building and receiver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import webhooks as sw
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devstack.stack import Stack, start_stack
from tests.e2e.conftest import client_token, functions_client
from tests.e2e.sync_fixtures import new_building
from tests.e2e.webhook_fixtures import WEBHOOK_SETTINGS, Receiver, free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.timeout(180)
WITHIN = 3.0  # seconds from the change to the receiver (issue 16)
# The outbox gives up after two attempts (the request's and one retry a second later), so a
# booking whose write keeps failing reaches `failed` within seconds (issue 20).
OUTBOX_GIVES_UP = {
    "BB_OUTBOX_MAX_ATTEMPTS": "2",
    "BB_OUTBOX_BACKOFF_SECONDS": "1",
    "BB_OUTBOX_BACKOFF_MAX_SECONDS": "1",
}


@pytest.fixture(scope="module")
def wstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("webhooks-stack"),
        extra_settings={**WEBHOOK_SETTINGS, **OUTBOX_GIVES_UP},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def wapi(wstack: Stack) -> Iterator[httpx.Client]:
    with functions_client(wstack.endpoints, client_token(wstack.endpoints)) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


def create(api: httpx.Client, building: str, url: str, **body: Any) -> dict[str, Any]:
    made = api.post(f"buildings/{building}/webhooks", json={"url": url, **body})
    assert made.status_code == 201, made.text
    return dict(made.json())


def ping(api: httpx.Client, building: str, webhook: str) -> dict[str, Any]:
    sent = api.post(f"buildings/{building}/webhooks/{webhook}:ping")
    assert sent.status_code == 202, sent.text
    return dict(sent.json())


def deliveries(api: httpx.Client, building: str, webhook: str) -> list[dict[str, Any]]:
    listed = api.get(f"buildings/{building}/webhooks/{webhook}/deliveries")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["value"])


def delivery(api: httpx.Client, building: str, webhook: str, delivery_id: str) -> dict[str, Any]:
    return next(d for d in deliveries(api, building, webhook) if d["id"] == delivery_id)


def test_a_url_to_a_private_address_is_refused_with_422(wapi: httpx.Client) -> None:
    building = new_building("whp", wapi)
    for url in (
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00:ec2::254]/",
        "https://192.168.0.10:8443/x",
        "ftp://example.com/",
    ):
        refused = wapi.post(f"buildings/{building}/webhooks", json={"url": url})
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["reason"] == "unsafe_url"
    assert wapi.get(f"buildings/{building}/webhooks").json() == {"value": [], "nextLink": None}


def test_the_secret_is_shown_once_and_crud_works(wapi: httpx.Client, receiver: Receiver) -> None:
    building = new_building("whc", wapi)
    made = create(wapi, building, receiver.url, events=["booking.failed"], description="Portal")
    assert made["secret"].startswith("whsec_") and made["status"] == "active"
    one = wapi.get(f"buildings/{building}/webhooks/{made['id']}")
    assert one.status_code == 200 and "secret" not in one.json()
    assert made["secret"] not in wapi.get(f"buildings/{building}/webhooks").text
    patched = wapi.patch(f"buildings/{building}/webhooks/{made['id']}", json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["status"] == "disabled"
    bad = wapi.patch(
        f"buildings/{building}/webhooks/{made['id']}", json={"url": "https://10.0.0.1/"}
    )
    assert bad.status_code == 422
    typo = wapi.patch(f"buildings/{building}/webhooks/{made['id']}", json={"evnts": ["*"]})
    assert typo.status_code == 400
    assert wapi.delete(f"buildings/{building}/webhooks/{made['id']}").status_code == 204
    assert wapi.get(f"buildings/{building}/webhooks/{made['id']}").status_code == 404


def test_an_event_reaches_the_receiver_signed_within_3_s(
    wapi: httpx.Client, receiver: Receiver
) -> None:
    building = new_building("whs", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["current"] = made["secret"]
    started = time.time()
    sent = ping(wapi, building, made["id"])
    got = wait_for(receiver.requests, timeout=WITHIN, what="the ping at the receiver")[0]
    assert got.at - started <= WITHIN
    assert got.verified_with == ["current"], got.headers
    assert got.id == sent["eventId"]
    assert got.event["type"] == "webhook.ping"
    assert got.event["data"] == {"building": building, "webhookId": made["id"]}
    done = wait_for(lambda: delivery(wapi, building, made["id"], sent["id"])["status"] == "delivered"
                    and delivery(wapi, building, made["id"], sent["id"]), what="delivered")  # fmt: skip
    (attempt,) = done["attempts"]
    assert attempt["statusCode"] == 200 and attempt["latencyMs"] >= 0 and attempt["error"] is None


def test_500_then_200_delivers_again_with_the_same_webhook_id(
    wapi: httpx.Client, receiver: Receiver
) -> None:
    building = new_building("whr", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["s"] = made["secret"]
    receiver.script[:] = [500, 503, 200]
    sent = ping(wapi, building, made["id"])
    got = wait_for(lambda: len(receiver.requests()) >= 3 and receiver.requests(), timeout=15,
                   what="three attempts")  # fmt: skip
    assert {r.id for r in got} == {sent["eventId"]}
    assert all(r.verified_with == ["s"] for r in got)
    assert [r.status for r in got] == [500, 503, 200]
    done = wait_for(lambda: (d := delivery(wapi, building, made["id"], sent["id"]))["status"]
                    == "delivered" and d, what="delivered")  # fmt: skip
    assert [a["statusCode"] for a in done["attempts"]] == [500, 503, 200]
    assert wapi.get(f"buildings/{building}/webhooks/{made['id']}").json()["status"] == "active"


def test_400_is_not_retried(wapi: httpx.Client, receiver: Receiver) -> None:
    building = new_building("whn", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["s"] = made["secret"]
    receiver.default = 400
    sent = ping(wapi, building, made["id"])
    failed = wait_for(lambda: (d := delivery(wapi, building, made["id"], sent["id"]))["status"]
                      == "failed" and d, what="failed")  # fmt: skip
    time.sleep(3.0)  # three retry delays' worth: nothing more may come
    assert len(receiver.requests()) == 1
    assert [a["statusCode"] for a in failed["attempts"]] == [400]
    health = wapi.get(f"buildings/{building}/webhooks/{made['id']}").json()
    assert health["status"] == "failing" and health["lastFailureAt"]
    sync = wapi.get(f"buildings/{building}/sync")
    assert sync.status_code == 200, sync.text
    assert [w["id"] for w in sync.json()["webhooks"]] == [made["id"]]
    assert sync.json()["webhooks"][0]["status"] == "failing"


def test_a_receiver_down_gets_everything_once_it_is_back(wapi: httpx.Client) -> None:
    building = new_building("whd", wapi)
    port = free_port()
    down = Receiver(port=port)
    made = create(wapi, building, down.url)
    down.secrets["s"] = made["secret"]
    sent = [ping(wapi, building, made["id"]) for _ in range(3)]
    wait_for(lambda: all(delivery(wapi, building, made["id"], s["id"])["attempts"] for s in sent),
             timeout=10, what="first attempts failing")  # fmt: skip
    first = delivery(wapi, building, made["id"], sent[0]["id"])
    assert first["status"] == "pending" and first["attempts"][0]["error"] == "connection_error"
    down.start()
    try:
        got = wait_for(lambda: {r.id for r in down.requests()} >= {s["eventId"] for s in sent}
                       and down.requests(), timeout=15, what="every event after the outage")  # fmt: skip
        assert all(r.verified_with == ["s"] for r in got)
        wait_for(lambda: all(delivery(wapi, building, made["id"], s["id"])["status"] == "delivered"
                             for s in sent), what="all delivered")  # fmt: skip
    finally:
        down.stop()


def test_rotation_signs_with_both_during_grace_then_only_the_new(
    wapi: httpx.Client, receiver: Receiver
) -> None:
    building = new_building("whk", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["old"] = made["secret"]
    rotated = wapi.post(f"buildings/{building}/webhooks/{made['id']}:rotate",
                        json={"graceSeconds": 4})  # fmt: skip
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != made["secret"] and rotated.json()["previousSecretValidUntil"]
    receiver.secrets["new"] = new
    ping(wapi, building, made["id"])
    during = wait_for(receiver.requests, what="a ping during the grace period")[0]
    assert sorted(during.verified_with) == ["new", "old"]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    until = datetime.fromisoformat(rotated.json()["previousSecretValidUntil"])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
    ping(wapi, building, made["id"])
    after = wait_for(lambda: len(receiver.requests()) >= 2 and receiver.requests()[1],
                     what="a ping after the grace period")  # fmt: skip
    assert after.verified_with == ["new"]
    with pytest.raises(WebhookVerificationError):
        Webhook(made["secret"]).verify(after.body, after.headers)


def test_a_forged_or_replayed_delivery_is_rejected_by_the_library(
    wapi: httpx.Client, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    building = new_building("whf", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["s"] = made["secret"]
    ping(wapi, building, made["id"])
    got = wait_for(receiver.requests, what="a ping")[0]
    hook = Webhook(made["secret"])
    assert hook.verify(got.body, got.headers)
    forged = got.body.replace(b"webhook.ping", b"booking.failed")
    with pytest.raises(WebhookVerificationError):
        hook.verify(forged, got.headers)
    with pytest.raises(WebhookVerificationError):  # another id with the same signature
        hook.verify(got.body, {**got.headers, "webhook-id": "msg_other"})
    with pytest.raises(WebhookVerificationError):  # someone else's secret
        Webhook("whsec_" + "QUJD" * 8).verify(got.body, got.headers)

    class Later(datetime):  # the same request replayed ten minutes later
        @classmethod
        def now(cls, tz: Any = None) -> Later:  # type: ignore[override]
            return datetime.now(tz) + timedelta(minutes=10)  # type: ignore[return-value]

    monkeypatch.setattr(sw, "datetime", Later)
    with pytest.raises(WebhookVerificationError, match="too old"):
        hook.verify(got.body, got.headers)


def test_redelivery_sends_the_same_event_again(wapi: httpx.Client, receiver: Receiver) -> None:
    building = new_building("whx", wapi)
    made = create(wapi, building, receiver.url)
    receiver.secrets["s"] = made["secret"]
    sent = ping(wapi, building, made["id"])
    wait_for(lambda: delivery(wapi, building, made["id"], sent["id"])["status"] == "delivered",
             what="delivered")  # fmt: skip
    again = wapi.post(
        f"buildings/{building}/webhooks/{made['id']}/deliveries/{sent['id']}:redeliver"
    )
    assert again.status_code == 202, again.text
    got = wait_for(lambda: len(receiver.requests()) >= 2 and receiver.requests(),
                   what="the redelivery")  # fmt: skip
    assert got[0].id == got[1].id == sent["eventId"] and got[1].verified_with == ["s"]
    assert got[0].body == got[1].body
    assert (
        wapi.post(
            f"buildings/{building}/webhooks/{made['id']}/deliveries/9999999999999deadbeef:redeliver"
        ).status_code
        == 404
    )


# ---------------------------------------------------------------- events from sync and bookings


def _event(subject: str, start: datetime, hours: float, room_mail: str) -> dict[str, Any]:
    end = start + timedelta(hours=hours)
    return {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "attendees": [{"type": "resource", "emailAddress": {"address": room_mail}}],
    }


@pytest.fixture(scope="module")
def connected(wstack: Stack, wapi: httpx.Client) -> dict[str, Any]:
    """A building connected to the demo tenant (application mode), the room boardroom4a mapped
    as `room`, Emma registered (so her bookings are attributed to her)."""
    from tests.e2e.sync_fixtures import (
        connect_building_application,
        map_room,
        service_env,
        wait_sync_quiet,
    )

    users = wstack.emulator.seed["tenant"]["users"]
    building = new_building("whb", wapi)
    domain = wstack.endpoints["tenantDomain"]
    assert wapi.put(f"buildings/{building}/companies/contoso",
                    json={"name": "Contoso", "domains": [domain]}).status_code in (200, 201)  # fmt: skip
    emma = users["emma"]["mail"]
    assert wapi.put(f"buildings/{building}/users/{emma}",
                    json={"name": "Emma", "companyId": "contoso"}).status_code in (200, 201)  # fmt: skip
    with functions_client(wstack.endpoints) as anonymous:
        connect_building_application(wstack, wapi, anonymous, building)
    room_mail = users["boardroom4a"]["mail"].lower()
    map_room(wapi, building, "room", room_mail)
    with service_env(wstack):
        wait_sync_quiet(wstack, [building], timeout=20)
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=3)
    return {"building": building, "room": room_mail, "users": users, "day": day}


def _of_type(receiver: Receiver, kind: str) -> list[Any]:
    return [r for r in receiver.requests() if r.event["type"] == kind]


def test_an_outlook_booking_reaches_the_receiver_signed_and_attributed_within_3_s(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    from tests.e2e.sync_fixtures import outlook

    building, room = connected["building"], connected["room"]
    made = create(wapi, building, receiver.url, events=["outlook_booking.created",
                  "outlook_booking.updated", "outlook_booking.cancelled"])  # fmt: skip
    receiver.secrets["s"] = made["secret"]
    emma = connected["users"]["emma"]
    start = connected["day"] + timedelta(hours=9)
    changed = time.time()
    created = outlook(wstack, "POST", f"users/{emma['userPrincipalName']}/events",
                      json=_event("Design review", start, 1, room))  # fmt: skip
    (got,) = wait_for(lambda: _of_type(receiver, "outlook_booking.created"), timeout=WITHIN,
                      what="outlook_booking.created within 3 s")  # fmt: skip
    assert got.at - changed <= WITHIN
    assert got.verified_with == ["s"]
    data = got.event["data"]
    assert data["building"] == building and data["resourceId"] == "room"
    assert data["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["attribution"] == {"kind": "user", "companyId": "contoso",
                                   "userEmail": emma["mail"].lower(), "reason": "registered_user"}  # fmt: skip
    moved = start + timedelta(hours=5)
    body = _event("Design review", moved, 2, room)
    outlook(wstack, "PATCH", f"users/{emma['userPrincipalName']}/events/{created['id']}",
            json={"start": body["start"], "end": body["end"]})  # fmt: skip
    (updated,) = wait_for(lambda: _of_type(receiver, "outlook_booking.updated"), timeout=10,
                          what="outlook_booking.updated")  # fmt: skip
    assert updated.event["data"]["blockId"] == data["blockId"]
    assert updated.event["data"]["start"] == moved.strftime("%Y-%m-%dT%H:%M:%SZ")
    outlook(wstack, "POST", f"users/{emma['userPrincipalName']}/events/{created['id']}/cancel",
            json={})  # fmt: skip
    (cancelled,) = wait_for(lambda: _of_type(receiver, "outlook_booking.cancelled"), timeout=10,
                            what="outlook_booking.cancelled")  # fmt: skip
    assert cancelled.event["data"]["blockId"] == data["blockId"]
    assert all(r.verified_with == ["s"] for r in receiver.requests())
    assert len({r.id for r in receiver.requests()}) == 3


def test_platform_bookings_report_synced_and_failed(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    from tests.e2e.booking_fixtures import add_fault, clear_faults

    building = connected["building"]
    made = create(wapi, building, receiver.url, events=["booking.synced", "booking.failed"])
    receiver.secrets["s"] = made["secret"]
    start = connected["day"] + timedelta(days=1, hours=8)

    def book(hour: int) -> dict[str, Any]:
        s = start + timedelta(hours=hour)
        response = wapi.post(f"buildings/{building}/bookings", json={
            "resourceId": "room", "start": s.isoformat(), "end": (s + timedelta(hours=1)).isoformat(),
            "title": "Planning", "booker": {"email": "ann@fabrikam.example", "name": "Ann"}})  # fmt: skip
        assert response.status_code == 201, response.text
        return dict(response.json())

    ok = book(0)
    assert ok["syncState"] == "synced"
    (synced,) = wait_for(lambda: _of_type(receiver, "booking.synced"), timeout=WITHIN,
                         what="booking.synced")  # fmt: skip
    assert synced.verified_with == ["s"]
    assert synced.event["data"] == {"building": building, "bookingId": ok["id"], "resourceId":
                                    "room", "outlookEventId": ok["outlookEventId"]}  # fmt: skip
    add_fault(wstack, method="POST", path="/users/*/calendars/*/events*", status=403,
              code="ErrorAccessDenied", message="Access is denied.")  # fmt: skip
    try:
        bad = book(2)
    finally:
        clear_faults(wstack)
    assert bad["syncState"] == "failed"
    (failed,) = wait_for(lambda: _of_type(receiver, "booking.failed"), timeout=WITHIN,
                         what="booking.failed")  # fmt: skip
    assert failed.event["data"]["bookingId"] == bad["id"]
    assert failed.event["data"]["reason"] == "access_denied"
    assert len(_of_type(receiver, "booking.synced")) == 1


def test_a_write_failing_until_the_outbox_gives_up_is_failed_reported_and_shown(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    """Outbox exhaustion end to end (issue 20): Graph answers 503 to every event write, the
    request's attempt leaves the booking pending, the outbox retries until it gives up; the
    booking ends `failed` (`retries_exhausted`), `booking.failed` reaches the receiver, and
    GET /sync names the booking in the mapping's `lastWriteError`. Nothing is lost: the booking
    and its slot stay."""
    from tests.e2e.booking_fixtures import add_fault, clear_faults

    building = connected["building"]
    made = create(wapi, building, receiver.url, events=["booking.failed"])
    receiver.secrets["s"] = made["secret"]
    start = connected["day"] + timedelta(days=2, hours=8)
    add_fault(wstack, method="POST", path="/users/*/calendars/*/events*", status=503)
    try:
        response = wapi.post(f"buildings/{building}/bookings", json={
            "resourceId": "room", "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(), "title": "Planning",
            "booker": {"email": "ann@fabrikam.example", "name": "Ann"}})  # fmt: skip
        assert response.status_code == 201, response.text
        booking = response.json()
        assert booking["syncState"] == "pending" and booking["attempts"] == 1

        def state() -> dict[str, Any]:
            got = wapi.get(f"buildings/{building}/bookings/{booking['id']}")
            assert got.status_code == 200, got.text
            return dict(got.json())

        ended = wait_for(lambda: state()["syncState"] == "failed" and state(), timeout=30,
                         what="the outbox giving up")  # fmt: skip
    finally:
        clear_faults(wstack)
    assert ended["status"] == "confirmed" and ended["attempts"] == 2
    assert ended["lastError"]["reason"] == "retries_exhausted"
    assert ended["lastError"]["code"] == "ServiceUnavailable"  # what Graph said last
    (failed,) = wait_for(lambda: _of_type(receiver, "booking.failed"), timeout=10,
                         what="booking.failed")  # fmt: skip
    assert failed.verified_with == ["s"]
    assert failed.event["data"]["bookingId"] == booking["id"]
    assert failed.event["data"]["reason"] == "retries_exhausted"
    health = wapi.get(f"buildings/{building}/sync")
    assert health.status_code == 200, health.text
    (mapping,) = [m for m in health.json()["mappings"] if m["resourceId"] == "room"]
    written = mapping["lastWriteError"]
    assert written["bookingId"] == booking["id"] and written["reason"] == "retries_exhausted"
    assert written["status"] == 503 and written["code"] == "ServiceUnavailable"
    assert written["at"] == ended["lastError"]["at"]
    # Never silently lost: the booking still holds its slot, and no retry is left running.
    availability = wapi.get(f"buildings/{building}/availability", params={
        "from": start.isoformat(), "to": (start + timedelta(hours=1)).isoformat(),
        "resourceId": "room"})  # fmt: skip
    assert availability.status_code == 200, availability.text
    assert booking["id"] in availability.text


def test_a_new_mapping_reports_its_status_change(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    from tests.e2e.sync_fixtures import map_room

    building = connected["building"]
    made = create(wapi, building, receiver.url, events=["mapping.status_changed"])
    receiver.secrets["s"] = made["secret"]
    map_room(wapi, building, "huddle", connected["users"]["huddle4b"]["mail"].lower())
    got = wait_for(lambda: len(changes := [r for r in _of_type(receiver, "mapping.status_changed")
                                           if r.event["data"]["resourceId"] == "huddle"]) >= 2
                   and changes, timeout=10, what="mapping.status_changed twice")  # fmt: skip
    assert all(r.verified_with == ["s"] for r in got)
    statuses = {r.event["data"]["status"]: r.event["data"] for r in got}
    assert statuses["pending"]["reason"] == "awaiting_first_sync"
    assert statuses["synced"]["previousStatus"] == "pending"


def test_a_go_live_check_reports_its_completion(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    building = connected["building"]
    made = create(wapi, building, receiver.url, events=["check.completed"])
    receiver.secrets["s"] = made["secret"]
    started = wapi.post(f"buildings/{building}/checks", json={"resourceIds": ["room"]})
    assert started.status_code == 202, started.text
    (got,) = wait_for(lambda: _of_type(receiver, "check.completed"), timeout=90,
                      what="check.completed")  # fmt: skip
    assert got.verified_with == ["s"]
    run = wapi.get(f"buildings/{building}/checks/{started.json()['id']}").json()
    assert got.event["data"] == {"building": building, "checkId": run["id"],
                                 "status": run["status"]}  # fmt: skip
    assert run["status"] in ("passed", "failed")


def test_a_connection_needing_reauth_and_its_reconnect_are_reported(
    wstack: Stack, wapi: httpx.Client, receiver: Receiver
) -> None:
    from tests.e2e.sync_fixtures import connect_building_delegated, service_env

    users = wstack.emulator.seed["tenant"]["users"]
    olivia = users["olivia"]
    building = new_building("whq", wapi)
    made = create(wapi, building, receiver.url, events=["connection.reauth_required",
                  "connection.restored"])  # fmt: skip
    receiver.secrets["s"] = made["secret"]
    with functions_client(wstack.endpoints) as anonymous:
        connect_building_delegated(wstack, wapi, anonymous, building, olivia["userPrincipalName"])
    revoke = wstack.emulator.control.post(
        "identity/revoke", json={"tenant": wstack.endpoints["tenantId"], "user": olivia["id"]}
    )
    assert revoke.status_code == 200, revoke.text
    with service_env(wstack):  # a refresh in this process, as the keep-alive timer does
        from shared import wiring
        from shared.core.errors import IdentityError

        connection = wiring.connect_deps().connections.get(building)
        assert connection is not None
        with pytest.raises(IdentityError):
            wiring.connect_deps().tokens.refresh_now(connection)
    (needs,) = wait_for(lambda: _of_type(receiver, "connection.reauth_required"), timeout=WITHIN,
                        what="connection.reauth_required")  # fmt: skip
    assert needs.verified_with == ["s"]
    assert needs.event["data"] == {"building": building, "status": "reauth_required",
                                   "reason": "grant_revoked"}  # fmt: skip
    with functions_client(wstack.endpoints) as anonymous:
        connect_building_delegated(wstack, wapi, anonymous, building, olivia["userPrincipalName"])
    (restored,) = wait_for(lambda: _of_type(receiver, "connection.restored"), timeout=WITHIN,
                           what="connection.restored")  # fmt: skip
    assert restored.verified_with == ["s"]
    assert restored.event["data"] == {"building": building, "status": "connected"}


def test_a_disconnect_reports_every_mapping_not_synced(
    wstack: Stack, wapi: httpx.Client, connected: dict[str, Any], receiver: Receiver
) -> None:
    """Last in the module: it disconnects the shared building."""
    building = connected["building"]
    made = create(wapi, building, receiver.url, events=["mapping.status_changed"])
    receiver.secrets["s"] = made["secret"]
    assert wapi.delete(f"buildings/{building}/connection").status_code == 204

    def not_synced() -> list[Any]:
        found = [r for r in _of_type(receiver, "mapping.status_changed")
                 if r.event["data"]["status"] == "not_synced"]  # fmt: skip
        # Each mapping reports in its own delivery, in no set order: wait for the room's.
        return found if "room" in {r.event["data"]["resourceId"] for r in found} else []

    got = wait_for(not_synced, timeout=WITHIN, what="the room's mapping.status_changed not_synced")
    assert all(r.verified_with == ["s"] for r in got)
    assert {r.event["data"]["reason"] for r in got} == {"disconnected"}
