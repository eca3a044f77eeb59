"""HTTP side of the host: routes requests to HTTP-triggered functions, plus a few admin APIs.

Request handling follows the Functions host:
1. The path must start with the route prefix (host.json `extensions.http.routePrefix`, "api").
2. Every function whose route template matches is a candidate; none → 404. Candidates whose
   methods do not include the request's → 405 with `Allow` when none is left.
3. The most specific template wins (see routes.py).
4. Auth level: `anonymous` needs nothing; `function` takes a function key or the master key;
   `admin` only the master key. The key comes as `?code=` or the `x-functions-key` header. A
   missing or wrong key → 401 with an empty body. Keys are compared in constant time.
5. The request becomes a `func.HttpRequest` (query values and repeated headers joined with ",",
   as the host does), the function runs, and its `func.HttpResponse` (or str → 200 text/plain,
   the only other type the worker accepts) becomes the response; Content-Type is built from
   mimetype/charset the way the worker builds it. No output → 204. A failure → 500 with an empty
   body (the error is logged, never sent).

Admin APIs (master key, as in Azure): `GET /admin/host/status`, `GET /admin/functions`, and
`POST /admin/functions/{name}` with `{"input": "..."}` to run a timer or queue function now
(202; for a queue function `input` is the message body) — handy in demos and e2e tests.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import azure.functions as func
from azure.functions import EventHubEvent
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devstack.host.config import HostKeys
from devstack.host.functions import (
    RETURN,
    EventHubTriggerSpec,
    FunctionSpec,
    HttpTriggerSpec,
    QueueTriggerSpec,
)
from devstack.host.invoker import Invoker
from devstack.host.routes import split_path

logger = logging.getLogger("devstack.host")


# Starts a background invocation the host tracks for shutdown.
Spawner = Callable[[Coroutine[Any, Any, Any]], None]


def _presented_key(request: Request) -> str | None:
    return request.headers.get("x-functions-key") or request.query_params.get("code")


def _matches_any(presented: str, keys: list[str]) -> bool:
    # Compare against every key, without stopping at the first hit, so timing says nothing.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented.encode(), key.encode())
    return found


def authorized(request: Request, level: str, keys: HostKeys) -> bool:
    if level == "anonymous":
        return True
    presented = _presented_key(request)
    if not presented:
        return False
    allowed = [keys.master_key]
    if level != "admin":
        allowed += list(keys.function_keys.values())
    return _matches_any(presented, allowed)


def _joined(pairs: list[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for key, value in pairs:
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def to_function_request(
    request: Request, route_params: Mapping[str, str], body: bytes
) -> func.HttpRequest:
    return func.HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=_joined([(k.lower(), v) for k, v in request.headers.items()]),
        params=_joined(list(request.query_params.multi_items())),
        route_params=dict(route_params),
        body=body,
    )


def to_response(value: Any, function_name: str) -> Response:
    """Map what the function produced for its HTTP output, as the worker and host do."""
    if value is None:
        return Response(status_code=204)
    if isinstance(value, str):
        return Response(value.encode("utf-8"), 200, media_type="text/plain; charset=utf-8")
    if not isinstance(value, func.HttpResponse):
        logger.error(
            "Function %s returned %s; an HTTP output takes func.HttpResponse or str",
            function_name, type(value).__name__,
        )  # fmt: skip
        return Response(status_code=500)
    response = Response(value.get_body(), value.status_code)
    pairs = [(k, v) for k, v in value.headers.items() if k.lower() != "content-length"]
    if not any(k.lower() == "content-type" for k, _ in pairs):
        mimetype = value.mimetype
        content_type = (
            f"{mimetype}; charset={value.charset}" if mimetype.startswith("text/") else mimetype
        )
        pairs.append(("content-type", content_type))
    for key, header_value in pairs:
        response.headers.append(key, header_value)
    return response


class HttpFrontend:
    def __init__(
        self,
        functions: list[FunctionSpec],
        invoker: Invoker,
        keys: HostKeys,
        route_prefix: str,
        spawn: Spawner,
        host_id: str,
    ) -> None:
        self._functions = {f.name.lower(): f for f in functions}
        # Stable sort: equal precedence keeps registration order.
        self._http = sorted(
            (f for f in functions if isinstance(f.trigger, HttpTriggerSpec)),
            key=lambda f: (
                f.trigger.route.precedence if isinstance(f.trigger, HttpTriggerSpec) else ()
            ),
        )
        self._invoker = invoker
        self._keys = keys
        self._prefix = split_path(route_prefix)
        self._spawn = spawn
        self._host_id = host_id

    async def handle(self, request: Request) -> Response:
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        segments = split_path(raw_path.decode("latin-1"))
        if segments[:1] and segments[0].lower() == "admin":
            return await self._admin(request, segments[1:])
        if [s.lower() for s in segments[: len(self._prefix)]] != [p.lower() for p in self._prefix]:
            return Response(status_code=404)
        return await self._function(request, segments[len(self._prefix) :])

    async def _function(self, request: Request, segments: list[str]) -> Response:
        matches: list[tuple[FunctionSpec, HttpTriggerSpec, dict[str, str]]] = []
        for spec in self._http:
            assert isinstance(spec.trigger, HttpTriggerSpec)
            params = spec.trigger.route.match_segments(segments)
            if params is not None:
                matches.append((spec, spec.trigger, params))
        if not matches:
            return Response(status_code=404)
        allowed = [m for m in matches if m[1].methods is None or request.method in m[1].methods]
        if not allowed:
            methods = sorted({method for _, t, _ in matches for method in t.methods or ()})
            return Response(status_code=405, headers={"Allow": ", ".join(methods)})
        spec, trigger, params = allowed[0]
        if not authorized(request, trigger.auth_level, self._keys):
            return Response(status_code=401)
        body = await request.body()
        result = await self._invoker.invoke(
            spec,
            to_function_request(request, params, body),
            f", {request.method} {request.url.path}",
        )
        if not result.ok:
            return Response(status_code=500)
        http_output = next((o for o in spec.outputs if o.type == "http"), None)
        # Without an HTTP output binding the return value goes nowhere (the host answers 204).
        value = result.outputs.get(http_output.name) if http_output else None
        return to_response(value, spec.name)

    async def _admin(self, request: Request, segments: list[str]) -> Response:
        if not authorized(request, "admin", self._keys):
            return Response(status_code=401)
        path = "/".join(s.lower() for s in segments)
        if path == "host/status" and request.method == "GET":
            return JSONResponse({"id": self._host_id, "state": "Running", "version": "devstack"})
        if path == "functions" and request.method == "GET":
            return JSONResponse([self._describe(f) for f in self._functions.values()])
        if len(segments) == 2 and segments[0].lower() == "functions" and request.method == "POST":
            return await self._run_function(request, segments[1])
        return Response(status_code=404)

    @staticmethod
    def _describe(spec: FunctionSpec) -> dict[str, Any]:
        info: dict[str, Any] = {"name": spec.name, "trigger": spec.trigger_type}
        trigger = spec.trigger
        if isinstance(trigger, HttpTriggerSpec):
            info |= {"route": trigger.route.template, "authLevel": trigger.auth_level}
            info["methods"] = sorted(trigger.methods) if trigger.methods else None
        elif isinstance(trigger, QueueTriggerSpec):
            info["queueName"] = trigger.queue_name
        elif isinstance(trigger, EventHubTriggerSpec):
            info["eventHubName"] = trigger.event_hub_name
        else:
            info["schedule"] = trigger.schedule.expression
        info["outputs"] = [o.name if o.name != RETURN else "$return" for o in spec.outputs]
        return info

    async def _run_function(self, request: Request, name: str) -> Response:
        spec = self._functions.get(name.lower())
        if spec is None:
            return Response(status_code=404)
        if isinstance(spec.trigger, HttpTriggerSpec):
            return JSONResponse({"error": "call an HTTP function through its route"}, 400)
        try:
            payload = json.loads(await request.body() or b"{}")
            text = str(payload.get("input", "")) if isinstance(payload, dict) else ""
        except ValueError:
            return JSONResponse({"error": 'body must be JSON: {"input": "..."}'}, 400)
        trigger_value: Any
        if isinstance(spec.trigger, QueueTriggerSpec):
            trigger_value = QueueMessage(  # type: ignore[no-untyped-call]  # unannotated upstream
                id=str(uuid.uuid4()), body=text, dequeue_count=1
            )
        elif isinstance(spec.trigger, EventHubTriggerSpec):
            event = EventHubEvent(body=text.encode("utf-8"))
            trigger_value = [event] if spec.trigger.many else event
        else:
            trigger_value = TimerRequest(past_due=False)
        self._spawn(self._invoker.invoke(spec, trigger_value, ", via admin API"))
        return Response(status_code=202)
