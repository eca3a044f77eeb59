"""Identity emulator (Entra ID v2 subset): routes for the main port and its control routes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from devstack.m365.identity.endpoints import Endpoints, state_of
from devstack.m365.state import Emulator

__all__ = ["build_control_routes", "build_routes"]


def build_routes(emulator: Emulator) -> list[BaseRoute]:
    state_of(emulator)
    e = Endpoints(emulator)
    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", e.openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", e.keys),
        Route("/{tenant}/discovery/keys", e.keys),
        Route("/{tenant}/oauth2/v2.0/authorize", e.authorize, methods=["GET"]),
        Route("/{tenant}/oauth2/v2.0/token", e.token, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", e.token_preflight, methods=["OPTIONS"]),
        Route("/{tenant}/oauth2/v2.0/logout", e.logout, methods=["GET"]),
        Route("/{tenant}/login", e.login, methods=["POST"]),
        Route("/{tenant}/consent", e.consent, methods=["POST"]),
        Route("/{tenant}/v2.0/adminconsent", e.admin_consent_v2, methods=["GET"]),
        Route("/{tenant}/adminconsent", e.admin_consent_v1, methods=["GET"]),
    ]


def build_control_routes(emulator: Emulator) -> list[BaseRoute]:
    """`/_emulator/identity/...`: what an admin would do in the Entra admin center."""

    async def revoke(request: Request) -> Response:
        body = await request.json()
        tenant = emulator.directory.tenant(str(body.get("tenant", "")))
        if tenant is None:
            return _bad("unknown tenant")
        user = emulator.directory.user(tenant.id, str(body.get("user", "")))
        if user is None:
            return _bad("unknown user")
        client_id = body.get("clientId")
        when = emulator.directory.revoke_grant(
            tenant.id,
            user.id,
            str(client_id) if client_id else None,
            remove_consent=bool(body.get("removeConsent", False)),
        )
        return JSONResponse(
            {
                "tenant": tenant.id,
                "user": user.id,
                "clientId": client_id,
                "validFrom": when.isoformat(),
            }
        )

    async def admin_consent(request: Request) -> Response:
        body = await request.json()
        tenant = emulator.directory.tenant(str(body.get("tenant", "")))
        app = emulator.directory.app(str(body.get("clientId", "")))
        if tenant is None or app is None:
            return _bad("unknown tenant or clientId")
        emulator.directory.admin_consent_required(tenant.id, app.client_id)
        return JSONResponse({"tenant": tenant.id, "clientId": app.client_id})

    async def user_attributes(request: Request) -> Response:
        """Set a user's directory extension attributes (what an admin edits in the directory);
        tokens issued afterwards carry them as optional claims, e.g. `buildings`."""
        body = await request.json()
        tenant = emulator.directory.tenant(str(body.get("tenant", "")))
        user = emulator.directory.user(tenant.id, request.path_params["upn"]) if tenant else None
        attributes = body.get("attributes")
        if user is None or not isinstance(attributes, dict):
            return _bad("unknown tenant or user, or attributes is not an object")
        user.extension_attributes.update(attributes)
        return JSONResponse({"user": user.id, "attributes": user.extension_attributes})

    return [
        Route("/_emulator/identity/users/{upn}/attributes", user_attributes, methods=["POST"]),
        Route("/_emulator/identity/revoke", revoke, methods=["POST"]),
        Route("/_emulator/identity/admin-consent", admin_consent, methods=["POST"]),
    ]


def _bad(message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": "BadRequest", "message": message}}, status_code=400)
