"""Called by Microsoft Graph: change notifications and lifecycle notifications (webhook), plus the
subscription renewal timer and the lifecycle work queue. Thin triggers over shared/subscriptions/.

Both webhook routes are anonymous (Graph sends no token): the validation handshake is answered
before anything else (GRAPH.md §6.4), and every notification item is checked against its
subscription's clientState in shared/ (STYLE.md §8: validate, check, enqueue, 202).

The webhook must answer within 3 s however busy the app is (GRAPH.md §6.6: slow answers get the
whole endpoint throttled). Sync functions share the host's thread pool (cores + 4 threads), which
the sync worker's queue invocations can fill — and a worker thread may sleep out a Graph
Retry-After of up to a minute. So the webhook handlers are `async` and run their (blocking, short)
work on a pool of their own (WEBHOOK_THREADS): notifications never wait behind sync rounds.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func

from functions.http import handle_errors
from functions.queues import decode_or_drop

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS
# shared.subscriptions.inbox.LIFECYCLE_QUEUE (a literal here: indexing must not import the storage SDK).
LIFECYCLE_QUEUE = "graph-lifecycle"
logger = logging.getLogger(__name__)


@bp.route(route="graph/notifications", methods=["POST"], auth_level=ANONYMOUS)
async def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return await _on_webhook_pool(_inbox, req)


@bp.route(route="graph/lifecycle", methods=["POST"], auth_level=ANONYMOUS)
async def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    return await _on_webhook_pool(_inbox, req)


# Threads answering notifications at once. Each mostly waits on its queue write, so one instance
# sustains about threads / write latency: 8 at Azure Storage's few milliseconds is well past what
# an instance's CPU serves (3-4 ms of it per notification here, issue 17). 64 was tried: on this
# 2-core machine the webhook is CPU-bound, and more threads made it no faster.
WEBHOOK_THREADS = 8


@functools.cache
def _webhook_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WEBHOOK_THREADS, thread_name_prefix="graph-webhook")


async def _on_webhook_pool(
    handler: Callable[[func.HttpRequest], func.HttpResponse], req: func.HttpRequest
) -> func.HttpResponse:
    # copy_context: log records keep the invocation id the host put in the context.
    call = functools.partial(contextvars.copy_context().run, handle_errors(handler), req)
    return await asyncio.get_running_loop().run_in_executor(_webhook_pool(), call)


def _inbox(req: func.HttpRequest) -> func.HttpResponse:
    token = req.params.get("validationToken")  # already URL-decoded (`+` → space)
    if token is not None:
        from shared.subscriptions.inbox import validation_echo

        echo = validation_echo(token)
        # text/plain + nosniff: the echo is opaque and never rendered as HTML.
        return func.HttpResponse(
            echo, status_code=200, mimetype="text/plain",
            headers={"X-Content-Type-Options": "nosniff"},
        )  # fmt: skip
    from shared import wiring
    from shared.subscriptions.inbox import receive, require_json

    require_json(req.headers.get("Content-Type"))
    receive(wiring.webhook_inbox(), req.get_body())
    return func.HttpResponse(status_code=202)


@bp.queue_trigger(arg_name="msg", queue_name=LIFECYCLE_QUEUE, connection="AzureWebJobsStorage")
def graph_lifecycle_worker(msg: func.QueueMessage) -> None:
    from shared import wiring
    from shared.subscriptions.inbox import LifecycleWork
    from shared.subscriptions.manage import handle_lifecycle

    work = decode_or_drop(msg, LifecycleWork.decode, "lifecycle", "lifecycle work")
    if work is None:
        return
    outcome = handle_lifecycle(wiring.subscription_deps(), work)
    logger.info("lifecycle %s of subscription %s: %s", work.event, work.subscription_id, outcome)


@bp.timer_trigger(schedule="%BB_RENEW_SCHEDULE%", arg_name="timer", run_on_startup=False)
def subscriptions_renew(timer: func.TimerRequest) -> None:
    from shared import wiring
    from shared.subscriptions.renewal import renew_due

    report = renew_due(wiring.subscription_deps())
    logger.info("subscription renewal: %s", report.to_log())
