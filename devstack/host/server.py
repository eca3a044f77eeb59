"""The host itself: one asyncio loop runs the HTTP server, the timers and the queue listeners.

Why asyncio rather than a thread per trigger: everything the host does between invocations is
waiting (for a request, a schedule, a queue poll), which one loop does cheaply and can stop all at
once on shutdown. The blocking parts run elsewhere: sync user functions in the invocation thread
pool (invoker.py), storage SDK calls in a small I/O pool (queues.py).

Shutdown (SIGINT/SIGTERM, or `request_stop()` from another thread): timers and listeners stop
taking new work at once, uvicorn stops accepting connections, and in-flight invocations get
`shutdown_grace` seconds to finish. The process exits 0. uvicorn on its own re-raises the signal
after a graceful stop (the exit status would say "killed by SIGTERM"), hence the small Server
subclass that handles signals itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Mapping
from pathlib import Path
from typing import Any

import azure.functions as func
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

from devstack.host.config import HostConfig, HostKeys, load_host_config
from devstack.host.functions import (
    EventHubTriggerSpec,
    FunctionSpec,
    HttpTriggerSpec,
    QueueTriggerSpec,
    TimerTriggerSpec,
    index_functions,
)
from devstack.host.http import HttpFrontend
from devstack.host.invoker import Invoker
from devstack.host.queues import QueueListener, QueueService, resolve_connection
from devstack.host.timers import TimerRunner
from devstack.procs import tcp_server_socket, write_ready_file

logger = logging.getLogger("devstack.host")


class _Server(uvicorn.Server):
    """uvicorn's server with our signal handling: stop gracefully, exit normally."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_stop = on_stop

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # an in-process host in a thread: its owner stops it
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _signalled(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second Ctrl-C: stop waiting for in-flight work
        self.should_exit = True
        self._on_stop()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class FunctionsHost:
    """Runs one indexed `func.FunctionApp`: construct (indexes, fails loudly), then `serve()`."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        app_dir: Path,
        keys: HostKeys,
        config: HostConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 7071,
        ready_file: Path | None = None,
        shutdown_grace: float = 5.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.app_dir = app_dir.resolve()
        self.config = config or load_host_config(self.app_dir, self.environ)
        self.keys = keys
        self.host = host
        self.port = port
        self.ready_file = ready_file
        self.shutdown_grace = shutdown_grace
        self.functions: list[FunctionSpec] = index_functions(app, self.environ)
        # Unresolvable storage connections are configuration errors: refuse to start.
        for spec in self.functions:
            if isinstance(spec.trigger, QueueTriggerSpec):
                resolve_connection(spec.trigger.connection, self.environ)
            for output in spec.outputs:
                if output.connection is not None:
                    resolve_connection(output.connection, self.environ)
        self.host_id = uuid.uuid4().hex[:16]
        self.ready = threading.Event()
        self.finished_cleanly = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._stopping = asyncio.Event()
        self._listeners: list[QueueListener] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queues = QueueService(self.environ, self.config.queues)
        self._invoker = Invoker(str(self.app_dir), self._queues.send_outputs)

    @property
    def base_url(self) -> str:
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        return f"http://{_url_host(self.host)}:{self.port}{prefix}"

    # -- lifecycle -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the host to stop; safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        self._stopping.set()
        for listener in self._listeners:
            listener.wake()
        if self._server is not None:
            self._server.should_exit = True

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        for spec in self.functions:
            if isinstance(spec.trigger, QueueTriggerSpec):
                listener = QueueListener(spec, self._queues, self._invoker, self._stopping)
                self._listeners.append(listener)
                self._spawn(listener.run())
            elif isinstance(spec.trigger, TimerTriggerSpec):
                self._spawn(TimerRunner(spec, self._invoker, self._stopping).run())
        try:
            yield
        finally:
            await self._drain()

    async def _drain(self) -> None:
        self._begin_stop()
        pending: set[asyncio.Task[Any]] = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=self.shutdown_grace)
        if pending:
            logger.warning("Cancelling %d background task(s) still running", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        busy = self._invoker.threads_busy
        if busy:
            # Threads cannot be cancelled; the caller decides whether to wait for them.
            logger.warning("%d sync invocation(s) still running after the grace period", busy)
            self.finished_cleanly = False
        self._invoker.shutdown()
        self._queues.close()

    def _bind(self) -> socket.socket:
        # Binding here, before serving, gives the real port when asked for port 0.
        sock = tcp_server_socket(self.host, self.port)
        self.port = int(sock.getsockname()[1])
        return sock

    def describe(self) -> list[str]:
        """One line per function, like `func start` prints."""
        lines = []
        for spec in self.functions:
            trigger = spec.trigger
            if isinstance(trigger, HttpTriggerSpec):
                methods = ",".join(sorted(trigger.methods)) if trigger.methods else "ALL"
                where = (
                    f"[{methods}] {self.base_url}/{trigger.route.template} ({trigger.auth_level})"
                )
            elif isinstance(trigger, TimerTriggerSpec):
                where = f"timerTrigger '{trigger.schedule.expression}'"
            elif isinstance(trigger, EventHubTriggerSpec):
                where = f"eventHubTrigger {trigger.event_hub_name} (not listened to here)"
            else:
                where = f"queueTrigger {trigger.queue_name}"
            lines.append(f"{spec.name}: {where}")
        return lines

    async def serve(self) -> None:
        """Serve until stopped (signal or `request_stop()`)."""
        self._loop = asyncio.get_running_loop()
        sock = self._bind()
        frontend = HttpFrontend(
            self.functions,
            self._invoker,
            self.keys,
            self.config.route_prefix,
            self._spawn,
            self.host_id,
        )
        lifespan = Starlette(lifespan=self._lifespan)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            # Every HTTP request goes to the frontend, whatever its path: a Starlette route
            # ("/{path:path}", a regex without DOTALL) answered a path with an encoded line break
            # with its own text/plain 404 instead of our routing's answer.
            if scope["type"] != "http":
                await lifespan(scope, receive, send)
                return
            response = await frontend.handle(Request(scope, receive))
            await response(scope, receive, send)

        config = uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,  # the host's logging setup stays in charge
            access_log=False,  # every invocation is logged by the invoker instead
            timeout_graceful_shutdown=max(1, round(self.shutdown_grace)),
        )
        self._server = _Server(config, self._begin_stop)
        serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        if self._server.started:
            logger.info("Functions host listening on %s", self.base_url)
            for line in self.describe():
                logger.info("  %s", line)
            if self.ready_file is not None:
                write_ready_file(self.ready_file, {"baseUrl": self.base_url, "pid": os.getpid()})
            self.ready.set()
        await serving


class HostThread:
    """A host serving from a background thread of this process (for tests of an app object)."""

    def __init__(self, host: FunctionsHost) -> None:
        self.host = host
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="functions-host", daemon=True)

    @property
    def base_url(self) -> str:
        return self.host.base_url

    @property
    def keys(self) -> HostKeys:
        return self.host.keys

    def _run(self) -> None:
        try:
            asyncio.run(self.host.serve())
        except BaseException as exc:  # SystemExit from uvicorn on a failed start, too
            self.error = exc
        finally:
            self.host.ready.set()  # wake start() even when serving failed

    def start(self, timeout: float = 30.0) -> HostThread:
        self._thread.start()
        if not self.host.ready.wait(timeout) or self.error is not None:
            self.stop()
            raise RuntimeError(f"the in-process Functions host did not start: {self.error!r}")
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.host.request_stop()
        self._thread.join(timeout)

    def __enter__(self) -> HostThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_host_in_thread(
    app: func.FunctionApp,
    *,
    app_dir: Path,
    keys: HostKeys | None = None,
    port: int = 0,
    environ: Mapping[str, str] | None = None,
    shutdown_grace: float = 5.0,
) -> HostThread:
    """Serve an already-imported app object in this process; `.base_url`, `.keys`, `.stop()`.

    The app reads settings from `environ` (default `os.environ`) as it would in Azure; set them
    before importing the app.
    """
    host = FunctionsHost(
        app,
        app_dir=app_dir,
        keys=keys or HostKeys.generate(),
        port=port,
        environ=environ,
        shutdown_grace=shutdown_grace,
    )
    return HostThread(host).start()
