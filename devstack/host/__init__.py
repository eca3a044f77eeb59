"""A local Azure Functions host for Python v2-model apps (no Core Tools needed).

Runs an unmodified `azure.functions.FunctionApp`: HTTP triggers (route templates, methods, auth
levels with keys), timer triggers (NCRONTAB, TimeSpan, %SETTING%), queue triggers and queue output
bindings on Azure Storage queues (Azurite), concurrently, logging each invocation.

- Command line: `python -m devstack.host --app function_app:app --port 7071` (see __main__.py).
- As a child process: `start_host_process(...)` → `HostProcess` with `.base_url`, `.master_key`,
  `.function_key`, `.stop()` (process.py).
- In this process: `start_host_in_thread(app, app_dir=...)` → `HostThread` (server.py).

Module map: config (host.json, settings, keys), functions (indexing), routes (route templates),
schedules (NCRONTAB/TimeSpan), invoker (running one invocation), http, queues, timers, server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.host.config import HostConfigError, HostKeys
from devstack.host.process import HostProcess, start_host_process

if TYPE_CHECKING:
    from devstack.host.server import FunctionsHost, HostThread, start_host_in_thread

__all__ = [
    "FunctionsHost",
    "HostConfigError",
    "HostKeys",
    "HostProcess",
    "HostThread",
    "start_host_in_thread",
    "start_host_process",
]


def __getattr__(name: str) -> Any:
    # The in-process host pulls in uvicorn, Starlette and the Azure SDKs; load it only when used,
    # so that `python -m devstack.host` imports them after applying the app's settings.
    if name in ("FunctionsHost", "HostThread", "start_host_in_thread"):
        from devstack.host import server

        return getattr(server, name)
    raise AttributeError(name)
