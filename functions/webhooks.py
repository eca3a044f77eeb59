"""Outgoing webhooks (issue 16): endpoints per building (admin), their deliveries, and the queue
worker that sends them.

Thin triggers: the caller is checked first (401/403), then shared/webhooks/service.py (or
delivery.py for the queue) is called with `wiring.webhook_deps()`. Nothing is ever sent from a
request: every attempt runs in `webhook_delivery_worker`. shared/ is imported inside the handlers
(STYLE.md rule 1).
"""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import caller_for, handle_errors, json_response, list_response, read_json
from functions.queues import decode_or_drop
from shared.core.errors import MethodNotAllowed

logger = logging.getLogger(__name__)

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS  # bearer tokens are checked in-app by caller_for
WEBHOOKS = "buildings/{building}/webhooks"
WEBHOOK = WEBHOOKS + "/{webhook}"


ACTIONS = ("rotate", "ping")  # POST …/{webhook}:<action>, routed here for any other method


def _ids(req: func.HttpRequest, *, one: bool = False) -> tuple[str, str]:
    """Building and webhook id. `one`: the route is …/{webhook} itself, which Azure's host also
    matches for `…/{webhook}:<action>` asked with another method than POST: a 405, not a 400."""
    building = str(req.route_params.get("building", ""))
    webhook = str(req.route_params.get("webhook", ""))
    # Before the caller and the ids are checked (caller_for refuses `x:ping` as an id): as the
    # host's own 405 for a method no route takes, it comes before authentication.
    if one and ":" in webhook and webhook.rpartition(":")[2] in ACTIONS:
        raise MethodNotAllowed("POST")
    caller_for(req, building)
    return building, webhook


@bp.route(route=WEBHOOKS, methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def webhook_create(req: func.HttpRequest) -> func.HttpResponse:
    building, _ = _ids(req)
    from shared import wiring
    from shared.webhooks.service import create_webhook

    view = create_webhook(wiring.webhook_deps(), building, read_json(req))
    location = f"/api/{WEBHOOKS.format(building=building)}/{view['id']}"
    return json_response(view, 201, {"Location": location, "Cache-Control": "no-store"})


@bp.route(route=WEBHOOKS, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def webhooks_list(req: func.HttpRequest) -> func.HttpResponse:
    building, _ = _ids(req)
    from shared import wiring
    from shared.webhooks.service import list_webhooks

    return list_response(req, list_webhooks(wiring.webhook_deps(), building))


@bp.route(route=WEBHOOK, methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def webhook_get(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req, one=True)
    from shared import wiring
    from shared.webhooks.service import get_webhook

    return json_response(get_webhook(wiring.webhook_deps(), building, webhook))


@bp.route(route=WEBHOOK, methods=["PATCH"], auth_level=ANONYMOUS)
@handle_errors
def webhook_update(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req, one=True)
    from shared import wiring
    from shared.webhooks.service import update_webhook

    return json_response(update_webhook(wiring.webhook_deps(), building, webhook, read_json(req)))


@bp.route(route=WEBHOOK, methods=["DELETE"], auth_level=ANONYMOUS)
@handle_errors
def webhook_delete(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req, one=True)
    from shared import wiring
    from shared.webhooks.service import delete_webhook

    delete_webhook(wiring.webhook_deps(), building, webhook)
    return func.HttpResponse(status_code=204)


@bp.route(route=WEBHOOK + ":rotate", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def webhook_rotate(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req)
    from shared import wiring
    from shared.webhooks.service import rotate_secret

    body = read_json(req) if req.get_body() else {}
    view = rotate_secret(wiring.webhook_deps(), building, webhook, body)
    return json_response(view, 200, {"Cache-Control": "no-store"})


@bp.route(route=WEBHOOK + ":ping", methods=["POST"], auth_level=ANONYMOUS)
@handle_errors
def webhook_ping(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req)
    from shared import wiring
    from shared.webhooks.service import ping

    return json_response(ping(wiring.webhook_deps(), building, webhook), 202)


@bp.route(route=WEBHOOK + "/deliveries", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def webhook_deliveries(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req)
    from shared import wiring
    from shared.webhooks.service import list_deliveries

    return list_response(
        req, list_deliveries(wiring.webhook_deps(), building, webhook, dict(req.params))
    )


@bp.route(route=WEBHOOK + "/deliveries/{delivery}", methods=["GET"], auth_level=ANONYMOUS)
@handle_errors
def webhook_delivery_get(req: func.HttpRequest) -> func.HttpResponse:
    delivery = str(req.route_params.get("delivery", ""))
    if delivery.endswith(":redeliver"):  # the host routes GET …/{delivery}:redeliver here, as _ids
        raise MethodNotAllowed("POST")
    building, webhook = _ids(req)
    from shared import wiring
    from shared.webhooks.service import get_delivery

    return json_response(get_delivery(wiring.webhook_deps(), building, webhook, delivery))


@bp.route(route=WEBHOOK + "/deliveries/{delivery}:redeliver", methods=["POST"],
          auth_level=ANONYMOUS)  # fmt: skip
@handle_errors
def webhook_redeliver(req: func.HttpRequest) -> func.HttpResponse:
    building, webhook = _ids(req)
    from shared import wiring
    from shared.webhooks.service import redeliver

    delivery = str(req.route_params.get("delivery", ""))
    return json_response(redeliver(wiring.webhook_deps(), building, webhook, delivery), 202)


@bp.queue_trigger(arg_name="msg", queue_name="webhook-deliveries", connection="AzureWebJobsStorage")
def webhook_delivery_worker(msg: func.QueueMessage) -> None:
    from shared import wiring
    from shared.webhooks.delivery import DeliveryMessage, deliver

    message = decode_or_drop(msg, DeliveryMessage.decode, "webhook-deliveries", "a delivery")
    if message is None:
        return
    logger.info(
        "webhook delivery %s/%s: %s",
        message.webhook_id,
        message.delivery_id,
        deliver(wiring.webhook_deps(), message),
    )
