"""Entra ID v2 endpoints: discovery, JWKS, authorize (+ sign-in/consent pages), token, admin consent.

Strict like Entra: unknown clients and unregistered redirect URIs are shown on an error page (never
redirected to), other authorize errors are redirected with `error`/`error_description`, token errors
come back as Entra's JSON with the AADSTS code in `error_codes`.

Admin consent three ways: the v2 and v1 admin consent endpoints (redirect with `tenant` and
`admin_consent=True`), and `prompt=admin_consent` on `/authorize` — the same admin-only review and
tenant-wide grant, but an ordinary OpenID Connect response (`code` + `state`), so the app learns who
consented, in which tenant, from a token instead of a query parameter anyone can write.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from devstack.m365.directory import (
    ALL_PRINCIPALS,
    GRAPH_RESOURCE,
    OIDC_SCOPES,
    App,
    Tenant,
    User,
)
from devstack.m365.identity import pages
from devstack.m365.identity.errors import (
    describe,
    error_page,
    redirect_error_params,
    token_error,
)
from devstack.m365.identity.scopes import (
    ResourceRequest,
    ScopeError,
    ScopeRequest,
    admin_only,
    display,
    parse,
    wanted_delegated,
)
from devstack.m365.identity.store import (
    CODE_LIFETIME,
    REFRESH_MAX_INACTIVE,
    SPA_REFRESH_LIFETIME,
    AuthCode,
    IdentityState,
    Pending,
    RefreshGrant,
)
from devstack.m365.state import Emulator
from devstack.m365.tokens import ACCESS_TOKEN_LIFETIME

log = logging.getLogger(__name__)

MULTI = ("organizations", "common")
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
ID_TOKEN_LIFETIME = 3600
# Entra's discovery document and keys are readable cross-origin: MSAL Browser fetches them.
PUBLIC_CORS = {"Access-Control-Allow-Origin": "*"}

PERMISSION_TITLES = {
    "User.Read": "Sign you in and read your profile",
    "Calendars.Read": "Read your calendars",
    "Calendars.ReadBasic": "Read basic details of your calendars",
    "Calendars.Read.Shared": "Read user and shared calendars",
    "Calendars.ReadWrite": "Have full access to your calendars",
    "Calendars.ReadWrite.Shared": "Read and write user and shared calendars",
    "Place.Read.All": "Read all company places",
    "offline_access": "Maintain access to data you have given it access to",
    "openid": "Sign you in",
    "profile": "View your basic profile",
    "email": "View your email address",
    "user_impersonation": "Have full access to Azure Key Vault service",
}


def state_of(emulator: Emulator) -> IdentityState:
    if emulator.identity is None:
        emulator.identity = IdentityState()
    assert isinstance(emulator.identity, IdentityState)
    return emulator.identity


class Endpoints:
    def __init__(self, emulator: Emulator) -> None:
        self.em = emulator
        self.dir = emulator.directory
        self.store = state_of(emulator)

    # ---------------------------------------------------------------- discovery
    def _tenant_or_multi(self, segment: str) -> tuple[Tenant | None, bool]:
        if segment.lower() in MULTI:
            return None, True
        return self.dir.tenant(segment), False

    async def openid_configuration(self, request: Request) -> Response:
        segment = request.path_params["tenant"]
        tenant, multi = self._tenant_or_multi(segment)
        if tenant is None and not multi:
            return token_error(400, "invalid_tenant", 90002, tenant=segment, headers=PUBLIC_CORS)
        base = self.em.base_url
        path_tenant = tenant.id if tenant else segment
        issuer_tenant = tenant.id if tenant else "{tenantid}"  # as Entra publishes it
        return JSONResponse(
            {
                "token_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{base}/{path_tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/{issuer_tenant}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{base}/v1.0/me",
                "authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/{path_tenant}/oauth2/v2.0/logout",
                "claims_supported": [
                    "sub",
                    "iss",
                    "aud",
                    "exp",
                    "iat",
                    "auth_time",
                    "acr",
                    "nonce",
                    "preferred_username",
                    "name",
                    "tid",
                    "ver",
                    "at_hash",
                    "c_hash",
                    "email",
                ],
                "kerberos_endpoint": f"{base}/{path_tenant}/kerberos",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": self.em.base_url.removeprefix("https://") + "/v1.0",
                "rbac_url": "https://pas.windows.net",
            },
            headers=PUBLIC_CORS,
        )

    async def keys(self, request: Request) -> Response:
        return JSONResponse(self.em.tokens.jwks(), headers=PUBLIC_CORS)

    # ---------------------------------------------------------------- authorize
    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        segment = request.path_params["tenant"]
        tenant, multi = self._tenant_or_multi(segment)
        if tenant is None and not multi:
            return error_page(90002, tenant=segment)
        client_id = q.get("client_id", "")
        if not client_id:
            return error_page(900144, parameter="client_id")
        app = self.dir.app(client_id)
        if app is None or (tenant is not None and not app.usable_in(tenant.id)):
            return error_page(700016, client_id=client_id, tenant=segment)
        if multi and not app.multi_tenant:
            return error_page(50194, client_id=client_id)
        redirect_uri = q.get("redirect_uri", "")
        if not app.accepts_redirect(redirect_uri):
            # Never redirect to an unregistered URI: that would be an open redirector.
            return error_page(50011, redirect_uri=redirect_uri, client_id=client_id)
        state = q.get("state")
        response_mode = q.get("response_mode", "query")
        if response_mode not in ("query", "fragment", "form_post"):
            response_mode = "query"
            return self._redirect_error(
                redirect_uri, response_mode, "invalid_request", 9002313, state
            )
        response_type = q.get("response_type", "")
        if response_type != "code":
            code = 900144 if not response_type else 700054
            return self._redirect_error(
                redirect_uri,
                response_mode,
                "invalid_request" if not response_type else "unsupported_response_type",
                code,
                state,
                parameter="response_type",
                response_type=response_type,
            )
        scope_raw = q.get("scope", "")
        if not scope_raw.strip():
            return self._redirect_error(
                redirect_uri, response_mode, "invalid_request", 900144, state, parameter="scope"
            )
        try:
            scopes = parse(scope_raw, self.dir, tenant.id if tenant else None)
        except ScopeError as exc:
            if exc.kind == "unknown_resource":
                return self._redirect_error(
                    redirect_uri, response_mode, "invalid_resource", 500011, state,
                    resource=exc.value, tenant=segment,
                )  # fmt: skip
            return self._redirect_error(
                redirect_uri, response_mode, "invalid_scope", 70011, state, scope=exc.value
            )
        challenge = q.get("code_challenge")
        method = q.get("code_challenge_method")
        if challenge is not None:
            method = method or "plain"  # RFC 7636: absent method means plain (Entra too)
            if method not in ("S256", "plain"):
                return self._redirect_error(
                    redirect_uri, response_mode, "invalid_request", 9002313, state
                )
            if not _VERIFIER.match(challenge) or (method == "S256" and len(challenge) != 43):
                return self._redirect_error(
                    redirect_uri, response_mode, "invalid_request", 501491, state
                )
        pending = Pending(
            kind="authorize",
            tenant_segment=segment,
            tenant_id=tenant.id if tenant else None,
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            scope_raw=scope_raw,
            state=state,
            nonce=q.get("nonce"),
            code_challenge=challenge,
            code_challenge_method=method if challenge else None,
            response_mode=response_mode,
            login_hint=q.get("login_hint"),
            prompt=q.get("prompt"),
            created=self.em.clock.now(),
        )
        return self._start(pending, app)

    def _start(self, pending: Pending, app: App) -> Response:
        """Common to authorize and admin consent: auto sign-in with login_hint, else the page."""
        ctx = self.store.add_pending(pending)
        hint_user = self._hinted_user(pending)
        if hint_user is not None and self.em.auto_consent and pending.prompt != "login":
            # Automation: as if that person signed in and consented (admin-only limits apply).
            return self._after_sign_in(ctx, pending, hint_user, auto=True)
        if pending.prompt == "none":
            self.store.drop_pending(ctx)
            return self._redirect_error(
                pending.redirect_uri, pending.response_mode, "login_required", 50058, pending.state
            )
        return HTMLResponse(
            pages.sign_in(
                f"/{pending.tenant_segment}/login", ctx, app.display_name, pending.login_hint or ""
            )
        )

    def _hinted_user(self, pending: Pending) -> User | None:
        if not pending.login_hint:
            return None
        if pending.tenant_id:
            return self.dir.user(pending.tenant_id, pending.login_hint)
        return self.dir.find_user_anywhere(pending.login_hint)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        ctx = str(form.get("ctx", ""))
        pending = self.store.get_pending(ctx, self.em.clock.now())
        if pending is None:
            return error_page(9002313)
        app = self.dir.app(pending.client_id)
        assert app is not None
        username = str(form.get("loginfmt", "")).strip()
        password = str(form.get("passwd", ""))
        if pending.tenant_id:
            user = self.dir.user(pending.tenant_id, username)
        else:
            user = self.dir.find_user_anywhere(username)
        action = f"/{pending.tenant_segment}/login"
        if user is None:
            message = describe(50034, user=username, tenant=pending.tenant_segment)
            return HTMLResponse(
                pages.sign_in(action, ctx, app.display_name, username, message), status_code=200
            )
        if not user.account_enabled:
            return HTMLResponse(
                pages.sign_in(action, ctx, app.display_name, username, describe(50057))
            )
        if not user.check_password(password):
            return HTMLResponse(
                pages.sign_in(action, ctx, app.display_name, username, describe(50126))
            )
        return self._after_sign_in(ctx, pending, user, auto=False)

    def _after_sign_in(self, ctx: str, pending: Pending, user: User, *, auto: bool) -> Response:
        app = self.dir.app(pending.client_id)
        assert app is not None
        pending.user_id = user.id
        pending.user_tenant_id = user.tenant_id
        if not app.usable_in(user.tenant_id):
            self.store.drop_pending(ctx)
            return self._redirect_error(
                pending.redirect_uri, pending.response_mode, "unauthorized_client", 700016,
                pending.state, client_id=app.client_id, tenant=user.tenant_id,
            )  # fmt: skip
        if pending.kind != "authorize" or pending.prompt == "admin_consent":
            return self._admin_consent_step(ctx, pending, app, user, auto=auto)
        missing = self._missing_consent(pending, app, user)
        if not missing and pending.prompt != "consent":
            return self._issue_code(ctx, pending, user)
        blocked = [
            (r, n)
            for r, n in missing
            if admin_only(r.resource, n)
            and n not in self.dir.admin_delegated_scopes(user.tenant_id, app.client_id, r.resource.key)
        ]  # fmt: skip
        if blocked and not user.is_admin:
            # A non-admin cannot consent to admin-only permissions. Entra shows "Need admin
            # approval" (AADSTS90094); leaving that page returns consent_required/AADSTS65001.
            if auto or pending.prompt == "none":
                return self._consent_required(ctx, pending, app)
            return HTMLResponse(
                pages.admin_approval(
                    f"/{pending.tenant_segment}/consent", ctx, app.display_name, describe(90094)
                )
            )
        if auto:
            self._grant(pending, app, user, missing, for_org=False)
            return self._issue_code(ctx, pending, user)
        if pending.prompt == "none":
            return self._consent_required(ctx, pending, app)
        perms = [(self._scope_label(r, n), _title(r, n)) for r, n in missing]
        if "offline_access" in pending.scopes.oidc:
            perms.append(("offline_access", PERMISSION_TITLES["offline_access"]))
        return HTMLResponse(
            pages.consent(
                f"/{pending.tenant_segment}/consent",
                ctx,
                app.display_name,
                "unverified" if not app.home_tenant_id else f"{app.home_tenant_id}",
                user.user_principal_name,
                perms,
                can_consent_for_org=user.is_admin,
            )
        )

    @staticmethod
    def _scope_label(request: ResourceRequest, name: str) -> str:
        return display(request.resource, {name})[0]

    def _missing_consent(
        self, pending: Pending, app: App, user: User
    ) -> list[tuple[ResourceRequest, str]]:
        missing: list[tuple[ResourceRequest, str]] = []
        for request in pending.scopes.resources:
            granted = self.dir.delegated_scopes(
                user.tenant_id, app.client_id, user.id, request.resource.key
            )
            for name in sorted(wanted_delegated(request, app) - granted):
                missing.append((request, name))
        return missing

    def _grant(
        self,
        pending: Pending,
        app: App,
        user: User,
        missing: list[tuple[ResourceRequest, str]],
        *,
        for_org: bool,
    ) -> None:
        principal = ALL_PRINCIPALS if for_org else user.id
        for request, name in missing:
            self.dir.grant_delegated(
                user.tenant_id, app.client_id, principal, request.resource.key, [name]
            )

    def _consent_required(self, ctx: str, pending: Pending, app: App) -> Response:
        self.store.drop_pending(ctx)
        return self._redirect_error(
            pending.redirect_uri, pending.response_mode, "consent_required", 65001, pending.state,
            client_id=app.client_id, app_name=app.display_name,
        )  # fmt: skip

    async def consent(self, request: Request) -> Response:
        form = await request.form()
        ctx = str(form.get("ctx", ""))
        pending = self.store.get_pending(ctx, self.em.clock.now())
        if pending is None or pending.user_id is None or pending.user_tenant_id is None:
            return error_page(9002313)
        app = self.dir.app(pending.client_id)
        user = self.dir.user(pending.user_tenant_id, pending.user_id)
        assert app is not None and user is not None
        accepted = form.get("decision") == "accept"
        if pending.kind != "authorize" or pending.prompt == "admin_consent":
            return self._finish_admin_consent(ctx, pending, app, user, accepted)
        if not accepted:
            self.store.drop_pending(ctx)
            query = redirect_error_params("access_denied", 65004, pending.state)
            return self._redirect(pending, query + "&error_subcode=cancel")
        missing = self._missing_consent(pending, app, user)
        blocked = [(r, n) for r, n in missing if admin_only(r.resource, n)]
        if blocked and not user.is_admin:
            return self._consent_required(ctx, pending, app)
        for_org = user.is_admin and form.get("consent_for_org") == "true"
        self._grant(pending, app, user, missing, for_org=for_org)
        return self._issue_code(ctx, pending, user)

    def _issue_code(self, ctx: str, pending: Pending, user: User) -> Response:
        self.store.drop_pending(ctx)
        app = self.dir.app(pending.client_id)
        assert app is not None
        code = self.store.add_code(
            AuthCode(
                tenant_id=user.tenant_id,
                client_id=pending.client_id,
                user_id=user.id,
                redirect_uri=pending.redirect_uri,
                scopes=pending.scopes,
                nonce=pending.nonce,
                code_challenge=pending.code_challenge,
                code_challenge_method=pending.code_challenge_method,
                issued=self.em.clock.now(),
                spa=app.is_spa_redirect(pending.redirect_uri),
            )
        )
        params = {"code": code}
        if pending.state is not None:
            params["state"] = pending.state
        params["session_state"] = str(uuid.uuid5(uuid.UUID(user.id), pending.client_id))
        return self._redirect(pending, urlencode(params), params)

    def _redirect(
        self, pending: Pending, query: str, params: dict[str, str] | None = None
    ) -> Response:
        return _redirect_to(pending.redirect_uri, pending.response_mode, query, params)

    def _redirect_error(
        self,
        redirect_uri: str,
        response_mode: str,
        error: str,
        code: int,
        state: str | None,
        **fields: str,
    ) -> Response:
        query = redirect_error_params(error, code, state, **fields)
        return _redirect_to(redirect_uri, response_mode, query, None)

    # ------------------------------------------------------------ admin consent
    async def admin_consent_v2(self, request: Request) -> Response:
        return self._admin_consent_request(request, v1=False)

    async def admin_consent_v1(self, request: Request) -> Response:
        return self._admin_consent_request(request, v1=True)

    def _admin_consent_request(self, request: Request, *, v1: bool) -> Response:
        q = request.query_params
        segment = request.path_params["tenant"]
        tenant, multi = self._tenant_or_multi(segment)
        if tenant is None and not multi:
            return error_page(90002, tenant=segment)
        if not v1 and segment.lower() == "common":
            return error_page(9001023)  # the v2 admin consent doc: do not use /common here
        client_id = q.get("client_id", "")
        app = self.dir.app(client_id) if client_id else None
        if app is None:
            return error_page(700016, client_id=client_id, tenant=segment)
        redirect_uri = q.get("redirect_uri", "")
        if not app.accepts_redirect(redirect_uri):
            return error_page(50011, redirect_uri=redirect_uri, client_id=client_id)
        scope_raw = "" if v1 else q.get("scope", "")
        if not v1 and not scope_raw.strip():
            return self._redirect_error(
                redirect_uri, "query", "invalid_request", 900144, q.get("state"), parameter="scope"
            )
        try:
            scopes = parse(scope_raw, self.dir, tenant.id if tenant else None)
        except ScopeError as exc:
            return self._redirect_error(
                redirect_uri, "query", "invalid_scope", 70011, q.get("state"), scope=exc.value
            )
        pending = Pending(
            kind="adminconsent_v1" if v1 else "adminconsent",
            tenant_segment=segment,
            tenant_id=tenant.id if tenant else None,
            client_id=app.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            scope_raw=scope_raw,
            state=q.get("state"),
            nonce=None,
            code_challenge=None,
            code_challenge_method=None,
            response_mode="query",
            login_hint=q.get("login_hint"),
            prompt=None,
            created=self.em.clock.now(),
        )
        return self._start(pending, app)

    def _admin_grants(self, pending: Pending, app: App) -> tuple[dict[str, set[str]], ...]:
        """(delegated, application) permissions per resource key an admin consent would grant."""
        delegated: dict[str, set[str]] = {}
        application: dict[str, set[str]] = {}
        everything = pending.kind == "adminconsent_v1" or any(
            r.default for r in pending.scopes.resources
        )
        if everything:
            # `/.default` (and the v1 endpoint) consent to the registration's static permissions.
            for key, names in app.required_delegated.items():
                delegated[key] = {n for n in names if n not in OIDC_SCOPES}
            for key, roles in app.required_application.items():
                application[key] = set(roles)
        for request in pending.scopes.resources:
            if request.names:
                delegated.setdefault(request.resource.key, set()).update(request.names)
        return delegated, application

    def _admin_consent_step(
        self, ctx: str, pending: Pending, app: App, user: User, *, auto: bool
    ) -> Response:
        if not user.is_admin:
            if auto:
                return self._admin_consent_error(ctx, pending, 90094)
            return HTMLResponse(
                pages.admin_approval(
                    f"/{pending.tenant_segment}/consent", ctx, app.display_name, describe(90094)
                )
            )
        if auto:
            return self._finish_admin_consent(ctx, pending, app, user, True)
        delegated, application = self._admin_grants(pending, app)
        perms: list[tuple[str, str]] = []
        for key, names in sorted(application.items()):
            label = "Microsoft Graph" if key == GRAPH_RESOURCE else key
            perms += [
                (f"{n} (Application, {label})", PERMISSION_TITLES.get(n, n)) for n in sorted(names)
            ]
        for key, names in sorted(delegated.items()):
            label = "Microsoft Graph" if key == GRAPH_RESOURCE else key
            perms += [
                (f"{n} (Delegated, {label})", PERMISSION_TITLES.get(n, n)) for n in sorted(names)
            ]
        return HTMLResponse(
            pages.consent(
                f"/{pending.tenant_segment}/consent",
                ctx,
                app.display_name,
                app.home_tenant_id or "unverified",
                user.user_principal_name,
                perms,
                can_consent_for_org=True,
                admin_consent=True,
            )
        )

    def _admin_consent_error(self, ctx: str, pending: Pending, code: int) -> Response:
        self.store.drop_pending(ctx)
        if pending.kind == "authorize":  # prompt=admin_consent: an authorize error redirect
            if code == 65004:
                query = redirect_error_params("access_denied", 65004, pending.state)
                return self._redirect(pending, query + "&error_subcode=cancel")
            query = redirect_error_params("consent_required", code, pending.state)
            return self._redirect(pending, query)
        if pending.kind == "adminconsent_v1":
            params = {"error": "permission_denied", "error_description": describe(code)}
            if code == 65004:
                params["error_description"] = "The admin canceled the request"
        else:
            params = {
                "admin_consent": "True",
                "error": "consent_required" if code != 65004 else "access_denied",
                "error_description": describe(code),
            }
        if pending.state is not None:
            params["state"] = pending.state
        return self._redirect(pending, urlencode(params))

    def _finish_admin_consent(
        self, ctx: str, pending: Pending, app: App, user: User, accepted: bool
    ) -> Response:
        # A non-admin never reaches a decision: the page they leave is "Need admin approval".
        if not user.is_admin:
            return self._admin_consent_error(ctx, pending, 90094)
        if not accepted:
            return self._admin_consent_error(ctx, pending, 65004)
        delegated, application = self._admin_grants(pending, app)
        for key, names in delegated.items():
            self.dir.grant_delegated(user.tenant_id, app.client_id, ALL_PRINCIPALS, key, names)
        for key, roles in application.items():
            self.dir.grant_application(user.tenant_id, app.client_id, key, roles)
        log.info("admin consent recorded: tenant %s client %s", user.tenant_id, app.client_id)
        if pending.kind == "authorize":
            # prompt=admin_consent is an OpenID Connect sign-in: the app gets a code (and from it
            # an id token naming the admin and the tenant), not the forgeable `tenant` parameter.
            return self._issue_code(ctx, pending, user)
        self.store.drop_pending(ctx)
        if pending.kind == "adminconsent_v1":
            params = {"tenant": user.tenant_id}
            if pending.state is not None:
                params["state"] = pending.state
            params["admin_consent"] = "True"
        else:
            params = {"admin_consent": "True", "tenant": user.tenant_id, "scope": pending.scope_raw}
            if pending.state is not None:
                params["state"] = pending.state
        return self._redirect(pending, urlencode(params))

    # -------------------------------------------------------------------- token
    async def token(self, request: Request) -> Response:
        """The token endpoint. Who the client is decides how it must authenticate: a redemption
        of a code or refresh token issued to a SPA redirect URI is a public client's (no secret,
        PKCE, cross-origin: an `Origin` header, answered with CORS headers); every other grant is
        a confidential client's (a secret, and never from a browser: an `Origin` is refused)."""
        segment = request.path_params["tenant"]
        origin = request.headers.get("origin")
        tenant, multi = self._tenant_or_multi(segment)
        if tenant is None and not multi:
            return token_error(400, "invalid_request", 90002, tenant=segment)
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        basic = _basic_auth(request.headers.get("authorization", ""))
        if basic is not None:
            client_id = client_id or basic[0]
            secret = secret if secret is not None else basic[1]
        spa = self._spa_grant(form)
        cors = _cors(origin) if spa and origin else {}
        if not client_id:
            return token_error(400, "invalid_request", 900144, parameter="client_id", headers=cors)
        app = self.dir.app(client_id)
        if app is None or (tenant is not None and not app.usable_in(tenant.id)):
            return token_error(
                400, "unauthorized_client", 700016, client_id=client_id, tenant=segment,
                headers=cors,
            )  # fmt: skip
        if spa:
            if not origin:
                return token_error(400, "invalid_request", 9002327)
            if secret is not None or form.get("client_assertion"):
                # A secret must never be used from within the browser.
                return token_error(401, "invalid_client", 700025, headers=cors)
        else:
            if origin:
                return token_error(400, "invalid_request", 9002326, origin=origin)
            if secret is None:
                return token_error(401, "invalid_client", 7000218)
            if not app.check_secret(secret):
                return token_error(401, "invalid_client", 7000215, client_id=client_id)
        grant_type = form.get("grant_type", "")
        response: Response
        if grant_type == "authorization_code":
            response = self._redeem_code(form, app, tenant)
        elif grant_type == "refresh_token":
            response = self._redeem_refresh(form, app, tenant)
        elif grant_type == "client_credentials":
            response = self._client_credentials(form, app, tenant, segment)
        elif grant_type == "password":
            response = self._password(form, app, tenant)
        elif not grant_type:
            response = token_error(400, "invalid_request", 900144, parameter="grant_type")
        else:
            response = token_error(400, "unsupported_grant_type", 70003)
        response.headers.update(cors)
        return response

    def _spa_grant(self, form: dict[str, str]) -> bool:
        """Whether the code or refresh token presented was issued to a SPA redirect URI."""
        grant_type = form.get("grant_type", "")
        with self.store.lock:
            if grant_type == "authorization_code":
                code = self.store.codes.get(form.get("code", ""))
                return code is not None and code.spa
            if grant_type == "refresh_token":
                grant = self.store.refresh_tokens.get(form.get("refresh_token", ""))
                return grant is not None and grant.spa_expires is not None
        return False

    async def token_preflight(self, request: Request) -> Response:
        """CORS preflight of the token endpoint: allowed for origins of SPA redirect URIs."""
        origin = request.headers.get("origin", "")
        if not origin or origin.rstrip("/").lower() not in self.dir.spa_origins():
            return Response(status_code=204)  # no CORS headers: the browser refuses the POST
        headers = _cors(origin)
        headers.update(
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get(
                    "access-control-request-headers", "content-type"
                ),
                "Access-Control-Max-Age": "86400",
            }
        )
        return Response(status_code=204, headers=headers)

    async def logout(self, request: Request) -> Response:
        """Front-channel sign-out (`end_session_endpoint`): the emulator keeps no session cookie,
        so signing out only returns to `post_logout_redirect_uri` when it is one of the client's
        redirect URIs (any platform), else shows Entra's "You signed out" page."""
        q = request.query_params
        target = q.get("post_logout_redirect_uri", "")
        app = self.dir.app(q.get("client_id", "")) if q.get("client_id") else None
        if target and app is not None and app.accepts_redirect(target):
            query = urlencode({"state": q["state"]}) if q.get("state") else ""
            return RedirectResponse(f"{target}{'?' + query if query else ''}", status_code=302)
        return HTMLResponse(pages.signed_out())

    def _redeem_code(self, form: dict[str, str], app: App, tenant: Tenant | None) -> Response:
        value = form.get("code", "")
        if not value:
            return token_error(400, "invalid_request", 900144, parameter="code")
        with self.store.lock:
            code = self.store.codes.get(value)
            if code is not None and not code.redeemed and code.client_id == app.client_id:
                code.redeemed = True  # single use, even if the checks below fail (as Entra)
                first_use = True
            else:
                first_use = False
        if code is None or code.client_id != app.client_id:
            return token_error(400, "invalid_grant", 9002313)
        if not first_use:
            return token_error(400, "invalid_grant", 54005)
        if tenant is not None and tenant.id != code.tenant_id:
            return token_error(400, "invalid_grant", 9002313)
        if self.em.clock.now() - code.issued > CODE_LIFETIME:
            return token_error(400, "invalid_grant", 70008)
        redirect_uri = form.get("redirect_uri", "")
        if redirect_uri != code.redirect_uri:
            return token_error(
                400, "invalid_grant", 500112, got=redirect_uri, expected=code.redirect_uri
            )
        if code.spa and code.code_challenge is None:
            return token_error(400, "invalid_request", 9002325)
        if code.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            if not verifier:
                return token_error(400, "invalid_request", 900144, parameter="code_verifier")
            if code.code_challenge_method == "S256":
                computed = (
                    base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                    .rstrip(b"=")
                    .decode()
                )
            else:
                computed = verifier
            if computed != code.code_challenge:
                return token_error(400, "invalid_grant", 501481)
        user = self.dir.user(code.tenant_id, code.user_id)
        if user is None:
            return token_error(400, "invalid_grant", 70000)
        requested = code.scopes
        if form.get("scope"):
            try:
                requested = parse(form["scope"], self.dir, code.tenant_id)
            except ScopeError as exc:
                return token_error(400, "invalid_scope", 70011, scope=exc.value)
        return self._delegated_response(
            app, user, requested, code.scopes, nonce=code.nonce, form=form,
            scope_raw_for_refresh=_scope_string(code.scopes),
            spa_expires=self.em.clock.now() + SPA_REFRESH_LIFETIME if code.spa else None,
        )  # fmt: skip

    def _password(self, form: dict[str, str], app: App, tenant: Tenant | None) -> Response:
        """Resource owner password credentials (ROPC): Entra still supports it for work accounts
        without MFA; tests use it to get user tokens in one call (MSAL's
        acquire_token_by_username_password). Same consent rules as the interactive flow."""
        username, password = form.get("username", ""), form.get("password", "")
        for name, value in (("username", username), ("password", password)):
            if not value:
                return token_error(400, "invalid_request", 900144, parameter=name)
        user = (
            self.dir.user(tenant.id, username)
            if tenant is not None
            else self.dir.find_user_anywhere(username)
        )
        # One answer for an unknown user and a wrong password, as Entra (no account probing).
        if user is None or not user.account_enabled or not user.check_password(password):
            return token_error(400, "invalid_grant", 50126)
        try:
            requested = parse(form.get("scope", "openid profile"), self.dir, user.tenant_id)
        except ScopeError as exc:
            return token_error(400, "invalid_scope", 70011, scope=exc.value)
        return self._delegated_response(
            app, user, requested, requested, nonce=None, form=form,
            scope_raw_for_refresh=_scope_string(requested),
        )  # fmt: skip

    def _redeem_refresh(self, form: dict[str, str], app: App, tenant: Tenant | None) -> Response:
        value = form.get("refresh_token", "")
        if not value:
            return token_error(400, "invalid_request", 900144, parameter="refresh_token")
        with self.store.lock:
            grant = self.store.refresh_tokens.get(value)
        if grant is None or grant.client_id != app.client_id:
            return token_error(400, "invalid_grant", 9002313)
        if tenant is not None and tenant.id != grant.tenant_id:
            return token_error(400, "invalid_grant", 9002313)
        now = self.em.clock.now()
        if grant.spa_expires is not None and now >= grant.spa_expires:
            return token_error(
                400, "invalid_grant", 700084, issued=grant.issued.strftime("%m/%d/%Y %H:%M:%S")
            )
        if now - grant.issued > REFRESH_MAX_INACTIVE:
            return token_error(
                400, "invalid_grant", 700082, issued=grant.issued.strftime("%m/%d/%Y %H:%M:%S")
            )
        cutoff = self.dir.tokens_valid_after(grant.tenant_id, grant.user_id, app.client_id)
        if cutoff is not None and grant.issued < cutoff:
            return token_error(
                400, "invalid_grant", 50173,
                issued=grant.issued.strftime("%m/%d/%Y %H:%M:%S"),
                valid_from=cutoff.strftime("%m/%d/%Y %H:%M:%S"),
            )  # fmt: skip
        user = self.dir.user(grant.tenant_id, grant.user_id)
        if user is None or not user.account_enabled:
            return token_error(400, "invalid_grant", 50057)
        original = parse(grant.scope_raw, self.dir, grant.tenant_id)
        requested = original
        if form.get("scope"):
            try:
                requested = parse(form["scope"], self.dir, grant.tenant_id)
            except ScopeError as exc:
                return token_error(400, "invalid_scope", 70011, scope=exc.value)
        return self._delegated_response(
            app, user, requested, original, nonce=None, form=form,
            scope_raw_for_refresh=grant.scope_raw, spa_expires=grant.spa_expires,
        )  # fmt: skip

    def _delegated_response(
        self,
        app: App,
        user: User,
        requested: ScopeRequest,
        original: ScopeRequest,
        *,
        nonce: str | None,
        form: dict[str, str],
        scope_raw_for_refresh: str,
        spa_expires: dt.datetime | None = None,
    ) -> Response:
        if requested.resource_count > 1:
            return token_error(400, "invalid_scope", 28000, scope=form.get("scope", ""))
        tid = user.tenant_id
        if requested.resources:
            target = requested.resources[0]
        else:
            # Only OIDC scopes: Entra returns a Graph token (User.Read-style sign-in).
            graph = self.dir.resolve_resource(GRAPH_RESOURCE)
            assert graph is not None
            target = ResourceRequest(graph, set(), True)
        resource = target.resource
        granted = self.dir.delegated_scopes(tid, app.client_id, user.id, resource.key)
        wanted = wanted_delegated(target, app) if (target.names or not target.default) else set()
        if target.default:
            wanted |= granted
        missing = wanted - granted
        if missing:
            return token_error(
                400, "invalid_grant", 65001, suberror="consent_required",
                client_id=app.client_id, app_name=app.display_name,
            )  # fmt: skip
        scp = sorted(wanted) if not target.default else sorted(granted)
        claims: dict[str, Any] = {
            "aud": resource.audience,
            "iss": self.em.tokens.issuer(tid),
            "tid": tid,
            "oid": user.id,
            "sub": _pairwise(user.id, resource.audience),
            "azp": app.client_id,
            "appid": app.client_id,
            "azpacr": "1",
            "idtyp": "user",
            "scp": " ".join(scp),
            "name": user.display_name,
            "preferred_username": user.user_principal_name,
            "upn": user.user_principal_name,
            "unique_name": user.user_principal_name,
        }
        if resource.app is not None:
            roles = self.dir.user_app_roles(tid, user.id, resource.app.client_id)
            if roles:
                claims["roles"] = sorted(roles)
            for name in resource.app.optional_claims:
                if name in user.extension_attributes:
                    claims[name] = user.extension_attributes[name]
        access_token = self.em.tokens.issue(claims, ACCESS_TOKEN_LIFETIME)
        oidc = requested.oidc | original.oidc
        scope_out = display(resource, set(scp)) + sorted(oidc & {"openid", "profile", "email"})
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scope_out),
            "expires_in": ACCESS_TOKEN_LIFETIME,
            "ext_expires_in": ACCESS_TOKEN_LIFETIME,
            "access_token": access_token,
        }
        if "offline_access" in original.oidc:
            now = self.em.clock.now()
            body["refresh_token"] = self.store.add_refresh(
                RefreshGrant(
                    tenant_id=tid,
                    client_id=app.client_id,
                    user_id=user.id,
                    scope_raw=scope_raw_for_refresh,
                    issued=now,
                    spa_expires=spa_expires,
                )
            )
            lifetime = REFRESH_MAX_INACTIVE if spa_expires is None else spa_expires - now
            body["refresh_token_expires_in"] = round(lifetime.total_seconds())
        if "openid" in oidc:
            id_claims: dict[str, Any] = {
                "aud": app.client_id,
                "iss": self.em.tokens.issuer(tid),
                "tid": tid,
                "oid": user.id,
                "sub": _pairwise(user.id, app.client_id),
                "name": user.display_name,
                "preferred_username": user.user_principal_name,
            }
            if "email" in oidc and user.mail:
                id_claims["email"] = user.mail
            if nonce:
                id_claims["nonce"] = nonce
            roles = self.dir.user_app_roles(tid, user.id, app.client_id)
            if roles:
                id_claims["roles"] = sorted(roles)
            body["id_token"] = self.em.tokens.issue(id_claims, ID_TOKEN_LIFETIME)
            # MSAL keys its accounts by client_info (uid.utid); Entra returns it when asked.
            body["client_info"] = _b64url_json({"uid": user.id, "utid": tid})
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _client_credentials(
        self, form: dict[str, str], app: App, tenant: Tenant | None, segment: str
    ) -> Response:
        if tenant is None:
            if segment.lower() == "common":
                return token_error(400, "invalid_request", 9001023)
            return token_error(400, "invalid_request", 50059)
        scope_raw = form.get("scope", "")
        if not scope_raw:
            return token_error(400, "invalid_request", 900144, parameter="scope")
        values = scope_raw.split()
        if any(not v.endswith("/.default") for v in values):
            return token_error(400, "invalid_scope", 1002012, scope=scope_raw)
        try:
            parsed = parse(scope_raw, self.dir, tenant.id)
        except ScopeError as exc:
            return token_error(
                400, "invalid_resource", 500011, resource=exc.value, tenant=tenant.id
            )
        if parsed.resource_count != 1:
            return token_error(400, "invalid_scope", 28000, scope=scope_raw)
        resource = parsed.resources[0].resource
        roles = self.dir.application_permissions(tenant.id, app.client_id, resource.key)
        sp_id = str(uuid.uuid5(uuid.UUID(tenant.id), "sp:" + app.client_id))
        claims: dict[str, Any] = {
            "aud": resource.audience,
            "iss": self.em.tokens.issuer(tenant.id),
            "tid": tenant.id,
            "oid": sp_id,
            "sub": sp_id,
            "azp": app.client_id,
            "appid": app.client_id,
            "azpacr": "1",
            "idtyp": "app",
        }
        if roles:
            claims["roles"] = sorted(roles)
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": ACCESS_TOKEN_LIFETIME,
                "ext_expires_in": ACCESS_TOKEN_LIFETIME,
                "access_token": self.em.tokens.issue(claims, ACCESS_TOKEN_LIFETIME),
            },
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )


