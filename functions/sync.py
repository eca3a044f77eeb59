"""Calendar sync: the queue worker, the poll and reconciliation timers, sync health and forced
resync. Thin triggers: parse, call shared/sync/ (worker, polling, health), map the result."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import azure.functions as func

from functions.http import caller_for, handle_errors, json_response
from functions.queues import decode_or_drop

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
logger = logging.getLogger(__name__)
# The reconciliation's restart signal: rounds before this process started may have missed
# notifications sent while no process answered (shared/sync/polling.py, reconcile_reason).
PROCESS_STARTED = datetime.now(UTC)


@bp.queue_trigger(arg_name="msg", queue_name="notifications", connection="AzureWebJobsStorage")
def sync_worker(msg: func.QueueMessage) -> None:
    from shared import wiring
    from shared.sync.queue import decode_all
    from shared.sync.worker import handle_all

    requests = decode_or_drop(msg, decode_all, "sync", "a sync request")
    if requests is None:
        return
    # A failure the queue should retry propagates (the host retries, then poisons it).
    for request, results in handle_all(wiring.sync_deps(), requests, msg.insertion_time):
        logger.info("sync %s %s (%s): %s", request.building, request.mailbox, request.reason,
                    [(r.resource_id, r.outcome, r.changes) for r in results])  # fmt: skip


@bp.timer_trigger(schedule="%BB_POLL_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sync_poll(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.sync.polling import poll_due

    sent = poll_due(wiring.sync_deps())
    if sent:
        logger.info("sync poll: %d calendars enqueued", sent)


@bp.timer_trigger(schedule="%BB_RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def sync_reconcile(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.sync.polling import reconcile_due

    reasons = reconcile_due(wiring.sync_deps(), started=PROCESS_STARTED)
    trusted = reasons.pop("trusted", 0)
    logger.info("sync reconcile: %d calendars enqueued %s, %d trusted", sum(reasons.values()),
                dict(reasons), trusted)  # fmt: skip


@bp.route(route="buildings/{building}/sync", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def sync_health_get(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller_for(req, building)
    from shared import wiring
    from shared.sync.health import sync_health

    return json_response(sync_health(wiring.sync_deps(), building))


@bp.route(route="buildings/{building}/resources/{resource}/sync", methods=["POST"],
          auth_level=ANONYMOUS)  # fmt: skip
@handle_errors
def sync_resync(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller_for(req, building)
    from shared import wiring
    from shared.sync.health import force_resync

    request = force_resync(wiring.sync_deps(), building, req.route_params["resource"])
    return json_response(
        {"queued": True, "resourceId": request.resource, "full": request.full}, 202
    )
