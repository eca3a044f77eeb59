"""Indexing: importing function_app lists every function, and each binding names a parameter.

This is what the Functions host does on deploy; a failure here means functions would vanish.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys

import azure.functions as func

from shared.api.openapi import openapi_document


def _functions() -> list[func.FunctionBuilder]:
    module = importlib.import_module("function_app")
    app = module.app
    app.functions_bindings = None  # get_functions() refuses a second call otherwise
    return app.get_functions()


def test_every_binding_is_a_parameter() -> None:
    functions = _functions()
    assert functions, "no functions indexed"
    names = [f.get_function_name() for f in functions]
    assert len(names) == len(set(names)), "duplicate function names"
    for f in functions:
        params = set(inspect.signature(f.get_user_function()).parameters)
        for binding in f.get_bindings():
            if binding.name == "$return":
                continue
            assert binding.name in params, (
                f"{f.get_function_name()}: {binding.name} not in {params}"
            )
        assert f.get_trigger() is not None, f.get_function_name()


def test_every_http_route_states_anonymous_and_leaves_auth_to_the_api() -> None:
    # function_app.py sets no app-wide level, so a route that omits its own is FUNCTION here.
    levels = {
        f.get_function_name(): f.get_trigger().auth_level
        for f in _functions()
        if f.get_trigger().get_binding_name() == "httpTrigger"
    }
    assert levels and set(levels.values()) == {func.AuthLevel.ANONYMOUS}, levels


def test_every_http_route_is_in_openapi_and_back() -> None:
    routes: set[tuple[str, str]] = set()
    for f in _functions():
        trigger = f.get_trigger()
        if trigger.get_binding_name() != "httpTrigger":
            continue
        for method in trigger.methods or ["GET"]:
            # A catch-all `{*path}` is an ordinary `{path}` parameter in OpenAPI.
            route = "/" + trigger.route.replace("{*", "{")
            routes.add((str(getattr(method, "value", method)).lower(), route))
    documented = {
        (method, path) for path, ops in openapi_document()["paths"].items() for method in ops
    }
    assert routes == documented


def test_import_reads_no_settings_and_opens_no_sockets() -> None:
    # A fresh interpreter with no settings at all must import the app: nothing runs at import time.
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network at import time')\n"
        "socket.socket.connect = refuse\n"
        "import function_app\n"
        "print(len(function_app.app.get_functions()))\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("BB_", "AzureWebJobs", "AZURE_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert int(out.stdout.strip()) >= 2
