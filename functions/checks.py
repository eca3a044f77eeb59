"""The go-live check (issue 14): start one (202 at once), read one, list them; the queue worker
that runs it; the sweeper timer that cleans up after runs that died.

Thin triggers: the caller is checked first (401/403), then shared/checks/runner.py or sweeper.py
is called with `wiring.check_deps()`. shared/ is imported inside the handlers (STYLE.md rule 1).
"""

from __future__ import annotations

import json
import logging

import azure.functions as func

from functions.http import (
    caller_for,
    handle_errors,
    json_response,
    list_response,
    problem_response,
    read_json,
)
from functions.queues import decode_or_drop

logger = logging.getLogger(__name__)

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
CHECKS = "buildings/{building}/checks"


@bp.route(route=CHECKS, methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def check_start(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    actor = caller_for(req, building).actor
    from shared import wiring
    from shared.checks.runner import start_check
    from shared.checks.store import CheckRunning

    body = read_json(req) if req.get_body() else {}
    try:
        view = start_check(wiring.check_deps(), building, body, actor=actor)
    except CheckRunning as running:
        response = problem_response(running, req)
        problem = {**json.loads(response.get_body()), "runningCheckId": running.running_id}
        return func.HttpResponse(json.dumps(problem), status_code=409,
                                 mimetype="application/problem+json")  # fmt: skip
    location = f"/api/{CHECKS.format(building=building)}/{view['id']}"
    return json_response(view, 202, {"Location": location})


@bp.route(route=CHECKS, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def checks_list(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building)
    from shared import wiring
    from shared.checks.runner import list_checks

    return list_response(req, list_checks(wiring.check_deps(), building, dict(req.params)))


@bp.route(route=CHECKS + "/{check}", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def check_get(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building)
    from shared import wiring
    from shared.checks.runner import get_check

    return json_response(get_check(wiring.check_deps(), building, req.route_params["check"]))


@bp.queue_trigger(arg_name="msg", queue_name="checks", connection="AzureWebJobsStorage")
def check_worker(msg: func.QueueMessage) -> None:
    from shared import wiring
    from shared.checks.runner import decode_message, run_check

    message = decode_or_drop(msg, decode_message, "checks", "a check request")
    if message is None:
        return
    building, run_id = message
    logger.info(
        "check %s %s: %s", building, run_id, run_check(wiring.check_deps(), building, run_id)
    )


@bp.timer_trigger(schedule="%BB_CHECKS_SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False)
def check_sweeper(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.checks.sweeper import sweep

    result = sweep(wiring.check_deps())
    if result.cleaned or result.still_left:
        logger.info("check sweep: %s", result)
