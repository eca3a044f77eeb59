"""Room analytics (issue 15): the query (JSON or CSV), the rebuild of a range, the rollup timer.
Thin triggers: the caller is checked first (401/403), then shared/analytics/service.py is called
with `wiring.analytics_deps()`. shared/ is imported inside the handlers (STYLE.md rule 1)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import caller_for, handle_errors, json_response

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
ANALYTICS = "buildings/{building}/analytics"
logger = logging.getLogger(__name__)


@bp.route(route=ANALYTICS, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def analytics_get(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building)
    from shared import wiring
    from shared.analytics.report import to_csv
    from shared.analytics.service import analytics, parse_query

    query = parse_query(dict(req.params))
    answer = analytics(wiring.analytics_deps(), building, query)
    if query.format != "csv":
        return json_response(answer)
    name = f"analytics-{building}-{query.first}-{query.last}-{query.group_by}.csv"
    return func.HttpResponse(
        to_csv(answer), status_code=200, mimetype="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )  # fmt: skip


@bp.route(route=ANALYTICS + ":rebuild", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def analytics_rebuild(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building)
    from shared import wiring
    from shared.analytics.service import rebuild

    return json_response(rebuild(wiring.analytics_deps(), building, dict(req.params)))


@bp.timer_trigger(schedule="%BB_ROLLUP_SCHEDULE%", arg_name="timer", run_on_startup=False)
def analytics_rollup(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.analytics.service import roll_closed_days

    done = roll_closed_days(wiring.analytics_deps())
    if done:
        logger.info("analytics rollup: %d buildings, %d days", len(done), sum(done.values()))
