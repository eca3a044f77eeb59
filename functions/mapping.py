"""Calendar discovery and resource ↔ calendar mapping of a building (shared/mapping/).

Every route takes a bearer token of Portal.Service or of a Building.Admin of that building, checked
first (401 / 403) before anything is read. Services and shared.wiring (their collaborators) are
imported inside the handlers so that indexing the app imports no storage SDK (cold start, STYLE.md
rule 1).
"""

from __future__ import annotations

import azure.functions as func

from functions.http import (
    caller_for,
    handle_errors,
    json_response,
    list_response,
    problem_response,
    read_json,
)
from shared.core.paging import Listed

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
MAPPING = "buildings/{building}/resources/{resource}/mapping"


@bp.route(route="buildings/{building}/calendars", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def calendars_list(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.mapping.discovery import list_calendars

    found = list_calendars(wiring.mapping_deps(), building, dict(req.params), actor=caller.actor)
    return list_response(req, Listed(found))


@bp.route(route="buildings/{building}/roomlists", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def roomlists_list(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.mapping.discovery import list_room_lists

    return list_response(
        req, Listed(list_room_lists(wiring.mapping_deps(), building, actor=caller.actor))
    )


@bp.route(route=MAPPING, methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def mapping_put(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.mapping.service import map_resource

    view = map_resource(
        wiring.mapping_deps(), building, req.route_params["resource"], read_json(req),
        actor=caller.actor,
    )  # fmt: skip
    return json_response(view)


@bp.route(route=MAPPING, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def mapping_delete(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller_for(req, building)
    from shared import wiring
    from shared.mapping.service import unmap

    unmap(wiring.mapping_deps(), building, req.route_params["resource"])
    return func.HttpResponse(status_code=204)


@bp.route(route="buildings/{building}/places", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def places_get(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.core.validate import Checker
    from shared.mapping.places import places_tree

    check = Checker(dict(req.params))
    check.only(())  # no query parameters: an unknown one is a 400 naming it
    check.done()
    return json_response(places_tree(wiring.mapping_deps(), building, actor=caller.actor))


@bp.route(route="buildings/{building}/places:import", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def places_import(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.mapping.places import ImportRejected, import_places

    body = read_json(req) if req.get_body() else {}
    try:
        report = import_places(wiring.mapping_deps(), building, body, actor=caller.actor)
    except ImportRejected as rejected:
        # All or nothing: a problem (422) that also carries every rejected place.
        return problem_response(rejected, req, extra={"rejected": rejected.rows})
    return json_response(report)


@bp.route(route="buildings/{building}/mappings:import", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def mappings_import(req: func.HttpRequest) -> func.HttpResponse:
    building = req.route_params["building"]
    caller = caller_for(req, building)
    from shared import wiring
    from shared.mapping.bulk import import_mappings
    from shared.mapping.places import ImportRejected

    body = read_json(req)  # 1 MiB: 2,000 rows of ~100 bytes fit five times over
    try:
        report = import_mappings(wiring.mapping_deps(), building, body, actor=caller.actor)
    except ImportRejected as rejected:
        # All or nothing: a problem (422) that also carries every rejected row.
        return problem_response(rejected, req, extra={"rejected": rejected.rows})
    return json_response(report)
