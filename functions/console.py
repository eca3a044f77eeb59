"""The admin console (issue 13): its sign-in configuration and its static files, all anonymous.

No data is served here: the console signs people in with MSAL Browser and calls the public API
with their tokens. Path checks, content types, caching and the security headers live in
shared/api/console.py.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from functions.http import handle_errors, json_response

bp = func.Blueprint()


@bp.route(route="console/config.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def console_config(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.console import NO_CACHE, config_document, security_headers
    from shared.core.settings import get_settings

    settings = get_settings()
    headers = {**security_headers(None), "Cache-Control": NO_CACHE}
    return json_response(config_document(settings), headers=headers)


@bp.route(route="console/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handle_errors
def console_file(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api.console import authority_origin, serve
    from shared.core.settings import SettingsError, get_settings

    try:
        authority: str | None = authority_origin(get_settings())
    except SettingsError:
        authority = None  # the page still loads; its sign-in will say what is wrong
    found = serve(
        req.route_params.get("path") or "",
        request_path=urlsplit(req.url).path,
        authority=authority,
    )
    # Content-Type is in the headers (with its charset): an explicit header wins over mimetype.
    return func.HttpResponse(found.body, status_code=found.status, headers=found.headers)
