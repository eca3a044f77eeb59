"""`/subscriptions`: create (with the validation handshake), get, list, renew, reauthorize, delete.

Rules enforced as Graph does for Outlook events (GRAPH.md §6): documented resources only
(`/me/events`, `/users/{id}/events`); delegated tokens only on the signed-in user's own mailbox;
a read permission is required (write-only delegated grants → 403); expiry ≤ 4230 minutes;
`clientState` ≤ 128 characters; https notification URLs (http on loopback only when
`allowHttpLoopback` is on) or Graph's `EventHub:` form (no validation request; deliveries are
recorded, not sent: delivery.py); both URLs validated; at most 1,000 subscriptions per mailbox.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from typing import Any

from .delivery import EVENT_HUB_PREFIX, Subscription, is_event_hub
from .errors import GraphError, bad_request
from .messages import Reply, Req, Run, prefs
from .model import Mailbox
from .permissions import Caller, extension_forbidden, require_subscription_scope
from .store import GraphState
from .timezones import parse_local

MAX_MINUTES = 4230
MAX_PER_MAILBOX = 1000
_EVENTS = re.compile(r"^/?(me|users/([^/]+))/events/?$", re.I)
_FOLDERS = re.compile(r"^/?(me|users/[^/]+)/(calendars|mailfolders|contactfolders)/?$", re.I)


def _invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def _parse_expiry(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise _invalid("expirationDateTime is required.")
    try:
        naive, tz = parse_local(value)
    except GraphError:
        raise _invalid(f"Invalid expirationDateTime '{value}'.") from None
    return naive.replace(tzinfo=tz or dt.UTC).astimezone(dt.UTC)


def _check_expiry(state: GraphState, when: dt.datetime, operation: str) -> None:
    now = state.now()
    if when <= now:
        raise _invalid("Subscription expiration date time cannot be in the past.")
    if when > now + dt.timedelta(minutes=MAX_MINUTES):
        raise GraphError(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.",
        )


# Graph's Event Hubs delivery (change-notifications-delivery-event-hubs):
# `EventHub:https://<vault>.vault.azure.net/secrets/<secret>?tenantId=<tenant id or domain>`.
# Graph reads the hub's connection string from that secret; there is no validation POST.
_VAULT_HOST = re.compile(
    r"^[a-z][a-z0-9-]{1,22}[a-z0-9]\.vault\.(azure\.net|azure\.cn|usgovcloudapi\.net)$"
)
_SECRET_PATH = re.compile(r"^/secrets/[0-9a-zA-Z-]{1,127}(/[0-9a-fA-F]{32})?/?$")


def _check_event_hub_url(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url[len(EVENT_HUB_PREFIX) :])
    tenant = urllib.parse.parse_qs(parts.query).get("tenantId", [""])[0]
    if (
        parts.scheme != "https"
        or not _VAULT_HOST.match(parts.hostname or "")
        or parts.port is not None
        or not _SECRET_PATH.match(parts.path)
        or not tenant.strip()
    ):
        raise _invalid(
            f"Invalid {name} '{url}'. An Event Hubs notification URL must look like "
            "EventHub:https://<vault>.vault.azure.net/secrets/<secret>?tenantId=<tenant>."
        )
    return url


def _check_url(state: GraphState, url: Any, name: str) -> str:
    if not isinstance(url, str) or not url:
        raise _invalid(f"{name} is required.")
    if is_event_hub(url):
        return _check_event_hub_url(url, name)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme == "http" and loopback and state.config.allow_http_loopback:
        return url
    raise _invalid(f"Subscription validation request failed. {name} must be an https URL.")


def route(
    state: GraphState, base: str, caller: Caller, req: Req, rest: list[str]
) -> tuple[Mailbox | None, Run]:
    notifier = state.notifier
    method = req.method.upper()
    ctx = f"{base}/$metadata#subscriptions"

    def own(sub_id: str) -> Subscription:
        sub = notifier.subscriptions.get(sub_id)
        if (
            sub is None
            or sub.tenant_id != caller.tenant_id
            or (sub.application_id != caller.client_id.lower())
            or (not caller.is_app and sub.creator_id != caller.user_id)
        ):
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        return sub

    def sub_mailbox(sub: Subscription) -> Mailbox | None:
        return state.mailboxes.get((sub.tenant_id, sub.mailbox_user_id))

    if not rest:
        if method == "GET":

            async def run_list() -> Reply:
                value = [
                    s.to_json()
                    for s in notifier.subscriptions.values()
                    if s.tenant_id == caller.tenant_id
                    and s.application_id == caller.client_id.lower()
                    and (caller.is_app or s.creator_id == caller.user_id)
                ]
                return Reply(200, {"@odata.context": ctx, "value": value})

            return None, run_list
        if method != "POST":
            raise GraphError(405, "Request_BadRequest", "Method not allowed.")
        body = req.json()
        if not isinstance(body, dict):
            raise _invalid("The request body must be a subscription.")
        resource = body.get("resource")
        if not isinstance(resource, str) or not resource:
            raise _invalid("resource is required.")
        change_types = str(body.get("changeType") or "")
        types = frozenset(t.strip() for t in change_types.split(",") if t.strip())
        if not types or not types <= {"created", "updated", "deleted"}:
            raise _invalid(f"Invalid changeType '{change_types}'.")
        if _FOLDERS.match(resource) and "created" in types:
            raise GraphError(
                400,
                "ExtensionError",
                "Subscribing to folder hierarchy for Created event is not allowed.",
            )
        m = _EVENTS.match(resource)
        if not m:
            raise _invalid(f"Resource '{resource}' is not supported for Outlook subscriptions.")
        if m.group(1).lower() == "me":
            if caller.is_app:
                raise bad_request("/me request is only valid with delegated authentication flow.")
            mb = state.mailbox(caller.tenant_id, caller.user_id or "")
        else:
            mb = state.mailbox(caller.tenant_id, urllib.parse.unquote(m.group(2)))
        if mb is None:
            raise GraphError(404, "ErrorInvalidUser", "The requested user is invalid.")
        target = mb

        async def run_create() -> Reply:
            require_subscription_scope(state, caller, target, "Create")
            if not caller.is_app and caller.user_id != target.user_id:
                # Delegated subscriptions only work on the signed-in user's own mailbox.
                raise extension_forbidden("Create")
            if caller.is_app:
                from .permissions import app_permissions

                if not app_permissions(state, caller, target) & {
                    "Calendars.Read",
                    "Calendars.ReadWrite",
                }:
                    raise extension_forbidden("Create")
            expiry = _parse_expiry(body.get("expirationDateTime"))
            _check_expiry(state, expiry, "Create")
            client_state = body.get("clientState")
            if client_state is not None and (
                not isinstance(client_state, str) or len(client_state) > 128
            ):
                raise _invalid("clientState must be a string of at most 128 characters.")
            url = _check_url(state, body.get("notificationUrl"), "notificationUrl")
            lifecycle = body.get("lifecycleNotificationUrl")
            if lifecycle is not None:
                lifecycle = _check_url(state, lifecycle, "lifecycleNotificationUrl")
            if body.get("includeResourceData"):
                raise _invalid("includeResourceData is not supported by this emulator.")
            count = sum(
                1
                for s in notifier.subscriptions.values()
                if (s.tenant_id, s.mailbox_user_id) == (target.tenant_id, target.user_id)
            )
            if count >= MAX_PER_MAILBOX:
                raise GraphError(
                    403,
                    "ExtensionError",
                    "Operation: Create; Exception: [Status Code: Forbidden; Reason: "
                    "The maximum number of subscriptions (1000) for this mailbox has "
                    "been reached.]",
                )
            await notifier.validate_endpoint(url)
            if lifecycle:
                await notifier.validate_endpoint(lifecycle)
            sub = Subscription(
                id=str(uuid.uuid4()),
                tenant_id=target.tenant_id,
                mailbox_user_id=target.user_id,
                resource=resource,
                change_types=types,
                notification_url=url,
                lifecycle_url=lifecycle,
                expiration=expiry,
                client_state=client_state,
                application_id=caller.client_id.lower(),
                creator_id=caller.user_id or caller.client_id.lower(),
                delegated=not caller.is_app,
                immutable_ids=prefs(req.headers).immutable,
                token_expires=float(caller.expires),
                latest_tls=str(body.get("latestSupportedTlsVersion") or "v1_2"),
            )
            notifier.subscriptions[sub.id] = sub
            return Reply(201, {"@odata.context": f"{ctx}/$entity", **sub.to_json()})

        return target, run_create

    sub_id = rest[0]
    action = rest[1].lower() if len(rest) > 1 else None

    async def run_item() -> Reply:
        sub = own(sub_id)
        mb = sub_mailbox(sub)
        if action == "reauthorize":
            if method != "POST":
                raise GraphError(405, "Request_BadRequest", "Method not allowed.")
            require_subscription_scope(state, caller, mb, "Reauthorize")
            notifier.reauthorized(sub, float(caller.expires))
            return Reply(204)
        if action is not None:
            raise bad_request(f"Resource not found for the segment '{rest[1]}'.")
        if method == "GET":
            require_subscription_scope(state, caller, mb, "Get")
            return Reply(200, {"@odata.context": f"{ctx}/$entity", **sub.to_json()})
        if method == "DELETE":
            require_subscription_scope(state, caller, mb, "Delete")
            notifier.remove(sub.id, notify=False)
            return Reply(204)
        if method == "PATCH":
            require_subscription_scope(state, caller, mb, "Update")
            body = req.json()
            if not isinstance(body, dict):
                raise _invalid("The request body must be a subscription.")
            if "lifecycleNotificationUrl" in body and body["lifecycleNotificationUrl"] != (
                sub.lifecycle_url
            ):
                raise _invalid(
                    "lifecycleNotificationUrl can only be set when the subscription is created."
                )
            if "expirationDateTime" in body:
                expiry = _parse_expiry(body["expirationDateTime"])
                _check_expiry(state, expiry, "Update")
                sub.expiration = expiry
            if "notificationUrl" in body and body["notificationUrl"] != sub.notification_url:
                url = _check_url(state, body["notificationUrl"], "notificationUrl")
                await notifier.validate_endpoint(url)
                sub.notification_url = url
            # Renewing also reauthorizes (with the caller's current token).
            notifier.reauthorized(sub, float(caller.expires))
            return Reply(200, {"@odata.context": f"{ctx}/$entity", **sub.to_json()})
        raise GraphError(405, "Request_BadRequest", "Method not allowed.")

    existing = notifier.subscriptions.get(sub_id)
    return (sub_mailbox(existing) if existing else None), run_item
