"""Admin routes of a building: resources, companies, registered users, settings.

Every route takes a bearer token of Portal.Service or of a Building.Admin of that building, checked
first (401 / 403) before the request is read. Handlers parse, call one service in shared/, map the
result; errors become problem+json in `handle_errors`. Services are imported inside the handlers so
that indexing the app imports no storage SDK (cold start, STYLE.md rule 1).
"""

from __future__ import annotations

import json

import azure.functions as func

from functions.http import (
    caller_for,
    handle_errors,
    if_match,
    json_response,
    list_response,
    read_json,
)
from shared.core.errors import PROBLEM_JSON, FieldError, Unprocessable, ValidationFailed, problem

bp = func.Blueprint()
# The host's function keys are not our auth: bearer tokens are validated in-app by caller_for.
ANONYMOUS = func.AuthLevel.ANONYMOUS
RESOURCE = "buildings/{building}/resources/{resource}"
COMPANY = "buildings/{building}/companies/{company}"
USER = "buildings/{building}/users/{email}"


def _building(req: func.HttpRequest) -> str:
    """The building of the route, once the caller is allowed to reach it (else 401/403)."""
    building = str(req.route_params.get("building", ""))
    caller_for(req, building)
    return building


def _created(body: object, created: bool, etag: str | None = None) -> func.HttpResponse:
    return json_response(body, 201 if created else 200, etag=etag)


def _page_params(req: func.HttpRequest) -> tuple[str | None, str | None]:
    """`top` and `continuationToken` of a paged list (checked by the service)."""
    return req.params.get("top"), req.params.get("continuationToken")


# --- resources --------------------------------------------------------------------------------


@bp.route(route=RESOURCE, methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def resource_put(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import registry

    view, created, etag = registry.put_resource(
        wiring.directory_tables(), building, req.route_params["resource"], read_json(req),
        if_match=if_match(req),
    )  # fmt: skip
    return _created(view, created, etag)


@bp.route(route="buildings/{building}/resources", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def resources_list(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import registry

    return list_response(
        req,
        registry.list_resources(wiring.directory_tables(), building, *_page_params(req)),
    )


@bp.route(route=RESOURCE, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def resource_get(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import registry

    view, etag = registry.read_resource(
        wiring.directory_tables(), building, req.route_params["resource"]
    )
    return json_response(view, etag=etag)


@bp.route(route=RESOURCE, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def resource_delete(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.mapping import service as mapping

    mapping.delete_resource(
        wiring.mapping_deps(), building, req.route_params["resource"], if_match=if_match(req)
    )
    return func.HttpResponse(status_code=204)


# --- companies --------------------------------------------------------------------------------


@bp.route(route=COMPANY, methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def company_put(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import companies

    view, created = companies.put_company(
        wiring.directory_tables(), building, req.route_params["company"], read_json(req)
    )
    return _created(view, created)


@bp.route(route="buildings/{building}/companies", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def companies_list(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import companies

    return list_response(
        req, companies.list_companies(wiring.directory_tables(), building, *_page_params(req))
    )


@bp.route(route=COMPANY, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def company_get(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import companies

    return json_response(
        companies.get_company(wiring.directory_tables(), building, req.route_params["company"])
    )


@bp.route(route=COMPANY, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def company_delete(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import companies

    companies.delete_company(wiring.directory_tables(), building, req.route_params["company"])
    return func.HttpResponse(status_code=204)


# --- users ------------------------------------------------------------------------------------


@bp.route(route=USER, methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def user_put(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    view, created = people.put_user(
        wiring.directory_tables(), building, req.route_params["email"], read_json(req)
    )
    return _created(view, created)


@bp.route(route=USER, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def user_get(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    return json_response(
        people.get_user(wiring.directory_tables(), building, req.route_params["email"])
    )


@bp.route(route=USER, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def user_delete(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    people.delete_user(wiring.directory_tables(), building, req.route_params["email"])
    return func.HttpResponse(status_code=204)


@bp.route(route="buildings/{building}/users", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def users_list(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    return list_response(
        req, people.list_users(wiring.directory_tables(), building, *_page_params(req))
    )


@bp.route(route="buildings/{building}/users:import", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def users_import(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.core.jsonbody import IMPORT_MAX_BYTES, check_size
    from shared.directory import userimport

    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "text/csv":
        check_size(req.get_body(), IMPORT_MAX_BYTES)
        records = userimport.parse_users_csv(req.get_body())
    elif content_type in ("", "application/json"):
        records = read_json(req, expect=list, max_bytes=IMPORT_MAX_BYTES)
    else:
        raise ValidationFailed([FieldError("Content-Type", "must be text/csv or application/json")])
    report = userimport.import_users(wiring.directory_tables(), building, records)
    body = {"imported": report.imported, "rejected": report.rejected}
    if not report.rejected:
        return json_response(body)
    # All or nothing: a problem (422) that also carries the per-row report.
    detail = f"{len(report.rejected)} rows rejected; nothing was imported"
    status, problem_body = problem(Unprocessable(detail, reason="rows_rejected"))
    return func.HttpResponse(
        json.dumps({**problem_body, **body}), status_code=status, mimetype=PROBLEM_JSON
    )


# --- settings ---------------------------------------------------------------------------------


@bp.route(route="buildings/{building}/settings", methods=["PUT"], auth_level=ANONYMOUS)
@handle_errors
def settings_put(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    view, etag = people.put_building_settings(
        wiring.directory_tables(), building, read_json(req), if_match=if_match(req),
        forget_subjects=wiring.busy_store().forget_subjects,
    )  # fmt: skip
    return json_response(view, etag=etag)


@bp.route(route="buildings/{building}/settings", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def settings_get(req: func.HttpRequest) -> func.HttpResponse:
    building = _building(req)
    from shared import wiring
    from shared.directory import people

    view, etag = people.read_building_settings(wiring.directory_tables(), building)
    return json_response(view, etag=etag)
