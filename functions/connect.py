"""Connection to Microsoft 365: connect / status / disconnect, the OAuth callbacks, the keep-alive
timer, and the building's audit log. Thin triggers: parse, call shared/, map the result."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import caller_for, handle_errors, json_response, list_response, read_json

bp = func.Blueprint()
# The host's function keys are not our auth: every route authenticates the bearer token in-app
# (caller_for), and the OAuth callbacks are anonymous by nature (state protects them).
ANONYMOUS = func.AuthLevel.ANONYMOUS
logger = logging.getLogger(__name__)


@bp.route(route="buildings/{building}/connection", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def connection_start(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.connect.service import start_connect

    building = req.route_params["building"]
    caller = caller_for(req, building)
    url = start_connect(wiring.connect_deps(), building, caller, read_json(req))
    return json_response({"authorizeUrl": url})


@bp.route(route="buildings/{building}/connection", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def connection_get(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.connect.service import connection_status

    building = req.route_params["building"]
    caller_for(req, building)
    return json_response(connection_status(wiring.connect_deps(), building))


@bp.route(route="buildings/{building}/connection", methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def connection_delete(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.connect.service import disconnect

    building = req.route_params["building"]
    caller_for(req, building)
    disconnect(wiring.connect_deps(), building)
    return func.HttpResponse(status_code=204)


@bp.route(route="oauth/callback", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def oauth_callback(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.connect.service import complete_delegated

    location = complete_delegated(wiring.connect_deps(), dict(req.params))
    return _redirect(location)


@bp.route(route="oauth/adminconsent", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def oauth_adminconsent(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.connect.service import complete_admin_consent

    location = complete_admin_consent(wiring.connect_deps(), dict(req.params))
    return _redirect(location)


@bp.route(route="buildings/{building}/audit", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def audit_list(req: func.HttpRequest) -> func.HttpResponse:
    from datetime import UTC, datetime

    from shared import wiring

    building = req.route_params["building"]
    caller_for(req, building)
    return list_response(
        req, wiring.audit_log().read(building, dict(req.params), datetime.now(UTC))
    )


@bp.route(route="buildings/{building}/audit/{record}", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def audit_get(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring

    building = req.route_params["building"]
    caller_for(req, building)
    return json_response(wiring.audit_log().get(building, req.route_params["record"]))


@bp.timer_trigger(schedule="%BB_KEEPALIVE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def connection_keepalive(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.connect.service import keep_alive

    counts = keep_alive(wiring.connect_deps())
    logger.info("connection keep-alive: %s", counts)


def _redirect(location: str) -> func.HttpResponse:
    # no-store: the callback URL carried a code; Referrer-Policy keeps it out of the next page.
    return func.HttpResponse(
        status_code=302,
        headers={
            "Location": location,
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )
