"""Operational routes: health and the OpenAPI description (both anonymous)."""

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
