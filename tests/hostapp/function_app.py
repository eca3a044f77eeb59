"""A small app that exercises every behaviour of the local Functions host (devstack/host).

It is run by tests/devstack/test_host.py through `python -m devstack.host --app-dir tests/hostapp`.
Functions that must be observed from outside (timers, queue triggers) append JSON lines to files
named by app settings (TICK_LOG, WORK_LOG), read at call time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
logger = logging.getLogger("hostapp")
_write_lock = threading.Lock()

# Read at import on purpose: proves the host puts --settings values into os.environ first.
GREETING_AT_IMPORT = os.environ.get("HOSTAPP_GREETING", "<unset at import>")


def _record(setting: str, entry: dict[str, object]) -> None:
    path = os.environ[setting]
    with _write_lock, open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def _json(data: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


# -- routes -------------------------------------------------------------------------------------


@app.route(route="items/{id:int}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "int", "route": dict(req.route_params)})


@app.route(route="items/{name:alpha}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "alpha", "route": dict(req.route_params)})


@app.route(route="items/special", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def item_special(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "literal", "route": dict(req.route_params)})


@app.route(route="lookup/{key:guid}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def lookup(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"kind": "guid", "route": dict(req.route_params)})


@app.route(route="pages/{page?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def pages(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"route": dict(req.route_params)})


@app.route(route="files/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"route": dict(req.route_params)})


@app.route(auth_level=func.AuthLevel.ANONYMOUS)  # no route: the function name is the route
def noroute(req: func.HttpRequest) -> str:
    return f"greeting={GREETING_AT_IMPORT}"  # a str return: 200 text/plain


@app.route(
    route="echo",
    methods=["POST", "PUT"],
    auth_level=func.AuthLevel.ANONYMOUS,
    trigger_arg_name="request",
)
def echo(request: func.HttpRequest) -> func.HttpResponse:  # trigger not named req
    logger.info("echo handled %s", request.method)
    payload = {
        "method": request.method,
        "url": request.url,
        "params": dict(request.params),
        "header": request.headers.get("x-test"),
        "body": request.get_body().decode(),
    }
    return func.HttpResponse(
        json.dumps(payload), status_code=201, mimetype="application/json", headers={"X-Echo": "yes"}
    )


@app.route(route="nothing", auth_level=func.AuthLevel.ANONYMOUS)
def nothing(req: func.HttpRequest) -> None:
    return None


# -- auth levels ------------------------------------------------------------------------------


@app.route(route="secure/function", methods=["GET"])  # the app default: FUNCTION
def secure_function(req: func.HttpRequest) -> str:
    return "function ok"


@app.route(route="secure/admin", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def secure_admin(req: func.HttpRequest) -> str:
    return "admin ok"


# -- concurrency and failures -----------------------------------------------------------------


@app.route(route="slow", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def slow(req: func.HttpRequest) -> str:
    began = time.time()
    _record("SLOW_LOG", {"started": began})  # so a test knows the request is in flight
    time.sleep(1)  # the work itself: a request still running when the host stops, or a peer
    _record("SLOW_LOG", {"began": began, "ended": time.time()})
    return "slow done"


@app.route(route="slow-async", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def slow_async(req: func.HttpRequest) -> str:
    began = time.time()
    await asyncio.sleep(1)
    _record("SLOW_LOG", {"began": began, "ended": time.time()})
    return "slow async done"


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> str:
    raise RuntimeError("secret detail that must not leak")


@app.route(route="context", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def with_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _json({"invocation_id": context.invocation_id, "function_name": context.function_name})


# -- queues -----------------------------------------------------------------------------------


@app.route(route="enqueue", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@app.queue_output(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def enqueue(req: func.HttpRequest, msg: func.Out[list[str]]) -> func.HttpResponse:
    msg.set(list(req.get_json()))
    return func.HttpResponse(status_code=202)


@app.queue_trigger(arg_name="fan", queue_name="hostapp-fanout", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="$return", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def fanout(fan: func.QueueMessage) -> list[str]:
    return fan.get_body().decode().split(",")


@app.queue_trigger(arg_name="item", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
def work(item: func.QueueMessage) -> None:
    body = item.get_body().decode()
    dequeue_count = item.dequeue_count or 0
    outcome = "ok"
    # "flaky…" fails its first two attempts; "poison…" always fails.
    if body.startswith("poison") or (body.startswith("flaky") and dequeue_count < 3):
        outcome = "failed"
    _record(
        "WORK_LOG",
        {
            "body": body,
            "id": item.id,
            "dequeue_count": dequeue_count,
            "outcome": outcome,
            "at": time.time(),
            "has_times": item.insertion_time is not None and item.expiration_time is not None,
            "has_receipt": bool(item.pop_receipt),
        },
    )
    if outcome == "failed":
        raise ValueError(f"refusing {body}")


# -- timers -----------------------------------------------------------------------------------


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%")
def tick(timer: func.TimerRequest) -> None:
    _record("TICK_LOG", {"name": "tick", "past_due": timer.past_due, "at": time.time()})


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def startup_once(timer: func.TimerRequest) -> None:
    _record("TICK_LOG", {"name": "startup_once", "past_due": timer.past_due, "at": time.time()})


@app.timer_trigger(arg_name="timer", schedule="%SLOW_TICK_SCHEDULE%")
async def slow_tick(timer: func.TimerRequest) -> None:
    # Runs longer than its one-second period: the next occurrence is missed and fires past due.
    _record("TICK_LOG", {"name": "slow_tick", "past_due": timer.past_due, "at": time.time()})
    await asyncio.sleep(1.5)


@app.timer_trigger(arg_name="timer", schedule="00:00:01")
def interval_tick(timer: func.TimerRequest) -> None:
    _record("TICK_LOG", {"name": "interval_tick", "past_due": timer.past_due, "at": time.time()})
