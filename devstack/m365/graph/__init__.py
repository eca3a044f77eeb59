"""Microsoft Graph v1.0 emulator (calendar subset) — the Graph part of the M365 emulator.

The server (devstack/m365/server.py) mounts `build_routes` under `/v1.0`, `build_control_routes`
under `/_emulator/graph`, `build_root_control_routes` under `/_emulator`, creates the state with
`create_state` and calls `startup` / `shutdown` in its lifespan. See README "Graph emulator".
"""

from __future__ import annotations

import json
import os
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import attendant
from .control import build_control_routes, build_root_control_routes
from .messages import JSON_TYPE, Req, parse_query
from .routes import Router
from .store import GraphState

__all__ = [
    "build_control_routes",
    "build_root_control_routes",
    "build_routes",
    "create_state",
    "shutdown",
    "startup",
]


def create_state(emulator: Any) -> GraphState:
    state = GraphState(emulator)
    attendant.install(state)
    # Start-time settings (the control API can change them later).
    loopback = os.environ.get("GRAPH_EMULATOR_ALLOW_HTTP_LOOPBACK")
    if loopback is not None:
        state.config.allow_http_loopback = loopback.lower() in ("1", "true", "yes")
    return state


def build_routes(emulator: Any) -> list[BaseRoute]:
    router = Router(emulator.graph)

    async def endpoint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        req = Req(
            method=request.method.upper(),
            path="/" + request.path_params.get("path", ""),
            query=parse_query(request.url.query),
            headers=headers,
            body=await request.body(),
        )
        reply = await router.dispatch(req)
        if reply.body is None:
            return Response(status_code=reply.status, headers=reply.headers)
        content = json.dumps(reply.body).encode()
        out = dict(reply.headers)
        out["Content-Type"] = JSON_TYPE
        return Response(content, status_code=reply.status, headers=out)

    return [Route("/{path:path}", endpoint, methods=["GET", "POST", "PATCH", "PUT", "DELETE"])]


async def startup(emulator: Any) -> None:
    await emulator.graph.notifier.start()


async def shutdown(emulator: Any) -> None:
    await emulator.graph.notifier.stop()
