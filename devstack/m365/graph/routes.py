"""The Graph v1.0 request dispatcher: one entry point for HTTP requests and `$batch` items.

Order per request (as Graph layers it): authentication (401) → routing (400/404) → permission
(403) → injected faults → Outlook throttling per (app, mailbox) (429) → the operation. The global
per-app limit (429) is counted right after authentication, for every request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from . import batch, places, schedule, subscriptions, views
from . import events as ev
from .errors import GraphError, bad_request, error_body, item_not_found, item_or_malformed
from .faults import DEFAULT_CODES, FaultRule
from .messages import Prefs, Reply, Req, Run, prefs
from .model import Calendar, EventRec, Mailbox
from .odata import parse_expand, parse_filter
from .permissions import (
    Caller,
    authenticate,
    calendar_access,
    require_places,
    require_read_any,
    require_user_read,
)
from .store import WRITE_ROLES, GraphState
from .timezones import iso_utc


async def _inject(rules: list[FaultRule]) -> None:
    """Injected faults' latency, then the first one's error (faults.py)."""
    latency = sum(r.latency_ms for r in rules)
    if latency:
        await asyncio.sleep(latency / 1000.0)
    failing = next((r for r in rules if r.status), None)
    if failing is not None and failing.status is not None:
        dc, dm = DEFAULT_CODES.get(failing.status, ("ErrorInternalServerError", "Injected fault."))
        headers = {"Retry-After": str(failing.retry_after)} if failing.retry_after else {}
        raise GraphError(failing.status, failing.code or dc, failing.message or dm, headers=headers)


class Router:
    def __init__(self, state: GraphState) -> None:
        self.state = state

    @property
    def base(self) -> str:
        return f"{self.state.emulator.base_url}/v1.0"

    # ------------------------------------------------------------------ dispatch
    async def dispatch(self, req: Req) -> Reply:
        state = self.state
        request_id = str(uuid.uuid4())
        client_request_id = req.headers.get("client-request-id") or request_id
        mailbox_label: str | None = None
        try:
            if req.path.rstrip("/").lower() == "/$batch":
                reply = await batch.run_batch(self.dispatch, req)
            else:
                caller = authenticate(state, req.headers.get("authorization"))
                state.throttle.app_request(caller.client_id, state.now().timestamp())
                with state.lock:
                    mb, run = self.route(caller, req)
                mailbox_label = mb.upn if mb else None
                reply = await self._guarded(caller, req, mb, run)
        except GraphError as err:
            reply = Reply(
                err.status,
                error_body(
                    err,
                    date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    request_id=request_id,
                    client_request_id=client_request_id,
                ),
                dict(err.headers),
            )
        state.stats.request(req.method, req.path, mailbox_label, reply.status)
        reply.headers.setdefault("request-id", request_id)
        reply.headers.setdefault("client-request-id", client_request_id)
        reply.headers.setdefault(
            "x-ms-ags-diagnostic",
            json.dumps(
                {
                    "ServerInfo": {
                        "DataCenter": "Local Emulator",
                        "Slice": "E",
                        "Ring": "0",
                        "ScaleUnit": "000",
                        "RoleInstance": "LOCAL",
                    }
                }
            ),
        )
        return reply

    async def _guarded(self, caller: Caller, req: Req, mb: Mailbox | None, run: Run) -> Reply:
        state = self.state
        rules = state.faults.pick(req.method, req.path, mb.upn if mb else None)
        throttle_key = f"{mb.tenant_id}/{mb.user_id}" if mb else None
        if throttle_key:
            state.throttle.enter(caller.client_id, throttle_key, state.now().timestamp())
        try:
            await _inject([r for r in rules if not r.after])
            with state.lock:
                reply = await run()
            await _inject([r for r in rules if r.after])  # done, but the answer is lost
            return reply
        finally:
            if throttle_key:
                state.throttle.leave(caller.client_id, throttle_key)

    # ------------------------------------------------------------------ routing
    def route(self, caller: Caller, req: Req) -> tuple[Mailbox | None, Run]:
        segs = [urllib.parse.unquote(s) for s in req.path.strip("/").split("/") if s]
        if not segs:
            raise bad_request("Invalid request.")
        head = segs[0].lower()
        if head == "me":
            if caller.is_app:
                raise bad_request("/me request is only valid with delegated authentication flow.")
            mb = self.state.mailbox(caller.tenant_id, caller.user_id or "")
            if mb is None:
                raise GraphError(404, "ErrorInvalidUser", "The requested user is invalid.")
            return mb, self.mailbox_op(caller, req, mb, segs[1:])
        if head == "users" and len(segs) >= 2:
            mb = self.state.mailbox(caller.tenant_id, segs[1])
            if mb is None:
                if len(segs) == 2:
                    raise GraphError(
                        404,
                        "Request_ResourceNotFound",
                        f"Resource '{segs[1]}' does not exist or one of its queried "
                        "reference-property objects are not present.",
                    )
                raise GraphError(
                    404, "ErrorInvalidUser", f"The requested user '{segs[1]}' is invalid."
                )
            return mb, self.mailbox_op(caller, req, mb, segs[2:])
        if head == "subscriptions":
            return subscriptions.route(self.state, self.base, caller, req, segs[1:])
        if head == "places":
            require_places(caller)
            base = f"{self.base}/{'/'.join(urllib.parse.quote(s) for s in segs)}"
            query = req.query

            async def run_places() -> Reply:
                self._only(req, "GET")
                return Reply(
                    200, places.handle(self.state, caller.tenant_id, segs[1:], query, base)
                )

            return None, run_places
        raise bad_request(f"Resource not found for the segment '{segs[0]}'.")

    @staticmethod
    def _only(req: Req, *methods: str) -> None:
        if req.method.upper() not in methods:
            raise GraphError(
                405,
                "Request_BadRequest",
                f"The HTTP method '{req.method}' is not allowed for this resource.",
            )

    def mailbox_op(self, caller: Caller, req: Req, mb: Mailbox, rest: list[str]) -> Run:
        state = self.state
        low = [s.lower() for s in rest]
        p = prefs(req.headers)
        if not rest:

            async def run_user() -> Reply:
                self._only(req, "GET")
                require_user_read(caller, mb.user_id)
                return Reply(200, self.user_json(mb, req.query))

            return run_user
        if low == ["calendars"]:

            async def run_calendars() -> Reply:
                if req.method == "POST":
                    calendar_access(state, caller, mb, None, write=True)
                    body = req.json() or {}
                    if not isinstance(body, dict) or not body.get("name"):
                        raise GraphError(400, "ErrorInvalidRequest", "A calendar needs a name.")
                    cal = mb.add_calendar(str(body["name"]))
                    return Reply(201, self.calendar_json(mb, cal))
                self._only(req, "GET")
                allowed = self._calendars_visible(caller, mb)
                # Each item with its @odata.id, as user-list-calendars.md's example shows.
                cals = [
                    {
                        "@odata.id": f"{self.base}/users('{mb.user_id}@{mb.tenant_id}')"
                        f"/calendars('{c.id}')",
                        **self.calendar_json(mb, c),
                    }
                    for c in mb.calendars.values()
                    if allowed is None or c.id in allowed
                ]
                return Reply(
                    200,
                    {
                        "@odata.context": f"{self.base}/$metadata#users('{mb.user_id}')/calendars",
                        "value": cals,
                    },
                )

            return run_calendars
        # Calendar scope: /calendar/... or /calendars/{id}/...
        cal: Calendar | None = None
        tail = rest
        if low[0] == "calendar":
            cal = mb.default_calendar
            tail = rest[1:]
        elif low[0] == "calendars" and len(rest) >= 2:
            cal = mb.calendars.get(rest[1])
            if cal is None:
                raise item_or_malformed(rest[1])
            tail = rest[2:]
        tlow = [s.lower() for s in tail]
        if cal is not None and not tail:

            async def run_calendar() -> Reply:
                self._only(req, "GET")
                calendar_access(state, caller, *self._target(mb, cal), write=False)
                kind = "calendar" if low[0] == "calendar" else "calendars"
                return Reply(200, self._entity(mb, kind, self.calendar_json(mb, cal)))

            return run_calendar
        if tlow == ["getschedule"] and low[0] == "calendar":

            async def run_schedule() -> Reply:
                self._only(req, "POST")
                require_read_any(state, caller, mb)
                return Reply(
                    200,
                    schedule.get_schedule(state, caller, mb.tenant_id, req.json(), p.tz),
                    self._tz_header(p),
                )

            return run_schedule
        target_mb, target_cal = self._target(mb, cal) if cal else (mb, None)
        if tlow and tlow[0] == "calendarview":
            return self._calendar_view(caller, req, mb, target_mb, target_cal, tail[1:], p)
        if tlow and tlow[0] == "events":
            return self._events(caller, req, target_mb, target_cal, tail[1:], p)
        raise bad_request(f"Resource not found for the segment '{tail[0] if tail else rest[0]}'.")

    def _target(self, mb: Mailbox, cal: Calendar) -> tuple[Mailbox, str | None]:
        """A sharee's copy points into the owner's mailbox; other calendars are their own."""
        if cal.shared_owner and cal.shared_calendar_id:
            owner = self.state.mailboxes.get((mb.tenant_id, cal.shared_owner))
            if owner is None or cal.shared_calendar_id not in owner.calendars:
                raise item_not_found()
            return owner, cal.shared_calendar_id
        return mb, cal.id

    def _calendars_visible(self, caller: Caller, mb: Mailbox) -> set[str] | None:
        """Calendars of `mb` the caller may list (None = all; 403 when none)."""
        return calendar_access(self.state, caller, mb, None, write=False)

    # ------------------------------------------------------------------ events
    def _events(
        self, caller: Caller, req: Req, mb: Mailbox, cal_id: str | None, rest: list[str], p: Prefs
    ) -> Run:
        state = self.state
        method = req.method.upper()
        if not rest:
            if method == "POST":

                async def run_create() -> Reply:
                    target = cal_id or mb.default_calendar.id
                    calendar_access(state, caller, mb, target, write=True)
                    rec, _created = ev.create_event(state, mb, target, req.json())
                    body = ev.event_json(
                        state, mb, rec, tz=p.tz, immutable=p.immutable, body_type=p.body_type
                    )
                    body["@odata.context"] = (
                        f"{self.base}/$metadata#users('{mb.user_id}')/events/$entity"
                    )
                    return Reply(201, body, self._tz_header(p))

                return run_create

            async def run_list() -> Reply:
                self._only(req, "GET")
                allowed = calendar_access(state, caller, mb, cal_id, write=False)
                cals = (
                    {cal_id}
                    if cal_id
                    else (
                        allowed or {c.id for c in mb.calendars.values() if c.shared_owner is None}
                    )
                )
                return Reply(200, self._list_events(mb, cals, req, p), self._tz_header(p))

            return run_list
        event_id = rest[0]
        action = rest[1].lower() if len(rest) > 1 else None

        def load(write: bool) -> tuple[EventRec, dt.datetime | None]:
            rec, occ = ev.resolve(mb, event_id)
            if cal_id is not None and rec.calendar_id != cal_id:
                raise item_not_found()
            calendar_access(state, caller, mb, rec.calendar_id, write=write)
            return rec, occ

        if action is None:

            async def run_item() -> Reply:
                if method == "GET":
                    rec, occ = load(False)
                    select = self._select(req)
                    expand = parse_expand(req.query.get("$expand"))
                    body = ev.event_json(
                        state,
                        mb,
                        rec,
                        occ,
                        tz=p.tz,
                        immutable=p.immutable,
                        body_type=p.body_type,
                        select=select,
                        expand_ext=expand,
                    )
                    return Reply(200, self._entity(mb, "events", body, select), self._tz_header(p))
                if method == "PATCH":
                    rec, occ = load(True)
                    ev.update_event(state, mb, rec, occ, req.json())
                    body = ev.event_json(
                        state, mb, rec, occ, tz=p.tz, immutable=p.immutable, body_type=p.body_type
                    )
                    return Reply(200, self._entity(mb, "events", body), self._tz_header(p))
                if method == "DELETE":
                    rec, occ = load(True)
                    ev.delete_event(state, mb, rec, occ)
                    return Reply(204)
                raise GraphError(405, "Request_BadRequest", "Method not allowed.")

            return run_item
        if action in ("cancel", "accept", "decline", "tentativelyaccept"):

            async def run_action() -> Reply:
                self._only(req, "POST")
                rec, occ = load(True)
                body = ev.action_parameters(action, req.json())
                if action == "cancel":
                    ev.cancel_event(state, mb, rec, occ)
                else:
                    if "proposednewtime" in body and (
                        not rec.data["allowNewTimeProposals"] or body.get("sendresponse") is False
                    ):
                        raise GraphError(
                            400,
                            "ErrorInvalidRequest",
                            "A new time can't be proposed for this meeting.",
                        )
                    response = {
                        "accept": "accepted",
                        "decline": "declined",
                        "tentativelyaccept": "tentativelyAccepted",
                    }[action]
                    ev.respond(state, mb, rec, occ, response)
                return Reply(202)

            return run_action
        if action == "instances":

            async def run_instances() -> Reply:
                self._only(req, "GET")
                rec, occ = load(False)
                start, end = views.window(req.query)
                value = []
                if rec.recurrence is not None and occ is None:
                    for orig, _s, _e in ev.occurrences(rec, start, end):
                        value.append(
                            ev.event_json(
                                state,
                                mb,
                                rec,
                                orig,
                                tz=p.tz,
                                immutable=p.immutable,
                                body_type=p.body_type,
                                select=self._select(req),
                            )
                        )
                return Reply(
                    200,
                    {"@odata.context": f"{self.base}/$metadata#Collection(event)", "value": value},
                    self._tz_header(p),
                )

            return run_instances
        raise bad_request(f"Resource not found for the segment '{rest[1]}'.")

    def _list_events(self, mb: Mailbox, cals: set[str], req: Req, p: Prefs) -> dict[str, Any]:
        state = self.state
        top, skip = self._paging(req, state.config.events_default_page_size)
        preds = parse_filter(req.query["$filter"]) if req.query.get("$filter") else []
        expand = parse_expand(req.query.get("$expand"))
        recs = [r for r in mb.events.values() if r.calendar_id in cals]
        rows = []
        for rec in recs:
            utc = ev.event_json(state, mb, rec, immutable=p.immutable) if preds else None
            if preds and not all(pr(rec, utc or {}) for pr in preds):
                continue
            rows.append(rec)
        rows = self._order(rows, req.query.get("$orderby"))
        page = rows[skip : skip + top]
        value = [
            ev.event_json(
                state,
                mb,
                r,
                tz=p.tz,
                immutable=p.immutable,
                body_type=p.body_type,
                select=self._select(req),
                expand_ext=expand,
            )
            for r in page
        ]
        out: dict[str, Any] = {
            "@odata.context": f"{self.base}/$metadata#users('{mb.user_id}')/events",
            "value": value,
        }
        if skip + top < len(rows):
            out["@odata.nextLink"] = self._next_link(req, skip + top)
        return out

    @staticmethod
    def _order(rows: list[EventRec], orderby: str | None) -> list[EventRec]:
        if not orderby:
            return sorted(rows, key=lambda r: (r.created, r.key))
        field_name, _, direction = orderby.strip().partition(" ")
        keys: dict[str, Callable[[EventRec], Any]] = {
            "start/datetime": lambda r: r.start,
            "end/datetime": lambda r: r.end,
            "createddatetime": lambda r: r.created,
            "lastmodifieddatetime": lambda r: r.modified,
            "subject": lambda r: r.data["subject"],
        }
        key = keys.get(field_name.lower())
        if key is None:
            raise bad_request(f"Invalid $orderby: {orderby}")
        return sorted(rows, key=key, reverse=direction.strip().lower() == "desc")

    def _calendar_view(
        self,
        caller: Caller,
        req: Req,
        path_mb: Mailbox,
        mb: Mailbox,
        cal_id: str | None,
        rest: list[str],
        p: Prefs,
    ) -> Run:
        state = self.state
        target = cal_id or mb.default_calendar.id  # /calendarView = the default calendar
        low = [s.lower() for s in rest]
        # `delta()` is the OData function-call form Kiota SDKs send (msgraph-sdk's
        # calendarView/delta() URL template); Graph answers both forms alike.
        if low in (["delta"], ["delta()"]):

            async def run_delta() -> Reply:
                self._only(req, "GET")
                calendar_access(state, caller, mb, target, write=False)
                size = p.max_page or state.config.delta_default_page_size
                base = f"{self.state.emulator.base_url}/v1.0{req.path}"
                body = views.delta(
                    state,
                    mb,
                    {target},
                    req.query,
                    base,
                    req.path,
                    page_size=size,
                    tz=p.tz,
                    immutable=p.immutable,
                    body_type=p.body_type,
                )
                headers = self._tz_header(p)
                if p.max_page:
                    headers["Preference-Applied"] = ", ".join(
                        x
                        for x in (
                            headers.get("Preference-Applied"),
                            f"odata.maxpagesize={p.max_page}",
                        )
                        if x
                    )
                return Reply(200, body, headers)

            return run_delta
        if rest:
            raise bad_request(f"Resource not found for the segment '{rest[0]}'.")

        async def run_view() -> Reply:
            self._only(req, "GET")
            calendar_access(state, caller, mb, target, write=False)
            start, end = views.window(req.query)
            top, skip = self._paging(req, state.config.events_default_page_size)
            preds = parse_filter(req.query["$filter"]) if req.query.get("$filter") else []
            items = ev.view_items(mb, {target}, start, end)
            if preds:
                items = [
                    it
                    for it in items
                    if all(pr(it[0], ev.event_json(state, mb, it[0], it[1])) for pr in preds)
                ]
            page = items[skip : skip + top]
            select = self._select(req)
            value = [
                ev.event_json(
                    state,
                    mb,
                    rec,
                    occ,
                    tz=p.tz,
                    immutable=p.immutable,
                    body_type=p.body_type,
                    select=select,
                )
                for rec, occ, _s in page
            ]
            out: dict[str, Any] = {
                "@odata.context": f"{self.base}/$metadata#users('{path_mb.user_id}')/calendarView",
                "value": value,
            }
            if skip + top < len(items):
                out["@odata.nextLink"] = self._next_link(req, skip + top)
            return Reply(200, out, self._tz_header(p))

        return run_view

    # ------------------------------------------------------------------ helpers
    def _paging(self, req: Req, default: int) -> tuple[int, int]:
        raw_top = req.query.get("$top")
        raw_skip = req.query.get("$skip", "0")
        try:
            top = int(raw_top) if raw_top is not None else default
            skip = int(raw_skip)
        except ValueError:
            raise GraphError(
                400, "ErrorInvalidParameter", "Invalid value for $top or $skip."
            ) from None
        if not 1 <= top <= 1000:
            raise GraphError(
                400,
                "ErrorInvalidParameter",
                "The value of the parameter '$top' must be between 1 and 1000.",
            )
        if skip < 0:
            raise GraphError(400, "ErrorInvalidParameter", "Invalid value for $skip.")
        return top, skip

    @staticmethod
    def _select(req: Req) -> list[str] | None:
        raw = req.query.get("$select")
        return [s.strip() for s in raw.split(",") if s.strip()] if raw else None

    def _next_link(self, req: Req, skip: int) -> str:
        params = dict(req.query)
        params["$skip"] = str(skip)
        query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$")
        return f"{self.state.emulator.base_url}/v1.0{req.path}?{query}"

    def _entity(
        self, mb: Mailbox, kind: str, body: dict[str, Any], select: list[str] | None = None
    ) -> dict[str, Any]:
        """A single entity with its `@odata.context`, as Graph answers (event-get.md: `…/$metadata#
        users('{id}')/events(subject,body)/$entity` with $select, `…/events/$entity` without)."""
        shape = f"{kind}({','.join(select)})" if select else kind
        context = f"{self.base}/$metadata#users('{mb.user_id}')/{shape}"
        if kind != "calendar":
            context += "/$entity"
        return {"@odata.context": context, **body}

    @staticmethod
    def _tz_header(p: Prefs) -> dict[str, str]:
        return p.applied()

    def user_json(self, mb: Mailbox, query: dict[str, str]) -> dict[str, Any]:
        user = self.state.directory.user(mb.tenant_id, mb.user_id)
        full: dict[str, Any] = {
            "businessPhones": [],
            "displayName": mb.display_name,
            "givenName": getattr(user, "given_name", None),
            "jobTitle": getattr(user, "job_title", None),
            "mail": mb.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": getattr(user, "surname", None),
            "userPrincipalName": mb.upn,
            "id": mb.user_id,
        }
        select = [s.strip() for s in query.get("$select", "").split(",") if s.strip()]
        if select:
            extra = dict(getattr(user, "extra", {}) or {})
            full = {k: (full.get(k) if k in full else extra.get(k)) for k in select}
            if "id" not in full:
                full["id"] = mb.user_id
        context = f"{self.base}/$metadata#users/$entity"
        return {"@odata.context": context, **full}

    def calendar_json(self, mb: Mailbox, cal: Calendar) -> dict[str, Any]:
        owner_name, owner_addr = mb.display_name, mb.mail
        shared = cal.shared_owner is not None
        if shared:
            owner = self.state.mailboxes.get((mb.tenant_id, cal.shared_owner or ""))
            if owner is not None:
                owner_name, owner_addr = owner.display_name, owner.mail
        return {
            "id": cal.id,
            "name": cal.name,
            "color": cal.color,
            "hexColor": cal.hex_color,
            "isDefaultCalendar": cal.is_default,
            "changeKey": cal.change_key,
            "canShare": not shared,
            "canViewPrivateItems": (not shared) or cal.role == "delegateWithPrivateEventAccess",
            "canEdit": (not shared) or cal.role in WRITE_ROLES,
            "allowedOnlineMeetingProviders": ["teamsForBusiness"],
            "defaultOnlineMeetingProvider": "teamsForBusiness",
            "isTallyingResponses": cal.is_default,
            "isRemovable": not cal.is_default,
            "owner": {"name": owner_name, "address": owner_addr},
        }


def now_iso(state: GraphState) -> str:
    return iso_utc(state.now())
