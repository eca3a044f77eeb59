"""Operational routes: health, the OpenAPI description and CORS preflights (all anonymous)."""

from __future__ import annotations

import azure.functions as func

from functions.http import handle_errors, json_response

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared import wiring
    from shared.api.health import run_checks

    report = run_checks(wiring.health_checks())
    # 200 either way: the body says what is degraded; load balancers read `status`.
    return json_response(report)


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.openapi import openapi_document

    return json_response(openapi_document())


# Every OPTIONS request, on any path: the most general route, so it never shadows another, and
# OPTIONS only, so it never takes another method (devstack/host and the Azure host both route by
# method first). Anonymous: a browser's preflight carries no token. Not in the OpenAPI description
# (it describes resources; CORS is described in docs/API.md); tests/unit/test_function_app.py.
PREFLIGHT_ROUTE = "{*path}"


@bp.route(route=PREFLIGHT_ROUTE, methods=["OPTIONS"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def cors_preflight(req: func.HttpRequest) -> func.HttpResponse:
    # 204 whatever the origin: handle_errors adds the CORS headers of an allowed one (none for a
    # refused one), as the Functions host's own CORS middleware answers (docs/DESIGN.md, "CORS").
    return func.HttpResponse(status_code=204)
