"""Buildings themselves: `PUT/GET/DELETE /buildings/{b}` and `GET /buildings` (issue 20).

Who may do what (docs/DESIGN.md "Buildings"): reading and PUT (create or replace) take Portal.Service
or a Building.Admin of that building; DELETE takes Portal.Service only (taking a building off the
platform is the platform's call, not one of its admins'). `GET /buildings` lists what the caller
may reach. Services are imported inside the handlers (cold start, STYLE.md rule 1).
"""

from __future__ import annotations

import json

import azure.functions as func

from functions.http import (
    caller_for,
    handle_errors,
    json_response,
    list_response,
    problem_response,
    read_json,
)
from shared.core.errors import PROBLEM_JSON, Forbidden

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
BUILDING = "buildings/{building}"


@bp.route(route="buildings", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def buildings_list(req: func.HttpRequest) -> func.HttpResponse:
    caller = caller_for(req)
    from shared import wiring

    return list_response(req, wiring.buildings().reachable(caller.buildings))


@bp.route(route=BUILDING, methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def building_put(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building, must_exist=False)
    from shared import wiring

    view, created = wiring.buildings().put(building, read_json(req))
    return json_response(view, 201 if created else 200)


@bp.route(route=BUILDING, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def building_get(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller_for(req, building, must_exist=False)  # get() answers the 404 itself
    from shared import wiring

    return json_response(wiring.buildings().get(building))


@bp.route(route=BUILDING, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def building_delete(req: func.HttpRequest) -> func.HttpResponse:
    building = str(req.route_params.get("building", ""))
    caller = caller_for(req, building, must_exist=False)  # deleting a missing one is a 204
    if caller.buildings is not None:
        raise Forbidden("Only Portal.Service may delete a building", reason="service_only")
    from shared import wiring
    from shared.directory.buildings import BuildingInUse

    try:
        wiring.buildings().delete(building)
    except BuildingInUse as in_use:
        body = {**json.loads(problem_response(in_use, req).get_body()), "inUse": in_use.in_use}
        return func.HttpResponse(json.dumps(body), status_code=409, mimetype=PROBLEM_JSON)
    return func.HttpResponse(status_code=204)
