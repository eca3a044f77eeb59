"""Bookings and availability routes, and the outbox worker that writes bookings through to Outlook.

Thin triggers: the caller is checked first (401/403), then one service of
shared/bookings/service.py or shared/availability/service.py is called with its collaborators from
shared/wiring.py; errors become problem+json in `handle_errors`. Services and the wiring are
imported inside the handlers so indexing the app imports no storage SDK (STYLE.md rule 1).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import (
    caller_for,
    handle_errors,
    if_match,
    json_response,
    list_response,
    read_json,
)
from functions.queues import decode_or_drop

logger = logging.getLogger(__name__)

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
BOOKINGS = "buildings/{building}/bookings"
BOOKING = "buildings/{building}/bookings/{booking}"


def _building(req: func.HttpRequest) -> tuple[str, str]:
    """(building, actor) once the caller may reach the building (else 401/403)."""
    building = str(req.route_params.get("building", ""))
    return building, caller_for(req, building).actor


@bp.route(route=BOOKINGS, methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def booking_create(req: func.HttpRequest) -> func.HttpResponse:
    building, actor = _building(req)
    from shared import wiring
    from shared.bookings.service import create_booking

    view, created = create_booking(
        wiring.booking_deps(), building, read_json(req),
        idempotency_key=req.headers.get("Idempotency-Key"), actor=actor,
    )  # fmt: skip
    headers = {"Location": f"/api/{BOOKINGS.format(building=building)}/{view['id']}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return json_response(view, 201, headers)


@bp.route(route=BOOKINGS, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def bookings_list(req: func.HttpRequest) -> func.HttpResponse:
    building, _ = _building(req)
    from shared import wiring
    from shared.bookings.service import list_bookings

    return list_response(req, list_bookings(wiring.booking_deps(), building, dict(req.params)))


@bp.route(route=BOOKING, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def booking_get(req: func.HttpRequest) -> func.HttpResponse:
    building, _ = _building(req)
    from shared import wiring
    from shared.attendance.service import booking_with_attendance

    view, etag = booking_with_attendance(
        wiring.attendance_deps(), building, req.route_params["booking"]
    )
    return json_response(view, etag=etag)


@bp.route(route=BOOKING + "/checkin", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def booking_checkin(req: func.HttpRequest) -> func.HttpResponse:
    building, actor = _building(req)
    from shared import wiring
    from shared.attendance.service import check_in

    body = read_json(req) if req.get_body().strip() else None  # the body is optional
    view, created = check_in(
        wiring.attendance_deps(), building, req.route_params["booking"], body, actor=actor
    )
    return json_response(view, 201 if created else 200)


@bp.route(route=BOOKING, methods=["PATCH"], auth_level=ANONYMOUS)
@handle_errors
def booking_update(req: func.HttpRequest) -> func.HttpResponse:
    building, actor = _building(req)
    from shared import wiring
    from shared.bookings.service import update_booking

    view, etag = update_booking(
        wiring.booking_deps(), building, req.route_params["booking"], read_json(req),
        actor=actor, if_match=if_match(req),
    )  # fmt: skip
    return json_response(view, etag=etag)


@bp.route(route=BOOKING, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def booking_cancel(req: func.HttpRequest) -> func.HttpResponse:
    building, actor = _building(req)
    from shared import wiring
    from shared.bookings.service import cancel_booking

    cancel_booking(
        wiring.booking_deps(), building, req.route_params["booking"], actor=actor,
        if_match=if_match(req),
    )  # fmt: skip
    return func.HttpResponse(status_code=204)


@bp.route(route="buildings/{building}/availability", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def availability_get(req: func.HttpRequest) -> func.HttpResponse:
    building, _ = _building(req)
    from shared import wiring
    from shared.availability.service import availability_json

    # JSON text already: a building's week is joined from the blocks' held texts, not re-encoded.
    answer = availability_json(
        wiring.directory_tables(), wiring.busy_snapshots(), building, dict(req.params)
    )
    return func.HttpResponse(answer, status_code=200, mimetype="application/json")


@bp.timer_trigger(schedule="%BB_RELEASE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def release_timer(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.attendance.service import release_due

    done = release_due(wiring.attendance_deps())
    if done:
        logger.info("release: %s", dict(done))


@bp.queue_trigger(arg_name="msg", queue_name="outbox", connection="AzureWebJobsStorage")
def outbox_worker(msg: func.QueueMessage) -> None:
    from shared import wiring
    from shared.bookings.outbox import OutboxMessage
    from shared.bookings.service import process_outbox

    message = decode_or_drop(msg, OutboxMessage.decode, "outbox", "an outbox message")
    if message is None:
        return
    # Booking-level failures are recorded and rescheduled by the service; what propagates (storage
    # down) is retried by the host.
    outcome = process_outbox(wiring.booking_deps(), message)
    logger.info("outbox %s %s: %s", message.op, message.booking_id, outcome)
