"""Builds the emulator's two HTTPS apps from its parts and serves them with uvicorn.

Main port: identity (`/{tenant}/...`), Graph (`/v1.0/...`, if the Graph part exists) and the
control API (`/_emulator/...`). Second port: Key Vault (its clients insist on a vault host whose
root path is the vault). Both share one `Emulator` (state, clock) in one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from devstack.m365 import control, identity, keyvault
from devstack.m365.state import Emulator
from devstack.procs import tcp_server_socket, write_ready_file
from devstack.tls import ensure_tls

log = logging.getLogger(__name__)

GRAPH_MODULE = "devstack.m365.graph"


def graph_part() -> ModuleType | None:
    """The Graph part, if it is installed in this tree.

    Guarded only by "does the package exist": a genuine import error inside Graph code must fail
    loudly rather than silently start an emulator without Graph.
    """
    spec = importlib.util.find_spec(GRAPH_MODULE)
    if spec is None or spec.origin is None:  # absent, or a bare directory without __init__.py
        return None
    return importlib.import_module(GRAPH_MODULE)


def build_apps(emulator: Emulator, *, with_graph: bool = True) -> tuple[Starlette, Starlette]:
    """(main app, Key Vault app). Call after `emulator.set_base_urls`."""
    graph = graph_part() if with_graph else None
    if graph is not None and hasattr(graph, "create_state"):
        emulator.graph = graph.create_state(emulator)
    routes: list[BaseRoute] = [*control.build_routes(emulator)]
    routes += identity.build_control_routes(emulator)
    if graph is not None and hasattr(graph, "build_routes"):
        if hasattr(graph, "build_control_routes"):
            routes.append(Mount("/_emulator/graph", routes=graph.build_control_routes(emulator)))
        routes.append(Mount("/v1.0", routes=graph.build_routes(emulator)))
        if hasattr(graph, "build_root_control_routes"):
            # DEVSTACK.md fixes POST /_emulator/users/{upn}/events and GET /_emulator/stats. Mounted
            # after the specific /_emulator routes (a Mount would hide those behind it) and before
            # the identity routes, whose /{tenant}/... would otherwise swallow /_emulator/....
            routes.append(Mount("/_emulator", routes=graph.build_root_control_routes(emulator)))
    # Identity last: its `/{tenant}/...` patterns would otherwise shadow the mounts above.
    routes += identity.build_routes(emulator)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if graph is not None and hasattr(graph, "startup"):
            await graph.startup(emulator)
        try:
            yield
        finally:
            if graph is not None and hasattr(graph, "shutdown"):
                await graph.shutdown(emulator)

    main = Starlette(routes=routes, lifespan=lifespan)
    vault = keyvault.build_app(emulator)
    return main, vault


class _Server(uvicorn.Server):
    """uvicorn server whose signals are handled once for both ports (see `serve`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Idle keep-alive connections are dropped at once. Over TLS a polite close waits for the
        # peer's close_notify, which an idle pooled client never sends, so every stop used to sit
        # out the whole grace period; requests still in flight keep it (uvicorn's own shutdown).
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)


def bind(host: str, port: int) -> socket.socket:
    sock = tcp_server_socket(host, port)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(
    *,
    tls_dir: Path,
    port: int = 0,
    kv_port: int = 0,
    host: str = "127.0.0.1",
    ready_file: Path | None = None,
    scenario: str | None = None,
    auto_consent: bool = True,
    key_vault_tenant: str | None = None,
    log_level: str = "info",
    with_graph: bool = True,
) -> None:
    tls = ensure_tls(tls_dir)
    main_sock, kv_sock = bind(host, port), bind(host, kv_port)
    emulator = Emulator.create(auto_consent=auto_consent, key_vault_tenant=key_vault_tenant)
    emulator.set_base_urls(
        f"https://{host}:{main_sock.getsockname()[1]}",
        f"https://{host}:{kv_sock.getsockname()[1]}/",
    )
    main_app, vault_app = build_apps(emulator, with_graph=with_graph)
    seed_result = control.seed(emulator, scenario) if scenario else None

    def server(app: Starlette) -> _Server:
        return _Server(
            uvicorn.Config(
                app,
                ssl_certfile=str(tls.server_cert),
                ssl_keyfile=str(tls.server_key),
                log_level=log_level,
                # Query strings carry authorization codes: never let uvicorn log request lines.
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
            )
        )

    servers = [server(main_app), server(vault_app)]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    async def announce() -> None:
        while not all(s.started for s in servers):
            if any(s.should_exit for s in servers):
                return
            await asyncio.sleep(0.02)
        info: dict[str, Any] = {
            "baseUrl": emulator.base_url,
            "keyVaultUrl": emulator.key_vault_url,
            "caBundle": str(tls.ca_cert.resolve()),
            "pid": os.getpid(),
            "seed": seed_result,
        }
        if ready_file is not None:
            write_ready_file(ready_file, info)
        log.info("emulator ready at %s (Key Vault %s)", emulator.base_url, emulator.key_vault_url)

    async def run(s: _Server, sock: socket.socket) -> None:
        try:
            await s.serve(sockets=[sock])
        finally:
            stop()  # one port down (or failed to start) means the emulator is down

    results = await asyncio.gather(
        run(servers[0], main_sock),
        run(servers[1], kv_sock),
        announce(),
        return_exceptions=True,
    )
    stop()
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        raise errors[0]
