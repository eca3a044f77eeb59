"""Helpers shared by the HTTP triggers: JSON and problem+json responses, errors mapped in one place."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import azure.functions as func

from shared.core.errors import (
    PROBLEM_JSON,
    BookingBridgeError,
    DependencyError,
    FieldError,
    GraphError,
    MethodNotAllowed,
    ValidationFailed,
    problem,
)
from shared.core.etags import HEADER as IF_MATCH
from shared.core.etags import IfMatch, parse_if_match
from shared.core.jsonbody import MAX_BYTES, parse_json
from shared.core.paging import TOKEN_FIELD, Listed
from shared.core.settings import SettingsError

if TYPE_CHECKING:
    # Only for annotations: importing shared.api.auth (and shared.wiring, in caller_for) pulls in
    # PyJWT and cryptography, which a cold start should pay on the first authenticated request.
    from shared.api.auth import Caller

logger = logging.getLogger(__name__)
API_PREFIX = "/api"  # host.json extensions.http.routePrefix


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None, *, etag: str | None = None
) -> func.HttpResponse:
    """`body` as JSON; `etag` (shared/core/etags.py) becomes the ETag header."""
    if etag:
        headers = {**(headers or {}), "ETag": etag}
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        mimetype="application/json",
        headers=headers,
    )


def if_match(req: func.HttpRequest) -> IfMatch | None:
    """The request's If-Match precondition (None: none given, the write is unconditional)."""
    return parse_if_match(req.headers.get(IF_MATCH))


def list_response(req: func.HttpRequest, listed: Listed[Any]) -> func.HttpResponse:
    """The list envelope of every collection route: `{"value": [...], "nextLink": URL | null}`."""
    return json_response(
        {"value": list(listed.value), "nextLink": next_link(req.url, listed.continuation_token)}
    )


def next_link(url: str, token: str | None) -> str | None:
    """This request's URL (same query, so the same `top` and filters) with the next page's
    `continuationToken`, or None on the last page."""
    if token is None:
        return None
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != TOKEN_FIELD]
    return urlunsplit(parts._replace(query=urlencode([*query, (TOKEN_FIELD, token)])))


def problem_response(
    err: BookingBridgeError,
    req: func.HttpRequest | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> func.HttpResponse:
    """The problem+json response; `extra`: members a route adds (a bulk route's rejected rows)."""
    status, body = problem(err)
    body.update(extra or {})
    headers: dict[str, str] = {}
    retry_after = retry_after_seconds(err)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if status == 401:
        # RFC 6750 §3: a 401 says which scheme to use, and when a token was sent, that it failed.
        presented = req is not None and bool(req.headers.get("Authorization"))
        challenge = 'Bearer realm="BookingBridge"'
        headers["WWW-Authenticate"] = challenge + (', error="invalid_token"' if presented else "")
    if isinstance(err, MethodNotAllowed):
        headers["Allow"] = err.allow
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype=PROBLEM_JSON, headers=headers
    )


RETRY_AFTER_SECONDS = 5  # a transient failure of storage, Key Vault or the identity platform


def retry_after_seconds(err: BookingBridgeError) -> int | None:
    """When a caller may retry a 503 (RFC 9110 §10.2.3): after what Graph asked of us (its 429's
    Retry-After), else a few seconds; None when retrying will not help (a permanent failure)."""
    if not isinstance(err, DependencyError) or not err.transient:
        return None
    if isinstance(err, GraphError) and err.failure.retry_after:
        return max(1, math.ceil(err.failure.retry_after))
    return RETRY_AFTER_SECONDS


def handle_errors(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Turn our errors into problem+json; anything unexpected into a generic 500 (logged, not shown).
    A cross-origin request's answer, error or not, gets its CORS headers (`with_cors`)."""

    @functools.wraps(handler)  # keeps the name and signature the Functions worker inspects
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        return with_cors(req, _answer(handler, req))

    return wrapper


def _answer(
    handler: Callable[[func.HttpRequest], func.HttpResponse], req: func.HttpRequest
) -> func.HttpResponse:
    """The handler's response; our errors as problem+json, anything else a generic 500."""
    try:
        check_query(req)
        return handler(req)
    except BookingBridgeError as err:
        if err.status >= 500:
            logger.error("%s failed: %s %s", handler.__name__, type(err).__name__, err.log_detail)
        return problem_response(err, req)
    except SettingsError as err:
        logger.error("%s: %s", handler.__name__, err)
        return problem_response(BookingBridgeError("Service misconfigured"), req)
    except Exception:
        logger.exception("%s failed unexpectedly", handler.__name__)
        return problem_response(BookingBridgeError(), req)


def with_cors(req: func.HttpRequest, response: func.HttpResponse) -> func.HttpResponse:
    """Add the CORS headers (shared/api/cors.py) to a response, errors included: a browser hides
    a 4xx body from a portal whose origin it does not see allowed."""
    from shared.api import cors
    from shared.core.settings import get_settings

    try:
        settings = get_settings()
    except SettingsError:
        return response  # already answered as misconfigured (or about to be): no CORS
    if cors.is_preflight(req.method, req.headers):
        added = cors.preflight_headers(settings, req.headers)
    else:
        added = cors.response_headers(settings, req.headers)
    for name, value in added.items():
        earlier = response.headers.get(name) if name == "Vary" else None
        response.headers[name] = f"{earlier}, {value}" if earlier else value
    return response


def check_query(req: func.HttpRequest) -> None:
    """Refuse query parameters the operation does not declare in the OpenAPI description (the one
    list of them), as unknown body fields are refused: a typo (`?stauts=`) must not silently
    return something else. Checked before the caller: the description is public anyway."""
    if not req.params:
        return  # the common case costs nothing (and loads no description)
    from shared.api.openapi import declared_query

    path = urlsplit(req.url).path
    declared = declared_query(
        req.method, path[len(API_PREFIX) :] if path.startswith(API_PREFIX) else path
    )
    if declared is None:
        return
    unknown = sorted(name for name in req.params if name not in declared)
    if unknown:
        raise ValidationFailed(
            [FieldError(name, "is not a parameter of this operation") for name in unknown]
        )


def caller_for(
    req: func.HttpRequest, building_id: str | None = None, *, must_exist: bool = True
) -> Caller:
    """Check a request in the order every authenticated route needs, before anything is read:

    1. the bearer token: 401; with a building, that the caller may reach it: 403 (first, so a
       caller without access learns nothing, not even which ids are well-formed);
    2. every id of the route (shared/core/validate.py `check_route`): 400 naming each bad one,
       before any storage call;
    3. with a building (unless `must_exist` is False: its own routes), that it exists: 404
       `building_not_found`. Only after 1, so a 404 never tells a caller about buildings it may
       not reach.
    """
    from shared import wiring
    from shared.core.validate import check_route

    caller = wiring.token_validator().caller(req.headers.get("Authorization"))
    if building_id is not None:
        caller.require_building(building_id)
    check_route(req.route_params)
    if building_id is not None and must_exist:
        wiring.buildings().require(building_id)
    return caller


def read_json(req: func.HttpRequest, *, expect: type = dict, max_bytes: int = MAX_BYTES) -> Any:
    """The request body as JSON of the expected top-level type, or a 400 naming the body (413 over
    `max_bytes`; nesting bounded by shared/core/jsonbody.py)."""
    body = parse_json(req.get_body(), max_bytes=max_bytes)
    if not isinstance(body, expect):
        kind = "an object" if expect is dict else "an array"
        raise ValidationFailed([FieldError("body", f"must be a JSON {kind}")])
    return body
