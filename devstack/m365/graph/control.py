"""Control API of the Graph part (not Graph): act as Outlook users, faults, tokens, stats.

Mounted under `/_emulator/graph` (and two fixed routes under `/_emulator`, see
`build_root_control_routes`). Bodies and answers are JSON; errors are `{"error": {code, message}}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import events as ev
from .errors import GraphError
from .messages import prefs
from .model import EventRec, Mailbox
from .routes import Router

if TYPE_CHECKING:
    from .store import GraphState

Handler = Callable[[Request], Awaitable[Response]]


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _guard(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            result = await fn(request)
        except GraphError as err:
            return JSONResponse(
                {"error": {"code": err.code, "message": err.message}}, status_code=err.status
            )
        except (ValueError, KeyError, TypeError) as exc:
            return _err(400, "BadRequest", str(exc))
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return endpoint


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


def _mailbox(state: GraphState, ident: str, tenant: str | None) -> Mailbox:
    """A mailbox by UPN (tenant from its domain) or by id with `?tenant=`."""
    directory = state.directory
    user = None
    if tenant:
        t = directory.tenant(tenant)
        user = directory.user(t.id, ident) if t else None
    else:
        user = directory.find_user_anywhere(ident)
        if user is None:
            for t in list(directory.tenants.values()):
                user = directory.user(t.id, ident)
                if user:
                    break
    if user is None:
        raise GraphError(404, "ErrorInvalidUser", f"Unknown user {ident!r}.")
    mb = state.mailbox(user.tenant_id, user.id)
    assert mb is not None
    return mb


def _calendar_id(mb: Mailbox, value: Any) -> str:
    if value in (None, "", "default"):
        return mb.default_calendar.id
    for cal in mb.calendars.values():
        if value in (cal.id, cal.name) and cal.shared_owner is None:
            return cal.id
    raise GraphError(404, "ErrorItemNotFound", f"Unknown calendar {value!r}.")


def _event_out(state: GraphState, mb: Mailbox, rec: EventRec, request: Request) -> dict[str, Any]:
    p = prefs({k.lower(): v for k, v in request.headers.items()})
    body = ev.event_json(state, mb, rec, tz=p.tz, immutable=p.immutable)
    body["immutableId"] = rec.immutable_id  # control-API extra: both ids, for tests
    body["restId"] = rec.rest_id
    return body


def create_as_user(state: GraphState) -> Handler:
    async def fn(request: Request) -> Any:
        body = await _body(request)
        mb = _mailbox(state, request.path_params["upn"], request.query_params.get("tenant"))
        cal = _calendar_id(mb, body.pop("calendarId", None))
        with state.lock:
            rec, _ = ev.create_event(state, mb, cal, body)
            return JSONResponse(_event_out(state, mb, rec, request), status_code=201)

    return _guard(fn)


def build_root_control_routes(emulator: Any) -> list[BaseRoute]:
    """Fixed by DEVSTACK.md: `POST /_emulator/users/{upn}/events`, `GET /_emulator/stats`.

    Paths are relative to a `Mount("/_emulator", ...)`.
    """
    state: GraphState = emulator.graph

    async def stats(_: Request) -> Any:
        return state_stats(state)

    return [
        Route("/users/{upn}/events", create_as_user(state), methods=["POST"]),
        Route("/stats", _guard(stats), methods=["GET"]),
    ]


def state_stats(state: GraphState) -> dict[str, Any]:
    out = state.stats.to_json()
    out["throttled"] = state.throttle.throttled
    out["inflight"] = sum(state.throttle.inflight.values())  # requests being served right now
    out["subscriptions"] = len(state.notifier.subscriptions)
    return out


def build_control_routes(emulator: Any) -> list[BaseRoute]:
    state: GraphState = emulator.graph
    router = Router(state)

    def mb_of(request: Request) -> Mailbox:
        return _mailbox(state, request.path_params["upn"], request.query_params.get("tenant"))

    def find(mb: Mailbox, event_id: str) -> EventRec:
        rec, occ = ev.resolve(mb, event_id)
        if occ is not None:
            raise GraphError(400, "BadRequest", "Use the series master id here.")
        return rec

    async def list_events(request: Request) -> Any:
        mb = mb_of(request)
        with state.lock:
            return {"value": [_event_out(state, mb, r, request) for r in mb.events.values()]}

    async def patch_event(request: Request) -> Any:
        body = await _body(request)
        mb = mb_of(request)
        with state.lock:
            rec, occ = ev.resolve(mb, request.path_params["event_id"])
            ev.update_event(state, mb, rec, occ, body)
            return _event_out(state, mb, rec, request)

    async def delete_event(request: Request) -> Any:
        mb = mb_of(request)
        with state.lock:
            rec, occ = ev.resolve(mb, request.path_params["event_id"])
            ev.delete_event(state, mb, rec, occ)
        return Response(status_code=204)

    async def cancel_event(request: Request) -> Any:
        mb = mb_of(request)
        with state.lock:
            rec, occ = ev.resolve(mb, request.path_params["event_id"])
            ev.cancel_event(state, mb, rec, occ)
        return Response(status_code=202)

    async def move_event(request: Request) -> Any:
        body = await _body(request)
        mb = mb_of(request)
        with state.lock:
            rec = find(mb, request.path_params["event_id"])
            ev.move_event(state, mb, rec, _calendar_id(mb, body.get("calendarId")))
            return _event_out(state, mb, rec, request)

    async def respond(request: Request) -> Any:
        body = await _body(request)
        mb = mb_of(request)
        with state.lock:
            rec, occ = ev.resolve(mb, request.path_params["event_id"])
            response = {
                "accept": "accepted",
                "decline": "declined",
                "tentativelyAccept": "tentativelyAccepted",
            }[str(body.get("response"))]
            ev.respond(state, mb, rec, occ, response)
        return Response(status_code=202)

    async def create_calendar(request: Request) -> Any:
        body = await _body(request)
        mb = mb_of(request)
        with state.lock:
            cal = mb.add_calendar(str(body["name"]))
            return JSONResponse(router.calendar_json(mb, cal), status_code=201)

    async def share_calendar(request: Request) -> Any:
        body = await _body(request)
        mb = mb_of(request)
        with state.lock:
            cal = mb.calendars[_calendar_id(mb, request.path_params["calendar"])]
            grantee = _mailbox(state, str(body["with"]), mb.tenant_id)
            share = state.share_calendar(mb, cal, grantee, str(body.get("role", "read")))
            return {"copyCalendarId": share.copy_id, "role": share.role}

    async def faults_get(_: Request) -> Any:
        return state.faults.to_json()

    async def faults_post(request: Request) -> Any:
        body = await _body(request)
        if "notifications" in body:
            state.faults.set_notifications(body["notifications"])
        if "throttle" in body:
            state.throttle.configure(body["throttle"])
        added = [state.faults.add(r).to_json() for r in body.get("rules", [])]
        if any(k in body for k in ("path", "status", "latencyMs")):
            added.append(state.faults.add(body).to_json())
        return {"added": added, **state.faults.to_json()}

    async def faults_delete(_: Request) -> Any:
        state.faults.clear()
        state.throttle.restore_defaults()
        return Response(status_code=204)

    async def expire_delta(request: Request) -> Any:
        body = await _body(request)
        mode = str(body.get("mode") or state.config.delta_mode_on_expiry)
        if mode not in ("gone", "syncStateNotFound"):
            raise ValueError("mode must be 'gone' or 'syncStateNotFound'")
        key = None
        if body.get("user"):
            mb = _mailbox(state, str(body["user"]), body.get("tenant"))
            key = (mb.tenant_id, mb.user_id)
        return {"expired": state.delta.expire(mode, key)}

    def _place(request: Request) -> tuple[Any, Any]:
        tenant = state.directory.tenant(str(request.query_params.get("tenant") or ""))
        pid = request.path_params["place_id"]
        place = next((p for p in tenant.places if p.id == pid), None) if tenant else None
        if tenant is None or place is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found.")
        return tenant, place

    async def place_patch(request: Request) -> Any:
        """A Places admin renames a place (`{"displayName"}`), as Set-PlaceV3 would."""
        _, place = _place(request)
        body = await _body(request)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("displayName must be a non-empty string")
        place.display_name = name
        return {"id": place.id, "displayName": place.display_name}

    async def place_delete(request: Request) -> Any:
        """A Places admin removes a place (its mailbox, if any, stays)."""
        tenant, place = _place(request)
        tenant.places.remove(place)
        return Response(status_code=204)

    async def forget_transactions(request: Request) -> Any:
        """Graph no longer recognises the transactionIds of earlier creates (of one mailbox, or
        all): how long Graph remembers one is not documented (docs/GRAPH.md §4.3, §12), so a
        client must not rely on a late retry being de-duplicated by it."""
        body = await _body(request)
        with state.lock:
            if body.get("user"):
                boxes = [_mailbox(state, str(body["user"]), body.get("tenant"))]
            else:
                boxes = list(state.mailboxes.values())
            forgotten = sum(len(mb.transactions) for mb in boxes)
            for mb in boxes:
                mb.transactions.clear()
        return {"forgotten": forgotten}

    async def subs_list(_: Request) -> Any:
        return {
            "value": [
                dict(s.to_json(), tenantId=s.tenant_id, paused=s.paused)
                for s in state.notifier.subscriptions.values()
            ]
        }

    async def sub_remove(request: Request) -> Any:
        notify = request.query_params.get("notify", "true").lower() != "false"
        if not state.notifier.remove(request.path_params["sub_id"], notify=notify):
            raise GraphError(404, "ResourceNotFound", "No such subscription.")
        return Response(status_code=204)

    async def eventhub_list(_: Request) -> Any:
        # What Graph would have put on each Event Hubs URL's hub, oldest first: one collection per
        # event, the same {"value": [...]} a webhook gets (a test relays them to the trigger).
        return {
            "value": [
                {"notificationUrl": url, "events": list(events)}
                for url, events in state.notifier.event_hub_events.items()
            ]
        }

    async def eventhub_clear(_: Request) -> Any:
        state.notifier.event_hub_events.clear()
        return Response(status_code=204)

    async def sub_lifecycle(request: Request) -> Any:
        body = await _body(request)
        sub = state.notifier.subscriptions.get(request.path_params["sub_id"])
        if sub is None:
            raise GraphError(404, "ResourceNotFound", "No such subscription.")
        event = str(body.get("event"))
        if event == "subscriptionRemoved":
            state.notifier.remove(sub.id, notify=True)
        elif event in ("reauthorizationRequired", "missed"):
            state.notifier.lifecycle(sub, event)
        else:
            raise ValueError("event must be reauthorizationRequired, subscriptionRemoved or missed")
        return Response(status_code=202)

    async def revoke(request: Request) -> Any:
        body = await _body(request)
        tenant = state.directory.tenant(str(body["tenantId"]))
        if tenant is None:
            raise GraphError(404, "NotFound", "Unknown tenant.")
        user = state.directory.user(tenant.id, str(body["user"]))
        if user is None:
            raise GraphError(404, "ErrorInvalidUser", "Unknown user.")
        # The directory records the revocation and tells every part (Graph removes the user's
        # delegated subscriptions with a subscriptionRemoved notice).
        when = state.directory.revoke_grant(
            tenant.id,
            user.id,
            body.get("clientId"),
            remove_consent=bool(body.get("removeConsent")),
            at=state.now(),
        )
        return {"revokedAt": when.isoformat()}

    async def config_get(_: Request) -> Any:
        return state.config.to_json()

    async def config_post(request: Request) -> Any:
        state.config.update(await _body(request))
        return state.config.to_json()

    async def stats(_: Request) -> Any:
        return state_stats(state)

    async def token(request: Request) -> Any:
        """Test helper: mint a Graph access token with chosen scopes/roles (any lifetime)."""
        body = await _body(request)
        tenant = state.directory.tenant(str(body["tenantId"]))
        if tenant is None:
            raise GraphError(404, "NotFound", "Unknown tenant.")
        client = str(body["clientId"]).lower()
        claims: dict[str, Any] = {
            "aud": "https://graph.microsoft.com",
            "iss": state.emulator.tokens.issuer(tenant.id),
            "tid": tenant.id,
            "azp": client,
            "appid": client,
        }
        if body.get("user"):
            ident = str(body["user"])
            user = state.directory.user(tenant.id, ident) or state.directory.user(
                tenant.id, f"{ident}@{tenant.domain}"
            )
            if user is None:
                raise GraphError(404, "ErrorInvalidUser", "Unknown user.")
            claims.update(
                {
                    "oid": user.id,
                    "sub": user.id,
                    "scp": " ".join(body.get("scopes", [])),
                    "preferred_username": user.user_principal_name,
                    "upn": user.user_principal_name,
                    "name": user.display_name,
                }
            )
        else:
            claims.update({"oid": client, "sub": client, "roles": list(body.get("roles", []))})
        if body.get("audience"):
            claims["aud"] = str(body["audience"])
        lifetime = int(body.get("lifetime", 3599))
        return {
            "access_token": state.emulator.tokens.issue(claims, lifetime),
            "expires_in": lifetime,
        }

    return [
        Route("/users/{upn}/events", _guard(list_events), methods=["GET"]),
        Route("/users/{upn}/events", create_as_user(state), methods=["POST"]),
        Route("/users/{upn}/events/{event_id}", _guard(patch_event), methods=["PATCH"]),
        Route("/users/{upn}/events/{event_id}", _guard(delete_event), methods=["DELETE"]),
        Route("/users/{upn}/events/{event_id}/cancel", _guard(cancel_event), methods=["POST"]),
        Route("/users/{upn}/events/{event_id}/move", _guard(move_event), methods=["POST"]),
        Route("/users/{upn}/events/{event_id}/respond", _guard(respond), methods=["POST"]),
        Route("/users/{upn}/calendars", _guard(create_calendar), methods=["POST"]),
        Route("/users/{upn}/calendars/{calendar}/share", _guard(share_calendar), methods=["POST"]),
        Route("/faults", _guard(faults_get), methods=["GET"]),
        Route("/faults", _guard(faults_post), methods=["POST"]),
        Route("/faults", _guard(faults_delete), methods=["DELETE"]),
        Route("/delta/expire", _guard(expire_delta), methods=["POST"]),
        Route("/transactions/forget", _guard(forget_transactions), methods=["POST"]),
        Route("/places/{place_id}", _guard(place_patch), methods=["PATCH"]),
        Route("/places/{place_id}", _guard(place_delete), methods=["DELETE"]),
        Route("/subscriptions", _guard(subs_list), methods=["GET"]),
        Route("/subscriptions/{sub_id}", _guard(sub_remove), methods=["DELETE"]),
        Route("/subscriptions/{sub_id}/lifecycle", _guard(sub_lifecycle), methods=["POST"]),
        Route("/eventhub", _guard(eventhub_list), methods=["GET"]),
        Route("/eventhub", _guard(eventhub_clear), methods=["DELETE"]),
        Route("/grants/revoke", _guard(revoke), methods=["POST"]),
        Route("/config", _guard(config_get), methods=["GET"]),
        Route("/config", _guard(config_post), methods=["POST"]),
        Route("/stats", _guard(stats), methods=["GET"]),
        Route("/token", _guard(token), methods=["POST"]),
    ]