def _redirect_to(
    redirect_uri: str, response_mode: str, query: str, params: dict[str, str] | None
) -> Response:
    if response_mode == "form_post":
        fields = params if params is not None else dict(parse_qsl(query))
        return HTMLResponse(pages.form_post(redirect_uri, fields))
    separator = "#" if response_mode == "fragment" else ("&" if "?" in redirect_uri else "?")
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302)


def _title(request: ResourceRequest, name: str) -> str:
    """What the consent page says a permission allows (an app's own scopes: its display name)."""
    app = request.resource.app
    if app is not None and name in app.scope_titles:
        return app.scope_titles[name]
    return PERMISSION_TITLES.get(name, name)


def _cors(origin: str) -> dict[str, str]:
    """CORS headers of a SPA's cross-origin token redemption (the caller's own origin)."""
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


def _basic_auth(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being put into Basic auth.
    return unquote_plus(user), unquote_plus(password)


def _pairwise(oid: str, audience: str) -> str:
    digest = hashlib.sha256(f"{oid}|{audience}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()[:43]


def _b64url_json(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _scope_string(scopes: ScopeRequest) -> str:
    parts = sorted(scopes.oidc)
    for request in scopes.resources:
        prefix = request.resource.audience
        if request.resource.app is not None and request.resource.app.identifier_uris:
            prefix = request.resource.app.identifier_uris[0]
        parts += [f"{prefix}/{n}" for n in sorted(request.names)]
        if request.default:
            parts.append(f"{prefix}/.default")
    return " ".join(parts)
